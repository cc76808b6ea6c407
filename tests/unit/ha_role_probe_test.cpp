// ctld/ha/role_probe: the state-file word, the state file as a file (missing, folder, FIFO,
// unreadable), the address probe on loopback, and the state-file probe's inotify descriptor.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <stdexcept>
#include <string>

#include "tests/unit/unit_temp_dir.hpp"
#include "ctld/ha/role_probe.hpp"

using namespace angel;

namespace {

// Each test's own folder.
struct TempDir : unit_testing::TempDir {
    TempDir() : unit_testing::TempDir("angel-ha-probe") {}
};

void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
}

bool says(const std::string& s) { return state_text_says_master(s.data(), s.size()); }

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST(HaRoleProbe, StateTextFirstWordMustBeMaster) {
    EXPECT_TRUE(says("MASTER"));
    EXPECT_TRUE(says("MASTER\n"));
    EXPECT_TRUE(says("MASTER INSTANCE VI_1 100"));
    EXPECT_TRUE(says("  MASTER"));  // leading blanks are not a word
    EXPECT_TRUE(says("\t\r\n MASTER\r\n"));
    EXPECT_TRUE(says("MASTER\tINSTANCE"));
    EXPECT_FALSE(says("MASTERS"));
    EXPECT_FALSE(says("MASTER_X"));
    EXPECT_FALSE(says("master"));  // keepalived writes upper case; the word is exact
    EXPECT_FALSE(says("Master"));
    EXPECT_FALSE(says("MASTE"));
    EXPECT_FALSE(says("BACKUP"));
    EXPECT_FALSE(says("BACKUP MASTER"));  // only the first word counts
    EXPECT_FALSE(says("FAULT"));
    EXPECT_FALSE(says(""));
    EXPECT_FALSE(says(" \n\t "));
    // The length is respected: "MASTER" cut to 5 bytes is no MASTER, and bytes past len are not read.
    EXPECT_FALSE(state_text_says_master("MASTER", 5));
    EXPECT_TRUE(state_text_says_master("MASTERS", 6));
    EXPECT_FALSE(state_text_says_master("MASTER", 0));
}

TEST(HaRoleProbe, StateFileWords) {
    TempDir d;
    const std::string f = d.file("state");
    write_file(f, "MASTER\n");
    RoleObservation o = probe_state_file(f);
    EXPECT_TRUE(o.master);
    EXPECT_EQ(o.detail, "state file says MASTER");

    write_file(f, "MASTER INSTANCE VI_1 100\n");
    o = probe_state_file(f);
    EXPECT_TRUE(o.master);
    EXPECT_EQ(o.detail, "state file says MASTER");

    write_file(f, "  MASTER\n");
    EXPECT_TRUE(probe_state_file(f).master);

    for (const char* word : {"MASTERS", "master", "BACKUP", "FAULT"}) {
        write_file(f, std::string(word) + "\n");
        o = probe_state_file(f);
        EXPECT_FALSE(o.master) << word;
        EXPECT_EQ(o.detail, std::string("state file says ") + word);
    }

    write_file(f, "");
    o = probe_state_file(f);
    EXPECT_FALSE(o.master);
    EXPECT_EQ(o.detail, "state file says nothing");
}

TEST(HaRoleProbe, MissingFileOrFolderIsBackup) {
    TempDir d;
    const std::string missing = d.file("nope");
    RoleObservation o = probe_state_file(missing);
    EXPECT_FALSE(o.master);
    EXPECT_TRUE(contains(o.detail, missing)) << o.detail;
    EXPECT_TRUE(contains(o.detail, std::strerror(ENOENT))) << o.detail;

    const std::string dir = d.file("sub");
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    o = probe_state_file(dir);
    EXPECT_FALSE(o.master);
    EXPECT_EQ(o.detail, "state file " + dir + " is not a regular file");
}

TEST(HaRoleProbe, FifoIsBackupWithoutBlocking) {
    TempDir d;
    const std::string fifo = d.file("fifo");
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    // No writer: a blocking open would hang. Probe on a thread; should it hang, a writer
    // releases it so that the test fails instead of hanging.
    auto probing = std::async(std::launch::async, [&] { return probe_state_file(fifo); });
    const bool prompt = probing.wait_for(std::chrono::seconds(1)) == std::future_status::ready;
    if (!prompt) {
        const int w = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (w >= 0) close(w);
    }
    const RoleObservation o = probing.get();
    EXPECT_TRUE(prompt) << "probe_state_file blocked on a FIFO";
    EXPECT_FALSE(o.master);
    EXPECT_EQ(o.detail, "state file " + fifo + " is not a regular file");
}

