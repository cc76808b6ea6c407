// angel-sink's de-duplication of replayed records (tools/sink/dedup.*), against the rule in
// docs/protocol.md ("Across an HA failover").
#include <gtest/gtest.h>

#include "tools/sink/dedup.hpp"

using namespace angel;
using namespace angel::ipfix;

namespace {

// Packet times: after every start these tests use unless given, and before their ends.
DecodedRecord packet(uint32_t id, uint32_t idx, bool replayed = false, uint64_t ts = 0) {
    DecodedRecord r;
    r.kind = RecordKind::packet;
    r.packet.flow_id = id;
    r.packet.index = idx;
    r.packet.ts_ns = ts ? ts : 1'000'000 + idx;
    r.packet.replayed = replayed;
    r.has_index = true;
    return r;
}
DecodedRecord start(uint32_t id, uint64_t ts, bool replayed = false) {
    DecodedRecord r;
    r.kind = RecordKind::flow_start;
    r.start.flow_id = id;
    r.start.ts_ns = ts;
    r.start.replayed = replayed;
    return r;
}
DecodedRecord end(uint32_t id, uint64_t last, bool replayed = false) {
    DecodedRecord r;
    r.kind = RecordKind::flow_end;
    r.end.flow_id = id;
    r.end.last_ns = last;
    r.end.replayed = replayed;
    return r;
}

}  // namespace

TEST(SinkDedup, AReplayOverlappingTheOldMasterKeepsEachPacketOnce) {
    sink::Dedup d(100);
    // Old master: start, packets 0..9. New master replays start (its own clock), 5..14, end.
    EXPECT_TRUE(d.admit(start(7, 1000), 0));
    for (uint32_t i = 0; i < 10; ++i) EXPECT_TRUE(d.admit(packet(7, i), 0));
    EXPECT_FALSE(d.admit(start(7, 1003, true), 0));
    int admitted = 0;
    for (uint32_t i = 5; i < 15; ++i) admitted += d.admit(packet(7, i, true), 0);
    EXPECT_EQ(admitted, 5);
    EXPECT_TRUE(d.admit(end(7, 5000, true), 0));
    EXPECT_FALSE(d.admit(end(7, 5000, true), 0));
    EXPECT_EQ(d.replayed(), 13u);
    EXPECT_EQ(d.duplicates(), 7u);  // start, 5 packets, end
    EXPECT_EQ(d.index_gaps(), 0u);
}

TEST(SinkDedup, GapsAreCountedFromZeroWhenTheStartWasSeen) {
    sink::Dedup d(100);
    EXPECT_TRUE(d.admit(start(1, 10), 0));
    for (uint32_t i : {0u, 1u, 4u, 5u, 9u}) EXPECT_TRUE(d.admit(packet(1, i), 0));
    EXPECT_EQ(d.index_gaps(), 5u);  // 2 3 6 7 8
    EXPECT_TRUE(d.admit(packet(1, 7), 0));
    EXPECT_TRUE(d.admit(packet(1, 3), 0));
    EXPECT_FALSE(d.admit(packet(1, 4), 0));
    EXPECT_EQ(d.index_gaps(), 3u);
    // A flow first seen mid-way (no start): counted from its lowest index.
    EXPECT_TRUE(d.admit(packet(2, 100), 0));
    EXPECT_TRUE(d.admit(packet(2, 102), 0));
    EXPECT_EQ(d.index_gaps(), 4u);
    EXPECT_EQ(d.flows_with_gaps(), 2u);
}

