#include "procd/customer_filter.hpp"

#include "common/log.hpp"

namespace angel {

bool CustomerFilter::poll() {
    const CustomerSetBlock& b = seg_.control().customers;
    const uint64_t gen = b.generation.load(std::memory_order_acquire);
    if (gen == seen_) return false;
    seen_ = gen;
    const unsigned slot = b.active.load(std::memory_order_acquire) & 1u;
    CustomerSetView next;
    std::string why;
    if (!next.open(seg_.customer_slot(slot), b.slot_bytes, &why)) {
        // Root wrote it; a slot that fails the check is a bug, never a reason to stop.
        log_err("customer set generation %llu refused (%s); generation %llu stays",
                static_cast<unsigned long long>(gen), why.c_str(), static_cast<unsigned long long>(view_.generation()));
        return false;
    }
    view_ = next;
    seg_.header()->customer_generation.store(view_.generation(), std::memory_order_release);
    log_info("customer set generation %llu: %llu prefixes in %u IPv4 and %u IPv6 ranges%s",
             static_cast<unsigned long long>(view_.generation()),
             static_cast<unsigned long long>(view_.header()->prefixes), view_.header()->v4_ranges,
             view_.header()->v6_ranges, view_.empty() ? " (every packet metered)" : "");
    return true;
}

}  // namespace angel
