// The database under live capture (issue 13, item 2), with a real PostgreSQL (pg_server.hpp) and
// a live meter in a netns (meter_harness.hpp):
//  - DbStopDrain.LiveStopIsBoundedCountedAndReconciled: the live stop's bound on the database.
//  - DbOverflow.ReconciledWhileEventsFlow: an event ring overflowed while the writer was blocked
//    is reconciled while traffic (and events) go on, not only once the ring is empty; afterwards
//    angel.flows equals the FlowMap exactly.
//
// The stop drain: a live meter whose database writer is
// blocked (a test session holds an exclusive lock on angel.flows) stops within
// database.stop_drain_ms plus the 1 s after which a hung query is broken; the flow events it
// could not write are counted and logged in one line with their number (exactly the flows live
// at the stop: their flow_end events), the stale rows stay in angel.flows, and the next start
// reconciles them away (angel.flows equals its empty FlowMap; history keeps the rows, with no
// end).
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <regex>
#include <set>

#include "meter_harness.hpp"
#include "pg_server.hpp"
#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr unsigned kPort = 4739;
constexpr int kDrainMs = 1000;

// A session holding LOCK TABLE angel.flows IN ACCESS EXCLUSIVE MODE until release() or its end.
class FlowsLock {
public:
    explicit FlowsLock(const std::string& conninfo) : c_(PQconnectdb(conninfo.c_str())) {}
    ~FlowsLock() { release(); }
    FlowsLock(const FlowsLock&) = delete;
    FlowsLock& operator=(const FlowsLock&) = delete;
    std::string take() {
        if (PQstatus(c_) != CONNECTION_OK) return PQerrorMessage(c_);
        PGresult* r = PQexec(c_, "BEGIN; LOCK TABLE angel.flows IN ACCESS EXCLUSIVE MODE");
        const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        return ok ? "" : PQerrorMessage(c_);
    }
    void release() {
        if (c_) PQfinish(c_);  // the server rolls back and drops the lock
        c_ = nullptr;
    }

private:
    PGconn* c_;
};

uint64_t count(const PgServer& pg, const std::string& sql) { return std::stoull(pg.query(sql)[0][0]); }

// (flow ID, first seen in microseconds) of the FlowMap's live flows and of the meter's rows.
using FlowKey = std::pair<uint64_t, uint64_t>;
std::set<FlowKey> flowmap_keys(const NetnsMeter& m) {
    std::set<FlowKey> out;
    const CommandResult r = m.angelctl({"flows", "--limit", "10000", "--json"});
    for (const auto& o : json_flat_objects(r.out))
        out.emplace(std::stoull(o.at("flow_id")), std::stoull(o.at("first_ns")) / 1000);
    return out;
}
std::set<FlowKey> db_keys(const PgServer& pg, const std::string& meter) {
    std::set<FlowKey> out;
    for (const auto& r : pg.query("SELECT flow_id, (extract(epoch FROM first_seen) * 1000000)::bigint FROM angel.flows "
                                  "WHERE meter_id = '" + meter + "'"))
        out.emplace(std::stoull(r[0]), std::stoull(r[1]));
    return out;
}

TEST(DbStopDrain, LiveStopIsBoundedCountedAndReconciled) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    if (const std::string why = PgServer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    PgServer pg;
    NetnsMeter m("dbsd", "dbsd");
    const std::string meter = m.scratch.instance;
    MeterConfig c = m.config_with_database(kPort, pg.conninfo());
    c.extra = std::regex_replace(c.extra, std::regex("poll_interval = 60;"),
                                 "poll_interval = 60; stop_drain_ms = " + std::to_string(kDrainMs) + ";");
    ASSERT_NE(c.extra.find("stop_drain_ms"), std::string::npos) << c.extra;
    m.write_config(c);
    const CommandResult init = m.angelctl({"db-init"});
    ASSERT_TRUE(init.ok()) << init.describe();
    const std::string rows_sql = "SELECT count(*) FROM angel.flows WHERE meter_id = '" + meter + "'";

    ASSERT_TRUE(m.start_sink(kPort, 60));
    ASSERT_TRUE(m.start_meter());
    m.start_traffic(1, "--pps=5000");
    ASSERT_TRUE(m.sender->wait(30)) << "tcpreplay did not finish";
    // Past the TCP linger (2 s), every flow written: the flows left live until the idle timeout.
    sleep_s(3.0);
    uint64_t live = 0;
    ASSERT_TRUE(wait_until_s([&] {
        const CommandResult st = m.angelctl({"status", "--json"});
        live = json_number_in(st.out, "flows", "live");
        const CommandResult sx = m.angelctl({"stats", "--json"});
        return live > 0 && json_number_in(sx.out, "event", "fill") == 0 && count(pg, rows_sql) == live;
    }, 10.0)) << "angel.flows " << count(pg, rows_sql) << " rows, FlowMap " << live << "\n" << m.log();

    FlowsLock lock(pg.conninfo());
    ASSERT_EQ(lock.take(), "");
    const auto t0 = std::chrono::steady_clock::now();
    auto C = m.stop_meter();
    const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_FALSE(C.empty()) << m.log();
    const std::string first_log = m.log();
    // Bounded: the drain bound, the hung query broken 1 s later, and the rest of a stop.
    EXPECT_LT(stop_s, kDrainMs / 1000.0 + 1.0 + 4.0) << first_log;
    // Counted and logged: one line, with exactly the flow_end events of the flows live at the stop.
    const std::string want = "database: " + std::to_string(live) + " flow events left unwritten at stop (" +
                             std::to_string(live) + " in the event ring, 0 dropped by procd during the stop;";
    EXPECT_NE(first_log.find(want), std::string::npos) << want << "\n" << first_log;
    EXPECT_NE(first_log.find(" events_left=" + std::to_string(live) + " "), std::string::npos) << first_log;
    EXPECT_EQ(C["flows_ended"], C["flows_started"]);
    lock.release();
    // Not written: the rows of those flows are still there.
    EXPECT_EQ(count(pg, rows_sql), live);

    // The next start reconciles angel.flows with its FlowMap (empty: no traffic now).
    ASSERT_TRUE(m.start_sink(kPort, 60));
    ASSERT_TRUE(m.start_meter());
    ASSERT_TRUE(wait_until_s([&] { return count(pg, rows_sql) == 0; }, 10.0)) << count(pg, rows_sql) << " rows\n" << m.log();
    const CommandResult st = m.angelctl({"status", "--json"});
    EXPECT_EQ(json_number_in(st.out, "flows", "live"), 0u) << st.out;
    EXPECT_NE(m.log().find("angel.flows reconciled with the 0 live flows (" + std::to_string(live) + " rows removed, 0 added"),
              std::string::npos)
        << m.log();
    // History keeps them, with no end (their flow_end was never written).
    EXPECT_EQ(count(pg, "SELECT count(*) FROM angel.flow_history WHERE meter_id = '" + meter + "' AND end_reason IS NULL"),
              live);
    auto C2 = m.stop_meter();
    ASSERT_FALSE(C2.empty()) << m.log();
    EXPECT_EQ(m.log().find("left unwritten"), std::string::npos) << m.log();
    std::printf("[ drain   ] %llu flow events left at a stop of %.2f s (bound %d ms), reconciled at the next start\n",
                static_cast<unsigned long long>(live), stop_s, kDrainMs);
}

