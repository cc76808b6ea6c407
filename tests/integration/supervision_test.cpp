// Supervision end to end (issue 4): the real angel-ctld with its three stages in a test
// namespace, live traffic from tcpreplay over a veth, IPFIX into angel-sink on the namespace's
// loopback.
//
//   sender netns: tcpreplay -i veth-s ──veth──> meter netns: veth-m
//                                               angel-ctld -f (capd on veth-m, procd, netd)
//                                               └─ IPFIX over lo ─> angel-sink(s) --out FILE
//
// What is asserted:
//  - KillUnderLoad: procd and netd are each killed (SIGKILL) three times at random moments during
//    about 20 s of 100k packets/s. No packet record is lost: the distinct packet records at the
//    sink equal procd's ip_packets exactly. Duplicates are only those the code allows: procd
//    repeats at most its one uncommitted batch (kProcdBatch packets) per kill and counts each
//    repeat (`repeated`); netd re-sends at most what it had sent but not yet committed, which is
//    one ring batch plus the one message pending before it (kNetdBatch + one message) per kill.
//    Flow identity survives: after exact duplicates are removed, every packet record belongs to
//    a flow that is live at that point of the stream, no flow starts again while live, no flow
//    ends twice, and a 5-tuple always gets the same flow ID. Status counts every restart.
//  - RestartUnderLoad: the same with `angelctl restart procd|netd`: SIGTERM stops a stage at a
//    batch boundary, so not one duplicate and not one repeat; restarts counted, last exit 0.
//  - CrashLoopBackoff: netd cannot resolve its classifier and exits 68 at each start: the log
//    shows the backoff doubling (0.5, 1, 2, 4 s), status shows "backoff", then "crash-looping",
//    restarts increasing and last_exit "exit 68"; capd and procd are untouched; SIGTERM then stops
//    the meter at once (the crash-looping netd is not started again during the stop).
//  - HangDetected: procd frozen with SIGSTOP is killed after supervisor.hang_timeout and restarted.
//  - ReloadMovesClassifier: `angelctl reload` and SIGHUP move the export between two sinks while
//    traffic flows; the two sinks together hold every packet record exactly once; a bad file is
//    refused and changes nothing.
// Everything (namespaces, processes in them, temp dir, /dev/shm segment) is removed on failure too.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "meter_harness.hpp"
#include "stream_reports.hpp"

