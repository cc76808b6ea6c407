// The sink's live-flow table (tools/sink/flow_table.*) against std::unordered_map: long random
// sequences of insert/find/erase with IDs reused after erase, growth, clusters that wrap around
// the end of the slot array and backward-shift deletion; plus hand-built shift cases checked
// slot by slot. Every entry's counters and cold part must follow it through every move.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <unordered_map>
#include <vector>

#include "tools/sink/flow_table.hpp"

namespace angel::sink {
namespace {

struct Ref {
    uint64_t packets, bytes;
    uint16_t sport;  // stands for the cold part
};

// An ID whose probe starts at slot want (searched upwards from *next, which moves past it).
uint32_t id_with_home(const FlowTable& t, size_t want, uint32_t* next) {
    for (;; ++*next)
        if (t.home(*next) == want) return (*next)++;
}

// The table holds exactly the reference's entries, with the same values.
void expect_same(const FlowTable& t, const std::unordered_map<uint32_t, Ref>& ref) {
    ASSERT_TRUE(t.check_invariants());
    ASSERT_EQ(t.size(), ref.size());
    size_t seen = 0;
    t.for_each([&](const FlowTable::Slot& s, const FlowCold& c) {
        ++seen;
        const auto it = ref.find(s.id);
        ASSERT_NE(it, ref.end()) << s.id;
        EXPECT_EQ(s.packets, it->second.packets) << s.id;
        EXPECT_EQ(s.bytes, it->second.bytes) << s.id;
        EXPECT_EQ(c.start.sport, it->second.sport) << s.id;
        EXPECT_EQ(c.start.flow_id, s.id);
    });
    EXPECT_EQ(seen, ref.size());
    for (const auto& [id, r] : ref) {
        const FlowTable::Slot* s = t.find(id);
        ASSERT_NE(s, nullptr) << id;
        EXPECT_EQ(s->id, id);
    }
}

FlowTable::Slot& add(FlowTable& t, uint32_t id, uint16_t sport, bool* inserted) {
    FlowTable::Slot* p = t.insert(id, inserted);
    if (!p) {  // these tables stay far below their bound
        ADD_FAILURE() << "table full at " << t.size();
        std::abort();
    }
    FlowTable::Slot& s = *p;
    if (*inserted) {
        // A new entry starts from zero, even when it reuses an erased flow's cold part.
        EXPECT_EQ(s.packets, 0u);
        EXPECT_EQ(s.bytes, 0u);
        EXPECT_EQ(t.cold(s).start.flow_id, 0u);
        EXPECT_EQ(t.cold(s).start.sport, 0u);
        EXPECT_EQ(t.cold(s).order, 0u);
        t.cold(s).start.flow_id = id;
        t.cold(s).start.sport = sport;
    }
    return s;
}

// Random operations on a small ID pool (so IDs come back soon after their erase), starting from
// the smallest table (so it doubles several times), checked against the reference after every
// operation. The pool is biased towards IDs whose probes start in the last slots, so clusters
// wrap around the end of the array; the test also checks that wrap-around and backward shifts
// really happened.
void random_run(uint32_t seed, size_t ops, size_t pool_size) {
    std::mt19937 rng(seed);
    FlowTable t(16);
    std::unordered_map<uint32_t, Ref> ref;
    std::vector<uint32_t> pool;
    uint32_t next = seed * 7919u;
    for (size_t i = 0; i < pool_size; ++i) {
        if (i % 4 == 0) {  // ends near the end of the array at every capacity up to 1024 slots
            const size_t cap = size_t(16) << (i / 4 % 7);
            pool.push_back(id_with_home(FlowTable(cap), cap - 1 - rng() % 3, &next));
        } else {
            pool.push_back(uint32_t(rng()));
        }
    }
    size_t wrapped = 0, shifted = 0, grown = 0, reused = 0;
    std::unordered_map<uint32_t, bool> erased_once;
    for (size_t op = 0; op < ops; ++op) {
        const uint32_t id = pool[rng() % pool.size()];
        const unsigned what = rng() % 10;
        if (what < 4) {  // insert (a flow_start)
            const size_t cap = t.capacity();
            bool inserted = false;
            FlowTable::Slot& s = add(t, id, uint16_t(rng()), &inserted);
            ASSERT_EQ(inserted, !ref.count(id)) << id;
            if (inserted) {
                ref[id] = {0, 0, t.cold(s).start.sport};
                if (erased_once.count(id)) ++reused;
            }
            EXPECT_EQ(s.packets, ref[id].packets);
            if (t.capacity() != cap) ++grown;
        } else if (what < 8) {  // find and count (a packet record)
            FlowTable::Slot* s = t.find(id);
            ASSERT_EQ(s != nullptr, ref.count(id) == 1) << id;
            if (s) {
                const uint32_t len = 40 + rng() % 1500;
                ++s->packets;
                s->bytes += len;
                ++ref[id].packets;
                ref[id].bytes += len;
                if (t.index_of(s) < t.home(id)) ++wrapped;
            }
        } else {  // erase (a flow_end)
            std::vector<std::pair<uint32_t, size_t>> before;
            t.for_each([&](const FlowTable::Slot& s, const FlowCold&) {
                before.push_back({s.id, t.index_of(&s)});
            });
            const bool had = ref.erase(id) == 1;
            ASSERT_EQ(t.erase(id), had) << id;
            if (had) erased_once[id] = true;
            for (const auto& [other, at] : before)
                if (other != id && t.index_of(t.find(other)) != at) ++shifted;
        }
        expect_same(t, ref);
        if (::testing::Test::HasFatalFailure()) return;
    }
    // The run must have exercised what it is meant to test.
    EXPECT_GT(wrapped, 0u);
    EXPECT_GT(shifted, 0u);
    EXPECT_GT(grown, 0u);
    EXPECT_GT(reused, 0u);
}

TEST(SinkFlowTable, RandomAgainstUnorderedMapSmallPool) { random_run(1, 20000, 40); }
TEST(SinkFlowTable, RandomAgainstUnorderedMapLargerPool) { random_run(2, 20000, 400); }

// Many flows, fast: growth to 128k slots, erase of half, reuse, everything still found.
TEST(SinkFlowTable, ManyFlowsGrowEraseReuse) {
    FlowTable t(16);
    std::unordered_map<uint32_t, Ref> ref;
    std::mt19937 rng(3);
    std::vector<uint32_t> ids;
    for (int i = 0; i < 60000; ++i) {
        uint32_t id;
        do id = uint32_t(rng());
        while (ref.count(id));
        bool inserted = false;
        FlowTable::Slot& s = add(t, id, uint16_t(i), &inserted);
        ASSERT_TRUE(inserted);
        s.packets = uint64_t(i);
        s.bytes = uint64_t(i) * 3;
        ref[id] = {uint64_t(i), uint64_t(i) * 3, uint16_t(i)};
        ids.push_back(id);
    }
    EXPECT_EQ(t.capacity(), size_t(1) << 17);
    for (size_t i = 0; i < ids.size(); i += 2) {
        ASSERT_TRUE(t.erase(ids[i]));
        ref.erase(ids[i]);
    }
    for (size_t i = 0; i < ids.size(); i += 4) {  // half of the erased IDs come back
        bool inserted = false;
        add(t, ids[i], 7, &inserted);
        ASSERT_TRUE(inserted);
        ref[ids[i]] = {0, 0, 7};
    }
    expect_same(t, ref);
}

// 0 and all-ones are IDs like any other (emptiness is marked apart from the ID).
TEST(SinkFlowTable, ExtremeIds) {
    FlowTable t;
    EXPECT_EQ(t.find(0), nullptr);
    bool ins = false;
    add(t, 0, 1, &ins).packets = 5;
    add(t, 0xFFFFFFFFu, 2, &ins).packets = 6;
    ASSERT_NE(t.find(0), nullptr);
    EXPECT_EQ(t.find(0)->packets, 5u);
    EXPECT_EQ(t.find(0xFFFFFFFFu)->packets, 6u);
    EXPECT_TRUE(t.erase(0));
    EXPECT_EQ(t.find(0), nullptr);
    EXPECT_FALSE(t.erase(0));
    EXPECT_EQ(t.find(0xFFFFFFFFu)->packets, 6u);
    EXPECT_EQ(t.size(), 1u);
}

// A cluster that wraps: A and B start at the last slot, C at slot 0, D at slot 1. Erasing A
// must pull B back to the last slot, then C and D back across the end of the array.
TEST(SinkFlowTable, BackwardShiftAcrossTheEnd) {
    FlowTable t(16);
    const size_t last = t.capacity() - 1;
    uint32_t next = 1;
    const uint32_t a = id_with_home(t, last, &next), b = id_with_home(t, last, &next);
    const uint32_t c = id_with_home(t, 0, &next), d = id_with_home(t, 1, &next);
    const uint32_t e = id_with_home(t, 3, &next);  // after the gap at slot 2: must not move
    bool ins = false;
    for (uint32_t id : {a, b, c, d, e}) add(t, id, uint16_t(id), &ins);
    EXPECT_EQ(t.index_of(t.find(a)), last);
    EXPECT_EQ(t.index_of(t.find(b)), 0u);
    EXPECT_EQ(t.index_of(t.find(c)), 1u);
    EXPECT_EQ(t.index_of(t.find(d)), 2u);
    EXPECT_EQ(t.index_of(t.find(e)), 3u);

    ASSERT_TRUE(t.erase(a));
    EXPECT_EQ(t.find(a), nullptr);
    EXPECT_EQ(t.index_of(t.find(b)), last);
    EXPECT_EQ(t.index_of(t.find(c)), 0u);
    EXPECT_EQ(t.index_of(t.find(d)), 1u);
    EXPECT_EQ(t.index_of(t.find(e)), 3u);
    EXPECT_TRUE(t.check_invariants());
    for (uint32_t id : {b, c, d, e}) EXPECT_EQ(t.cold(*t.find(id)).start.sport, uint16_t(id));

    // An entry at its home stays even when a hole opens before it: erase b, c stays at 0.
    ASSERT_TRUE(t.erase(b));
    EXPECT_EQ(t.index_of(t.find(c)), 0u);
    EXPECT_EQ(t.index_of(t.find(d)), 1u);
    // The ID comes back (reuse after its flow ended) and lands at its home again.
    add(t, a, 99, &ins);
    EXPECT_TRUE(ins);
    EXPECT_EQ(t.index_of(t.find(a)), last);
    EXPECT_EQ(t.cold(*t.find(a)).start.sport, 99);
    EXPECT_TRUE(t.check_invariants());
}

// An entry displaced by a cluster whose home lies between the hole and its slot must stay:
// X home 5 at 5, Y home 5 at 6, Z home 7 at 7, W home 6 at 8. Erase X: Y moves to 5, Z stays at
// 7 (its home), W moves to 6 (its home, freed by Y).
TEST(SinkFlowTable, BackwardShiftSkipsEntriesAtHome) {
    FlowTable t(16);
    uint32_t next = 1;
    const uint32_t x = id_with_home(t, 5, &next), y = id_with_home(t, 5, &next);
    const uint32_t z = id_with_home(t, 7, &next), w = id_with_home(t, 6, &next);
    bool ins = false;
    for (uint32_t id : {x, y, z, w}) add(t, id, uint16_t(id), &ins);
    EXPECT_EQ(t.index_of(t.find(w)), 8u);
    ASSERT_TRUE(t.erase(x));
    EXPECT_EQ(t.index_of(t.find(y)), 5u);
    EXPECT_EQ(t.index_of(t.find(w)), 6u);
    EXPECT_EQ(t.index_of(t.find(z)), 7u);
    EXPECT_TRUE(t.check_invariants());
    for (uint32_t id : {y, z, w}) EXPECT_EQ(t.cold(*t.find(id)).start.sport, uint16_t(id));
}

// The bound: a full table refuses new IDs only (a known ID is still found through insert), takes
// new ones again once a flow leaves, and never allocates slots beyond what its bound needs.
TEST(SinkFlowTable, BoundedTableRefusesNewIdsOnly) {
    FlowTable t(1 << 16, 5);
    EXPECT_EQ(t.max_size(), 5u);
    EXPECT_EQ(t.capacity(), 16u);  // the asked-for 65536 slots clamped to bit_ceil(2 x 5), >= 16
    bool ins = false;
    for (uint32_t id = 1; id <= 5; ++id) add(t, id * 7919, uint16_t(id), &ins);
    EXPECT_EQ(t.size(), 5u);
    EXPECT_EQ(t.insert(6 * 7919, &ins), nullptr);
    EXPECT_FALSE(ins);
    FlowTable::Slot* known = t.insert(3 * 7919, &ins);
    ASSERT_NE(known, nullptr);
    EXPECT_FALSE(ins);
    EXPECT_EQ(t.cold(*known).start.sport, 3);
    ASSERT_TRUE(t.erase(2 * 7919));
    ASSERT_NE(t.insert(6 * 7919, &ins), nullptr);
    EXPECT_TRUE(ins);
    EXPECT_EQ(t.insert(7 * 7919, &ins), nullptr);
    EXPECT_EQ(t.size(), 5u);
    EXPECT_EQ(t.capacity(), 16u);
    EXPECT_TRUE(t.check_invariants());

    // At the bound the slot array is bit_ceil(2 x max_size): 1000 flows, 2048 slots, not more.
    FlowTable big(16, 1000);
    for (uint32_t id = 0; id < 1500; ++id) big.insert(id * 2654435761u, &ins);
    EXPECT_EQ(big.size(), 1000u);
    EXPECT_EQ(big.capacity(), 2048u);
    EXPECT_TRUE(big.check_invariants());
}

}  // namespace
}  // namespace angel::sink
