// The transport layer: ports (and TCP flags) from the header at `offset`. Protocols without
// ports (ICMP, ICMPv6, GRE, ESP, ...) leave ports 0 and ports_known false.
#pragma once
#include <cstdint>

#include "common/packet/byte_reader.hpp"
#include "common/packet/parsed_packet.hpp"

namespace angel::packet {

// `end` bounds the IP packet (total length, capped at caplen): the header must fit before it.
ParseStatus parse_transport(const ByteReader& frame, uint32_t offset, uint32_t end,
                            uint8_t proto, ParsedPacket& out);

}  // namespace angel::packet
