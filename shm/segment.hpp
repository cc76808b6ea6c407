// The instance's shared-memory segment: a versioned header, three rings and the FlowMap.
// ctld creates and sizes it (Boost.Interprocess shared_memory_object, /dev/shm/angel.<instance>);
// every stage attaches by instance name and refuses a segment of another layout version.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "shm/flow_map.hpp"
#include "shm/live_config.hpp"
#include "shm/packet_ring.hpp"
#include "shm/record_ring.hpp"
#include "shm/records.hpp"
#include "shm/stage_status.hpp"

namespace angel {

inline constexpr uint64_t kSegmentMagic = 0x314d534c45474e41ull;  // "ANGELSM1"
// 4: the FlowMap header records how many entries have memory behind them.
inline constexpr uint32_t kLayoutVersion = 4;
// FlowMap entries reserved at a time: at creation, then by procd whenever high_water comes
// within half of this of the reserved part (about 10 MB a step).
inline constexpr uint32_t kFlowReserveStep = 65536;
// FlowMap entries beyond flow.max_flows (see Segment::create).
inline constexpr uint32_t kFlowMapSpare = 4096;

// Orderly stop, driven through the segment so that each stage drains what is upstream:
// capd stops and publishes; procd drains, ends every flow, publishes; netd drains, flushes.
struct StopControl {
    std::atomic<uint32_t> stop_capture{0};   // ctld -> capd: close the capture, finish
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
    std::atomic<uint32_t> netd_gone{0};      // ctld: netd given up during a stop; drop, do not wait
};

struct SegmentHeader {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t total_size;
    uint64_t packet_ring_offset, packet_ring_bytes;
    uint64_t record_ring_offset, record_ring_slots;
    uint64_t event_ring_offset, event_ring_slots;
    uint64_t flow_map_offset, flow_map_bytes;
    uint32_t flow_map_capacity;
    std::atomic<uint32_t> role{1};            // 1 master, 0 backup
    std::atomic<uint64_t> gc_request{0};      // ctld bumps it every flow.gc_interval
    std::atomic<uint64_t> ipfix_sequence{0};  // survives netd restarts
    std::atomic<int32_t> ctld_pid{0};
    StopControl stop;
    alignas(kCacheLine) StageStatus stages[kStageCount];
    alignas(kCacheLine) RingControl packet_ring;
    RingControl record_ring;
    RingControl event_ring;
    LiveConfigBlock config;
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

class Segment {
public:
    // ctld: creates (replacing a stale segment of the same name), sizes and formats.
    static std::unique_ptr<Segment> create(const std::string& instance, const SegmentSizes& sz);
    // Stages and angelctl: attaches to an existing segment; SegmentError with a clear
    // message when it is missing or of another layout.
    static std::unique_ptr<Segment> attach(const std::string& instance);
    static void remove(const std::string& instance);
    static std::string shm_name(const std::string& instance);  // "angel.<instance>"

    ~Segment();
    SegmentHeader* header() const { return hdr_; }
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
    struct Impl;
    std::unique_ptr<Impl> impl_;
    SegmentHeader* hdr_ = nullptr;
    uint8_t* base_ = nullptr;
};

uint64_t monotonic_ns();
inline uint64_t monotonic_ms() { return monotonic_ns() / 1'000'000; }
uint64_t realtime_ns();

}  // namespace angel