TEST(SinkDedup, AReusedFlowIdStartsANewLife) {
    sink::Dedup d(100);
    EXPECT_TRUE(d.admit(start(3, 100), 0));
    EXPECT_TRUE(d.admit(packet(3, 0, false, 150), 0));
    EXPECT_TRUE(d.admit(end(3, 200), 0));
    // The replayed copy of the ended life's start and packet: duplicates.
    EXPECT_FALSE(d.admit(start(3, 101, true), 1));
    EXPECT_FALSE(d.admit(packet(3, 0, true, 151), 1));
    // A new flow on the same tuple: a start after the old life's last packet.
    EXPECT_TRUE(d.admit(start(3, 300), 2));
    EXPECT_TRUE(d.admit(packet(3, 0, false, 300), 2));
    // Its replayed copy (started after the old end too, but this life is live): a duplicate.
    EXPECT_FALSE(d.admit(start(3, 301, true), 2));
    EXPECT_TRUE(d.admit(end(3, 400), 2));
    // A replayed start of a life the old master never sent (after the last end): admitted.
    EXPECT_TRUE(d.admit(start(3, 500, true), 3));
    EXPECT_TRUE(d.admit(packet(3, 0, true, 500), 3));
}

TEST(SinkDedup, ALiveRecordTimedAfterTheLifeWithASeenIndexIsTheNextFlow) {
    // The receiver missed flow 4's end and the next flow's start on the same tuple.
    sink::Dedup d(100);
    EXPECT_TRUE(d.admit(start(4, 100), 0));
    for (uint32_t i = 0; i < 5; ++i) EXPECT_TRUE(d.admit(packet(4, i, false, 100 + i), 0));
    EXPECT_FALSE(d.admit(packet(4, 3, false, 103), 0));  // a repeat: its original's time
    EXPECT_TRUE(d.admit(packet(4, 2, false, 900), 0));   // later than the life: the next flow
    EXPECT_TRUE(d.admit(packet(4, 3, false, 901), 0));
    EXPECT_EQ(d.duplicates(), 1u);
}

TEST(SinkDedup, EndedFlowsAreForgottenAfterTheHoldAndTheBoundHolds) {
    sink::Dedup d(2);
    EXPECT_TRUE(d.admit(start(1, 1), 0));
    EXPECT_TRUE(d.admit(end(1, 2), 0));
    EXPECT_TRUE(d.admit(start(2, 1), 0));
    // Full (2 flows): the ended flow 1 makes room for 3.
    EXPECT_TRUE(d.admit(start(3, 1), 1));
    // Full again, none ended: flow 4 is not tracked, its records pass.
    EXPECT_TRUE(d.admit(packet(4, 0), 1));
    EXPECT_TRUE(d.admit(packet(4, 0), 1));
    EXPECT_EQ(d.untracked(), 2u);
    // After the hold an ended flow's copies are no longer recognised.
    sink::Dedup h(10);
    EXPECT_TRUE(h.admit(start(9, 1), 0));
    EXPECT_TRUE(h.admit(packet(9, 0, false, 5), 0));
    EXPECT_TRUE(h.admit(end(9, 10), 0));
    EXPECT_FALSE(h.admit(packet(9, 0, true, 5), sink::Dedup::kHoldSeconds - 1));
    EXPECT_TRUE(h.admit(packet(9, 0, true, 5), sink::Dedup::kHoldSeconds + 1));
}

TEST(SinkDedup, AReplayReachingIntoAnEarlierLifeOfTheIdIsACopy) {
    sink::Dedup d(100);
    // Life 1 ends at t=200; life 2 (same tuple, same ID) starts at t=300.
    EXPECT_TRUE(d.admit(start(5, 100), 0));
    EXPECT_TRUE(d.admit(packet(5, 0), 0));
    EXPECT_TRUE(d.admit(end(5, 200), 0));
    EXPECT_TRUE(d.admit(start(5, 300), 0));
    DecodedRecord p0 = packet(5, 0);
    p0.packet.ts_ns = 300;
    EXPECT_TRUE(d.admit(p0, 0));
    // The new master's replay still holds life 1's last packet and its flow_end.
    DecodedRecord old = packet(5, 1, true);
    old.packet.ts_ns = 190;
    EXPECT_FALSE(d.admit(old, 1));
    EXPECT_FALSE(d.admit(end(5, 200, true), 1));
    // Life 2's own records in the replay: index 1 is new, index 0 a copy.
    DecodedRecord p1 = packet(5, 1, true);
    p1.packet.ts_ns = 310;
    EXPECT_TRUE(d.admit(p1, 1));
    p0.packet.replayed = true;
    EXPECT_FALSE(d.admit(p0, 1));
    EXPECT_TRUE(d.admit(end(5, 310), 1));
}

