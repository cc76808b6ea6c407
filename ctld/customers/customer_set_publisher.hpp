// ctld's side of the customer set (shm/customer_set.hpp): builds the set of customers.networks
// on the side and swaps it in for procd, at start, on reload and on a database change.
//
// The next set is written into the slot procd does not use, and only once procd says (in
// SegmentHeader::customer_generation, read through CheckedSegmentView) that it filters with
// the current one; until then it waits here, and the newest list offered wins. While no procd
// has taken up any set yet (at start), the first set goes out at once.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "shm/customer_set.hpp"
#include "shm/segment.hpp"

namespace angel {

// What -t and start-up check: the set fits a slot. Empty when it does; else the one-line
// reason. summary (may be null) gets what -t prints ("N prefixes (a IPv4, b IPv6) in R
// ranges, X MiB" or that every packet is metered).
std::string customer_set_problem(const std::vector<Cidr>& nets, std::string* summary,
                                 uint64_t slot_bytes = kCustomerSlotBytes);

struct CustomerSetStatus {
    uint64_t generation = 0;  // published (0: none yet)
    uint64_t prefixes = 0, v4_prefixes = 0, v6_prefixes = 0, ranges = 0, bytes = 0;
    bool pending = false;     // a newer list waits for procd to take up the current one
    uint64_t procd_generation = 0;  // what procd says it filters with
};

class CustomerSetPublisher {
public:
    explicit CustomerSetPublisher(const Segment& seg) : seg_(seg) {}
    // A list to publish (replaces one still waiting). Empty = every packet metered.
    void offer(const std::vector<Cidr>& nets);
    // Every loop turn: publishes what waits once procd is on the current set. procd_gen is
    // what procd wrote; stage-written, only compared here. Returns true when it published.
    bool service(uint64_t procd_gen, uint64_t now_ns);
    CustomerSetStatus status(uint64_t procd_gen) const;

private:
    bool publish(const CustomerRanges& r);

    const Segment& seg_;
    std::optional<CustomerRanges> pending_;
    uint64_t pending_since_ns_ = 0;
    bool warned_waiting_ = false;
    CustomerSetStatus cur_;
};

}  // namespace angel
