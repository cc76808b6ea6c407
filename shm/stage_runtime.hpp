// What every stage (capd, procd, netd) does to live under ctld: parse the command line ctld
// gives it, take its instance lock, map the control object (read-only) and, once sandboxed,
// the data segment; announce itself ready, heartbeat, and notice stop signals.
//
// Order (docs/security.md): procd and netd enter the sandbox first thing, before they map
// anything a stage writes; capd reads its configuration from the control object (written by
// ctld alone), opens its capture as root, then enters the sandbox, and only then maps the
// data segment. The stages take everything from the control object, never from files.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <string>

#include "common/sandbox/sandbox.hpp"
#include "shm/segment.hpp"

namespace angel {

class StageRuntime {
public:
    // Parses "-i INSTANCE -u UID -g GID -j JAIL [-f]" (usage error: one line, EX_USAGE);
    // takes the instance lock on descriptor 5 (held: EX_TEMPFAIL); maps the control object
    // on descriptor 4 (missing or bad: EX_UNAVAILABLE).
    StageRuntime(StageId id, const char* prog, int argc, char** argv);

    // chroot, change of user, no new privileges, seccomp (common/sandbox/); exits EX_NOPERM
    // with one line when a step fails.
    void enter_sandbox(SandboxProfile profile);
    // Maps the data segment (descriptor 3) and announces the stage as starting.
    void attach();

    Segment& segment() { return *seg_; }
    SegmentHeader& header() { return *seg_->header(); }
    const ControlBlock& control() const { return seg_->control(); }
    StageStatus& status() { return seg_->stage(id_); }
    const std::string& instance() const { return instance_; }

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
    void check_parent();  // ctld may have died before the death signal was asked for
    static inline std::atomic<bool> term_{false};
    StageId id_;
    std::string instance_;
    uid_t uid_ = 0;
    gid_t gid_ = 0;
    std::string jail_;
    std::unique_ptr<Segment> seg_;
    uint64_t base_[kStageCounters] = {};
};

}  // namespace angel
