#include "ctld/db/db_thread.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>

#include "common/log.hpp"
#include "shm/segment.hpp"

namespace angel {

namespace {

constexpr size_t kBatch = 50000;          // events per transaction at most
constexpr size_t kPerRound = 200000;      // events per round before notifications are checked
constexpr int kConnectTimeoutMs = 3000;
constexpr int kBackoffFirstMs = 250;
constexpr int kBackoffMaxMs = 5000;
constexpr int kIdleWaitMs = 20;           // event-ring check pace when idle

}  // namespace

DbThread::DbThread(DbThreadOptions opt, Segment* seg, DbConfigValues initial)
    : opt_(std::move(opt)),
      seg_(seg),
      writer_(opt_.meter_id, opt_.history),
      writer_aux_(opt_.meter_id, opt_.history),
      latest_(std::move(initial)) {
    if (!seg_) opt_.write_flows = false;
    writer_.keep_statistics(true);
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
}

DbThread::~DbThread() {
    stop(0);
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

void DbThread::start() {
    if (opt_.write_flows) batch_.resize(kBatch);
    thread_ = std::thread([this] { run(); });
}

std::optional<DbConfigValues> DbThread::take_config_change() {
    std::lock_guard<std::mutex> g(mu_);
    if (!config_changed_) return std::nullopt;
    config_changed_ = false;
    return latest_;
}

std::optional<DbFlowControl> DbThread::take_flow_control_change() {
    std::lock_guard<std::mutex> g(mu_);
    if (!flow_control_changed_) return std::nullopt;
    flow_control_changed_ = false;
    return flow_control_;
}

void DbThread::publish_flow_control(DbFlowControl v) {
    std::lock_guard<std::mutex> g(mu_);
    if (!(v == flow_control_)) {
        flow_control_ = std::move(v);
        flow_control_changed_ = true;
    }
}

DbConfigValues DbThread::config() const {
    std::lock_guard<std::mutex> g(mu_);
    return latest_;
}

void DbThread::request_refresh() {
    {
        std::lock_guard<std::mutex> g(mu_);
        refresh_ = true;
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

DbThreadStats DbThread::stats() const {
    std::lock_guard<std::mutex> g(mu_);
    return stats_;
}

void DbThread::begin_stop(int drain_ms, bool bounded) {
    std::lock_guard<std::mutex> g(mu_);
    if (drain_begin_ms_) return;
    drain_begin_ms_ = monotonic_ms();
    drain_ms_ = std::max(drain_ms, 0);
    drain_bounded_ = bounded;
}

int64_t DbThread::drain_left_ms_locked(uint64_t now) const {
    if (!drain_begin_ms_) return INT64_MAX;
    const uint64_t base = drain_bounded_ ? drain_begin_ms_ : std::max(drain_begin_ms_, last_progress_ms_);
    return static_cast<int64_t>(base + static_cast<uint64_t>(drain_ms_)) - static_cast<int64_t>(now);
}

bool DbThread::past_drain_bound() const {
    std::lock_guard<std::mutex> g(mu_);
    return drain_left_ms_locked(monotonic_ms()) <= 0;
}

void DbThread::note_progress() {
    std::lock_guard<std::mutex> g(mu_);
    last_progress_ms_ = monotonic_ms();
}

void DbThread::stop(int drain_ms) {
    if (!thread_.joinable()) return;
    begin_stop(drain_ms, true);  // no-op when ctld's stop already began it
    {
        std::lock_guard<std::mutex> g(mu_);
        stop_ = true;
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
    {
        // The thread ends itself once the bound passes; only a query that hangs keeps it
        // (it cannot look at the clock then): broken 1 s after the bound.
        std::unique_lock<std::mutex> g(mu_);
        while (!finished_cv_.wait_for(g, std::chrono::milliseconds(100), [&] { return finished_; })) {
            if (drain_left_ms_locked(monotonic_ms()) < -1000) {
                g.unlock();
                log_warn("database: a query still hangs at stop; breaking the connection");
                db_.interrupt();
                db_aux_.interrupt();
                break;
            }
        }
    }
    thread_.join();
}

void DbThread::wait_wake(int timeout_ms, int sock) {
    pollfd p[2] = {{wake_fd_, POLLIN, 0}, {sock, POLLIN, 0}};
    if (poll(p, sock >= 0 ? 2 : 1, timeout_ms) > 0 && (p[0].revents & POLLIN)) {
        uint64_t v;
        [[maybe_unused]] ssize_t n = read(wake_fd_, &v, sizeof v);
    }
}

void DbThread::publish_config(const DbConfigValues& v) {
    std::lock_guard<std::mutex> g(mu_);
    ++stats_.config_reads;
    if (!(v == latest_)) {
        latest_ = v;
        config_changed_ = true;
    }
}

bool DbThread::drain_events(DbConnection& db, size_t max_events, uint64_t upto) {
    // Bounded by max_events slots per call whatever procd published (the reader reads at
    // most kBatch slots per read), so a hostile head cannot keep this loop going.
    size_t scanned = 0;
    while (scanned < max_events) {
        const size_t n = events_->read_until(batch_.data(), kBatch, upto);
        scanned += kBatch;
        if (n == 0) {
            events_->commit();  // refused records are done with: release them to procd
            if (events_->empty() || events_->read_position() >= upto) return true;
            continue;  // a stretch of refused records; the next read goes on after it
        }
        const uint64_t t0 = monotonic_ns();
        FlowWriteStats st;
        try {
            st = db_aux_.ok() ? write_split(batch_.data(), n) : writer_.write_batch(db, batch_.data(), n);
        } catch (...) {
            events_->rewind();  // a failed transaction leaves the events in the ring
            throw;
        }
        events_->commit();
        std::lock_guard<std::mutex> g(mu_);
        stats_.busy_ns += monotonic_ns() - t0;
        ++stats_.batches;
        stats_.flows_inserted += st.started + st.short_lived;
        stats_.flows_ended += st.ended;
        last_progress_ms_ = monotonic_ms();
    }
    return false;
}

// Each half is its own transaction. When one commits and the other fails, the whole batch is
// written again: its committed half is idempotent (DbFlowWriter: starts are upserts, an end whose
// row is gone finds nothing to move, history rows are keyed).
FlowWriteStats DbThread::write_split(const Record* recs, size_t n) {
    half_[0].clear();
    half_[1].clear();
    for (size_t i = 0; i < n; ++i) half_[recs[i].flow_id & 1].push_back(recs[i]);
    FlowWriteStats aux;
    std::exception_ptr aux_error, own_error;
    std::thread t([&] {
        try {
            aux = writer_aux_.write_batch(db_aux_, half_[1].data(), half_[1].size());
        } catch (...) {
            aux_error = std::current_exception();
        }
    });
    FlowWriteStats st;
    try {
        st = writer_.write_batch(db_, half_[0].data(), half_[0].size());
    } catch (...) {
        own_error = std::current_exception();
    }
    t.join();
    if (own_error) std::rethrow_exception(own_error);
    if (aux_error) std::rethrow_exception(aux_error);
    st.started += aux.started;
    st.ended += aux.ended;
    st.short_lived += aux.short_lived;
    return st;
}

void DbThread::close_all() {
    db_.close();
    db_aux_.close();
}

// Correct while procd keeps writing events, without waiting for an empty ring (which a busy
// meter may never have). procd changes a flow in the FlowMap before it queues the flow's event,
// and publishes the ring's head (release) after both. So, with H = the head read before the
// FlowMap is copied:
//   - every event below H describes a change the copy already shows. Those not yet written
//     are written first (at most the ring's capacity), then the copy replaces angel.flows:
//     it supersedes them, and their history rows stay.
//   - every change the copy misses or shows half-way (it is read while procd works) has its
//     event at H or after, written after the copy: a start of a flow the copy has is a no-op
//     (same first_seen), an end of a flow the copy already lacks finds its row in history
//     (moved there with a NULL end_reason) and completes it, and the rest applies as usual.
//   - an event dropped after the drop counter was read (before H) is counted again, and the
//     next turn reconciles again.
// Events below H must not be written after the copy: the start of a flow whose end was
// dropped would put back the stale row the copy removed.
void DbThread::reconcile(DbConnection& db) {
    const uint64_t t0 = monotonic_ms();
    const uint64_t mark = events_->published();
    const auto live = snapshot_live_flows(CheckedSegmentView(*seg_));
    // Below the mark: at most the ring's capacity, so this ends however fast procd goes on.
    while (!drain_events(db, kPerRound, mark)) {
    }
    const auto [deleted, inserted] = writer_.reconcile(db, live);
    {
        std::lock_guard<std::mutex> g(mu_);
        ++stats_.reconciles;
        last_progress_ms_ = monotonic_ms();
    }
    if (deleted || inserted)
        log_notice("database: angel.flows reconciled with the %zu live flows (%llu rows removed, %llu added, %llu ms)",
                   live.size(), static_cast<unsigned long long>(deleted), static_cast<unsigned long long>(inserted),
                   static_cast<unsigned long long>(monotonic_ms() - t0));
}

void DbThread::run() {
    // The database must never slow capture: on a busy machine this thread yields the CPU to
    // the stages (Linux: a thread's nice value is its own).
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
    const std::string masked = mask_conninfo(opt_.conninfo);
    int backoff = kBackoffFirstMs;
    bool need_reconcile = true;
    bool reported_down = false;
    uint64_t next_poll = 0;
    uint64_t dropped_seen = 0;
    uint64_t lost_at_boundary = 0;  // events the checked reader skipped (bad head or record)
    auto events_dropped = [&]() -> uint64_t {
        if (!seg_) return 0;
        if (events_) lost_at_boundary += events_->take_lost();
        return CheckedSegmentView(*seg_).counter(StageId::procd, procd_events_dropped) + lost_at_boundary;
    };
    if (opt_.write_flows) events_ = std::make_unique<CheckedEventReader>(*seg_);
    for (;;) {
        bool stopping;
        int64_t left;
        {
            std::lock_guard<std::mutex> g(mu_);
            stopping = stop_;
            left = drain_left_ms_locked(monotonic_ms());
        }
        if (stopping && left <= 0) break;
        if (!db_.ok() || (opt_.write_flows && !db_aux_.ok())) {
            close_all();  // both or neither
            std::string err;
            int limit = kConnectTimeoutMs;
            if (stopping) limit = static_cast<int>(std::min<int64_t>(left, kConnectTimeoutMs));
            bool up = db_.connect(opt_.conninfo, limit, stopping ? -1 : wake_fd_, &err);
            if (up) {
                try {
                    db_.exec("SET client_min_messages = warning");
                    db_.exec("LISTEN angel_config");
                    db_.exec("LISTEN angel_flow_control");
                    if (opt_.write_flows) {
                        writer_.prepare(db_);
                        std::string aux_err;
                        if (!db_aux_.connect(opt_.conninfo, limit, stopping ? -1 : wake_fd_, &aux_err))
                            throw DbError("second connection: " + aux_err);
                        db_aux_.exec("SET client_min_messages = warning");
                        writer_aux_.prepare(db_aux_);
                    }
                    publish_config(fetch_db_config(db_, opt_.meter_id));
                    publish_flow_control(fetch_db_flow_control(db_, opt_.meter_id));
                } catch (const DbError& e) {
                    err = e.what();
                    close_all();
                    up = false;
                }
            }
            if (!up) {
                {
                    std::lock_guard<std::mutex> g(mu_);
                    stats_.connected = false;
                    stats_.last_error = err;
                }
                if (!reported_down)
                    log_warn("database %s unreachable: %s; retrying with backoff (events wait in the event ring)",
                             masked.c_str(), err.c_str());
                reported_down = true;
                if (stopping) {
                    // Retried until the bound (a replay's stop waits for a database that comes back).
                    std::lock_guard<std::mutex> g(mu_);
                    if (drain_left_ms_locked(monotonic_ms()) <= 0) break;
                }
                wait_wake(backoff, -1);
                backoff = std::min(backoff * 2, kBackoffMaxMs);
                continue;
            }
            log_notice("database %s connected (meter %s)", masked.c_str(), opt_.meter_id.c_str());
            {
                std::lock_guard<std::mutex> g(mu_);
                stats_.connected = true;
                ++stats_.connects;
            }
            reported_down = false;
            backoff = kBackoffFirstMs;
            note_progress();
            need_reconcile = opt_.write_flows;
            next_poll = monotonic_ms() + static_cast<uint64_t>(opt_.poll_interval_s) * 1000;
            if (opt_.write_flows) events_->rewind();  // from the committed position
        }
        try {
            bool refresh;
            {
                std::lock_guard<std::mutex> g(mu_);
                refresh = refresh_;
                refresh_ = false;
            }
            if (PQconsumeInput(db_.raw()) == 0) throw DbError(pg_error_text(db_.raw()));
            bool refresh_fc = false;
            while (PGnotify* n = PQnotifies(db_.raw())) {
                const bool ours = !n->extra || !*n->extra || opt_.meter_id == n->extra;
                if (ours && std::strcmp(n->relname, "angel_flow_control") == 0) refresh_fc = true;
                else if (ours) refresh = true;
                PQfreemem(n);
            }
            if (refresh_fc || refresh || monotonic_ms() >= next_poll)
                publish_flow_control(fetch_db_flow_control(db_, opt_.meter_id));
            if (refresh || monotonic_ms() >= next_poll) {
                publish_config(fetch_db_config(db_, opt_.meter_id));
                next_poll = monotonic_ms() + static_cast<uint64_t>(opt_.poll_interval_s) * 1000;
            }
            bool empty = true;
            if (opt_.write_flows) {
                if (seg_->control().role.load(std::memory_order_acquire) == static_cast<uint32_t>(HaRole::master)) {
                    // The drop count before the FlowMap is copied: a drop after it shows as a
                    // change next turn (see reconcile()).
                    const uint64_t dropped = events_dropped();
                    if (need_reconcile || dropped != dropped_seen) {
                        if (dropped != dropped_seen)
                            log_warn("database: %llu flow events were lost (event ring full); reconciling",
                                     static_cast<unsigned long long>(dropped - dropped_seen));
                        reconcile(db_);
                        dropped_seen = dropped;
                        need_reconcile = false;
                    }
                    empty = drain_events(db_, kPerRound);
                } else {
                    // Backup: only the master writes; events are dropped here, and becoming master
                    // reconciles from the FlowMap.
                    events_->discard_all();
                    need_reconcile = true;
                }
                if (empty) note_progress();  // connected with nothing waiting: not stuck
            }
            if (stopping && empty) break;
            if (empty) wait_wake(kIdleWaitMs, db_.socket());
        } catch (const DbError& e) {
            log_warn("database error: %s; reconnecting (events wait in the event ring)", e.what());
            {
                std::lock_guard<std::mutex> g(mu_);
                stats_.connected = false;
                stats_.last_error = e.what();
            }
            close_all();
            if (opt_.write_flows) events_->rewind();
            need_reconcile = true;
            // Not straight back at it: a statement that fails every time would otherwise spin.
            wait_wake(backoff, -1);
            backoff = std::min(backoff * 2, kBackoffMaxMs);
        }
    }
    close_all();
    const uint64_t left = events_ ? events_->pending() : 0;
    std::lock_guard<std::mutex> g(mu_);
    stats_.connected = false;
    stats_.events_left = left;
    finished_ = true;
    finished_cv_.notify_all();
}

}  // namespace angel
