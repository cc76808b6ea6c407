#include "ctld/checked_segment_view.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "common/log.hpp"

namespace angel {

namespace {

// FlowMap entries copied per pread(): 1024 x 120 bytes, 120 KiB, whatever the map holds.
constexpr uint32_t kScanChunk = 1024;

// pread of len bytes at off; false on a short or failed read (nothing is used then).
bool read_exact(int fd, void* buf, size_t len, uint64_t off) {
    auto* p = static_cast<uint8_t*>(buf);
    while (len > 0) {
        const ssize_t n = pread(fd, p, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= static_cast<size_t>(n);
        off += static_cast<uint64_t>(n);
    }
    return true;
}

bool valid_flow(const FlowEntry& e) {
    return (e.key.ip_version == 4 || e.key.ip_version == 6) && e.first_reversed <= 1;
}

// Totals the database stores in bigint columns: each part and their sum within INT64_MAX (a
// value beyond it fails the whole transaction, which would then be retried forever).
bool fits_bigint(uint64_t a, uint64_t b) { return a <= INT64_MAX && b <= INT64_MAX - a; }

// What is wrong with an event record, and the value seen; what == nullptr: the database
// writer can take it.
struct EventProblem {
    const char* what = nullptr;
    uint64_t value = 0;
};

EventProblem event_problem(const Record& r) {
    if (r.type == static_cast<uint8_t>(RecordType::flow_start)) {
        if (r.start.ip_version == 4 || r.start.ip_version == 6) return {};
        return {"event flow_start IP version", r.start.ip_version};
    }
    if (r.type == static_cast<uint8_t>(RecordType::flow_end)) {
        if (r.end.reason < static_cast<uint8_t>(EndReason::idle) || r.end.reason > static_cast<uint8_t>(EndReason::evicted))
            return {"event flow_end reason", r.end.reason};
        if (!fits_bigint(r.end.packets[0], r.end.packets[1])) return {"event flow_end packets", r.end.packets[0]};
        if (!fits_bigint(r.end.bytes[0], r.end.bytes[1])) return {"event flow_end bytes", r.end.bytes[0]};
        return {};
    }
    return {"event record type", r.type};
}

}  // namespace

const char* boundary_kind_name(BoundaryKind k) {
    switch (k) {
        case BoundaryKind::stage_state: return "bad_stage_state";
        case BoundaryKind::ring_position: return "bad_ring_position";
        case BoundaryKind::flow_count: return "bad_flow_count";
        case BoundaryKind::flow_entry: return "bad_flow_entry";
        case BoundaryKind::event_record: return "bad_event_record";
        case BoundaryKind::count_: break;
    }
    return "?";
}

BoundaryCounters& boundary_counters() {
    static BoundaryCounters c;
    return c;
}

void note_refused(BoundaryKind k, const char* what, uint64_t value) {
    if (boundary_counters().refused[static_cast<size_t>(k)].fetch_add(1, std::memory_order_relaxed) == 0)
        log_err("refused a value a stage wrote into shared memory: %s = %llu (%s; counted in angelctl stats, "
                "logged once)",
                what, static_cast<unsigned long long>(value), boundary_kind_name(k));
}

// ---- CheckedSegmentView ----------------------------------------------------------------------

CheckedSegmentView::CheckedSegmentView(const Segment& seg)
    : seg_(seg), layout_(seg.layout()), capacity_(seg.layout().flow_map_capacity) {}

StageReading CheckedSegmentView::stage(StageId id) const {
    const StageStatus& s = seg_.stage(id);
    StageReading r;
    r.pid = s.pid.load(std::memory_order_relaxed);
    const uint32_t st = s.state.load(std::memory_order_acquire);
    if (st <= static_cast<uint32_t>(StageState::finished)) {
        r.state = static_cast<StageState>(st);
    } else {
        note_refused(BoundaryKind::stage_state, "stage state", st);
        r.state = StageState::down;
    }
    // Another process's clock read can be a little ahead of ours; one far ahead is a lie that
    // would otherwise overflow the hang check: no later than now.
    const uint64_t now = monotonic_ns();
    r.heartbeat_ns = std::min(s.heartbeat_ns.load(std::memory_order_relaxed), now);
    r.started_ns = std::min(s.started_ns.load(std::memory_order_relaxed), now);
    for (size_t i = 0; i < kStageCounters; ++i) r.counters[i] = s.counters[i].load(std::memory_order_relaxed);
    return r;
}

uint64_t CheckedSegmentView::counter(StageId id, size_t slot) const {
    if (slot >= kStageCounters) return 0;
    return seg_.stage(id).counters[slot].load(std::memory_order_relaxed);
}

uint64_t CheckedSegmentView::capture_covered_ns(uint64_t wall_now_ns) const {
    return std::min(seg_.header()->progress.covered_ns.load(std::memory_order_relaxed), wall_now_ns);
}

std::pair<uint64_t, uint64_t> CheckedSegmentView::adopted_gap(uint64_t wall_now_ns) const {
    const ExportProgress& p = seg_.header()->progress;
    const uint64_t last = p.adopted_gap_last_ns.load(std::memory_order_relaxed);
    const uint64_t first = p.adopted_gap_first_ns.load(std::memory_order_relaxed);
    if (first == 0 || last == 0 || first > last || last > wall_now_ns) return {0, 0};
    return {first, last};
}

RingReading CheckedSegmentView::ring(Segment::Ring which) const {
    const SegmentHeader& h = *seg_.header();
    const RingControl* c = nullptr;
    RingReading r;
    switch (which) {
        case Segment::Ring::packet: c = &h.packet_ring; r.capacity = layout_.packet_ring_bytes; break;
        case Segment::Ring::record: c = &h.record_ring; r.capacity = layout_.record_ring_slots; break;
        case Segment::Ring::event: c = &h.event_ring; r.capacity = layout_.event_ring_slots; break;
    }
    const uint64_t tail = c->tail.load(std::memory_order_acquire);
    const uint64_t head = c->head.load(std::memory_order_acquire);
    if (head < tail || head - tail > r.capacity) {
        // Readings race with the stages: a tail read before a head that both moved since can
        // look a little off, never a whole ring apart.
        if (tail - head > r.capacity || head - tail > 2 * r.capacity)
            note_refused(BoundaryKind::ring_position, head < tail ? "ring head behind its tail, head" : "ring head a ring or more ahead of its tail, head", head);
        r.fill = head < tail ? 0 : r.capacity;
    } else {
        r.fill = head - tail;
    }
    r.produced = c->produced.load(std::memory_order_relaxed);
    r.consumed = c->consumed.load(std::memory_order_relaxed);
    r.dropped = c->dropped.load(std::memory_order_relaxed);
    return r;
}

StopFlags CheckedSegmentView::stop_flags() const {
    const StopControl& s = seg_.header()->stop;
    StopFlags f;
    f.capd_finished = s.capd_finished.load(std::memory_order_acquire) != 0;
    f.input_ended = s.input_ended.load(std::memory_order_acquire) != 0;
    f.procd_finished = s.procd_finished.load(std::memory_order_acquire) != 0;
    f.netd_finished = s.netd_finished.load(std::memory_order_acquire) != 0;
    return f;
}

uint64_t CheckedSegmentView::customer_generation() const {
    return seg_.header()->customer_generation.load(std::memory_order_acquire);
}

uint64_t CheckedSegmentView::ipfix_sequence() const {
    return seg_.header()->ipfix_sequence.load(std::memory_order_relaxed);
}

const FlowMapHeader& CheckedSegmentView::flow_header() const {
    // At the start of the map's memory, backed from creation on.
    return *reinterpret_cast<const FlowMapHeader*>(seg_.base() + layout_.flow_map_offset);
}

uint32_t CheckedSegmentView::live_flows() const {
    const uint32_t live = flow_header().live.load(std::memory_order_relaxed);
    if (live > capacity_) {
        note_refused(BoundaryKind::flow_count, "FlowMap live", live);
        return capacity_;
    }
    return live;
}

void CheckedSegmentView::scan_flows(const std::function<bool(const FlowEntry&)>& f) const {
    uint32_t hw = flow_header().high_water.load(std::memory_order_acquire);
    if (hw > capacity_) {
        note_refused(BoundaryKind::flow_count, "FlowMap high_water", hw);
        hw = capacity_;
    }
    read_entries(hw, [&](uint32_t, const FlowEntry& e) {
        if (e.in_use != 1 || e.ending != 0) return true;
        if (!valid_flow(e)) {
            note_refused(BoundaryKind::flow_entry, "FlowMap entry IP version", e.key.ip_version);
            return true;
        }
        return f(e);
    });
}

bool CheckedSegmentView::read_entries(uint32_t hw, const std::function<bool(uint32_t, const FlowEntry&)>& f) const {
    // One buffer per scan, of a fixed size (not per entry, not sized by the map).
    auto buf = std::make_unique<FlowEntry[]>(kScanChunk);
    for (uint32_t i = 0; i < hw; i += kScanChunk) {
        const uint32_t n = std::min(kScanChunk, hw - i);
        const uint64_t off = layout_.flow_map_offset + FlowMap::entry_offset(capacity_, i);
        // A hole procd never backed reads as zeros (not in use), never as a fault.
        if (!read_exact(seg_.data_fd(), buf.get(), size_t{n} * sizeof(FlowEntry), off)) return false;
        for (uint32_t k = 0; k < n; ++k)
            if (!f(i + k, buf[k])) return true;
    }
    return true;
}

CheckedSegmentView::Adoptable CheckedSegmentView::adoptable() const {
    Adoptable a;
    const SegmentHeader& h = *seg_.header();
    struct RingCheck {
        const RingControl* c;
        uint64_t capacity;
        const char* name;
        uint64_t* queued;
    };
    const RingCheck rings[] = {{&h.packet_ring, layout_.packet_ring_bytes, "packet", &a.packets_queued},
                               {&h.record_ring, layout_.record_ring_slots, "record", &a.records_queued},
                               {&h.event_ring, layout_.event_ring_slots, "event", &a.events_queued}};
    for (const RingCheck& r : rings) {
        const uint64_t tail = r.c->tail.load(std::memory_order_acquire);
        const uint64_t head = r.c->head.load(std::memory_order_acquire);
        if (r.c->capacity != r.capacity || head < tail || head - tail > r.capacity) {
            a.problem = std::string("its ") + r.name + " ring's positions are impossible (head " + std::to_string(head) +
                        ", tail " + std::to_string(tail) + ")";
            return a;
        }
        *r.queued = head - tail;
    }
    // The header is copied, then checked: its values are only compared, never followed.
    FlowMapHeader fh;
    if (!read_exact(seg_.data_fd(), &fh, sizeof fh, layout_.flow_map_offset)) {
        a.problem = "its FlowMap header cannot be read";
        return a;
    }
    if (!FlowMap::header_fits(fh, capacity_)) {
        a.problem = "its FlowMap header is not one this meter lays out";
        return a;
    }
    const bool read = read_entries(fh.high_water.load(std::memory_order_relaxed), [&](uint32_t i, const FlowEntry& e) {
        if (e.in_use == 0) return true;
        // ending: 0, or the EndReason of a flow whose flow_end was being published.
        if (e.in_use != 1 || !valid_flow(e) || e.ending > static_cast<uint8_t>(EndReason::evicted)) {
            a.problem = "FlowMap entry " + std::to_string(i) + " is not a flow";
            return false;
        }
        ++(e.ending ? a.ending : a.flows);
        return true;
    });
    if (!read) a.problem = "its FlowMap entries cannot be read";
    return a;
}

// ---- CheckedEventReader ----------------------------------------------------------------------

CheckedEventReader::CheckedEventReader(const Segment& seg)
    : ctl_(&seg.header()->event_ring),
      slots_(reinterpret_cast<const Record*>(seg.base() + seg.layout().event_ring_offset)),
      capacity_(seg.layout().event_ring_slots) {
    // Where the database writer before this one stopped: 0 in a new segment; in an adopted
    // one (ctld/segment_adoption.hpp) the dead run's last commit, so that the events it had
    // not written yet are written now. A tail that is not behind the head within a ring is
    // not taken (the head check below then skips what cannot be read).
    const uint64_t tail = ctl_->tail.load(std::memory_order_acquire);
    const uint64_t head = ctl_->head.load(std::memory_order_acquire);
    if (tail <= head && head - tail <= capacity_) read_ = committed_ = tail;
}

uint64_t CheckedEventReader::head_checked() {
    const uint64_t head = ctl_->head.load(std::memory_order_acquire);
    if (head < read_) {
        // No producer moves its head back (a restarted procd resumes from it): a head behind
        // the reader was written to park it. Follow it, or no event would be read again.
        note_refused(BoundaryKind::ring_position, "event ring head behind the reader by", read_ - head);
        read_ = committed_ = head;
        ctl_->tail.store(head, std::memory_order_release);
        return head;
    }
    if (head - committed_ > capacity_) {
        // More than the ring can hold: not a position procd could have published. Skip to it
        // (what was there is lost: counted, and the FlowMap reconcile repairs the rows).
        note_refused(BoundaryKind::ring_position, "event ring head ahead of the tail by", head - committed_);
        lost_ += std::min<uint64_t>(head - read_, capacity_);
        read_ = committed_ = head;
        ctl_->tail.store(head, std::memory_order_release);
        return head;
    }
    return head;
}

size_t CheckedEventReader::read_until(Record* out, size_t max, uint64_t end) {
    const uint64_t head = std::min(head_checked(), end);
    size_t got = 0;
    const uint64_t mask = capacity_ - 1;
    for (size_t scanned = 0; scanned < max && read_ < head; ++scanned, ++read_) {
        Record r;
        std::memcpy(&r, &slots_[read_ & mask], sizeof r);  // a private copy, then checked
        if (const EventProblem problem = event_problem(r); problem.what) {
            note_refused(BoundaryKind::event_record, problem.what, problem.value);
            ++lost_;
            continue;
        }
        out[got++] = r;
    }
    return got;
}

void CheckedEventReader::commit() {
    if (read_ == committed_) return;
    ctl_->consumed.fetch_add(read_ - committed_, std::memory_order_relaxed);
    committed_ = read_;
    ctl_->tail.store(committed_, std::memory_order_release);
    wake_if_sleeping(ctl_->producer_sleeping, ctl_->space_seq);
}

void CheckedEventReader::rewind() { read_ = committed_; }

void CheckedEventReader::discard_all() {
    read_ = head_checked();
    commit();
}

uint64_t CheckedEventReader::pending() const {
    const uint64_t head = ctl_->head.load(std::memory_order_acquire);
    return head > committed_ ? std::min(head - committed_, capacity_) : 0;
}

bool CheckedEventReader::empty() const { return ctl_->head.load(std::memory_order_acquire) <= read_; }

uint64_t CheckedEventReader::take_lost() {
    const uint64_t n = lost_;
    lost_ = 0;
    return n;
}

}  // namespace angel