TEST(HaRoleProbe, UnreadableFileIsBackup) {
    TempDir d;
    ASSERT_EQ(chmod(d.path.c_str(), 0755), 0);
    const std::string f = d.file("state");
    write_file(f, "MASTER\n");
    ASSERT_EQ(chmod(f.c_str(), 0000), 0);
    if (geteuid() != 0) {
        const RoleObservation o = probe_state_file(f);
        EXPECT_FALSE(o.master);
        EXPECT_TRUE(contains(o.detail, std::strerror(EACCES))) << o.detail;
        return;
    }
    // root reads anything: probe from a child that has given up root (nobody).
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) _exit(3);
        const RoleObservation o = probe_state_file(f);
        if (o.master) _exit(1);
        _exit(contains(o.detail, std::strerror(EACCES)) ? 0 : 2);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: said master, 2: detail without EACCES, 3: could not drop root";
}

TEST(HaRoleProbe, VipOnLoopbackIsMasterTestNetIsNot) {
    RoleObservation o = probe_vip("127.0.0.1");
    EXPECT_TRUE(o.master);
    EXPECT_EQ(o.detail, "127.0.0.1 on lo");

    o = probe_vip("192.0.2.123");
    EXPECT_FALSE(o.master);
    EXPECT_EQ(o.detail, "192.0.2.123 is on no local interface");

    o = probe_vip("2001:db8::77");
    EXPECT_FALSE(o.master);
    EXPECT_EQ(o.detail, "2001:db8::77 is on no local interface");

    EXPECT_THROW(probe_vip("not-an-address"), std::runtime_error);
    EXPECT_THROW(probe_vip("10.0.0.300"), std::runtime_error);
}

TEST(HaRoleProbe, VipIpv6Loopback) {
    if (access("/proc/net/if_inet6", F_OK) != 0) GTEST_SKIP() << "no IPv6";
    const RoleObservation o = probe_vip("::1");
    EXPECT_TRUE(o.master);
    EXPECT_EQ(o.detail, "::1 on lo");
}

TEST(HaRoleProbe, MakeRoleProbeByMode) {
    HaConfig none;
    auto p = make_role_probe(none);
    EXPECT_TRUE(p->probe().master);
    EXPECT_EQ(p->probe().detail, "ha.mode none");
    EXPECT_EQ(p->event_fd(), -1);

    HaConfig vip;
    vip.mode = "vip";
    vip.vip = "127.0.0.1";
    p = make_role_probe(vip);
    EXPECT_TRUE(p->probe().master);
    vip.vip = "192.0.2.123";
    EXPECT_FALSE(make_role_probe(vip)->probe().master);
    vip.vip = "bogus";
    EXPECT_THROW(make_role_probe(vip), std::runtime_error);  // refused at once, not at the first poll
}

TEST(HaRoleProbe, StateFileEventFdFiresOnRename) {
    TempDir d, scratch;  // the new file is written elsewhere (same file system), then renamed in
    HaConfig ha;
    ha.mode = "file";
    ha.state_file = d.file("state");
    auto p = make_role_probe(ha);
    ASSERT_GE(p->event_fd(), 0);
    EXPECT_FALSE(p->probe().master);  // no file yet
    EXPECT_FALSE(readable(p->event_fd(), 0));

    const std::string tmp = scratch.file("state.tmp");
    write_file(tmp, "MASTER\n");
    EXPECT_FALSE(readable(p->event_fd(), 0));  // nothing in the watched folder yet
    ASSERT_EQ(std::rename(tmp.c_str(), ha.state_file.c_str()), 0);
    ASSERT_TRUE(readable(p->event_fd(), 2000));
    p->drain_events();
    EXPECT_FALSE(readable(p->event_fd(), 0));  // drained
    const RoleObservation o = p->probe();
    EXPECT_TRUE(o.master);
    EXPECT_EQ(o.detail, "state file says MASTER");

    // Like tools/ha/ha-state-write: a temporary file in the same folder, then rename.
    const std::string tmp2 = ha.state_file + ".tmp.1";
    write_file(tmp2, "BACKUP\n");
    ASSERT_EQ(std::rename(tmp2.c_str(), ha.state_file.c_str()), 0);
    ASSERT_TRUE(readable(p->event_fd(), 2000));
    p->drain_events();
    EXPECT_FALSE(p->probe().master);

    // Removal too.
    ASSERT_EQ(unlink(ha.state_file.c_str()), 0);
    EXPECT_TRUE(readable(p->event_fd(), 2000));
}
