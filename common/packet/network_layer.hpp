// The network layer: IPv4 and IPv6 headers (with options and extension headers). Fills the
// addresses and version of ParsedPacket and reports where the transport header starts, which
// protocol it is, and the fragment facts the parser needs for its fragment cache.
//
// Tunnels (IPIP, 6in4, GRE, ...): we key on the OUTERMOST IP packet and do not descend into
// the payload. The meter sits on an ISP link, where the outer header is what the link carries
// and what the operator can act on; descending would also make one packet's flow depend on
// how many encapsulations we chose to decode. The tunnel protocol number is the flow's proto.
#pragma once
#include <cstdint>

#include "common/packet/byte_reader.hpp"
#include "common/packet/parsed_packet.hpp"

namespace angel::packet {

struct FragmentFacts {
    bool is_fragment = false;  // offset != 0 or more-fragments set
    bool first = false;        // offset 0 with more-fragments set: carries the transport header
    bool last = false;         // more-fragments clear
    uint32_t id = 0;           // IPv4 16-bit identification, or the IPv6 32-bit one
    uint8_t key_proto = 0;     // protocol as every fragment of the datagram names it
};

struct NetworkResult {
    ParseStatus status = ParseStatus::ok;
    uint8_t proto = 0;            // transport protocol (IPv6: after extension headers)
    bool has_transport = false;   // false for later fragments, ESP, no-next-header
    uint32_t l4_offset = 0;       // where the transport header starts
    uint32_t l4_end = 0;          // end of the IP packet, capped at the captured length
    FragmentFacts frag;
};

NetworkResult parse_ipv4(const ByteReader& frame, uint32_t offset, ParsedPacket& out);
NetworkResult parse_ipv6(const ByteReader& frame, uint32_t offset, ParsedPacket& out);

}  // namespace angel::packet
