// Unit tests of the layered packet parser on hand-built frames: every link type and
// encapsulation, IPv4 options, each IPv6 extension header, fragments, each malformed reason,
// and every truncation of every frame (an overread would be caught by ASan: each frame is
// copied into a buffer of exactly caplen bytes).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/packet/fragment_cache.hpp"
#include "common/packet/parser.hpp"

namespace {

using angel::PacketParser;
using angel::ParsedPacket;
using angel::ParseStatus;
using Bytes = std::vector<uint8_t>;

// libpcap link types used below.
constexpr int kNull = 0, kEthernet = 1, kRaw = 12, kRawOpenBsd = 14, kLinktypeRaw = 101,
              kLoop = 108, kSll = 113, kIpv4 = 228, kIpv6 = 229, kSll2 = 276;
constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58, kSctp = 132, kUdpLite = 136;

Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}
Bytes be16(uint16_t v) { return {uint8_t(v >> 8), uint8_t(v)}; }
Bytes be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

Bytes udp(uint16_t sport, uint16_t dport) { return cat({be16(sport), be16(dport), be16(8), be16(0)}); }
Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags, uint8_t data_offset = 5) {
    return cat({be16(sport), be16(dport), be32(1), be32(0),
                {uint8_t(data_offset << 4), flags}, be16(1024), be16(0), be16(0)});
}
Bytes sctp(uint16_t sport, uint16_t dport) { return cat({be16(sport), be16(dport), be32(7), be32(0)}); }
Bytes icmp_echo() { return {8, 0, 0, 0, 0, 1, 0, 1}; }

const Bytes kSrc4 = {10, 0, 0, 1}, kDst4 = {192, 168, 1, 2};

Bytes ipv4(uint8_t proto, const Bytes& payload, uint16_t id = 1, uint16_t frag = 0,
           const Bytes& options = {}) {
    const size_t header = 20 + options.size();
    const uint16_t total = uint16_t(header + payload.size());
    return cat({{uint8_t(0x40 | header / 4), 0}, be16(total), be16(id), be16(frag), {64, proto},
                be16(0), kSrc4, kDst4, options, payload});
}

Bytes addr6(uint8_t last) {
    Bytes a(16, 0);
    a[0] = 0x20; a[1] = 0x01; a[2] = 0x0d; a[3] = 0xb8; a[15] = last;
    return a;
}
Bytes ipv6(uint8_t next, const Bytes& payload) {
    return cat({{0x60, 0, 0, 0}, be16(uint16_t(payload.size())), {next, 64}, addr6(1), addr6(2),
                payload});
}
// Hop-by-hop / routing / destination options header of `total` bytes (a multiple of 8).
Bytes ext8(uint8_t next, size_t total) {
    Bytes h(total, 0);
    h[0] = next;
    h[1] = uint8_t(total / 8 - 1);
    if (total > 2) { h[2] = 1; h[3] = uint8_t(total - 4); }  // PadN over the rest
    return h;
}
// AH: length in 4-byte units minus 2.
Bytes ah(uint8_t next, size_t total) {
    Bytes h(total, 0);
    h[0] = next;
    h[1] = uint8_t(total / 4 - 2);
    return h;
}
Bytes frag6(uint8_t next, uint16_t offset_units, bool more, uint32_t id) {
    return cat({{next, 0}, be16(uint16_t(offset_units << 3 | (more ? 1 : 0))), be32(id)});
}

const Bytes kMacs = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
Bytes eth(uint16_t type, const Bytes& payload) { return cat({kMacs, be16(type), payload}); }
Bytes tag(uint16_t tci, uint16_t inner_type) { return cat({be16(tci), be16(inner_type)}); }
Bytes mpls_label(uint32_t label, bool bottom) {
    return be32(label << 12 | (bottom ? 0x100u : 0u) | 64u);
}
Bytes pppoe(uint16_t ppp_proto, const Bytes& payload) {
    return cat({{0x11, 0x00}, be16(0x1234), be16(uint16_t(payload.size() + 2)), be16(ppp_proto),
                payload});
}
Bytes sll(uint16_t protocol, const Bytes& payload) {
    return cat({be16(0), be16(1), be16(6), {1, 2, 3, 4, 5, 6, 0, 0}, be16(protocol), payload});
}
Bytes sll2(uint16_t protocol, const Bytes& payload) {
    return cat({be16(protocol), be16(0), be32(2), be16(1), {0, 6}, {1, 2, 3, 4, 5, 6, 0, 0},
                payload});
}
Bytes host_order32(uint32_t v) {
    Bytes b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
}

