// THE PRIVILEGE BOUNDARY: the one place where root code (angel-ctld) reads memory that a
// stage can write. Everything else in ctld reads the data segment only through these
// classes; elsewhere in ctld/ the segment is only written (a stage's starting state, ctld's
// own heartbeat, the stop flags of a stage given up).
//
// The rule (OpenBSD bgpd's imsg handlers): what a less privileged process can write is input
// to validate, never state to trust. So:
//   - geometry (offsets, capacities, sizes) comes from ctld's own SegmentLayout, never from
//     the segment;
//   - every position, count and index read here is clamped to that geometry or rejected;
//   - FlowMap entries are copied with pread() from the segment's descriptor, in chunks of a
//     fixed size: no pointer into stage memory is followed, no fault on pages procd never
//     backed, and the memory used does not depend on what the stage wrote;
//   - event records are copied one by one and checked field by field before the database
//     writer sees them;
//   - a bad value is counted (per kind, BoundaryCounters) and logged once per kind; it never
//     leads to an access out of range, an endless loop, a hang at stop or an allocation sized
//     by the stage.
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "shm/segment.hpp"

namespace angel {

// What was refused at the boundary, since ctld started (angelctl stats: ctld.*).
enum class BoundaryKind : uint8_t {
    stage_state,      // a stage state outside StageState
    ring_position,    // head/tail out of order or further apart than the ring holds
    flow_count,       // FlowMap live or high_water above its capacity
    flow_entry,       // an entry that cannot be a flow (IP version, flags)
    event_record,     // an event record with a bad type or field
    count_
};
inline constexpr size_t kBoundaryKinds = static_cast<size_t>(BoundaryKind::count_);
const char* boundary_kind_name(BoundaryKind k);

// Process-wide (the supervision loop and the database thread both read the segment).
struct BoundaryCounters {
    std::array<std::atomic<uint64_t>, kBoundaryKinds> refused{};
};
BoundaryCounters& boundary_counters();
// Counts one refused value and logs the first of each kind (what, and the value seen).
void note_refused(BoundaryKind k, const char* what, uint64_t value);

struct StageReading {
    int32_t pid = 0;
    StageState state = StageState::down;
    uint64_t heartbeat_ns = 0;  // never later than the time of the reading
    uint64_t started_ns = 0;
    std::array<uint64_t, kStageCounters> counters{};
};

struct RingReading {
    uint64_t capacity = 0;  // ctld's own
    uint64_t fill = 0;      // head - tail, clamped to [0, capacity]
    uint64_t produced = 0, consumed = 0, dropped = 0;
    double fill_pct() const { return capacity ? 100.0 * static_cast<double>(fill) / static_cast<double>(capacity) : 0.0; }
};

struct StopFlags {
    bool capd_finished = false, input_ended = false, procd_finished = false, netd_finished = false;
};

class CheckedSegmentView {
public:
    explicit CheckedSegmentView(const Segment& seg);

    StageReading stage(StageId id) const;
    uint64_t counter(StageId id, size_t slot) const;
    RingReading ring(Segment::Ring r) const;
    StopFlags stop_flags() const;
    uint64_t ipfix_sequence() const;
    // The customer set generation procd says it filters with (SegmentHeader::
    // customer_generation). Any value: ctld only compares it with what it published.
    uint64_t customer_generation() const;
    // The latest capture time procd has taken from capd (ExportProgress::covered_ns): never
    // later than wall_now_ns (a later value is a lie or a clock step: read as wall_now_ns).
    uint64_t capture_covered_ns(uint64_t wall_now_ns) const;

    // ctld at start (ctld/segment_adoption.hpp): whether the segment a dead run left can be
    // taken over as it is. Stricter than the readings above, which clamp: every ring's
    // positions in order and within its capacity, the FlowMap's header as format() makes it
    // for ctld's capacity, and every entry ever used either free or a valid flow. Nothing is
    // counted as refused here: a refusal means a new segment, and the reason is logged.
    struct Adoptable {
        std::string problem;          // "": can be adopted
        uint32_t flows = 0;           // live flows (in use, not ending)
        uint32_t ending = 0;          // flows whose flow_end the dead run's procd was publishing
        uint64_t packets_queued = 0;  // bytes of the packet ring not yet taken by procd
        uint64_t records_queued = 0, events_queued = 0;
    };
    Adoptable adoptable() const;

    // The capture gap procd reported as ctld_restart in an adopted segment (ExportProgress::
    // adopted_gap_*): {first, last} with first <= last <= wall_now_ns, or {0, 0} until then.
    std::pair<uint64_t, uint64_t> adopted_gap(uint64_t wall_now_ns) const;

    uint32_t flow_capacity() const { return capacity_; }
    uint32_t live_flows() const;  // as procd counts them, clamped to the capacity
    // Calls f for every entry that holds a live flow (in use, not ending, a valid key), in
    // index order. Entries are copied into a fixed buffer with pread(); what f gets is a
    // private copy. Stops early when f returns false.
    void scan_flows(const std::function<bool(const FlowEntry&)>& f) const;

private:
    const FlowMapHeader& flow_header() const;
    // Copies the entries below hw (at most the capacity: callers check) in fixed chunks with
    // pread() and calls f(index, copy) for each until it returns false. false: a read failed.
    bool read_entries(uint32_t hw, const std::function<bool(uint32_t, const FlowEntry&)>& f) const;
    const Segment& seg_;
    SegmentLayout layout_;
    uint32_t capacity_;
};

// The database thread's consumer of the event ring. Its read and commit positions are its
// own (the tail in the segment is written for procd's benefit, never read back); the head
// procd publishes is checked against them and the ring's capacity.
class CheckedEventReader {
public:
    explicit CheckedEventReader(const Segment& seg);
    // Copies up to max records that pass the checks into out, and returns how many were
    // copied. Reads at most max slots per call, so a loop over it ends however far ahead a
    // hostile head points: an impossible head is counted, logged, and the reader skips to it
    // (the database is reconciled from the FlowMap then: see lost()).
    size_t read(Record* out, size_t max) { return read_until(out, max, UINT64_MAX); }
    // The same, but no record at ring position `end` or after (the reconcile's mark).
    size_t read_until(Record* out, size_t max, uint64_t end);
    // The position procd has published up to (checked as read() checks it).
    uint64_t published() { return head_checked(); }
    uint64_t read_position() const { return read_; }
    // Events published and not committed (clamped to the ring): what a stop leaves behind.
    uint64_t pending() const;
    void commit();            // releases everything read so far to the producer
    void rewind();            // back to the last commit (a failed transaction is retried)
    void discard_all();       // backup meters: skip and release whatever is queued
    bool empty() const;       // nothing published beyond what was read
    // Events skipped because of an impossible head or a bad record since the last call.
    uint64_t take_lost();

private:
    uint64_t head_checked();
    RingControl* ctl_;
    const Record* slots_;
    uint64_t capacity_;
    uint64_t read_ = 0, committed_ = 0;
    uint64_t lost_ = 0;
};

}  // namespace angel
