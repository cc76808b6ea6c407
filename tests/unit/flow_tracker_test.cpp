// procd's flow logic on a FlowMap in ordinary memory: the records it emits, their per-flow
// order, and how flows end (idle split, TCP close after linger, eviction, end of input), and
// that a batch repeated after a crash re-emits without counting twice.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "procd/flow_tracker.hpp"
#include "tests/unit/flow_tracker_fixture.hpp"

using namespace angel;
using namespace angel::flow_tracker_testing;

namespace {

ParsedPacket pkt(uint8_t proto, uint8_t a, uint16_t sport, uint8_t b, uint16_t dport, uint8_t flags = 0) {
    ParsedPacket p;
    p.ip_version = 4;
    p.proto = proto;
    p.src = {198, 18, 0, a};
    p.dst = {198, 19, 0, b};
    p.sport = sport;
    p.dport = dport;
    p.tcp_flags = flags;
    return p;
}
ParsedPacket reply(const ParsedPacket& p, uint8_t flags = 0) {
    ParsedPacket r = p;
    std::swap(r.src, r.dst);
    std::swap(r.sport, r.dport);
    r.tcp_flags = flags;
    return r;
}

std::vector<const Record*> of_type(const std::vector<Record>& v, RecordType t) {
    std::vector<const Record*> out;
    for (const Record& r : v)
        if (r.type == static_cast<uint8_t>(t)) out.push_back(&r);
    return out;
}

// For every flow ID: flow_start, then its packets, then flow_end (IDs may be reused later).
void expect_per_flow_order(const std::vector<Record>& v) {
    std::map<uint32_t, int> state;  // 0 none, 1 open
    for (const Record& r : v) {
        int& s = state[r.flow_id];
        switch (static_cast<RecordType>(r.type)) {
            case RecordType::flow_start: EXPECT_EQ(s, 0) << "start of an open flow " << r.flow_id; s = 1; break;
            case RecordType::packet: EXPECT_EQ(s, 1) << "packet outside its flow " << r.flow_id; break;
            case RecordType::flow_end: EXPECT_EQ(s, 1) << "end of a closed flow " << r.flow_id; s = 0; break;
            case RecordType::announce: ADD_FAILURE() << "announce record outside a takeover"; break;
            case RecordType::loss:
            case RecordType::watermark: ADD_FAILURE() << "the flow tracker makes no loss or watermark record"; break;
        }
    }
}

}  // namespace

TEST(FlowTracker, BothDirectionsAreOneFlowWithDirections) {
    Fixture f(16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    f.send(a, 1 * kSec, 80);
    f.send(reply(a), 1 * kSec + 1000, 120);
    f.send(a, 2 * kSec, 90);
    f.tracker->end_all(EndReason::end_of_input);
    auto pk = of_type(f.out.records, RecordType::packet);
    ASSERT_EQ(pk.size(), 3u);
    EXPECT_EQ(pk[0]->packet.dir, 0);
    EXPECT_EQ(pk[0]->packet.new_flow, 1);
    EXPECT_EQ(pk[1]->packet.dir, 1);
    EXPECT_EQ(pk[1]->packet.new_flow, 0);
    EXPECT_EQ(pk[2]->packet.dir, 0);
    // The packet index counts both directions from the flow's first packet.
    EXPECT_EQ(pk[0]->packet.index, 0u);
    EXPECT_EQ(pk[1]->packet.index, 1u);
    EXPECT_EQ(pk[2]->packet.index, 2u);
    auto st = of_type(f.out.records, RecordType::flow_start);
    ASSERT_EQ(st.size(), 1u);
    EXPECT_EQ(st[0]->start.sport, 5000);  // the tuple as the first packet saw it
    EXPECT_EQ(st[0]->start.dport, 53);
    auto en = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.packets[0], 2u);
    EXPECT_EQ(en[0]->end.packets[1], 1u);
    EXPECT_EQ(en[0]->end.bytes[0], 170u);
    EXPECT_EQ(en[0]->end.bytes[1], 120u);
    EXPECT_EQ(en[0]->end.reason, static_cast<uint8_t>(EndReason::end_of_input));
    EXPECT_EQ(en[0]->end.first_ns, 1 * kSec);
    EXPECT_EQ(en[0]->ts_ns, 2 * kSec);
    expect_per_flow_order(f.out.records);
    EXPECT_EQ(f.out.events.size(), 2u);  // start and end for the database
}