// Parses a copy of exactly `caplen` bytes, so that any read past it is an ASan error.
ParseStatus parse_exact(PacketParser& p, int linktype, const Bytes& frame, size_t caplen,
                        ParsedPacket& out, uint64_t ts = 0) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[caplen == 0 ? 1 : caplen]);
    if (caplen != 0) std::memcpy(copy.get(), frame.data(), caplen);
    return p.parse(linktype, caplen == 0 ? nullptr : copy.get(), uint32_t(caplen), ts, out);
}
ParseStatus parse(PacketParser& p, int linktype, const Bytes& frame, ParsedPacket& out,
                  uint64_t ts = 0) {
    return parse_exact(p, linktype, frame, frame.size(), out, ts);
}

void expect_v4(const ParsedPacket& pk, uint8_t proto, uint16_t sport, uint16_t dport) {
    EXPECT_EQ(pk.ip_version, 4);
    EXPECT_EQ(pk.proto, proto);
    EXPECT_EQ(pk.sport, sport);
    EXPECT_EQ(pk.dport, dport);
    EXPECT_EQ(0, std::memcmp(pk.src.data(), kSrc4.data(), 4));
    EXPECT_EQ(0, std::memcmp(pk.dst.data(), kDst4.data(), 4));
    for (size_t i = 4; i < 16; ++i) EXPECT_EQ(pk.src[i], 0) << "IPv4 address tail must be zero";
}
void expect_v6(const ParsedPacket& pk, uint8_t proto, uint16_t sport, uint16_t dport) {
    EXPECT_EQ(pk.ip_version, 6);
    EXPECT_EQ(pk.proto, proto);
    EXPECT_EQ(pk.sport, sport);
    EXPECT_EQ(pk.dport, dport);
    EXPECT_EQ(0, std::memcmp(pk.src.data(), addr6(1).data(), 16));
    EXPECT_EQ(0, std::memcmp(pk.dst.data(), addr6(2).data(), 16));
}

// ---------------------------------------------------------------- link types, encapsulations

TEST(Parser, EthernetIpv4Tcp) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(kTcp, tcp(1234, 80, 0x12))), pk), ParseStatus::ok);
    expect_v4(pk, kTcp, 1234, 80);
    EXPECT_EQ(pk.tcp_flags, 0x12);
    EXPECT_TRUE(pk.ports_known);
    EXPECT_FALSE(pk.fragment);
    EXPECT_EQ(pk.l3_offset, 14);
}

TEST(Parser, EthernetIpv6Udp) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kEthernet, eth(0x86DD, ipv6(kUdp, udp(53, 5353))), pk), ParseStatus::ok);
    expect_v6(pk, kUdp, 53, 5353);
    EXPECT_EQ(pk.tcp_flags, 0);
}

TEST(Parser, VlanTagsOfEveryKindAndDepth) {
    const Bytes ip = ipv4(kUdp, udp(1, 2));
    struct Case { const char* name; Bytes frame; uint16_t l3; };
    const Case cases[] = {
        {"802.1Q", eth(0x8100, cat({tag(10, 0x0800), ip})), 18},
        {"802.1ad+802.1Q", eth(0x88A8, cat({tag(100, 0x8100), tag(10, 0x0800), ip})), 22},
        {"0x9100 QinQ", eth(0x9100, cat({tag(100, 0x8100), tag(10, 0x0800), ip})), 22},
        {"three tags", eth(0x88A8, cat({tag(1, 0x88A8), tag(2, 0x8100), tag(3, 0x0800), ip})), 26},
        {"tag then IPv6", eth(0x8100, cat({tag(10, 0x86DD), ipv6(kUdp, udp(1, 2))})), 18},
    };
    for (const Case& c : cases) {
        PacketParser p;
        ParsedPacket pk;
        EXPECT_EQ(parse(p, kEthernet, c.frame, pk), ParseStatus::ok) << c.name;
        EXPECT_EQ(pk.sport, 1) << c.name;
        EXPECT_EQ(pk.l3_offset, c.l3) << c.name;
    }
}

TEST(Parser, EndlessVlanTagsAreBounded) {
    Bytes tags;
    for (int i = 0; i < 40; ++i) tags = cat({tags, tag(uint16_t(i), 0x8100)});
    PacketParser p;
    ParsedPacket pk;
    EXPECT_EQ(parse(p, kEthernet, eth(0x8100, cat({tags, ipv4(kUdp, udp(1, 2))})), pk),
              ParseStatus::too_many_headers);
}

