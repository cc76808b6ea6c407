// The fast path of the packet parser, for the frames that make up nearly all traffic on an
// ISP link: Ethernet, at most two VLAN tags, an unfragmented IPv4 packet (options allowed)
// or an IPv6 packet without extension headers, then TCP/UDP/UDP-Lite/SCTP ports or no
// transport header at all, every fixed header fully captured. One bounds check per header
// instead of one per field, and no layer table.
//
// It gives exactly what the layered parser gives for such a frame (tests/unit compare the
// two on every capture in ../shared and on mutated frames; the fuzzer compares them on every
// input). Anything else -- other link types and encapsulations, fragments, extension
// headers, a header cut short, a malformed field -- it declines, and PacketParser runs the
// layered parser, which also owns every error status.
#pragma once
#include <cstdint>

#include "common/packet/parsed_packet.hpp"

namespace angel::packet {

// Fills out and returns true when the frame is one of the common kind above and parses
// cleanly (status ok); returns false, with out in an unspecified state, otherwise.
bool parse_common_frame(int linktype, const uint8_t* data, uint32_t caplen, ParsedPacket& out);

}  // namespace angel::packet
