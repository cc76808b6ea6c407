// The privilege boundary's checked view (ctld/checked_segment_view.hpp), fed what a stage that
// was taken over could write: every value is clamped or refused, counted, and nothing reads
// outside the segment, loops without end or allocates by what the stage wrote. The oracle is
// the layout the test made (capacities it chose), never the view itself.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "ctld/checked_segment_view.hpp"
#include "ctld/db/db_flow_writer.hpp"
#include "ctld/status_report.hpp"
#include "shm/segment.hpp"
#include "small_segment_sizes.hpp"

using namespace angel;

namespace {

struct Seg {
    std::string name = "cview-" + std::to_string(getpid()) + "-" + std::to_string(counter()++);
    std::unique_ptr<Segment> seg;
    explicit Seg(uint32_t max_flows = 1000) { seg = Segment::create(name, unit_testing::small_segment_sizes(max_flows)); }
    ~Seg() { Segment::remove(name); }
    static int& counter() {
        static int n = 0;
        return n;
    }
    FlowMapHeader& fm_header() { return *reinterpret_cast<FlowMapHeader*>(seg->base() + seg->layout().flow_map_offset); }
    FlowEntry& entry(uint32_t i) {
        return *reinterpret_cast<FlowEntry*>(seg->base() + seg->layout().flow_map_offset +
                                             FlowMap::entry_offset(seg->layout().flow_map_capacity, i));
    }
    Record* events() { return reinterpret_cast<Record*>(seg->base() + seg->layout().event_ring_offset); }
};

uint64_t refused(BoundaryKind k) { return boundary_counters().refused[static_cast<size_t>(k)].load(); }

FlowEntry valid_flow(uint32_t id, uint64_t packets) {
    FlowEntry e{};
    e.key.ip_version = 4;
    e.key.proto = 17;
    e.key.addr_lo[0] = 10;
    e.key.addr_hi[0] = 192;
    e.flow_id = id;
    e.in_use = 1;
    e.packets[0] = packets;
    return e;
}

}  // namespace

TEST(CheckedSegmentView, HighWaterAndLiveBeyondTheCapacityAreClamped) {
    Seg s;
    const uint32_t cap = s.seg->layout().flow_map_capacity;
    s.entry(0) = valid_flow(7, 3);
    s.entry(cap - 1) = valid_flow(8, 5);  // the last entry of the map (all 5,096 have memory behind them)
    s.fm_header().high_water.store(0xFFFFFFF0u);
    s.fm_header().live.store(0xFFFFFFFFu);
    const uint64_t before = refused(BoundaryKind::flow_count);
    CheckedSegmentView v(*s.seg);
    EXPECT_EQ(v.live_flows(), cap);
    uint64_t seen = 0;
    v.scan_flows([&](const FlowEntry&) { return ++seen, true; });
    EXPECT_EQ(seen, 2u);  // exactly the two real entries below the capacity
    EXPECT_GE(refused(BoundaryKind::flow_count), before + 2);
    // The replies built on it stay whole.
    const std::string flows = render_flows(*s.seg, FlowsQuery{true, 10}, false);
    EXPECT_NE(flows.find("10.0.0.0:0"), std::string::npos) << flows;
    EXPECT_EQ(snapshot_live_flows(v).size(), 2u);
}

TEST(CheckedSegmentView, EntriesThatCannotBeFlowsAreRefused) {
    Seg s;
    s.fm_header().high_water.store(3);
    s.entry(0) = valid_flow(1, 1);
    s.entry(1) = valid_flow(2, 1);
    s.entry(1).key.ip_version = 9;
    s.entry(2) = valid_flow(3, 1);
    s.entry(2).in_use = 0xAB;  // neither in use nor free: not a flow either
    const uint64_t before = refused(BoundaryKind::flow_entry);
    uint64_t seen = 0;
    CheckedSegmentView(*s.seg).scan_flows([&](const FlowEntry& e) { return ++seen, e.flow_id == 1; });
    EXPECT_EQ(seen, 1u);
    EXPECT_EQ(refused(BoundaryKind::flow_entry), before + 1);
}

TEST(CheckedSegmentView, EntriesProcdNeverBackedReadAsFreeNotAsAFault) {
    // 200,000 flows: only the first 65,536 entries have memory behind them (Segment::create);
    // a high_water at the capacity makes the view read the holes (zeros), never fault.
    Seg s(200000);
    s.fm_header().high_water.store(s.seg->layout().flow_map_capacity);
    uint64_t seen = 0;
    CheckedSegmentView(*s.seg).scan_flows([&](const FlowEntry&) { return ++seen, true; });
    EXPECT_EQ(seen, 0u);
}

