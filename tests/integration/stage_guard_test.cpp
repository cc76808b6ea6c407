// Guards an operator relies on: one capd, procd and netd per instance (a second one fails
// with a clear message and leaves the running meter alone), a stage started by hand without
// ctld's descriptors is refused, a stage refuses a segment of another layout, and
// angel-ctld -t tells a good configuration from a bad one with the right exit codes.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>

#include "shm/segment.hpp"
#include "tests/integration/test_support.hpp"

using namespace angel;
using namespace angel::itest;
using namespace std::chrono_literals;

namespace {

std::string config_text(const std::string& instance, const fs::path& run_dir, int port) {
    return "instance = \"" + instance + "\";\nruntime_dir = \"" + run_dir.string() +
           "\";\ncapture = { interface = \"lo\"; };\nclassifier = { host = \"127.0.0.1\"; port = " +
           std::to_string(port) + "; };\ncustomers = { networks = [\"192.0.2.0/24\"]; };\n";
}

// Starts a stage the way ctld does, as root: the data segment read-write on fd 3, the control
// object read-only on fd 4, a fresh description of the stage's lock file on fd 5, then
// "-i INSTANCE -u 65534 -g 65534 -j JAIL -f". Returns its exit status (killed after 10 s) and
// its stderr.
std::pair<ExitStatus, std::string> run_stage_like_ctld(const std::string& stage, const std::string& inst,
                                                       const fs::path& lock_dir, const fs::path& jail,
                                                       const fs::path& err_file) {
    // Each above the fixed numbers first (as ctld does), so that the dup2()s below neither
    // clobber one another nor are no-ops that leave close-on-exec set.
    auto high = [](int fd) {
        if (fd < 0) return fd;
        const int h = fcntl(fd, F_DUPFD_CLOEXEC, 10);
        close(fd);
        return h;
    };
    const int data = high(open(("/dev/shm/angel." + inst).c_str(), O_RDWR | O_CLOEXEC));
    const int ctl = high(open(("/dev/shm/angel." + inst + ".ctl").c_str(), O_RDONLY | O_CLOEXEC));
    const int lock = high(open((lock_dir / (inst + "." + stage + ".lock")).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    const int err = high(open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    ExitStatus st;
    if (data < 0 || ctl < 0 || lock < 0 || err < 0) return {st, "cannot open the objects to pass"};
    const std::string path = binary("angel-" + stage).string();
    const std::string j = jail.string();
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(err, 2);
        dup2(data, 3);
        dup2(ctl, 4);
        dup2(lock, 5);
        execl(path.c_str(), ("angel-" + stage).c_str(), "-i", inst.c_str(), "-u", "65534", "-g", "65534", "-j",
              j.c_str(), "-f", static_cast<char*>(nullptr));
        _exit(127);
    }
    for (int fd : {data, ctl, lock, err}) close(fd);
    int raw = 0;
    for (int i = 0; i < 1000; ++i) {
        if (waitpid(pid, &raw, WNOHANG) == pid) {
            st.raw = raw;
            return {st, read_file(err_file)};
        }
        std::this_thread::sleep_for(10ms);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &raw, 0);
    st.raw = raw;
    return {st, "timed out\n" + read_file(err_file)};
}

}  // namespace

TEST(StageGuard, SecondStageOfEachKindIsRefused) {
    TempDir dir("angel-guard");
    const std::string inst = unique_name("guard2");
    ShmGuard shm(inst);
    write_file(dir / "m.conf", config_text(inst, dir / "run", 9));  // discard port; no traffic
    Process ctld({{binary("angel-ctld").string(), "-f", "-c", (dir / "m.conf").string()},
                  dir / "ctld.out", dir / "ctld.err", {}});
    ASSERT_TRUE(wait_until([&] { return count_of(read_file(dir / "ctld.err"), " ready") >= 3; }, 15000ms))
        << read_file(dir / "ctld.err");
    for (const std::string stage : {"capd", "procd", "netd"}) {
        const auto [st, err] = run_stage_like_ctld(stage, inst, dir / "run", dir / "run" / "empty", dir / "second.err");
        EXPECT_EQ(st.code(), EX_TEMPFAIL) << stage << ": " << st.describe() << "\n" << err;
        const std::string want = stage == "capd" ? "another angel-capd already captures for instance " + inst
                                                 : "another angel-" + stage + " already runs for instance " + inst;
        EXPECT_NE(err.find(want), std::string::npos) << err;
    }
    // The running meter is untouched: every stage is still the one that started first.
    const CommandResult st = run_command({binary("angelctl").string(), "-c", (dir / "m.conf").string(), "status"}, 10000ms);
    EXPECT_TRUE(st.status.ok()) << st.err;
    EXPECT_EQ(count_of(st.out, "running"), 3u) << st.out;
    EXPECT_EQ(st.out.find("backoff"), std::string::npos) << st.out;
    const ExitStatus e = ctld.stop(SIGTERM, 20000ms);
    EXPECT_TRUE(e.ok()) << e.describe() << "\n" << read_file(dir / "ctld.err");
}

TEST(StageGuard, SecondCapdForAnInstanceIsRefused) {
    TempDir dir("angel-guard");
    const std::string inst = unique_name("guard");
    ShmGuard shm(inst);
    write_file(dir / "m.conf", config_text(inst, dir / "run", 9));  // discard port; no traffic
    Process ctld({{binary("angel-ctld").string(), "-f", "-c", (dir / "m.conf").string()},
                  dir / "ctld.out", dir / "ctld.err", {}});
    ASSERT_TRUE(wait_until([&] { return read_file(dir / "ctld.err").find("angel-capd ready") != std::string::npos; },
                           15000ms))
        << read_file(dir / "ctld.err");
    // By hand, as an operator might: no segment descriptors (the objects are root's 0600 and
    // passed only at exec), so it cannot attach, let alone capture.
    const CommandResult second =
        run_command({binary("angel-capd").string(), "-i", inst, "-u", "65534", "-g", "65534", "-j", "/", "-f"}, 10000ms);
    EXPECT_TRUE(second.status.exited());
    EXPECT_EQ(second.status.code(), EX_UNAVAILABLE);
    EXPECT_NE(second.err.find("is started by angel-ctld"), std::string::npos) << second.err;
    // The running meter is untouched: its capd is still the one that started first.
    const CommandResult st = run_command({binary("angelctl").string(), "-c", (dir / "m.conf").string(), "status"}, 10000ms);
    EXPECT_TRUE(st.status.ok()) << st.err;
    EXPECT_EQ(st.out.find("backoff"), std::string::npos) << st.out;
    const ExitStatus e = ctld.stop(SIGTERM, 20000ms);
    EXPECT_TRUE(e.ok()) << e.describe() << "\n" << read_file(dir / "ctld.err");
}

TEST(StageGuard, StageRefusesASegmentOfAnotherLayout) {
    const std::string inst = unique_name("layout");
    ShmGuard shm(inst);
    {
        SegmentSizes sz;
        sz.packet_ring_bytes = 1 << 20;
        sz.record_ring_bytes = 1 << 16;
        sz.event_ring_bytes = 1 << 16;
        sz.max_flows = 64;
        auto seg = Segment::create(inst, sz);
        seg->header()->layout_version = kLayoutVersion + 1;  // as a newer build would leave it
        seg->control_rw().layout_version = kLayoutVersion + 1;
    }
    TempDir dir("angel-layout");
    ASSERT_EQ(mkdir((dir / "empty").c_str(), 0555), 0);
    const auto [st, err] = run_stage_like_ctld("procd", inst, dir.path(), dir / "empty", dir / "procd.err");
    EXPECT_TRUE(st.exited()) << st.describe();
    EXPECT_EQ(st.code(), EX_UNAVAILABLE) << err;
    EXPECT_NE(err.find("layout version"), std::string::npos) << err;
}

TEST(StageGuard, ConfigCheckExitCodes) {
    TempDir dir("angel-check");
    write_file(dir / "good.conf", config_text("chk", dir / "run", 4739));
    write_file(dir / "bad.conf", "instance = \"chk\";\nclassifier = { host = \"127.0.0.1\"; port = 70000; };\n");
    const CommandResult good = run_command({binary("angel-ctld").string(), "-t", "-c", (dir / "good.conf").string()}, 10000ms);
    EXPECT_TRUE(good.status.ok()) << good.err;
    const CommandResult bad = run_command({binary("angel-ctld").string(), "-t", "-c", (dir / "bad.conf").string()}, 10000ms);
    EXPECT_EQ(bad.status.code(), 78);
    // One line, file:line: what is wrong.
    EXPECT_NE(bad.err.find((dir / "bad.conf").string() + ":2: classifier.port"), std::string::npos) << bad.err;
}
