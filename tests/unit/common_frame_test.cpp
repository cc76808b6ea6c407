// The parser's fast path for common frames (common/packet/common_frame.hpp) against the
// layered parser: for every frame of every capture in ../shared/pcaps/*/, and for many
// mutated and truncated copies of them, PacketParser::parse() (fast path first) and
// PacketParser::parse_layered() must give the same status, the same fields and the same
// counters. The test also checks that the fast path really takes most real frames and
// declines what it must (fragments, extension headers, three tags, other link types).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/packet/common_frame.hpp"
#include "common/packet/parser.hpp"

namespace fs = std::filesystem;
using angel::PacketParser;
using angel::ParsedPacket;
using angel::ParseStatus;

namespace {

fs::path pcaps_dir() {
    const char* env = std::getenv("ANGEL_SOURCE_DIR");
    return fs::path(env != nullptr ? env : ANGEL_SOURCE_DIR) / ".." / "shared" / "pcaps";
}

struct Frame {
    int linktype;
    std::vector<uint8_t> bytes;
    bool real = false;  // from the real/ set (traffic as captured, not crafted)
};

std::vector<Frame> corpus_frames() {
    std::vector<Frame> frames;
    for (const auto& set : fs::directory_iterator(pcaps_dir())) {
        if (!set.is_directory()) continue;
        for (const auto& file : fs::directory_iterator(set.path())) {
            char err[PCAP_ERRBUF_SIZE] = {};
            pcap_t* p = pcap_open_offline(file.path().c_str(), err);
            if (!p) continue;  // the malformed set has files libpcap refuses
            const int lt = pcap_datalink(p);
            pcap_pkthdr* h = nullptr;
            const u_char* d = nullptr;
            const bool real = set.path().filename() == "real";
            while (pcap_next_ex(p, &h, &d) == 1)
                frames.push_back({lt, std::vector<uint8_t>(d, d + h->caplen), real});
            pcap_close(p);
        }
    }
    return frames;
}

std::string describe(const ParsedPacket& p) {
    char a[64], b[64];
    inet_ntop(p.ip_version == 6 ? AF_INET6 : AF_INET, p.src.data(), a, sizeof a);
    inet_ntop(p.ip_version == 6 ? AF_INET6 : AF_INET, p.dst.data(), b, sizeof b);
    return "v" + std::to_string(p.ip_version) + " proto " + std::to_string(p.proto) + " " + a + ":" +
           std::to_string(p.sport) + " > " + b + ":" + std::to_string(p.dport) + " flags " +
           std::to_string(p.tcp_flags) + " frag " + std::to_string(p.fragment) + " ports_known " +
           std::to_string(p.ports_known) + " l3 " + std::to_string(p.l3_offset);
}

bool same(const ParsedPacket& x, const ParsedPacket& y) {
    return x.ip_version == y.ip_version && x.proto == y.proto && x.tcp_flags == y.tcp_flags &&
           x.fragment == y.fragment && x.ports_known == y.ports_known && x.sport == y.sport &&
           x.dport == y.dport && x.src == y.src && x.dst == y.dst && x.l3_offset == y.l3_offset;
}

// Both parsers see the same sequence, so their fragment caches evolve alike.
struct Pair {
    PacketParser fast, layered;
    uint64_t frames = 0, taken_fast = 0;