TEST(Parser, MplsLabelStacks) {
    PacketParser p;
    ParsedPacket pk;
    const Bytes two_labels = cat({mpls_label(100, false), mpls_label(200, true)});
    ASSERT_EQ(parse(p, kEthernet, eth(0x8847, cat({two_labels, ipv4(kTcp, tcp(5, 6, 2))})), pk),
              ParseStatus::ok);
    expect_v4(pk, kTcp, 5, 6);
    EXPECT_EQ(pk.l3_offset, 22);
    ASSERT_EQ(parse(p, kEthernet, eth(0x8848, cat({mpls_label(7, true), ipv6(kUdp, udp(7, 8))})), pk),
              ParseStatus::ok);
    expect_v6(pk, kUdp, 7, 8);
    // VLAN, then MPLS
    ASSERT_EQ(parse(p, kEthernet,
                    eth(0x8100, cat({tag(5, 0x8847), mpls_label(1, true), ipv4(kUdp, udp(9, 10))})),
                    pk),
              ParseStatus::ok);
    EXPECT_EQ(pk.dport, 10);
}

TEST(Parser, MplsEthernetPseudowireWithControlWord) {
    PacketParser p;
    ParsedPacket pk;
    const Bytes inner = eth(0x8100, cat({tag(1, 0x0800), ipv4(kUdp, udp(11, 12))}));
    ASSERT_EQ(parse(p, kEthernet, eth(0x8847, cat({mpls_label(16, true), be32(0), inner})), pk),
              ParseStatus::ok);
    expect_v4(pk, kUdp, 11, 12);
}

TEST(Parser, MplsStackWithoutBottomIsBounded) {
    Bytes labels;
    for (int i = 0; i < 40; ++i) labels = cat({labels, mpls_label(uint32_t(i), false)});
    PacketParser p;
    ParsedPacket pk;
    EXPECT_EQ(parse(p, kEthernet, eth(0x8847, cat({labels, ipv4(kUdp, udp(1, 2))})), pk),
              ParseStatus::too_many_headers);
    // Bottom of stack followed by neither IP nor a control word: not IP.
    EXPECT_EQ(parse(p, kEthernet, eth(0x8847, cat({mpls_label(1, true), Bytes(20, 0x15)})), pk),
              ParseStatus::not_ip);
}

TEST(Parser, PppoeSessions) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kEthernet, eth(0x8864, pppoe(0x0021, ipv4(kTcp, tcp(443, 5000, 0x10)))), pk),
              ParseStatus::ok);
    expect_v4(pk, kTcp, 443, 5000);
    EXPECT_EQ(pk.l3_offset, 22);
    ASSERT_EQ(parse(p, kEthernet, eth(0x8864, pppoe(0x0057, ipv6(kUdp, udp(1, 2)))), pk),
              ParseStatus::ok);
    expect_v6(pk, kUdp, 1, 2);
    // PPPoE inside a customer VLAN, as access networks carry it.
    ASSERT_EQ(parse(p, kEthernet,
                    eth(0x8100, cat({tag(7, 0x8864), pppoe(0x0021, ipv4(kUdp, udp(3, 4)))})), pk),
              ParseStatus::ok);
    EXPECT_EQ(pk.sport, 3);
    EXPECT_EQ(parse(p, kEthernet, eth(0x8864, pppoe(0xC021, Bytes(10, 0))), pk), ParseStatus::not_ip);
    EXPECT_EQ(parse(p, kEthernet, eth(0x8863, Bytes(20, 0)), pk), ParseStatus::not_ip);
}

TEST(Parser, LinuxCookedV1AndV2) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kSll, sll(0x0800, ipv4(kUdp, udp(67, 68))), pk), ParseStatus::ok);
    expect_v4(pk, kUdp, 67, 68);
    EXPECT_EQ(pk.l3_offset, 16);
    ASSERT_EQ(parse(p, kSll2, sll2(0x86DD, ipv6(kTcp, tcp(22, 40000, 0x18))), pk), ParseStatus::ok);
    expect_v6(pk, kTcp, 22, 40000);
    EXPECT_EQ(pk.l3_offset, 20);
    EXPECT_EQ(parse(p, kSll, sll(0x0806, Bytes(28, 0)), pk), ParseStatus::not_ip);   // ARP
    EXPECT_EQ(parse(p, kSll, sll(0x0004, Bytes(28, 0)), pk), ParseStatus::not_ip);   // 802.2
    EXPECT_EQ(parse(p, kSll2, sll2(0x0806, Bytes(28, 0)), pk), ParseStatus::not_ip);
}

