// Flow key and flow ID: SipHash-2-4 against the paper, canonical ordering, the published
// vectors of docs/flow-id.md (and the Python reference that produced them), ID distribution.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/flow_key.hpp"

namespace angel {
namespace {

const FlowIdKey kPaperKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

// ---------------------------------------------------------------------------------------
// SipHash-2-4

TEST(SipHash24, PaperVectors) {
    // Key 00 01 .. 0f, message 00 01 .. (n-1); expected values as 64-bit integers (the paper's
    // appendix prints the 15-byte one, a129ca6149be45e5; the others are the reference
    // implementation's vectors for n = 0..9).
    const uint64_t expected[] = {
        0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL,
        0x85676696d7fb7e2dULL, 0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL,
        0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL, 0x93f5f5799a932462ULL,
        0x9e0082df0ba9e4b0ULL,
    };
    uint8_t msg[16];
    for (int i = 0; i < 16; ++i) msg[i] = static_cast<uint8_t>(i);
    for (size_t n = 0; n < std::size(expected); ++n)
        EXPECT_EQ(siphash24(kPaperKey, msg, n), expected[n]) << "length " << n;
    EXPECT_EQ(siphash24(kPaperKey, msg, 15), 0xa129ca6149be45e5ULL);
}

// ---------------------------------------------------------------------------------------
// flow.id_key text form

TEST(FlowIdKeyText, ParsesPaperKeyLittleEndianHalves) {
    auto k = parse_flow_id_key("000102030405060708090a0b0c0d0e0f");
    ASSERT_TRUE(k);
    EXPECT_EQ(k->k0, kPaperKey.k0);
    EXPECT_EQ(k->k1, kPaperKey.k1);
    EXPECT_EQ(format_flow_id_key(*k), "000102030405060708090a0b0c0d0e0f");
}

TEST(FlowIdKeyText, UppercaseAcceptedAndFormattedLowercase) {
    auto k = parse_flow_id_key("5A3E9C7D21F04B86A1D2C3E4F5061728");
    ASSERT_TRUE(k);
    EXPECT_EQ(format_flow_id_key(*k), "5a3e9c7d21f04b86a1d2c3e4f5061728");
}

TEST(FlowIdKeyText, RoundTripsRandomKeys) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 1000; ++i) {
        FlowIdKey k{rng(), rng()};
        auto back = parse_flow_id_key(format_flow_id_key(k));
        ASSERT_TRUE(back);
        EXPECT_EQ(back->k0, k.k0);
        EXPECT_EQ(back->k1, k.k1);
    }
}

TEST(FlowIdKeyText, RejectsBadInput) {
    const char* bad[] = {
        "",
        "000102030405060708090a0b0c0d0e0",    // 31 digits
        "000102030405060708090a0b0c0d0e0f0",  // 33 digits
        "0x0102030405060708090a0b0c0d0e0f",   // prefix
        "000102030405060708090a0b0c0d0e0g",   // not hex
        " 00102030405060708090a0b0c0d0e0f",   // space
        "00010203040506070809-a0b0c0d0e0f",   // separator
    };
    for (const char* s : bad) EXPECT_FALSE(parse_flow_id_key(s)) << '"' << s << '"';
    EXPECT_FALSE(parse_flow_id_key(std::string_view("00010203040506070809\0a0b0c0d0e0f", 32)));
}

// ---------------------------------------------------------------------------------------
// Canonical key and ID

ParsedPacket packet(uint8_t proto, const char* src, uint16_t sport, const char* dst,
                    uint16_t dport) {
    ParsedPacket p;
    p.proto = proto;
    p.sport = sport;
    p.dport = dport;
    p.ports_known = true;
    bool v6 = std::string(src).find(':') != std::string::npos;
    p.ip_version = v6 ? 6 : 4;
    int af = v6 ? AF_INET6 : AF_INET;
    EXPECT_EQ(inet_pton(af, src, p.src.data()), 1) << src;
    EXPECT_EQ(inet_pton(af, dst, p.dst.data()), 1) << dst;
    return p;
}

