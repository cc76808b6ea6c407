// The customer set (issue 12): the prefixes of customers.networks as disjoint address ranges,
// sorted, with a lookup index, written by ctld (root) into the control object (which the
// stages map read-only) and read by procd, which meters a packet only when its source or
// destination lies inside. An empty set meters everything.
//
// Two slots, swapped whole: ctld builds the next set on the side in the slot procd does not
// use, then flips CustomerSetBlock::active. procd switches between two batches (a packet is
// looked up in one set, never a half-written one) and says which generation it uses in
// SegmentHeader::customer_generation; ctld writes a slot again only once procd has left it.
// That word is the only thing procd writes about the set, and ctld only compares it (a procd
// that lies about it can spoil its own lookups, nothing of root's).
//
// Lookup: IPv4 ranges are found through a table of the 65,536 /16 buckets (where each bucket's
// ranges begin) and a binary search inside the bucket; IPv6 through a sample of every
// kV6SampleStep-th range start (small enough to stay in cache) and a search of at most that
// many ranges. Costs and memory: docs/benchmarks.md.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace angel {

// An IPv6 address as a 128-bit number: hi holds bytes 0..7, lo bytes 8..15, big-endian.
struct U128 {
    uint64_t hi = 0, lo = 0;
    friend bool operator<(const U128& a, const U128& b) { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo); }
    friend bool operator<=(const U128& a, const U128& b) { return !(b < a); }
    friend bool operator==(const U128& a, const U128& b) { return a.hi == b.hi && a.lo == b.lo; }
};
U128 u128_from_bytes(const uint8_t* b);  // 16 bytes, network order
uint32_t u32_from_bytes(const uint8_t* b);  // 4 bytes, network order

// Disjoint, sorted, merged (overlapping and adjacent prefixes joined) inclusive ranges.
struct CustomerRanges {
    std::vector<uint32_t> v4_lo, v4_hi;
    std::vector<U128> v6_lo, v6_hi;
    uint64_t prefixes = 0;  // as configured, duplicates and overlaps included
    uint32_t v4_prefixes = 0, v6_prefixes = 0;
};

inline constexpr uint32_t kV4Buckets = 65536;  // /16 buckets
inline constexpr uint32_t kV6SampleStep = 16;
// One slot's room: 128 MiB holds, for example, 1,000,000 IPv4 and 3,000,000 IPv6 ranges.
// Only what a set uses takes memory (the rest of the object is sparse).
inline constexpr uint64_t kCustomerSlotBytes = 128ull << 20;

struct CustomerSlotHeader {
    uint64_t generation;   // 0: never written
    uint64_t prefixes;     // as configured
    uint32_t v4_prefixes, v6_prefixes;
    uint32_t v4_ranges, v6_ranges;
    uint64_t pad_[4];
};
static_assert(sizeof(CustomerSlotHeader) == 64);

// In the control object (ControlBlock::customers); the slots follow the ControlBlock.
struct CustomerSetBlock {
    std::atomic<uint64_t> generation{0};  // of the active slot; 0 = no set published yet
    std::atomic<uint32_t> active{0};      // 0 or 1
    uint32_t pad_;
    uint64_t slot_offset[2];              // from the start of the control object
    uint64_t slot_bytes;
};

// Bytes a slot needs for these counts (header, tables, ranges).
uint64_t customer_slot_bytes(uint64_t v4_ranges, uint64_t v6_ranges);

// ctld: writes r into slot (room: bytes) with its generation last. False (nothing written)
// when it does not fit.
bool write_customer_slot(uint8_t* slot, uint64_t bytes, const CustomerRanges& r, uint64_t generation);

// A read-only view of one written slot. open() checks what it relies on (counts within the
// slot, monotone bucket table) and refuses the slot otherwise.
class CustomerSetView {
public:
    bool open(const uint8_t* slot, uint64_t bytes, std::string* why);
    uint64_t generation() const { return hdr_ ? hdr_->generation : 0; }
    // No prefix at all: every packet is metered.
    bool empty() const { return !hdr_ || hdr_->prefixes == 0; }
    bool contains_v4(uint32_t a) const;
    bool contains_v6(const U128& a) const;
    const CustomerSlotHeader* header() const { return hdr_; }

private:
    const CustomerSlotHeader* hdr_ = nullptr;
    const uint32_t* v4_bucket_ = nullptr;  // kV4Buckets + 1 entries
    const uint32_t* v4_lo_ = nullptr;
    const uint32_t* v4_hi_ = nullptr;
    const U128* v6_lo_ = nullptr;
    const U128* v6_hi_ = nullptr;
    const U128* v6_sample_ = nullptr;
    uint32_t n4_ = 0, n6_ = 0, samples_ = 0;
};

}  // namespace angel
