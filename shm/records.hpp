// Fixed-size records that procd emits: into the record ring (to netd, exported as IPFIX) and
// into the event ring (to ctld, for the database). Plain data, same layout in every process.
#pragma once
#include <cstdint>
#include <type_traits>

#include "common/packet/parsed_packet.hpp"

namespace angel {

// announce: never exported; procd puts it in the record ring before it re-announces every live
// flow (flow_id = the low 32 bits of ControlBlock::announce_request), so that netd knows where
// a new master's stream may begin (docs/ha.md).
// loss: capture lost packets or had a gap (LossInfo; ts_ns = last_ns). watermark: every packet
// captured before ts_ns has had its record queued ahead of this one (docs/protocol.md).
enum class RecordType : uint8_t {
    packet = 1, flow_start = 2, flow_end = 3, announce = 4, loss = 5, watermark = 6
};

// What a loss record reports; the numeric values are exported (angelLossCause,
// docs/protocol.md has the table).
enum class LossCause : uint8_t {
    pcap_drop = 1,     // libpcap ps_drop: accepted for the capture, dropped, its buffer was full
    if_drop = 2,       // libpcap ps_ifdrop: dropped by the interface/driver before the capture
    ring_drop = 3,     // capd's packet ring was full (procd behind): captured, then dropped
    capd_restart = 4,  // no capture between the previous capd's last and the new one's start
    ctld_restart = 5,  // the meter restarted after an unclean stop (reserved, see protocol.md)
    master_gap = 6,    // HA: became master after a gap the replay window did not cover
};
inline constexpr uint8_t kLossCauseMax = 6;  // names: ipfix::loss_cause_text()

// Why a flow ended; the numeric values are exported (IPFIX flowEndReason-like, docs/protocol.md).
enum class EndReason : uint8_t {
    idle = 1,          // no packet for flow.timeout
    tcp_close = 2,     // FIN both ways or RST, after flow.tcp_linger
    end_of_input = 3,  // replay file finished
    shutdown = 4,      // meter stopped
    evicted = 5,       // FlowMap full: least recently active flow ended
};
const char* end_reason_name(EndReason r);

// Record::flags. replayed: the old master may have sent this record already (procd's
// re-announcement of the live flows; netd's replay window). Exported as kFlagReplayed.
inline constexpr uint8_t kRecordReplayed = 0x01;

struct PacketInfo {          // type == packet
    uint32_t wire_len;       // length on the wire (pcap len)
    uint8_t dir;             // 0: same direction as the flow's first packet, 1: reverse
    uint8_t tcp_flags;
    uint8_t new_flow;        // 1 on the flow's first packet
    uint8_t pad_;
    uint32_t index;          // packets of the flow (both directions) before this one, mod 2^32
};

struct FlowStartInfo {       // type == flow_start: the 5-tuple as the first packet saw it
    uint8_t ip_version;
    uint8_t proto;
    uint16_t sport;
    uint16_t dport;
    uint16_t pad_;
    IpBytes src;
    IpBytes dst;
};

struct FlowEndInfo {         // type == flow_end; ts_ns of the record is the last-seen time
    uint64_t first_ns;
    uint64_t packets[2];     // [0] forward (first packet's direction), [1] reverse
    uint64_t bytes[2];       // wire bytes, same split
    uint8_t reason;          // EndReason
    uint8_t pad_[7];
};

struct LossInfo {           // type == loss; ts_ns of the record is the last lost time
    uint64_t first_ns;       // first lost (or first uncovered) capture time
    uint64_t packets;        // packets lost, 0 where not known (gaps)
    uint8_t cause;           // LossCause
    uint8_t pad_[7];
};

struct Record {
    uint8_t type;            // RecordType
    uint8_t flags;           // kRecordReplayed
    uint8_t pad_[2];
    uint32_t flow_id;
    uint64_t ts_ns;          // packet time; flow_start: first seen; flow_end: last seen
    union {
        PacketInfo packet;
        FlowStartInfo start;
        FlowEndInfo end;
        LossInfo loss;
    };
};
static_assert(sizeof(Record) == 64);
static_assert(std::is_trivially_copyable_v<Record>);

// Header of one slot in the variable-length packet ring (capd -> procd); caplen bytes follow.
struct PacketSlot {
    uint64_t ts_ns;          // capture time, nanoseconds since the epoch
    uint32_t wire_len;       // pcap len
    uint16_t caplen;         // bytes that follow (<= snaplen <= 65535)
    uint16_t linktype;       // DLT_* of this frame
};
static_assert(sizeof(PacketSlot) == 16);

// capd -> procd reports that travel in the packet ring among the packets, in capture order:
// a slot whose linktype is kCaptureReport (PacketRing::kWrapMarker is 0xFFFF) and whose
// wire_len is a CaptureReport kind. procd validates each (capd is the most exposed process).
inline constexpr uint16_t kCaptureReport = 0xFFFE;
enum class CaptureReport : uint32_t {
    progress = 1,  // ts_ns = T: every packet captured before T is in the ring ahead of this slot
    start = 2,     // ts_ns: a live capd opened its capture (the successor of a restart too)
    loss = 3,      // caplen = sizeof(ReportedLoss), the payload follows
};
struct ReportedLoss {
    uint64_t first_ns, last_ns, packets;
    uint8_t cause;           // LossCause: pcap_drop, if_drop or ring_drop
    uint8_t pad_[7];
};
static_assert(sizeof(ReportedLoss) == 32);

}  // namespace angel
