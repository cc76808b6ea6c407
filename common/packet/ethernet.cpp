// Ethernet and the encapsulations an ISP access link carries on it: 802.1Q/802.1ad/QinQ tags,
// MPLS label stacks and PPPoE sessions. Each parses one header and names the next layer.
#include "common/packet/link_layer.hpp"

namespace angel::packet {

namespace {
constexpr uint32_t kEthernetHeader = 14;   // dst MAC, src MAC, EtherType
constexpr uint32_t kVlanTag = 4;           // TCI, inner EtherType
constexpr uint32_t kMplsEntry = 4;         // label 20 | TC 3 | S 1 | TTL 8
constexpr uint32_t kMaxMplsLabels = 16;    // a deeper stack is treated as hostile
constexpr uint32_t kPwControlWord = 4;     // pseudowire control word after the label stack
constexpr uint32_t kPppoeHeader = 6;       // ver/type, code, session id, length
constexpr uint32_t kPppProtocol = 2;
constexpr uint16_t kMaxEthernetLength = 1500;  // below: an 802.3 length field, not a type

constexpr uint16_t kPppIpv4 = 0x0021;
constexpr uint16_t kPppIpv6 = 0x0057;

LayerStep truncated() { return {Layer::not_ip, 0, ParseStatus::truncated}; }
}  // namespace

Layer layer_for_ethertype(uint16_t ethertype) {
    switch (ethertype) {
        case 0x0800: return Layer::ipv4;
        case 0x86DD: return Layer::ipv6;
        case 0x8100:  // 802.1Q C-tag
        case 0x88A8:  // 802.1ad S-tag
        case 0x9100:  // pre-standard QinQ S-tag
            return Layer::vlan_tag;
        case 0x8847:  // MPLS unicast
        case 0x8848:  // MPLS multicast
            return Layer::mpls;
        case 0x8864: return Layer::pppoe_session;  // 0x8863 (discovery) carries no IP
        default: return Layer::not_ip;             // ARP, LLDP, 802.3 lengths, ...
    }
}

LayerStep parse_ethernet(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kEthernetHeader)) return truncated();
    const uint16_t type = frame.be16(offset + 12);
    // 802.3 frames (length field) carry LLC/SNAP; IP over them is not seen on our links.
    if (type <= kMaxEthernetLength) return {Layer::not_ip, offset + kEthernetHeader};
    return {layer_for_ethertype(type), offset + kEthernetHeader};
}

LayerStep parse_vlan_tag(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kVlanTag)) return truncated();
    return {layer_for_ethertype(frame.be16(offset + 2)), offset + kVlanTag};
}

LayerStep parse_mpls(const ByteReader& frame, uint32_t offset) {
    for (uint32_t i = 0; i < kMaxMplsLabels; ++i) {
        if (!frame.has(offset, kMplsEntry)) return truncated();
        const bool bottom_of_stack = (frame.u8(offset + 2) & 0x01) != 0;
        offset += kMplsEntry;
        if (bottom_of_stack) {
            // MPLS does not say what it carries; the first nibble tells: 4/6 is IP, 0 is the
            // pseudowire control word (RFC 4385) of an Ethernet pseudowire (RFC 4448), as ISP
            // cores carry for L2VPN customers. Anything else (e.g. the associated channel, 1)
            // is not decoded.
            if (!frame.has(offset, 1)) return truncated();
            switch (frame.u8(offset) >> 4) {
                case 4: return {Layer::ipv4, offset};
                case 6: return {Layer::ipv6, offset};
                case 0:
                    if (!frame.has(offset, kPwControlWord)) return truncated();
                    return {Layer::ethernet, offset + kPwControlWord};
                default: return {Layer::not_ip, offset};
            }
        }
    }
    return {Layer::not_ip, offset, ParseStatus::too_many_headers};
}

LayerStep parse_pppoe_session(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kPppoeHeader + kPppProtocol)) return truncated();
    // RFC 2516: version 1, type 1, code 0 for session data.
    if (frame.u8(offset) != 0x11 || frame.u8(offset + 1) != 0x00)
        return {Layer::not_ip, offset, ParseStatus::bad_version};
    const uint16_t ppp_protocol = frame.be16(offset + kPppoeHeader);
    const uint32_t payload = offset + kPppoeHeader + kPppProtocol;
    switch (ppp_protocol) {
        case kPppIpv4: return {Layer::ipv4, payload};
        case kPppIpv6: return {Layer::ipv6, payload};
        default: return {Layer::not_ip, payload};  // LCP, IPCP, ...
    }
}

}  // namespace angel::packet