namespace angel::itest {
namespace {

using Clock = std::chrono::steady_clock;
using netns::CommandResult;

// Bounds taken from the code (procd/main.cpp kBatch, netd/main.cpp kBatch); a packet record is
// 20 octets and a message holds at most (1500 - 20 - 8 - 16 - 4) / 20 = 72 of them.
constexpr uint64_t kProcdBatch = 256;
constexpr uint64_t kNetdBatch = 512;
constexpr uint64_t kRecordsPerMessage = 72;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- the sink's output: duplicates and flow identity -------------------------------------------

struct SinkCheck {
    uint64_t packets = 0, starts = 0, ends = 0, other = 0;       // lines as received
    StreamReports reports;  // loss and watermark records, of the lines seen for the first time
    uint64_t dup_packets = 0, dup_starts = 0, dup_ends = 0;      // exact repeats of an earlier line
    uint64_t packet_not_live = 0;    // packet record for a flow ID that is not live there
    uint64_t start_while_live = 0;   // a second, different flow_start for a live flow ID
    uint64_t end_not_live = 0;       // flow_end for a flow ID that is not live
    uint64_t tuple_restarted = 0;    // a 5-tuple started again while its flow was live (new ID)
    uint64_t live_at_end = 0;
    uint64_t min_packet_ts = UINT64_MAX, max_packet_ts = 0;
    std::vector<uint64_t> packet_ts;  // filled when asked
    std::vector<std::string> examples;
    uint64_t distinct_packets() const { return packets - dup_packets; }
    uint64_t distinct_records() const { return packets + starts + ends - dup_packets - dup_starts - dup_ends; }
    void example(const std::string& s) {
        if (examples.size() < 5) examples.push_back(s);
    }
};


SinkCheck check_sink(const std::vector<fs::path>& files, bool keep_ts = false) {
    SinkCheck c;
    std::unordered_set<uint64_t> seen;  // hashes of every line so far
    std::unordered_map<std::string, std::string> live;  // flow ID -> its flow_start line
    std::unordered_map<std::string, std::string> tuple_of;      // live flow ID -> its 5-tuple
    std::unordered_map<std::string, std::string> live_tuples;   // 5-tuple -> its live flow ID
    seen.reserve(1 << 22);
    const std::hash<std::string> h;
    for (const auto& f : files) {
        std::ifstream in(f);
        std::string line;
        while (std::getline(in, line)) {
            const bool dup = !seen.insert(h(line)).second;
            // A restarted netd sends its one uncommitted batch again: repeats are not judged.
            if (!dup && c.reports.line(line)) continue;
            const std::string type = json_field(line, "type");
            const std::string id = json_field(line, "flow_id");
            if (type == "packet") {
                ++c.packets;
                const uint64_t ts = std::stoull(json_field(line, "ts_ns"));
                c.min_packet_ts = std::min(c.min_packet_ts, ts);
                c.max_packet_ts = std::max(c.max_packet_ts, ts);
                if (keep_ts) c.packet_ts.push_back(ts);
                if (dup) {
                    ++c.dup_packets;
                } else if (!live.count(id)) {
                    ++c.packet_not_live;
                    c.example("packet of a flow that is not live: " + line);
                }
            } else if (type == "flow_start") {
                ++c.starts;
                if (dup) {
                    ++c.dup_starts;
                    continue;
                }
                if (live.count(id)) {
                    ++c.start_while_live;
                    c.example("started again while live: " + live[id] + " then " + line);
                }
                live[id] = line;
                std::string a = json_field(line, "src") + "|" + json_field(line, "sport");
                std::string b = json_field(line, "dst") + "|" + json_field(line, "dport");
                if (b < a) std::swap(a, b);
                const std::string tuple = json_field(line, "proto") + "|" + a + "|" + b;
                // A 5-tuple gets a new flow (and maybe another ID: the old one stays reserved
                // until its flow_end is out) only after its flow ended.
                auto [it, fresh] = live_tuples.emplace(tuple, id);
                if (!fresh) {
                    ++c.tuple_restarted;
                    c.example("5-tuple " + tuple + " started as flow " + id + " while flow " + it->second +
                              " was live");
                    it->second = id;
                }
                tuple_of[id] = tuple;
            } else if (type == "flow_end") {
                ++c.ends;
                if (dup) {
                    ++c.dup_ends;
                    continue;
                }
                if (!live.erase(id)) {
                    ++c.end_not_live;
                    c.example("flow_end of a flow that is not live: " + line);
                } else {
                    live_tuples.erase(tuple_of[id]);
                    tuple_of.erase(id);
                }
            } else if (type != "loss" && type != "watermark") {
                ++c.other;
            }
        }
    }
    c.live_at_end = live.size();
    return c;
}


// ---- the meter in its namespace -------------------------------------------------------------------

std::string skip_reason(bool traffic) {
    if (std::string why = live_skip_reason(traffic ? std::vector<std::string>{"tcpreplay"} : std::vector<std::string>{},
                                           traffic);
        !why.empty())
        return why;
    if (!fs::exists(binary("angel-ctld")))
        return "no angel-ctld in " + bin_dir().string() + " (set ANGEL_BIN_DIR)";
    return {};
}

// A meter of this suite: namespaces angel-sv-*, temp dir /tmp/angel-sup-*.
struct MeterRun : NetnsMeter {
    MeterRun() : NetnsMeter("sv", "sup") {}
    void start_traffic(unsigned loops, unsigned pps) { NetnsMeter::start_traffic(loops, "--pps=" + std::to_string(pps)); }
    void write(unsigned port, const std::string& host = "127.0.0.1", const std::string& extra = "") {
        write_config(config(port, host, extra));
    }
};

// The live flows each procd found in the FlowMap when it attached ("attached to instance I: N
// live flows"), in the order of the log.
std::vector<uint64_t> attached_live_flows(const std::string& log, const std::string& instance) {
    std::vector<uint64_t> out;
    const std::string label = "angel-procd: attached to instance " + instance + ": ";
    for (size_t at = log.find(label); at != std::string::npos; at = log.find(label, at + label.size())) {
        const auto n = number_after(log.substr(at), label);
        const size_t after = log.find_first_not_of("0123456789", at + label.size());
        if (n && after != std::string::npos && log.compare(after, 11, " live flows") == 0) out.push_back(*n);
    }
    return out;
}

// The waits netd's deaths announce, in the order of the log: "angel-netd died (exit 68);
// restarting in W s" and "angel-netd is crash-looping (N failures in a row, last: exit 68);
// next start in W s".
std::vector<std::string> netd_backoff_waits(const std::string& log) {
    std::vector<std::string> waits;
    std::istringstream in(log);
    std::string line;
    auto wait_after = [&](size_t at) {
        const size_t end = line.find_first_not_of("0123456789.", at);
        if (end == at || end == std::string::npos || line.compare(end, 2, " s") != 0) return;
        waits.push_back(line.substr(at, end - at));
    };
    const std::string died = "angel-netd died (exit 68); restarting in ";
    const std::string looping = "angel-netd is crash-looping (";
    const std::string looping_tail = " failures in a row, last: exit 68); next start in ";
    while (std::getline(in, line)) {
        if (const size_t at = line.find(died); at != std::string::npos) {
            wait_after(at + died.size());
        } else if (const size_t lp = line.find(looping); lp != std::string::npos) {
            const size_t digits = lp + looping.size();
            const size_t end = line.find_first_not_of("0123456789", digits);
            if (end != std::string::npos && end > digits && line.compare(end, looping_tail.size(), looping_tail) == 0)
                wait_after(end + looping_tail.size());
        }
    }
    return waits;
}

// ---- KillUnderLoad / RestartUnderLoad ---------------------------------------------------------------

enum class How { kill9, angelctl_restart };

void run_under_load(How how) {
    if (const std::string why = skip_reason(true); !why.empty()) GTEST_SKIP() << why;
    const char* seed_env = std::getenv("ANGEL_TEST_SEED");
    const unsigned seed =
        static_cast<unsigned>(std::stoul(seed_env && *seed_env ? std::string(seed_env) : std::to_string(time(nullptr))));
    std::printf("[ sup     ] seed %u (ANGEL_TEST_SEED to repeat)\n", seed);
    std::mt19937 rng(seed);

    MeterRun m;
    m.write(4739);
    ASSERT_TRUE(m.start_sink(4739));
    ASSERT_TRUE(m.start_meter());
    // ~20 s at 100k packets/s: 720 loops of 2793 frames.
    constexpr unsigned kLoops = 720;
    const auto t0 = Clock::now();
    m.start_traffic(kLoops, 100000);

    // Six moments in [1, 15] s, three for each stage, in random order.
    std::vector<std::pair<double, std::string>> plan;
    std::uniform_real_distribution<double> when(1.0, 15.0);
    for (const char* s : {"procd", "procd", "procd", "netd", "netd", "netd"}) plan.push_back({when(rng), s});
    std::sort(plan.begin(), plan.end());
    std::map<std::string, size_t> done;
    std::vector<std::string> notes;
    for (const auto& [at, stage] : plan) {
        // The previous restart of this stage must be complete (ready) before the next.
        ASSERT_TRUE(m.wait_ready_count(stage, done[stage] + 1, 40)) << stage << " did not come back:\n" << m.log();
        if (since(t0) < at) sleep_s(at - since(t0));
        ASSERT_TRUE(m.sender->running()) << "tcpreplay ended before the last restart: make the run longer";
        const StatusView st = angelctl_status(m.sock);
        ASSERT_TRUE(st.ok) << st.raw;
        const long pid = st.stages.at(stage).pid;
        ASSERT_GT(pid, 0) << st.raw;
        if (how == How::kill9) {
            ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
        } else {
            const CommandResult r =
                angelctl(m.sock, {"restart", stage});
            ASSERT_TRUE(r.ok()) << r.describe();
        }
        ++done[stage];
        char note[96];
        std::snprintf(note, sizeof note, "%s pid %ld at %.2f s", stage.c_str(), pid, since(t0));
        notes.push_back(note);
    }
    for (const char* s : {"procd", "netd"})
        ASSERT_TRUE(m.wait_ready_count(s, 4, 40)) << s << " did not come back:\n" << m.log();
    std::string list;
    for (const auto& n : notes) list += (list.empty() ? "" : ", ") + n;
    std::printf("[ sup     ] %s: %s\n", how == How::kill9 ? "killed" : "restarted", list.c_str());

    // Status counts every restart; the stages that were left alone never restarted.
    const StatusView st = angelctl_status(m.sock);
    ASSERT_TRUE(st.ok) << st.raw;
    for (const char* s : {"procd", "netd"}) {
        EXPECT_EQ(st.stages.at(s).restarts, 3u) << st.raw;
        EXPECT_GT(st.stages.at(s).pid, 0) << st.raw;
        EXPECT_EQ(st.stages.at(s).last_exit, how == How::kill9 ? "signal KILL" : "exit 0") << st.raw;
    }
    EXPECT_EQ(st.stages.at("capd").restarts, 0u) << st.raw;
    EXPECT_NE(st.raw.find("\"database\":null"), std::string::npos) << "no database configured: " << st.raw;

    ASSERT_TRUE(m.sender->wait(90)) << "tcpreplay did not finish";
    EXPECT_EQ(m.sender->exit_code(), 0) << read_file(m.tcpreplay_out());
    const double send_s = since(t0);
    sleep_s(0.5);  // capd reads the tail (pcap timeout 10 ms)
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty());
    const SinkCheck s = check_sink({m.sink_out(0)});
    const uint64_t gaps = sink_sequence_gaps(read_file(m.sink_summary(0)));
    std::printf("[ sup     ] %.1f s of traffic | captured %llu, ring_dropped %llu, pcap_dropped %llu | ip_packets %llu, "
                "repeated %llu, flows %llu/%llu\n"
                "[ sup     ] sink: packet %llu (%llu duplicates), flow_start %llu (%llu dup), flow_end %llu (%llu "
                "dup), sequence gaps %llu\n",
                send_s, (unsigned long long)C["captured"], (unsigned long long)C["ring_dropped"],
                (unsigned long long)C["pcap_dropped"], (unsigned long long)C["ip_packets"],
                (unsigned long long)C["repeated"], (unsigned long long)C["flows_started"],
                (unsigned long long)C["flows_ended"], (unsigned long long)s.packets,
                (unsigned long long)s.dup_packets, (unsigned long long)s.starts, (unsigned long long)s.dup_starts,
                (unsigned long long)s.ends, (unsigned long long)s.dup_ends, (unsigned long long)gaps);
    std::fflush(stdout);

