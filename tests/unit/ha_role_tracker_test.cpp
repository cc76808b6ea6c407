// ctld/ha/role_tracker: the HA role state machine, driven with made-up clocks (nanoseconds).
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

#include "ctld/ha/role_tracker.hpp"

using namespace angel;

namespace {

constexpr uint64_t kMs = 1'000'000ull;
constexpr uint64_t kSec = 1'000'000'000ull;
constexpr uint64_t kT = 1000;  // takeover hold in the small-number tests, ns

void expect_change(const std::optional<RoleChange>& c, HaRole from, HaRole to) {
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->from, from);
    EXPECT_EQ(c->to, to);
}

// One change of side with takeover_ns == 0 (backup <-> master directly).
void flip(RoleTracker& t, uint64_t now) {
    ASSERT_TRUE(t.observe(t.role() == HaRole::backup, now).has_value());
}

}  // namespace

TEST(HaRoleTracker, StartWithoutMasterIsBackupAndNothingPending) {
    RoleTracker t(kT);
    t.start(false, 500);
    EXPECT_EQ(t.role(), HaRole::backup);
    EXPECT_EQ(t.since_ns(), 500u);
    EXPECT_EQ(t.transitions(), 0u);
    EXPECT_EQ(t.next_deadline(), UINT64_MAX);
    EXPECT_EQ(t.master_side_ns(10'000), 0u);
    EXPECT_FALSE(t.tick(1'000'000).has_value());
    EXPECT_FALSE(t.observe(false, 2'000).has_value());  // still not seen: no change
    EXPECT_EQ(t.role(), HaRole::backup);
    EXPECT_EQ(t.since_ns(), 500u);
}

TEST(HaRoleTracker, StartWithMasterSeenIsTakeoverWithoutATransition) {
    RoleTracker t(kT);
    t.start(true, 5000);
    EXPECT_EQ(t.role(), HaRole::takeover);
    EXPECT_EQ(t.since_ns(), 5000u);
    EXPECT_EQ(t.transitions(), 0u);
    EXPECT_EQ(t.next_deadline(), 6000u);
    EXPECT_EQ(t.master_side_ns(5500), 500u);  // the takeover hold counts as master side
    EXPECT_FALSE(t.tick(5999).has_value());
    EXPECT_EQ(t.role(), HaRole::takeover);
    expect_change(t.tick(6000), HaRole::takeover, HaRole::master);
    EXPECT_EQ(t.role(), HaRole::master);
    EXPECT_EQ(t.since_ns(), 6000u);
    EXPECT_EQ(t.transitions(), 0u);  // takeover -> master is no change of side
    EXPECT_EQ(t.next_deadline(), UINT64_MAX);
    EXPECT_EQ(t.master_side_ns(7000), 2000u);
}

TEST(HaRoleTracker, ZeroTakeoverGoesStraightToMaster) {
    RoleTracker s(0);
    s.start(true, 10);
    EXPECT_EQ(s.role(), HaRole::master);
    EXPECT_EQ(s.transitions(), 0u);
    EXPECT_EQ(s.next_deadline(), UINT64_MAX);

    RoleTracker t(0);
    t.start(false, 0);
    expect_change(t.observe(true, 100), HaRole::backup, HaRole::master);
    EXPECT_EQ(t.role(), HaRole::master);
    EXPECT_EQ(t.transitions(), 1u);
    EXPECT_EQ(t.next_deadline(), UINT64_MAX);
    expect_change(t.observe(false, 300), HaRole::master, HaRole::backup);
    EXPECT_EQ(t.transitions(), 2u);
    EXPECT_EQ(t.master_side_ns(1000), 200u);
}

TEST(HaRoleTracker, ObserveEndsTheHoldOnceItIsOver) {
    RoleTracker t(kT);
    t.start(false, 0);
    expect_change(t.observe(true, 1000), HaRole::backup, HaRole::takeover);
    EXPECT_EQ(t.transitions(), 1u);
    EXPECT_EQ(t.since_ns(), 1000u);
    EXPECT_EQ(t.next_deadline(), 2000u);
    EXPECT_FALSE(t.observe(true, 1999).has_value());  // hold not over
    EXPECT_EQ(t.role(), HaRole::takeover);
    expect_change(t.observe(true, 2000), HaRole::takeover, HaRole::master);
    EXPECT_EQ(t.role(), HaRole::master);
    EXPECT_EQ(t.since_ns(), 2000u);
    EXPECT_EQ(t.transitions(), 1u);
    EXPECT_FALSE(t.observe(true, 9000).has_value());  // master stays master
    EXPECT_EQ(t.since_ns(), 2000u);
}

TEST(HaRoleTracker, AddressGoneDuringTakeoverBacksOffWithoutEverBeingMaster) {
    RoleTracker t(kT);
    t.start(false, 0);
    expect_change(t.observe(true, 1000), HaRole::backup, HaRole::takeover);
    expect_change(t.observe(false, 1500), HaRole::takeover, HaRole::backup);
    EXPECT_EQ(t.role(), HaRole::backup);
    EXPECT_EQ(t.transitions(), 2u);
    EXPECT_EQ(t.next_deadline(), UINT64_MAX);
    EXPECT_FALSE(t.tick(2000).has_value());  // the old hold's end: nothing happens
    EXPECT_FALSE(t.tick(1'000'000).has_value());
    EXPECT_EQ(t.role(), HaRole::backup);
    EXPECT_EQ(t.master_side_ns(1'000'000), 500u);
}

TEST(HaRoleTracker, MasterSideTimeAccumulatesOverStretches) {
    RoleTracker t(100);
    t.start(true, 0);  // first stretch starts at 0, no transition
    expect_change(t.tick(100), HaRole::takeover, HaRole::master);
    expect_change(t.observe(false, 700), HaRole::master, HaRole::backup);  // stretch 1: 700
    EXPECT_EQ(t.master_side_ns(900), 700u);
    expect_change(t.observe(true, 1000), HaRole::backup, HaRole::takeover);
    EXPECT_EQ(t.master_side_ns(1050), 750u);  // while in takeover
    expect_change(t.tick(1100), HaRole::takeover, HaRole::master);
    EXPECT_EQ(t.master_side_ns(1400), 1100u);  // while master
    expect_change(t.observe(false, 2000), HaRole::master, HaRole::backup);  // stretch 2: 1000
    expect_change(t.observe(true, 3000), HaRole::backup, HaRole::takeover);
    expect_change(t.observe(false, 3040), HaRole::takeover, HaRole::backup);  // stretch 3: 40
    EXPECT_EQ(t.master_side_ns(99'999), 1740u);
    EXPECT_EQ(t.transitions(), 5u);
}

TEST(HaRoleTracker, TakeoverChangedDuringTheHoldMovesTheDeadline) {
    RoleTracker t(kT);
    t.start(false, 0);
    t.observe(true, 1000);
    EXPECT_EQ(t.next_deadline(), 2000u);
    t.set_takeover_ns(50);
    EXPECT_EQ(t.next_deadline(), 1050u);
    EXPECT_FALSE(t.tick(1049).has_value());
    expect_change(t.tick(1050), HaRole::takeover, HaRole::master);
}

TEST(HaRoleTracker, TransitionsLastMinuteForgetsOldOnes) {
    RoleTracker t(0);
    t.start(false, 0);
    flip(t, 1 * kSec);
    flip(t, 2 * kSec);
    flip(t, 3 * kSec);
    EXPECT_EQ(t.transitions_last_minute(3 * kSec), 3u);
    EXPECT_EQ(t.transitions_last_minute(60 * kSec), 3u);
    EXPECT_EQ(t.transitions_last_minute(61 * kSec), 2u);  // 1 s is exactly a minute ago: gone
    EXPECT_EQ(t.transitions_last_minute(62 * kSec + 1), 1u);
    EXPECT_EQ(t.transitions_last_minute(63 * kSec), 0u);
    EXPECT_EQ(t.transitions(), 3u);  // the total stays
}

TEST(HaRoleTracker, TransitionsLastMinuteAfterTheHistoryWrapped) {
    RoleTracker t(0);
    t.start(false, 0);
    for (uint64_t i = 0; i < 100; ++i) flip(t, 1 * kSec + i * kMs);  // more than the history holds
    EXPECT_EQ(t.transitions(), 100u);
    EXPECT_EQ(t.transitions_last_minute(200 * kSec), 0u);
    flip(t, 200 * kSec);
    flip(t, 201 * kSec);
    flip(t, 202 * kSec);
    EXPECT_EQ(t.transitions_last_minute(202 * kSec), 3u);
    EXPECT_EQ(t.transitions(), 103u);
}

TEST(HaRoleTracker, SixTransitionsAMinuteAreNoFlapping) {
    RoleTracker t(0);
    t.start(false, 0);
    for (uint64_t i = 1; i <= RoleTracker::kFlapWarnPerMinute; ++i) {
        flip(t, i * kSec);
        EXPECT_FALSE(t.flap_warning_due(i * kSec)) << i;
    }
    EXPECT_EQ(t.transitions_last_minute(6 * kSec), 6u);
    // A slow stream of changes never warns: one every 11 s is at most 6 in a minute.
    for (uint64_t i = 0; i < 20; ++i) {
        flip(t, 100 * kSec + i * 11 * kSec);
        EXPECT_FALSE(t.flap_warning_due(100 * kSec + i * 11 * kSec)) << i;
    }
    EXPECT_EQ(t.transitions_last_minute(100 * kSec + 19 * 11 * kSec), 6u);
}

TEST(HaRoleTracker, FlapWarningOnceThenAgainOnlyAfterAMinute) {
    RoleTracker t(0);
    t.start(false, 0);
    for (uint64_t i = 1; i <= 6; ++i) flip(t, i * kSec);
    EXPECT_FALSE(t.flap_warning_due(6 * kSec));
    flip(t, 7 * kSec);  // the 7th within a minute
    EXPECT_TRUE(t.flap_warning_due(7 * kSec));
    EXPECT_FALSE(t.flap_warning_due(7 * kSec));  // given: not again at once
    flip(t, 8 * kSec);
    EXPECT_FALSE(t.flap_warning_due(8 * kSec));
    for (uint64_t s = 60; s <= 66; ++s) flip(t, s * kSec);
    // 9 in the last minute at 66 s, but the last warning was 59 s ago.
    EXPECT_EQ(t.transitions_last_minute(66 * kSec), 9u);
    EXPECT_FALSE(t.flap_warning_due(66 * kSec));
    EXPECT_FALSE(t.flap_warning_due(67 * kSec - 1));
    EXPECT_TRUE(t.flap_warning_due(67 * kSec));  // a minute after the first warning
    EXPECT_FALSE(t.flap_warning_due(67 * kSec + 1));
    // Calm again: transitions age out, no warning even long after the last one.
    EXPECT_EQ(t.transitions_last_minute(200 * kSec), 0u);
    EXPECT_FALSE(t.flap_warning_due(200 * kSec));
}
