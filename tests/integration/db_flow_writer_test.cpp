// DbFlowWriter against a real PostgreSQL server: the rows each kind of batch leaves, checked by
// SQL on the tables (not by the writer's own counts), including the conflict paths that the
// fast path (COPY straight into the table) hands to ON CONFLICT: a batch repeated after a procd
// restart, a start whose ID still has a stale row, a short flow already in history.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "ctld/db/db_connection.hpp"
#include "ctld/db/db_flow_writer.hpp"
#include "ctld/db/db_schema.hpp"
#include "pg_server.hpp"
#include "shm/records.hpp"

using namespace angel;
using namespace angel::itest;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;  // 2023-11-14 22:13:20 UTC

IpBytes v4(const char* s) {
    IpBytes b{};
    inet_pton(AF_INET, s, b.data());
    return b;
}

Record start(uint32_t id, uint64_t first_ns, uint16_t sport) {
    Record r{};
    r.type = static_cast<uint8_t>(RecordType::flow_start);
    r.flow_id = id;
    r.ts_ns = first_ns;
    r.start.ip_version = 4;
    r.start.proto = 17;
    r.start.src = v4("10.0.0.1");
    r.start.dst = v4("192.0.2.9");
    r.start.sport = sport;
    r.start.dport = 53;
    return r;
}

Record end(uint32_t id, uint64_t first_ns, uint64_t last_ns, uint64_t packets, uint64_t bytes) {
    Record r{};
    r.type = static_cast<uint8_t>(RecordType::flow_end);
    r.flow_id = id;
    r.ts_ns = last_ns;
    r.end.first_ns = first_ns;
    r.end.packets[0] = packets;
    r.end.bytes[0] = bytes;
    r.end.reason = static_cast<uint8_t>(EndReason::idle);
    return r;
}

struct WriterFixture {
    PgServer pg;
    DbConnection db;
    DbFlowWriter writer{"m1", true};

    WriterFixture() {
        bool ok = false;
        const std::string msg = db_init(pg.conninfo(), 10000, &ok);
        if (!ok) throw std::runtime_error("db_init: " + msg);
        std::string err;
        if (!db.connect(pg.conninfo(), 10000, -1, &err)) throw std::runtime_error("connect: " + err);
        writer.prepare(db);
    }
    FlowWriteStats write(const std::vector<Record>& recs) { return writer.write_batch(db, recs.data(), recs.size()); }
    std::vector<std::vector<std::string>> q(const std::string& sql) const { return pg.query(sql); }
    std::string one(const std::string& sql) const { return pg.query(sql).at(0).at(0); }
};

}  // namespace

TEST(DbFlowWriter, StartsEndsAndShortFlowsLeaveExactlyTheseRows) {
    if (const std::string why = PgServer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    WriterFixture f;
    // Batch 1: three long flows start (out of ID order), one short flow starts and ends.
    FlowWriteStats st = f.write({start(30, kT0, 1000), start(10, kT0 + 1, 1001), start(20, kT0 + 2, 1002),
                                 start(40, kT0 + 3, 1003), end(40, kT0 + 3, kT0 + 4, 2, 120)});
    EXPECT_EQ(st.started, 3u);
    EXPECT_EQ(st.short_lived, 1u);
    EXPECT_EQ(f.q("SELECT flow_id, host(src_addr), src_port, host(dst_addr), dst_port, protocol FROM angel.flows "
                  "WHERE meter_id = 'm1' ORDER BY flow_id"),
              (std::vector<std::vector<std::string>>{{"10", "10.0.0.1", "1001", "192.0.2.9", "53", "17"},
                                                     {"20", "10.0.0.1", "1002", "192.0.2.9", "53", "17"},
                                                     {"30", "10.0.0.1", "1000", "192.0.2.9", "53", "17"}}));
    EXPECT_EQ(f.q("SELECT flow_id, src_port, packets, bytes, end_reason FROM angel.flow_history"),
              (std::vector<std::vector<std::string>>{{"40", "1003", "2", "120", "idle"}}));

    // Batch 2: two of them end (in descending ID order); the third stays.
    st = f.write({end(30, kT0, kT0 + 5 * kSec, 7, 700), end(10, kT0 + 1, kT0 + 6 * kSec, 8, 800)});
    EXPECT_EQ(st.ended, 2u);
    EXPECT_EQ(f.one("SELECT string_agg(flow_id::text, ',' ORDER BY flow_id) FROM angel.flows"), "20");
    EXPECT_EQ(f.q("SELECT flow_id, src_port, packets, bytes, extract(epoch FROM last_seen - first_seen) "
                  "FROM angel.flow_history ORDER BY flow_id"),
              (std::vector<std::vector<std::string>>{{"10", "1001", "8", "800", "6.000000"},
                                                     {"30", "1000", "7", "700", "5.000000"},
                                                     {"40", "1003", "2", "120", "0.000000"}}));
}

TEST(DbFlowWriter, ConflictsTakeTheSlowPathAndLoseNothing) {
    if (const std::string why = PgServer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    WriterFixture f;
    const std::vector<Record> first = {start(1, kT0, 2000), start(2, kT0, 2001), start(5, kT0, 2005),
                                       end(5, kT0, kT0 + kSec, 3, 300)};
    f.write(first);
    // The same batch again (a procd restarted mid-batch repeats it): the COPY of the starts meets
    // the rows of flows 1 and 2 and the short flow's history row; nothing doubles, no error.
    f.write(first);
    EXPECT_EQ(f.one("SELECT count(*) FROM angel.flows"), "2");
    EXPECT_EQ(f.one("SELECT count(*) FROM angel.flow_history"), "1");

    // Flow 2's end was lost (event-ring overflow) and a new flow took its ID: the newer start
    // replaces the stale row, an older start does not replace a newer row, and a new ID in
    // the same batch is written too (the slow path writes the whole batch).
    f.write({start(2, kT0 + 10 * kSec, 3002), start(1, kT0 - kSec, 3001), start(3, kT0, 3003)});
    EXPECT_EQ(f.q("SELECT flow_id, src_port FROM angel.flows ORDER BY flow_id"),
              (std::vector<std::vector<std::string>>{{"1", "2000"}, {"2", "3002"}, {"3", "3003"}}));
    // The end of the new flow 2 moves its row, with the new tuple, to history.
    f.write({end(2, kT0 + 10 * kSec, kT0 + 11 * kSec, 4, 400)});
    EXPECT_EQ(f.q("SELECT flow_id, src_port, packets FROM angel.flow_history ORDER BY flow_id, first_seen"),
              (std::vector<std::vector<std::string>>{{"2", "3002", "4"}, {"5", "2005", "3"}}));
    EXPECT_EQ(f.one("SELECT count(*) FROM angel.flows"), "2");
}
