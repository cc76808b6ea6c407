// Canonical bidirectional flow key and the keyed 32-bit flow ID (docs/flow-id.md).
// Used by procd (FlowMap), by the tests and by anything that must reproduce flow IDs.
#pragma once
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
// (that is: its source is the canonical "hi" side).
FlowKey make_flow_key(const ParsedPacket& p, bool* reversed);

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
uint32_t flow_bucket_hash(const FlowKey& k, const FlowIdKey& key);

// SipHash-2-4 over arbitrary bytes (exposed for test vectors).
uint64_t siphash24(const FlowIdKey& key, const void* data, size_t len);

}  // namespace angel
