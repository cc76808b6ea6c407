// What the layered parser extracts from one captured frame: the flow-relevant fields only.
// Filled by angel::PacketParser (common/packet/parser.hpp); read by procd and the tests.
#pragma once
#include <array>
#include <cstdint>

namespace angel {

// An IP address in 16 bytes. IPv4 uses the first 4 bytes, the remaining 12 are zero,
// so that comparisons and hashing treat both families alike (the version is kept apart).
using IpBytes = std::array<uint8_t, 16>;

// Why a frame yielded no flow. Every value except ok and not_ip is a malformed-input counter.
enum class ParseStatus : uint8_t {
    ok = 0,              // an IP packet; fields below are valid
    not_ip,              // valid frame carrying something else (ARP, LLDP, ...): skipped, counted
    unsupported_link,    // link type (DLT) we do not decode
    truncated,           // a header runs past the captured length
    bad_version,         // IP version field neither 4 nor 6 where IP was announced
    bad_header_length,   // IPv4 IHL < 5, TCP data offset < 5, extension header lengths wrong
    bad_total_length,    // IP total/payload length smaller than its own header
    too_many_headers,    // tag/label/extension chain longer than the parser's bound
    count_               // number of statuses, for counter arrays
};

const char* parse_status_name(ParseStatus s);

struct ParsedPacket {
    uint8_t ip_version = 0;   // 4 or 6
    uint8_t proto = 0;        // transport protocol (after IPv6 extension headers)
    uint8_t tcp_flags = 0;    // TCP flags byte (CWR..FIN), 0 for other protocols
    bool fragment = false;    // the packet is an IP fragment (first or not)
    bool ports_known = false; // ports came from a transport header or the fragment cache
    uint16_t sport = 0;       // 0 where the protocol has no ports
    uint16_t dport = 0;
    IpBytes src{};
    IpBytes dst{};
    uint16_t l3_offset = 0;   // offset of the IP header inside the captured frame
};

}  // namespace angel
