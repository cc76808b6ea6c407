// The layer chain below IP. Each link-level layer is one small function that parses its own
// header and names the layer that parses next (with the offset where it starts). The parser
// drives them from a table, so adding a link or encapsulation layer means one new function,
// one new Layer value and one table row -- no other layer changes.
#pragma once
#include <cstdint>

#include "common/packet/byte_reader.hpp"
#include "common/packet/parsed_packet.hpp"

namespace angel::packet {

enum class Layer : uint8_t {
    // link-level layers, driven from kLinkLayers in parser.cpp
    ethernet,       // DLT_EN10MB
    vlan_tag,       // 802.1Q / 802.1ad / 0x9100 tag, any depth (bounded by the step limit)
    mpls,           // label stack up to bottom-of-stack, then IPv4/IPv6 by first nibble
    pppoe_session,  // PPPoE session + PPP protocol field
    linux_sll,      // DLT_LINUX_SLL (cooked v1)
    linux_sll2,     // DLT_LINUX_SLL2 (cooked v2)
    bsd_null,       // DLT_NULL: 4-byte address family in host byte order
    bsd_loop,       // DLT_LOOP: 4-byte address family in network byte order
    ip_any,         // raw IP: version by the first nibble
    link_count_,    // number of link-level layers (table size)
    // terminal layers: the network layer, or "this frame carries no IP"
    ipv4,
    ipv6,
    not_ip,
};

// The outcome of one layer: where to go next, or a status that ends parsing.
struct LayerStep {
    Layer next = Layer::not_ip;
    uint32_t offset = 0;
    ParseStatus status = ParseStatus::ok;  // != ok: the frame is malformed, stop here
};

using LinkLayerFn = LayerStep (*)(const ByteReader& frame, uint32_t offset);

}  // namespace angel::packet
