// IPv6 (RFC 8200): fixed header, then the extension header chain -- hop-by-hop (0), routing
// (43), fragment (44), destination options (60), AH (51, RFC 4302) -- up to the transport
// header. ESP (50) and no-next-header (59) end the chain: nothing after them is readable.
#include <algorithm>

#include "common/packet/ip_protocols.hpp"
#include "common/packet/network_layer.hpp"

namespace angel::packet {

namespace {
constexpr uint32_t kFixedHeader = 40;
constexpr uint32_t kFragmentHeader = 8;
constexpr uint32_t kMaxExtensionHeaders = 16;  // a longer chain is an attack, not traffic

using namespace ipproto;

NetworkResult failed(ParseStatus s) {
    NetworkResult r;
    r.status = s;
    return r;
}
}  // namespace

NetworkResult parse_ipv6(const ByteReader& frame, uint32_t offset, ParsedPacket& out) {
    // The version first: a packet of the wrong version is reported as such even when short.
    if (!frame.has(offset, 1)) return failed(ParseStatus::truncated);
    if ((frame.u8(offset) >> 4) != 6) return failed(ParseStatus::bad_version);
    if (!frame.has(offset, kFixedHeader)) return failed(ParseStatus::truncated);
    const uint16_t payload_len = frame.be16(offset + 4);
    // Payload length 0: a jumbogram (RFC 2675) or a BIG TCP / GSO super-packet; the packet
    // then ends where the capture does.
    const uint64_t declared_end = payload_len == 0 ? UINT64_MAX
                                                   : uint64_t{offset} + kFixedHeader + payload_len;

    out.ip_version = 6;
    out.l3_offset = static_cast<uint16_t>(offset);
    frame.copy(offset + 8, 16, out.src.data());
    frame.copy(offset + 24, 16, out.dst.data());

    NetworkResult r;
    r.l4_end = static_cast<uint32_t>(std::min<uint64_t>(frame.len, declared_end));
    uint8_t next = frame.u8(offset + 6);
    uint32_t cur = offset + kFixedHeader;

    for (uint32_t n = 0;; ++n) {
        uint32_t len = 0;
        switch (next) {
            case kHopByHop:
            case kRouting:
            case kDestOptions:
                if (!frame.has(cur, 2)) return failed(ParseStatus::truncated);
                len = (uint32_t{frame.u8(cur + 1)} + 1) * 8;  // in 8-octet units, minus the first
                break;
            case kAuthHeader:
                if (!frame.has(cur, 2)) return failed(ParseStatus::truncated);
                len = (uint32_t{frame.u8(cur + 1)} + 2) * 4;  // in 4-octet units, minus two
                break;
            case kFragment:
                len = kFragmentHeader;
                break;
            default:  // the transport header, or ESP / no-next-header ending the chain
                r.proto = next;
                r.l4_offset = cur;
                r.has_transport = next != kEsp && next != kNoNextHeader;
                return r;
        }
        if (n >= kMaxExtensionHeaders) return failed(ParseStatus::too_many_headers);
        if (uint64_t{cur} + len > declared_end) return failed(ParseStatus::bad_header_length);
        if (!frame.has(cur, len)) return failed(ParseStatus::truncated);

        const uint8_t following = frame.u8(cur);
        if (next == kFragment && !r.frag.is_fragment) {
            const uint16_t offset_flags = frame.be16(cur + 2);
            const bool more = (offset_flags & 0x0001) != 0;
            const bool at_start = (offset_flags >> 3) == 0;
            r.frag.id = frame.be32(cur + 4);
            r.frag.key_proto = following;
            r.frag.last = !more;
            r.frag.first = more && at_start;
            // An "atomic" fragment (offset 0, M clear, RFC 6946) is a whole packet.
            r.frag.is_fragment = more || !at_start;
            if (!at_start) {
                // Later fragment: what follows is the middle of the datagram, not a header.
                r.proto = following;
                r.l4_offset = cur + len;
                r.has_transport = false;
                return r;
            }
        }
        next = following;
        cur += len;
    }
}

}  // namespace angel::packet
