// The Linux service script rc.d/angel-flowmeter end to end, as an operator uses it: the real
// angel-ctld detaches (pidfile, syslog) inside a test namespace (capture on a veth that carries
// nothing), with `user = "nobody"` so that privilege separation is visible.
//
// Asserted, with LSB exit codes:
//   start -> 0; status -> 0 while running; reload -> 0; stop -> 0; status -> 3 after the stop;
//   start with a configuration that does not parse -> 6 (and no daemon).
//   While running: `ps -o user=,comm=` shows four distinct command names (angel-ctld, angel-capd,
//   angel-procd, angel-netd); ctld runs as root, procd, netd and capd (after opening its capture)
//   as nobody. Without control.group the socket is 0600 and angelctl run by another user
//   (daemon) is refused: non-zero exit, "permission denied". After the stop the pidfile, the control socket and the segment are gone.
// Everything (namespace and the processes in it, temp dir, /dev/shm segment) is removed on failure too.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "meter_harness.hpp"

namespace angel::itest {
namespace {

using netns::CommandResult;
using netns::NetnsLab;
using netns::NetnsPair;

int exit_code(const CommandResult& r) { return r.status >= 0 && WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1; }

// The scratch space (/tmp/angel-rc-*, instance rc<pid>x<n>); a daemon still running from this
// config is killed (pidfile) before it goes, whatever happened in the test.
struct RcScratch : MeterScratch {
    RcScratch() : MeterScratch("rc", "rc") {}
    pid_t daemon_pid() const {
        const long pid = std::strtol(read_file(dir / "run" / (instance + ".pid")).c_str(), nullptr, 10);
        return pid > 0 && kill(static_cast<pid_t>(pid), 0) == 0 ? static_cast<pid_t>(pid) : -1;
    }
    ~RcScratch() {
        // The namespace's own cleanup kills the stages; ctld first, so that it restarts nothing.
        if (const pid_t pid = daemon_pid(); pid > 0) {
            kill(pid, SIGKILL);
            for (int i = 0; i < 100 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
};

TEST(RcScript, LinuxServiceLifecycle) {
    if (const std::string why = angel::netns::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    const std::string script = (source_dir() / "rc.d" / "angel-flowmeter").string();
    if (!fs::exists(script)) GTEST_SKIP() << "missing " << script;
    if (!getpwnam("nobody") || !getpwnam("daemon")) GTEST_SKIP() << "needs the users nobody and daemon";
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "no angel-ctld in " << bin_dir() << " (set ANGEL_BIN_DIR)";

    NetnsPair lab("rc");  // first: destroyed last, killing whatever still runs in it
    RcScratch scratch;
    const fs::path conf = scratch.dir / "flowmeter.conf";
    const fs::path run_dir = scratch.dir / "run";
    const fs::path sock = run_dir / (scratch.instance + ".sock");
    auto write_conf = [&](const std::string& extra) {
        MeterConfig c;
        c.instance = scratch.instance;
        c.user = "nobody";
        c.runtime_dir = run_dir;
        c.capture_interface = NetnsPair::kMeterIf;
        c.classifier_host = "127.0.0.1";
        c.classifier_port = 4739;
        c.extra = extra;
        write_file(conf, c.text());
    };
    write_conf("");
    auto rc = [&](const std::string& action) {
        return netns::run(NetnsLab::in(lab.meter(), {"env", "ANGEL_CONF=" + conf.string(),
                                                     "ANGEL_SBIN=" + bin_dir().string(), "sh", script, action}),
                          90);
    };

    // start: 0, and the daemon is up with its stages.
    CommandResult r = rc("start");
    ASSERT_EQ(exit_code(r), 0) << r.describe() << r.out << r.err;
    ASSERT_GT(scratch.daemon_pid(), 0) << "no live pid in the pidfile";
    const pid_t ctld = scratch.daemon_pid();

    r = rc("status");
    EXPECT_EQ(exit_code(r), 0) << r.out << r.err;
    EXPECT_NE(r.out.find("capd"), std::string::npos) << r.out;

    // Every stage ready (capd has opened its capture and dropped root).
    std::map<std::string, long> pids;
    for (int i = 0; i < 100; ++i) {  // at most ~10 s
        const StatusView st = angelctl_status(sock);
        pids.clear();
        for (const auto& [stage, view] : st.stages)
            if (view.state == "running") pids[stage] = view.pid;
        if (pids.size() == 3) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(pids.size(), 3u) << "not every stage is running";

    // ps: four command names, who runs as whom.
    std::string pid_list = std::to_string(ctld);
    for (const auto& [stage, pid] : pids) pid_list += "," + std::to_string(pid);
    const CommandResult ps = netns::run({"ps", "-o", "pid=,user=,comm=", "-p", pid_list}, 10);
    ASSERT_TRUE(ps.ok()) << ps.describe();
    std::printf("[ rc      ] ps -o pid,user,comm:\n%s", ps.out.c_str());
    std::map<std::string, std::string> user_of;  // command name -> user
    {
        std::istringstream in(ps.out);
        std::string pid, user, comm;
        while (in >> pid >> user >> comm) user_of[comm] = user;
    }
    EXPECT_EQ(user_of.size(), 4u) << ps.out;
    EXPECT_EQ(user_of["angel-ctld"], "root") << ps.out;
    for (const char* comm : {"angel-capd", "angel-procd", "angel-netd"}) EXPECT_EQ(user_of[comm], "nobody") << ps.out;

    // No control.group: the control socket is root's alone (0600), and refuses everyone else.
    struct stat ss{};
    ASSERT_EQ(stat(sock.c_str(), &ss), 0);
    EXPECT_EQ(ss.st_mode & 0777, 0600u);
    const CommandResult denied =
        netns::run({"runuser", "-u", "daemon", "--", copy_binary_for_others("angelctl", scratch.dir).string(), "-s",
                    sock.string(), "status"},
                   15);
    EXPECT_NE(exit_code(denied), 0) << denied.out;
    EXPECT_NE(denied.err.find("permission denied"), std::string::npos) << denied.describe() << denied.err;
    EXPECT_EQ(denied.out, "");

    // reload: 0 (nothing changed), and again after a live change.
    r = rc("reload");
    EXPECT_EQ(exit_code(r), 0) << r.out << r.err;
    write_conf("export = { flush_ms = 20; };");
    r = rc("reload");
    EXPECT_EQ(exit_code(r), 0) << r.out << r.err;
    EXPECT_NE(r.out.find("reloaded"), std::string::npos) << r.out;
    EXPECT_EQ(scratch.daemon_pid(), ctld) << "reload restarted the daemon";

    // stop: 0, and nothing left behind.
    r = rc("stop");
    EXPECT_EQ(exit_code(r), 0) << r.out << r.err;
    EXPECT_EQ(scratch.daemon_pid(), -1) << "angel-ctld still runs";
    EXPECT_EQ(kill(ctld, 0), -1);
    for (const auto& [stage, pid] : pids) EXPECT_EQ(kill(static_cast<pid_t>(pid), 0), -1) << stage << " still runs";
    EXPECT_FALSE(fs::exists(sock));
    EXPECT_FALSE(fs::exists(run_dir / (scratch.instance + ".pid")));
    EXPECT_FALSE(fs::exists("/dev/shm/angel." + scratch.instance));
    EXPECT_FALSE(fs::exists("/dev/shm/angel." + scratch.instance + ".ctl"));

    r = rc("status");
    EXPECT_EQ(exit_code(r), 3) << r.out << r.err;
    r = rc("stop");  // stopping a stopped service is a success (LSB)
    EXPECT_EQ(exit_code(r), 0) << r.out << r.err;

    // A configuration that does not parse: start refuses with 6 and starts nothing.
    write_file(conf, read_file(conf) + "capture = {\n");
    r = rc("start");
    EXPECT_EQ(exit_code(r), 6) << r.out << r.err;
    EXPECT_EQ(scratch.daemon_pid(), -1);
}

// What systemd's Type=forking (rc.d/angel-flowmeter.service) relies on: angel-ctld without -f
// returns only once the detached process holds and has written the pidfile, so the pid is
// there the moment the command returns; and a refusal after the fork (a second angel-ctld of
// the instance: the pidfile is locked) is the command's own exit code, 75, not 0.
TEST(RcScript, DetachedStartReturnsWithThePidfileWritten) {
    if (const std::string why = angel::netns::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    if (!getpwnam("nobody")) GTEST_SKIP() << "needs the user nobody";
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "no angel-ctld in " << bin_dir() << " (set ANGEL_BIN_DIR)";
    NetnsPair lab("rd");
    RcScratch scratch;
    const fs::path conf = scratch.dir / "flowmeter.conf";
    MeterConfig c;
    c.instance = scratch.instance;
    c.user = "nobody";
    c.runtime_dir = scratch.dir / "run";
    c.capture_interface = NetnsPair::kMeterIf;
    c.classifier_host = "127.0.0.1";
    c.classifier_port = 4739;
    write_file(conf, c.text());
    const std::vector<std::string> start = NetnsLab::in(lab.meter(), {binary("angel-ctld").string(), "-c", conf.string()});
    CommandResult r = netns::run(start, 30);
    ASSERT_EQ(exit_code(r), 0) << r.describe() << r.err;
    const pid_t pid = scratch.daemon_pid();  // read at once: no wait
    ASSERT_GT(pid, 0) << "the pidfile was not written when angel-ctld returned";
    EXPECT_EQ(read_file(fs::path("/proc") / std::to_string(pid) / "comm"), "angel-ctld\n");
    r = netns::run(start, 30);
    EXPECT_EQ(exit_code(r), 75) << "a second angel-ctld of the instance: " << r.describe() << r.err;
    EXPECT_EQ(scratch.daemon_pid(), pid);
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    for (int i = 0; i < 300 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_NE(kill(pid, 0), 0) << "angel-ctld did not stop on SIGTERM";
}

}  // namespace
}  // namespace angel::itest
