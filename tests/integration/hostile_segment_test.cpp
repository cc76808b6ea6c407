// The privilege boundary under attack (issue 9): a process with the stage user's rights
// writes random and extreme values into the shared memory of a meter that captures live,
// round after round, while angelctl status/stats/flows and `restart` run between rounds.
//
//   sender netns: tcpreplay -i veth-s ──veth──> meter netns: veth-m
//                                               angel-ctld -f (user "nobody": capd, procd, netd)
//                                               └─ IPFIX over lo ─> angel-sink
//   test process ── fork ──> hostile writer: opens /dev/shm/angel.<i> O_RDWR and .ctl O_RDONLY
//                            as root (what a stage gets), drops to nobody, then writes
//                            (tests/integration/hostile_writer.hpp)
//
// What is asserted:
//  - The writer, once it is the stages' user, cannot open either object by name (read-write,
//    write-only or read-only: EACCES), cannot reopen the control descriptor read-write through
//    /proc/self/fd, cannot map it writable (mmap, mprotect), write it or truncate it; a
//    copy-on-write mapping's writes do not reach it. It can map the data segment read-write.
//  - Each round (25, or fewer if the time budget of the rounds runs out: at least 10) the
//    writer overwrites the data segment's header (after magic/version/sizes), every stage
//    status, every ring control, the FlowMap header and entries, event-ring slots and some
//    ring contents; then angelctl status, stats, flows, flows --top 5 --json and, in some
//    rounds, restart capd (procd, netd) must each answer within their 10 s (exit 0, or a clean
//    ERR), and angel-ctld must still run. The stages may die of what the writer did (they trust
//    each other): ctld restarts them; only root's side is judged.
//  - Throughout (sampled every 50 ms and around every command), no angel-capd/-procd/-netd
//    whose parent is this ctld runs with any uid 0 (real, effective, saved, filesystem) once it
//    is older than 1 s (capd: 1.5 s, it opens its capture as root first).
//  - At the end the writer puts back what no stage repairs by itself (FlowMap geometry, stop
//    flags, ring positions), the three stages are restarted with angelctl, and SIGTERM stops the
//    meter in order: exit 0 within 60 s, the final counter line logged; the log shows
//    "refused a value a stage wrote into shared memory" (the checked view saw bad values;
//    angelctl stats counted them as ctld.bad_*), and no sanitizer report from ctld
//    ("==<ctld pid>==ERROR: ...Sanitizer", or a UBSan "runtime error:" in ctld/ code).
//    /dev/shm/angel.<i> and .ctl are gone.
//  - With PostgreSQL installed (tests/integration/pg_server.hpp) the meter writes flows to a
//    database, so that ctld's database thread reads the event ring (CheckedEventReader) and
//    the FlowMap (reconcile) too: PostgreSQL never refuses a value ctld took from shared memory
//    ("out of range", "invalid input": such a batch would be retried forever), and once the
//    writer is gone and the stages are fresh, the flow ends of the stop reach the database
//    (the reader is not left parked or wedged by what the writer did). Without PostgreSQL
//    these two checks are skipped (said on stdout).
// ANGEL_TEST_SEED repeats a run's values. Everything is removed on failure too (NetnsMeter;
// the writer is killed and reaped by its destructor).
#include <gtest/gtest.h>
#include <dirent.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hostile_writer.hpp"
#include "meter_harness.hpp"
#include "pg_server.hpp"

