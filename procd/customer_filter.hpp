// procd's customer filter (issue 12): a packet is metered when the source or destination of
// the IP header its flow is attributed to (after every encapsulation the parser knows) lies
// in the customer set ctld publishes (shm/customer_set.hpp); otherwise it is counted as
// filtered and goes no further. An empty set meters everything.
//
// poll() runs between batches: it switches to a newly published slot whole, and only then
// says so in SegmentHeader::customer_generation, so that ctld never rewrites a slot this
// process still reads. Nothing is allocated.
#pragma once
#include <atomic>
#include <cstdint>

#include "common/packet/parsed_packet.hpp"
#include "shm/customer_set.hpp"
#include "shm/segment.hpp"

namespace angel {

class CustomerFilter {
public:
    explicit CustomerFilter(const Segment& seg) : seg_(seg) {}
    // Takes up the active set when ctld has published another. True when it switched.
    bool poll();
    bool metered(const ParsedPacket& p) const {
        if (view_.empty()) return true;
        if (p.ip_version == 4) return view_.contains_v4(u32_from_bytes(p.src.data())) ||
                                      view_.contains_v4(u32_from_bytes(p.dst.data()));
        return view_.contains_v6(u128_from_bytes(p.src.data())) || view_.contains_v6(u128_from_bytes(p.dst.data()));
    }
    uint64_t generation() const { return view_.generation(); }
    const CustomerSetView& view() const { return view_; }

private:
    const Segment& seg_;
    CustomerSetView view_;
    uint64_t seen_ = 0;  // CustomerSetBlock::generation last looked at
};

}  // namespace angel