TEST(Parser, RawIpUnderEveryLinktypeValue) {
    for (int lt : {kRaw, kRawOpenBsd, kLinktypeRaw}) {
        PacketParser p;
        ParsedPacket pk;
        ASSERT_EQ(parse(p, lt, ipv4(kUdp, udp(1, 2)), pk), ParseStatus::ok) << lt;
        expect_v4(pk, kUdp, 1, 2);
        EXPECT_EQ(pk.l3_offset, 0);
        ASSERT_EQ(parse(p, lt, ipv6(kUdp, udp(3, 4)), pk), ParseStatus::ok) << lt;
        expect_v6(pk, kUdp, 3, 4);
        Bytes bad = ipv4(kUdp, udp(1, 2));
        bad[0] = 0x55;
        EXPECT_EQ(parse(p, lt, bad, pk), ParseStatus::bad_version) << lt;
    }
    PacketParser p;
    ParsedPacket pk;
    EXPECT_EQ(parse(p, kIpv4, ipv4(kTcp, tcp(1, 2, 0x02)), pk), ParseStatus::ok);
    EXPECT_EQ(parse(p, kIpv6, ipv6(kTcp, tcp(1, 2, 0x02)), pk), ParseStatus::ok);
    // DLT_IPV4 announces IPv4: an IPv6 packet there has the wrong version, and vice versa.
    EXPECT_EQ(parse(p, kIpv4, ipv6(kTcp, tcp(1, 2, 0x02)), pk), ParseStatus::bad_version);
    EXPECT_EQ(parse(p, kIpv6, ipv4(kTcp, tcp(1, 2, 0x02)), pk), ParseStatus::bad_version);
}

TEST(Parser, BsdNullAndLoop) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kNull, cat({host_order32(2), ipv4(kUdp, udp(1, 2))}), pk), ParseStatus::ok);
    expect_v4(pk, kUdp, 1, 2);
    EXPECT_EQ(pk.l3_offset, 4);
    // Written by a host of the other byte order.
    ASSERT_EQ(parse(p, kNull, cat({host_order32(__builtin_bswap32(2)), ipv4(kUdp, udp(1, 2))}), pk),
              ParseStatus::ok);
    for (uint32_t af6 : {10u, 24u, 28u, 30u}) {
        ASSERT_EQ(parse(p, kNull, cat({host_order32(af6), ipv6(kUdp, udp(5, 6))}), pk),
                  ParseStatus::ok) << af6;
        expect_v6(pk, kUdp, 5, 6);
        ASSERT_EQ(parse(p, kLoop, cat({be32(af6), ipv6(kUdp, udp(5, 6))}), pk), ParseStatus::ok) << af6;
    }
    ASSERT_EQ(parse(p, kLoop, cat({be32(2), ipv4(kTcp, tcp(7, 8, 1))}), pk), ParseStatus::ok);
    expect_v4(pk, kTcp, 7, 8);
    EXPECT_EQ(parse(p, kNull, cat({host_order32(7), Bytes(20, 0)}), pk), ParseStatus::not_ip);
}

TEST(Parser, UnsupportedLinkTypeAndNonIpFrames) {
    PacketParser p;
    ParsedPacket pk;
    EXPECT_EQ(parse(p, 147, ipv4(kUdp, udp(1, 2)), pk), ParseStatus::unsupported_link);
    EXPECT_EQ(parse(p, -1, ipv4(kUdp, udp(1, 2)), pk), ParseStatus::unsupported_link);
    EXPECT_EQ(parse(p, kEthernet, eth(0x0806, Bytes(28, 0)), pk), ParseStatus::not_ip);  // ARP
    EXPECT_EQ(parse(p, kEthernet, eth(0x88CC, Bytes(28, 0)), pk), ParseStatus::not_ip);  // LLDP
    EXPECT_EQ(parse(p, kEthernet, eth(46, Bytes(46, 0x42)), pk), ParseStatus::not_ip);   // 802.3
    EXPECT_EQ(p.counters().by_status[size_t(ParseStatus::unsupported_link)], 2u);
    EXPECT_EQ(p.counters().by_status[size_t(ParseStatus::not_ip)], 3u);
}

// ---------------------------------------------------------------- IPv4, transport

TEST(Parser, Ipv4Options) {
    for (size_t words : {1u, 2u, 10u}) {  // IHL 6, 7, 15
        Bytes options(words * 4, 1);      // NOPs
        PacketParser p;
        ParsedPacket pk;
        ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(kTcp, tcp(100, 200, 0x01), 1, 0, options)), pk),
                  ParseStatus::ok) << words;
        expect_v4(pk, kTcp, 100, 200);
        EXPECT_EQ(pk.tcp_flags, 0x01);
    }
}

TEST(Parser, TransportProtocols) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kIpv4, ipv4(kSctp, sctp(2905, 2906)), pk), ParseStatus::ok);
    expect_v4(pk, kSctp, 2905, 2906);
    ASSERT_EQ(parse(p, kIpv4, ipv4(kUdpLite, udp(9000, 9001)), pk), ParseStatus::ok);
    expect_v4(pk, kUdpLite, 9000, 9001);
    ASSERT_EQ(parse(p, kIpv4, ipv4(kIcmp, icmp_echo()), pk), ParseStatus::ok);
    expect_v4(pk, kIcmp, 0, 0);
    EXPECT_FALSE(pk.ports_known);
    ASSERT_EQ(parse(p, kIpv6, ipv6(kIcmp6, icmp_echo()), pk), ParseStatus::ok);
    expect_v6(pk, kIcmp6, 0, 0);
    ASSERT_EQ(parse(p, kIpv4, ipv4(47, Bytes(8, 0)), pk), ParseStatus::ok);  // GRE
    expect_v4(pk, 47, 0, 0);
}