    EXPECT_EQ(C["captured"] + C["pcap_dropped"] + C["pcap_ifdropped"], kLiveFramesPerLoop * kLoops)
        << "frames sent that the capture never accounted for";
    EXPECT_GT(C["ip_packets"], 1'000'000u) << "the load was not steady";
    // Every packet record arrived; what arrived twice is within the in-flight bound.
    EXPECT_EQ(s.distinct_packets(), C["ip_packets"]);
    EXPECT_EQ(s.packets, C["ip_packets"] + s.dup_packets);
    EXPECT_EQ(s.starts - s.dup_starts, C["flows_started"]);
    EXPECT_EQ(s.ends - s.dup_ends, C["flows_ended"]);
    EXPECT_EQ(gaps, 0u) << read_file(m.sink_summary(0));
    if (how == How::kill9) {
        EXPECT_LE(C["repeated"], 3 * kProcdBatch) << "procd repeats at most its one uncommitted batch per kill";
        EXPECT_LE(s.dup_packets, C["repeated"] + 3 * (kNetdBatch + kRecordsPerMessage))
            << "duplicates beyond the in-flight batches";
        EXPECT_LE(s.dup_packets + s.dup_starts + s.dup_ends,
                  3 * (kProcdBatch * 3) + 3 * (kNetdBatch + kRecordsPerMessage))
            << "duplicate records beyond the in-flight batches";
    } else {
        // SIGTERM: each stage stops at a batch boundary, with what it has published committed.
        EXPECT_EQ(C["repeated"], 0u);
        EXPECT_EQ(s.dup_packets + s.dup_starts + s.dup_ends, 0u);
    }
    // Flow identity across the restarts.
    EXPECT_EQ(s.packet_not_live, 0u);
    EXPECT_EQ(s.start_while_live, 0u);
    EXPECT_EQ(s.end_not_live, 0u);
    EXPECT_EQ(s.tuple_restarted, 0u);
    // Each successor found the live flows in the FlowMap (so they kept their IDs).
    {
        const std::string log = m.log();
        const std::vector<uint64_t> live = attached_live_flows(log, m.scratch.instance);
        ASSERT_EQ(live.size(), 4u) << log;
        for (size_t i = 1; i < live.size(); ++i) EXPECT_GT(live[i], 0u) << "procd restart " << i << " found no flow";
    }
    EXPECT_EQ(s.live_at_end, 0u) << "flows without flow_end after the stop";
    EXPECT_EQ(s.other, 0u);
    // Watermarks across the restarts: never back, never ahead of a packet record that follows.
    std::printf("[ sup     ] sink: %s\n", s.reports.describe().c_str());
    EXPECT_GT(s.reports.watermarks, 10u);
    EXPECT_EQ(s.reports.watermark_backwards, 0u);
    EXPECT_EQ(s.reports.packets_behind, 0u);
    // Loss reports held back by procd's rate limit leave with a procd that is asked to stop;
    // a killed one may lose or repeat those of its last flush interval.
    if (how == How::angelctl_restart) {
        EXPECT_EQ(s.reports.packets_of("ring_drop"), C["ring_dropped"]);
        EXPECT_EQ(s.reports.packets_of("pcap_drop"), C["pcap_dropped"]);
    }
    for (const auto& e : s.reports.examples) ADD_FAILURE() << e;
    for (const auto& e : s.examples) ADD_FAILURE() << e;
    if (::testing::Test::HasFailure()) std::printf("%s\n", m.log().c_str());
}

TEST(Supervision, KillUnderLoadLosesNothing) { run_under_load(How::kill9); }
TEST(Supervision, RestartUnderLoadLosesNothing) { run_under_load(How::angelctl_restart); }

// ---- CrashLoopBackoff ---------------------------------------------------------------------------------

TEST(Supervision, CrashLoopBackoff) {
    if (const std::string why = skip_reason(false); !why.empty()) GTEST_SKIP() << why;
    MeterRun m;
    // The namespace has no route to any name server: the lookup fails at once, netd exits 68.
    m.write(4739, "nonexistent.invalid");
    ASSERT_TRUE(m.start_meter());
    std::set<std::string> states;
    unsigned last_restarts = 0;
    bool monotonic = true;
    std::string last_exit;
    const auto t0 = Clock::now();
    // Deaths at about 0, 0.5, 1.5, 3.5, 7.5 s: wait for the fifth.
    const bool fifth = wait_until_s(
        [&] {
            const StatusView st = angelctl_status(m.sock);
            if (st.ok) {
                const StageView& n = st.stages.at("netd");
                states.insert(n.state);
                monotonic = monotonic && n.restarts >= last_restarts;
                last_restarts = n.restarts;
                if (n.last_exit != "-") last_exit = n.last_exit;
            }
            return count_of(m.log(), "angel-netd is crash-looping") >= 3;
        },
        15, 0.1);
    const std::string log = m.log();
    EXPECT_TRUE(fifth) << log;
    std::printf("[ sup     ] netd crash loop over %.1f s: states seen", since(t0));
    for (const auto& s : states) std::printf(" %s", s.c_str());
    std::printf(", restarts %u, last exit %s\n", last_restarts, last_exit.c_str());

    // The log: backoff 0.5, 1, 2, 4 s, crash-looping from the third failure in a row.
    const std::vector<std::string> waits = netd_backoff_waits(log);
    ASSERT_GE(waits.size(), 5u) << log;
    EXPECT_EQ(std::vector<std::string>(waits.begin(), waits.begin() + 5),
              (std::vector<std::string>{"0.5", "1.0", "2.0", "4.0", "8.0"}))
        << log;
    EXPECT_EQ(count_of(log, "angel-netd died (exit 68)"), 2u) << log;
    EXPECT_NE(log.find("angel-netd is crash-looping (3 failures in a row, last: exit 68)"), std::string::npos) << log;

    // Status: backoff first, then crash-looping; restarts only grow; the exit code is shown.
    EXPECT_TRUE(states.count("backoff")) << "never saw state backoff";
    EXPECT_TRUE(states.count("crash-looping")) << "never saw state crash-looping";
    EXPECT_TRUE(monotonic);
    EXPECT_GE(last_restarts, 4u);
    EXPECT_EQ(last_exit, "exit 68");
    const StatusView st = angelctl_status(m.sock);
    ASSERT_TRUE(st.ok) << st.raw;
    EXPECT_EQ(st.stages.at("netd").state, "crash-looping") << st.raw;
    EXPECT_EQ(st.stages.at("netd").last_exit, "exit 68") << st.raw;
    for (const char* s : {"capd", "procd"}) {
        EXPECT_EQ(st.stages.at(s).restarts, 0u) << st.raw;
        EXPECT_GT(st.stages.at(s).pid, 0) << st.raw;
    }
    // An orderly stop does not wait for the crash-looping netd (it would never drain anything):
    // done in seconds, not after ctld's 60 s forced-stop deadline.
    const auto t_stop = Clock::now();
    m.ctld->signal(SIGTERM);
    EXPECT_TRUE(m.ctld->wait(20)) << "angel-ctld did not stop within 20 s";
    std::printf("[ sup     ] stopped in %.2f s\n", since(t_stop));
    EXPECT_EQ(m.ctld->exit_code(), 0) << m.log();
    EXPECT_NE(m.log().find("angel-netd is crash-looping; not started again during the stop"), std::string::npos)
        << m.log();
}

// ---- HangDetected -----------------------------------------------------------------------------------------

TEST(Supervision, HangDetected) {
    if (const std::string why = skip_reason(false); !why.empty()) GTEST_SKIP() << why;
    MeterRun m;
    m.write(4739, "127.0.0.1", "supervisor = { hang_timeout = 1; };");
    ASSERT_TRUE(m.start_sink(4739));
    ASSERT_TRUE(m.start_meter());
    ASSERT_TRUE(m.wait_ready_count("procd", 1, 10));
    const StatusView before = angelctl_status(m.sock);
    ASSERT_TRUE(before.ok) << before.raw;
    const long pid = before.stages.at("procd").pid;
    ASSERT_GT(pid, 0);
    const auto t0 = Clock::now();
    ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGSTOP), 0);
    const bool killed = wait_until_s([&] { return m.log().find("angel-procd stopped heartbeating") != std::string::npos; }, 6, 0.01);
    const double detect_s = since(t0);
    const bool back = m.wait_ready_count("procd", 2, 10);
    const double back_s = since(t0);
    std::printf("[ sup     ] procd frozen: killed after %.2f s (hang_timeout 1 s), ready again after %.2f s\n",
                detect_s, back_s);
    ASSERT_TRUE(killed) << m.log();
    ASSERT_TRUE(back) << m.log();
    EXPECT_GE(detect_s, 0.9);
    EXPECT_LE(detect_s, 2.5) << "hang detected long after hang_timeout";
    const StatusView after = angelctl_status(m.sock);
    ASSERT_TRUE(after.ok) << after.raw;
    EXPECT_EQ(after.stages.at("procd").restarts, 1u) << after.raw;
    EXPECT_EQ(after.stages.at("procd").last_exit, "signal KILL") << after.raw;
    EXPECT_NE(after.stages.at("procd").pid, pid) << after.raw;
    EXPECT_GT(after.stages.at("procd").pid, 0) << after.raw;
    EXPECT_EQ(after.stages.at("netd").restarts + after.stages.at("capd").restarts, 0u) << after.raw;
    m.stop_meter();
}

