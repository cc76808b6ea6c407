// FlowTracker::announce_all (a new master re-announces its live flows): the announce marker
// first, then one flow_start per live flow with the tuple exactly as the flow's original
// flow_start had it (also when the first packet went from the canonical "hi" side), to the
// record ring only; flows that have ended are not announced.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

#include "procd/flow_tracker.hpp"
#include "tests/unit/flow_tracker_fixture.hpp"

using namespace angel;
using namespace angel::flow_tracker_testing;

namespace {

ParsedPacket v4(uint8_t proto, IpBytes src, uint16_t sport, IpBytes dst, uint16_t dport, uint8_t flags = 0) {
    ParsedPacket p;
    p.ip_version = 4;
    p.proto = proto;
    p.src = src;
    p.dst = dst;
    p.sport = sport;
    p.dport = dport;
    p.tcp_flags = flags;
    return p;
}
IpBytes a4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return IpBytes{a, b, c, d}; }
ParsedPacket reply(const ParsedPacket& p, uint8_t flags = 0) {
    ParsedPacket r = p;
    std::swap(r.src, r.dst);
    std::swap(r.sport, r.dport);
    r.tcp_flags = flags;
    return r;
}

std::vector<Record> of_type(const std::vector<Record>& v, RecordType t) {
    std::vector<Record> out;
    for (const Record& r : v)
        if (r.type == static_cast<uint8_t>(t)) out.push_back(r);
    return out;
}

// The original flow_start of every flow, by flow ID.
std::map<uint32_t, Record> starts_by_id(const std::vector<Record>& v) {
    std::map<uint32_t, Record> m;
    for (const Record& r : of_type(v, RecordType::flow_start)) m[r.flow_id] = r;
    return m;
}

void expect_same_start(const Record& a, const Record& b) {
    EXPECT_EQ(a.type, static_cast<uint8_t>(RecordType::flow_start));
    EXPECT_EQ(a.flow_id, b.flow_id);
    EXPECT_EQ(a.ts_ns, b.ts_ns);
    EXPECT_EQ(a.start.ip_version, b.start.ip_version);
    EXPECT_EQ(a.start.proto, b.start.proto);
    EXPECT_EQ(a.start.src, b.start.src);
    EXPECT_EQ(a.start.dst, b.start.dst);
    EXPECT_EQ(a.start.sport, b.start.sport);
    EXPECT_EQ(a.start.dport, b.start.dport);
}

}  // namespace