TEST(Parser, TunnelsKeyOnTheOuterHeader) {
    PacketParser p;
    ParsedPacket pk;
    // 6in4: the outer IPv4 packet, protocol 41, no ports.
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(41, ipv6(kTcp, tcp(1, 2, 2)))), pk), ParseStatus::ok);
    expect_v4(pk, 41, 0, 0);
    // IPIP
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(4, ipv4(kUdp, udp(1, 2)))), pk), ParseStatus::ok);
    expect_v4(pk, 4, 0, 0);
    // IPv6 in IPv6
    ASSERT_EQ(parse(p, kIpv6, ipv6(41, ipv6(kUdp, udp(1, 2))), pk), ParseStatus::ok);
    expect_v6(pk, 41, 0, 0);
}

TEST(Parser, EthernetPaddingIsNotPartOfThePacket) {
    PacketParser p;
    ParsedPacket pk;
    // A 20-byte IPv4 header announcing 22 bytes: the UDP header would lie in the padding.
    Bytes ip = ipv4(kUdp, {});
    ip[3] = 22;
    EXPECT_EQ(parse(p, kEthernet, eth(0x0800, cat({ip, {0, 53}, Bytes(30, 0)})), pk),
              ParseStatus::truncated);
    // A valid short UDP packet followed by padding parses.
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, cat({ipv4(kUdp, udp(1, 2)), Bytes(18, 0)})), pk),
              ParseStatus::ok);
}

TEST(Parser, ShortTransportHeaderStillGivesPorts) {
    PacketParser p;
    ParsedPacket pk;
    // TCP header cut after 6 bytes by the snap length: ports are known, flags are not.
    const Bytes frame = eth(0x0800, ipv4(kTcp, tcp(1000, 2000, 0x02)));
    ASSERT_EQ(parse_exact(p, kEthernet, frame, 14 + 20 + 6, pk), ParseStatus::ok);
    expect_v4(pk, kTcp, 1000, 2000);
    EXPECT_EQ(pk.tcp_flags, 0);
    EXPECT_EQ(parse_exact(p, kEthernet, frame, 14 + 20 + 3, pk), ParseStatus::truncated);
}

// ---------------------------------------------------------------- IPv6 extension headers

TEST(Parser, Ipv6EachExtensionHeader) {
    struct Case { const char* name; uint8_t first; Bytes chain; };
    const Case cases[] = {
        {"hop-by-hop", 0, cat({ext8(kUdp, 8), udp(1, 2)})},
        {"hop-by-hop 24", 0, cat({ext8(kUdp, 24), udp(1, 2)})},
        {"routing", 43, cat({ext8(kUdp, 24), udp(1, 2)})},
        {"destination options", 60, cat({ext8(kUdp, 16), udp(1, 2)})},
        {"AH (4-byte units)", 51, cat({ah(kUdp, 12), udp(1, 2)})},
        {"AH 24", 51, cat({ah(kUdp, 24), udp(1, 2)})},
        {"atomic fragment", 44, cat({frag6(kUdp, 0, false, 99), udp(1, 2)})},
        {"all of them", 0,
         cat({ext8(60, 8), ext8(43, 8), ext8(51, 16), ah(44, 16), frag6(kUdp, 0, false, 5), udp(1, 2)})},
    };
    for (const Case& c : cases) {
        PacketParser p;
        ParsedPacket pk;
        ASSERT_EQ(parse(p, kIpv6, ipv6(c.first, c.chain), pk), ParseStatus::ok) << c.name;
        expect_v6(pk, kUdp, 1, 2);
        EXPECT_FALSE(pk.fragment) << c.name;
    }
}

TEST(Parser, Ipv6EspAndNoNextHeaderEndTheChain) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kIpv6, ipv6(50, cat({be32(0x1000), be32(1), Bytes(16, 0xAA)})), pk), ParseStatus::ok);
    expect_v6(pk, 50, 0, 0);
    ASSERT_EQ(parse(p, kIpv6, ipv6(0, cat({ext8(50, 8), Bytes(24, 0xAA)})), pk), ParseStatus::ok);
    expect_v6(pk, 50, 0, 0);
    ASSERT_EQ(parse(p, kIpv6, ipv6(59, Bytes(8, 0)), pk), ParseStatus::ok);
    expect_v6(pk, 59, 0, 0);
    ASSERT_EQ(parse(p, kIpv4, ipv4(50, Bytes(16, 0xAA)), pk), ParseStatus::ok);
    expect_v4(pk, 50, 0, 0);
}

