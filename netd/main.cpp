// angel-netd: record ring in, IPFIX over UDP out. A record leaves the ring (is committed)
// only once the message that carries it has been handed to the socket, so a netd killed at
// any moment loses nothing: its successor re-sends at most the one message in flight.
#include <sysexits.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "common/log.hpp"
#include "netd/ipfix_exporter.hpp"
#include "shm/sanitizer_stage_options.hpp"
#include "shm/stage_runtime.hpp"

using namespace angel;

namespace {

constexpr size_t kBatch = 512;

constexpr uint64_t kAnnounceWaitNs = 2'000'000'000ull;  // procd down or slow: export anyway

IpfixExporterConfig exporter_config(const LiveConfig& c, HaRole role) {
    IpfixExporterConfig e;
    e.active = role != HaRole::backup;  // a backup sends nothing, templates included
    e.host = c.classifier_host;
    e.port = static_cast<uint16_t>(c.classifier_port);
    e.mtu = c.mtu;
    e.domain_id = c.domain_id;
    e.flush_ms = c.flush_ms;
    e.template_refresh_s = c.template_refresh_s;
    return e;
}

void export_counters(StageRuntime& rt, const IpfixExporter& x) {
    const auto& c = x.counters();
    rt.set_counter(netd_messages, c.messages_sent);
    rt.set_counter(netd_records_sent, c.records_sent);
    rt.set_counter(netd_bytes, c.bytes_sent);
    rt.set_counter(netd_send_errors, c.send_errors);
    rt.set_counter(netd_templates, c.templates_sent);
}

}  // namespace