TEST(FlowTrackerAnnounce, MarkerFirstThenEveryLiveFlowAsItsFirstPacketSawIt) {
    Fixture f(16);
    // lo -> hi (not reversed)
    const ParsedPacket fwd = v4(17, a4(198, 18, 0, 1), 5000, a4(198, 19, 0, 2), 53);
    // hi -> lo: the first packet comes from the greater address (first_reversed)
    const ParsedPacket rev = v4(6, a4(198, 19, 0, 9), 443, a4(198, 18, 0, 3), 40000, 0x02);
    // same address both ways: the greater port sends first
    const ParsedPacket same = v4(17, a4(10, 0, 0, 1), 6000, a4(10, 0, 0, 1), 5000);
    // IPv6, hi -> lo
    ParsedPacket six = v4(17, IpBytes{0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 1234,
                          IpBytes{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 4321);
    six.ip_version = 6;

    f.send(fwd, 1 * kSec);
    f.send(rev, 2 * kSec);
    f.send(same, 3 * kSec);
    f.send(six, 4 * kSec);
    // Replies and later packets must not change what is announced.
    f.send(reply(fwd), 5 * kSec);
    f.send(reply(rev, 0x12), 5 * kSec + 1);
    f.send(reply(same), 5 * kSec + 2);
    f.send(reply(six), 5 * kSec + 3);
    f.send(rev, 6 * kSec);

    const std::map<uint32_t, Record> original = starts_by_id(f.out.records);
    ASSERT_EQ(original.size(), 4u);
    // The originals carry the sender of the first packet as source.
    for (const auto& [id, r] : original) {
        if (r.start.sport == 443) {
            EXPECT_EQ(r.start.src, rev.src);
            EXPECT_EQ(r.start.dport, 40000);
        }
    }
    const size_t events_before = f.out.events.size();
    f.out.records.clear();

    EXPECT_EQ(f.tracker->announce_all(0x89abcdefu), 4u);
    ASSERT_EQ(f.out.records.size(), 5u);
    EXPECT_EQ(f.out.records[0].type, static_cast<uint8_t>(RecordType::announce));
    EXPECT_EQ(f.out.records[0].flow_id, 0x89abcdefu);
    std::map<uint32_t, int> seen;
    for (size_t i = 1; i < f.out.records.size(); ++i) {
        const Record& a = f.out.records[i];
        ASSERT_EQ(a.type, static_cast<uint8_t>(RecordType::flow_start)) << i;
        ++seen[a.flow_id];
        const auto o = original.find(a.flow_id);
        ASSERT_NE(o, original.end()) << a.flow_id;
        expect_same_start(a, o->second);
    }
    EXPECT_EQ(seen.size(), 4u);  // each live flow once
    EXPECT_EQ(f.out.events.size(), events_before);  // record ring only: nothing for the database
    EXPECT_EQ(f.map.live(), 4u);                    // announcing changes no flow
}

TEST(FlowTrackerAnnounce, ExplicitTuplesOfAReversedFirstPacket) {
    Fixture f(16);
    // The first packet goes 198.19.0.9:443 -> 198.18.0.3:40000, the reverse of the canonical order.
    const ParsedPacket first = v4(6, a4(198, 19, 0, 9), 443, a4(198, 18, 0, 3), 40000, 0x12);
    f.send(first, 7 * kSec);
    f.send(reply(first, 0x10), 8 * kSec);
    f.out.records.clear();
    ASSERT_EQ(f.tracker->announce_all(1), 1u);
    ASSERT_EQ(f.out.records.size(), 2u);
    const Record& a = f.out.records[1];
    EXPECT_EQ(a.start.src, a4(198, 19, 0, 9));
    EXPECT_EQ(a.start.dst, a4(198, 18, 0, 3));
    EXPECT_EQ(a.start.sport, 443);
    EXPECT_EQ(a.start.dport, 40000);
    EXPECT_EQ(a.start.proto, 6);
    EXPECT_EQ(a.start.ip_version, 4);
    EXPECT_EQ(a.ts_ns, 7 * kSec);  // first seen, not last seen
}

TEST(FlowTrackerAnnounce, EmptyTrackerGivesTheMarkerAlone) {
    Fixture f(4);
    EXPECT_EQ(f.tracker->announce_all(7), 0u);
    ASSERT_EQ(f.out.records.size(), 1u);
    EXPECT_EQ(f.out.records[0].type, static_cast<uint8_t>(RecordType::announce));
    EXPECT_EQ(f.out.records[0].flow_id, 7u);
    EXPECT_TRUE(f.out.events.empty());
}

TEST(FlowTrackerAnnounce, EndedFlowsAreNotAnnouncedClosingOnesAre) {
    Fixture f(16);
    const ParsedPacket idle = v4(17, a4(198, 18, 0, 1), 1, a4(198, 19, 0, 1), 2);
    const ParsedPacket closed = v4(6, a4(198, 18, 0, 2), 40000, a4(198, 19, 0, 2), 443, 0x02);
    const ParsedPacket lingering = v4(6, a4(198, 18, 0, 3), 40001, a4(198, 19, 0, 3), 443, 0x02);
    const ParsedPacket rst = v4(6, a4(198, 18, 0, 5), 40002, a4(198, 19, 0, 5), 443, 0x02);
    const ParsedPacket live = v4(17, a4(198, 19, 0, 4), 9, a4(198, 18, 0, 4), 8);  // reversed too

    f.send(idle, 1 * kSec);
    f.send(closed, 10 * kSec);
    f.send(v4(6, a4(198, 18, 0, 2), 40000, a4(198, 19, 0, 2), 443, 0x11), 10 * kSec + 1);  // FIN
    f.send(reply(closed, 0x11), 10 * kSec + 2);                                            // FIN back
    f.send(rst, 20 * kSec);
    f.send(reply(rst, 0x04), 20 * kSec + 1);  // RST at 20 s: ends at 22 s
    f.send(lingering, 61 * kSec);
    f.send(v4(6, a4(198, 18, 0, 3), 40001, a4(198, 19, 0, 3), 443, 0x11), 61 * kSec + 1);
    f.send(reply(lingering, 0x11), 61 * kSec + 2);  // closed at 61 s: linger until 63 s
    f.send(live, 61 * kSec + 500);
    const std::map<uint32_t, Record> original = starts_by_id(f.out.records);
    ASSERT_EQ(original.size(), 5u);

    // idle (1 s + 60 s), closed (10 s + 2 s linger) and rst end; their entries are retired, not
    // yet released (flow_end queued, not published).
    f.tracker->expire(62 * kSec);
    const std::vector<Record> ends = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(ends.size(), 3u);
    std::map<uint32_t, bool> ended;
    for (const Record& e : ends) ended[e.flow_id] = true;
    EXPECT_EQ(f.map.live(), 2u);

    f.out.records.clear();
    EXPECT_EQ(f.tracker->announce_all(2), 2u);
    ASSERT_EQ(f.out.records.size(), 3u);
    EXPECT_EQ(f.out.records[0].type, static_cast<uint8_t>(RecordType::announce));
    for (size_t i = 1; i < 3; ++i) {
        const Record& a = f.out.records[i];
        EXPECT_FALSE(ended.count(a.flow_id)) << "ended flow " << a.flow_id << " announced";
        ASSERT_TRUE(original.count(a.flow_id));
        expect_same_start(a, original.at(a.flow_id));
    }
    // The lingering TCP flow (closed, flow_end not yet emitted) and the live one.
    const uint32_t a1 = f.out.records[1].flow_id, a2 = f.out.records[2].flow_id;
    EXPECT_NE(a1, a2);
    bool saw_lingering = false, saw_live = false;
    for (uint32_t id : {a1, a2}) {
        const Record& o = original.at(id);
        if (o.start.src == lingering.src && o.start.sport == 40001) saw_lingering = true;
        if (o.start.src == live.src && o.start.sport == 9) saw_live = true;
    }
    EXPECT_TRUE(saw_lingering);
    EXPECT_TRUE(saw_live);

    // Released: the same.
    f.tracker->release_ended();
    f.out.records.clear();
    EXPECT_EQ(f.tracker->announce_all(3), 2u);
    // After the linger, the closing flow ends too.
    f.tracker->expire(63 * kSec + 2);
    f.tracker->release_ended();
    f.out.records.clear();
    EXPECT_EQ(f.tracker->announce_all(4), 1u);
    ASSERT_EQ(f.out.records.size(), 2u);
    EXPECT_EQ(f.out.records[1].start.src, live.src);
    // end_all: nothing left to announce.
    f.tracker->end_all(EndReason::shutdown);
    f.tracker->release_ended();
    f.out.records.clear();
    EXPECT_EQ(f.tracker->announce_all(5), 0u);
    EXPECT_EQ(f.out.records.size(), 1u);
}

TEST(FlowTrackerAnnounce, EvictedFlowIsNotAnnounced) {
    Fixture f(2);
    f.send(v4(17, a4(198, 18, 0, 1), 1, a4(198, 19, 0, 1), 2), 1 * kSec);
    f.send(v4(17, a4(198, 18, 0, 2), 1, a4(198, 19, 0, 2), 2), 2 * kSec);
    f.send(v4(17, a4(198, 19, 0, 3), 1, a4(198, 18, 0, 3), 2), 3 * kSec);  // evicts the first
    ASSERT_EQ(of_type(f.out.records, RecordType::flow_end).size(), 1u);
    const uint32_t evicted = of_type(f.out.records, RecordType::flow_end)[0].flow_id;
    const std::map<uint32_t, Record> original = starts_by_id(f.out.records);
    f.out.records.clear();
    EXPECT_EQ(f.tracker->announce_all(9), 2u);
    ASSERT_EQ(f.out.records.size(), 3u);
    for (size_t i = 1; i < 3; ++i) {
        EXPECT_NE(f.out.records[i].flow_id, evicted);
        expect_same_start(f.out.records[i], original.at(f.out.records[i].flow_id));
    }
}
