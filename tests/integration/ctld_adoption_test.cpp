// angel-ctld killed (SIGKILL) under live traffic and started again by hand (issue 13, item 1):
// the new ctld adopts the segment the dead one left, so the flows open at the kill go on with
// the same IDs and counts. Checked at the classifier (angel-sink with --no-dedup: every copy
// the meter sent, so a second flow_start or an index that starts again cannot hide behind the
// sink's de-duplication) against what the meter itself could not make up:
//   - per flow ID: one flow_start, one flow_end, and packet indexes 0..n-1 each present, where
//     n is the flow_end's packet count (an index that restarts, a gap or a reset count fails);
//   - one ctld_restart loss record, no packet record inside it, and its length what
//     `angelctl status --json` shows as recovery.capture_gap_ms; recovery.previous_pid is the
//     killed ctld's pid;
//   - the counters went on: the final line's flows_started and flows_ended equal the flows the
//     sink saw; the IPFIX sequence went on (no sequence gap at the sink);
//   - with the database: angel.flow_history holds every flow the sink saw, once and ended, and
//     angel.flows is empty after the stop (the dead writer's unwritten events were adopted).
// And a left segment that fails the checks is removed with a line saying how many flows were
// lost unended; the meter then starts on a new one.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <map>

#include <regex>
#include <set>

#include "meter_harness.hpp"
#include "pg_server.hpp"
#include "test_support.hpp"
#include "shm/segment.hpp"

