// TCP (RFC 9293), UDP (RFC 768), UDP-Lite (RFC 3828), SCTP (RFC 9260): all begin with
// source port, destination port. TCP also gives the flags the flow tracker needs.
#include "common/packet/transport.hpp"

#include <algorithm>

#include "common/packet/ip_protocols.hpp"

namespace angel::packet {

using namespace ipproto;

namespace {
constexpr uint32_t kPortBytes = 4;       // source port, destination port
constexpr uint32_t kTcpOffsetByte = 12;  // data offset (high nibble)
constexpr uint32_t kTcpFlagsByte = 13;
}  // namespace

// Ports need only the first 4 bytes. A header cut short after them (a small snaplen, a tiny
// first fragment) still names its flow, so we take the ports and whatever TCP fields are
// present rather than drop the packet; fewer than 4 bytes is truncated.
ParseStatus parse_transport(const ByteReader& frame, uint32_t offset, uint32_t end,
                            uint8_t proto, ParsedPacket& out) {
    if (!has_ports(proto)) return ParseStatus::ok;
    // Only the IP packet's own bytes count (not Ethernet padding after it).
    const ByteReader packet{frame.data, std::min(end, frame.len)};
    if (!packet.has(offset, kPortBytes)) return ParseStatus::truncated;
    if (proto == kTcp && packet.has(offset + kTcpOffsetByte, 1)) {
        const uint32_t data_offset = packet.u8(offset + kTcpOffsetByte) >> 4;
        if (data_offset < 5) return ParseStatus::bad_header_length;  // shorter than 20 bytes
        out.tcp_flags = packet.u8(offset + kTcpFlagsByte);          // 0 when cut before it
    }
    out.sport = packet.be16(offset);
    out.dport = packet.be16(offset + 2);
    out.ports_known = true;
    return ParseStatus::ok;
}

}  // namespace angel::packet
