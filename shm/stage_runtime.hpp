// What every stage (capd, procd, netd) does to live under ctld: parse its small command line,
// attach to the instance's segment, announce itself ready, heartbeat, and notice stop signals.
// The stages take everything else from the segment (LiveConfig), never from files.
#pragma once
#include <atomic>
#include <csignal>
#include <memory>
#include <string>

#include "shm/segment.hpp"

namespace angel {

class StageRuntime {
public:
    // Parses "-i INSTANCE [-f]"; on a usage error prints one line and exits EX_USAGE.
    // Attaches the segment; on failure logs one line and exits EX_UNAVAILABLE.
    StageRuntime(StageId id, const char* prog, int argc, char** argv);

    Segment& segment() { return *seg_; }
    SegmentHeader& header() { return *seg_->header(); }
    StageStatus& status() { return seg_->stage(id_); }
    const std::string& instance() const { return instance_; }

    // Asks the kernel for SIGTERM when our parent (ctld) dies, so no stage outlives its
    // supervisor. Called at start and again after a credentials change (which clears it).
    void watch_parent();
    void ready();        // state = ready, heartbeat now
    void heartbeat() { status().heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed); }
    void finished();     // state = finished
    // Each stage is the only writer of its own counters (a successor starts after its
    // predecessor is dead), so a plain load and store does: no locked read-modify-write on
    // the per-packet path. Readers (ctld, angelctl) see whole 64-bit values either way.
    void count(size_t slot, uint64_t n = 1) {
        auto& c = status().counters[slot];
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    // For totals a stage keeps itself: added to what predecessors of this stage counted, so
    // counters stay cumulative across restarts.
    void set_counter(size_t slot, uint64_t v) {
        status().counters[slot].store(base_[slot] + v, std::memory_order_relaxed);
    }
    // SIGTERM/SIGINT received: the stage should stop as soon as it safely can.
    static bool terminate_requested() { return term_.load(std::memory_order_relaxed); }

private:
    static void on_signal(int);
    static inline std::atomic<bool> term_{false};
    StageId id_;
    std::string instance_;
    std::unique_ptr<Segment> seg_;
    uint64_t base_[kStageCounters] = {};
};

}  // namespace angel
