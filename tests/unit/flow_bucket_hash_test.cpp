// The per-packet bucket hash: spreads keys evenly, depends on the secret key, and is the
// same for both directions of a flow (it hashes the canonical key).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/flow_key.hpp"

using namespace angel;

namespace {

ParsedPacket v4_packet(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
    ParsedPacket p;
    p.ip_version = 4;
    p.proto = 6;
    for (int i = 0; i < 4; ++i) {
        p.src[i] = static_cast<uint8_t>(src >> (24 - 8 * i));
        p.dst[i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
    }
    p.sport = sport;
    p.dport = dport;
    return p;
}

}  // namespace

TEST(FlowBucketHash, SameForBothDirections) {
    const FlowIdKey key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    bool rev = false;
    const FlowKey a = make_flow_key(v4_packet(0xC6120001, 0xC6130002, 49152, 443), &rev);
    const FlowKey b = make_flow_key(v4_packet(0xC6130002, 0xC6120001, 443, 49152), &rev);
    EXPECT_EQ(flow_bucket_hash(a, key), flow_bucket_hash(b, key));
}

TEST(FlowBucketHash, DependsOnTheSecretKey) {
    bool rev = false;
    const FlowKey k = make_flow_key(v4_packet(0xC6120001, 0xC6130002, 49152, 443), &rev);
    int same = 0;
    for (uint64_t i = 1; i <= 64; ++i)
        same += flow_bucket_hash(k, FlowIdKey{i, 0}) == flow_bucket_hash(k, FlowIdKey{i + 1, 0});
    EXPECT_LE(same, 1);  // a chance equality of 32-bit values, at most
}

// Sequential tuples (the kind of structure real traffic and floods have) must fill 4096
// buckets evenly: chi-square with 4095 degrees of freedom below its p = 0.001 bound
// (Wilson-Hilferty: df + 3.09 * sqrt(2 df) ~ 4375).
TEST(FlowBucketHash, SequentialTuplesSpreadEvenly) {
    const FlowIdKey key{0x243F6A8885A308D3ull, 0x13198A2E03707344ull};
    constexpr uint32_t kBuckets = 4096;
    constexpr uint32_t kKeys = 1u << 20;
    std::vector<uint32_t> count(kBuckets, 0);
    bool rev = false;
    for (uint32_t i = 0; i < kKeys; ++i) {
        const FlowKey k = make_flow_key(v4_packet(0xC6120000 + (i >> 8), 0xC6130001, 
                                                  static_cast<uint16_t>(32768 + (i & 0xFF)), 443), &rev);
        ++count[flow_bucket_hash(k, key) & (kBuckets - 1)];
    }
    const double expected = static_cast<double>(kKeys) / kBuckets;
    double chi2 = 0;
    for (uint32_t c : count) chi2 += (c - expected) * (c - expected) / expected;
    const double df = kBuckets - 1;
    EXPECT_LT(chi2, df + 3.09 * std::sqrt(2 * df)) << "chi-square " << chi2;
    EXPECT_GT(chi2, df - 3.09 * std::sqrt(2 * df)) << "chi-square " << chi2 << " (too even to be a hash)";
}
