// TCP (RFC 9293), UDP (RFC 768), UDP-Lite (RFC 3828), SCTP (RFC 9260): all begin with
// source port, destination port. TCP also gives the flags the flow tracker needs.
#include "common/packet/transport.hpp"

#include <algorithm>

namespace angel::packet {

namespace {
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kSctp = 132;
constexpr uint8_t kUdpLite = 136;

// Minimum header each protocol must have before we trust its ports.
uint32_t min_header(uint8_t proto) {
    switch (proto) {
        case kTcp: return 20;
        case kUdp: return 8;
        case kUdpLite: return 8;
        case kSctp: return 12;
        default: return 0;  // no ports
    }
}
}  // namespace

ParseStatus parse_transport(const ByteReader& frame, uint32_t offset, uint32_t end,
                            uint8_t proto, ParsedPacket& out) {
    const uint32_t need = min_header(proto);
    if (need == 0) return ParseStatus::ok;
    // Only the IP packet's own bytes count (not Ethernet padding after it).
    const ByteReader packet{frame.data, std::min(end, frame.len)};
    if (!packet.has(offset, need)) return ParseStatus::truncated;
    if (proto == kTcp) {
        const uint32_t data_offset = packet.u8(offset + 12) >> 4;
        if (data_offset < 5) return ParseStatus::bad_header_length;
        out.tcp_flags = packet.u8(offset + 13);
    }
    out.sport = packet.be16(offset);
    out.dport = packet.be16(offset + 2);
    out.ports_known = true;
    return ParseStatus::ok;
}

}  // namespace angel::packet
