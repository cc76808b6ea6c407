#include "ctld/customers/customer_ranges.hpp"

#include <algorithm>
#include <numeric>

namespace angel {
namespace {

// Sorts (lo, hi) pairs by lo and joins those that overlap or touch. T is uint32_t or U128;
// next(v, &out) gives v + 1 unless v is the largest value.
template <typename T, typename Next>
void merge(std::vector<T>& lo, std::vector<T>& hi, Next next) {
    std::vector<uint32_t> order(lo.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return lo[a] < lo[b]; });
    std::vector<T> out_lo, out_hi;
    out_lo.reserve(lo.size());
    out_hi.reserve(lo.size());
    for (uint32_t i : order) {
        if (!out_lo.empty()) {
            T& h = out_hi.back();
            T after{};
            // Overlapping (lo <= h) or adjacent (lo == h + 1): one range.
            if (lo[i] <= h || (next(h, &after) && lo[i] == after)) {
                if (h < hi[i]) h = hi[i];
                continue;
            }
        }
        out_lo.push_back(lo[i]);
        out_hi.push_back(hi[i]);
    }
    out_lo.shrink_to_fit();
    out_hi.shrink_to_fit();
    lo = std::move(out_lo);
    hi = std::move(out_hi);
}

}  // namespace

CustomerRanges build_customer_ranges(const std::vector<Cidr>& nets) {
    CustomerRanges r;
    r.prefixes = nets.size();
    for (const Cidr& c : nets) {
        if (c.ip_version == 4) {
            const uint32_t a = u32_from_bytes(c.addr.data());
            const uint32_t host = c.prefix_len >= 32 ? 0 : (c.prefix_len == 0 ? UINT32_MAX : (UINT32_MAX >> c.prefix_len));
            r.v4_lo.push_back(a & ~host);
            r.v4_hi.push_back(a | host);
            ++r.v4_prefixes;
        } else {
            const U128 a = u128_from_bytes(c.addr.data());
            const unsigned p = c.prefix_len;
            // Host bits: the low 128 - p bits.
            const uint64_t host_hi = p >= 64 ? 0 : (p == 0 ? UINT64_MAX : (UINT64_MAX >> p));
            const uint64_t host_lo = p >= 128 ? 0 : (p <= 64 ? UINT64_MAX : (UINT64_MAX >> (p - 64)));
            r.v6_lo.push_back({a.hi & ~host_hi, a.lo & ~host_lo});
            r.v6_hi.push_back({a.hi | host_hi, a.lo | host_lo});
            ++r.v6_prefixes;
        }
    }
    merge(r.v4_lo, r.v4_hi, [](uint32_t v, uint32_t* out) {
        if (v == UINT32_MAX) return false;
        *out = v + 1;
        return true;
    });
    merge(r.v6_lo, r.v6_hi, [](const U128& v, U128* out) {
        if (v.hi == UINT64_MAX && v.lo == UINT64_MAX) return false;
        *out = v.lo == UINT64_MAX ? U128{v.hi + 1, 0} : U128{v.hi, v.lo + 1};
        return true;
    });
    return r;
}

}  // namespace angel
