// Link-level layers: Ethernet and what rides on it (VLAN tags, MPLS, PPPoE), Linux cooked
// capture v1/v2, BSD loopback, raw IP. Each function parses one header at `offset`.
#pragma once
#include <optional>

#include "common/packet/layer.hpp"

namespace angel::packet {

// The first layer for a libpcap link type (DLT value as pcap_datalink() reports it);
// nullopt when we do not decode that link type.
std::optional<Layer> first_layer_for_linktype(int linktype);

// Which layer handles a payload announced by this EtherType (also used by SLL/SLL2,
// whose protocol field carries an EtherType).
Layer layer_for_ethertype(uint16_t ethertype);

LayerStep parse_ethernet(const ByteReader& frame, uint32_t offset);
LayerStep parse_vlan_tag(const ByteReader& frame, uint32_t offset);
LayerStep parse_mpls(const ByteReader& frame, uint32_t offset);
LayerStep parse_pppoe_session(const ByteReader& frame, uint32_t offset);
LayerStep parse_linux_sll(const ByteReader& frame, uint32_t offset);
LayerStep parse_linux_sll2(const ByteReader& frame, uint32_t offset);
LayerStep parse_bsd_null(const ByteReader& frame, uint32_t offset);
LayerStep parse_bsd_loop(const ByteReader& frame, uint32_t offset);
LayerStep parse_ip_any(const ByteReader& frame, uint32_t offset);

}  // namespace angel::packet
