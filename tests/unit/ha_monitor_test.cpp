// ctld/ha/ha_monitor: the role as published in the control block (ha.mode file on a temporary
// state file, and none), announce_request bumped once per promotion to master, the sleep
// timeout, reconfigure() switching the state file, and report().
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

#include "tests/unit/unit_temp_dir.hpp"
#include "ctld/ha/ha_monitor.hpp"

using namespace angel;

namespace {

constexpr uint64_t kMs = 1'000'000ull;
constexpr uint64_t kT0 = 1'000'000 * kMs;  // an arbitrary monotonic start

// Each test's own folder.
struct TempDir : unit_testing::TempDir {
    TempDir() : unit_testing::TempDir("angel-ha-mon") {}
};

// Atomically, as tools/ha/ha-state-write does.
void set_state(const std::string& path, const std::string& word) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << word << "\n";
    }
    ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

HaConfig file_config(const std::string& state_file, int poll_ms = 200, int takeover_ms = 1000) {
    HaConfig ha;
    ha.mode = "file";
    ha.state_file = state_file;
    ha.poll_ms = poll_ms;
    ha.takeover_ms = takeover_ms;
    return ha;
}

std::unique_ptr<ControlBlock> control_block() { return std::make_unique<ControlBlock>(); }

HaRole role_of(const ControlBlock& c) { return static_cast<HaRole>(c.role.load()); }

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

}  // namespace

TEST(HaMonitor, FileModeFollowsTheStateFileThroughTakeover) {
    TempDir d;
    const std::string sf = d.file("state");
    auto cb = control_block();
    ASSERT_EQ(role_of(*cb), HaRole::master);  // the block's default: the monitor must change it
    HaMonitor m(file_config(sf), *cb, kT0);
    EXPECT_EQ(role_of(*cb), HaRole::backup);  // no state file: backup
    EXPECT_EQ(cb->announce_request.load(), 0u);

    set_state(sf, "MASTER");
    m.service(false, kT0 + 100 * kMs);  // no event, poll not due: not looked at yet
    EXPECT_EQ(role_of(*cb), HaRole::backup);
    const uint64_t t1 = kT0 + 200 * kMs;
    m.service(false, t1);  // the poll
    EXPECT_EQ(role_of(*cb), HaRole::takeover);
    EXPECT_EQ(cb->announce_request.load(), 0u);  // not before the hold is over
    m.service(false, t1 + 999 * kMs);
    EXPECT_EQ(role_of(*cb), HaRole::takeover);
    m.service(false, t1 + 1000 * kMs);  // the hold is over
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(cb->announce_request.load(), 1u);
    m.service(false, t1 + 3000 * kMs);
    m.service(true, t1 + 3001 * kMs);
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(cb->announce_request.load(), 1u);  // staying master bumps nothing

    set_state(sf, "BACKUP");
    const uint64_t t2 = t1 + 3101 * kMs;  // the next poll is at t1 + 3201 ms
    m.service(true, t2);  // an event: looked at at once
    EXPECT_EQ(role_of(*cb), HaRole::backup);
    EXPECT_EQ(cb->announce_request.load(), 1u);

    RoleReport r = m.report(t2 + 999 * kMs);
    EXPECT_EQ(r.role, HaRole::backup);
    EXPECT_EQ(r.mode, "file");
    EXPECT_EQ(r.detail, "state file says BACKUP");
    EXPECT_EQ(r.transitions, 2u);
    EXPECT_DOUBLE_EQ(r.master_s, 3.101);  // t1 .. t2 on the master side
    EXPECT_DOUBLE_EQ(r.since_s, 0.999);
    EXPECT_EQ(r.transitions_last_minute, 2u);

    // A second promotion: a second announce request.
    set_state(sf, "MASTER");
    const uint64_t t3 = t2 + 10'000 * kMs;
    m.service(true, t3);
    EXPECT_EQ(role_of(*cb), HaRole::takeover);
    m.service(false, t3 + 1000 * kMs);
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(cb->announce_request.load(), 2u);
    r = m.report(t3 + 2000 * kMs);
    EXPECT_EQ(r.role, HaRole::master);
    EXPECT_EQ(r.transitions, 3u);
    EXPECT_DOUBLE_EQ(r.master_s, 5.101);
    EXPECT_DOUBLE_EQ(r.since_s, 1.0);
}

TEST(HaMonitor, TakeoverCutShortNeverAnnounces) {
    TempDir d;
    const std::string sf = d.file("state");
    set_state(sf, "MASTER");
    auto cb = control_block();
    HaMonitor m(file_config(sf), *cb, kT0);
    EXPECT_EQ(role_of(*cb), HaRole::takeover);  // starting with MASTER: through takeover
    set_state(sf, "FAULT");
    m.service(true, kT0 + 100 * kMs);  // an event before the first poll
    EXPECT_EQ(role_of(*cb), HaRole::backup);
    m.service(false, kT0 + 5000 * kMs);
    EXPECT_EQ(role_of(*cb), HaRole::backup);
    EXPECT_EQ(cb->announce_request.load(), 0u);
    const RoleReport r = m.report(kT0 + 5000 * kMs);
    EXPECT_EQ(r.transitions, 1u);  // the start was none
    EXPECT_DOUBLE_EQ(r.master_s, 0.1);
}