ParsedPacket reverse_of(const ParsedPacket& p) {
    ParsedPacket r = p;
    std::swap(r.src, r.dst);
    std::swap(r.sport, r.dport);
    return r;
}

std::string hex(const uint8_t* b, size_t n) {
    static const char d[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        s += d[b[i] >> 4];
        s += d[b[i] & 0xf];
    }
    return s;
}

struct Vector {
    std::string name, key;
    int proto;
    std::string src;
    int sport;
    std::string dst;
    int dport;
    std::string serialized;
    uint32_t id;
};

// Copied from docs/flow-id.md (which tools/flow_id_reference.py printed).
const Vector kPublished[] = {
    {"ipv4-tcp", "000102030405060708090a0b0c0d0e0f", 6, "198.18.0.1", 49152, "198.19.0.2", 443,
     "0406c00001bbc6120001c6130002", 1823009719u},
    {"ipv4-tcp-reversed", "000102030405060708090a0b0c0d0e0f", 6, "198.19.0.2", 443,
     "198.18.0.1", 49152, "0406c00001bbc6120001c6130002", 1823009719u},
    {"ipv4-udp-same-endpoints", "000102030405060708090a0b0c0d0e0f", 17, "198.18.0.1", 49152,
     "198.19.0.2", 443, "0411c00001bbc6120001c6130002", 1985468504u},
    {"ipv4-tcp-other-key", "5a3e9c7d21f04b86a1d2c3e4f5061728", 6, "198.18.0.1", 49152,
     "198.19.0.2", 443, "0406c00001bbc6120001c6130002", 764048081u},
    {"ipv4-icmp-no-ports", "000102030405060708090a0b0c0d0e0f", 1, "198.18.0.1", 0, "198.19.0.2",
     0, "040100000000c6120001c6130002", 1513291299u},
    {"ipv4-equal-addrs", "000102030405060708090a0b0c0d0e0f", 17, "198.18.0.5", 5000,
     "198.18.0.5", 80, "041100501388c6120005c6120005", 1650639923u},
    {"ipv4-equal-addrs-swapped-ports", "000102030405060708090a0b0c0d0e0f", 17, "198.18.0.5", 80,
     "198.18.0.5", 5000, "041100501388c6120005c6120005", 1650639923u},
    {"ipv6-tcp", "000102030405060708090a0b0c0d0e0f", 6, "2001:db8:1::20", 443, "2001:db8::10",
     55555,
     "0606d90301bb20010db800000000000000000000001020010db8000100000000000000000020",
     4169617929u},
    {"ipv6-tcp-reversed", "000102030405060708090a0b0c0d0e0f", 6, "2001:db8::10", 55555,
     "2001:db8:1::20", 443,
     "0606d90301bb20010db800000000000000000000001020010db8000100000000000000000020",
     4169617929u},
    {"ipv6-udp-same-endpoints", "000102030405060708090a0b0c0d0e0f", 17, "2001:db8:1::20", 443,
     "2001:db8::10", 55555,
     "0611d90301bb20010db800000000000000000000001020010db8000100000000000000000020",
     1361756391u},
};

void check_vector(const Vector& v) {
    SCOPED_TRACE(v.name);
    auto key = parse_flow_id_key(v.key);
    ASSERT_TRUE(key);
    ParsedPacket p = packet(static_cast<uint8_t>(v.proto), v.src.c_str(),
                            static_cast<uint16_t>(v.sport), v.dst.c_str(),
                            static_cast<uint16_t>(v.dport));
    bool reversed = false;
    FlowKey k = make_flow_key(p, &reversed);
    uint8_t buf[kFlowKeySerializedMax];
    size_t n = serialize_flow_key(k, buf);
    EXPECT_EQ(hex(buf, n), v.serialized);
    EXPECT_EQ(flow_id_hash(k, *key), v.id);
}

TEST(FlowId, PublishedVectors) {
    for (const Vector& v : kPublished) check_vector(v);
}