    void check(const Frame& f, uint32_t caplen, const char* what) {
        ParsedPacket a, b, c;
        const uint8_t* d = f.bytes.empty() ? nullptr : f.bytes.data();
        const uint64_t ts = ++frames * 1000;
        const ParseStatus sa = fast.parse(f.linktype, d, caplen, ts, a);
        const ParseStatus sb = layered.parse_layered(f.linktype, d, caplen, ts, b);
        taken_fast += angel::packet::parse_common_frame(f.linktype, d, caplen, c);
        ASSERT_EQ(sa, sb) << what << " frame " << frames << " caplen " << caplen;
        ASSERT_TRUE(same(a, b)) << what << " frame " << frames << "\n fast:    " << describe(a)
                                << "\n layered: " << describe(b);
    }
};

void expect_same_counters(const PacketParser& x, const PacketParser& y) {
    EXPECT_EQ(x.counters().by_status, y.counters().by_status);
    EXPECT_EQ(x.counters().frag_first, y.counters().frag_first);
    EXPECT_EQ(x.counters().frag_hit, y.counters().frag_hit);
    EXPECT_EQ(x.counters().frag_miss, y.counters().frag_miss);
}

TEST(CommonFrame, SameAsLayeredParserOnEveryCapturedFrame) {
    const auto frames = corpus_frames();
    ASSERT_GT(frames.size(), 10000u) << "the shared capture folder is missing or empty: " << pcaps_dir();
    Pair p;
    uint64_t real = 0, real_fast = 0;
    for (const Frame& f : frames) {
        const uint64_t before = p.taken_fast;
        p.check(f, static_cast<uint32_t>(f.bytes.size()), "captured");
        if (HasFatalFailure()) return;
        real += f.real;
        real_fast += f.real && p.taken_fast > before;
    }
    expect_same_counters(p.fast, p.layered);
    // Real traffic is mostly Ethernet + IPv4/IPv6 + TCP/UDP: the fast path must carry it
    // (the other sets are crafted edge cases, floods of fragments and extension headers).
    EXPECT_GT(real_fast * 10, real * 7) << real_fast << " of " << real;
    std::printf("fast path took %llu of %llu real frames, %llu of %llu in all\n",
                static_cast<unsigned long long>(real_fast), static_cast<unsigned long long>(real),
                static_cast<unsigned long long>(p.taken_fast), static_cast<unsigned long long>(p.frames));
}

// Every header byte the fast path reads, corrupted; every length cut short.
TEST(CommonFrame, SameAsLayeredParserOnMutatedAndTruncatedFrames) {
    const auto frames = corpus_frames();
    ASSERT_FALSE(frames.empty());
    std::mt19937_64 rng(20261126);
    Pair p;
    uint64_t declined = 0;
    for (size_t i = 0; i < frames.size(); i += 3) {
        const Frame& f = frames[i];
        const uint32_t len = static_cast<uint32_t>(f.bytes.size());
        // Every cut of the first 96 bytes.
        for (uint32_t cut = 0; cut <= std::min<uint32_t>(len, 96); cut += 1 + (cut > 70)) {
            p.check(f, cut, "truncated");
            if (HasFatalFailure()) return;
        }
        // Random byte corruption in the headers, including the interesting values.
        for (int m = 0; m < 24; ++m) {
            Frame g = f;
            const int flips = 1 + static_cast<int>(rng() % 3);
            for (int k = 0; k < flips && !g.bytes.empty(); ++k) {
                const size_t at = rng() % std::min<size_t>(g.bytes.size(), 80);
                static constexpr uint8_t kSpecial[] = {0x00, 0x04, 0x06, 0x11, 0x2c, 0x3b, 0x40, 0x45,
                                                       0x46, 0x4f, 0x60, 0x81, 0x86, 0x88, 0xdd, 0xff};
                g.bytes[at] = rng() % 2 ? kSpecial[rng() % sizeof kSpecial] : static_cast<uint8_t>(rng());
            }
            ParsedPacket c;
            declined += !angel::packet::parse_common_frame(g.linktype, g.bytes.data(),
                                                           static_cast<uint32_t>(g.bytes.size()), c);
            p.check(g, static_cast<uint32_t>(g.bytes.size()), "mutated");
            if (HasFatalFailure()) return;
        }
    }
    expect_same_counters(p.fast, p.layered);
    EXPECT_GT(declined, 1000u);  // the mutations reach the declining branches too
}

// Hand-made frames for each way the fast path must step aside.
std::vector<uint8_t> ethernet(std::initializer_list<uint16_t> types) {
    std::vector<uint8_t> f(12, 0x02);
    for (uint16_t t : types) {
        if (f.size() > 12) f.insert(f.end(), {0x00, 0x05});  // VLAN TCI before the next type
        f.push_back(static_cast<uint8_t>(t >> 8));
        f.push_back(static_cast<uint8_t>(t));
    }
    return f;
}

std::vector<uint8_t> ipv4_udp(uint16_t flags_offset) {
    std::vector<uint8_t> ip = {0x45, 0, 0, 28, 0x12, 0x34, static_cast<uint8_t>(flags_offset >> 8),
                               static_cast<uint8_t>(flags_offset), 64, 17, 0, 0, 198, 18, 0, 1, 198, 19, 0, 2,
                               0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0};
    return ip;
}

TEST(CommonFrame, TakesPlainFramesAndDeclinesTheRest) {
    auto frame = [](std::vector<uint8_t> head, const std::vector<uint8_t>& ip) {
        head.insert(head.end(), ip.begin(), ip.end());
        return head;
    };
    ParsedPacket out;
    const auto plain = frame(ethernet({0x0800}), ipv4_udp(0x4000));  // DF set: not a fragment
    ASSERT_TRUE(angel::packet::parse_common_frame(1, plain.data(), static_cast<uint32_t>(plain.size()), out));
    EXPECT_EQ(out.sport, 12345);
    EXPECT_EQ(out.dport, 53);
    const auto two_tags = frame(ethernet({0x88A8, 0x8100, 0x0800}), ipv4_udp(0));
    EXPECT_TRUE(angel::packet::parse_common_frame(1, two_tags.data(), static_cast<uint32_t>(two_tags.size()), out));

    const std::vector<std::vector<uint8_t>> declined = {
        frame(ethernet({0x0800}), ipv4_udp(0x2000)),                  // first fragment
        frame(ethernet({0x0800}), ipv4_udp(0x0010)),                  // later fragment
        frame(ethernet({0x88A8, 0x8100, 0x8100, 0x0800}), ipv4_udp(0)),  // three tags
        frame(ethernet({0x8847}), ipv4_udp(0)),                       // MPLS
        frame(ethernet({0x0806}), std::vector<uint8_t>(28, 0)),       // ARP
    };
    for (const auto& f : declined)
        EXPECT_FALSE(angel::packet::parse_common_frame(1, f.data(), static_cast<uint32_t>(f.size()), out));
    // The same IPv4 bytes on another link type (raw IP) go the layered way.
    const auto raw = ipv4_udp(0);
    EXPECT_FALSE(angel::packet::parse_common_frame(101, raw.data(), static_cast<uint32_t>(raw.size()), out));
    // IPv6 with a hop-by-hop header: declined; with UDP directly: taken.
    std::vector<uint8_t> v6(40, 0);
    v6[0] = 0x60;
    v6[5] = 8;
    v6[6] = 0;  // hop-by-hop
    const auto hbh = frame(ethernet({0x86DD}), v6);
    EXPECT_FALSE(angel::packet::parse_common_frame(1, hbh.data(), static_cast<uint32_t>(hbh.size()), out));
    v6[6] = 17;
    v6.insert(v6.end(), {0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0});
    const auto udp6 = frame(ethernet({0x86DD}), v6);
    EXPECT_TRUE(angel::packet::parse_common_frame(1, udp6.data(), static_cast<uint32_t>(udp6.size()), out));
    EXPECT_EQ(out.dport, 53);
}

}  // namespace
