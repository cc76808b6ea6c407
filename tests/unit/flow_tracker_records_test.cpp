// Fewer records per flow (issue 11, item 5) in procd's flow logic: the packet-record limit,
// mute and full marks applied from a published flow-control table, and the counters of what
// was held back. flow_end always carries every packet.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "procd/flow_control_applier.hpp"
#include "procd/flow_tracker.hpp"
#include "tests/unit/flow_tracker_fixture.hpp"

using namespace angel;
using namespace angel::flow_tracker_testing;

namespace {

ParsedPacket udp(uint8_t a) {
    ParsedPacket p;
    p.ip_version = 4;
    p.proto = 17;
    p.src = {198, 18, 0, a};
    p.dst = {198, 19, 0, 1};
    p.sport = 5000;
    p.dport = 53;
    return p;
}

size_t count(const std::vector<Record>& v, RecordType t, uint32_t flow_id) {
    size_t n = 0;
    for (const Record& r : v) n += r.type == static_cast<uint8_t>(t) && r.flow_id == flow_id;
    return n;
}

const Record* flow_end(const std::vector<Record>& v, uint32_t flow_id) {
    for (const Record& r : v)
        if (r.type == static_cast<uint8_t>(RecordType::flow_end) && r.flow_id == flow_id) return &r;
    return nullptr;
}

uint32_t id_of(const std::vector<Record>& v, size_t nth_start) {
    for (const Record& r : v)
        if (r.type == static_cast<uint8_t>(RecordType::flow_start) && nth_start-- == 0) return r.flow_id;
    return 0;
}

struct Table {
    std::unique_ptr<FlowControlBlock> b{new FlowControlBlock{}};
    void set(std::initializer_list<FlowControlEntry> e) { write_flow_control(*b, e.begin(), static_cast<uint32_t>(e.size())); }
};

}  // namespace

TEST(FlowTrackerRecords, LimitKeepsFirstNPacketRecordsAndFullCounts) {
    Fixture f(64);
    f.tracker->set_record_limit(3);
    for (int i = 0; i < 10; ++i) f.send(udp(1), (1 + i) * kSec);
    for (int i = 0; i < 2; ++i) f.send(udp(2), (1 + i) * kSec);
    f.tracker->end_all(EndReason::end_of_input);
    const uint32_t a = id_of(f.out.records, 0), b = id_of(f.out.records, 1);
    EXPECT_EQ(count(f.out.records, RecordType::packet, a), 3u);
    EXPECT_EQ(count(f.out.records, RecordType::packet, b), 2u);
    // The kept ones are the first three, indexes 0, 1, 2.
    uint32_t next = 0;
    for (const Record& r : f.out.records)
        if (r.type == static_cast<uint8_t>(RecordType::packet) && r.flow_id == a) {
            EXPECT_EQ(r.packet.index, next++);
        }
    ASSERT_NE(flow_end(f.out.records, a), nullptr);
    EXPECT_EQ(flow_end(f.out.records, a)->end.packets[0], 10u);
    EXPECT_EQ(flow_end(f.out.records, a)->end.bytes[0], 1000u);
    EXPECT_EQ(f.ctr[procd_records_over_limit].load(), 7u);
    EXPECT_EQ(f.ctr[procd_records_muted].load(), 0u);
    EXPECT_EQ(f.ctr[procd_ip_packets].load(), 12u);
}

TEST(FlowTrackerRecords, NoLimitByDefault) {
    Fixture f(64);
    for (int i = 0; i < 50; ++i) f.send(udp(1), (1 + i) * kSec / 10);
    EXPECT_EQ(count(f.out.records, RecordType::packet, id_of(f.out.records, 0)), 50u);
    EXPECT_EQ(f.ctr[procd_records_over_limit].load(), 0u);
}