// The Python reference is an independent implementation; when python3 is installed, every
// vector it prints must match this implementation and the hard-coded table above.
TEST(FlowId, AgreesWithPythonReference) {
    const char* src_dir = std::getenv("ANGEL_SOURCE_DIR");
    std::string script = std::string(src_dir ? src_dir : ANGEL_SOURCE_DIR) +
                         "/tools/flow_id_reference.py";
    std::string cmd = "python3 '" + script + "' --machine 2>&1";
    FILE* f = popen(cmd.c_str(), "r");
    ASSERT_NE(f, nullptr);
    std::string out;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) out.append(chunk, got);
    int status = pclose(f);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) GTEST_SKIP() << "python3 not found";
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;

    std::istringstream lines(out);
    std::string line;
    size_t count = 0;
    while (std::getline(lines, line)) {
        std::vector<std::string> f;
        std::istringstream fields(line);
        for (std::string s; std::getline(fields, s, '|');) f.push_back(s);
        ASSERT_EQ(f.size(), 10u) << line;
        Vector v{f[0], f[1], std::stoi(f[2]), f[3], std::stoi(f[4]), f[5], std::stoi(f[6]), f[7],
                 static_cast<uint32_t>(std::stoul(f[8]))};
        check_vector(v);
        ASSERT_LT(count, std::size(kPublished));
        EXPECT_EQ(v.name, kPublished[count].name);
        EXPECT_EQ(v.id, kPublished[count].id) << v.name;
        ++count;
    }
    EXPECT_EQ(count, std::size(kPublished));
}

ParsedPacket random_packet(std::mt19937_64& rng) {
    ParsedPacket p;
    p.ip_version = (rng() % 5 == 0) ? 6 : 4;
    const uint8_t protos[] = {6, 17, 1, 58, 132, 47};
    p.proto = protos[rng() % std::size(protos)];
    size_t alen = p.ip_version == 4 ? 4 : 16;
    for (size_t i = 0; i < alen; ++i) {
        p.src[i] = static_cast<uint8_t>(rng());
        p.dst[i] = static_cast<uint8_t>(rng());
    }
    // Exercise the tie-breaks: sometimes the same address, sometimes also the same port.
    if (rng() % 16 == 0) p.dst = p.src;
    p.sport = static_cast<uint16_t>(rng());
    p.dport = (rng() % 64 == 0) ? p.sport : static_cast<uint16_t>(rng());
    p.ports_known = true;
    return p;
}

TEST(FlowKeyCanonical, DirectionSymmetryOnRandomPackets) {
    std::mt19937_64 rng(12345);
    const FlowIdKey key{rng(), rng()};
    int v4 = 0, v6 = 0;
    for (int i = 0; i < 200000; ++i) {
        ParsedPacket p = random_packet(rng);
        (p.ip_version == 4 ? v4 : v6)++;
        ParsedPacket r = reverse_of(p);
        bool rev_p = false, rev_r = false;
        FlowKey kp = make_flow_key(p, &rev_p);
        FlowKey kr = make_flow_key(r, &rev_r);
        ASSERT_TRUE(kp == kr);
        ASSERT_EQ(flow_id_hash(kp, key), flow_id_hash(kr, key));
        bool symmetric = p.src == p.dst && p.sport == p.dport;
        if (symmetric) {
            ASSERT_FALSE(rev_p || rev_r);  // nothing to order: neither direction is "reversed"
        } else {
            ASSERT_NE(rev_p, rev_r);
        }
        // Invariants the header promises.
        size_t alen = p.ip_version == 4 ? 4 : 16;
        int order = std::memcmp(kp.addr_lo.data(), kp.addr_hi.data(), alen);
        ASSERT_LE(order, 0);
        if (order == 0) {
            ASSERT_LE(kp.port_lo, kp.port_hi);
        }
        ASSERT_EQ(kp.reserved, 0);
        // The lo side is the packet's source exactly when it is not reversed.
        ASSERT_EQ(kp.port_lo, rev_p ? p.dport : p.sport);
    }
    EXPECT_GT(v4, 0);
    EXPECT_GT(v6, 0);
}

