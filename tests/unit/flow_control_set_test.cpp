// ctld's set of muted / full flows (ctld/flow_control_set.hpp): angelctl mutes and database rows
// merged into the published table, the operator's mute winning, times kept across refreshes,
// and the 65536-entry bound with what does not fit counted.
#include <gtest/gtest.h>

#include <memory>

#include "ctld/flow_control_set.hpp"

using namespace angel;

namespace {

struct Published {
    std::unique_ptr<FlowControlBlock> block{new FlowControlBlock{}};
    std::unique_ptr<FlowControlEntry[]> e{new FlowControlEntry[kFlowControlMax]};
    uint32_t read() { return read_flow_control(*block, e.get()); }
    const FlowControlEntry* find(uint32_t id, uint32_t n) const {
        for (uint32_t i = 0; i < n; ++i)
            if (e[i].flow_id == id) return &e[i];
        return nullptr;
    }
};

DbFlowControl rows(std::initializer_list<std::pair<uint32_t, FlowRecordMode>> r, uint64_t total = 0) {
    DbFlowControl d;
    d.fetched = true;
    d.rows = r;
    d.total = total ? total : d.rows.size();
    return d;
}

}  // namespace

TEST(FlowControlSet, MergesOperatorAndDatabase) {
    Published p;
    FlowControlSet s(*p.block);
    EXPECT_EQ(p.read(), 0u);
    EXPECT_TRUE(s.mute(7, 100));
    EXPECT_TRUE(s.mute(7, 200));  // already muted: keeps its first time
    s.set_database(rows({{7, FlowRecordMode::full}, {8, FlowRecordMode::full}, {9, FlowRecordMode::mute}}), 300);
    uint32_t n = p.read();
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(p.find(7, n)->mode, static_cast<uint8_t>(FlowRecordMode::mute));  // the operator's mute wins
    EXPECT_EQ(p.find(7, n)->since_ns, 100u);
    EXPECT_EQ(p.find(8, n)->mode, static_cast<uint8_t>(FlowRecordMode::full));
    EXPECT_EQ(p.find(8, n)->since_ns, 300u);
    EXPECT_TRUE(s.database_has(9));
    // A refresh keeps the time of rows already taken up; a changed action is a new row.
    s.set_database(rows({{8, FlowRecordMode::full}, {9, FlowRecordMode::full}}), 400);
    n = p.read();
    EXPECT_EQ(p.find(8, n)->since_ns, 300u);
    EXPECT_EQ(p.find(9, n)->since_ns, 400u);
    // Unmute removes only the operator's entry.
    EXPECT_TRUE(s.unmute(7));
    EXPECT_FALSE(s.unmute(7));
    n = p.read();
    EXPECT_EQ(n, 2u);
    EXPECT_EQ(p.find(7, n), nullptr);
    EXPECT_EQ(s.stats().local, 0u);
    EXPECT_EQ(s.stats().database, 2u);
    EXPECT_EQ(s.stats().left_out, 0u);
}

TEST(FlowControlSet, BoundedAndCounted) {
    Published p;
    FlowControlSet s(*p.block);
    DbFlowControl d;
    d.fetched = true;
    for (uint32_t i = 0; i < kFlowControlMax; ++i) d.rows.emplace_back(1000000 + i, FlowRecordMode::mute);
    d.total = kFlowControlMax + 5;  // the table holds 5 more than were read
    s.set_database(d, 1);
    EXPECT_EQ(p.read(), kFlowControlMax);
    EXPECT_EQ(s.stats().left_out, 5u);
    // An operator's mute goes first; one database row more is left out.
    EXPECT_TRUE(s.mute(3, 2));
    const uint32_t n = p.read();
    EXPECT_EQ(n, kFlowControlMax);
    EXPECT_NE(p.find(3, n), nullptr);
    EXPECT_EQ(s.stats().left_out, 6u);
    EXPECT_EQ(s.stats().published, kFlowControlMax);
}
