// The privilege boundary as an operator meets it (issue 9's reproductions, each as a test):
//   - `user` that does not exist, or root: a configuration error at -t and at start (78);
//     unset with no `angel` account: nobody, said by -t;
//   - runtime_dir that is a symlink, not root's, or writable by others: refused before start;
//     a symlink where the pidfile, a stage lock or .idkey goes: refused, the target untouched;
//   - an operator in control.group runs angelctl status but cannot open the shared memory;
//     the stages' user is refused by the socket even with the group;
//   - a stage that makes a forbidden system call is killed (SIGSYS) and restarted with backoff;
//   - stages in process groups of their own: SIGINT to ctld's group stops the meter in order;
//   - stage-written FlowMap counts far out of range: angelctl flows/status answer, ctld lives;
//   - angelctl flows is bounded (--limit, --top, the default);
//   - a reloaded supervisor.hang_timeout takes effect;
//   - the meter runs from a tree under a 0700 directory (a clone under /root).
// Live meters here capture on lo with a filter for a documentation prefix (nothing matches)
// or, for the flows test, UDP datagrams the test sends to 127.0.0.1.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

struct Meter {
    TempDir dir{"angel-priv"};
    std::string inst = unique_name("priv");
    ShmGuard shm{inst};
    fs::path conf = dir / "m.conf";
    fs::path run = dir / "run";
    Process ctld;

    std::string text(const std::string& extra, const std::string& networks = "\"192.0.2.0/24\"") const {
        return "instance = \"" + inst + "\";\nruntime_dir = \"" + run.string() +
               "\";\ncapture = { interface = \"lo\"; };\nclassifier = { host = \"127.0.0.1\"; port = 9; };\n"
               "customers = { networks = [" + networks + "]; };\n" + extra + "\n";
    }
    void write(const std::string& extra, const std::string& networks = "\"192.0.2.0/24\"") const {
        write_file(conf, text(extra, networks));
    }
    CommandResult check() const { return run_command({binary("angel-ctld").string(), "-t", "-c", conf.string()}, 10000ms); }
    CommandResult start_fg_to_end(Millis t = 10000ms) const {
        return run_command({binary("angel-ctld").string(), "-f", "-c", conf.string()}, t);
    }
    std::string log() const { return read_file(dir / "ctld.err"); }
    bool start(std::vector<std::string> prefix = {}) {
        std::vector<std::string> argv = std::move(prefix);
        for (const std::string& a : {binary("angel-ctld").string(), std::string("-f"), std::string("-c"), conf.string()})
            argv.push_back(a);
        ctld = Process({argv, dir / "ctld.out", dir / "ctld.err", {}});
        return wait_until([&] { return count_of(log(), " ready") >= 3; }, 15000ms);
    }
    CommandResult ctl(std::vector<std::string> args) const {
        std::vector<std::string> argv = {binary("angelctl").string(), "-c", conf.string()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run_command(argv, 15000ms);
    }
    std::string pidfile() const { return (run / (inst + ".pid")).string(); }
};

}  // namespace

TEST(PrivilegeBoundary, RootOrMissingUserIsAConfigurationError) {
    Meter m;
    m.write("user = \"root\";");
    CommandResult r = m.check();
    EXPECT_EQ(r.status.code(), 78) << r.err;
    EXPECT_NE(r.err.find("user must not be root"), std::string::npos) << r.err;

    m.write("user = \"nosuchuser\";");
    r = m.check();
    EXPECT_EQ(r.status.code(), 78) << r.err;
    EXPECT_NE(r.err.find("no account named 'nosuchuser'"), std::string::npos) << r.err;
    // At start too, before anything exists.
    r = m.start_fg_to_end();
    EXPECT_EQ(r.status.code(), 78) << r.err;
    EXPECT_FALSE(fs::exists(ShmGuard::path_of(m.inst)));
    EXPECT_FALSE(fs::exists(m.run));

    // An account with uid 0 under another name is root as well.
    if (getpwnam("angel") == nullptr) {
        m.write("");
        r = m.check();
        EXPECT_TRUE(r.status.ok()) << r.err;
        EXPECT_NE(r.out.find("stages run as nobody (uid 65534"), std::string::npos) << r.out;
    }
    m.write("user = \"nobody\";\ncontrol = { group = \"nogroup\"; };");
    r = m.check();
    EXPECT_EQ(r.status.code(), 78) << r.err;
    EXPECT_NE(r.err.find("operators and stages must be apart"), std::string::npos) << r.err;
}