// make_flow_key compares addresses as words; the specification is bytewise (memcmp) order.
// Addresses sharing a random-length prefix exercise every byte position of that compare.
TEST(FlowKeyCanonical, WordCompareAgreesWithBytewiseOrder) {
    std::mt19937_64 rng(777);
    const FlowIdKey key{rng(), rng()};
    for (int i = 0; i < 200000; ++i) {
        ParsedPacket p;
        p.ip_version = (i % 3 == 0) ? 4 : 6;
        p.proto = 17;
        const size_t alen = p.ip_version == 4 ? 4 : 16;
        const size_t shared = rng() % (alen + 1);
        for (size_t b = 0; b < 16; ++b) {
            p.src[b] = static_cast<uint8_t>(rng());
            p.dst[b] = b < shared ? p.src[b] : static_cast<uint8_t>(rng() % 4 + p.src[b] - 2);
        }
        p.sport = static_cast<uint16_t>(rng() % 4);
        p.dport = static_cast<uint16_t>(rng() % 4);
        const int order = std::memcmp(p.src.data(), p.dst.data(), alen);
        const bool want_rev = order > 0 || (order == 0 && p.sport > p.dport);
        bool rev = !want_rev;
        uint32_t hash = 0;
        FlowKey k;
        make_flow_key(p, key, k, &rev, &hash);
        ASSERT_EQ(rev, want_rev) << "case " << i;
        ASSERT_EQ(hash, flow_bucket_hash(k, key));
        bool rev2 = !want_rev;
        ASSERT_TRUE(make_flow_key(p, &rev2) == k);
        ASSERT_EQ(rev2, want_rev);
        const IpBytes& lo = want_rev ? p.dst : p.src;
        const IpBytes& hi = want_rev ? p.src : p.dst;
        ASSERT_EQ(std::memcmp(k.addr_lo.data(), lo.data(), alen), 0);
        ASSERT_EQ(std::memcmp(k.addr_hi.data(), hi.data(), alen), 0);
        for (size_t b = alen; b < 16; ++b) ASSERT_EQ(k.addr_lo[b] | k.addr_hi[b], 0);
        ASSERT_EQ(k.port_lo, want_rev ? p.dport : p.sport);
        ASSERT_EQ(k.port_hi, want_rev ? p.sport : p.dport);
        ASSERT_EQ(k.ip_version, p.ip_version);
        ASSERT_EQ(k.proto, p.proto);
        ASSERT_EQ(k.reserved, 0);
    }
}

TEST(FlowKeyCanonical, ReversedFlagFollowsLowerAddress) {
    bool rev = true;
    make_flow_key(packet(6, "198.18.0.1", 1000, "198.19.0.1", 80), &rev);
    EXPECT_FALSE(rev);
    make_flow_key(packet(6, "198.19.0.1", 80, "198.18.0.1", 1000), &rev);
    EXPECT_TRUE(rev);
    make_flow_key(packet(6, "2001:db8::2", 80, "2001:db8::1", 1000), &rev);
    EXPECT_TRUE(rev);
    make_flow_key(packet(17, "198.18.0.1", 53, "198.18.0.1", 5353), &rev);
    EXPECT_FALSE(rev);
    make_flow_key(packet(17, "198.18.0.1", 5353, "198.18.0.1", 53), &rev);
    EXPECT_TRUE(rev);
    FlowKey k = make_flow_key(packet(6, "198.18.0.1", 1000, "198.18.0.1", 1000), nullptr);
    EXPECT_EQ(k.port_lo, 1000);  // a null flag pointer is allowed
}

TEST(FlowKeyCanonical, StrayBytesAfterIpv4AddressIgnored) {
    ParsedPacket a = packet(6, "198.18.0.1", 1000, "198.19.0.1", 80);
    ParsedPacket b = a;
    b.src[10] = 0xaa;
    b.dst[15] = 0x55;
    EXPECT_TRUE(make_flow_key(a, nullptr) == make_flow_key(b, nullptr));
}

