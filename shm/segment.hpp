// The instance's shared memory, two objects (Boost.Interprocess shared_memory_object):
//   /dev/shm/angel.<instance>      data: stage status and counters, three rings, the FlowMap;
//                                  written by the stages, so input to validate for root;
//   /dev/shm/angel.<instance>.ctl  control: layout, configuration, role, stop request;
//                                  written by ctld alone, read-only for the stages.
// Both are root-owned 0600: nobody opens them by name but root. ctld creates and sizes them
// and hands each stage descriptors at exec (data read-write, control read-only); a stage
// refuses objects of another layout version.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "shm/customer_set.hpp"
#include "shm/flow_control.hpp"
#include "shm/flow_map.hpp"
#include "shm/live_config.hpp"
#include "shm/metrics_page.hpp"
#include "shm/packet_ring.hpp"
#include "shm/record_ring.hpp"
#include "shm/records.hpp"
#include "shm/stage_status.hpp"

namespace angel {

inline constexpr uint64_t kSegmentMagic = 0x314d534c45474e41ull;  // "ANGELSM1"
inline constexpr uint64_t kControlMagic = 0x3143544c45474e41ull;  // "ANGELTC1"
// 5: what root relies on (layout, configuration, role, stop request) moved out of the
//    stage-writable segment into the control object, which the stages map read-only.
// 6: the HA role takes three values (HaRole), announce_request/announced added.
// 7: packet records carry the flow's packet index (PacketInfo::index; FlowEntry batch_pos,
//    batch_index, repeat_index).
// 8: per-flow record control (ControlBlock::flow_control, FlowEntry::record_mode),
//    LiveConfig::packet_records_per_flow, replay_ms and watermark_ms; Record::flags (replayed);
//    loss and watermark records (Record::loss, capture reports in the packet ring, ExportProgress).
// 9: the customer set (ControlBlock::customers and its two slots after the ControlBlock;
//    SegmentHeader::customer_generation); LiveConfig::bpf_filter gone (procd filters).
// 10: ControlBlock::events_wait (procd waits for room in the event ring), procd counter
//    event_waits.
//    The Prometheus page (ControlBlock::metrics, shm/metrics_page.hpp).
// 11: ControlBlock::adopted, ExportProgress::adopted_gap_first_ns/last_ns (a ctld that starts
//    adopts the segment of one that died: ctld/segment_adoption.hpp).
//    FlowEntry without lru_ns and created_pos, batch_pos in 32 bits, flag bytes in one,
//    the end reason in ending (144 bytes); the retired list through the entries
//    (FlowMapHeader::retired_head), no index array after them.
// 12: FlowEntry without key_hash, applied_end, batch_pos, batch_index, repeat_index (120 bytes);
//    FlowMapHeader::counted_end; the flow-ID index has half the key index's buckets.
inline constexpr uint32_t kLayoutVersion = 12;

// The meter's part in a CARP/VRRP pair, in ControlBlock::role (docs/ha.md). takeover: this
// meter holds the address, has sent its templates, and waits ha.takeover_ms before exporting
// (the old master may still hold the address that long); neither it nor the DB writer acts yet.
enum class HaRole : uint32_t { backup = 0, master = 1, takeover = 2 };
const char* ha_role_name(HaRole r);
// FlowMap entries reserved at a time: at creation, then by procd whenever high_water comes
// within half of this of the reserved part (about 10 MB a step).
inline constexpr uint32_t kFlowReserveStep = 65536;
// FlowMap entries beyond flow.max_flows (see Segment::create).
inline constexpr uint32_t kFlowMapSpare = 4096;

// Where everything lies in the data segment. ctld computes it at create() and keeps its own
// copy; it is published in the control object (read-only for the stages) and never read
// back from memory a stage can write.
struct SegmentLayout {
    uint64_t total_size;
    uint64_t packet_ring_offset, packet_ring_bytes;
    uint64_t record_ring_offset, record_ring_slots;
    uint64_t event_ring_offset, event_ring_slots;
    uint64_t flow_map_offset, flow_map_bytes;
    uint32_t flow_map_capacity;
    uint32_t pad_;
};

// Orderly stop, stage side: what each stage says about its own progress. ctld's request
// (stop_capture) lives in the control object.
// capd stops and publishes; procd drains, ends every flow, publishes; netd drains, flushes.
struct StopControl {
    std::atomic<uint32_t> capd_finished{0};  // capd: nothing more will enter the packet ring
    std::atomic<uint32_t> input_ended{0};    // capd: finished because replay input ended
    std::atomic<uint32_t> procd_finished{0}; // procd: all flows ended, all records published
    std::atomic<uint32_t> netd_finished{0};  // netd: everything sent
    std::atomic<uint64_t> replay_published{0}; // capd: packets of the replay file published
    // capd, around each publish: the published count after it (0: no publish under way) and
    // the ring head it leads to, so a successor can tell whether a killed predecessor's publish
    // happened.
    std::atomic<uint64_t> replay_pending{0};
    std::atomic<uint64_t> replay_pending_head{0};
};

// procd's export progress, here so that a restarted procd goes on from it: a watermark never
// goes back, and a capd restart's gap starts where the capture seen so far ended.
struct ExportProgress {
    std::atomic<uint64_t> watermark_ns{0};  // procd: the last watermark T queued
    std::atomic<uint64_t> covered_ns{0};    // procd: latest capture time taken from capd (live)
    std::atomic<uint32_t> restart_gap_reported{0};  // procd: ControlBlock's restart gap is queued
    // procd, in an adopted segment: the capture gap it reported as ctld_restart (from the
    // latest capture time of the dead run to the new capture's opening); 0 until then.
    std::atomic<uint64_t> adopted_gap_first_ns{0};
    std::atomic<uint64_t> adopted_gap_last_ns{0};
};

// ctld -> stages. Its own shared-memory object (/dev/shm/angel.<instance>.ctl), root-owned
// 0600; a stage gets a read-only descriptor at exec and maps it read-only, so nothing a
// stage does can change what ctld and a root capd act on.
struct ControlBlock {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t size;                            // sizeof(ControlBlock)
    SegmentLayout layout;
    std::atomic<uint32_t> role{1};            // HaRole: ctld/ha/ decides, netd and the DB writer follow
    std::atomic<uint64_t> announce_request{0};  // ctld bumps it when export starts as master:
                                                // procd re-announces every live flow (netd waits for it)
    std::atomic<uint32_t> stop_capture{0};    // ctld -> capd: close the capture, finish
    std::atomic<uint32_t> netd_gone{0};       // ctld: netd given up during a stop; drop, do not wait
    // ctld: procd waits for room in the event ring instead of dropping (replay with a database,
    // and a live stop until database.stop_drain_ms has passed); 0: drop and count.
    std::atomic<uint32_t> events_wait{0};
    std::atomic<int32_t> ctld_pid{0};
    std::atomic<uint64_t> gc_request{0};      // ctld bumps it every flow.gc_interval
    // Set at start when the previous run of this instance ended uncleanly (ctld/
    // capture_coverage.hpp): nothing was captured from first to last. procd reports it once.
    std::atomic<uint64_t> restart_gap_first{0};
    std::atomic<uint64_t> restart_gap_last{0};
    // Set at start when ctld adopted the segment of a run that died (ctld/segment_adoption.hpp):
    // the gap ends when the new capd's capture opens, so procd reports it then, from the
    // latest capture time in the segment (ExportProgress::covered_ns) to that opening.
    std::atomic<uint32_t> adopted{0};
    LiveConfigBlock config;
    FlowControlBlock flow_control;            // muted / full flows (shm/flow_control.hpp)
    MetricsPage metrics;                      // the /metrics page netd serves (shm/metrics_page.hpp)
    CustomerSetBlock customers;               // the customer set's slots (shm/customer_set.hpp)
};

// The data segment's header: written by the stages (and ctld). Root code reads it only
// through ctld/checked_segment_view.hpp.
struct SegmentHeader {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t total_size;
    std::atomic<uint64_t> ipfix_sequence{0};  // survives netd restarts
    std::atomic<uint64_t> announced{0};       // procd: the last announce_request it completed
    std::atomic<uint64_t> customer_generation{0};  // procd: the customer set it filters with
    StopControl stop;
    ExportProgress progress;
    alignas(kCacheLine) StageStatus stages[kStageCount];
    alignas(kCacheLine) RingControl packet_ring;
    RingControl record_ring;
    RingControl event_ring;
};

struct SegmentSizes {
    uint64_t packet_ring_bytes = 64ull << 20;
    uint64_t record_ring_bytes = 16ull << 20;
    uint64_t event_ring_bytes = 8ull << 20;
    uint32_t max_flows = 1000000;
};

class SegmentError : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Descriptors a stage finds open at exec (ctld's StageSupervisor puts them there).
inline constexpr int kStageDataFd = 3;     // the data segment, read-write
inline constexpr int kStageControlFd = 4;  // the control object, read-only
inline constexpr int kStageLockFd = 5;     // <runtime_dir>/<instance>.<stage>.lock
inline constexpr int kStageMetricsFd = 6;  // netd only, with metrics.listen: the listening TCP socket

class Segment {
public:
    // ctld: creates (replacing stale objects of the same name), sizes and formats both the
    // data segment and the control object, each root-owned 0600.
    static std::unique_ptr<Segment> create(const std::string& instance, const SegmentSizes& sz);
    // The layout create() gives these sizes.
    static SegmentLayout plan(const SegmentSizes& sz);
    // ctld at start, live: the data segment a run that died left behind (ctld/segment_adoption.hpp),
    // opened read-write with the layout plan(sz) gives, never the one the segment or the old
    // control object says. nullptr when there is none; SegmentError when it is not a segment
    // of this layout version and of this configuration's size (the caller removes it). Only
    // the header's magic, version and sizes are checked here; the rest is stage-written state
    // that ctld checks through ctld/checked_segment_view.hpp.
    static std::unique_ptr<Segment> open_left(const std::string& instance, const SegmentSizes& sz);
    // The pid the predecessor's control object names (root-written; 0: none readable).
    int32_t left_ctld_pid() const { return left_ctld_pid_; }
    // After open_left: a new control object (as create() formats it) in place of the dead
    // run's, whose requests (stop, announce, role, sets) belong to that run.
    void renew_control(const std::string& instance);
    // Root tools and tests: attaches both objects by name, read-write; SegmentError with a
    // clear message when they are missing or of another layout.
    static std::unique_ptr<Segment> attach(const std::string& instance);
    // Stages: maps the descriptors ctld passed (data read-write, control read-only), and
    // checks the layout published in the control object against the data segment.
    static std::unique_ptr<Segment> attach_fds(int data_fd, int control_fd);
    // The control object alone, read-only (capd reads its configuration before dropping
    // root, and maps the data segment only after).
    static std::unique_ptr<Segment> attach_control_fd(int control_fd);
    // Maps the data segment into a Segment made by attach_control_fd().
    void attach_data_fd(int data_fd);
    static void remove(const std::string& instance);
    static std::string shm_name(const std::string& instance);          // "angel.<instance>"
    static std::string control_shm_name(const std::string& instance);  // "angel.<instance>.ctl"

    ~Segment();
    SegmentHeader* header() const { return hdr_; }
    const ControlBlock& control() const { return *ctl_; }
    // ctld only (a stage's mapping is read-only: writing through it faults).
    ControlBlock& control_rw() const { return *ctl_; }
    // The layout this process relies on: ctld's own, or (stages) the control object's.
    const SegmentLayout& layout() const { return layout_; }
    uint8_t* base() const { return base_; }
    int data_fd() const { return data_fd_; }
    int control_fd() const { return ctl_fd_; }
    StageStatus& stage(StageId s) const { return hdr_->stages[static_cast<size_t>(s)]; }
    PacketRing packet_ring() const;
    RecordRing<Record> record_ring() const;
    RecordRing<Record> event_ring() const;
    FlowMap flow_map() const;
    // procd: reserves memory for the FlowMap's entries up to index upto (posix_fallocate),
    // then lets the map use them. 0, or the errno of a /dev/shm that has no room left (the
    // map then stays at its reserved size and procd evicts when it is reached).
    int grow_flow_map(uint32_t upto) const;
    LiveConfig config() const;  // consistent copy
    // The customer set's slot i (0 or 1) in the control object, and its room.
    const uint8_t* customer_slot(unsigned i) const;
    // ctld: slot i writable, its first bytes backed by memory (posix_fallocate), so that a
    // full /dev/shm is an error here and never a SIGBUS later. nullptr with errno's text in
    // *why when there is no room.
    uint8_t* customer_slot_rw(unsigned i, uint64_t bytes, std::string* why) const;

    // Maps one ring's pages into this process at once (MADV_POPULATE_READ/WRITE), so that
    // the packet path does not take a page fault for every page of the ring later: about
    // 16,000 write faults for the default 64 MiB packet ring, the largest single CPU cost of
    // capd's first pass through it. A hint: a kernel without it (before Linux 5.14) faults
    // as usual.
    enum class Ring { packet, record, event };
    enum class Access { read, write };
    void prefault(Ring r, Access a) const;

private:
    Segment() = default;
    void create_control(const std::string& ctl_name);
    struct Impl;
    std::unique_ptr<Impl> impl_;
    SegmentHeader* hdr_ = nullptr;
    ControlBlock* ctl_ = nullptr;
    uint8_t* base_ = nullptr;
    SegmentLayout layout_{};
    int data_fd_ = -1, ctl_fd_ = -1;
    uint64_t ctl_len_ = 0;  // bytes of the control object mapped
    int32_t left_ctld_pid_ = 0;
};

uint64_t monotonic_ns();
inline uint64_t monotonic_ms() { return monotonic_ns() / 1'000'000; }
uint64_t realtime_ns();

}  // namespace angel