int main(int argc, char** argv) {
    StageRuntime rt(StageId::netd, "angel-netd", argc, argv);
    // Sandboxed before anything that carries traffic is mapped.
    rt.enter_sandbox(SandboxProfile::netd);
    rt.attach();
    const ControlBlock& control = rt.control();
    LiveConfig cfg = rt.segment().config();
    uint32_t cfg_gen = control.config.generation.load();
    RecordRing<Record> ring = rt.segment().record_ring();
    rt.segment().prefault(Segment::Ring::record, Segment::Access::read);  // no fault per page later
    auto& stop = rt.header().stop;
    auto role_now = [&] { return static_cast<HaRole>(control.role.load(std::memory_order_acquire)); };
    HaRole role = role_now();

    std::unique_ptr<IpfixExporter> x;
    try {
        x = std::make_unique<IpfixExporter>(exporter_config(cfg, role), &rt.header().ipfix_sequence);
    } catch (const std::exception& e) {
        log_err("cannot export to %s:%u: %s", cfg.classifier_host, cfg.classifier_port, e.what());
        return EX_NOHOST;
    }
    log_info("exporting IPFIX to %s (messages up to %zu bytes)", x->destination().c_str(),
             x->max_message_size());
    rt.ready();

    // Ring position of the first record this exporter was given; records the exporter has
    // finished with (sent or failed to send) are committed relative to it.
    uint64_t base = ring.read_pos();
    uint64_t discarded = 0;  // records skipped: not master, or procd's announce records
    // After becoming master, the stream starts at procd's announce record of this generation
    // (followed by a flow_start for every live flow): what is queued before it belonged to
    // the time as backup (docs/ha.md).
    bool awaiting_announce = false;
    uint64_t awaiting_since = 0;
    auto done_with = [&] {
        const auto& c = x->counters();
        return c.records_sent + c.records_lost + discarded;
    };
    auto idle_ms = [&] { return static_cast<int>(std::clamp<uint32_t>(cfg.flush_ms, 1, 100)); };

    for (;;) {
        const Record* recs = nullptr;
        const size_t n = ring.peek(&recs, kBatch);
        // (takeover after master: this loop already started from the announce marker in the
        // instant between ctld's request and its master write; ctld never goes master -> takeover.)
        if (const HaRole r = role_now(); r != role && !(r == HaRole::takeover && role == HaRole::master)) {
            if (r == HaRole::backup) {
                // No longer ours to send: what is packed is dropped, not flushed, so that the
                // classifier never hears this meter once the other one may be speaking.
                const uint32_t k = x->discard_pending();
                discarded += k;
                rt.count(netd_unsent_at_demotion, k);
                x->set_active(false);
                awaiting_announce = false;
                log_notice("backup: not exporting (%u packed records dropped)", k);
            } else {
                if (role == HaRole::backup) {
                    x->set_active(true);  // templates at once
                    log_notice("%s: templates sent", r == HaRole::master ? "master" : "taking over");
                }
                if (r == HaRole::master) {
                    awaiting_announce = true;
                    awaiting_since = IpfixExporter::monotonic_ns();
                    log_notice("master: exporting from procd's announcement of the live flows");
                }
            }
            role = r;
        }
        uint64_t skipped = 0;
        for (size_t i = 0; i < n; ++i) {
            const Record& rec = recs[i];
            if (rec.type == static_cast<uint8_t>(RecordType::announce)) {
                // ctld bumps announce_request just before it writes master, so a marker of the
                // current request means master even if this loop read the role a moment earlier
                // (takeover): start here rather than skip the flow_starts that follow it.
                const auto gen = static_cast<uint32_t>(control.announce_request.load(std::memory_order_acquire));
                if (role != HaRole::backup && rec.flow_id == gen && (awaiting_announce || role == HaRole::takeover)) {
                    if (role == HaRole::takeover) log_notice("master: exporting from procd's announcement of the live flows");
                    role = HaRole::master;
                    awaiting_announce = false;
                }
                ++discarded;  // never exported
            } else if (role == HaRole::master && !awaiting_announce) {
                x->add(rec);
            } else {
                ++discarded;
                ++skipped;
            }
        }
        if (n > 0) {
            ring.advance(n);
            rt.count(netd_records, n);
            if (skipped) rt.count(netd_not_master, skipped);
        }
        if (awaiting_announce && IpfixExporter::monotonic_ns() - awaiting_since > kAnnounceWaitNs) {
            awaiting_announce = false;
            log_warn("master: procd has not announced the live flows within %llu s; exporting without it",
                     static_cast<unsigned long long>(kAnnounceWaitNs / 1'000'000'000ull));
        }
        x->poll(IpfixExporter::monotonic_ns());
        if (!x->pending()) ring.commit();  // everything advanced over is out
        else ring.commit_to(base + done_with());
        export_counters(rt, *x);
        rt.heartbeat();

        const uint32_t gen = control.config.generation.load(std::memory_order_acquire);
        if (gen != cfg_gen) {
            cfg_gen = gen;
            const LiveConfig nc = rt.segment().config();
            if (std::string(nc.classifier_host) != cfg.classifier_host || nc.classifier_port != cfg.classifier_port) {
                if (x->set_destination(nc.classifier_host, static_cast<uint16_t>(nc.classifier_port)))
                    log_notice("classifier moved to %s", x->destination().c_str());
                else
                    log_err("cannot export to %s:%u; keeping %s", nc.classifier_host, nc.classifier_port,
                            x->destination().c_str());
            }
            if (nc.flush_ms != cfg.flush_ms || nc.template_refresh_s != cfg.template_refresh_s ||
                nc.mtu != cfg.mtu || nc.domain_id != cfg.domain_id) {
                // Message size and timers are fixed per exporter: send what is pending, then
                // continue with a new exporter (it sends templates first; the sequence number
                // lives in the segment and carries on).
                x->flush();
                ring.commit_to(base + done_with());
                try {
                    auto nx = std::make_unique<IpfixExporter>(exporter_config(nc, role), &rt.header().ipfix_sequence);
                    x = std::move(nx);
                    base = ring.read_pos();
                    discarded = 0;
                    log_notice("export settings changed: mtu %u, flush %u ms, template refresh %u s, domain %u",
                               nc.mtu, nc.flush_ms, nc.template_refresh_s, nc.domain_id);
                } catch (const std::exception& e) {
                    log_err("cannot apply the new export settings: %s; keeping the old ones", e.what());
                }
            }
            cfg = nc;
        }
        if (StageRuntime::terminate_requested()) {
            // Restart by the operator: send what is pending, release it, leave the rest queued.
            x->flush();
            ring.commit_to(base + done_with());
            export_counters(rt, *x);
            log_info("terminated; %llu records stay queued", static_cast<unsigned long long>(ring.fill()));
            return 0;
        }
        if (n == 0) {
            if (stop.procd_finished.load(std::memory_order_acquire) && !ring.wait_for_data(0)) break;
            ring.wait_for_data(x->pending() ? idle_ms() : 100);
        }
    }
    x->flush();
    ring.commit();
    export_counters(rt, *x);
    stop.netd_finished.store(1, std::memory_order_release);
    rt.finished();
    log_info("finished: %llu records in %llu messages, %llu send errors",
             static_cast<unsigned long long>(x->counters().records_sent),
             static_cast<unsigned long long>(x->counters().messages_sent),
             static_cast<unsigned long long>(x->counters().send_errors));
    return 0;
}