TEST(Parser, Ipv6ExtensionChainIsBounded) {
    Bytes chain;
    for (int i = 0; i < 40; ++i) chain = cat({chain, ext8(60, 8)});
    PacketParser p;
    ParsedPacket pk;
    EXPECT_EQ(parse(p, kIpv6, ipv6(60, chain), pk), ParseStatus::too_many_headers);
}

TEST(Parser, Ipv6JumbogramPayloadLengthZero) {
    Bytes ip = ipv6(0, cat({ext8(kTcp, 8), tcp(1, 2, 0x10)}));
    ip[4] = ip[5] = 0;  // payload length 0: a jumbogram; the packet ends where the capture does
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kIpv6, ip, pk), ParseStatus::ok);
    expect_v6(pk, kTcp, 1, 2);
}

// ---------------------------------------------------------------- fragments

TEST(Parser, Ipv4FragmentsAttributedThroughTheCache) {
    PacketParser p;
    ParsedPacket pk;
    const uint16_t mf = 0x2000;
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(kUdp, cat({udp(5353, 53), Bytes(16, 1)}), 77, mf)), pk),
              ParseStatus::ok);
    expect_v4(pk, kUdp, 5353, 53);
    EXPECT_TRUE(pk.fragment);
    // middle and last fragments carry no UDP header: ports come from the first
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(kUdp, Bytes(24, 2), 77, mf | 3)), pk), ParseStatus::ok);
    expect_v4(pk, kUdp, 5353, 53);
    EXPECT_TRUE(pk.fragment);
    EXPECT_TRUE(pk.ports_known);
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(kUdp, Bytes(8, 3), 77, 6)), pk), ParseStatus::ok);
    expect_v4(pk, kUdp, 5353, 53);
    // another datagram (different ID) whose first fragment was never seen
    ASSERT_EQ(parse(p, kEthernet, eth(0x0800, ipv4(kUdp, Bytes(8, 3), 78, 6)), pk), ParseStatus::ok);
    expect_v4(pk, kUdp, 0, 0);
    EXPECT_TRUE(pk.fragment);
    EXPECT_FALSE(pk.ports_known);
    EXPECT_EQ(p.counters().frag_first, 1u);
    EXPECT_EQ(p.counters().frag_hit, 2u);
    EXPECT_EQ(p.counters().frag_miss, 1u);
}

TEST(Parser, Ipv4LaterFragmentWithoutFirstHasNoPorts) {
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kIpv4, ipv4(kTcp, Bytes(40, 0), 9, 0x2000 | 100), pk), ParseStatus::ok);
    expect_v4(pk, kTcp, 0, 0);
    EXPECT_TRUE(pk.fragment);
    EXPECT_EQ(p.counters().frag_miss, 1u);
}

TEST(Parser, Ipv6FragmentsAttributedThroughTheCache) {
    PacketParser p;
    ParsedPacket pk;
    // First fragment: fragment header, then destination options, then UDP.
    ASSERT_EQ(parse(p, kIpv6, ipv6(44, cat({frag6(60, 0, true, 0xDEADBEEF), ext8(kUdp, 8), udp(4000, 53),
                                            Bytes(16, 0)})), pk),
              ParseStatus::ok);
    expect_v6(pk, kUdp, 4000, 53);
    EXPECT_TRUE(pk.fragment);
    // Later fragment: its fragment header names 60, but the flow's protocol is UDP.
    ASSERT_EQ(parse(p, kIpv6, ipv6(0, cat({ext8(44, 8), frag6(60, 4, false, 0xDEADBEEF), Bytes(16, 0)})), pk),
              ParseStatus::ok);
    expect_v6(pk, kUdp, 4000, 53);
    EXPECT_TRUE(pk.fragment);
    // Same addresses, other 32-bit ID: not attributed.
    ASSERT_EQ(parse(p, kIpv6, ipv6(44, cat({frag6(kUdp, 4, false, 0xDEADBEEE), Bytes(16, 0)})), pk),
              ParseStatus::ok);
    expect_v6(pk, kUdp, 0, 0);
    EXPECT_EQ(p.counters().frag_first, 1u);
    EXPECT_EQ(p.counters().frag_hit, 1u);
    EXPECT_EQ(p.counters().frag_miss, 1u);
}