TEST(FlowId, TcpAndUdpBetweenSameEndpointsDiffer) {
    std::mt19937_64 rng(99);
    const FlowIdKey key{rng(), rng()};
    int same = 0;
    for (int i = 0; i < 100000; ++i) {
        ParsedPacket p = random_packet(rng);
        p.proto = 6;
        ParsedPacket u = p;
        u.proto = 17;
        FlowKey kt = make_flow_key(p, nullptr);
        FlowKey ku = make_flow_key(u, nullptr);
        ASSERT_FALSE(kt == ku);
        same += flow_id_hash(kt, key) == flow_id_hash(ku, key);
    }
    EXPECT_LE(same, 2);  // 32-bit IDs: expected 100000 / 2^32 ≈ 0 chance collisions
    const FlowIdKey paper = kPaperKey;
    EXPECT_NE(flow_id_hash(make_flow_key(packet(6, "198.18.0.1", 1, "198.19.0.1", 2), nullptr),
                           paper),
              flow_id_hash(make_flow_key(packet(17, "198.18.0.1", 1, "198.19.0.1", 2), nullptr),
                           paper));
}

TEST(FlowId, Ipv4AndIpv6WithSameLeadingBytesDiffer) {
    // An IPv4 key and an IPv6 key whose addresses start with the same bytes must not meet.
    ParsedPacket v4 = packet(6, "198.18.0.1", 1, "198.19.0.1", 2);
    ParsedPacket v6 = v4;
    v6.ip_version = 6;
    FlowKey k4 = make_flow_key(v4, nullptr), k6 = make_flow_key(v6, nullptr);
    EXPECT_FALSE(k4 == k6);
    EXPECT_NE(flow_id_hash(k4, kPaperKey), flow_id_hash(k6, kPaperKey));
}

TEST(FlowId, KeyChangesId) {
    FlowKey k = make_flow_key(packet(6, "198.18.0.1", 1, "198.19.0.1", 2), nullptr);
    FlowIdKey other = kPaperKey;
    other.k1 ^= 1;
    EXPECT_NE(flow_id_hash(k, kPaperKey), flow_id_hash(k, other));
}

// ---------------------------------------------------------------------------------------
// Distribution: chi-square of the IDs over 1024 buckets against the exact critical values.

// Regularized lower incomplete gamma P(a, x): series for x < a + 1, otherwise 1 - Q with Q
// from the continued fraction (modified Lentz). Both converge quickly in their ranges.
double regularized_gamma_p(double a, double x) {
    if (x <= 0) return 0;
    const double log_prefix = -x + a * std::log(x) - std::lgamma(a);
    if (x < a + 1) {
        double term = 1 / a, sum = term;
        for (int n = 1; n < 100000 && std::fabs(term) > std::fabs(sum) * 1e-16; ++n) {
            term *= x / (a + n);
            sum += term;
        }
        return sum * std::exp(log_prefix);
    }
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 100000; ++i) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (std::fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (std::fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double delta = d * c;
        h *= delta;
        if (std::fabs(delta - 1) < 1e-16) break;
    }
    return 1 - std::exp(log_prefix) * h;
}

double chi_square_cdf(double x, double dof) { return regularized_gamma_p(dof / 2, x / 2); }

// x with CDF(x) = p, by bisection (the CDF is monotonic).
double chi_square_quantile(double p, double dof) {
    double lo = 0, hi = dof * 10 + 100;
    for (int i = 0; i < 200; ++i) {
        double mid = (lo + hi) / 2;
        (chi_square_cdf(mid, dof) < p ? lo : hi) = mid;
    }
    return (lo + hi) / 2;
}

TEST(ChiSquareMath, QuantilesMatchTables) {
    // Textbook table values.
    EXPECT_NEAR(chi_square_quantile(0.95, 1), 3.841, 0.001);
    EXPECT_NEAR(chi_square_quantile(0.999, 10), 29.588, 0.001);
    EXPECT_NEAR(chi_square_quantile(0.001, 10), 1.479, 0.001);
    EXPECT_NEAR(chi_square_quantile(0.999, 100), 149.449, 0.001);
    // Wilson-Hilferty, very accurate at 1023 degrees of freedom (z_0.999 = 3.090232).
    const double k = 1023, z = 3.090232306167813;
    double wh = k * std::pow(1 - 2 / (9 * k) + z * std::sqrt(2 / (9 * k)), 3);
    EXPECT_NEAR(chi_square_quantile(0.999, k), wh, 0.1);
}