namespace angel::itest {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr unsigned kRounds = 25;
constexpr unsigned kMinRounds = 10;
constexpr double kRoundsBudgetS = 100;  // the rounds stop here even if fewer than kRounds ran
constexpr unsigned kPps = 20000;
constexpr unsigned kLoops = 400;        // 400 x 2793 frames at 20k/s: tcpreplay's 60 s cap ends it
constexpr unsigned kMaxTrafficRuns = 3;
constexpr double kRootGraceS = 1.0;     // a stage may be root this long after its fork (exec, sandbox)
constexpr double kCapdRootGraceS = 1.5; // capd opens its capture as root first

const char* const kBoundaryNames[] = {"bad_stage_state", "bad_ring_position", "bad_flow_count", "bad_flow_entry",
                                      "bad_event_record"};

// ---- who runs as what ---------------------------------------------------------------------------

double uptime_s() {
    std::ifstream in("/proc/uptime");
    double up = 0;
    in >> up;
    return up;
}

// Seconds since the process started (/proc/<pid>/stat field 22); negative when unreadable.
double age_s(pid_t pid, double now_up) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return -1;
    const size_t rp = line.rfind(')');
    if (rp == std::string::npos) return -1;
    std::istringstream f(line.substr(rp + 2));  // field 3 (state) onwards
    std::string v;
    unsigned long long start = 0;
    for (int i = 3; i <= 22 && f >> v; ++i)
        if (i == 22) start = std::strtoull(v.c_str(), nullptr, 10);
    return now_up - static_cast<double>(start) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct ProcStatus {
    std::string name, state;
    long ppid = -1;
    long uid[4] = {-1, -1, -1, -1};  // real, effective, saved, filesystem
};

bool read_status(const std::string& path, ProcStatus* s) {
    std::ifstream in(path);
    if (!in) return false;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream l(line);
        std::string key;
        l >> key;
        if (key == "Name:") l >> s->name;
        else if (key == "State:") l >> s->state;
        else if (key == "PPid:") l >> s->ppid;
        else if (key == "Uid:") l >> s->uid[0] >> s->uid[1] >> s->uid[2] >> s->uid[3];
    }
    return s->ppid >= 0 && s->uid[0] >= 0;
}

// Watches the children of one ctld: every sample lists them and notes any that holds uid 0
// (in any of its four uids, in any of its threads) past its grace period.
struct RootWatch {
    pid_t ctld = -1;
    uint64_t samples = 0, children_seen = 0;
    uint64_t young_root = 0;  // children seen as root inside their grace period (capd opening its capture)
    std::set<pid_t> pids;     // every child seen
    std::vector<std::string> violations;

    void sample() {
        ++samples;
        const double up = uptime_s();
        DIR* d = opendir("/proc");
        if (!d) return;
        while (dirent* e = readdir(d)) {
            char* end = nullptr;
            const long pid = std::strtol(e->d_name, &end, 10);
            if (pid <= 0 || *end) continue;
            ProcStatus s;
            if (!read_status("/proc/" + std::string(e->d_name) + "/status", &s) || s.ppid != ctld) continue;
            ++children_seen;
            pids.insert(static_cast<pid_t>(pid));
            bool root = false;
            for (long u : s.uid) root = root || u == 0;
            // Threads (none expected) carry their own credentials.
            if (DIR* t = opendir(("/proc/" + std::string(e->d_name) + "/task").c_str())) {
                while (dirent* te = readdir(t)) {
                    if (te->d_name[0] == '.') continue;
                    ProcStatus ts;
                    if (read_status("/proc/" + std::string(e->d_name) + "/task/" + te->d_name + "/status", &ts))
                        for (long u : ts.uid) root = root || u == 0;
                }
                closedir(t);
            }
            if (!root || s.state == "Z") continue;
            const double age = age_s(static_cast<pid_t>(pid), up);
            if (age < 0) continue;  // gone meanwhile
            const double grace = s.name == "angel-capd" ? kCapdRootGraceS : kRootGraceS;
            if (age < grace) {
                ++young_root;
                continue;
            }
            if (violations.size() < 20) {
                char buf[256];
                std::snprintf(buf, sizeof buf, "%s (pid %ld, state %s) runs with uid %ld/%ld/%ld/%ld at %.2f s old",
                              s.name.c_str(), pid, s.state.c_str(), s.uid[0], s.uid[1], s.uid[2], s.uid[3], age);
                violations.push_back(buf);
            } else {
                violations.back() = "... (more)";
            }
        }
        closedir(d);
    }
    // Samples every 50 ms for `s` seconds.
    void watch_for(double s) {
        const auto t0 = Clock::now();
        do {
            sample();
            sleep_s(0.05);
        } while (since(t0) < s);
    }
};

// ---- angelctl -------------------------------------------------------------------------------------

struct CtlTally {
    uint64_t ok = 0, clean_err = 0, failed = 0;
    std::vector<std::string> failures;
};

