// netd's replay window (netd/replay_window.*): what a backup keeps of its record stream, read
// back by ring position. The ring here is a private one laid out like the segment's.
#include <gtest/gtest.h>

#include <vector>

#include "netd/replay_window.hpp"

using namespace angel;

namespace {

constexpr uint64_t kS = 1'000'000'000ull;

struct Stream {
    explicit Stream(uint64_t cap) : slots(cap) {
        ctl.capacity = cap;
        ring = RecordRing<Record>(&ctl, slots.data());
    }
    void packet(uint64_t ts) {
        Record r{};
        r.type = static_cast<uint8_t>(RecordType::packet);
        r.ts_ns = ts;
        push(r);
    }
    void flow_end(uint64_t last_ns) {
        Record r{};
        r.type = static_cast<uint8_t>(RecordType::flow_end);
        r.ts_ns = last_ns;  // the flow's last packet: can be far older than the record
        push(r);
    }
    void push(const Record& r) {
        ASSERT_TRUE(ring.push(r));
        ring.publish();
    }
    // netd's read: everything published, observed by the window.
    void read_all(ReplayWindow& w) {
        const Record* recs = nullptr;
        while (size_t n = ring.peek(&recs, 64)) {
            for (size_t i = 0; i < n; ++i) w.observe(recs[i]);
            ring.advance(n);
        }
    }
    RingControl ctl{};
    std::vector<Record> slots;
    RecordRing<Record> ring;
};

}  // namespace

TEST(ReplayWindow, KeepsTheLastWindowOfPacketTime) {
    Stream s(64);
    ReplayWindow w;
    w.start(s.ring.read_pos());
    for (uint64_t t = 0; t <= 10; ++t) s.packet(100 * kS + t * kS);  // positions 0..10
    s.read_all(w);
    const auto r = w.release(s.ring, s.ring.read_pos(), 3 * kS, 48, false);
    // newest 110 s, window 3 s: packets at 107..110 s stay (cutoff 107 is inside).
    EXPECT_EQ(w.begin(), 7u);
    EXPECT_EQ(r.aged, 7u);
    EXPECT_EQ(r.trimmed, 0u);
    EXPECT_EQ(s.ring.at(w.begin()).ts_ns, 107 * kS);
    // Nothing more to age until newer packets come.
    EXPECT_EQ(w.release(s.ring, s.ring.read_pos(), 3 * kS, 48, false).aged, 0u);
    s.packet(112 * kS);
    s.read_all(w);
    EXPECT_EQ(w.release(s.ring, s.ring.read_pos(), 3 * kS, 48, false).aged, 2u);  // 107, 108 out
    EXPECT_EQ(w.begin(), 9u);
}

TEST(ReplayWindow, AFlowEndLeavesWithThePacketsAroundItNotByItsOwnTime) {
    Stream s(64);
    ReplayWindow w;
    w.start(0);
    s.packet(100 * kS);   // 0
    s.flow_end(40 * kS);  // 1: an idle flow's end, written now, stamped with its last packet
    s.packet(109 * kS);   // 2
    s.flow_end(45 * kS);  // 3: written after the newest packet: must stay
    s.read_all(w);
    w.release(s.ring, s.ring.read_pos(), 5 * kS, 48, false);
    // Cutoff 104 s: packet 0 leaves, and the flow_end after it up to the next packet inside.
    EXPECT_EQ(w.begin(), 1u);  // the flow_end at 1 is not older than a packet inside: it stays
    s.packet(115 * kS);   // 4
    s.read_all(w);
    w.release(s.ring, s.ring.read_pos(), 5 * kS, 48, false);
    // Cutoff 110 s: packet 2 leaves, with the flow_end before it; the one after it (3) was
    // written after packet 2 and before packet 4 and leaves only with a later packet.
    EXPECT_EQ(w.begin(), 3u);
    EXPECT_EQ(s.ring.at(3).type, static_cast<uint8_t>(RecordType::flow_end));
}

TEST(ReplayWindow, FrozenFromTakeoverKeepsEverythingUpToTheBound) {
    Stream s(64);
    ReplayWindow w;
    w.start(0);
    for (uint64_t t = 0; t < 40; ++t) s.packet(t * kS);
    s.read_all(w);
    auto r = w.release(s.ring, s.ring.read_pos(), 3 * kS, 48, /*frozen=*/true);
    EXPECT_EQ(r.aged, 0u);
    EXPECT_EQ(w.begin(), 0u);
    for (uint64_t t = 40; t < 60; ++t) s.packet(t * kS);  // 60 > the bound of 48
    // (the ring holds 64: the producer could push all 60 before the window is trimmed)
    s.read_all(w);
    r = w.release(s.ring, s.ring.read_pos(), 3 * kS, 48, true);
    EXPECT_EQ(r.aged, 0u);
    EXPECT_EQ(r.trimmed, 12u);
    EXPECT_EQ(r.trimmed_packets, 12u);
    EXPECT_EQ(r.trimmed_first_ns, 0u);
    EXPECT_EQ(r.trimmed_last_ns, 11 * kS);
    EXPECT_EQ(w.begin(), 12u);
}

TEST(ReplayWindow, ZeroWindowKeepsNothing) {
    Stream s(64);
    ReplayWindow w;
    w.start(0);
    for (uint64_t t = 0; t < 5; ++t) s.packet(t * kS);
    s.read_all(w);
    const auto r = w.release(s.ring, s.ring.read_pos(), 0, 48, true);
    EXPECT_EQ(r.aged, 5u);
    EXPECT_EQ(w.begin(), 5u);
}

TEST(RecordRing, RewindReadsAgainWhatIsNotCommitted) {
    Stream s(16);
    for (uint64_t t = 0; t < 6; ++t) s.packet(t);
    const Record* recs = nullptr;
    ASSERT_EQ(s.ring.peek(&recs, 16), 6u);
    s.ring.advance(6);
    s.ring.commit_to(2);
    s.ring.rewind_to(1);  // before the commit: refused
    EXPECT_EQ(s.ring.read_pos(), 6u);
    s.ring.rewind_to(3);
    EXPECT_EQ(s.ring.read_pos(), 3u);
    ASSERT_EQ(s.ring.peek(&recs, 16), 3u);
    EXPECT_EQ(recs[0].ts_ns, 3u);
    EXPECT_EQ(s.ring.at(5).ts_ns, 5u);
}
