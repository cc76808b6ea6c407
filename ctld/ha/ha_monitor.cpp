#include "ctld/ha/ha_monitor.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace angel {

namespace {
constexpr uint64_t kMs = 1'000'000ull;
}

HaMonitor::HaMonitor(const HaConfig& ha, ControlBlock& control, uint64_t now_ns)
    : ha_(ha), control_(control), probe_(make_role_probe(ha)),
      tracker_(static_cast<uint64_t>(ha.mode == "none" ? 0 : ha.takeover_ms) * kMs) {
    const RoleObservation o = probe_->probe();
    detail_ = o.detail;
    tracker_.start(o.master, now_ns);
    next_probe_ = now_ns + static_cast<uint64_t>(ha_.poll_ms) * kMs;
    publish(tracker_.role());
    if (ha_.mode != "none")
        log_notice("HA (%s): starting as %s (%s)", ha_.mode.c_str(), ha_role_name(tracker_.role()), detail_.c_str());
}

void HaMonitor::publish(HaRole r) {
    // Announce first, then the role (release): netd reads the role, then the request.
    if (r == HaRole::master && ha_.mode != "none")
        control_.announce_request.fetch_add(1, std::memory_order_release);
    control_.role.store(static_cast<uint32_t>(r), std::memory_order_release);
}

int HaMonitor::timeout_ms(uint64_t now_ns) const {
    if (ha_.mode == "none") return 1000;
    const uint64_t due = std::min(next_probe_, tracker_.next_deadline());
    if (due <= now_ns) return 0;
    return static_cast<int>(std::min<uint64_t>((due - now_ns + kMs - 1) / kMs, 1000));
}

void HaMonitor::apply(const std::optional<RoleChange>& c, uint64_t now_ns) {
    if (!c) return;
    publish(c->to);
    if (c->to == HaRole::takeover)
        log_notice("HA: backup -> takeover (%s): templates sent, export in %d ms", detail_.c_str(), ha_.takeover_ms);
    else if (c->to == HaRole::master && c->from == HaRole::takeover)
        log_notice("HA: takeover -> master: exporting (transition %llu)",
                   static_cast<unsigned long long>(tracker_.transitions()));
    else
        log_notice("HA: %s -> %s (%s; transition %llu)", ha_role_name(c->from), ha_role_name(c->to), detail_.c_str(),
                   static_cast<unsigned long long>(tracker_.transitions()));
    if (tracker_.flap_warning_due(now_ns))
        log_warn("HA: the role changed %zu times in the last minute: CARP/VRRP is flapping or both meters "
                 "claim the address (split brain); compare `angelctl role` on both",
                 tracker_.transitions_last_minute(now_ns));
}

void HaMonitor::service(bool event, uint64_t now_ns) {
    if (ha_.mode == "none") return;
    if (event) probe_->drain_events();
    if (event || now_ns >= next_probe_) {
        const RoleObservation o = probe_->probe();
        detail_ = o.detail;
        next_probe_ = now_ns + static_cast<uint64_t>(ha_.poll_ms) * kMs;
        apply(tracker_.observe(o.master, now_ns), now_ns);
    } else {
        apply(tracker_.tick(now_ns), now_ns);
    }
}

void HaMonitor::reconfigure(const HaConfig& ha, uint64_t now_ns) {
    const bool source_changed = ha.vip != ha_.vip || ha.state_file != ha_.state_file;
    std::unique_ptr<RoleProbe> p = source_changed ? make_role_probe(ha) : nullptr;  // may throw: nothing changed yet
    ha_ = ha;
    if (p) probe_ = std::move(p);
    tracker_.set_takeover_ns(static_cast<uint64_t>(ha.takeover_ms) * kMs);
    next_probe_ = now_ns;  // look again at once
}

RoleReport HaMonitor::report(uint64_t now_ns) const {
    RoleReport r;
    r.role = tracker_.role();
    r.mode = ha_.mode;
    r.detail = detail_;
    r.since_s = static_cast<double>(now_ns - tracker_.since_ns()) / 1e9;
    r.transitions = tracker_.transitions();
    r.master_s = static_cast<double>(tracker_.master_side_ns(now_ns)) / 1e9;
    r.transitions_last_minute = tracker_.transitions_last_minute(now_ns);
    return r;
}

}  // namespace angel
