// Per-stage status block in the segment header: written by the stage itself, read by ctld
// and angelctl. Counters are plain monotonically increasing atomics (single writer each).
#pragma once
#include <atomic>
#include <cstdint>

#include "shm/ring_control.hpp"

namespace angel {

enum class StageId : uint8_t { capd = 0, procd = 1, netd = 2, ctld = 3, count_ };
inline constexpr size_t kStageCount = static_cast<size_t>(StageId::count_);
const char* stage_name(StageId s);  // "capd", "procd", ...

enum class StageState : uint32_t { down = 0, starting = 1, ready = 2, finished = 3 };

// Counter slots; each stage uses its own enum to index them (names for status output).
inline constexpr size_t kStageCounters = 32;

enum CapdCounter : uint8_t {
    capd_packets = 0,      // packets read from libpcap
    capd_bytes,            // wire bytes of those packets
    capd_queued,           // packets put in the packet ring
    capd_ring_dropped,     // live: ring full, packet dropped
    capd_pcap_received,    // pcap_stats ps_recv
    capd_pcap_dropped,     // pcap_stats ps_drop (kernel buffer full)
    capd_pcap_ifdropped,   // pcap_stats ps_ifdrop
    capd_truncated_slot,   // caplen above the slot limit, cut
    capd_counter_count
};
enum ProcdCounter : uint8_t {
    procd_packets = 0,     // packets taken from the packet ring
    procd_ip_packets,      // IP packets counted in a flow: a packet record each, unless held back (below)
    procd_not_ip,          // valid frames that carry no IP (skipped)
    procd_malformed,       // frames the parser refused (see parse_* below)
    procd_flows_started,
    procd_flows_ended,
    procd_flows_evicted,   // ended because the FlowMap was full
    procd_record_waits,    // times the record ring was full and procd waited
    procd_events_dropped,  // event ring full: DB events lost (reconciled later)
    procd_gc_runs,
    procd_repeated,        // packets processed again after a predecessor was killed mid-batch
    procd_records_lost,    // records not queued: netd given up during a stop, or no FlowMap entry at all
    procd_flows_announced, // flow_start records re-sent for live flows when this meter became master
    procd_records_over_limit,  // packet records not made: past export.packet_records_per_flow
    procd_records_muted,       // packet records not made: the flow is muted (angel.flow_control, angelctl mute)
    procd_loss_records,    // loss records queued (capture drops and gaps)
    procd_watermarks,      // watermark records queued
    procd_bad_reports,     // capture reports from capd refused (bad kind, length, cause or time)
    procd_filtered,        // IP packets with neither address in the customer set (customers.networks)
    procd_event_waits,     // times the event ring was full and procd waited (ControlBlock::events_wait)
    procd_parse_first,     // first of ParseStatus::count_ counters, indexed by ParseStatus
    procd_counter_count = procd_parse_first + 10  // parse counters: ParseStatus::count_ <= 10
};
enum NetdCounter : uint8_t {
    netd_records = 0,      // records taken from the record ring
    netd_messages,         // IPFIX messages sent
    netd_records_sent,
    netd_bytes,
    netd_send_errors,      // errors send() reported (classifier down: ICMP unreachable seen on a later send)
    netd_templates,
    netd_not_master,       // records released unsent while not master: older than the replay window
    netd_unsent_at_demotion,  // records packed for a message when the meter became backup: kept in the window, not sent then
    netd_replayed,         // records sent flagged replayed from the window on becoming master
    netd_window_trimmed,   // records released from the window early: the ring could not hold ha.replay_ms
    netd_datagrams_failed, // IPFIX messages the kernel did not send (after netd's retries)
    netd_records_lost,     // data records in those messages
    netd_metrics_scrapes,  // GET /metrics answered 200 (metrics.listen)
    netd_metrics_refused,  // metrics connections refused (too many, too slow, too large) or answered 4xx/5xx
    netd_counter_count
};

// Name of counter i of stage s, nullptr past the last named one (parse-status counters of
// procd are named by parse_status_name()).
const char* counter_name(StageId s, size_t i);
// One line saying what counter i of stage s counts; nullptr where none is written.
const char* counter_help(StageId s, size_t i);

struct alignas(kCacheLine) StageStatus {
    std::atomic<int32_t> pid{0};
    std::atomic<uint32_t> state{0};           // StageState
    std::atomic<uint64_t> heartbeat_ns{0};    // CLOCK_MONOTONIC of the last loop turn
    std::atomic<uint64_t> started_ns{0};
    std::atomic<uint64_t> counters[kStageCounters]{};
};

}  // namespace angel
