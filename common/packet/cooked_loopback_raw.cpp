// Link layers without Ethernet: Linux cooked capture (v1, v2), BSD loopback (NULL, LOOP) and
// raw IP, plus the mapping from a libpcap link type to the first layer.
#include "common/packet/link_layer.hpp"

namespace angel::packet {

namespace {
constexpr uint32_t kSllHeader = 16;   // pkttype, hatype, addr len, addr[8], protocol
constexpr uint32_t kSll2Header = 20;  // protocol, reserved, ifindex, hatype, pkttype, ...
constexpr uint32_t kLoopbackHeader = 4;

// SLL protocol values below 0x0600 are not EtherTypes (Linux ETH_P_802_3, ETH_P_802_2, ...).
constexpr uint16_t kMinEthertype = 0x0600;

// Address families in the 4-byte loopback header. AF_INET6 differs between systems:
// 10 on Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS.
constexpr uint32_t kAfInet = 2;
bool is_af_inet6(uint32_t af) { return af == 10 || af == 24 || af == 28 || af == 30; }

LayerStep by_address_family(uint32_t af, uint32_t payload) {
    if (af == kAfInet) return {Layer::ipv4, payload};
    if (is_af_inet6(af)) return {Layer::ipv6, payload};
    return {Layer::not_ip, payload};
}

LayerStep by_sll_protocol(uint16_t protocol, uint32_t payload) {
    if (protocol < kMinEthertype) return {Layer::not_ip, payload};
    return {layer_for_ethertype(protocol), payload};
}
}  // namespace

std::optional<Layer> first_layer_for_linktype(int linktype) {
    switch (linktype) {
        case 0: return Layer::bsd_null;      // DLT_NULL
        case 1: return Layer::ethernet;      // DLT_EN10MB
        case 12:                             // DLT_RAW on most systems (and what libpcap
        case 14:                             // reports for LINKTYPE_RAW on Linux); 14 on OpenBSD
        case 101: return Layer::ip_any;      // LINKTYPE_RAW as stored in files
        case 108: return Layer::bsd_loop;    // DLT_LOOP
        case 113: return Layer::linux_sll;   // DLT_LINUX_SLL
        case 228: return Layer::ipv4;        // DLT_IPV4
        case 229: return Layer::ipv6;        // DLT_IPV6
        case 276: return Layer::linux_sll2;  // DLT_LINUX_SLL2
        default: return std::nullopt;
    }
}

LayerStep parse_linux_sll(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kSllHeader)) return {Layer::not_ip, 0, ParseStatus::truncated};
    return by_sll_protocol(frame.be16(offset + 14), offset + kSllHeader);
}

LayerStep parse_linux_sll2(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kSll2Header)) return {Layer::not_ip, 0, ParseStatus::truncated};
    return by_sll_protocol(frame.be16(offset), offset + kSll2Header);
}

LayerStep parse_bsd_null(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kLoopbackHeader)) return {Layer::not_ip, 0, ParseStatus::truncated};
    uint32_t af = frame.native32(offset);
    // Host byte order of the machine that captured, which need not be ours: a family value
    // is small, so one with only high bytes set was written by the other endianness.
    if ((af & 0xFFFF0000u) != 0) af = __builtin_bswap32(af);
    return by_address_family(af, offset + kLoopbackHeader);
}

LayerStep parse_bsd_loop(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, kLoopbackHeader)) return {Layer::not_ip, 0, ParseStatus::truncated};
    return by_address_family(frame.be32(offset), offset + kLoopbackHeader);
}

LayerStep parse_ip_any(const ByteReader& frame, uint32_t offset) {
    if (!frame.has(offset, 1)) return {Layer::not_ip, 0, ParseStatus::truncated};
    switch (frame.u8(offset) >> 4) {
        case 4: return {Layer::ipv4, offset};
        case 6: return {Layer::ipv6, offset};
        default: return {Layer::not_ip, offset, ParseStatus::bad_version};
    }
}

}  // namespace angel::packet