TEST(DbOverflow, ReconciledWhileEventsFlow) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    if (const std::string why = PgServer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    PgServer pg;
    NetnsMeter m("dbov", "dbov");
    const std::string meter = m.scratch.instance;
    MeterConfig c = m.config_with_database(kPort, pg.conninfo());
    c.extra += "shm = { event_ring = 65536; };\n";  // 1,024 events
    m.write_config(c);
    const CommandResult init = m.angelctl({"db-init"});
    ASSERT_TRUE(init.ok()) << init.describe();
    ASSERT_TRUE(m.start_sink(kPort, 60));
    ASSERT_TRUE(m.start_meter());
    ASSERT_TRUE(wait_until_s([&] { return m.log().find("database") != std::string::npos &&
                                          m.log().find("connected") != std::string::npos; }, 10.0)) << m.log();

    // The writer blocked: the ring fills and procd drops (live capture never waits).
    FlowsLock lock(pg.conninfo());
    ASSERT_EQ(lock.take(), "");
    // 4,000 flows in 20,000 packets at 3,000 a second: about 6.7 s, 4,000 flow_start events
    // for a ring of 1,024.
    const fs::path trace = m.dir / "flows.pcap";
    const CommandResult gen = run_command({binary("angel-gen-trace").string(), "--out", trace.string(), "--packets",
                                           "20000", "--flows", "4000", "--pps", "3000"},
                                          Millis(60000));
    ASSERT_TRUE(gen.ok()) << gen.describe();
    m.start_traffic(1, "--pps=3000", {trace.string()});
    auto dropped = [&] { return json_number_in(m.angelctl({"status", "--json"}).out, "database", "events_dropped"); };
    ASSERT_TRUE(wait_until_s([&] { return dropped() > 0; }, 20.0)) << m.angelctl({"status", "--json"}).out;
    lock.release();
    // Reconciled while tcpreplay still sends: events keep coming during and after it.
    bool sending_at_reconcile = false;
    ASSERT_TRUE(wait_until_s([&] {
        const bool sending = m.sender->running();
        if (m.log().find("angel.flows reconciled with the") == std::string::npos) return false;
        sending_at_reconcile = sending;
        return true;
    }, 20.0, 0.05)) << m.log();
    EXPECT_TRUE(sending_at_reconcile) << "the reconcile came only after the traffic:\n" << m.log();
    EXPECT_NE(m.log().find("flow events were lost (event ring full); reconciling"), std::string::npos) << m.log();
    ASSERT_TRUE(m.sender->wait(30)) << "tcpreplay did not finish";
    // Quiet again (past the TCP linger): angel.flows equals the FlowMap, flow for flow.
    sleep_s(3.0);
    std::set<FlowKey> fm, db;
    const bool same = wait_until_s([&] {
        fm = flowmap_keys(m);
        db = db_keys(pg, meter);
        return !fm.empty() && fm == db;
    }, 15.0, 0.2);
    EXPECT_TRUE(same) << "FlowMap " << fm.size() << " flows, angel.flows " << db.size() << " rows\n" << m.log();
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();
    EXPECT_GE(C["flows_started"], 4000u) << "more flow events than the ring holds";
    std::printf("[ overflow] %llu events dropped while blocked, reconciled while sending; %zu live flows match\n",
                static_cast<unsigned long long>(parse_counters(m.log().substr(m.log().find("database: flows_written=")))["events_dropped"]),
                fm.size());
}

}  // namespace
}  // namespace angel::itest
