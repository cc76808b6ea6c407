// Flow rows in the database: angel.flows (live flows) and angel.flow_history (ended ones).
// DbFlowWriter turns a batch of procd's events (flow_start / flow_end records from the event
// ring) into one transaction of set-based statements, sorted by flow ID: new flows (and flows
// that start and end within the batch, into history) by COPY straight into their table, ended
// flows by COPY into a temporary table and one DELETE ... RETURNING into history, so the cost
// per flow is a few microseconds on the server. It is idempotent for repeated events (a procd
// killed mid-batch repeats its last batch): a COPY that meets a row of the same key is undone
// and the batch written again as upserts, ends match the row on (flow_id, first_seen) and
// history rows are keyed on (meter_id, flow_id, first_seen).
// reconcile() makes angel.flows list exactly the FlowMap's live flows (after an outage, an
// event-ring overflow, or at start).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/packet/parsed_packet.hpp"
#include "ctld/checked_segment_view.hpp"
#include "ctld/db/pg_copy_binary.hpp"
#include "shm/flow_map.hpp"
#include "shm/records.hpp"

namespace angel {

class DbConnection;

struct LiveFlow {
    uint32_t flow_id = 0;
    uint8_t ip_version = 0;
    uint8_t proto = 0;
    uint16_t sport = 0, dport = 0;  // as the flow's first packet saw them
    IpBytes src{}, dst{};
    uint64_t first_ns = 0;
};

// The live flows of the FlowMap (in_use && !ending), read through the checked view (copies,
// validated, at most the map's capacity).
std::vector<LiveFlow> snapshot_live_flows(const CheckedSegmentView& view);

struct FlowWriteStats {
    uint64_t started = 0;   // rows inserted into angel.flows
    uint64_t ended = 0;     // flow_end events applied
    uint64_t short_lived = 0;  // started and ended within one batch (straight to history)
};

class DbFlowWriter {
public:
    DbFlowWriter(std::string meter_id, bool history) : meter_(std::move(meter_id)), history_(history) {}
    // Once per connection: the temporary tables.
    void prepare(DbConnection& db);
    // One transaction for n events (other record types are ignored). Throws DbError; nothing is
    // committed then and the same batch can be written again.
    FlowWriteStats write_batch(DbConnection& db, const Record* recs, size_t n);
    // Deletes the meter's rows that are not live (into history with a NULL end_reason, when
    // history is on) and inserts the live flows that are missing. Returns {deleted, inserted}.
    std::pair<uint64_t, uint64_t> reconcile(DbConnection& db, const std::vector<LiveFlow>& live);

    // This writer keeps angel.flows' planner statistics current (maybe_analyze_live()); one
    // writer per meter is enough.
    void keep_statistics(bool on) { analyze_live_ = on; }
    uint64_t analyzes() const { return analyzes_; }

private:
    void maybe_analyze_live(DbConnection& db);

    std::string meter_;
    bool history_;
    bool flow_control_ = false;  // angel.flow_control exists (schema 2; prepare() looks)
    bool analyze_live_ = false;
    uint64_t rows_at_analyze_ = 0;     // rows this writer inserted up to its last ANALYZE
    uint64_t rows_since_analyze_ = 0;  // ... and since (both from the connection's start)
    uint64_t analyzes_ = 0;
    PgCopyBinary buf_start_, buf_end_, buf_short_;  // COPY data of the temporary tables
};

}  // namespace angel
