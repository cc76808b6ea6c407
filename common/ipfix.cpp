// Template definitions and the small conversions of ipfix.hpp.
#include "common/ipfix.hpp"

#include <cstdlib>

namespace angel::ipfix {
namespace {

// Packet record, 20 bytes. Reduced sizes: flowId 8->4 (our IDs are 32-bit), tcpControlBits 2->1
// (we capture the classic flags byte only). dataLinkFrameSize is natively 16-bit: frames longer
// than 65535 (GSO/BIG TCP captures) are saturated and flagged in angelPacketFlags. The packet
// index comes last, so the first 16 bytes are laid out as before it existed.
constexpr FieldSpec kPacketFields[] = {
    {ie::flowId, 4, 0},
    {ie::observationTimeNanoseconds, 8, 0},
    {ie::dataLinkFrameSize, 2, 0},
    {ie::tcpControlBits, 1, 0},
    {ie::angelPacketFlags, 1, kPenAngel},
    {ie::angelPacketIndex, 4, kPenAngel},
};

constexpr FieldSpec kFlowStart4Fields[] = {
    {ie::flowId, 4, 0},
    {ie::flowStartNanoseconds, 8, 0},
    {ie::protocolIdentifier, 1, 0},
    {ie::sourceIPv4Address, 4, 0},
    {ie::sourceTransportPort, 2, 0},
    {ie::destinationIPv4Address, 4, 0},
    {ie::destinationTransportPort, 2, 0},
    {ie::angelPacketFlags, 1, kPenAngel},  // bit3: replayed
};

constexpr FieldSpec kFlowStart6Fields[] = {
    {ie::flowId, 4, 0},
    {ie::flowStartNanoseconds, 8, 0},
    {ie::protocolIdentifier, 1, 0},
    {ie::sourceIPv6Address, 16, 0},
    {ie::sourceTransportPort, 2, 0},
    {ie::destinationIPv6Address, 16, 0},
    {ie::destinationTransportPort, 2, 0},
    {ie::angelPacketFlags, 1, kPenAngel},  // bit3: replayed
};

// Forward counters are the plain IANA elements; reverse ones the same IDs under PEN 29305.
constexpr FieldSpec kFlowEndFields[] = {
    {ie::flowId, 4, 0},
    {ie::flowStartNanoseconds, 8, 0},
    {ie::flowEndNanoseconds, 8, 0},
    {ie::flowEndReason, 1, 0},
    {ie::angelEndReason, 1, kPenAngel},
    {ie::packetDeltaCount, 8, 0},
    {ie::octetDeltaCount, 8, 0},
    {ie::packetDeltaCount, 8, kPenReverse},
    {ie::octetDeltaCount, 8, kPenReverse},
    {ie::angelPacketFlags, 1, kPenAngel},  // bit3: replayed
};

// Loss record: why, the interval, how many. flowStart/EndNanoseconds bound the lost interval
// (IANA has no "loss interval" element; these are the first and last times of what the record
// counts). droppedPacketDeltaCount: packets dropped since the previous report of this cause.
constexpr FieldSpec kLossFields[] = {
    {ie::angelLossCause, 1, kPenAngel},
    {ie::flowStartNanoseconds, 8, 0},
    {ie::flowEndNanoseconds, 8, 0},
    {ie::droppedPacketDeltaCount, 8, 0},
};

// Watermark record: the time T alone, as IANA's observation time.
constexpr FieldSpec kWatermarkFields[] = {
    {ie::observationTimeNanoseconds, 8, 0},
};

constexpr uint16_t sum(std::span<const FieldSpec> f) {
    uint16_t n = 0;
    for (const auto& x : f) n = uint16_t(n + x.length);
    return n;
}

constexpr TemplateDef kTemplates[] = {
    {kTplPacket, kPacketFields, sum(kPacketFields)},
    {kTplFlowStart4, kFlowStart4Fields, sum(kFlowStart4Fields)},
    {kTplFlowStart6, kFlowStart6Fields, sum(kFlowStart6Fields)},
    {kTplFlowEnd, kFlowEndFields, sum(kFlowEndFields)},
    {kTplLoss, kLossFields, sum(kLossFields)},
    {kTplWatermark, kWatermarkFields, sum(kWatermarkFields)},
};

static_assert(sum(kPacketFields) == kPacketRecordSize && kPacketRecordSize <= 20);
static_assert(sum(kFlowStart4Fields) == kFlowStart4RecordSize);
static_assert(sum(kFlowStart6Fields) == kFlowStart6RecordSize);
static_assert(sum(kFlowEndFields) == kFlowEndRecordSize);
static_assert(sum(kLossFields) == kLossRecordSize);
static_assert(sum(kWatermarkFields) == kWatermarkRecordSize);

constexpr size_t compute_template_set_size() {
    size_t n = kSetHeaderSize;
    for (const auto& t : kTemplates) {
        n += 4;  // template ID + field count
        for (const auto& f : t.fields) n += f.enterprise ? 8 : 4;
    }
    return n;
}

}  // namespace

std::span<const TemplateDef> templates() { return kTemplates; }

const TemplateDef& template_def(uint16_t id) {
    for (const auto& t : kTemplates)
        if (t.id == id) return t;
    std::abort();
}

size_t template_set_size() { return compute_template_set_size(); }

uint8_t iana_end_reason(uint8_t r) {
    switch (r) {
    case kReasonIdle: return kIanaIdleTimeout;
    case kReasonTcpClose: return kIanaEndOfFlow;
    case kReasonEndOfInput: return kIanaForcedEnd;
    case kReasonShutdown: return kIanaForcedEnd;
    case kReasonEvicted: return kIanaLackOfResources;
    default: return 0;
    }
}

uint8_t our_end_reason(uint8_t iana) {
    switch (iana) {
    case kIanaIdleTimeout: return kReasonIdle;
    case kIanaActiveTimeout: return kReasonIdle;  // we never split flows; nearest meaning
    case kIanaEndOfFlow: return kReasonTcpClose;
    case kIanaForcedEnd: return kReasonShutdown;
    case kIanaLackOfResources: return kReasonEvicted;
    default: return 0;
    }
}

const char* end_reason_text(uint8_t r) {
    switch (r) {
    case kReasonIdle: return "idle";
    case kReasonTcpClose: return "tcp_close";
    case kReasonEndOfInput: return "end_of_input";
    case kReasonShutdown: return "shutdown";
    case kReasonEvicted: return "evicted";
    default: return "unknown";
    }
}

const char* loss_cause_text(uint8_t c) {
    switch (c) {
    case kLossPcapDrop: return "pcap_drop";
    case kLossIfDrop: return "if_drop";
    case kLossRingDrop: return "ring_drop";
    case kLossCapdRestart: return "capd_restart";
    case kLossCtldRestart: return "ctld_restart";
    case kLossMasterGap: return "master_gap";
    default: return "unknown";
    }
}

namespace {
constexpr uint64_t kNtpUnixOffset = 2208988800ull;  // seconds from 1900-01-01 to 1970-01-01
constexpr uint64_t kNs = 1000000000ull;
}  // namespace

uint64_t ns_to_ntp(uint64_t unix_ns) {
    const uint64_t sec = unix_ns / kNs + kNtpUnixOffset;
    const uint64_t sub = unix_ns % kNs;
    const uint64_t frac = ((sub << 32) + kNs - 1) / kNs;  // ceil: < 2^32 for sub < 1e9
    return (sec & 0xffffffffull) << 32 | frac;
}

uint64_t ntp_to_ns(uint64_t ntp) {
    uint64_t sec = ntp >> 32;
    if (sec < 0x80000000ull) sec += 1ull << 32;  // era 1: 2036-02-07 .. 2104
    const uint64_t frac = ntp & 0xffffffffull;
    return (sec - kNtpUnixOffset) * kNs + ((frac * kNs) >> 32);
}

}  // namespace angel::ipfix
