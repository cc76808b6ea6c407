#include "ctld/db/db_flow_writer.hpp"

#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <unordered_set>
#include <algorithm>
#include <atomic>

#include "ctld/db/db_connection.hpp"
#include "ctld/db/pg_copy_binary.hpp"

namespace angel {

namespace {

// meter_id, flow_id, ip_version, protocol, src_addr, src_port, dst_addr, dst_port, first_seen:
// angel.flows' columns, the first of a history row's.
void put_tuple(PgCopyBinary& b, const std::string& meter, uint32_t id, uint8_t ver, uint8_t proto, const IpBytes& src,
               uint16_t sport, const IpBytes& dst, uint16_t dport, uint64_t first_ns) {
    b.text(meter);
    b.i64(id);
    b.i16(ver);
    b.i16(proto);
    b.inet(ver, src);
    b.i32(sport);
    b.inet(ver, dst);
    b.i32(dport);
    b.timestamptz(first_ns);
}
constexpr uint16_t kTupleFields = 9;

// last_seen, end_reason, packets, bytes
void put_end(PgCopyBinary& b, const Record& r) {
    b.timestamptz(r.ts_ns);
    b.text(end_reason_name(static_cast<EndReason>(r.end.reason)));
    b.i64(static_cast<int64_t>(r.end.packets[0] + r.end.packets[1]));
    b.i64(static_cast<int64_t>(r.end.bytes[0] + r.end.bytes[1]));
}
constexpr uint16_t kEndFields = 4;

struct KeyHash {
    size_t operator()(const std::pair<uint32_t, uint64_t>& k) const {
        return std::hash<uint64_t>()(k.second * 0x9E3779B97F4A7C15ull ^ k.first);
    }
};

const char* kTupleCols = "flow_id, ip_version, protocol, src_addr, src_port, dst_addr, dst_port, first_seen";
const char* kEndCols = "last_seen, end_reason, packets, bytes";

// After a failed statement: end the transaction if the connection still stands; the original
// error is what the caller reports.
void rollback_quietly(DbConnection& db) {
    if (!db.ok()) return;
    try {
        db.exec("ROLLBACK");
    } catch (const DbError&) {
    }
}

// A plain INSERT first, the upsert only when it meets a row of the same key. ON CONFLICT's
// speculative insertion costs about 3x per row (50,000 starts into angel.flows: 105 ms plain,
// 352 ms with ON CONFLICT DO UPDATE, PostgreSQL 15 here), and a conflict is rare: a flow ID
// whose stale row stayed after an event-ring overflow, a batch repeated after a procd restart,
// a row a reconcile moved to history before its end came. The savepoint undoes the whole
// statement, so the upsert then does it all again.
// Returns the rows the statement inserted.
uint64_t insert_fast(DbConnection& db, const std::string& plain, const std::string& upsert,
                     const std::vector<std::string>& params) {
    db.exec("SAVEPOINT angel_fast");
    PgResult r;
    try {
        r = db.exec(plain, params);
    } catch (const DbError& e) {
        if (e.sqlstate() != "23505") throw;  // anything but a unique violation is an error
        db.exec("ROLLBACK TO SAVEPOINT angel_fast");
        r = db.exec(upsert, params);
    }
    db.exec("RELEASE SAVEPOINT angel_fast");
    return std::strtoull(PQcmdTuples(r.get()), nullptr, 10);
}

// COPY straight into the table, the cheapest way in; false (and nothing written) when a row
// meets one of the same key, which the caller then writes with ON CONFLICT from a temporary
// table (COPY has no conflict clause). A conflict is as rare as for insert_fast().
bool copy_fast(DbConnection& db, const std::string& copy_sql, const PgCopyBinary& rows) {
    db.exec("SAVEPOINT angel_copy");
    try {
        db.copy_in(copy_sql, rows.data());
    } catch (const DbError& e) {
        if (e.sqlstate() != "23505") throw;
        db.exec("ROLLBACK TO SAVEPOINT angel_copy");
        db.exec("RELEASE SAVEPOINT angel_copy");
        return false;
    }
    db.exec("RELEASE SAVEPOINT angel_copy");
    return true;
}

}  // namespace

std::vector<LiveFlow> snapshot_live_flows(const CheckedSegmentView& view) {
    // At most the map's capacity (ctld's own figure), whatever procd's counters say.
    std::vector<LiveFlow> out;
    out.reserve(view.live_flows());
    view.scan_flows([&](const FlowEntry& c) {
        LiveFlow f;
        f.flow_id = c.flow_id;
        f.ip_version = c.key.ip_version;
        f.proto = c.key.proto;
        const bool rev = c.first_reversed;
        f.src = rev ? c.key.addr_hi : c.key.addr_lo;
        f.dst = rev ? c.key.addr_lo : c.key.addr_hi;
        f.sport = rev ? c.key.port_hi : c.key.port_lo;
        f.dport = rev ? c.key.port_lo : c.key.port_hi;
        f.first_ns = c.first_ns;
        out.push_back(f);
        return true;
    });
    return out;
}

void DbFlowWriter::prepare(DbConnection& db) {
    db.exec(
        // angel.flows' and angel.flow_history's columns (but ended_at): the same COPY data goes
        // into the table or, after a conflict, into these.
        "CREATE TEMP TABLE IF NOT EXISTS angel_tmp_start (meter_id text, flow_id bigint, ip_version smallint, "
        "  protocol smallint, src_addr inet, src_port integer, dst_addr inet, dst_port integer, first_seen timestamptz) "
        "  ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE IF NOT EXISTS angel_tmp_end (flow_id bigint, first_seen timestamptz, "
        "  last_seen timestamptz, end_reason text, packets bigint, bytes bigint) ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE IF NOT EXISTS angel_tmp_short (meter_id text, flow_id bigint, ip_version smallint, protocol smallint, "
        "  src_addr inet, src_port integer, dst_addr inet, dst_port integer, first_seen timestamptz, "
        "  last_seen timestamptz, end_reason text, packets bigint, bytes bigint) ON COMMIT DELETE ROWS;");
    // Statistics only for the join keys, from a small sample: ANALYZE of each batch (see
    // write_batch()) needs the row count and that the keys are unique, nothing more.
    db.exec(
        "ALTER TABLE angel_tmp_end ALTER flow_id SET STATISTICS 10, ALTER first_seen SET STATISTICS 10, "
        "  ALTER last_seen SET STATISTICS 0, ALTER end_reason SET STATISTICS 0, ALTER packets SET STATISTICS 0, "
        "  ALTER bytes SET STATISTICS 0");
    rows_at_analyze_ = 0;
    rows_since_analyze_ = 0;
    // A database not yet upgraded to schema 2 has no angel.flow_control: flows are still written.
    flow_control_ = db.exec("SELECT to_regclass('angel.flow_control') IS NOT NULL").text(0, 0) == "t";
}

FlowWriteStats DbFlowWriter::write_batch(DbConnection& db, const Record* recs, size_t n) {
    FlowWriteStats st;
    // In event order: a start whose end follows in the same batch goes straight to history;
    // repeated events (same flow ID and first-seen time) count once.
    std::vector<const Record*> starts;
    std::vector<const Record*> ends;
    std::vector<std::pair<const Record*, const Record*>> shorts;
    std::unordered_map<uint32_t, size_t> pending;  // flow_id -> index in starts
    std::unordered_set<std::pair<uint32_t, uint64_t>, KeyHash> ended;
    for (size_t i = 0; i < n; ++i) {
        const Record& r = recs[i];
        if (r.type == static_cast<uint8_t>(RecordType::flow_start)) {
            if (ended.count({r.flow_id, r.ts_ns})) continue;
            auto it = pending.find(r.flow_id);
            if (it != pending.end()) starts[it->second] = &r;
            else {
                pending.emplace(r.flow_id, starts.size());
                starts.push_back(&r);
            }
        } else if (r.type == static_cast<uint8_t>(RecordType::flow_end)) {
            if (!ended.insert({r.flow_id, r.end.first_ns}).second) continue;
            auto it = pending.find(r.flow_id);
            if (it != pending.end() && starts[it->second] && starts[it->second]->ts_ns == r.end.first_ns) {
                shorts.emplace_back(starts[it->second], &r);
                starts[it->second] = nullptr;
                pending.erase(it);
            } else {
                ends.push_back(&r);
            }
        }
    }
    buf_start_.begin();
    buf_end_.begin();
    buf_short_.begin();
    // By flow ID: consecutive rows then land in neighbouring pages of the primary keys' B-trees
    // (flow IDs are hashes, so batch order is random order there).
    std::erase(starts, nullptr);
    const auto by_id = [](const Record* a, const Record* b) { return a->flow_id < b->flow_id; };
    std::sort(starts.begin(), starts.end(), by_id);
    std::sort(shorts.begin(), shorts.end(), [&](const auto& a, const auto& b) { return by_id(a.first, b.first); });
    for (const Record* r : starts) {
        buf_start_.row(kTupleFields);
        put_tuple(buf_start_, meter_, r->flow_id, r->start.ip_version, r->start.proto, r->start.src, r->start.sport,
                  r->start.dst, r->start.dport, r->ts_ns);
        ++st.started;
    }
    std::sort(ends.begin(), ends.end(), by_id);
    for (const Record* r : ends) {
        buf_end_.row(2 + kEndFields);
        buf_end_.i64(r->flow_id);
        buf_end_.timestamptz(r->end.first_ns);
        put_end(buf_end_, *r);
    }
    st.ended = ends.size() + shorts.size();
    st.short_lived = shorts.size();
    if (history_) {
        for (const auto& [s, e] : shorts) {
            buf_short_.row(kTupleFields + kEndFields);
            put_tuple(buf_short_, meter_, s->flow_id, s->start.ip_version, s->start.proto, s->start.src, s->start.sport,
                      s->start.dst, s->start.dport, s->ts_ns);
            put_end(buf_short_, *e);
        }
    }
    buf_start_.finish();
    buf_end_.finish();
    buf_short_.finish();
    if (!buf_start_.has_rows() && !buf_end_.has_rows() && !buf_short_.has_rows()) return st;

    const std::vector<std::string> m{meter_};
    db.exec("BEGIN");
    try {
        if (buf_end_.has_rows()) {
            db.copy_in("COPY angel_tmp_end FROM STDIN WITH (FORMAT binary)", buf_end_.data());
            // A temporary table has no statistics until ANALYZE (autovacuum never sees it), so
            // the planner guessed its size from its pages and hashed angel.flows instead, all
            // live flows, spilling to disk past work_mem. Counted, it hashes the batch and
            // streams angel.flows past it: 50,000 ends against 300,000 live flows, idle server,
            // DELETE + history INSERT 409-509 ms -> 306-308 ms. (prepare() keeps the sample
            // small: 2 ms for 25,000 rows instead of 6-10.)
            db.exec("ANALYZE angel_tmp_end");
            // One index probe per ended flow, in key order (the batch is sorted by flow ID), not a
            // hash of the batch that every live row is streamed past: the planner prices the
            // probes as random page reads and picks the hash, whose scan of all live flows is
            // paid again by each batch. bench/db, 1,000,000 flows, idle machine: the DELETE of
            // 25,000 ends against 760,000 live flows 175 -> 70 ms, 89.5k -> 103.8k flows/s
            // written. (Unsorted, the probes were slower than the hash: 42-45k vs 52k flows/s.)
            db.exec("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
            if (history_) {
                // The end's columns come with RETURNING from the USING table: no second join.
                const std::string moved_sql =
                    std::string("WITH d AS (DELETE FROM angel.flows f USING angel_tmp_end e "
                                "  WHERE f.meter_id = $1 AND f.flow_id = e.flow_id AND f.first_seen = e.first_seen "
                                "  RETURNING f.meter_id, f.flow_id, f.ip_version, f.protocol, f.src_addr, f.src_port, "
                                "    f.dst_addr, f.dst_port, f.first_seen, e.last_seen, e.end_reason, e.packets, e.bytes) "
                                "INSERT INTO angel.flow_history (meter_id, ") +
                    kTupleCols + ", " + kEndCols + ") SELECT * FROM d";
                const uint64_t moved = insert_fast(db, moved_sql,
                            moved_sql + " ON CONFLICT (meter_id, flow_id, first_seen) DO UPDATE SET "
                                        "last_seen = EXCLUDED.last_seen, end_reason = EXCLUDED.end_reason, "
                                        "packets = EXCLUDED.packets, bytes = EXCLUDED.bytes",
                            m);
                // Rows a reconciliation moved to history before their end event arrived (only
                // when some end found no live row).
                if (moved < ends.size())
                    db.exec("UPDATE angel.flow_history h SET last_seen = e.last_seen, end_reason = e.end_reason, "
                        "  packets = e.packets, bytes = e.bytes FROM angel_tmp_end e "
                        "WHERE h.meter_id = $1 AND h.flow_id = e.flow_id AND h.first_seen = e.first_seen "
                        "  AND h.end_reason IS NULL",
                        m);
            } else {
                db.exec("DELETE FROM angel.flows f USING angel_tmp_end e "
                        "WHERE f.meter_id = $1 AND f.flow_id = e.flow_id AND f.first_seen = e.first_seen",
                        m);
            }
        }
        if (buf_end_.has_rows()) db.exec("RESET enable_hashjoin; RESET enable_mergejoin");
        if (buf_end_.has_rows() && flow_control_) {
            // The classifier's mute/full rows of flows that ended (set while the flow lived): a
            // later flow that reuses the ID starts plain.
            db.exec("DELETE FROM angel.flow_control c USING angel_tmp_end e "
                    "WHERE c.meter_id = $1 AND c.flow_id = e.flow_id AND c.set_at >= e.first_seen",
                    m);
        }
        if (buf_short_.has_rows()) {
            const std::string cols = std::string("(meter_id, ") + kTupleCols + ", " + kEndCols + ")";
            if (!copy_fast(db, "COPY angel.flow_history " + cols + " FROM STDIN WITH (FORMAT binary)", buf_short_)) {
                db.copy_in("COPY angel_tmp_short FROM STDIN WITH (FORMAT binary)", buf_short_.data());
                db.exec("INSERT INTO angel.flow_history " + cols +
                        " SELECT * FROM angel_tmp_short ON CONFLICT (meter_id, flow_id, first_seen) DO NOTHING");
            }
        }
        if (buf_start_.has_rows()) {
            const std::string cols = std::string("(meter_id, ") + kTupleCols + ")";
            if (!copy_fast(db, "COPY angel.flows " + cols + " FROM STDIN WITH (FORMAT binary)", buf_start_)) {
                // A row of the same ID with an older first-seen time is a flow whose end was
                // lost (event ring overflow): the newer flow replaces it.
                db.copy_in("COPY angel_tmp_start FROM STDIN WITH (FORMAT binary)", buf_start_.data());
                db.exec("INSERT INTO angel.flows " + cols +
                        " SELECT * FROM angel_tmp_start ON CONFLICT (meter_id, flow_id) DO UPDATE SET "
                        "  ip_version = EXCLUDED.ip_version, protocol = EXCLUDED.protocol, src_addr = EXCLUDED.src_addr, "
                        "  src_port = EXCLUDED.src_port, dst_addr = EXCLUDED.dst_addr, dst_port = EXCLUDED.dst_port, "
                        "  first_seen = EXCLUDED.first_seen "
                        "WHERE angel.flows.first_seen < EXCLUDED.first_seen");
            }
        }
        db.exec("COMMIT");
    } catch (const DbError&) {
        rollback_quietly(db);
        throw;
    }
    rows_since_analyze_ += st.started;
    maybe_analyze_live(db);
    return st;
}

// The DELETE of ended flows joins the batch with angel.flows, and the planner picks the side to
// hash from angel.flows' statistics. Without any (a new or truncated table that autovacuum has
// not analyzed yet, which takes a minute at its default pace) it takes `meter_id = $1` for 0.5%
// of the rows and hashes all live flows: in bench/db 230 ms of a 390 ms DELETE of 25,000 ends
// against 236,000 live flows went into that hash, spilled to disk. The planner scales the row
// count by the table's current size, so statistics go stale mostly by the meter's share of the
// rows, which a sample of a table this writer filled shows; the writer analyzes after the rows
// it inserted since the last time doubled what there were then (from 10,000 rows: a few times a
// run, tens of ms each). Not the owner of the table: PostgreSQL skips it with a warning and
// autovacuum's statistics are what there is. Its own short transaction with a lock timeout, so
// a VACUUM or ANALYZE running elsewhere does not hold up the flows.
void DbFlowWriter::maybe_analyze_live(DbConnection& db) {
    constexpr uint64_t kFirst = 10000;
    if (!analyze_live_ || rows_since_analyze_ < std::max(kFirst, rows_at_analyze_)) return;
    try {
        db.exec("BEGIN");
        db.exec("SET LOCAL lock_timeout = '100ms'");
        // 3,000 sampled rows instead of 30,000: enough for the meter's share and the row
        // count (autovacuum's ANALYZE later keeps the full target).
        db.exec("SET LOCAL default_statistics_target = 10");
        db.exec("ANALYZE angel.flows");
        db.exec("COMMIT");
        rows_at_analyze_ += rows_since_analyze_;
        rows_since_analyze_ = 0;
        ++analyzes_;
    } catch (const DbError& e) {
        // The batch is committed whatever happens here: statistics are an optimisation. A lock
        // held elsewhere (lock_not_available): the next batch tries again; any other error: the
        // next doubling (a broken connection shows in the next statement).
        rollback_quietly(db);
        if (e.sqlstate() != "55P03") {
            rows_at_analyze_ += rows_since_analyze_;
            rows_since_analyze_ = 0;
        }
    }
}

std::pair<uint64_t, uint64_t> DbFlowWriter::reconcile(DbConnection& db, const std::vector<LiveFlow>& live) {
    buf_start_.begin();
    for (const LiveFlow& f : live) {
        buf_start_.row(kTupleFields);
        put_tuple(buf_start_, meter_, f.flow_id, f.ip_version, f.proto, f.src, f.sport, f.dst, f.dport, f.first_ns);
    }
    buf_start_.finish();
    const std::vector<std::string> m{meter_};
    uint64_t deleted = 0, inserted = 0;
    db.exec("BEGIN");
    try {
        db.copy_in("COPY angel_tmp_start FROM STDIN WITH (FORMAT binary)", buf_start_.data());
        db.exec("ANALYZE angel_tmp_start");
        const std::string not_live =
            "NOT EXISTS (SELECT 1 FROM angel_tmp_start l WHERE l.flow_id = f.flow_id AND l.first_seen = f.first_seen)";
        PgResult d;
        if (history_) {
            d = db.exec(std::string("WITH g AS (DELETE FROM angel.flows f WHERE f.meter_id = $1 AND ") + not_live +
                            " RETURNING f.*), h AS (INSERT INTO angel.flow_history (meter_id, " + kTupleCols +
                            ") SELECT * FROM g ON CONFLICT (meter_id, flow_id, first_seen) DO NOTHING) "
                            "SELECT count(*) FROM g",
                        m);
        } else {
            d = db.exec(std::string("WITH g AS (DELETE FROM angel.flows f WHERE f.meter_id = $1 AND ") + not_live +
                            " RETURNING 1) SELECT count(*) FROM g",
                        m);
        }
        deleted = std::stoull(d.text(0, 0));
        PgResult i = db.exec(std::string("WITH i AS (INSERT INTO angel.flows (meter_id, ") + kTupleCols +
                                 ") SELECT * FROM angel_tmp_start ON CONFLICT (meter_id, flow_id) DO NOTHING "
                                 "RETURNING 1) SELECT count(*) FROM i");
        inserted = std::stoull(i.text(0, 0));
        db.exec("COMMIT");
    } catch (const DbError&) {
        rollback_quietly(db);
        throw;
    }
    rows_since_analyze_ += inserted;
    maybe_analyze_live(db);
    return {deleted, inserted};
}

}  // namespace angel
