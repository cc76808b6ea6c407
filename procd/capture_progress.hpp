// procd's side of capd's capture reports (shm/records.hpp, CaptureReport): turns them into
// loss records and watermarks for the record ring.
//
// Loss: capd's reports of one cause accumulate here and leave as one loss record at most every
// export.flush_ms (the first one at once), so a storm of drops costs the classifier a record
// per cause per flush interval, and the packet counts still add up to capd's counters. A live
// capd's start report after an earlier capture makes a capd_restart record for the time nothing
// was captured: from the latest capture time procd had seen to the new capture's opening.
//
// Watermark: capd's progress report T sits in the ring behind every packet captured before T,
// and procd handles it only after the packets ahead of it have had their records queued, so a
// watermark queued now for T is behind all of them in the record ring, which netd exports in
// order. One leaves every export.watermark_ms, only when T moved forward; T never goes back,
// also across a procd restart (the last one is kept in the segment, ExportProgress).
//
// capd is the most exposed process: every report is checked (kind, length, cause, times
// ordered, not in the future) and a bad one is counted and dropped.
#pragma once
#include <cstdint>

#include "procd/flow_tracker.hpp"
#include "shm/segment.hpp"

namespace angel {

class CaptureProgress {
public:
    CaptureProgress(ExportProgress& state, RecordSink& out, CounterArray counters, bool replay);
    void configure(uint32_t flush_ms, uint32_t watermark_ms);

    // One report slot from the packet ring; wall_ns: CLOCK_REALTIME now.
    void report(const PacketSlot& s, const uint8_t* data, uint64_t wall_ns);
    // Live: the latest capture time of the packets processed so far.
    void covered(uint64_t ts_ns) {
        if (ts_ns <= covered_) return;
        covered_ = ts_ns;
        st_.covered_ns.store(ts_ns, std::memory_order_relaxed);
    }
    // The meter restarted after an unclean stop: nothing was captured from first to last.
    void restart_gap(uint64_t first_ns, uint64_t last_ns) {
        if (first_ns < last_ns) accumulate(LossCause::ctld_restart, first_ns, last_ns, 0);
    }
    // ctld adopted the segment of a run that died (ControlBlock::adopted): the next capd start
    // report ends that run's capture gap, reported as ctld_restart (not capd_restart) and
    // kept in ExportProgress for ctld's status. Once per segment: a procd restarted after
    // it was queued reports a later capd restart as usual.
    void expect_adopted_gap() { adopted_gap_ = st_.restart_gap_reported.load(std::memory_order_acquire) == 0; }
    // Queues the loss records and the watermark that are due; true when it queued any.
    bool tick(uint64_t mono_ns) { return due(mono_ns) ? emit_due(mono_ns, false) : false; }
    // Queues everything pending, whatever the rate limits (the stage stops).
    bool flush_all() { return emit_due(0, true); }
    // How long the idle wait may last before something is due: at most max_ms.
    int wait_ms(uint64_t mono_ns, int max_ms) const;

private:
    struct Pending {
        uint64_t first_ns = 0, last_ns = 0, packets = 0;
        bool any = false;
        uint64_t last_emit_mono = 0;  // 0: never (the first leaves at once)
    };
    void accumulate(LossCause c, uint64_t first_ns, uint64_t last_ns, uint64_t packets);
    bool due(uint64_t mono_ns) const;
    bool emit_due(uint64_t mono_ns, bool all);
    void bad_report() { ctr_[procd_bad_reports].fetch_add(1, std::memory_order_relaxed); }

    ExportProgress& st_;
    RecordSink& out_;
    CounterArray ctr_;
    bool replay_;
    uint64_t flush_ns_ = 10'000'000ull;
    uint64_t watermark_every_ns_ = 1'000'000'000ull;  // 0: off
    Pending loss_[kLossCauseMax + 1];
    bool loss_pending_ = false;
    uint64_t candidate_ = 0;     // the latest progress T, not yet a watermark
    uint64_t last_watermark_mono_ = 0;
    uint64_t covered_ = 0;
    bool adopted_gap_ = false;
};

}  // namespace angel