TEST(HaMonitor, StartingAsMasterWithoutHoldAnnouncesOnce) {
    TempDir d;
    const std::string sf = d.file("state");
    set_state(sf, "MASTER");
    auto cb = control_block();
    HaMonitor m(file_config(sf, 200, 0), *cb, kT0);
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(cb->announce_request.load(), 1u);
    m.service(false, kT0 + 200 * kMs);
    m.service(true, kT0 + 300 * kMs);
    EXPECT_EQ(cb->announce_request.load(), 1u);
    EXPECT_EQ(m.report(kT0 + 300 * kMs).transitions, 0u);
}

TEST(HaMonitor, TimeoutIsTheNextPollOrTheHoldsEnd) {
    TempDir d;
    const std::string sf = d.file("state");
    auto cb = control_block();
    HaMonitor m(file_config(sf, 200, 1000), *cb, kT0);
    EXPECT_EQ(m.timeout_ms(kT0), 200);
    EXPECT_EQ(m.timeout_ms(kT0 + 150 * kMs), 50);
    EXPECT_EQ(m.timeout_ms(kT0 + kMs / 2), 200);  // rounded up: never wakes early
    EXPECT_EQ(m.timeout_ms(kT0 + 200 * kMs), 0);
    EXPECT_EQ(m.timeout_ms(kT0 + 900 * kMs), 0);

    TempDir d2;
    const std::string sf2 = d2.file("state");
    set_state(sf2, "MASTER");
    auto cb2 = control_block();
    HaMonitor slow(file_config(sf2, 5000, 300), *cb2, kT0);  // takeover: the hold ends first
    EXPECT_EQ(role_of(*cb2), HaRole::takeover);
    EXPECT_EQ(slow.timeout_ms(kT0), 300);
    EXPECT_EQ(slow.timeout_ms(kT0 + 100 * kMs), 200);
    slow.service(false, kT0 + 300 * kMs);
    EXPECT_EQ(role_of(*cb2), HaRole::master);
    EXPECT_EQ(slow.timeout_ms(kT0 + 300 * kMs), 1000);  // next poll at 5 s: capped at 1 s
    EXPECT_EQ(slow.timeout_ms(kT0 + 4800 * kMs), 200);
}

TEST(HaMonitor, ModeNoneIsAlwaysMasterAndNeverAnnounces) {
    auto cb = control_block();
    cb->role.store(static_cast<uint32_t>(HaRole::backup));  // so that the publication shows
    HaConfig ha;  // mode none
    HaMonitor m(ha, *cb, kT0);
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(m.event_fd(), -1);
    EXPECT_EQ(m.timeout_ms(kT0), 1000);
    for (int i = 1; i <= 5; ++i) m.service(i % 2 == 0, kT0 + static_cast<uint64_t>(i) * 1000 * kMs);
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(cb->announce_request.load(), 0u);
    const RoleReport r = m.report(kT0 + 2500 * kMs);
    EXPECT_EQ(r.role, HaRole::master);
    EXPECT_EQ(r.mode, "none");
    EXPECT_EQ(r.detail, "ha.mode none");
    EXPECT_EQ(r.transitions, 0u);
    EXPECT_DOUBLE_EQ(r.master_s, 2.5);
}

TEST(HaMonitor, ReconfigureSwitchesTheStateFile) {
    TempDir a, b;
    const std::string fa = a.file("state"), fb = b.file("state");
    set_state(fa, "BACKUP");
    set_state(fb, "MASTER");
    auto cb = control_block();
    HaMonitor m(file_config(fa), *cb, kT0);
    EXPECT_EQ(role_of(*cb), HaRole::backup);

    const uint64_t t1 = kT0 + 50 * kMs;
    m.reconfigure(file_config(fb, 200, 400), t1);
    EXPECT_EQ(m.timeout_ms(t1), 0);  // looks again at once
    m.service(false, t1);
    EXPECT_EQ(role_of(*cb), HaRole::takeover);
    EXPECT_EQ(m.report(t1).detail, "state file says MASTER");
    m.service(false, t1 + 400 * kMs);  // the new takeover_ms
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(cb->announce_request.load(), 1u);

    // The event descriptor now watches b's folder, not a's.
    const int fd = m.event_fd();
    ASSERT_GE(fd, 0);
    m.service(true, t1 + 401 * kMs);  // drain what the setup left
    EXPECT_FALSE(readable(fd, 0));
    set_state(fa, "MASTER");  // the old file: nobody listens
    EXPECT_FALSE(readable(fd, 200));
    set_state(fb, "BACKUP");
    ASSERT_TRUE(readable(fd, 2000));
    m.service(true, t1 + 500 * kMs);
    EXPECT_EQ(role_of(*cb), HaRole::backup);
}

TEST(HaMonitor, BadVipOnReconfigureChangesNothing) {
    HaConfig ha;
    ha.mode = "vip";
    ha.vip = "127.0.0.1";
    ha.takeover_ms = 100;
    auto cb = control_block();
    HaMonitor m(ha, *cb, kT0);
    EXPECT_EQ(role_of(*cb), HaRole::takeover);
    HaConfig bad = ha;
    bad.vip = "not-an-address";
    bad.takeover_ms = 5000;
    EXPECT_THROW(m.reconfigure(bad, kT0 + 10 * kMs), std::runtime_error);
    m.service(false, kT0 + 100 * kMs);  // the old hold (100 ms) and the old address stand
    EXPECT_EQ(role_of(*cb), HaRole::master);
    EXPECT_EQ(m.report(kT0 + 100 * kMs).detail, "127.0.0.1 on lo");

    HaConfig bad_start = ha;
    bad_start.vip = "300.1.1.1";
    auto cb2 = control_block();
    EXPECT_THROW({ HaMonitor x(bad_start, *cb2, kT0); }, std::runtime_error);
}
