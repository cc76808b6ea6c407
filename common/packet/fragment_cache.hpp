// Remembers the ports of first fragments so that later fragments of the same datagram join the
// same flow. Bounded: a fixed array (power of two) allocated once, 4-way buckets, entries age
// out; a live entry pushed out by a newer one is an eviction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/packet/parsed_packet.hpp"

namespace angel {

struct FragmentKey {
    IpBytes src{};
    IpBytes dst{};
    uint32_t id = 0;          // IPv4 identification (16 bit) or IPv6 fragment ID (32 bit)
    uint8_t ip_version = 0;
    uint8_t proto = 0;        // as named by every fragment (IPv6: the fragment header's next)

    bool operator==(const FragmentKey&) const = default;
};

struct FragmentPorts {
    uint16_t sport = 0;
    uint16_t dport = 0;
    uint8_t proto = 0;        // transport protocol found in the first fragment
    bool ports_known = false;
};

class FragmentCache {
public:
    // Fragments of one datagram arrive within seconds; 30 s after the latest fragment of a
    // datagram (common reassembly timeouts are 30-60 s) its entry may be reused.
    static constexpr uint64_t kDefaultMaxAgeNs = 30ull * 1000 * 1000 * 1000;

    explicit FragmentCache(size_t entries, uint64_t max_age_ns = kDefaultMaxAgeNs);

    // Records a first fragment. Returns true when a live, unfinished entry was evicted.
    bool remember(const FragmentKey& key, const FragmentPorts& ports, uint64_t now_ns);

    // Finds the first fragment of a later one. `last` marks the datagram's final fragment:
    // its entry may then be reused without counting an eviction (it stays findable until
    // overwritten, for fragments that arrive out of order).
    bool lookup(const FragmentKey& key, bool last, uint64_t now_ns, FragmentPorts& out);

    size_t capacity() const { return mask_ + 1; }

private:
    static constexpr size_t kWays = 4;

    struct Entry {
        FragmentKey key;
        FragmentPorts ports;
        uint64_t stamp_ns = 0;
        bool used = false;      // holds a datagram
        bool finished = false;  // its last fragment was seen
    };

    bool is_live(const Entry& e, uint64_t now_ns) const;
    size_t bucket_of(const FragmentKey& key) const;

    std::unique_ptr<Entry[]> entries_;
    size_t mask_;  // capacity - 1
    uint64_t max_age_ns_;
};

}  // namespace angel
