// Canonical bidirectional flow key and the keyed 32-bit flow ID (docs/flow-id.md).
// Used by procd (FlowMap), by the tests and by anything that must reproduce flow IDs.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "common/packet/parsed_packet.hpp"

namespace angel {

// 40 bytes, no implicit padding, so it can be hashed and compared as bytes.
// Canonical order: addr_lo <= addr_hi (bytewise); port_lo belongs to addr_lo.
// When both addresses are equal, the lower port comes first.
struct FlowKey {
    uint8_t ip_version = 0;
    uint8_t proto = 0;
    uint16_t port_lo = 0;  // host byte order
    uint16_t port_hi = 0;
    uint16_t reserved = 0; // always 0
    IpBytes addr_lo{};
    IpBytes addr_hi{};

    bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof o) == 0; }
};
static_assert(sizeof(FlowKey) == 40);

// 128-bit SipHash key (flow.id_key), two little-endian 64-bit halves of the 16 key bytes.
struct FlowIdKey {
    uint64_t k0 = 0;
    uint64_t k1 = 0;
};

// Parses 32 hex digits into a key; nullopt on any other input.
std::optional<FlowIdKey> parse_flow_id_key(std::string_view hex);
std::string format_flow_id_key(const FlowIdKey& k);

// Builds the canonical key. *reversed is set when the packet travels from addr_hi to addr_lo
// (that is: its source is the canonical "hi" side). Inline, below.
FlowKey make_flow_key(const ParsedPacket& p, bool* reversed);
// The same into key, and flow_bucket_hash() of it, for procd's per-packet path.
void make_flow_key(const ParsedPacket& p, const FlowIdKey& id_key, FlowKey& key, bool* reversed,
                   uint32_t* bucket_hash);

// The 32-bit flow ID: low 32 bits of SipHash-2-4(key, serialized canonical key),
// serialization as in docs/flow-id.md.
uint32_t flow_id_hash(const FlowKey& k, const FlowIdKey& key);

// The fixed byte serialization that flow_id_hash feeds to SipHash (docs/flow-id.md):
// version, proto, port_lo (big-endian), port_hi (big-endian), addr_lo, addr_hi, with 4-byte
// addresses for IPv4 and 16-byte addresses otherwise. Returns the length (14 or 38).
inline constexpr size_t kFlowKeySerializedMax = 38;
size_t serialize_flow_key(const FlowKey& k, uint8_t out[kFlowKeySerializedMax]);

// A fast keyed hash of the canonical key for hash-table buckets, used on every packet.
// Not the flow ID (that is flow_id_hash, computed once per new flow): this one only has to
// spread keys and be unpredictable without the key, so that crafted tuples cannot pile
// into one bucket. Multiply-fold mixing of the key's five 64-bit words with the secret key.
// Inline, below.
uint32_t flow_bucket_hash(const FlowKey& k, const FlowIdKey& key);

// SipHash-2-4 over arbitrary bytes (exposed for test vectors).
uint64_t siphash24(const FlowIdKey& key, const void* data, size_t len);

// ---- The per-packet part, inline: procd builds and hashes a key for every packet. ----
// The key is built as five 64-bit words in registers and hashed from them: building it field
// by field and reading it back as words stalls on store forwarding, and a 16-byte memcmp for
// the canonical order is a library call. The words are the key's bytes in memory order.
namespace flow_key_detail {

inline constexpr bool kLittle = std::endian::native == std::endian::little;

inline uint64_t load_word(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
// An IPv4 address as the first 4 bytes of a word whose other 4 bytes are zero.
inline uint64_t load_v4_word(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return kLittle ? uint64_t{v} : uint64_t{v} << 32;
}
// A word's value in bytewise (memcmp) order.
inline uint64_t bytewise(uint64_t w) { return kLittle ? __builtin_bswap64(w) : w; }

// 64x64 -> 128-bit multiply folded to 64 bits: every input bit reaches every output bit.
inline uint64_t fold_mul(uint64_t a, uint64_t b) {
    const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
    return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline uint32_t bucket_hash_words(const uint64_t w[5], const FlowIdKey& key) {
    uint64_t h = key.k0;
    for (int i = 0; i < 5; ++i)
        h = fold_mul(h ^ w[i], key.k1 ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1)));
    h = fold_mul(h, 0xD6E8FEB86659FD93ull ^ key.k0);
    return static_cast<uint32_t>(h ^ (h >> 32));
}

// The canonical key's words; *reversed as for make_flow_key.
inline void canonical_words(const ParsedPacket& p, uint64_t w[5], bool* reversed) {
    // Only the address bytes of the family take part, so stray bytes past an IPv4 address
    // can never make two keys of the same flow differ.
    uint64_t s0, s1 = 0, d0, d1 = 0;
    if (p.ip_version == 4) {
        s0 = load_v4_word(p.src.data());
        d0 = load_v4_word(p.dst.data());
    } else {
        s0 = load_word(p.src.data());
        s1 = load_word(p.src.data() + 8);
        d0 = load_word(p.dst.data());
        d1 = load_word(p.dst.data() + 8);
    }
    // Source is "hi" when its address is bytewise greater, or equal with the greater port.
    bool rev;
    if (s0 != d0)
        rev = bytewise(s0) > bytewise(d0);
    else if (s1 != d1)
        rev = bytewise(s1) > bytewise(d1);
    else
        rev = p.sport > p.dport;
    const uint16_t port_lo = rev ? p.dport : p.sport;
    const uint16_t port_hi = rev ? p.sport : p.dport;
    if constexpr (kLittle) {
        // ip_version, proto, port_lo, port_hi, reserved (0): FlowKey's first 8 bytes.
        w[0] = uint64_t{p.ip_version} | uint64_t{p.proto} << 8 | uint64_t{port_lo} << 16 |
               uint64_t{port_hi} << 32;
    } else {
        FlowKey head;
        head.ip_version = p.ip_version;
        head.proto = p.proto;
        head.port_lo = port_lo;
        head.port_hi = port_hi;
        std::memcpy(&w[0], &head, 8);
    }
    w[1] = rev ? d0 : s0;
    w[2] = rev ? d1 : s1;
    w[3] = rev ? s0 : d0;
    w[4] = rev ? s1 : d1;
    *reversed = rev;
}

inline void store_words(FlowKey& k, const uint64_t w[5]) { std::memcpy(static_cast<void*>(&k), w, sizeof k); }

}  // namespace flow_key_detail

inline FlowKey make_flow_key(const ParsedPacket& p, bool* reversed) {
    uint64_t w[5];
    bool rev;
    flow_key_detail::canonical_words(p, w, &rev);
    if (reversed) *reversed = rev;
    FlowKey k;
    flow_key_detail::store_words(k, w);
    return k;
}

inline void make_flow_key(const ParsedPacket& p, const FlowIdKey& id_key, FlowKey& key, bool* reversed,
                          uint32_t* bucket_hash) {
    uint64_t w[5];
    flow_key_detail::canonical_words(p, w, reversed);
    *bucket_hash = flow_key_detail::bucket_hash_words(w, id_key);
    flow_key_detail::store_words(key, w);
}

inline uint32_t flow_bucket_hash(const FlowKey& k, const FlowIdKey& key) {
    uint64_t w[5];
    std::memcpy(w, &k, sizeof w);
    return flow_key_detail::bucket_hash_words(w, key);
}

}  // namespace angel
