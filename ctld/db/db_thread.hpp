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
//     FlowMap;
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
    // Orderly stop: keeps writing until the event ring is empty (procd has finished) or
    // drain_ms passes, then disconnects. Bounded: a hung query is broken after drain_ms + 1 s.
    void stop(int drain_ms);
    DbThreadStats stats() const;

private:
    void run();
    void wait_wake(int timeout_ms, int sock);
    void publish_config(const DbConfigValues& v);
    void publish_flow_control(DbFlowControl v);
    bool drain_events(DbConnection& db, size_t max_events);  // true when the ring is empty
    void reconcile(DbConnection& db);

    DbThreadOptions opt_;
    Segment* seg_;
    std::unique_ptr<CheckedEventReader> events_;  // the event ring, consumer side (this thread only)
    std::vector<Record> batch_;
    DbFlowWriter writer_;
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
    uint64_t drain_deadline_ms_ = 0;
    bool finished_ = false;
    std::condition_variable finished_cv_;
    DbThreadStats stats_;
};

}  // namespace angel