TEST(CheckedSegmentView, RingFillAndStageStateAreClamped) {
    Seg s;
    SegmentHeader& h = *s.seg->header();
    h.packet_ring.head.store(1ull << 40);
    h.packet_ring.tail.store(0);
    h.packet_ring.capacity = 7;  // ignored: the view has its own
    h.record_ring.head.store(5);
    h.record_ring.tail.store(1ull << 63);
    h.stages[1].state.store(0xDEAD);
    h.stages[1].heartbeat_ns.store(UINT64_MAX);
    CheckedSegmentView v(*s.seg);
    const RingReading p = v.ring(Segment::Ring::packet);
    EXPECT_EQ(p.capacity, s.seg->layout().packet_ring_bytes);
    EXPECT_EQ(p.fill, p.capacity);
    EXPECT_DOUBLE_EQ(p.fill_pct(), 100.0);
    EXPECT_EQ(v.ring(Segment::Ring::record).fill, 0u);
    const uint64_t before = refused(BoundaryKind::stage_state);
    const StageReading r = v.stage(StageId::procd);
    EXPECT_EQ(r.state, StageState::down);
    EXPECT_LE(r.heartbeat_ns, monotonic_ns());  // no heartbeat from the future (hang check overflow)
    EXPECT_EQ(refused(BoundaryKind::stage_state), before + 1);
    // status and stats render whatever the values.
    MeterView mv;
    mv.instance = "x";
    mv.role = "master";
    EXPECT_NE(render_status(*s.seg, mv, false).find("packet 100.0%"), std::string::npos);
    EXPECT_NE(render_stats(*s.seg, true).find("\"bad_ring_position\":"), std::string::npos);
}

TEST(CheckedSegmentView, EventReaderEndsWhateverTheHeadSays) {
    Seg s;
    const uint64_t slots = s.seg->layout().event_ring_slots;
    for (uint64_t i = 0; i < 4; ++i) {
        Record& r = s.events()[i];
        std::memset(&r, 0, sizeof r);
        r.type = static_cast<uint8_t>(RecordType::flow_start);
        r.flow_id = static_cast<uint32_t>(i);
        r.start.ip_version = 4;
    }
    s.events()[2].type = 0x77;  // not an event
    s.seg->header()->event_ring.head.store(4);
    CheckedEventReader ev(*s.seg);
    Record out[16];
    EXPECT_EQ(ev.read(out, 16), 3u);  // the bad one is skipped
    EXPECT_EQ(out[2].flow_id, 3u);
    ev.commit();
    EXPECT_EQ(s.seg->header()->event_ring.tail.load(), 4u);
    EXPECT_EQ(ev.take_lost(), 1u);
    // A head procd could never have published: far ahead of the tail.
    s.seg->header()->event_ring.head.store(1ull << 62);
    s.seg->header()->event_ring.tail.store(12345);  // and a tail the reader never reads back
    const uint64_t before = refused(BoundaryKind::ring_position);
    size_t rounds = 0;
    while (!ev.empty() && rounds < 10) {
        ev.read(out, 16);
        ev.commit();
        ++rounds;
    }
    EXPECT_TRUE(ev.empty());
    EXPECT_LE(rounds, 1u);
    EXPECT_EQ(refused(BoundaryKind::ring_position), before + 1);
    EXPECT_EQ(ev.take_lost(), slots);  // what the ring could have held is counted as lost
    // A head that goes backwards gives nothing to read, and does not park the reader: what
    // is published after it is read.
    s.seg->header()->event_ring.head.store(3);
    EXPECT_EQ(ev.read(out, 16), 0u);
    s.seg->header()->event_ring.head.store(4);
    EXPECT_EQ(ev.read(out, 16), 1u);
    EXPECT_EQ(out[0].flow_id, 3u);
}