// ---- ReloadMovesClassifier ------------------------------------------------------------------------------

TEST(Supervision, ReloadMovesClassifier) {
    if (const std::string why = skip_reason(true); !why.empty()) GTEST_SKIP() << why;
    MeterRun m;
    m.write(4739);
    ASSERT_TRUE(m.start_sink(4739));  // sink 0: A
    ASSERT_TRUE(m.start_sink(4740));  // sink 1: B
    ASSERT_TRUE(m.start_meter());
    const unsigned gen0 = angelctl_status(m.sock).generation;
    const auto t0 = Clock::now();
    m.start_traffic(290, 100000);  // ~8 s
    auto traffic_at = [&](double s) {
        sleep_s(std::max(0.0, s - since(t0)));
        return m.sender->running();
    };

    // 1. angelctl reload after the file moved the classifier to B.
    ASSERT_TRUE(traffic_at(2.0)) << "tcpreplay ended early";
    m.write(4740);
    CommandResult r = angelctl(m.sock, {"reload"});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_NE(r.out.find("reloaded"), std::string::npos) << r.out;
    EXPECT_TRUE(wait_until_s([&] { return m.log().find("classifier moved to 127.0.0.1:4740") != std::string::npos; }, 5))
        << m.log();
    const unsigned gen1 = angelctl_status(m.sock).generation;
    EXPECT_GT(gen1, gen0);

    // 2. A file that does not parse is refused; nothing changes.
    ASSERT_TRUE(traffic_at(3.5)) << "tcpreplay ended early";
    m.write(4739, "127.0.0.1", "classifier = {");
    r = angelctl(m.sock, {"reload"});
    EXPECT_FALSE(r.ok()) << "a bad file was accepted: " << r.describe();
    EXPECT_EQ(angelctl_status(m.sock).generation, gen1);

    // 3. SIGHUP after the file moved it back to A.
    ASSERT_TRUE(traffic_at(5.0)) << "tcpreplay ended early";
    m.write(4739);
    m.ctld->signal(SIGHUP);
    EXPECT_TRUE(wait_until_s([&] { return m.log().find("classifier moved to 127.0.0.1:4739") != std::string::npos; }, 5))
        << m.log();
    EXPECT_GT(angelctl_status(m.sock).generation, gen1);
    EXPECT_NE(m.log().find("SIGHUP: reloaded"), std::string::npos) << m.log();
    EXPECT_TRUE(m.sender->running()) << "tcpreplay ended before the second move: make the run longer";

    ASSERT_TRUE(m.sender->wait(60));
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty());
    const SinkCheck a = check_sink({m.sink_out(0)}, true);
    const SinkCheck b = check_sink({m.sink_out(1)});
    const SinkCheck both = check_sink({m.sink_out(0), m.sink_out(1)});
    uint64_t a_before = 0, a_after = 0;
    for (uint64_t ts : a.packet_ts) {
        a_before += ts < b.min_packet_ts;
        a_after += ts > b.max_packet_ts;
    }
    std::printf("[ sup     ] ip_packets %llu | sink A %llu packet records (%llu before B's, %llu after), sink B %llu\n",
                (unsigned long long)C["ip_packets"], (unsigned long long)a.packets, (unsigned long long)a_before,
                (unsigned long long)a_after, (unsigned long long)b.packets);
    // No loss, no duplicate, across both moves; the records moved and came back.
    EXPECT_EQ(a.packets + b.packets, C["ip_packets"]);
    EXPECT_EQ(both.dup_packets + both.dup_starts + both.dup_ends, 0u);
    EXPECT_EQ(a.starts + b.starts, C["flows_started"]);
    EXPECT_EQ(a.ends + b.ends, C["flows_ended"]);
    EXPECT_GT(b.packets, 0u);
    EXPECT_GT(a_before, 0u);
    EXPECT_GT(a_after, 0u);
    EXPECT_EQ(a_before + a_after, a.packets) << "sink A got records from the time B was the classifier";
    EXPECT_EQ(C["send_errors"], 0u);
    if (::testing::Test::HasFailure()) std::printf("%s\n", m.log().c_str());
}

}  // namespace
}  // namespace angel::itest