// An answer: exit 0, or exit 1 with angelctl's "angelctl: <ctld's ERR text>" (ctld answered).
// Anything else (no answer within 10 s, cannot connect, a protocol error, a timeout) is not.
bool answered(const netns::CommandResult& r) {
    if (r.timed_out || r.status < 0 || !WIFEXITED(r.status)) return false;
    if (WEXITSTATUS(r.status) == 0) return true;
    return WEXITSTATUS(r.status) == 1 && r.err.rfind("angelctl: ", 0) == 0 &&
           r.err.find("cannot reach") == std::string::npos && r.err.find("no answer") == std::string::npos &&
           r.err.find("unexpected answer") == std::string::npos;
}

netns::CommandResult ctl(NetnsMeter& m, CtlTally& t, RootWatch& w, unsigned round,
                         const std::vector<std::string>& args) {
    const auto r = angelctl(m.sock, args);
    std::string cmd;
    for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
    if (!answered(r)) {
        ++t.failed;
        if (t.failures.size() < 10)
            t.failures.push_back("round " + std::to_string(round) + ": angelctl " + cmd + ": " + r.describe());
    } else if (WEXITSTATUS(r.status) == 0) {
        ++t.ok;
    } else {
        ++t.clean_err;
    }
    w.sample();
    return r;
}

std::map<std::string, uint64_t> boundary_counts(const std::string& stats_text) {
    std::map<std::string, uint64_t> c;
    for (const char* k : kBoundaryNames)
        if (const auto v = number_after(stats_text, std::string("ctld.") + k)) c[k] = *v;
    return c;
}

// ---- sanitizer reports ----------------------------------------------------------------------------

struct SanitizerLines {
    std::vector<std::string> ctld;    // reports of ctld itself
    std::vector<std::string> others;  // of other processes (stages), for the record
};

// "==PID==ERROR: AddressSanitizer: ..." (and LeakSanitizer, UndefinedBehaviorSanitizer) carry
// the pid; UBSan's "path:line:col: runtime error: ..." does not: it is ctld's when the path is in
// ctld/ (a report anywhere else in ctld aborts it: -fno-sanitize-recover, halt_on_error, and the
// liveness and exit-code checks see that).
SanitizerLines sanitizer_lines(const std::string& log, pid_t ctld) {
    SanitizerLines s;
    std::istringstream in(log);
    std::string line;
    const std::string mine = "==" + std::to_string(ctld) + "==";
    while (std::getline(in, line)) {
        if (line.find("Sanitizer") != std::string::npos && line.rfind("==", 0) == 0 &&
            line.find("==ERROR:") != std::string::npos) {
            (line.rfind(mine, 0) == 0 ? s.ctld : s.others).push_back(line);
        } else if (line.find("runtime error:") != std::string::npos) {
            (line.find("/ctld/") != std::string::npos ? s.ctld : s.others).push_back(line);
        } else if (line.find("AddressSanitizer") != std::string::npos && line.find(mine) != std::string::npos) {
            s.ctld.push_back(line);
        }
    }
    return s;
}

std::string tail_of(const std::string& s, size_t n = 12000) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

std::string describe_facts(const HostileFacts& f) {
    auto e = [](int v) { return v == 0 ? std::string("SUCCEEDED") : std::string(strerrorname_np(v) ? strerrorname_np(v) : "?"); };
    std::ostringstream o;
    o << "uid " << f.ruid << "/" << f.euid << "/" << f.suid << " gid " << f.rgid << "/" << f.egid << "/" << f.sgid
      << " groups " << f.ngroups << (f.regained_root ? " REGAINED ROOT" : "") << " | open data rw " << e(f.open_data_rw_errno)
      << ", ro " << e(f.open_data_ro_errno) << " | open ctl rw " << e(f.open_ctl_rw_errno) << ", wo "
      << e(f.open_ctl_wo_errno) << " | reopen /proc/self/fd/<ctl> rw " << e(f.reopen_ctl_rw_errno)
      << " | mmap ctl shared rw " << e(f.mmap_ctl_shared_rw_errno) << ", w " << e(f.mmap_ctl_shared_w_errno)
      << " | mprotect ctl rw " << e(f.mprotect_ctl_errno) << " | pwrite ctl " << e(f.pwrite_ctl_errno)
      << " | ftruncate ctl " << e(f.ftruncate_ctl_errno) << " | private write leaked " << f.private_write_leaked
      << " | mmap data rw " << e(f.mmap_data_rw_errno);
    return o.str();
}

}  // namespace