TEST(Parser, FragmentEntriesAgeOut) {
    PacketParser p;
    ParsedPacket pk;
    const uint64_t s = 1000000000ull;
    ASSERT_EQ(parse(p, kIpv4, ipv4(kUdp, udp(1, 2), 5, 0x2000), pk, 100 * s), ParseStatus::ok);
    ASSERT_EQ(parse(p, kIpv4, ipv4(kUdp, Bytes(8, 0), 5, 0x2000 | 1), pk, 120 * s), ParseStatus::ok);
    EXPECT_EQ(pk.sport, 1);  // 20 s later: still there (and refreshed)
    ASSERT_EQ(parse(p, kIpv4, ipv4(kUdp, Bytes(8, 0), 5, 2), pk, 200 * s), ParseStatus::ok);
    EXPECT_EQ(pk.sport, 0);  // 80 s after the last fragment: aged out
    EXPECT_EQ(p.counters().frag_miss, 1u);
}

TEST(FragmentCache, BoundedWithCountedEvictions) {
    angel::FragmentCache cache(3);  // rounded up to a power of two, at least one 4-way bucket
    EXPECT_EQ(cache.capacity(), 4u);
    angel::FragmentKey key;
    key.ip_version = 4;
    key.proto = kUdp;
    int evictions = 0;
    for (uint32_t id = 0; id < 5; ++id) {
        key.id = id;
        evictions += cache.remember(key, {uint16_t(id), 1, kUdp, true}, id) ? 1 : 0;
    }
    EXPECT_EQ(evictions, 1);  // five live datagrams in four slots
    angel::FragmentPorts ports;
    key.id = 0;
    EXPECT_FALSE(cache.lookup(key, false, 10, ports));  // the oldest was pushed out
    key.id = 4;
    ASSERT_TRUE(cache.lookup(key, true, 10, ports));
    EXPECT_EQ(ports.sport, 4);
    // A finished datagram's slot is reused without counting an eviction.
    key.id = 9;
    EXPECT_FALSE(cache.remember(key, {9, 1, kUdp, true}, 11));
}

TEST(Parser, FragmentCounterThroughParserEvictions) {
    PacketParser p(4);
    ParsedPacket pk;
    for (uint16_t id = 0; id < 8; ++id)
        ASSERT_EQ(parse(p, kIpv4, ipv4(kUdp, udp(id, 2), id, 0x2000), pk), ParseStatus::ok);
    EXPECT_EQ(p.counters().frag_first, 8u);
    EXPECT_GE(p.counters().frag_cache_evicted, 4u);
}

// ---------------------------------------------------------------- malformed frames

TEST(Parser, EachMalformedReason) {
    PacketParser p;
    ParsedPacket pk;
    // truncated: Ethernet header, IPv4 header, IPv4 options, IPv6 header, extension header
    EXPECT_EQ(parse(p, kEthernet, Bytes(10, 0), pk), ParseStatus::truncated);
    EXPECT_EQ(parse_exact(p, kEthernet, eth(0x0800, ipv4(kUdp, udp(1, 2))), 14 + 19, pk),
              ParseStatus::truncated);
    EXPECT_EQ(parse_exact(p, kIpv4, ipv4(kUdp, udp(1, 2), 1, 0, Bytes(8, 1)), 24, pk),
              ParseStatus::truncated);
    EXPECT_EQ(parse_exact(p, kIpv6, ipv6(kUdp, udp(1, 2)), 39, pk), ParseStatus::truncated);
    EXPECT_EQ(parse_exact(p, kIpv6, ipv6(0, cat({ext8(kUdp, 16), udp(1, 2)})), 50, pk),
              ParseStatus::truncated);
    // bad version: EtherType says IPv4/IPv6, the header disagrees
    Bytes v5 = ipv4(kUdp, udp(1, 2));
    v5[0] = 0x55;
    EXPECT_EQ(parse(p, kEthernet, eth(0x0800, v5), pk), ParseStatus::bad_version);
    EXPECT_EQ(parse(p, kEthernet, eth(0x86DD, ipv4(kUdp, udp(1, 2))), pk), ParseStatus::bad_version);
    // bad header length: IHL < 5, TCP data offset < 5, extension header past the payload
    Bytes ihl4 = ipv4(kUdp, udp(1, 2));
    ihl4[0] = 0x44;
    EXPECT_EQ(parse(p, kIpv4, ihl4, pk), ParseStatus::bad_header_length);
    EXPECT_EQ(parse(p, kIpv4, ipv4(kTcp, tcp(1, 2, 2, 4)), pk), ParseStatus::bad_header_length);
    Bytes long_ext = ipv6(0, cat({ext8(kUdp, 8), udp(1, 2), Bytes(64, 0)}));
    long_ext[40 + 1] = 20;  // claims 168 bytes, payload is 80
    EXPECT_EQ(parse(p, kIpv6, long_ext, pk), ParseStatus::bad_header_length);
    // bad total length: smaller than the IPv4 header itself
    Bytes short_total = ipv4(kUdp, udp(1, 2));
    short_total[3] = 12;
    EXPECT_EQ(parse(p, kIpv4, short_total, pk), ParseStatus::bad_total_length);
    // too many headers: covered by the bounded-chain tests; one here for the counter
    Bytes tags;
    for (int i = 0; i < 20; ++i) tags = cat({tags, tag(1, 0x8100)});
    EXPECT_EQ(parse(p, kEthernet, eth(0x8100, tags), pk), ParseStatus::too_many_headers);

    const auto& by = p.counters().by_status;
    EXPECT_EQ(by[size_t(ParseStatus::truncated)], 5u);
    EXPECT_EQ(by[size_t(ParseStatus::bad_version)], 2u);
    EXPECT_EQ(by[size_t(ParseStatus::bad_header_length)], 3u);
    EXPECT_EQ(by[size_t(ParseStatus::bad_total_length)], 1u);
    EXPECT_EQ(by[size_t(ParseStatus::too_many_headers)], 1u);
    EXPECT_EQ(by[size_t(ParseStatus::ok)], 0u);
    // A failed frame yields no half-filled fields.
    EXPECT_EQ(pk.ip_version, 0);
    EXPECT_EQ(pk.sport, 0);
}