TEST(CheckedSegmentView, EventTotalsBeyondTheDatabaseColumnsAreRefused) {
    Seg s;
    for (uint64_t i = 0; i < 3; ++i) {
        Record& r = s.events()[i];
        std::memset(&r, 0, sizeof r);
        r.type = static_cast<uint8_t>(RecordType::flow_end);
        r.flow_id = static_cast<uint32_t>(i);
        r.end.reason = static_cast<uint8_t>(EndReason::idle);
        r.end.packets[0] = 10;
        r.end.bytes[0] = 1000;
    }
    s.events()[0].end.packets[0] = 15255835024593843638ull;  // above INT64_MAX: bigint refuses it
    s.events()[1].end.bytes[0] = INT64_MAX;                  // fits alone, not with bytes[1]
    s.events()[1].end.bytes[1] = 1;
    s.seg->header()->event_ring.head.store(3);
    CheckedEventReader ev(*s.seg);
    Record out[4];
    ASSERT_EQ(ev.read(out, 4), 1u);
    EXPECT_EQ(out[0].flow_id, 2u);
    EXPECT_EQ(ev.take_lost(), 2u);
}

// An adopted segment (ctld/segment_adoption.hpp): the dead writer committed up to the tail and
// the ring has wrapped since its creation. A new reader starts at that tail and reads exactly
// what was left unwritten: nothing skipped as "lost", nothing committed before written again.
TEST(CheckedSegmentView, EventReaderOfAnAdoptedSegmentStartsAtTheDeadWritersTail) {
    Seg s;
    const uint64_t slots = s.seg->layout().event_ring_slots;
    const uint64_t tail = 5 * slots + 7, head = tail + 10;  // wrapped five times
    for (uint64_t p = tail; p < head; ++p) {
        Record& r = s.events()[p & (slots - 1)];
        std::memset(&r, 0, sizeof r);
        r.type = static_cast<uint8_t>(RecordType::flow_start);
        r.flow_id = static_cast<uint32_t>(p);
        r.start.ip_version = 4;
    }
    s.seg->header()->event_ring.tail.store(tail);
    s.seg->header()->event_ring.head.store(head);
    CheckedEventReader ev(*s.seg);
    EXPECT_EQ(ev.pending(), 10u);
    Record out[32];
    ASSERT_EQ(ev.read(out, 32), 10u);
    for (uint64_t i = 0; i < 10; ++i) EXPECT_EQ(out[i].flow_id, static_cast<uint32_t>(tail + i));
    EXPECT_EQ(ev.take_lost(), 0u);
    ev.commit();
    EXPECT_EQ(s.seg->header()->event_ring.tail.load(), head);
    // A tail that cannot be the dead writer's (ahead of the head) is not taken: the reader
    // starts from 0 and the head check skips what cannot be read, as before.
    s.seg->header()->event_ring.tail.store(head + 1);
    CheckedEventReader other(*s.seg);
    EXPECT_EQ(other.read_position(), 0u);
}

// The capture gap procd reports in an adopted segment (ExportProgress::adopted_gap_*), as a
// stage could write it: only an ordered pair not later than now is shown, anything else is
// "not known yet" ({0, 0}), never a negative or future gap in status.
TEST(CheckedSegmentView, AdoptedGapOutOfOrderOrInTheFutureIsNotShown) {
    Seg s;
    ExportProgress& p = s.seg->header()->progress;
    const CheckedSegmentView view(*s.seg);
    const uint64_t now = 5'000'000'000ull;
    EXPECT_EQ(view.adopted_gap(now), std::make_pair(uint64_t{0}, uint64_t{0}));  // not reported yet
    p.adopted_gap_first_ns.store(1'000'000'000ull);
    p.adopted_gap_last_ns.store(3'000'000'000ull);
    EXPECT_EQ(view.adopted_gap(now), std::make_pair(uint64_t{1'000'000'000}, uint64_t{3'000'000'000}));
    p.adopted_gap_first_ns.store(4'000'000'000ull);  // after its end
    EXPECT_EQ(view.adopted_gap(now), std::make_pair(uint64_t{0}, uint64_t{0}));
    p.adopted_gap_first_ns.store(1'000'000'000ull);
    p.adopted_gap_last_ns.store(now + 1);  // in the future
    EXPECT_EQ(view.adopted_gap(now), std::make_pair(uint64_t{0}, uint64_t{0}));
    p.adopted_gap_first_ns.store(0);  // no start
    p.adopted_gap_last_ns.store(3'000'000'000ull);
    EXPECT_EQ(view.adopted_gap(now), std::make_pair(uint64_t{0}, uint64_t{0}));
    // Status renders a refused pair as null, not as a number.
    Recovery rec{42, 1, 0};
    MeterView v;
    v.instance = "t";
    v.role = "master";
    v.recovery = &rec;
    const std::string json = render_status(*s.seg, v, true);
    EXPECT_NE(json.find("\"recovery\":{\"previous_pid\":42,\"adopted_flows\":1,\"capture_gap_ms\":null}"),
              std::string::npos)
        << json;
}
