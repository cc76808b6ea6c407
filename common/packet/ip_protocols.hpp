// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") that the parser acts on, and
// the two questions both of its paths ask of them. One definition for the layered parser
// (ipv6.cpp, transport.cpp) and its fast path (common_frame.cpp), so the two cannot disagree.
#pragma once
#include <cstdint>

namespace angel::packet::ipproto {

inline constexpr uint8_t kHopByHop = 0;      // IPv6 extension headers (RFC 8200)...
inline constexpr uint8_t kRouting = 43;
inline constexpr uint8_t kFragment = 44;
inline constexpr uint8_t kAuthHeader = 51;   // ... and AH (RFC 4302), chained the same way
inline constexpr uint8_t kDestOptions = 60;
inline constexpr uint8_t kEsp = 50;          // ends the readable chain
inline constexpr uint8_t kNoNextHeader = 59; // ends the chain
inline constexpr uint8_t kTcp = 6;
inline constexpr uint8_t kUdp = 17;
inline constexpr uint8_t kSctp = 132;
inline constexpr uint8_t kUdpLite = 136;

// Transports whose header starts with source and destination port.
inline bool has_ports(uint8_t proto) {
    return proto == kTcp || proto == kUdp || proto == kUdpLite || proto == kSctp;
}

// IPv6 next-header values the parser walks over as extension headers.
inline bool is_ipv6_extension(uint8_t next) {
    return next == kHopByHop || next == kRouting || next == kFragment || next == kAuthHeader ||
           next == kDestOptions;
}

}  // namespace angel::packet::ipproto
