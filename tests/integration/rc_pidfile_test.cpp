// The Linux service script rc.d/angel-flowmeter against pidfiles that do not name a running
// angel-ctld, run as an operator would (ANGEL_SBIN: the build's bin dir; ANGEL_CONF: a file in a
// temp dir whose runtime_dir is in that temp dir), without a meter.
//
// The pidfile (where `angel-ctld -c FILE --pidfile-path` says) holds "-1", "0", "abc", nothing,
// the pid of a sleeping child of this test, numbers that are not plain ("+PID", " PID", "0PID",
// "PID PID", "PID\n\n", ...) or the pid of a dead process. Asserted, with exact LSB codes:
// status 1 (a pidfile, no angel-ctld), stop 0 (not running), reload 7 (not running), each with a
// one-line "does not hold the pid of a running angel-ctld" on stderr; nothing signalled: the
// sleeping child and this process still run, the pidfile is left as it was. Without a pidfile:
// status 3, stop 0, reload 7.
// A positive control keeps that from passing vacuously: a copy of sleep named angel-ctld (a
// process whose comm is angel-ctld, which the script accepts) is reported running (status 4: no
// control socket answers) when the pidfile holds its plain pid, and `stop` ends it with SIGTERM.
//
// The contents that name no process ("-1", "0", "abc", empty, "1") are run inside a fresh PID
// namespace (unshare --pid --mount-proc) beside a canary process: a script that regressed to
// `kill -TERM -1` can then only hit the canary (reported as exit 99), never this machine's
// processes. Everything (temp dir, child processes) goes on failure too; each command is bounded.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr Millis kCommandTimeout{15000};  // each script run; a correct one takes well under 1 s
constexpr const char* kNotCtld = "does not hold the pid of a running angel-ctld";

// Exit code of a command that exited; -1 when it timed out or died from a signal.
int exit_code(const CommandResult& r) { return r.timed_out ? -1 : r.status.code(); }