double chi_square_of(const std::vector<uint64_t>& counts, double expected) {
    double chi = 0;
    for (uint64_t c : counts) chi += (c - expected) * (c - expected) / expected;
    return chi;
}

void expect_uniform(const std::vector<uint32_t>& ids, const char* what) {
    constexpr size_t kBuckets = 1024;
    const double dof = kBuckets - 1;
    const double upper = chi_square_quantile(1 - 0.001, dof);  // too clumpy
    const double lower = chi_square_quantile(0.001, dof);      // suspiciously even
    std::vector<uint64_t> low_bits(kBuckets), high_bits(kBuckets);
    for (uint32_t id : ids) {
        low_bits[id % kBuckets]++;
        high_bits[id >> 22]++;
    }
    const double expected = static_cast<double>(ids.size()) / kBuckets;
    double chi_low = chi_square_of(low_bits, expected);
    double chi_high = chi_square_of(high_bits, expected);
    std::printf("[ chi2     ] %s: low 10 bits %.1f, high 10 bits %.1f; dof %.0f, "
                "p=0.001 bounds [%.1f, %.1f]\n",
                what, chi_low, chi_high, dof, lower, upper);
    EXPECT_LT(chi_low, upper) << what;
    EXPECT_GT(chi_low, lower) << what;
    EXPECT_LT(chi_high, upper) << what;
    EXPECT_GT(chi_high, lower) << what;
}

TEST(FlowIdDistribution, ChiSquareOverOneMillionRandomKeys) {
    std::mt19937_64 rng(20240229);
    const FlowIdKey key{rng(), rng()};
    std::vector<uint32_t> ids;
    ids.reserve(1000000);
    for (int i = 0; i < 1000000; ++i)
        ids.push_back(flow_id_hash(make_flow_key(random_packet(rng), nullptr), key));
    expect_uniform(ids, "random keys");
}

TEST(FlowIdDistribution, ChiSquareOverOneMillionSequentialKeys) {
    // Realistic, highly structured input: consecutive client addresses and ports to a few
    // servers (IPv4 and IPv6 alike).
    const FlowIdKey key = kPaperKey;
    std::vector<uint32_t> ids;
    ids.reserve(1000000);
    for (uint32_t i = 0; i < 1000000; ++i) {
        ParsedPacket p;
        p.ip_version = (i % 5 == 4) ? 6 : 4;
        p.proto = (i % 3 == 0) ? 17 : 6;
        if (p.ip_version == 4) {
            uint32_t client = 0xc6120000u + (i >> 4);  // 198.18.0.0/15
            for (int b = 0; b < 4; ++b) p.src[b] = static_cast<uint8_t>(client >> (24 - 8 * b));
            const uint8_t server[4] = {198, 19, 255, static_cast<uint8_t>(i % 4)};
            std::memcpy(p.dst.data(), server, 4);
        } else {
            const uint8_t prefix[4] = {0x20, 0x01, 0x0d, 0xb8};
            std::memcpy(p.src.data(), prefix, 4);
            std::memcpy(p.dst.data(), prefix, 4);
            p.src[12] = static_cast<uint8_t>(i >> 24);
            p.src[13] = static_cast<uint8_t>(i >> 16);
            p.src[14] = static_cast<uint8_t>(i >> 8);
            p.src[15] = static_cast<uint8_t>(i);
            p.dst[4] = 0xff;
            p.dst[15] = static_cast<uint8_t>(i % 4);
        }
        p.sport = static_cast<uint16_t>(32768 + (i & 15) * 1000);
        p.dport = 443;
        ids.push_back(flow_id_hash(make_flow_key(p, nullptr), key));
    }
    expect_uniform(ids, "sequential keys");
}

}  // namespace
}  // namespace angel
