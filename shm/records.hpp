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
enum class RecordType : uint8_t { packet = 1, flow_start = 2, flow_end = 3, announce = 4 };

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

}  // namespace angel
