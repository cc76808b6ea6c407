// The live stop's bound on the database (issue 13, item 2): a live meter whose database writer is
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

}  // namespace
}  // namespace angel::itest
