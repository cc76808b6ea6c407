// IPv4 (RFC 791): header with options, total length, fragments.
#include <algorithm>

#include "common/packet/network_layer.hpp"

namespace angel::packet {

namespace {
constexpr uint32_t kMinHeader = 20;
constexpr uint16_t kMoreFragments = 0x2000;
constexpr uint16_t kOffsetMask = 0x1FFF;

NetworkResult failed(ParseStatus s) {
    NetworkResult r;
    r.status = s;
    return r;
}
}  // namespace

NetworkResult parse_ipv4(const ByteReader& frame, uint32_t offset, ParsedPacket& out) {
    // The version first: a packet of the wrong version is reported as such even when short.
    if (!frame.has(offset, 1)) return failed(ParseStatus::truncated);
    const uint8_t version_ihl = frame.u8(offset);
    if ((version_ihl >> 4) != 4) return failed(ParseStatus::bad_version);
    if (!frame.has(offset, kMinHeader)) return failed(ParseStatus::truncated);
    const uint32_t header_len = (version_ihl & 0x0Fu) * 4;
    if (header_len < kMinHeader) return failed(ParseStatus::bad_header_length);
    if (!frame.has(offset, header_len)) return failed(ParseStatus::truncated);  // options cut
    const uint16_t total_len = frame.be16(offset + 2);
    // Total length 0 is what Linux writes for TSO / BIG TCP super-packets captured on the
    // sending host; such a packet ends where the capture does. Any other value below the
    // header length is malformed.
    if (total_len != 0 && total_len < header_len) return failed(ParseStatus::bad_total_length);

    NetworkResult r;
    r.proto = frame.u8(offset + 9);
    r.l4_offset = offset + header_len;
    // Ethernet pads short frames: bytes after the total length are not the packet's.
    r.l4_end = total_len == 0 ? frame.len
                              : static_cast<uint32_t>(std::min<uint64_t>(
                                    frame.len, uint64_t{offset} + total_len));

    const uint16_t flags_offset = frame.be16(offset + 6);
    const bool more = (flags_offset & kMoreFragments) != 0;
    const bool at_start = (flags_offset & kOffsetMask) == 0;
    r.frag.is_fragment = more || !at_start;
    r.frag.first = more && at_start;
    r.frag.last = !more;
    r.frag.id = frame.be16(offset + 4);
    r.frag.key_proto = r.proto;
    r.has_transport = at_start;  // later fragments carry no transport header

    out.ip_version = 4;
    out.l3_offset = static_cast<uint16_t>(offset);
    frame.copy(offset + 12, 4, out.src.data());
    frame.copy(offset + 16, 4, out.dst.data());
    return r;
}

}  // namespace angel::packet
