// The parser's fast path (see common_frame.hpp). Each step mirrors its layered counterpart
// (ethernet.cpp, ipv4.cpp, ipv6.cpp, transport.cpp) for the well-formed case and declines
// wherever that counterpart would report an error or take another branch.
#include "common/packet/common_frame.hpp"

#include <algorithm>
#include <cstring>

#include "common/packet/ip_protocols.hpp"

namespace angel::packet {

using namespace ipproto;

namespace {

constexpr int kDltEthernet = 1;
constexpr uint32_t kEthernetHeader = 14;
constexpr uint32_t kVlanTag = 4;
constexpr int kMaxTags = 2;  // deeper stacks go the layered way
constexpr uint32_t kIpv4MinHeader = 20;
constexpr uint32_t kIpv6Header = 40;

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

bool is_vlan_type(uint16_t t) { return t == 0x8100 || t == 0x88A8 || t == 0x9100; }

// parse_transport for a packet whose bytes end at end (<= caplen).
bool transport(const uint8_t* d, uint32_t off, uint32_t end, uint8_t proto, ParsedPacket& out) {
    if (!has_ports(proto)) return true;
    if (off > end || end - off < 4) return false;  // ports cut: truncated
    if (proto == kTcp && end - off > 12) {
        if ((d[off + 12] >> 4) < 5) return false;  // bad header length
        out.tcp_flags = end - off > 13 ? d[off + 13] : 0;
    }
    out.sport = be16(d + off);
    out.dport = be16(d + off + 2);
    out.ports_known = true;
    return true;
}

bool ipv4(const uint8_t* d, uint32_t off, uint32_t caplen, ParsedPacket& out) {
    if (caplen - off < kIpv4MinHeader) return false;
    const uint8_t version_ihl = d[off];
    if ((version_ihl >> 4) != 4) return false;
    const uint32_t header_len = (version_ihl & 0x0Fu) * 4;
    if (header_len < kIpv4MinHeader || caplen - off < header_len) return false;
    const uint16_t total_len = be16(d + off + 2);
    if (total_len != 0 && total_len < header_len) return false;
    if ((be16(d + off + 6) & 0x3FFF) != 0) return false;  // a fragment: the cache's business
    out.ip_version = 4;
    out.proto = d[off + 9];
    out.l3_offset = static_cast<uint16_t>(off);
    std::memcpy(out.src.data(), d + off + 12, 4);
    std::memcpy(out.dst.data(), d + off + 16, 4);
    const uint32_t end = total_len == 0 ? caplen : std::min(caplen, off + total_len);
    return transport(d, off + header_len, end, out.proto, out);
}

bool ipv6(const uint8_t* d, uint32_t off, uint32_t caplen, ParsedPacket& out) {
    if (caplen - off < kIpv6Header) return false;
    if ((d[off] >> 4) != 6) return false;
    const uint8_t next = d[off + 6];
    if (is_ipv6_extension(next)) return false;
    const uint16_t payload_len = be16(d + off + 4);
    const uint32_t end = payload_len == 0 ? caplen : std::min(caplen, off + kIpv6Header + payload_len);
    out.ip_version = 6;
    out.proto = next;
    out.l3_offset = static_cast<uint16_t>(off);
    std::memcpy(out.src.data(), d + off + 8, 16);
    std::memcpy(out.dst.data(), d + off + 24, 16);
    if (next == kEsp || next == kNoNextHeader) return true;  // nothing readable after them
    return transport(d, off + kIpv6Header, end, next, out);
}

}  // namespace

bool parse_common_frame(int linktype, const uint8_t* d, uint32_t caplen, ParsedPacket& out) {
    if (linktype != kDltEthernet || d == nullptr || caplen < kEthernetHeader) return false;
    uint32_t off = kEthernetHeader;
    uint16_t type = be16(d + 12);
    for (int tags = 0; is_vlan_type(type); ++tags) {
        if (tags == kMaxTags || caplen - off < kVlanTag) return false;
        type = be16(d + off + 2);
        off += kVlanTag;
    }
    if (type == 0x0800) return ipv4(d, off, caplen, out);
    if (type == 0x86DD) return ipv6(d, off, caplen, out);
    return false;
}

}  // namespace angel::packet
