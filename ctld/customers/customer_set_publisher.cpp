#include "ctld/customers/customer_set_publisher.hpp"

#include <cstdio>

#include "common/log.hpp"
#include "ctld/customers/customer_ranges.hpp"

namespace angel {

std::string customer_set_problem(const std::vector<Cidr>& nets, std::string* summary, uint64_t slot_bytes) {
    if (nets.empty()) {
        if (summary) *summary = "customers.networks empty: every packet is metered";
        return "";
    }
    const CustomerRanges r = build_customer_ranges(nets);
    const uint64_t bytes = customer_slot_bytes(r.v4_lo.size(), r.v6_lo.size());
    char buf[256];
    std::snprintf(buf, sizeof buf, "customers.networks: %llu prefixes (%u IPv4, %u IPv6) in %zu ranges, %.1f MiB",
                  static_cast<unsigned long long>(r.prefixes), r.v4_prefixes, r.v6_prefixes,
                  r.v4_lo.size() + r.v6_lo.size(), double(bytes) / (1 << 20));
    if (summary) *summary = buf;
    if (bytes > slot_bytes)
        return std::string(buf) + ": more than the " + std::to_string(slot_bytes >> 20) +
               " MiB the meter holds for a set (aggregate prefixes)";
    return "";
}

void CustomerSetPublisher::offer(const std::vector<Cidr>& nets) {
    pending_ = build_customer_ranges(nets);
    pending_since_ns_ = 0;
    warned_waiting_ = false;
}

bool CustomerSetPublisher::service(uint64_t procd_gen, uint64_t now_ns) {
    if (!pending_) return false;
    // The slot that is not active is free once procd filters with the active one's set, or
    // before any set went out.
    if (cur_.generation != 0 && procd_gen != cur_.generation) {
        if (pending_since_ns_ == 0) pending_since_ns_ = now_ns;
        if (!warned_waiting_ && now_ns - pending_since_ns_ > 5'000'000'000ull) {
            log_warn("a new customer set waits for procd to take up generation %llu (it says %llu)",
                     static_cast<unsigned long long>(cur_.generation), static_cast<unsigned long long>(procd_gen));
            warned_waiting_ = true;
        }
        return false;
    }
    const bool ok = publish(*pending_);
    pending_.reset();
    return ok;
}

bool CustomerSetPublisher::publish(const CustomerRanges& r) {
    CustomerSetBlock& b = seg_.control_rw().customers;
    const unsigned next = cur_.generation == 0 ? 0 : (b.active.load(std::memory_order_relaxed) ^ 1u);
    const uint64_t bytes = customer_slot_bytes(r.v4_lo.size(), r.v6_lo.size());
    std::string why;
    uint8_t* slot = seg_.customer_slot_rw(next, bytes, &why);
    const uint64_t gen = cur_.generation + 1;
    if (!slot || !write_customer_slot(slot, bytes, r, gen)) {
        log_err("customer set of %llu prefixes not applied, the previous one stays: %s",
                static_cast<unsigned long long>(r.prefixes), why.empty() ? "it does not fit a slot" : why.c_str());
        return false;
    }
    b.active.store(next, std::memory_order_release);
    b.generation.store(gen, std::memory_order_release);
    cur_.generation = gen;
    cur_.prefixes = r.prefixes;
    cur_.v4_prefixes = r.v4_prefixes;
    cur_.v6_prefixes = r.v6_prefixes;
    cur_.ranges = r.v4_lo.size() + r.v6_lo.size();
    cur_.bytes = bytes;
    log_notice("customer set generation %llu: %llu prefixes (%u IPv4, %u IPv6) in %llu ranges%s",
               static_cast<unsigned long long>(gen), static_cast<unsigned long long>(r.prefixes), r.v4_prefixes,
               r.v6_prefixes, static_cast<unsigned long long>(cur_.ranges),
               r.prefixes == 0 ? " (every packet metered)" : "");
    return true;
}

CustomerSetStatus CustomerSetPublisher::status(uint64_t procd_gen) const {
    CustomerSetStatus s = cur_;
    s.pending = pending_.has_value();
    s.procd_generation = procd_gen;
    return s;
}

}  // namespace angel