TEST(FlowTrackerRecords, MuteStopsRecordsUnmuteResumesFullExemptsFromLimit) {
    Fixture f(64);
    f.tracker->set_record_limit(2);
    Table t;
    FlowControlApplier fc(f.map);
    fc.reset(*t.b);
    for (int i = 0; i < 3; ++i) {
        f.send(udp(1), kSec + i);
        f.send(udp(2), kSec + i);
    }
    const uint32_t a = id_of(f.out.records, 0), b = id_of(f.out.records, 1);
    // a muted, b full; an entry for an ID no flow has changes nothing.
    t.set({{a, static_cast<uint8_t>(FlowRecordMode::mute), {}, 2 * kSec},
           {b, static_cast<uint8_t>(FlowRecordMode::full), {}, 2 * kSec},
           {12345, static_cast<uint8_t>(FlowRecordMode::mute), {}, 2 * kSec}});
    EXPECT_TRUE(fc.poll(*t.b));
    EXPECT_FALSE(fc.poll(*t.b));  // same generation: nothing to do
    EXPECT_EQ(fc.entries(), 3u);
    for (int i = 0; i < 4; ++i) {
        f.send(udp(1), 3 * kSec + i);
        f.send(udp(2), 3 * kSec + i);
    }
    EXPECT_EQ(count(f.out.records, RecordType::packet, a), 2u);      // limit before, muted after
    EXPECT_EQ(count(f.out.records, RecordType::packet, b), 2u + 4u);  // limit before, full after
    EXPECT_EQ(f.ctr[procd_records_muted].load(), 4u);
    EXPECT_EQ(f.ctr[procd_records_over_limit].load(), 2u);  // the third packet of each, before the marks
    // Unmuted: a is back under the limit (past it: nothing), b loses full.
    t.set({});
    EXPECT_TRUE(fc.poll(*t.b));
    f.tracker->set_record_limit(0);
    f.send(udp(1), 4 * kSec);
    f.send(udp(2), 4 * kSec);
    EXPECT_EQ(count(f.out.records, RecordType::packet, a), 3u);
    EXPECT_EQ(count(f.out.records, RecordType::packet, b), 7u);
    f.tracker->end_all(EndReason::shutdown);
    EXPECT_EQ(flow_end(f.out.records, a)->end.packets[0], 8u);
    EXPECT_EQ(flow_end(f.out.records, b)->end.packets[0], 8u);
}

TEST(FlowTrackerRecords, MuteDoesNotReachALaterFlowReusingTheId) {
    Fixture f(64);
    Table t;
    FlowControlApplier fc(f.map);
    f.send(udp(1), 10 * kSec);
    const uint32_t a = id_of(f.out.records, 0);
    f.tracker->end_all(EndReason::shutdown);
    f.tracker->release_ended();
    f.send(udp(1), 30 * kSec);  // same key: same ID again, a new flow started at 30 s
    ASSERT_EQ(id_of(f.out.records, 1), a);
    t.set({{a, static_cast<uint8_t>(FlowRecordMode::mute), {}, 20 * kSec}});  // taken up at 20 s
    fc.reset(*t.b);
    f.send(udp(1), 31 * kSec);
    EXPECT_EQ(count(f.out.records, RecordType::packet, a), 3u);
    EXPECT_EQ(f.ctr[procd_records_muted].load(), 0u);
}

TEST(FlowTrackerRecords, RestartClearsStaleMarks) {
    Fixture f(64);
    Table t;
    f.send(udp(1), kSec);
    const uint32_t a = id_of(f.out.records, 0);
    {
        FlowControlApplier fc(f.map);
        t.set({{a, static_cast<uint8_t>(FlowRecordMode::mute), {}, 2 * kSec}});
        fc.reset(*t.b);
    }
    // A successor procd starts while the set no longer names the flow.
    t.set({});
    FlowControlApplier successor(f.map);
    successor.reset(*t.b);
    f.send(udp(1), 3 * kSec);
    EXPECT_EQ(count(f.out.records, RecordType::packet, a), 2u);
}

TEST(FlowControlTable, BoundedCopy) {
    std::unique_ptr<FlowControlBlock> b(new FlowControlBlock{});
    std::unique_ptr<FlowControlEntry[]> in(new FlowControlEntry[kFlowControlMax + 10]);
    for (uint32_t i = 0; i < kFlowControlMax + 10; ++i) in[i] = {i, 1, {}, 5};
    write_flow_control(*b, in.get(), kFlowControlMax + 10);
    std::unique_ptr<FlowControlEntry[]> out(new FlowControlEntry[kFlowControlMax]);
    EXPECT_EQ(read_flow_control(*b, out.get()), kFlowControlMax);
    EXPECT_EQ(out[kFlowControlMax - 1].flow_id, kFlowControlMax - 1);
    b->count = 0xFFFFFFFFu;  // whatever the block says, the copy stays in bounds
    EXPECT_EQ(read_flow_control(*b, out.get()), kFlowControlMax);
}