TEST(FlowTracker, PacketAfterIdleTimeoutEndsTheFlowAndStartsANewOne) {
    Fixture f(16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    f.send(a, 10 * kSec);
    f.send(a, 10 * kSec + 61 * kSec);  // idle 61 s > 60 s, no GC in between
    auto st = of_type(f.out.records, RecordType::flow_start);
    auto en = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(st.size(), 2u);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.reason, static_cast<uint8_t>(EndReason::idle));
    // end first, then start
    EXPECT_LT(en[0] - f.out.records.data(), st[1] - f.out.records.data());
    expect_per_flow_order(f.out.records);
}

TEST(FlowTracker, GcEndsIdleFlowsOldestFirstAndKeepsActiveOnes) {
    Fixture f(16);
    f.send(pkt(17, 1, 1, 2, 2), 1 * kSec);
    f.send(pkt(17, 3, 1, 4, 2), 30 * kSec);
    f.tracker->expire(62 * kSec);  // only the first is idle past 60 s
    f.tracker->release_ended();
    auto en = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.reason, static_cast<uint8_t>(EndReason::idle));
    EXPECT_EQ(f.map.live(), 1u);
}

TEST(FlowTracker, TcpCloseEndsAfterLingerAndALaterSegmentStartsANewFlow) {
    Fixture f(16);
    const ParsedPacket syn = pkt(6, 1, 40000, 2, 443, 0x02);
    f.send(syn, 1 * kSec);
    f.send(reply(syn, 0x12), 1 * kSec + 10);
    f.send(pkt(6, 1, 40000, 2, 443, 0x11), 2 * kSec);       // FIN from the client
    f.send(reply(syn, 0x11), 2 * kSec + 10);                 // FIN from the server: closed
    f.send(pkt(6, 1, 40000, 2, 443, 0x10), 2 * kSec + 20);   // last ACK, within the linger
    f.tracker->expire(3 * kSec);                             // linger (2 s) not over
    EXPECT_TRUE(of_type(f.out.records, RecordType::flow_end).empty());
    f.tracker->expire(4 * kSec + 20);
    f.tracker->release_ended();
    auto en = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.reason, static_cast<uint8_t>(EndReason::tcp_close));
    EXPECT_EQ(en[0]->end.packets[0] + en[0]->end.packets[1], 5u);
    f.send(syn, 5 * kSec);  // port reuse: a new flow
    EXPECT_EQ(of_type(f.out.records, RecordType::flow_start).size(), 2u);
    expect_per_flow_order(f.out.records);
}

TEST(FlowTracker, RstClosesWithoutWaitingForFins) {
    Fixture f(16);
    const ParsedPacket syn = pkt(6, 1, 40000, 2, 443, 0x02);
    f.send(syn, 1 * kSec);
    f.send(reply(syn, 0x04), 1 * kSec + 10);
    f.send(syn, 3 * kSec + 100);  // past the linger: the RST-closed flow ends, a new one starts
    auto en = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.reason, static_cast<uint8_t>(EndReason::tcp_close));
    expect_per_flow_order(f.out.records);
}

TEST(FlowTracker, FullMapEvictsTheLeastRecentlyActiveFlow) {
    Fixture f(4);
    for (uint8_t i = 1; i <= 4; ++i) f.send(pkt(17, i, 1, 100, 2), i * kSec);
    f.send(pkt(17, 1, 1, 100, 2), 5 * kSec);  // flow 1 is active again: flow 2 is the oldest now
    f.send(pkt(17, 9, 1, 100, 2), 6 * kSec);  // a fifth flow
    auto en = of_type(f.out.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.reason, static_cast<uint8_t>(EndReason::evicted));
    EXPECT_EQ(en[0]->end.first_ns, 2 * kSec);
    EXPECT_EQ(f.ctr[procd_flows_evicted].load(), 1u);
    EXPECT_EQ(f.map.live(), 4u);
    expect_per_flow_order(f.out.records);
}

