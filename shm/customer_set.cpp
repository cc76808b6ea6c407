// The customer set's slot layout, its writer (ctld) and its lookups (procd).
#include "shm/customer_set.hpp"

#include <algorithm>
#include <cstring>

namespace angel {
namespace {

uint64_t align16(uint64_t n) { return (n + 15) & ~uint64_t{15}; }

// The first of n sorted values greater than v, without a branch per step: random addresses
// make every comparison a coin toss, and a mispredicted branch per step cost more than the
// memory reads (IPv6: 211 -> 112 ns per lookup at 1,000 prefixes, bench/customer_set_tool).
template <typename T, typename Le>
size_t upper_bound_index(const T* first, size_t n, Le le) {
    if (n == 0) return 0;
    const T* base = first;
    while (n > 1) {
        const size_t half = n / 2;
        base = le(base[half]) ? base + half : base;
        n -= half;
    }
    return static_cast<size_t>(base - first) + (le(*base) ? 1 : 0);
}

unsigned __int128 wide(const U128& v) { return (static_cast<unsigned __int128>(v.hi) << 64) | v.lo; }

// Where each part of a slot lies, from the counts alone: the reader computes it itself and
// never takes an offset from the slot.
struct SlotLayout {
    uint64_t bucket, v4_lo, v4_hi, v6_lo, v6_hi, v6_sample, end;
    uint64_t samples;
};

SlotLayout layout_for(uint64_t n4, uint64_t n6) {
    SlotLayout l{};
    l.samples = (n6 + kV6SampleStep - 1) / kV6SampleStep;
    l.bucket = sizeof(CustomerSlotHeader);
    l.v4_lo = align16(l.bucket + (uint64_t{kV4Buckets} + 1) * sizeof(uint32_t));
    l.v4_hi = l.v4_lo + n4 * sizeof(uint32_t);
    l.v6_lo = align16(l.v4_hi + n4 * sizeof(uint32_t));
    l.v6_hi = l.v6_lo + n6 * sizeof(U128);
    l.v6_sample = l.v6_hi + n6 * sizeof(U128);
    l.end = l.v6_sample + l.samples * sizeof(U128);
    return l;
}

}  // namespace

U128 u128_from_bytes(const uint8_t* b) {
    U128 v;
    for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | b[i];
    for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | b[i];
    return v;
}

uint32_t u32_from_bytes(const uint8_t* b) {
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

uint64_t customer_slot_bytes(uint64_t v4_ranges, uint64_t v6_ranges) { return layout_for(v4_ranges, v6_ranges).end; }

bool write_customer_slot(uint8_t* slot, uint64_t bytes, const CustomerRanges& r, uint64_t generation) {
    const uint64_t n4 = r.v4_lo.size(), n6 = r.v6_lo.size();
    const SlotLayout l = layout_for(n4, n6);
    if (l.end > bytes || n4 > UINT32_MAX || n6 > UINT32_MAX) return false;
    auto* hdr = reinterpret_cast<CustomerSlotHeader*>(slot);
    // A reader never sees this slot while it is written (see the header); the generation
    // goes last all the same, so a slot cut short by a crash of ctld reads as unwritten.
    std::atomic_ref<uint64_t>(hdr->generation).store(0, std::memory_order_relaxed);
    auto* bucket = reinterpret_cast<uint32_t*>(slot + l.bucket);
    // bucket[b] = the first range starting at or after b << 16; bucket[kV4Buckets] = n4.
    uint64_t i = 0;
    for (uint64_t b = 0; b < kV4Buckets; ++b) {
        while (i < n4 && (r.v4_lo[i] >> 16) < b) ++i;
        bucket[b] = static_cast<uint32_t>(i);
    }
    bucket[kV4Buckets] = static_cast<uint32_t>(n4);
    if (n4) {
        std::memcpy(slot + l.v4_lo, r.v4_lo.data(), n4 * sizeof(uint32_t));
        std::memcpy(slot + l.v4_hi, r.v4_hi.data(), n4 * sizeof(uint32_t));
    }
    if (n6) {
        std::memcpy(slot + l.v6_lo, r.v6_lo.data(), n6 * sizeof(U128));
        std::memcpy(slot + l.v6_hi, r.v6_hi.data(), n6 * sizeof(U128));
        auto* sample = reinterpret_cast<U128*>(slot + l.v6_sample);
        for (uint64_t s = 0; s < l.samples; ++s) sample[s] = r.v6_lo[s * kV6SampleStep];
    }
    hdr->prefixes = r.prefixes;
    hdr->v4_prefixes = r.v4_prefixes;
    hdr->v6_prefixes = r.v6_prefixes;
    hdr->v4_ranges = static_cast<uint32_t>(n4);
    hdr->v6_ranges = static_cast<uint32_t>(n6);
    std::atomic_ref<uint64_t>(hdr->generation).store(generation, std::memory_order_release);
    return true;
}

bool CustomerSetView::open(const uint8_t* slot, uint64_t bytes, std::string* why) {
    auto fail = [&](const char* w) {
        if (why) *why = w;
        return false;
    };
    if (bytes < sizeof(CustomerSlotHeader)) return fail("the slot is too small");
    const auto* hdr = reinterpret_cast<const CustomerSlotHeader*>(slot);
    if (std::atomic_ref<const uint64_t>(hdr->generation).load(std::memory_order_acquire) == 0)
        return fail("the slot was never written");
    const SlotLayout l = layout_for(hdr->v4_ranges, hdr->v6_ranges);
    if (l.end > bytes) return fail("the slot's range counts run past its end");
    const auto* bucket = reinterpret_cast<const uint32_t*>(slot + l.bucket);
    if (bucket[kV4Buckets] != hdr->v4_ranges) return fail("the IPv4 bucket table does not end at the range count");
    for (uint32_t b = 0; b < kV4Buckets; ++b)
        if (bucket[b] > bucket[b + 1]) return fail("the IPv4 bucket table is not in order");
    hdr_ = hdr;
    v4_bucket_ = bucket;
    v4_lo_ = reinterpret_cast<const uint32_t*>(slot + l.v4_lo);
    v4_hi_ = reinterpret_cast<const uint32_t*>(slot + l.v4_hi);
    v6_lo_ = reinterpret_cast<const U128*>(slot + l.v6_lo);
    v6_hi_ = reinterpret_cast<const U128*>(slot + l.v6_hi);
    v6_sample_ = reinterpret_cast<const U128*>(slot + l.v6_sample);
    n4_ = hdr->v4_ranges;
    n6_ = hdr->v6_ranges;
    samples_ = static_cast<uint32_t>(l.samples);
    return true;
}

bool CustomerSetView::contains_v4(uint32_t a) const {
    // The range that may hold a: the last one starting at or before it. It starts in a's
    // bucket, or it is the one just before the bucket (a range may span buckets).
    const uint32_t b = a >> 16;
    const uint32_t first = v4_bucket_[b], last = v4_bucket_[b + 1];
    const size_t p = first + upper_bound_index(v4_lo_ + first, last - first, [a](uint32_t x) { return x <= a; });
    if (p == 0) return false;
    return v4_hi_[p - 1] >= a;
}

bool CustomerSetView::contains_v6(const U128& a) const {
    if (n6_ == 0) return false;
    const unsigned __int128 w = wide(a);
    auto le = [w](const U128& x) { return wide(x) <= w; };
    // The sample block holding the last start <= a, then the same inside the block.
    const size_t s = upper_bound_index(v6_sample_, samples_, le);
    if (s == 0) return false;
    const uint64_t from = uint64_t(s - 1) * kV6SampleStep;
    const uint64_t to = std::min<uint64_t>(from + kV6SampleStep, n6_);
    const size_t p = from + upper_bound_index(v6_lo_ + from, to - from, le);
    return w <= wide(v6_hi_[p - 1]);  // p > from: v6_lo_[from] is the sample <= a
}

}  // namespace angel