TEST(Parser, TotalLengthZeroIsTso) {
    Bytes ip = ipv4(kTcp, tcp(1, 2, 0x10));
    ip[2] = ip[3] = 0;  // Linux TSO / BIG TCP on the capturing host
    PacketParser p;
    ParsedPacket pk;
    ASSERT_EQ(parse(p, kIpv4, ip, pk), ParseStatus::ok);
    expect_v4(pk, kTcp, 1, 2);
}

TEST(Parser, StatusNamesAreShortAndDistinct) {
    std::set<std::string> names;
    for (size_t i = 0; i < size_t(ParseStatus::count_); ++i) {
        const std::string n = angel::parse_status_name(static_cast<ParseStatus>(i));
        EXPECT_FALSE(n.empty());
        EXPECT_NE(n, "unknown");
        EXPECT_LE(n.size(), 20u);
        names.insert(n);
    }
    EXPECT_EQ(names.size(), size_t(ParseStatus::count_));
    EXPECT_STREQ(angel::parse_status_name(ParseStatus::truncated), "truncated");
}

// ---------------------------------------------------------------- every truncation

TEST(Parser, EveryCaplenOfEveryFrameStaysInBounds) {
    struct Frame { int linktype; Bytes bytes; };
    const Bytes tcp4 = ipv4(kTcp, tcp(1, 2, 0x12), 3, 0, Bytes(8, 1));
    const Bytes udp6 = ipv6(0, cat({ext8(43, 8), ext8(51, 16), ah(60, 12), ext8(44, 8),
                                    frag6(kUdp, 0, true, 1), udp(1, 2), Bytes(8, 0)}));
    const std::vector<Frame> frames = {
        {kEthernet, eth(0x0800, tcp4)},
        {kEthernet, eth(0x88A8, cat({tag(1, 0x8100), tag(2, 0x86DD), udp6}))},
        {kEthernet, eth(0x8847, cat({mpls_label(1, false), mpls_label(2, true), tcp4}))},
        {kEthernet, eth(0x8847, cat({mpls_label(2, true), be32(0), eth(0x0800, tcp4)}))},
        {kEthernet, eth(0x8864, pppoe(0x0057, udp6))},
        {kSll, sll(0x0800, ipv4(kSctp, sctp(1, 2)))},
        {kSll2, sll2(0x86DD, ipv6(kUdpLite, udp(1, 2)))},
        {kRaw, tcp4},
        {kLinktypeRaw, udp6},
        {kIpv4, ipv4(kUdp, Bytes(8, 0), 4, 0x2000 | 1)},
        {kIpv6, ipv6(44, cat({frag6(kUdp, 1, false, 1), Bytes(8, 0)}))},
        {kNull, cat({host_order32(2), tcp4})},
        {kLoop, cat({be32(30), udp6})},
    };
    PacketParser p;
    for (const Frame& f : frames) {
        ParsedPacket pk;
        ASSERT_EQ(parse(p, f.linktype, f.bytes, pk), ParseStatus::ok) << "linktype " << f.linktype;
        for (size_t caplen = 0; caplen < f.bytes.size(); ++caplen) {
            const ParseStatus s = parse_exact(p, f.linktype, f.bytes, caplen, pk);
            EXPECT_LT(size_t(s), size_t(ParseStatus::count_));
            if (s == ParseStatus::ok) {
                EXPECT_NE(pk.ip_version, 0);
            }
        }
    }
    // Every call was counted exactly once.
    uint64_t total = 0;
    for (uint64_t n : p.counters().by_status) total += n;
    size_t expected = 0;
    for (const Frame& f : frames) expected += f.bytes.size() + 1;
    EXPECT_EQ(total, expected);
}

}  // namespace