namespace angel::itest {
namespace {

constexpr unsigned kPort = 4739;

// One flow ID over the run, read in the order the meter sent its records. An ID can come back
// for a new flow after its flow_end (the pcaps loop: a closed TCP connection's 5-tuple opens
// again), so each life runs from a flow_start to its flow_end. A record equal to one already
// seen in the same life is a copy netd sent again (counted), not a second start.
struct FlowLives {
    bool open = false;
    uint64_t start_ts = 0, last_end_first = 0, last_end_last = 0;
    std::map<uint32_t, uint64_t> idx;  // this life's packet indexes -> time
    uint64_t lives = 0;
};

struct LifeCheck {
    uint64_t flows = 0;            // lives, i.e. flows the meter made
    uint64_t copies = 0;           // records sent again
    uint64_t started_twice = 0;    // a flow_start (not a copy) while the flow was open
    uint64_t orphan = 0;           // a packet or flow_end outside any life
    uint64_t index_broken = 0;     // a life whose indexes are not 0..n-1 for its flow_end's n
    uint64_t never_ended = 0;
    std::vector<std::pair<uint32_t, uint64_t>> lives;  // (flow ID, flow_start time) of each
    std::string examples;
    void example(uint32_t id, const std::string& what) {
        if (examples.size() < 800) examples += " flow " + std::to_string(id) + ": " + what + ";";
    }
};

// Waits for the killed run's stages to exit (parent-death signal).
void wait_stages_gone(const StatusView& before) {
    for (const auto& [name, st] : before.stages) {
        const auto pid = static_cast<pid_t>(st.pid);
        ASSERT_TRUE(wait_until_s([pid] { return kill(pid, 0) != 0; }, 10)) << name;
    }
}

uint64_t count(const PgServer& pg, const std::string& sql) { return std::stoull(pg.query(sql)[0][0]); }

// pg: with the database (history on), checked after the stop.
void kill_and_adopt(const std::string& tag, PgServer* pg) {
    NetnsMeter m(tag, "adopt");
    if (pg) {
        MeterConfig c = m.config_with_database(kPort, pg->conninfo());
        c.extra = std::regex_replace(c.extra, std::regex("poll_interval = 60;"), "poll_interval = 60; history = true;");
        ASSERT_NE(c.extra.find("history = true"), std::string::npos) << c.extra;
        m.write_config(c);
        const CommandResult init = m.angelctl({"db-init"});
        ASSERT_TRUE(init.ok()) << init.describe();
    } else {
        m.write_config(m.config(kPort));
    }
    ASSERT_TRUE(m.start_sink(kPort, 30, false));
    ASSERT_TRUE(m.start_meter()) << m.log();
    const StatusView before = angelctl_status(m.sock);
    ASSERT_TRUE(before.ok) << before.raw;
    // The pidfile names the ctld that is killed (the child may be a namespace wrapper).
    const std::string pidfile = read_file(m.dir / "run" / (m.scratch.instance + ".pid"));
    const uint64_t killed = std::stoull(pidfile);
    m.start_traffic(60, "--pps=20000");  // about 8 s, the same flows in every loop
    sleep_s(2.5);
    m.ctld->signal(SIGKILL);
    ASSERT_TRUE(m.ctld->wait(5));
    wait_stages_gone(before);
    const std::string first_log = m.log();
    ASSERT_TRUE(m.sender->running()) << "the traffic ended before the kill";
    ASSERT_TRUE(m.start_meter()) << m.log();
    EXPECT_NE(m.log().find("adopted the segment"), std::string::npos);

    std::string status;
    EXPECT_TRUE(wait_until_s([&] {
        status = m.angelctl({"status", "--json"}).out;
        return json_number_in(status, "recovery", "capture_gap_ms") > 0;
    }, 10)) << status;
    EXPECT_EQ(json_number_in(status, "recovery", "previous_pid"), killed) << status;
    const uint64_t adopted = json_number_in(status, "recovery", "adopted_flows");
    const uint64_t gap_ms = json_number_in(status, "recovery", "capture_gap_ms");
    EXPECT_GT(adopted, 0u) << status;

    ASSERT_TRUE(m.sender->wait(60)) << "tcpreplay did not finish";
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();
    EXPECT_EQ(m.log().find("removing the segment"), std::string::npos) << m.log();

    std::map<uint32_t, FlowLives> flows;
    LifeCheck lc;
    uint64_t gaps = 0, gap_first = 0, gap_last = 0, bad_lines = 0;
    std::vector<uint64_t> packet_ts;
    std::string err;
    for (const std::string& l : read_lines(m.sink_out(0))) {
        if (json_field(l, "type") == "loss") {
            if (json_field(l, "cause") == "ctld_restart") {
                ++gaps;
                gap_first = std::stoull(json_field(l, "first_ns"));
                gap_last = std::stoull(json_field(l, "last_ns"));
            }
            continue;
        }
        if (json_field(l, "type") == "watermark") continue;
        const auto r = parse_sink_line(l, &err);
        if (!r) {
            ++bad_lines;
            continue;
        }
        FlowLives& f = flows[r->flow_id];
        switch (r->type) {
            case SinkRecord::Type::flow_start:
                if (f.open && r->ts_ns == f.start_ts) {
                    ++lc.copies;
                } else if (f.open) {
                    ++lc.started_twice;
                    lc.example(r->flow_id, "started again while open (index " + std::to_string(f.idx.size()) + ")");
                } else {
                    f.open = true;
                    f.start_ts = r->ts_ns;
                    f.idx.clear();
                    ++f.lives;
                    ++lc.flows;
                    lc.lives.emplace_back(r->flow_id, r->ts_ns);
                }
                break;
            case SinkRecord::Type::packet:
                if (!f.open) {
                    ++lc.orphan;
                    lc.example(r->flow_id, "packet outside a life");
                } else if (const auto [it, fresh] = f.idx.emplace(r->idx, r->ts_ns); !fresh) {
                    if (it->second == r->ts_ns) ++lc.copies;
                    else {
                        ++lc.index_broken;
                        lc.example(r->flow_id, "index " + std::to_string(r->idx) + " twice");
                    }
                } else {
                    packet_ts.push_back(r->ts_ns);
                }
                break;
            case SinkRecord::Type::flow_end:
                if (!f.open) {
                    if (r->first_ns == f.last_end_first && r->last_ns == f.last_end_last) ++lc.copies;
                    else {
                        ++lc.orphan;
                        lc.example(r->flow_id, "flow_end outside a life");
                    }
                    break;
                }
                if (r->packets != f.idx.size() || (!f.idx.empty() && f.idx.rbegin()->first + 1 != f.idx.size())) {
                    ++lc.index_broken;
                    lc.example(r->flow_id, "flow_end counts " + std::to_string(r->packets) + " packets, " +
                                               std::to_string(f.idx.size()) + " indexes seen");
                }
                f.open = false;
                f.last_end_first = r->first_ns;
                f.last_end_last = r->last_ns;
                break;
            default: break;
        }
    }
    EXPECT_EQ(bad_lines, 0u) << err;
    for (const auto& [id, f] : flows)
        if (f.open) {
            ++lc.never_ended;
            lc.example(id, "never ended");
        }
    uint64_t inside = 0;
    for (uint64_t ts : packet_ts) inside += ts > gap_first && ts < gap_last;
    std::printf("[ adopt   ] %llu flows (%zu IDs) at the sink, %llu adopted, gap %.3f ms (status %llu ms), "
                "%zu packet records, %llu copies sent again; flows_started=%llu flows_ended=%llu\n",
                static_cast<unsigned long long>(lc.flows), flows.size(), static_cast<unsigned long long>(adopted),
                double(gap_last - gap_first) / 1e6, static_cast<unsigned long long>(gap_ms), packet_ts.size(),
                static_cast<unsigned long long>(lc.copies), static_cast<unsigned long long>(C["flows_started"]),
                static_cast<unsigned long long>(C["flows_ended"]));
    EXPECT_GT(lc.flows, 0u);
    EXPECT_LE(adopted, flows.size());
    EXPECT_EQ(lc.started_twice, 0u) << lc.examples;
    EXPECT_EQ(lc.orphan, 0u) << lc.examples;
    EXPECT_EQ(lc.index_broken, 0u) << lc.examples;
    EXPECT_EQ(lc.never_ended, 0u) << lc.examples;
    EXPECT_EQ(gaps, 1u);
    EXPECT_LT(gap_first, gap_last);
    EXPECT_EQ((gap_last - gap_first) / 1'000'000, gap_ms) << "status and the loss record disagree";
    EXPECT_LT(gap_last - gap_first, 10'000'000'000ull);
    EXPECT_EQ(inside, 0u) << "packet records inside the reported gap";
    // The counters went on from the dead run's: every flow the sink saw, counted once.
    EXPECT_EQ(C["flows_started"], lc.flows);
    EXPECT_EQ(C["flows_ended"], lc.flows);
    EXPECT_EQ(sink_sequence_gaps(read_file(m.sink_summary(0))), 0u) << read_file(m.sink_summary(0));
    if (pg) {
        // The dead writer's last events (in the adopted event ring) and the new run's: every flow
        // the sink saw is in the history exactly once, ended; none is left live.
        const std::string meter = m.scratch.instance;
        EXPECT_EQ(count(*pg, "SELECT count(*) FROM angel.flows WHERE meter_id = '" + meter + "'"), 0u);
        std::set<std::pair<uint64_t, uint64_t>> want, have;
        for (const auto& [id, ts] : lc.lives) want.emplace(id, ts / 1000);
        for (const auto& r : pg->query("SELECT flow_id, (extract(epoch FROM first_seen) * 1000000)::bigint FROM "
                                       "angel.flow_history WHERE meter_id = '" + meter + "' AND end_reason IS NOT NULL"))
            have.emplace(std::stoull(r[0]), std::stoull(r[1]));
        EXPECT_EQ(count(*pg, "SELECT count(*) FROM angel.flow_history WHERE meter_id = '" + meter + "'"), lc.lives.size());
        EXPECT_EQ(have.size(), want.size());
        uint64_t missing = 0;
        for (const auto& k : want) missing += !have.count(k);
        EXPECT_EQ(missing, 0u) << "flows the sink saw ended that the history does not hold ended";
        std::printf("[ adopt   ] database: %zu history rows ended for %zu flows, %llu missing\n", have.size(),
                    want.size(), static_cast<unsigned long long>(missing));
    }
    if (::testing::Test::HasFailure()) std::printf("%s\n----\n%s\n", first_log.c_str(), m.log().c_str());
}

TEST(CtldAdoption, KilledUnderLiveTrafficFlowsGoOnStartedOnceEndedOnce) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    kill_and_adopt("ad", nullptr);
}

TEST(CtldAdoption, KilledWithTheDatabaseHistoryHoldsEveryFlowOnce) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    if (const std::string why = PgServer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    PgServer pg;
    kill_and_adopt("adb", &pg);
}

// A left segment whose FlowMap holds an entry that cannot be a flow (a stage wrote it) is not
// adopted: removed, with the number of flows lost unended in the log, and a new one is made.
TEST(CtldAdoption, LeftSegmentThatFailsTheChecksIsRemovedAndCounted) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    NetnsMeter m("ab", "adoptbad");
    m.write_config(m.config(kPort));
    ASSERT_TRUE(m.start_sink(kPort, 30));
    ASSERT_TRUE(m.start_meter()) << m.log();
    const StatusView before = angelctl_status(m.sock);
    ASSERT_TRUE(before.ok) << before.raw;
    m.start_traffic(10, "--pps=20000");
    EXPECT_TRUE(wait_until_s([&] { return json_number_in(m.angelctl({"status", "--json"}).out, "flows", "live") > 0; },
                             10));
    m.ctld->signal(SIGKILL);
    ASSERT_TRUE(m.ctld->wait(5));
    wait_stages_gone(before);
    uint32_t live = 0;
    {
        // As root, the way a stage could have: an entry past the live ones with in_use 7.
        auto seg = Segment::attach(m.scratch.instance);
        FlowMap fm = seg->flow_map();
        live = fm.live();
        const uint32_t i = fm.high_water();
        ASSERT_LT(i, fm.capacity());
        auto* e = const_cast<FlowEntry*>(&fm.entry(i));
        e->in_use = 7;
        reinterpret_cast<FlowMapHeader*>(seg->base() + seg->layout().flow_map_offset)->high_water.store(i + 1);
    }
    ASSERT_GT(live, 0u);
    ASSERT_TRUE(m.start_meter()) << m.log();
    const std::string log = m.log();
    const std::string want = "live flows lost unended";
    const size_t at = log.find(want);
    ASSERT_NE(at, std::string::npos) << log;
    EXPECT_NE(log.find("is not a flow"), std::string::npos) << log;
    // "...; N live flows lost unended": N is the map's live count.
    const size_t semi = log.rfind("; ", at);
    ASSERT_NE(semi, std::string::npos);
    EXPECT_EQ(std::stoul(log.substr(semi + 2, at - semi - 3)), live) << log.substr(semi, at - semi + want.size());
    const std::string status = m.angelctl({"status", "--json"}).out;
    EXPECT_NE(status.find("\"recovery\":null"), std::string::npos) << status;
    ASSERT_TRUE(m.sender->wait(60));
    EXPECT_FALSE(m.stop_meter().empty());
    if (::testing::Test::HasFailure()) std::printf("%s\n", m.log().c_str());
}

}  // namespace
}  // namespace angel::itest