TEST(SinkDedup, RecordsAfterAnEndWithoutTheirStartBeginTheNextLife) {
    // A receiver that missed the next flow_start (the export went elsewhere for a while).
    sink::Dedup d(100);
    EXPECT_TRUE(d.admit(start(8, 100), 0));
    EXPECT_TRUE(d.admit(packet(8, 0), 0));
    EXPECT_TRUE(d.admit(end(8, 200), 0));
    EXPECT_TRUE(d.admit(packet(8, 0), 1));  // live, not replayed: the next life's first packet
    EXPECT_TRUE(d.admit(packet(8, 1), 1));
    EXPECT_FALSE(d.admit(packet(8, 1), 1));
    EXPECT_TRUE(d.admit(end(8, 2'000'000), 1));
    EXPECT_EQ(d.duplicates(), 1u);
}

// The old master stopped right after a flow's flow_start (its first packet record was in the
// message it never sent); the new master's clock runs 5 us behind. Its replayed copy of the start
// moves the life's start back, so its first packet record (index 0, timed before the old
// master's start) is this life's, not an earlier one's.
TEST(SinkDedup, TheFirstPacketReplayedByAMeterWhoseClockIsBehindIsKept) {
    sink::Dedup d(100);
    const uint64_t t1 = 10'000'000'000;  // the old master's start
    const uint64_t t2 = t1 - 5'000;      // the new master's
    EXPECT_TRUE(d.admit(start(9, t1), 0));
    EXPECT_FALSE(d.admit(start(9, t2, true), 1));  // a copy of the start
    EXPECT_TRUE(d.admit(packet(9, 0, true, t2), 1));
    for (uint32_t i = 1; i < 60; ++i) EXPECT_TRUE(d.admit(packet(9, i, true, t1 + i * 4000), 1));
    EXPECT_TRUE(d.admit(end(9, t1 + 240'000, true), 1));
    EXPECT_EQ(d.index_gaps(), 0u);
    EXPECT_EQ(d.duplicates(), 1u);
}

// The same allowance never reaches back into an earlier life: a replayed start (and its packets)
// timed before the previous life's end, or more than kClockSkewNs before the current start,
// stays a copy of an earlier life.
TEST(SinkDedup, AnEarlierLifesReplayedStartDoesNotMoveTheCurrentOne) {
    sink::Dedup d(100);
    const uint64_t life2 = 10'000'000'000;
    EXPECT_TRUE(d.admit(start(4, life2 - 50'000'000), 0));  // life 1: 50 ms before life 2
    EXPECT_TRUE(d.admit(packet(4, 0, false, life2 - 50'000'000), 0));
    EXPECT_TRUE(d.admit(end(4, life2 - 40'000'000), 0));
    EXPECT_TRUE(d.admit(start(4, life2), 0));
    // The replay holds life 1: its start is within the allowance but before life 1's end.
    EXPECT_FALSE(d.admit(start(4, life2 - 50'000'000, true), 1));
    EXPECT_FALSE(d.admit(packet(4, 0, true, life2 - 50'000'000), 1));
    EXPECT_FALSE(d.admit(end(4, life2 - 40'000'000, true), 1));
    // A start more than the allowance earlier (no previous life known): not this life's.
    EXPECT_TRUE(d.admit(start(6, life2), 0));
    EXPECT_FALSE(d.admit(start(6, life2 - sink::Dedup::kClockSkewNs - 1, true), 1));
    EXPECT_FALSE(d.admit(packet(6, 0, true, life2 - sink::Dedup::kClockSkewNs - 1), 1));
    // Life 2's own packet 0 still counts once.
    EXPECT_TRUE(d.admit(packet(4, 0, false, life2), 0));
    EXPECT_FALSE(d.admit(packet(4, 0, true, life2), 1));
}
