// Canonical flow key, SipHash-2-4 and the 32-bit flow ID. The algorithm is specified byte by
// byte in docs/flow-id.md; tools/flow_id_reference.py is an independent implementation of it.
#include "common/flow_key.hpp"

#include <cstring>

#include <bit>

namespace angel {

namespace {

int hex_digit_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Little-endian loads: the result does not depend on the host byte order.
uint64_t load_le64(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
    return v;
}

// A full word: one memcpy (a single load) on little-endian hosts, shifts elsewhere.
uint64_t load_le64_word(const uint8_t* p) {
    if constexpr (std::endian::native == std::endian::little) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
    } else {
        return load_le64(p, 8);
    }
}

void store_le64(uint8_t* p, uint64_t v) {
    for (size_t i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

struct SipState {
    uint64_t v0, v1, v2, v3;

    void round() {
        v0 += v1; v1 = std::rotl(v1, 13); v1 ^= v0; v0 = std::rotl(v0, 32);
        v2 += v3; v3 = std::rotl(v3, 16); v3 ^= v2;
        v0 += v3; v3 = std::rotl(v3, 21); v3 ^= v0;
        v2 += v1; v1 = std::rotl(v1, 17); v1 ^= v2; v2 = std::rotl(v2, 32);
    }

    // c = 2 compression rounds per 8-byte message word.
    void absorb(uint64_t m) {
        v3 ^= m;
        round();
        round();
        v0 ^= m;
    }
};

// An IPv4 key hashes 4 address bytes, anything else 16.
size_t address_length(uint8_t ip_version) { return ip_version == 4 ? 4 : 16; }

}  // namespace

std::optional<FlowIdKey> parse_flow_id_key(std::string_view hex) {
    if (hex.size() != 32) return std::nullopt;
    uint8_t bytes[16];
    for (size_t i = 0; i < 16; ++i) {
        int hi = hex_digit_value(hex[2 * i]);
        int lo = hex_digit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    // Same convention as the SipHash paper: k0 = bytes 0..7, k1 = bytes 8..15, little-endian.
    return FlowIdKey{load_le64(bytes, 8), load_le64(bytes + 8, 8)};
}

std::string format_flow_id_key(const FlowIdKey& k) {
    static constexpr char digits[] = "0123456789abcdef";
    uint8_t bytes[16];
    store_le64(bytes, k.k0);
    store_le64(bytes + 8, k.k1);
    std::string out(32, '0');
    for (size_t i = 0; i < 16; ++i) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    return out;
}

size_t serialize_flow_key(const FlowKey& k, uint8_t out[kFlowKeySerializedMax]) {
    const size_t alen = address_length(k.ip_version);
    out[0] = k.ip_version;
    out[1] = k.proto;
    out[2] = static_cast<uint8_t>(k.port_lo >> 8);
    out[3] = static_cast<uint8_t>(k.port_lo);
    out[4] = static_cast<uint8_t>(k.port_hi >> 8);
    out[5] = static_cast<uint8_t>(k.port_hi);
    if (alen == 4) {
        std::memcpy(out + 6, k.addr_lo.data(), 4);
        std::memcpy(out + 10, k.addr_hi.data(), 4);
    } else {
        std::memcpy(out + 6, k.addr_lo.data(), 16);
        std::memcpy(out + 22, k.addr_hi.data(), 16);
    }
    return 6 + 2 * alen;
}

uint32_t flow_id_hash(const FlowKey& k, const FlowIdKey& key) {
    uint8_t buf[kFlowKeySerializedMax];
    size_t n = serialize_flow_key(k, buf);
    return static_cast<uint32_t>(siphash24(key, buf, n));
}

uint64_t siphash24(const FlowIdKey& key, const void* data, size_t len) {
    // Initial constants: "somepseudorandomlygeneratedbytes" as four big-endian words.
    SipState s{key.k0 ^ 0x736f6d6570736575ULL, key.k1 ^ 0x646f72616e646f6dULL,
               key.k0 ^ 0x6c7967656e657261ULL, key.k1 ^ 0x7465646279746573ULL};
    const auto* p = static_cast<const uint8_t*>(data);
    const size_t full = len & ~size_t{7};
    for (size_t i = 0; i < full; i += 8) s.absorb(load_le64_word(p + i));
    // Last word: the 0..7 remaining bytes, with len mod 256 in the most significant byte.
    uint64_t last = load_le64(p + full, len - full) | (uint64_t{len & 0xff} << 56);
    s.absorb(last);
    // d = 4 finalization rounds.
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; ++i) s.round();
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

}  // namespace angel