// max_flows 60 in a map of 64 (4 spare), but only 10 entries could be given memory (a
// /dev/shm that filled up): the tracker evicts at 10 - 4 = 6 live flows, counts it, keeps
// every flow's records in order, and an evicted flow stays retired until the batch is
// published (what makes a batch repeatable after a crash), as at max_flows.
TEST(FlowTracker, MapThatCouldNotGrowEvictsAtItsReservedSize) {
    Mem mem(64);
    FlowMap::format(mem.mem.get(), 64, 10);
    FlowMap map(mem.mem.get());
    Collect out;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    FlowTracker t(map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, out, ctr, 60);
    uint64_t pos = 0;
    for (uint8_t i = 1; i <= 6; ++i) {
        t.packet(pkt(17, i, 1, 100, 2), i * kSec, 100, pos += 64);
        t.release_ended();
    }
    t.packet(pkt(17, 7, 1, 100, 2), 7 * kSec, 100, pos += 64);
    // Flow 1 was evicted; its entry stays held (ending) until the batch is published, so the
    // new flow took a fresh entry instead of reusing it.
    EXPECT_TRUE(map.entry(0).in_use && map.entry(0).ending);
    EXPECT_EQ(map.high_water(), 7u);
    t.release_ended();
    EXPECT_FALSE(map.entry(0).in_use);
    for (uint8_t i = 8; i <= 10; ++i) {
        t.packet(pkt(17, i, 1, 100, 2), i * kSec, 100, pos += 64);
        t.release_ended();
    }
    EXPECT_EQ(map.live(), 6u);
    EXPECT_EQ(ctr[procd_flows_evicted].load(), 4u);
    EXPECT_EQ(ctr[procd_flows_started].load(), 10u);
    auto en = of_type(out.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 4u);
    for (size_t i = 0; i < en.size(); ++i) {
        EXPECT_EQ(en[i]->end.reason, static_cast<uint8_t>(EndReason::evicted));
        EXPECT_EQ(en[i]->end.first_ns, (i + 1) * kSec);  // oldest first
    }
    EXPECT_EQ(of_type(out.records, RecordType::packet).size(), 10u);
    expect_per_flow_order(out.records);
}

TEST(FlowTracker, FlowIdsStayUniqueAmongLiveFlows) {
    Fixture f(4096);
    for (uint32_t i = 0; i < 3000; ++i) {
        ParsedPacket p = pkt(17, static_cast<uint8_t>(i), static_cast<uint16_t>(i), static_cast<uint8_t>(i >> 8), 9);
        f.send(p, kSec + i);
    }
    std::map<uint32_t, int> ids;
    for (const Record* r : of_type(f.out.records, RecordType::flow_start)) EXPECT_EQ(++ids[r->flow_id], 1);
    EXPECT_EQ(ids.size(), 3000u);
}