TEST(PrivilegeBoundary, RuntimeDirMustBeRootsAndPrivate) {
    Meter m;
    fs::create_directory(m.dir / "real");
    fs::create_directory_symlink(m.dir / "real", m.run);
    m.write("");
    CommandResult r = m.start_fg_to_end();
    EXPECT_EQ(r.status.code(), EX_CANTCREAT) << r.err;
    EXPECT_NE(r.err.find("is a symbolic link"), std::string::npos) << r.err;
    fs::remove(m.run);

    fs::create_directory(m.run);
    ASSERT_EQ(chown(m.run.c_str(), 65534, 65534), 0);
    r = m.start_fg_to_end();
    EXPECT_EQ(r.status.code(), EX_CANTCREAT) << r.err;
    EXPECT_NE(r.err.find("is owned by uid 65534"), std::string::npos) << r.err;
    ASSERT_EQ(chown(m.run.c_str(), 0, 0), 0);
    ASSERT_EQ(chmod(m.run.c_str(), 0777), 0);
    r = m.start_fg_to_end();
    EXPECT_EQ(r.status.code(), EX_CANTCREAT) << r.err;
    EXPECT_NE(r.err.find("writable by group or others"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(ShmGuard::path_of(m.inst)));
}

TEST(PrivilegeBoundary, SymlinksInRuntimeDirAreNotFollowed) {
    Meter m;
    m.write("");
    fs::create_directory(m.run);
    ASSERT_EQ(chmod(m.run.c_str(), 0750), 0);
    const fs::path victim = m.dir / "victim";
    write_file(victim, "precious\n");
    // The pidfile: root would have truncated the link's target.
    fs::create_symlink(victim, m.pidfile());
    CommandResult r = m.start_fg_to_end();
    EXPECT_EQ(r.status.code(), EX_TEMPFAIL) << r.err;
    EXPECT_NE(r.err.find("is a symbolic link: refused"), std::string::npos) << r.err;
    EXPECT_EQ(read_file(victim), "precious\n");
    fs::remove(m.pidfile());

    // .idkey read through a link: refused (the key would be whatever the link points at).
    write_file(m.dir / "key", "00112233445566778899aabbccddeeff\n");
    const fs::path idkey = m.run / (m.inst + ".idkey");
    fs::create_symlink(m.dir / "key", idkey);
    r = m.start_fg_to_end();
    EXPECT_EQ(r.status.code(), 78) << r.err;
    EXPECT_NE(r.err.find("symbolic link"), std::string::npos) << r.err;
    fs::remove(idkey);

    // A stage's lock: the stage is not started through it, and nothing is created as root.
    const fs::path planted = m.dir / "created-by-root";
    fs::create_symlink(planted, m.run / (m.inst + ".capd.lock"));
    m.ctld = Process({{binary("angel-ctld").string(), "-f", "-c", m.conf.string()}, m.dir / "ctld.out",
                      m.dir / "ctld.err", {}});
    EXPECT_TRUE(wait_until([&] { return m.log().find("cannot open the lock for angel-capd") != std::string::npos; },
                           10000ms))
        << m.log();
    EXPECT_FALSE(fs::exists(planted));
    EXPECT_EQ(m.log().find("started angel-capd"), std::string::npos) << m.log();
    const ExitStatus e = m.ctld.stop(SIGTERM, 30000ms);
    EXPECT_TRUE(e.exited()) << e.describe() << m.log();
    EXPECT_FALSE(fs::exists(planted));
}

TEST(PrivilegeBoundary, OperatorsUseTheSocketAndNeverTheSharedMemory) {
    if (!getgrnam("daemon") || !getpwnam("daemon") || !have_program("runuser")) GTEST_SKIP() << "needs daemon, runuser";
    Meter m;
    ASSERT_EQ(chmod(m.dir.path().c_str(), 0755), 0);  // the operator walks to runtime_dir
    m.write("user = \"nobody\";\ncontrol = { group = \"daemon\"; };");
    ASSERT_TRUE(m.start()) << m.log();
    const std::string sock = (m.run / (m.inst + ".sock")).string();
    struct stat st{};
    ASSERT_EQ(stat(sock.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_gid, getgrnam("daemon")->gr_gid);
    // The operator (user daemon, group daemon): status works ...
    const std::string angelctl = copy_binary_for_others("angelctl", m.dir.path()).string();
    CommandResult r = run_command({"runuser", "-u", "daemon", "--", angelctl, "-s", sock, "status"}, 15000ms);
    EXPECT_TRUE(r.status.ok()) << r.describe();
    EXPECT_NE(r.out.find("procd"), std::string::npos) << r.out;
    // ... the shared memory does not (neither object, for reading or writing).
    for (const std::string& obj : {ShmGuard::path_of(m.inst).string(), ShmGuard::path_of(m.inst).string() + ".ctl"}) {
        ASSERT_TRUE(fs::exists(obj));
        r = run_command({"runuser", "-u", "daemon", "--", "cat", obj}, 10000ms);
        EXPECT_FALSE(r.status.ok()) << obj;
        EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
        ASSERT_EQ(stat(obj.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u) << obj;
        EXPECT_EQ(st.st_uid, 0u) << obj;
    }
    // The stages' user with the operators' group passes the file modes, not the socket.
    r = run_command({"runuser", "-u", "nobody", "-g", "daemon", "--", angelctl, "-s", sock, "status"},
                    15000ms);
    EXPECT_FALSE(r.status.ok()) << r.out;
    EXPECT_NE(r.err.find("the stages' user may not use the control socket"), std::string::npos) << r.describe();
    const ExitStatus e = m.ctld.stop(SIGTERM, 30000ms);
    EXPECT_TRUE(e.ok()) << e.describe() << m.log();
}

TEST(PrivilegeBoundary, ForbiddenSystemCallKillsTheStageAndCtldRestartsIt) {
    const std::string lib = ANGEL_FORBIDDEN_CALL_LIB;
    ASSERT_TRUE(fs::exists(lib)) << lib;
    Meter m;
    m.write("");
    ASSERT_TRUE(m.start({"env", "LD_PRELOAD=" + lib, "ANGEL_TEST_FORBIDDEN_CALL=angel-procd",
                         "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0"}))
        << m.log();
    // procd calls ptrace 1.5 s into each life: killed by the filter, restarted with backoff.
    EXPECT_TRUE(wait_until([&] { return count_of(m.log(), "angel-procd died (signal Bad system call") >= 2; }, 15000ms))
        << m.log();
    EXPECT_NE(m.log().find("a system call outside its seccomp allow-list); restarting in 0.5 s"), std::string::npos)
        << m.log();
    EXPECT_TRUE(wait_until([&] { return count_of(m.log(), "started angel-procd") >= 3; }, 5000ms)) << m.log();
    // The other stages, which loaded the same library, were left alone.
    EXPECT_EQ(count_of(m.log(), "started angel-capd"), 1u) << m.log();
    EXPECT_EQ(count_of(m.log(), "started angel-netd"), 1u) << m.log();
    const ExitStatus e = m.ctld.stop(SIGTERM, 40000ms);
    EXPECT_TRUE(e.exited()) << e.describe() << m.log();
}

TEST(PrivilegeBoundary, StagesHaveTheirOwnProcessGroups) {
    Meter m;
    m.write("");
    ASSERT_TRUE(m.start()) << m.log();
    const CommandResult st = m.ctl({"status", "--json"});
    ASSERT_TRUE(st.status.ok()) << st.err;
    const auto stages = json_flat_objects(st.out.substr(st.out.find("\"stages\"")));
    ASSERT_GE(stages.size(), 3u) << st.out;
    const pid_t ctld_group = getpgid(m.ctld.pid());
    for (size_t i = 0; i < 3; ++i) {
        const pid_t pid = static_cast<pid_t>(std::stol(stages[i].at("pid")));
        EXPECT_EQ(getpgid(pid), pid) << stages[i].at("stage");
        EXPECT_NE(getpgid(pid), ctld_group);
    }
    // A Ctrl-C (or `timeout`) aimed at ctld's group: ctld stops the stages in order; none of
    // them "dies" and none is restarted.
    ASSERT_EQ(kill(-ctld_group, SIGINT), 0);
    const auto e = m.ctld.wait_for(30000ms);
    ASSERT_TRUE(e.has_value()) << m.log();
    EXPECT_TRUE(e->ok()) << e->describe() << m.log();
    EXPECT_NE(m.log().find("stopping (INT)"), std::string::npos) << m.log();
    EXPECT_EQ(m.log().find(" died "), std::string::npos) << m.log();
    EXPECT_EQ(count_of(m.log(), "started angel-"), 3u) << m.log();
}

TEST(PrivilegeBoundary, HostileFlowMapCountsLeaveCtldAnswering) {
    Meter m;
    m.write("");
    ASSERT_TRUE(m.start()) << m.log();
    {
        // What the stages' user could write through procd's descriptor (root here writes it).
        auto seg = Segment::attach(m.inst);
        auto* fh = reinterpret_cast<FlowMapHeader*>(seg->base() + seg->layout().flow_map_offset);
        fh->high_water.store(0xFFFFFFF0u);
        fh->live.store(0xFFFFFFFFu);
        seg->header()->event_ring.head.store(1ull << 62);
        seg->header()->packet_ring.capacity = 1ull << 40;
        seg->stage(StageId::netd).state.store(0x12345678);
    }
    for (const std::vector<std::string>& cmd :
         {std::vector<std::string>{"flows"}, {"flows", "--top", "5", "--json"}, {"status"}, {"stats", "--json"}}) {
        const CommandResult r = m.ctl(cmd);
        EXPECT_TRUE(r.status.ok()) << cmd[0] << ": " << r.describe();
    }
    const CommandResult stats = m.ctl({"stats", "--json"});
    EXPECT_GE(json_number_in(stats.out, "ctld", "bad_flow_count"), 1u) << stats.out;
    EXPECT_NE(m.log().find("refused a value a stage wrote into shared memory"), std::string::npos) << m.log();
    EXPECT_TRUE(m.ctld.running());
    const ExitStatus e = m.ctld.stop(SIGTERM, 40000ms);
    EXPECT_TRUE(e.exited()) << e.describe() << m.log();
}

TEST(PrivilegeBoundary, FlowsRepliesAreBounded) {
    Meter m;
    m.write("", "\"127.0.0.0/8\"");  // loopback is what this test sends
    ASSERT_TRUE(m.start()) << m.log();
    // 60 UDP flows to the discard port on loopback, each from its own source port.
    for (int i = 0; i < 60; ++i) {
        const int fd = socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(9);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (int k = 0; k <= i % 3; ++k) sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        close(fd);
    }
    ASSERT_TRUE(wait_until([&] { return count_of(m.ctl({"flows"}).out, "\n") >= 61; }, 10000ms)) << m.ctl({"flows"}).out;
    CommandResult r = m.ctl({"flows", "--limit", "3"});
    EXPECT_TRUE(r.status.ok()) << r.err;
    EXPECT_EQ(count_of(r.out, "\n"), 1u + 3u + 1u) << r.out;  // header, 3 flows, the note
    EXPECT_NE(r.out.find("more live flows not shown"), std::string::npos) << r.out;
    r = m.ctl({"flows", "--top", "2", "--json"});
    EXPECT_EQ(json_flat_objects(r.out).size(), 2u) << r.out;
    for (const auto& o : json_flat_objects(r.out)) EXPECT_GE(std::stoul(o.at("packets")), 3u) << r.out;
    for (const char* bad : {"0", "10001", "x"}) {
        r = m.ctl({"flows", "--limit", bad});
        EXPECT_EQ(r.status.code(), 1) << bad;
        EXPECT_NE(r.err.find("N must be 1..10000"), std::string::npos) << r.err;
    }
    const ExitStatus e = m.ctld.stop(SIGTERM, 30000ms);
    EXPECT_TRUE(e.ok()) << e.describe() << m.log();
}

TEST(PrivilegeBoundary, ReloadedHangTimeoutTakesEffect) {
    Meter m;
    m.write("supervisor = { hang_timeout = 60; };");
    ASSERT_TRUE(m.start()) << m.log();
    const CommandResult st = m.ctl({"status", "--json"});
    const auto stages = json_flat_objects(st.out.substr(st.out.find("\"stages\"")));
    pid_t netd = -1;
    for (size_t i = 0; i < stages.size() && i < 3; ++i)
        if (stages[i].at("stage") == "netd") netd = static_cast<pid_t>(std::stol(stages[i].at("pid")));
    ASSERT_GT(netd, 0) << st.out;
    m.write("supervisor = { hang_timeout = 1; };");
    const CommandResult r = m.ctl({"reload"});
    EXPECT_TRUE(r.status.ok()) << r.err;
    EXPECT_NE(r.out.find("supervisor.hang_timeout"), std::string::npos) << r.out;
    ASSERT_EQ(kill(netd, SIGSTOP), 0);  // a hung stage: no heartbeat any more
    // With the old 60 s it would still be waiting; the new 1 s kills it within a few.
    EXPECT_TRUE(wait_until([&] { return m.log().find("angel-netd stopped heartbeating") != std::string::npos; }, 8000ms))
        << m.log();
    EXPECT_TRUE(wait_until([&] { return count_of(m.log(), "started angel-netd") >= 2; }, 5000ms)) << m.log();
    const ExitStatus e = m.ctld.stop(SIGTERM, 30000ms);
    EXPECT_TRUE(e.exited()) << e.describe() << m.log();
}

TEST(PrivilegeBoundary, RunsFromATreeUnderA0700Directory) {
    // A clone under /root: the stages exec as root and drop inside, so an unprivileged user
    // never needs to reach the binaries.
    TempDir home("angel-home");
    ASSERT_EQ(chmod(home.path().c_str(), 0700), 0);
    const fs::path bin = home / "clone" / "build" / "bin";
    fs::create_directories(bin);
    for (const char* b : {"angel-ctld", "angel-capd", "angel-procd", "angel-netd"})
        fs::copy_file(binary(b), bin / b);
    const fs::path pcap = shared_pcaps_dir("real");
    const auto files = files_in(pcap);
    if (files.empty()) GTEST_SKIP() << "no ../shared/pcaps/real";
    fs::path trace;
    for (const auto& f : files)
        if (f.extension() == ".pcap") { trace = f; break; }
    if (trace.empty()) GTEST_SKIP() << "no classic pcap in " << pcap;
    const std::string inst = unique_name("home");
    ShmGuard shm(inst);
    write_file(home / "m.conf", "instance = \"" + inst + "\";\nuser = \"nobody\";\nruntime_dir = \"" +
                                    (home / "run").string() + "\";\nclassifier = { host = \"127.0.0.1\"; port = 9; };\n");
    const CommandResult r = run_command({(bin / "angel-ctld").string(), "-f", "-c", (home / "m.conf").string(),
                                         "--replay", trace.string()},
                                        60000ms);
    EXPECT_TRUE(r.status.ok()) << r.describe() << r.err;
    const auto line = find_stop_line(r.err, inst);
    ASSERT_TRUE(line.has_value()) << r.err;
    const auto c = parse_counters(*line);
    EXPECT_GT(c.at("captured"), 0u);
    EXPECT_EQ(c.at("procd_packets"), c.at("captured"));
    EXPECT_EQ(c.at("flows_started"), c.at("flows_ended"));
}
