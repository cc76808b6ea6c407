// IPFIX (RFC 7011) vocabulary shared by the encoder (netd) and the decoder (angel-sink, tests):
// information element IDs, our three record layouts as templates, big-endian helpers, time
// conversion and the flow-end reason mapping. docs/protocol.md describes the same on the wire.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/packet/parsed_packet.hpp"

namespace angel::ipfix {

inline constexpr uint16_t kVersion = 10;
inline constexpr size_t kMessageHeaderSize = 16;
inline constexpr size_t kSetHeaderSize = 4;
inline constexpr uint16_t kTemplateSetId = 2;
inline constexpr uint16_t kOptionsTemplateSetId = 3;
inline constexpr uint16_t kMinDataSetId = 256;
inline constexpr uint16_t kVariableLength = 65535;  // RFC 7011 §7
inline constexpr uint16_t kEnterpriseBit = 0x8000;

// Private Enterprise Numbers. 32473 is the documentation PEN (RFC 5612): our own elements.
// 29305 is the RFC 5103 "reverse" PEN: element N under it is the reverse direction of IANA N.
inline constexpr uint32_t kPenAngel = 32473;
inline constexpr uint32_t kPenReverse = 29305;

// IANA information element IDs we use (https://www.iana.org/assignments/ipfix).
namespace ie {
inline constexpr uint16_t octetDeltaCount = 1;
inline constexpr uint16_t packetDeltaCount = 2;
inline constexpr uint16_t protocolIdentifier = 4;
inline constexpr uint16_t tcpControlBits = 6;
inline constexpr uint16_t sourceTransportPort = 7;
inline constexpr uint16_t sourceIPv4Address = 8;
inline constexpr uint16_t destinationTransportPort = 11;
inline constexpr uint16_t destinationIPv4Address = 12;
inline constexpr uint16_t sourceIPv6Address = 27;
inline constexpr uint16_t destinationIPv6Address = 28;
inline constexpr uint16_t flowEndReason = 136;
inline constexpr uint16_t droppedPacketDeltaCount = 133;
inline constexpr uint16_t flowId = 148;
inline constexpr uint16_t flowStartNanoseconds = 156;
inline constexpr uint16_t flowEndNanoseconds = 157;
inline constexpr uint16_t dataLinkFrameSize = 312;
inline constexpr uint16_t observationTimeNanoseconds = 325;
// Enterprise-specific, PEN 32473.
// 1 byte: bit0 dir, bit1 new flow, bit2 len saturated, bit3 replayed. Also the last element of
// the flow_start and flow_end templates, where only bit3 (replayed) is used.
inline constexpr uint16_t angelPacketFlags = 1;
inline constexpr uint16_t angelEndReason = 2;    // 1 byte: our EndReason (1..5)
// 4 bytes (unsigned32): packets of this flow, both directions, the meter saw before this one
// (0 on the flow's first packet), modulo 2^32.
inline constexpr uint16_t angelPacketIndex = 3;
inline constexpr uint16_t angelLossCause = 4;    // 1 byte: why capture lost packets (kLoss*)
}  // namespace ie

// angelPacketFlags bits.
inline constexpr uint8_t kFlagReverse = 0x01;
inline constexpr uint8_t kFlagNewFlow = 0x02;
inline constexpr uint8_t kFlagLenSaturated = 0x04;  // wire length > 65535: dataLinkFrameSize = 65535
// Sent again by a meter that has just become master, from its replay window (ha.replay_ms) or its
// announcement of the live flows: the old master may have sent the same record (docs/ha.md).
// Receivers de-duplicate packets by (flow ID, packet index), flow_start/flow_end by flow ID.
inline constexpr uint8_t kFlagReplayed = 0x08;

// Template IDs: one per record layout (flow_start has one per address family, so that tshark and
// any collector see plain IPv4 / IPv6 address elements rather than v4-mapped v6 addresses).
inline constexpr uint16_t kTplPacket = 256;
inline constexpr uint16_t kTplFlowStart4 = 257;
inline constexpr uint16_t kTplFlowStart6 = 258;
inline constexpr uint16_t kTplFlowEnd = 259;
inline constexpr uint16_t kTplLoss = 260;
inline constexpr uint16_t kTplWatermark = 261;

struct FieldSpec {
    uint16_t id;          // without the enterprise bit
    uint16_t length;      // octets on the wire (reduced-size where smaller than the IANA type)
    uint32_t enterprise;  // 0 = IANA
};

struct TemplateDef {
    uint16_t id;
    std::span<const FieldSpec> fields;
    uint16_t record_size;  // sum of field lengths
};

// The templates, in the order they appear in a template set.
std::span<const TemplateDef> templates();
const TemplateDef& template_def(uint16_t id);  // one of kTpl*; anything else is a bug (aborts)

// Size of one template set carrying all our templates (header included).
size_t template_set_size();

// Our data record sizes (the packet record is the one that must stay <= 20 bytes).
inline constexpr size_t kPacketRecordSize = 20;
inline constexpr size_t kFlowStart4RecordSize = 26;
inline constexpr size_t kFlowStart6RecordSize = 50;
inline constexpr size_t kFlowEndRecordSize = 55;
inline constexpr size_t kLossRecordSize = 25;
inline constexpr size_t kWatermarkRecordSize = 8;

// Largest IPFIX message that fits an IP MTU over UDP: mtu - IP header (20 or 40) - UDP (8).
constexpr size_t max_message_size(size_t mtu, bool ipv6) { return mtu - (ipv6 ? 40 : 20) - 8; }

// Flow-end reasons. Our own codes (values of angel::EndReason in shm/records.hpp) travel in
// angelEndReason; flowEndReason carries the closest IANA value.
inline constexpr uint8_t kReasonIdle = 1, kReasonTcpClose = 2, kReasonEndOfInput = 3,
                         kReasonShutdown = 4, kReasonEvicted = 5;
inline constexpr uint8_t kIanaIdleTimeout = 1, kIanaActiveTimeout = 2, kIanaEndOfFlow = 3,
                         kIanaForcedEnd = 4, kIanaLackOfResources = 5;
uint8_t iana_end_reason(uint8_t our_reason);    // unknown -> 0 (not a valid IANA value... kept)
uint8_t our_end_reason(uint8_t iana_reason);    // best guess when only the IANA value is known
const char* end_reason_text(uint8_t our_reason);  // "idle", ..., "unknown"

// Loss causes (angelLossCause): the values of angel::LossCause in shm/records.hpp.
inline constexpr uint8_t kLossPcapDrop = 1, kLossIfDrop = 2, kLossRingDrop = 3, kLossCapdRestart = 4,
                         kLossCtldRestart = 5, kLossMasterGap = 6;
const char* loss_cause_text(uint8_t cause);  // "pcap_drop", ..., "unknown"

// What we export, independent of the shared-memory record layout (common/ must not depend on shm/).
struct PacketFields {
    uint32_t flow_id = 0;
    uint64_t ts_ns = 0;
    uint32_t wire_len = 0;
    uint8_t dir = 0;
    uint8_t tcp_flags = 0;
    bool new_flow = false;
    uint32_t index = 0;   // the flow's packet index (angelPacketIndex), mod 2^32
    bool replayed = false;  // kFlagReplayed
};
struct FlowStartFields {
    uint32_t flow_id = 0;
    uint64_t ts_ns = 0;
    uint8_t ip_version = 4;
    uint8_t proto = 0;
    uint16_t sport = 0;
    uint16_t dport = 0;
    IpBytes src{};
    IpBytes dst{};
    bool replayed = false;  // kFlagReplayed
};
struct FlowEndFields {
    uint32_t flow_id = 0;
    uint64_t first_ns = 0;
    uint64_t last_ns = 0;
    uint64_t packets[2] = {0, 0};  // [0] forward, [1] reverse
    uint64_t bytes[2] = {0, 0};
    uint8_t reason = 0;            // our code
    bool replayed = false;         // kFlagReplayed
};

struct LossFields {
    uint8_t cause = 0;             // kLoss*
    uint64_t first_ns = 0;
    uint64_t last_ns = 0;
    uint64_t packets = 0;          // 0 where not known (gaps)
};
struct WatermarkFields {
    uint64_t ts_ns = 0;            // every packet captured before it has been exported
};

// dateTimeNanoseconds is an NTP timestamp (RFC 7011 §6.1.10): seconds since 1900 and a 2^-32 s
// fraction. The conversion rounds the fraction up so that decoding gives back the exact ns.
// Decoding assumes NTP era 1 (after 2036) when the seconds' top bit is clear (RFC 5905 practice).
uint64_t ns_to_ntp(uint64_t unix_ns);
uint64_t ntp_to_ns(uint64_t ntp);

// Big-endian access. Callers check bounds.
inline void put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
inline void put32(uint8_t* p, uint32_t v) {
    p[0] = uint8_t(v >> 24); p[1] = uint8_t(v >> 16); p[2] = uint8_t(v >> 8); p[3] = uint8_t(v);
}
inline void put64(uint8_t* p, uint64_t v) { put32(p, uint32_t(v >> 32)); put32(p + 4, uint32_t(v)); }
inline uint16_t get16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t get32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}
inline uint64_t get64(const uint8_t* p) { return uint64_t(get32(p)) << 32 | get32(p + 4); }
// An unsigned of any reduced size 1..8 (RFC 7011 §6.2).
inline uint64_t get_uint(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = v << 8 | p[i];
    return v;
}

}  // namespace angel::ipfix