// Packet indexes across crashes: a stream of packets of a few flows (both directions, idle
// splits) in batches; the predecessor dies in the middle of a batch, its successor (other batch
// boundaries) dies in the middle of one of its own, and so on; the last runs to the end. Every packet
// record any of them emitted must carry the index the uncrashed run gave that packet, and the
// flow_end counts must be the uncrashed run's. The second successor dies while still repeating
// the first's batch, so the third repeats packets it never counted itself.
TEST(FlowTracker, PacketIndexesSurviveRepeatedBatchesExactly) {
    struct Pk {
        ParsedPacket p;
        uint64_t ts;
    };
    std::vector<Pk> pks;
    uint64_t seed = 12345;
    auto rnd = [&seed] { return (seed = seed * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
    for (int i = 0; i < 400; ++i) {
        const ParsedPacket a = pkt(17, uint8_t(1 + rnd() % 5), 5000, 9, 53);
        // Halfway every tuple pauses past the idle timeout: its flow ends, a new one starts.
        const uint64_t ts = uint64_t(i) * 1000 + (i >= 200 ? 100 * kSec : 0);
        pks.push_back({rnd() % 3 == 0 ? reply(a) : a, ts});
    }
    auto pos_of = [](size_t i) { return 64 * (i + 1); };
    // The uncrashed run: index of every packet, by timestamp (unique), and the flow_end totals.
    std::map<uint64_t, uint32_t> want;
    std::vector<uint64_t> want_ends;
    {
        Fixture f(64);
        for (size_t b = 0; b < pks.size(); b += 32) {
            for (size_t i = b; i < std::min(pks.size(), b + 32); ++i)
                f.tracker->packet(pks[i].p, pks[i].ts, 100, pos_of(i));
            f.tracker->release_ended();
        }
        f.tracker->end_all(EndReason::shutdown);
        for (const Record* r : of_type(f.out.records, RecordType::packet)) want[r->ts_ns] = r->packet.index;
        for (const Record* r : of_type(f.out.records, RecordType::flow_end))
            want_ends.push_back(r->end.packets[0] + r->end.packets[1]);
        ASSERT_EQ(want.size(), pks.size());
        EXPECT_EQ(want_ends.size(), 10u);  // five tuples, each split in two
    }
    Fixture f(64);
    std::vector<Record> all;
    size_t committed = 0;  // next packet after the last committed batch
    // Runs a tracker from `committed` in batches of `size`, killed after `die_after` packets.
    auto run = [&](size_t size, size_t die_after) {
        Collect out;
        std::atomic<uint64_t> ctr[kStageCounters]{};
        f.map.recover({&flow_bucket_hash, FlowIdKey{1, 2}});
        FlowTracker t(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, out, ctr, 64);
        std::vector<std::pair<ParsedPacket, uint64_t>> uncommitted;
        for (size_t i = committed; i < pks.size(); ++i) uncommitted.push_back({pks[i].p, pos_of(i)});
        plan_repeat(t, uncommitted);
        size_t done = 0;
        bool killed = false;
        for (size_t b = committed; b < pks.size() && !killed; b += size) {
            for (size_t i = b; i < std::min(pks.size(), b + size); ++i) {
                if (done++ == die_after) {
                    killed = true;
                    break;
                }
                t.packet(pks[i].p, pks[i].ts, 100, pos_of(i));
            }
            if (killed) break;
            t.flush_retired(UINT64_MAX);
            t.release_ended();
            committed = std::min(pks.size(), b + size);
        }
        if (!killed) t.end_all(EndReason::shutdown);
        all.insert(all.end(), out.records.begin(), out.records.end());
        return ctr[procd_repeated].load();
    };
    run(32, 32 * 3 + 20);                 // counts packets 0..115, dies in its 4th batch
    EXPECT_GT(run(8, 8 * 2 + 3), 0u);     // repeats 96..114 in small batches, dies (112 uncommitted)
    EXPECT_GT(run(50, 50 + 45), 0u);      // repeats 112..115, counts on, dies in its 2nd batch
    EXPECT_GT(run(17, SIZE_MAX), 0u);     // repeats again, then to the end
    size_t packets = 0;
    std::vector<uint64_t> ends;
    for (const Record& r : all) {
        if (r.type == static_cast<uint8_t>(RecordType::packet)) {
            ++packets;
            ASSERT_TRUE(want.count(r.ts_ns));
            EXPECT_EQ(r.packet.index, want[r.ts_ns]) << "packet at ts " << r.ts_ns;
        } else if (r.type == static_cast<uint8_t>(RecordType::flow_end)) {
            ends.push_back(r.end.packets[0] + r.end.packets[1]);
        }
    }
    EXPECT_GT(packets, pks.size());  // the repeats are there, with the same indexes
    std::sort(ends.begin(), ends.end());
    std::sort(want_ends.begin(), want_ends.end());
    ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
    want_ends.erase(std::unique(want_ends.begin(), want_ends.end()), want_ends.end());
    EXPECT_EQ(ends, want_ends);
}

// The index is the number of packets counted before, kept modulo 2^32.
TEST(FlowTracker, PacketIndexWrapsModulo2To32) {
    Fixture f(16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    f.send(a, 1 * kSec);
    FlowEntry* e = f.map.find(make_flow_key(a, nullptr), flow_bucket_hash(make_flow_key(a, nullptr), FlowIdKey{1, 2}));
    ASSERT_NE(e, nullptr);
    e->packets[0] = 0xFFFFFFFFull;  // as if 2^32 - 1 packets had been counted
    f.send(a, 1 * kSec + 1);
    f.send(reply(a), 1 * kSec + 2);
    auto pk = of_type(f.out.records, RecordType::packet);
    ASSERT_EQ(pk.size(), 3u);
    EXPECT_EQ(pk[0]->packet.index, 0u);
    EXPECT_EQ(pk[1]->packet.index, 0xFFFFFFFFu);
    EXPECT_EQ(pk[2]->packet.index, 0u);  // 2^32 mod 2^32
    f.tracker->end_all(EndReason::shutdown);
    EXPECT_EQ(of_type(f.out.records, RecordType::flow_end)[0]->end.packets[0], 0x100000000ull);
}

// A procd killed mid-batch: its successor sees the same packets again at the same ring
// positions. Records come again (duplicates within the batch are allowed), counters do not.
TEST(FlowTracker, RepeatedBatchReemitsWithoutCountingTwice) {
    Fixture f(16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    f.tracker->packet(a, 1 * kSec, 100, 64);
    f.tracker->packet(reply(a), 1 * kSec + 5, 200, 128);
    // "Crash": a new tracker over the same map, the same two packets again.
    Collect again;
    std::atomic<uint64_t> ctr2[kStageCounters]{};
    f.map.recover({&flow_bucket_hash, FlowIdKey{1, 2}});
    FlowTracker t2(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, again, ctr2, 16);
    plan_repeat(t2, {{a, 64}, {reply(a), 128}, {a, 192}});
    EXPECT_FALSE(t2.packet(a, 1 * kSec, 100, 64));
    EXPECT_FALSE(t2.packet(reply(a), 1 * kSec + 5, 200, 128));
    EXPECT_TRUE(t2.packet(a, 1 * kSec + 9, 50, 192));  // new
    ASSERT_EQ(again.records.size(), 4u);  // start (re-emitted), packet, packet, packet
    EXPECT_EQ(again.records[0].type, static_cast<uint8_t>(RecordType::flow_start));
    EXPECT_EQ(again.records[1].packet.index, 0u);  // the repeats keep their indexes
    EXPECT_EQ(again.records[2].packet.index, 1u);
    EXPECT_EQ(again.records[3].packet.index, 2u);
    EXPECT_EQ(ctr2[procd_repeated].load(), 2u);
    t2.end_all(EndReason::shutdown);
    auto en = of_type(again.records, RecordType::flow_end);
    ASSERT_EQ(en.size(), 1u);
    EXPECT_EQ(en[0]->end.packets[0], 2u);  // 100 + 50, not counted twice
    EXPECT_EQ(en[0]->end.bytes[0], 150u);
    EXPECT_EQ(en[0]->end.packets[1], 1u);
    expect_per_flow_order(again.records);
}

// The same across a 2^32 boundary of ring positions (an earlier layout kept only 32 bits of
// them per flow): a batch whose positions cross it is repeated just as exactly. Two batches
// before the crash (the first committed), then a successor repeating the second.
TEST(FlowTracker, RepeatedBatchAcrossA2To32PositionBoundaryIsExact) {
    Fixture f(16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    const ParsedPacket b = pkt(17, 3, 5000, 4, 53);
    const uint64_t second = (uint64_t{7} << 32) - 64;  // low bits wrap inside the second batch
    const uint64_t base = second - 5 * 64;
    for (uint64_t i = 0; i < 5; ++i)  // a twice, b three times
        f.tracker->packet(i < 2 ? a : b, 1 * kSec - 10 + i, 100, base + 64 * i);
    f.tracker->release_ended();  // committed
    f.tracker->packet(b, 1 * kSec + 2, 100, second);        // b's first packet in the batch, index 3
    f.tracker->packet(a, 1 * kSec + 3, 100, second + 64);   // low 32 bits 0: past the boundary
    f.tracker->packet(a, 1 * kSec + 4, 100, second + 128);
    f.tracker->packet(b, 1 * kSec + 5, 100, second + 192);
    f.map.recover({&flow_bucket_hash, FlowIdKey{1, 2}});  // killed before publishing the second batch
    Collect again;
    std::atomic<uint64_t> ctr2[kStageCounters]{};
    FlowTracker t2(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, again, ctr2, 16);
    plan_repeat(t2, {{b, second}, {a, second + 64}, {a, second + 128}, {b, second + 192}});
    EXPECT_FALSE(t2.packet(b, 1 * kSec + 2, 100, second));
    EXPECT_FALSE(t2.packet(a, 1 * kSec + 3, 100, second + 64));
    EXPECT_FALSE(t2.packet(a, 1 * kSec + 4, 100, second + 128));
    EXPECT_FALSE(t2.packet(b, 1 * kSec + 5, 100, second + 192));
    EXPECT_TRUE(t2.packet(a, 1 * kSec + 6, 100, second + 256));  // new
    auto pk = of_type(again.records, RecordType::packet);
    ASSERT_EQ(pk.size(), 5u);
    EXPECT_EQ(again.records.size(), 5u);  // no flow_start: both flows began in the committed batch
    const uint32_t want[] = {3, 2, 3, 4, 4};  // as first emitted, then a's next
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(pk[i]->packet.index, want[i]) << "packet " << i;
    EXPECT_EQ(ctr2[procd_repeated].load(), 4u);
    t2.end_all(EndReason::shutdown);
    uint64_t total = 0;
    for (const Record* r : of_type(again.records, RecordType::flow_end)) total += r->end.packets[0] + r->end.packets[1];
    EXPECT_EQ(total, 10u);  // 9 before the crash, 1 after: none counted twice
}

// A flow ended in the batch that was in flight is re-ended by the successor.
TEST(FlowTracker, RetiredFlowsAreEndedAgainAfterACrash) {
    Fixture f(16);
    f.tracker->packet(pkt(17, 1, 1, 2, 2), 1 * kSec, 100, 64);
    f.tracker->expire(100 * kSec);  // ends it; "crash" before release_ended()
    f.map.recover({&flow_bucket_hash, FlowIdKey{1, 2}});
    Collect again;
    std::atomic<uint64_t> ctr2[kStageCounters]{};
    FlowTracker t2(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, again, ctr2, 16);
    EXPECT_TRUE(again.records.empty());  // not before the repeated batch has passed its packets
    t2.flush_retired(UINT64_MAX);
    ASSERT_EQ(again.records.size(), 1u);
    EXPECT_EQ(again.records[0].type, static_cast<uint8_t>(RecordType::flow_end));
    EXPECT_EQ(again.records[0].end.reason, static_cast<uint8_t>(EndReason::idle));
    t2.release_ended();
    EXPECT_EQ(f.map.live(), 0u);
}

namespace {

// Runs the packets through one tracker ("the predecessor", killed before release_ended and
// before its records were published), then through a successor over the same map, and
// returns the successor's records.
struct CrashReplay {
    explicit CrashReplay(uint32_t capacity, uint32_t max_flows) : f(capacity) { max = max_flows; }
    Fixture f;
    uint32_t max;
    std::vector<std::pair<ParsedPacket, uint64_t>> batch;
    Collect again;
    std::atomic<uint64_t> ctr2[kStageCounters]{};
    std::unique_ptr<FlowTracker> t2;
    void add(const ParsedPacket& p, uint64_t ts) { batch.push_back({p, ts}); }
    void run_predecessor() {
        f.tracker = std::make_unique<FlowTracker>(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, f.out,
                                                  f.ctr, max);
        uint64_t pos = 1000;
        for (auto& [p, ts] : batch) f.tracker->packet(p, ts, 100, pos += 64);
    }
    void run_successor() {
        f.map.recover({&flow_bucket_hash, FlowIdKey{1, 2}});
        t2 = std::make_unique<FlowTracker>(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, again, ctr2, max);
        std::vector<std::pair<ParsedPacket, uint64_t>> repeated;
        uint64_t pos = 1000;
        for (auto& [p, ts] : batch) repeated.push_back({p, pos += 64});
        plan_repeat(*t2, repeated);
        pos = 1000;
        for (auto& [p, ts] : batch) t2->packet(p, ts, 100, pos += 64);
        t2->flush_retired(UINT64_MAX);
        t2->release_ended();
    }
};

}  // namespace

// One batch holds a packet of flow X and, past X's idle timeout, a packet of the same tuple
// (X ends, X' starts). Killed before publishing: the successor must reproduce exactly that.
TEST(FlowTracker, CrashAfterAnIdleSplitInTheBatchIsRepeatedExactly) {
    CrashReplay c(16, 16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    c.f.send(a, 1 * kSec);  // X exists from an earlier, committed batch
    c.add(a, 10 * kSec);
    c.add(a, 100 * kSec);
    c.run_predecessor();
    c.run_successor();
    c.t2->end_all(EndReason::shutdown);
    // The successor's stream (X's flow_start was published before the lost batch): pkt(X), end(X), start(X'), pkt(X'), end(X')
    ASSERT_EQ(c.again.records.size(), 5u);
    EXPECT_EQ(c.again.records[0].type, static_cast<uint8_t>(RecordType::packet));
    EXPECT_EQ(c.again.records[1].type, static_cast<uint8_t>(RecordType::flow_end));
    EXPECT_EQ(c.again.records[1].end.packets[0], 2u);  // X: the committed packet and the t=10 one
    EXPECT_EQ(c.again.records[0].flow_id, c.again.records[1].flow_id);
    EXPECT_EQ(c.again.records[2].type, static_cast<uint8_t>(RecordType::flow_start));
    EXPECT_EQ(c.again.records[4].type, static_cast<uint8_t>(RecordType::flow_end));
    EXPECT_EQ(c.again.records[4].end.packets[0], 1u);  // X': only the t=100 packet
    EXPECT_EQ(c.ctr2[procd_repeated].load(), 2u);
    EXPECT_EQ(c.again.records[0].packet.index, 1u);  // X's second packet, as first emitted
    EXPECT_EQ(c.again.records[3].packet.index, 0u);  // X' counts from 0
}

// Three lives of one tuple in the lost batch (the first begun in a committed batch, the second
// begun and ended in the lost one, the third begun there and live), with another tuple's
// packets between them: the successor works out each packet's flow and index from the counters
// alone (FlowTracker::plan_repeat), so per flow its records must be the predecessor's.
TEST(FlowTracker, RepeatOfThreeLivesOfATupleEqualsTheFirstRun) {
    CrashReplay c(16, 16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    const ParsedPacket b = pkt(6, 3, 4000, 4, 80);
    c.f.send(a, 1 * kSec);  // committed: a's first life, one packet
    c.f.send(b, 1 * kSec + 1);
    const size_t committed = c.f.out.records.size();
    c.add(a, 10 * kSec);
    c.add(reply(b), 10 * kSec + 1);
    c.add(a, 100 * kSec);        // past the idle timeout: a's first life ends, the second begins
    c.add(reply(a), 100 * kSec + 5);
    c.add(b, 100 * kSec + 6);    // b also past its idle timeout: its second life
    c.add(a, 200 * kSec);        // a's third life
    c.add(a, 200 * kSec + 1);
    c.run_predecessor();
    const std::vector<Record> first(c.f.out.records.begin() + static_cast<std::ptrdiff_t>(committed),
                                    c.f.out.records.end());
    c.run_successor();
    // Per flow ID the same records in the same order (a retired flow's flow_end comes again
    // as soon as the repeat has passed its last packet, so across flows the order may differ).
    auto by_flow = [](const std::vector<Record>& rs) {
        std::map<uint32_t, std::vector<std::vector<uint64_t>>> m;
        for (const Record& r : rs) {
            std::vector<uint64_t> v{r.type, r.ts_ns};
            if (r.type == static_cast<uint8_t>(RecordType::packet))
                v.insert(v.end(), {r.packet.index, r.packet.dir, r.packet.new_flow});
            if (r.type == static_cast<uint8_t>(RecordType::flow_end))
                v.insert(v.end(), {r.end.packets[0], r.end.packets[1], r.end.reason});
            m[r.flow_id].push_back(v);
        }
        return m;
    };
    EXPECT_EQ(by_flow(c.again.records), by_flow(first));
    EXPECT_EQ(c.again.records.size(), first.size());
    EXPECT_EQ(by_flow(first).size(), 5u);  // a: three lives, b: two
    // 7 repeated packets, each counted once: a's lives 2, 2 and 2 packets, b's 2 and 1.
    EXPECT_EQ(c.ctr2[procd_repeated].load(), 7u);
    EXPECT_EQ(c.ctr2[procd_ip_packets].load(), 0u);
    EXPECT_EQ(c.ctr2[procd_flows_started].load(), 0u);
}

// A full FlowMap: the lost batch evicted flows. The successor must not evict again (no
// cascade), must not start a flow twice, and must end exactly the flows the predecessor did.
TEST(FlowTracker, CrashAfterEvictionsInTheBatchDoesNotCascade) {
    CrashReplay c(16 + 8, 4);  // evict at 4 live flows; spare entries beyond
    for (uint8_t i = 1; i <= 4; ++i) c.f.send(pkt(17, i, 1, 100, 2), i * kSec);  // committed
    for (uint8_t i = 5; i <= 7; ++i) c.add(pkt(17, i, 1, 100, 2), i * kSec);     // 3 evictions
    c.run_predecessor();
    const uint64_t evicted_before = c.f.ctr[procd_flows_evicted].load();
    EXPECT_EQ(evicted_before, 3u);
    c.run_successor();
    EXPECT_EQ(c.ctr2[procd_flows_evicted].load(), 0u) << "the successor evicted again";
    EXPECT_EQ(c.ctr2[procd_flows_started].load(), 0u) << "the successor started flows again";
    size_t ends = 0, starts = 0;
    for (const Record& r : c.again.records) {
        ends += r.type == static_cast<uint8_t>(RecordType::flow_end);
        starts += r.type == static_cast<uint8_t>(RecordType::flow_start);
    }
    EXPECT_EQ(ends, 3u);    // the three evicted flows, re-ended
    EXPECT_EQ(starts, 3u);  // the three new flows, re-started
    EXPECT_EQ(c.f.map.live(), 4u);
}

// Killed after a flow was inserted but before its packet was counted (e.g. blocked emitting
// its flow_start on a full ring): the successor must emit flow_start and count the packet once.
TEST(FlowTracker, CrashBetweenInsertAndCountingStartsTheFlowProperly) {
    Fixture f(16);
    const ParsedPacket a = pkt(17, 1, 5000, 2, 53);
    bool rev = false;
    const FlowKey k = make_flow_key(a, &rev);
    ASSERT_NE(f.map.insert(k, flow_bucket_hash(k, FlowIdKey{1, 2}), flow_id_hash(k, FlowIdKey{1, 2}), kSec, rev),
              nullptr);
    f.map.recover({&flow_bucket_hash, FlowIdKey{1, 2}});
    Collect again;
    std::atomic<uint64_t> ctr2[kStageCounters]{};
    FlowTracker t2(f.map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, again, ctr2, 16);
    EXPECT_TRUE(t2.packet(a, kSec, 100, 640));
    t2.end_all(EndReason::shutdown);
    ASSERT_EQ(again.records.size(), 3u);
    EXPECT_EQ(again.records[0].type, static_cast<uint8_t>(RecordType::flow_start));
    EXPECT_EQ(again.records[1].packet.new_flow, 1);
    EXPECT_EQ(again.records[2].end.packets[0], 1u);
}

// Short TCP flows that close and are then evicted leave stale items in the closing queue;
// once it is full it is compacted, and a flow that is still closing keeps its place.
TEST(FlowTracker, ClosingQueueCompactsAndKeepsLiveClosingFlows) {
    Fixture f(4);  // 4 entries: the closing queue holds 8 items
    uint64_t t = 1 * kSec;
    for (uint8_t i = 1; i <= 30; ++i) {
        const ParsedPacket syn = pkt(6, i, 40000, 2, 443, 0x02);
        f.send(syn, t += 1000);
        f.send(pkt(6, i, 40000, 2, 443, 0x11), t += 1000);  // FIN
        f.send(reply(syn, 0x11), t += 1000);                 // FIN back: closing
    }
    // Flows 27..30 are still live and closing; the rest were evicted on the way.
    f.tracker->expire(t + 3 * kSec);
    f.tracker->release_ended();
    size_t tcp_close = 0, evicted = 0;
    for (const Record* r : of_type(f.out.records, RecordType::flow_end)) {
        tcp_close += r->end.reason == static_cast<uint8_t>(EndReason::tcp_close);
        evicted += r->end.reason == static_cast<uint8_t>(EndReason::evicted);
    }
    EXPECT_EQ(evicted, 26u);
    EXPECT_EQ(tcp_close, 4u);
    EXPECT_EQ(f.map.live(), 0u);
    expect_per_flow_order(f.out.records);
}