std::string show(const CommandResult& r) {
    return r.describe() + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

// Empty when `unshare --pid --fork --mount-proc` works here, else why not.
std::string pid_namespace_unavailable() {
    static const std::string why = [] {
        if (!have_program("unshare")) return std::string("no unshare in PATH");
        const CommandResult r =
            run_command({"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "true"}, Millis(10000));
        return r.ok() ? std::string() : "unshare --pid --mount-proc fails: " + r.describe();
    }();
    return why;
}

// In the namespace: the canary sleeps beside the script; afterwards only our own SIGKILL may
// have ended it (wait status 137), else whatever the script did reached it.
constexpr const char* kGuard =
    "sleep 300 >/dev/null 2>&1 & c=$!\n"
    "sh \"$1\" \"$2\"; rc=$?\n"
    "kill -KILL $c; wait $c 2>/dev/null; w=$?\n"
    "if [ $w -ne 137 ]; then echo \"rc_pidfile_test: the canary was signalled (wait status $w)\" >&2; exit 99; fi\n"
    "exit $rc\n";

class RcPidfile : public ::testing::Test {
protected:
    void SetUp() override {
        if (geteuid() != 0) GTEST_SKIP() << "needs root (the service script runs as root)";
        script_ = source_dir() / "rc.d" / "angel-flowmeter";
        ASSERT_TRUE(fs::exists(script_)) << "missing " << script_;
        for (const char* b : {"angel-ctld", "angelctl"})
            ASSERT_TRUE(fs::exists(binary(b))) << "no " << b << " in " << bin_dir() << " (set ANGEL_BIN_DIR)";

        fs::create_directories(dir_.path() / "run");
        conf_ = dir_ / "flowmeter.conf";
        MeterConfig c;
        c.instance = unique_name("rcpid");
        c.runtime_dir = dir_.path() / "run";
        write_file(conf_, c.text());
        const CommandResult r =
            run_command({binary("angel-ctld").string(), "-c", conf_.string(), "--pidfile-path"}, Millis(10000));
        ASSERT_TRUE(r.ok()) << show(r);
        std::string path = r.out;
        while (!path.empty() && path.back() == '\n') path.pop_back();
        pidfile_ = path;
        ASSERT_EQ(pidfile_, dir_.path() / "run" / (c.instance + ".pid"));

        // A harmless process the script must never signal.
        sleeper_ = Process({{"sleep", "300"}, {}, {}, {}});
        ASSERT_TRUE(sleeper_.running());
    }

    std::vector<std::string> script_argv(const std::string& action) const {
        return {"env", "ANGEL_CONF=" + conf_.string(), "ANGEL_SBIN=" + bin_dir().string(), "sh", script_.string(),
                action};
    }
    // The script as an operator runs it.
    CommandResult rc(const std::string& action) const { return run_command(script_argv(action), kCommandTimeout); }
    // The script in a PID namespace of its own, beside a canary (kGuard).
    CommandResult rc_guarded(const std::string& action) const {
        return run_command({"unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "env",
                            "ANGEL_CONF=" + conf_.string(), "ANGEL_SBIN=" + bin_dir().string(), "sh", "-c", kGuard,
                            "sh", script_.string(), action},
                           kCommandTimeout);
    }

    // status 1, stop 0, reload 7, each saying why on stderr (with `shown`, what the pidfile holds
    // as the script prints it); nothing signalled, the pidfile untouched.
    void expect_refused(const std::string& content, const std::string& shown, bool guarded) {
        write_file(pidfile_, content);
        struct Want {
            const char* action;
            int code;
            const char* out;
        };
        for (const Want& w : {Want{"status", 1, "dead, pidfile"}, Want{"stop", 0, "not running"},
                              Want{"reload", 7, "not running"}, Want{"status", 1, "dead, pidfile"}}) {
            SCOPED_TRACE(std::string(w.action) + " with the pidfile holding '" + content + "'");
            const CommandResult r = guarded ? rc_guarded(w.action) : rc(w.action);
            EXPECT_EQ(exit_code(r), w.code) << show(r);
            EXPECT_NE(r.out.find(w.out), std::string::npos) << show(r);
            EXPECT_NE(r.err.find(kNotCtld), std::string::npos) << show(r);
            EXPECT_NE(r.err.find("(holds '" + shown + "')"), std::string::npos) << show(r);
            EXPECT_EQ(count_of(r.err, "\n"), 1u) << "one line on stderr\n" << show(r);
            EXPECT_EQ(r.out.find("stopped"), std::string::npos) << show(r);
            EXPECT_TRUE(sleeper_.running()) << "the sleeping child was signalled: " << sleeper_.status()->describe();
            EXPECT_EQ(kill(getpid(), 0), 0);
            EXPECT_EQ(read_file(pidfile_), content) << "the script changed the pidfile";
        }
    }

    // A copy of sleep named angel-ctld, running: comm "angel-ctld", exe not the build's angel-ctld.
    // It is the child of a shell that waits for it (as init reaps the real ctld: a zombie would
    // keep `kill -0` true) and then exits with its status; *pid is set to the copy's pid (0 when
    // it did not come up).
    Process start_fake_ctld(pid_t* pid) {
        *pid = 0;
        const fs::path fake_dir = dir_.path() / "fake";
        fs::create_directories(fake_dir);
        const fs::path fake = fake_dir / "angel-ctld";
        const fs::path pid_out = fake_dir / "pid";
        const CommandResult which = run_command({"sh", "-c", "command -v sleep"}, Millis(5000));
        std::string sleep_path = which.out;
        while (!sleep_path.empty() && sleep_path.back() == '\n') sleep_path.pop_back();
        if (!fs::exists(fake)) fs::copy_file(sleep_path, fake);  // follows a symlink
        fs::permissions(fake, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
        Process p({{"sh", "-c", "\"$0\" 300 & echo $! > \"$1\"; wait $!", fake.string(), pid_out.string()}, {}, {}, {}});
        wait_until([&] {
            const long n = std::strtol(read_file(pid_out).c_str(), nullptr, 10);
            if (n > 0 && read_file("/proc/" + std::to_string(n) + "/comm") == "angel-ctld\n") *pid = static_cast<pid_t>(n);
            return *pid > 0 || !p.running();
        }, Millis(5000));
        return p;
    }

    TempDir dir_{"angel-rcpid"};
    fs::path script_, conf_, pidfile_;
    Process sleeper_;
};

TEST_F(RcPidfile, MinusOne) {
    if (const std::string why = pid_namespace_unavailable(); !why.empty())
        GTEST_SKIP() << "not run without a PID namespace to contain `kill -1`: " << why;
    expect_refused("-1\n", "-1", true);
}

TEST_F(RcPidfile, Zero) {
    if (const std::string why = pid_namespace_unavailable(); !why.empty()) GTEST_SKIP() << why;
    expect_refused("0\n", "0", true);
    expect_refused("0", "0", true);
}

TEST_F(RcPidfile, NotANumber) {
    if (const std::string why = pid_namespace_unavailable(); !why.empty()) GTEST_SKIP() << why;
    expect_refused("abc\n", "abc", true);
}

TEST_F(RcPidfile, EmptyFile) {
    if (const std::string why = pid_namespace_unavailable(); !why.empty()) GTEST_SKIP() << why;
    expect_refused("", "", true);
}

TEST_F(RcPidfile, PidOne) {
    if (const std::string why = pid_namespace_unavailable(); !why.empty()) GTEST_SKIP() << why;
    expect_refused("1\n", "1", true);
}

// (d): a live process that is not angel-ctld. Not in a namespace: the script has to see it.
TEST_F(RcPidfile, PidOfAnotherProcess) {
    const std::string pid = std::to_string(sleeper_.pid());
    expect_refused(pid + "\n", pid, false);
    EXPECT_TRUE(sleeper_.running());
}

// A valid number whose process is gone (ctld killed hard): LSB's "dead, pidfile exists".
TEST_F(RcPidfile, PidOfDeadProcess) {
    Process gone({{"true"}, {}, {}, {}});
    ASSERT_TRUE(gone.wait_for(Millis(10000)).has_value()) << "true did not exit";
    const std::string pid = std::to_string(gone.pid());
    expect_refused(pid + "\n", pid, false);
}

TEST_F(RcPidfile, NoPidfile) {
    ASSERT_FALSE(fs::exists(pidfile_));
    CommandResult r = rc("status");
    EXPECT_EQ(exit_code(r), 3) << show(r);
    r = rc("stop");
    EXPECT_EQ(exit_code(r), 0) << show(r);
    EXPECT_NE(r.out.find("not running"), std::string::npos) << show(r);
    r = rc("reload");
    EXPECT_EQ(exit_code(r), 7) << show(r);
    EXPECT_TRUE(sleeper_.running());
}

// Only a plain number names the process, even when that process is an angel-ctld; with a plain
// number the script does act on it (so the refusals above are not vacuous).
TEST_F(RcPidfile, OnlyAPlainNumberNamesAngelCtld) {
    pid_t fake_pid = 0;
    Process fake = start_fake_ctld(&fake_pid);  // the shell that waits for the copy
    ASSERT_GT(fake_pid, 0) << "the copy of sleep named angel-ctld did not run";
    const std::string pid = std::to_string(fake_pid);
    auto fake_alive = [&] { return kill(fake_pid, 0) == 0 && fake.running(); };

    const std::vector<std::pair<std::string, std::string>> malformed = {
        {"+" + pid + "\n", "+" + pid},      {"-" + pid + "\n", "-" + pid},
        {" " + pid + "\n", " " + pid},      {pid + " \n", pid + " "},
        {"0" + pid + "\n", "0" + pid},      {pid + " " + pid + "\n", pid + " " + pid},
        {pid + "\n\n", pid},          {pid + "\n" + pid + "\n", pid + " " + pid},
        {pid + "\r\n", pid + "?"},           {std::string(pid) + '\0' + "\n", pid + "?"},
        {"0x" + pid + "\n", "0x" + pid},     {pid + "abc\n", pid + "abc"},
        {"99999999999" + pid + "\n", "99999999999" + pid},
    };
    for (const auto& [content, shown] : malformed) {
        write_file(pidfile_, content);
        for (const char* action : {"status", "stop"}) {
            SCOPED_TRACE(std::string(action) + " with the pidfile holding '" + shown + "'");
            const CommandResult r = rc(action);
            EXPECT_EQ(exit_code(r), std::string(action) == "stop" ? 0 : 1) << show(r);
            EXPECT_NE(r.err.find(kNotCtld), std::string::npos) << show(r);
            EXPECT_NE(r.err.find("(holds '" + shown + "')"), std::string::npos) << show(r);
            ASSERT_TRUE(fake_alive()) << "signalled through a pidfile holding '" << shown << "'";
        }
    }

    // The plain pid, without and with the trailing newline: it is angel-ctld to the script.
    write_file(pidfile_, pid);
    CommandResult r = rc("status");
    EXPECT_EQ(exit_code(r), 4) << "running, but no control socket answers\n" << show(r);
    EXPECT_EQ(r.err.find(kNotCtld), std::string::npos) << show(r);
    EXPECT_TRUE(fake_alive());

    write_file(pidfile_, pid + "\n");
    r = rc("stop");
    EXPECT_EQ(exit_code(r), 0) << show(r);
    EXPECT_NE(r.out.find("stopped"), std::string::npos) << show(r);
    const auto st = fake.wait_for(Millis(5000));
    ASSERT_TRUE(st.has_value()) << "stop did not end the process named angel-ctld";
    EXPECT_EQ(st->code(), 128 + SIGTERM) << "the shell reports how the copy ended: " << st->describe();
    EXPECT_TRUE(sleeper_.running());
}

}  // namespace
}  // namespace angel::itest
