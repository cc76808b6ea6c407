#include "common/packet/fragment_cache.hpp"

#include <cstring>

namespace angel {

namespace {
size_t round_up_pow2(size_t n, size_t minimum) {
    size_t p = minimum;
    while (p < n) p <<= 1;
    return p;
}

uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// A cheap multiplicative mix; the cache only needs spread, not secrecy (a hostile sender can
// at worst evict fragment entries, which is counted and only costs ports on later fragments).
uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}
}  // namespace

FragmentCache::FragmentCache(size_t entries, uint64_t max_age_ns)
    : mask_(round_up_pow2(entries, kWays) - 1), max_age_ns_(max_age_ns) {
    entries_ = std::make_unique<Entry[]>(mask_ + 1);
}

bool FragmentCache::is_live(const Entry& e, uint64_t now_ns) const {
    if (!e.used) return false;
    // Timestamps may step back (merged interfaces): treat such an entry as fresh.
    return now_ns < e.stamp_ns || now_ns - e.stamp_ns <= max_age_ns_;
}

size_t FragmentCache::bucket_of(const FragmentKey& k) const {
    uint64_t h = mix(0, (uint64_t{k.id} << 16) | (uint64_t{k.ip_version} << 8) | k.proto);
    h = mix(h, load64(k.src.data()));
    h = mix(h, load64(k.src.data() + 8));
    h = mix(h, load64(k.dst.data()));
    h = mix(h, load64(k.dst.data() + 8));
    return static_cast<size_t>(h) & mask_ & ~(kWays - 1);
}

bool FragmentCache::remember(const FragmentKey& key, const FragmentPorts& ports,
                             uint64_t now_ns) {
    Entry* bucket = &entries_[bucket_of(key)];
    // Preference: the same datagram (a retransmitted first fragment), then a free, expired
    // or finished slot, then the oldest live entry (an eviction).
    Entry* victim = nullptr;
    bool victim_reusable = false;
    for (size_t i = 0; i < kWays; ++i) {
        Entry& e = bucket[i];
        if (e.used && e.key == key) {
            victim = &e;
            victim_reusable = true;
            break;
        }
        const bool reusable = !is_live(e, now_ns) || e.finished;
        if (reusable) {
            if (!victim_reusable) {
                victim = &e;
                victim_reusable = true;
            }
        } else if (victim == nullptr || (!victim_reusable && e.stamp_ns < victim->stamp_ns)) {
            victim = &e;
        }
    }
    const bool evicted = !victim_reusable;
    *victim = Entry{key, ports, now_ns, true, false};
    return evicted;
}

bool FragmentCache::lookup(const FragmentKey& key, bool last, uint64_t now_ns,
                           FragmentPorts& out) {
    Entry* bucket = &entries_[bucket_of(key)];
    for (size_t i = 0; i < kWays; ++i) {
        Entry& e = bucket[i];
        if (is_live(e, now_ns) && e.key == key) {
            out = e.ports;
            // A datagram still arriving stays alive: age counts from its latest fragment.
            if (now_ns > e.stamp_ns) e.stamp_ns = now_ns;
            if (last) e.finished = true;
            return true;
        }
    }
    return false;
}

}  // namespace angel
