// angel-ctld's database thread: the only place that talks to PostgreSQL while the meter runs.
// It owns its libpq connection and does all database work itself, so a slow, hung or absent
// server never delays ctld's supervision loop, flow GC or control commands:
//   - configuration: reads the meter's rows after connecting, every database.poll_interval, on
//     a NOTIFY angel_config (LISTEN), and when asked (angelctl reload); a changed set of values
//     is handed to the main loop, which applies it through its reload path;
//   - flows: drains procd's event ring in batches into angel.flows / angel.flow_history
//     (DbFlowWriter), committing the ring only after the transaction committed, so nothing is
//     lost while the database is away (events wait in shared memory; an overflow is counted by
//     procd); after every (re)connect and after an overflow it reconciles angel.flows with the
//     FlowMap, while events keep coming (reconcile() says why that is correct);
//   - per-flow record control: reads the meter's angel.flow_control rows after connecting, on
//     a NOTIFY angel_flow_control and every database.poll_interval, and hands a changed set to
//     the main loop (ctld/flow_control_set.hpp);
//   - reconnects with backoff (250 ms doubling to 5 s).
// The main loop talks to it only through a mutex-protected mailbox and an eventfd (wake-up).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ctld/db/db_config_source.hpp"
#include "ctld/db/db_flow_control.hpp"
#include "ctld/db/db_connection.hpp"
#include "ctld/db/db_flow_writer.hpp"
#include "ctld/checked_segment_view.hpp"
#include <memory>
#include "shm/records.hpp"

namespace angel {

class Segment;

struct DbThreadOptions {
    std::string conninfo;   // never logged: mask_conninfo() only
    std::string meter_id;
    int poll_interval_s = 60;
    bool history = true;
    bool write_flows = true;  // drain the event ring (db_events is on in the live config)
};

struct DbThreadStats {
    bool connected = false;
    uint64_t connects = 0;
    uint64_t batches = 0;
    uint64_t flows_inserted = 0;
    uint64_t flows_ended = 0;
    uint64_t reconciles = 0;
    uint64_t busy_ns = 0;       // time spent writing flow batches (for flows per second)
    uint64_t config_reads = 0;
    uint64_t events_left = 0;   // events still in the ring when the stop's drain ended (unwritten)
    std::string last_error;
};

class DbThread {
public:
    // seg may be null when only configuration is wanted (write_flows must then be false).
    DbThread(DbThreadOptions opt, Segment* seg, DbConfigValues initial);
    ~DbThread();
    DbThread(const DbThread&) = delete;
    DbThread& operator=(const DbThread&) = delete;

    void start();
    // Main loop: the database's values, when they changed since the last call.
    std::optional<DbConfigValues> take_config_change();
    // Main loop: the angel.flow_control rows, when they changed since the last call.
    std::optional<DbFlowControl> take_flow_control_change();
    // The latest values read (what a file reload merges).
    DbConfigValues config() const;
    // angelctl reload: read the configuration again now (asynchronously).
    void request_refresh();
    // ctld's orderly stop begins (before procd ends its flows, so that their events are in the
    // bound). bounded (live): the database part of the stop ends drain_ms after this call at
    // most. Unbounded (replay): no limit while the writer makes progress; given up once it has
    // made none for drain_ms (database down, or a query hung with events waiting).
    void begin_stop(int drain_ms, bool bounded);
    // True once that bound has passed (ctld then lets procd drop events again).
    bool past_drain_bound() const;
    // After procd has finished: writes until the event ring is empty or the bound passes
    // (begin_stop(drain_ms, true) now if it was not called), then disconnects. A hung query is
    // broken 1 s after the bound. What is left is in stats().events_left.
    void stop(int drain_ms);
    DbThreadStats stats() const;

private:
    void run();
    void wait_wake(int timeout_ms, int sock);
    void publish_config(const DbConfigValues& v);
    void publish_flow_control(DbFlowControl v);
    // Writes at most max_events, none at ring position `upto` or after; true when nothing is
    // left to read below `upto` (with UINT64_MAX: the ring is empty).
    bool drain_events(DbConnection& db, size_t max_events, uint64_t upto = UINT64_MAX);
    void reconcile(DbConnection& db);
    int64_t drain_left_ms_locked(uint64_t now) const;  // INT64_MAX before begin_stop
    void note_progress();
    FlowWriteStats write_split(const Record* recs, size_t n);  // both halves, in parallel
    void close_all();

    DbThreadOptions opt_;
    Segment* seg_;
    std::unique_ptr<CheckedEventReader> events_;  // the event ring, consumer side (this thread only)
    std::vector<Record> batch_;
    std::vector<Record> half_[2];  // the batch split by flow ID, one half per connection
    DbFlowWriter writer_;
    // A second connection writes half of every batch at the same time (flows with an odd ID):
    // the server's work per flow is what limits the writer (about 10 us), and one connection
    // is one server process on one CPU. A flow's events all go to the same connection, in order.
    DbFlowWriter writer_aux_;
    DbConnection db_aux_;
    int wake_fd_ = -1;
    std::thread thread_;
    DbConnection db_;

    mutable std::mutex mu_;
    DbConfigValues latest_;
    bool config_changed_ = false;
    DbFlowControl flow_control_;
    bool flow_control_changed_ = false;
    bool refresh_ = false;
    bool stop_ = false;
    uint64_t drain_begin_ms_ = 0;     // 0: no stop begun
    int drain_ms_ = 0;
    bool drain_bounded_ = true;
    uint64_t last_progress_ms_ = 0;   // a batch committed, or connected with nothing waiting
    bool finished_ = false;
    std::condition_variable finished_cv_;
    DbThreadStats stats_;
};

}  // namespace angel