TEST(HostileSegment, StageUserWritesNeverHurtRoot) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    for (const char* b : {"angel-ctld", "angel-capd", "angel-procd", "angel-netd", "angelctl", "angel-sink"})
        ASSERT_TRUE(fs::exists(binary(b))) << "no " << b << " in " << bin_dir() << " (set ANGEL_BIN_DIR)";
    const passwd* pw = getpwnam("nobody");
    if (!pw) GTEST_SKIP() << "no 'nobody' account";
    const uid_t uid = pw->pw_uid;
    const gid_t gid = pw->pw_gid;
    ASSERT_NE(uid, 0u);
    ASSERT_NE(gid, 0u);

    const char* seed_env = std::getenv("ANGEL_TEST_SEED");
    const uint64_t seed = seed_env && *seed_env ? std::strtoull(seed_env, nullptr, 10)
                                                : static_cast<uint64_t>(time(nullptr)) * 2654435761ull % 4294967296ull;
    std::printf("[ hostile ] seed %llu (ANGEL_TEST_SEED to repeat)\n", static_cast<unsigned long long>(seed));
    std::fflush(stdout);
    const auto t0 = Clock::now();

    // With a database, ctld's database thread reads the event ring (CheckedEventReader) and
    // the FlowMap (reconcile): everything the writer can reach is then read on root's side.
    std::unique_ptr<PgServer> pg;  // outlives the meter
    if (const std::string why = PgServer::unavailable_reason(); why.empty()) {
        try {
            pg = std::make_unique<PgServer>();
        } catch (const std::exception& e) {
            std::printf("[ hostile ] no database (%s)\n", e.what());
        }
    } else {
        std::printf("[ hostile ] no database (%s): nothing on root's side reads the event ring's records\n",
                    why.c_str());
    }
    NetnsMeter m("hs", "hostile");  // namespaces angel-hs-*, temp dir /tmp/angel-hostile-*
    const std::string inst = m.scratch.instance;
    {
        MeterConfig c = m.config(4739);
        c.user = "nobody";
        if (pg)
            c.extra = "database = { conninfo = \"" + pg->conninfo() + "\"; meter_id = \"" + inst +
                      "\"; poll_interval = 60; };\n";
        m.write_config(c);
        chmod(m.conf.c_str(), 0600);  // it holds a conninfo
    }
    if (pg) {
        const CommandResult init =
            run_command({binary("angelctl").string(), "-c", m.conf.string(), "db-init"}, Millis(30000));
        ASSERT_TRUE(init.ok()) << init.describe();
    }
    ASSERT_TRUE(m.start_sink(4739, 300));
    ASSERT_TRUE(m.start_meter());
    ASSERT_TRUE(m.wait_ready_count("procd", 1, 15) && m.wait_ready_count("netd", 1, 15)) << m.log();
    const pid_t ctld = m.ctld->pid();
    // `ip netns exec` execs ctld in its own pid: the pid is ctld's.
    ASSERT_EQ(read_file("/proc/" + std::to_string(ctld) + "/comm"), "angel-ctld\n");

    RootWatch watch;
    watch.ctld = ctld;
    watch.watch_for(kCapdRootGraceS + 0.2);  // every stage past its grace period once

    // The writer: forked while this process has no other thread.
    HostileWriter writer(inst, uid, gid, seed);
    ASSERT_TRUE(writer.started()) << "the hostile writer did not start: " << writer.facts().setup_error;
    const HostileFacts& f = writer.facts();
    std::printf("[ hostile ] writer pid %d as nobody: %s\n", writer.pid(), describe_facts(f).c_str());
    EXPECT_EQ(f.ruid, uid);
    EXPECT_EQ(f.euid, uid);
    EXPECT_EQ(f.suid, uid);
    EXPECT_EQ(f.rgid, gid);
    EXPECT_EQ(f.egid, gid);
    EXPECT_EQ(f.sgid, gid);
    EXPECT_EQ(f.ngroups, 0);
    EXPECT_EQ(f.regained_root, 0);
    // By name: nothing, whatever the mode (root-owned 0600).
    EXPECT_EQ(f.open_data_rw_errno, EACCES) << "the stages' user opened /dev/shm/angel." << inst << " read-write";
    EXPECT_EQ(f.open_data_ro_errno, EACCES) << "the stages' user opened /dev/shm/angel." << inst;
    EXPECT_EQ(f.open_ctl_rw_errno, EACCES) << "the stages' user opened the control object read-write";
    EXPECT_EQ(f.open_ctl_wo_errno, EACCES) << "the stages' user opened the control object for writing";
    // The read-only descriptor cannot be turned into a writable one.
    EXPECT_NE(f.reopen_ctl_rw_errno, 0) << "reopened the control object read-write through /proc/self/fd";
    EXPECT_EQ(f.mmap_ctl_shared_rw_errno, EACCES) << "mapped the control object writable";
    EXPECT_NE(f.mmap_ctl_shared_w_errno, 0) << "mapped the control object write-only";
    EXPECT_EQ(f.mprotect_ctl_errno, EACCES) << "made a read-only mapping of the control object writable";
    EXPECT_EQ(f.pwrite_ctl_errno, EBADF) << "wrote to the control object's descriptor";
    EXPECT_NE(f.ftruncate_ctl_errno, 0) << "truncated the control object";
    EXPECT_EQ(f.private_write_leaked, 0) << "a copy-on-write mapping's write reached the control object";
    // What a stage is meant to have.
    EXPECT_EQ(f.mmap_data_rw_errno, 0) << "could not map the data segment read-write: the rounds test nothing";
    EXPECT_EQ(f.ctl_magic_ok, 1);
    EXPECT_EQ(f.ctld_pid, ctld);
    ASSERT_EQ(f.mmap_data_rw_errno, 0);

    std::printf("[ hostile ] layout: total %llu, packet ring %llu B, record ring %llu slots, event ring %llu slots, "
                "FlowMap capacity %u at %llu\n",
                static_cast<unsigned long long>(f.layout.total_size),
                static_cast<unsigned long long>(f.layout.packet_ring_bytes),
                static_cast<unsigned long long>(f.layout.record_ring_slots),
                static_cast<unsigned long long>(f.layout.event_ring_slots), f.layout.flow_map_capacity,
                static_cast<unsigned long long>(f.layout.flow_map_offset));

    unsigned traffic_runs = 1;
    m.start_traffic(kLoops, "--pps=" + std::to_string(kPps));

    CtlTally tally;
    HostileRound total{};
    unsigned rounds = 0, geometry_rounds = 0;
    std::map<std::string, uint64_t> bad;  // ctld.bad_* as angelctl stats last showed them
    bool ctld_alive = true;
    // The data segment's size and the memory behind it (a stage can reserve more with fallocate).
    const std::string data_path = "/dev/shm/" + Segment::shm_name(inst);
    uint64_t max_size = 0, max_blocks_bytes = 0;
    auto note_size = [&] {
        struct stat sb{};
        if (stat(data_path.c_str(), &sb) != 0) return;
        max_size = std::max<uint64_t>(max_size, static_cast<uint64_t>(sb.st_size));
        max_blocks_bytes = std::max<uint64_t>(max_blocks_bytes, static_cast<uint64_t>(sb.st_blocks) * 512);
    };
    note_size();
    const uint64_t start_blocks_bytes = max_blocks_bytes;
    const auto rounds_t0 = Clock::now();
    for (unsigned r = 1; r <= kRounds && since(rounds_t0) < kRoundsBudgetS; ++r) {
        if (!m.sender->running() && traffic_runs < kMaxTrafficRuns) {
            m.start_traffic(kLoops, "--pps=" + std::to_string(kPps));
            ++traffic_runs;
        }
        HostileRound rep{};
        std::string why;
        ASSERT_TRUE(writer.round(r, &rep, &why)) << "round " << r << ": " << why;
        ASSERT_EQ(rep.done, 1u);
        ++rounds;
        total.fields += rep.fields;
        total.flow_entries += rep.flow_entries;
        total.bad_version_entries += rep.bad_version_entries;
        total.event_slots += rep.event_slots;
        total.ring_bytes += rep.ring_bytes;
        geometry_rounds += rep.geometry_hostile;

        watch.watch_for(0.3);  // ctld's loop (100 ms) and the stages meet the values
        ctl(m, tally, watch, r, {"status"});
        const auto st = ctl(m, tally, watch, r, {"status", "--json"});
        const auto stats = ctl(m, tally, watch, r, {"stats"});
        ctl(m, tally, watch, r, {"flows"});
        ctl(m, tally, watch, r, {"flows", "--top", "5", "--json"});
        if (r % 4 == 0) ctl(m, tally, watch, r, {"restart", "capd"});
        if (r % 6 == 3) ctl(m, tally, watch, r, {"restart", "procd"});
        if (r % 6 == 5) ctl(m, tally, watch, r, {"restart", "netd"});
        if (stats.ok()) bad = boundary_counts(stats.out);
        watch.watch_for(0.4);

        ctld_alive = m.ctld->running();
        note_size();
        const StatusView sv = parse_status_json(st.out);
        std::string stages;
        for (const auto& [name, s] : sv.stages)
            stages += " " + name + "=" + s.state + "/r" + std::to_string(s.restarts);
        uint64_t refused = 0;
        for (const auto& [k, v] : bad) refused += v;
        std::string db;
        if (pg)
            db = " | db connects " + std::to_string(json_number_in(st.out, "database", "connects")) + ", batches " +
                 std::to_string(json_number_in(st.out, "database", "batches"));
        std::printf("[ hostile ] round %2u%s: %llu fields, %llu entries, %llu event slots (%llu published) |%s | "
                    "refused so far %llu%s | ctld %s\n",
                    r, rep.geometry_hostile ? " (FlowMap geometry)" : "", static_cast<unsigned long long>(rep.fields),
                    static_cast<unsigned long long>(rep.flow_entries), static_cast<unsigned long long>(rep.event_slots),
                    static_cast<unsigned long long>(rep.event_batch_records), stages.c_str(),
                    static_cast<unsigned long long>(refused), db.c_str(), ctld_alive ? "up" : "GONE");
        std::fflush(stdout);
        EXPECT_TRUE(ctld_alive) << "angel-ctld is gone after round " << r << ":\n" << tail_of(m.log());
        if (!ctld_alive) break;
    }
    EXPECT_GE(rounds, kMinRounds) << "the rounds ran out of time";
    const double rounds_s = since(rounds_t0);

    // The end. The stages keep private ring cursors that the writer's positions sent far
    // away (a procd chasing a head 2^40 ahead parses junk and commits junk tails), so the
    // values are put back while every stage is frozen, then the frozen stages are killed and
    // fresh ones started: only then can the pipeline drain, and the stop measure ctld.
    std::string why;
    std::set<long> old_pids;
    if (ctld_alive) {
        const StatusView v = angelctl_status(m.sock);
        for (const auto& [name, s] : v.stages) {
            ProcStatus ps;
            if (s.pid > 0 && read_status("/proc/" + std::to_string(s.pid) + "/status", &ps) && ps.ppid == ctld &&
                ps.name == "angel-" + name) {
                old_pids.insert(s.pid);
                kill(static_cast<pid_t>(s.pid), SIGSTOP);
            }
        }
    }
    EXPECT_TRUE(writer.settle(&why)) << why;
    writer.stop();
    for (long pid : old_pids) kill(static_cast<pid_t>(pid), SIGKILL);
    if (ctld_alive) {
        // ctld reaps them (its loop turns every 100 ms); then each is started now, backoff or not.
        EXPECT_TRUE(wait_until_s(
            [&] {
                watch.sample();
                const StatusView v = angelctl_status(m.sock);
                if (!v.ok) return false;
                for (const auto& [name, s] : v.stages)
                    if (old_pids.count(s.pid)) return false;
                return true;
            },
            10, 0.05))
            << "ctld did not notice its stages' deaths:\n" << tail_of(m.log());
        for (const char* s : {"netd", "procd", "capd"}) ctl(m, tally, watch, 0, {"restart", s});
        auto all_fresh_running = [&](std::map<std::string, long>* pids) {
            const StatusView v = angelctl_status(m.sock);
            if (!v.ok) return false;
            for (const auto& [name, s] : v.stages) {
                if (s.state != "running" || old_pids.count(s.pid)) return false;
                if (pids) (*pids)[name] = s.pid;
            }
            return true;
        };
        std::map<std::string, long> fresh, later;
        const bool up = wait_until_s(
            [&] {
                watch.sample();
                return all_fresh_running(&fresh);
            },
            20, 0.1);
        watch.watch_for(kCapdRootGraceS + 0.3);  // each fresh stage past its grace period under the watch
        if (!up || !all_fresh_running(&later) || later != fresh)
            std::printf("[ hostile ] not every stage running steadily again before the stop:\n%s",
                        angelctl(m.sock, {"status"}).out.c_str());
        const auto stats = ctl(m, tally, watch, 0, {"stats"});
        if (stats.ok()) bad = boundary_counts(stats.out);
        ctld_alive = m.ctld->running();
        EXPECT_TRUE(ctld_alive) << "angel-ctld is gone after the restarts:\n" << tail_of(m.log());
    }

    // The database thread's progress so far: the stop's drain (procd ends every flow) must add to it.
    uint64_t batches_before_stop = 0;
    bool stages_steady = false;
    if (ctld_alive) {
        const auto st = angelctl(m.sock, {"status", "--json"});
        batches_before_stop = json_number_in(st.out, "database", "batches");
        const StatusView v = parse_status_json(st.out);
        stages_steady = v.stages.size() == 3;
        for (const auto& [name, s] : v.stages) stages_steady = stages_steady && s.state == "running";
    }

    // The stop, in order.
    const auto stop_t0 = Clock::now();
    const auto counters = m.stop_meter();  // SIGTERM; EXPECTs exit 0 within 60 s
    const double stop_s = since(stop_t0);
    EXPECT_EQ(m.ctld->exit_code(), 0) << tail_of(m.log());
    EXPECT_FALSE(counters.empty()) << "no final counter line";
    if (m.sender) m.sender->terminate(2);

    const std::string log = m.log();
    const size_t refusal_lines = count_of(log, "refused a value a stage wrote into shared memory");
    EXPECT_GE(refusal_lines, 1u) << "the checked view never refused a value:\n" << tail_of(log);
    uint64_t refused = 0;
    std::string bad_text;
    for (const auto& [k, v] : bad) {
        refused += v;
        bad_text += " " + k + "=" + std::to_string(v);
    }
    EXPECT_GT(refused, 0u) << "angelctl stats shows no ctld.bad_* count";

    // The database thread takes only what the checked reader let through: nothing of it may
    // make PostgreSQL refuse a statement (which would fail every retry of the same events).
    std::vector<std::string> db_value_errors;
    size_t db_errors = 0;
    std::string db_line;
    {
        std::istringstream in(log);
        std::string line;
        while (std::getline(in, line)) {
            if (line.find("database error:") != std::string::npos) {
                ++db_errors;
                if ((line.find("out of range") != std::string::npos || line.find("invalid input") != std::string::npos) &&
                    db_value_errors.size() < 5)
                    db_value_errors.push_back(line);
            }
            if (line.find("database: flows_written=") != std::string::npos) db_line = line;
        }
    }
    if (pg) {
        EXPECT_TRUE(db_value_errors.empty()) << [&] {
            std::string t = "PostgreSQL refused a value ctld took from shared memory (" + std::to_string(db_errors) +
                            " database errors in all):";
            for (const auto& l : db_value_errors) t += "\n  " + l;
            return t;
        }();
    }

    // And the database thread still works once the writer is gone and the stages are fresh: the
    // flow ends of the stop reach the database (a reader parked behind a head that went
    // backwards, or retrying a batch PostgreSQL refuses, writes nothing).
    const uint64_t final_batches = number_after(db_line, "batches=").value_or(0);
    if (pg && stages_steady) {
        EXPECT_GT(final_batches, batches_before_stop)
            << "the database thread wrote no event of the stop (" << batches_before_stop << " batches before it)";
    } else if (pg) {
        std::printf("[ hostile ] the stages were not steady before the stop: the database drain is not judged\n");
    }

    const SanitizerLines san = sanitizer_lines(log, ctld);
    EXPECT_TRUE(san.ctld.empty()) << "a sanitizer report from angel-ctld:\n" << san.ctld.front() << "\n" << tail_of(log);
    EXPECT_EQ(log.find("==" + std::to_string(ctld) + "==ERROR"), std::string::npos) << tail_of(log);

    EXPECT_FALSE(fs::exists("/dev/shm/" + Segment::shm_name(inst))) << "the data segment is left behind";
    EXPECT_FALSE(fs::exists("/dev/shm/" + Segment::control_shm_name(inst))) << "the control object is left behind";

    watch.sample();
    EXPECT_TRUE(watch.violations.empty()) << [&] {
        std::string s = "a stage ran as root once started:";
        for (const auto& v : watch.violations) s += "\n  " + v;
        return s;
    }();
    EXPECT_EQ(tally.failed, 0u) << [&] {
        std::string s = "angelctl got no answer:";
        for (const auto& v : tally.failures) s += "\n  " + v;
        return s;
    }();

    // What the stages went through (for the record: they may die of what the writer did).
    const size_t stop_at = log.find("stopping (");
    const std::string before_stop = log.substr(0, stop_at);
    std::printf("[ hostile ] %u rounds in %.1f s (%u with hostile FlowMap geometry); %llu fields, %llu FlowMap entries "
                "(%llu in use with a bad IP version), %llu event slots, %llu ring bytes written\n",
                rounds, rounds_s, geometry_rounds, static_cast<unsigned long long>(total.fields),
                static_cast<unsigned long long>(total.flow_entries),
                static_cast<unsigned long long>(total.bad_version_entries),
                static_cast<unsigned long long>(total.event_slots), static_cast<unsigned long long>(total.ring_bytes));
    std::printf("[ hostile ] angelctl: %llu answered ok, %llu clean ERR, %llu unanswered\n",
                static_cast<unsigned long long>(tally.ok), static_cast<unsigned long long>(tally.clean_err),
                static_cast<unsigned long long>(tally.failed));
    std::printf("[ hostile ] ctld refused (angelctl stats):%s; %zu refusal line(s) in the log\n", bad_text.c_str(),
                refusal_lines);
    std::printf("[ hostile ] stages: %zu deaths, %zu crash-looping, %zu hang kills, %zu finished before the stop, "
                "%zu stage processes seen, %llu seen as root within their grace period, %llu samples\n",
                count_of(before_stop, " died ("), count_of(before_stop, "is crash-looping"),
                count_of(before_stop, "stopped heartbeating"), count_of(before_stop, " finished\n"),
                watch.pids.size(), static_cast<unsigned long long>(watch.young_root),
                static_cast<unsigned long long>(watch.samples));
    std::printf("[ hostile ] data segment: layout %llu bytes; file size up to %llu, memory behind it %llu MiB at the "
                "start, up to %llu MiB\n",
                static_cast<unsigned long long>(f.layout.total_size), static_cast<unsigned long long>(max_size),
                static_cast<unsigned long long>(start_blocks_bytes >> 20),
                static_cast<unsigned long long>(max_blocks_bytes >> 20));
    if (pg)
        std::printf("[ hostile ] database: %zu database errors logged (%zu of a refused value); %s\n", db_errors,
                    db_value_errors.size(), db_line.c_str());
    std::printf("[ hostile ] stop: exit %d in %.1f s; whole test %.1f s; traffic runs %u\n", m.ctld->exit_code(),
                stop_s, since(t0), traffic_runs);
    {
        std::istringstream in(log);
        std::string line;
        while (std::getline(in, line))
            if (line.find("refused a value") != std::string::npos) std::printf("[ hostile ]   %s\n", line.c_str());
    }
    if (!san.others.empty()) {
        std::printf("[ hostile ] sanitizer reports of other processes (stages): %zu, first: %s\n", san.others.size(),
                    san.others.front().c_str());
    }
    if (::testing::Test::HasFailure()) std::printf("%s\n", tail_of(log, 30000).c_str());
    std::fflush(stdout);
}

}  // namespace angel::itest
