// The Controller's database pieces (declared in controller.hpp, kept here so that controller.cpp
// only calls them): the database thread's start and stop, and DB configuration changes applied
// through the same path as a reload.
#include "common/log.hpp"
#include "ctld/checked_segment_view.hpp"
#include "ctld/controller.hpp"
#include "ctld/db/db_thread.hpp"
#include "ctld/flow_control_set.hpp"
#include "shm/segment.hpp"

namespace angel {

void Controller::set_database(Config file_cfg, DbConfigValues at_start) {
    file_cfg_ = std::move(file_cfg);
    db_start_ = std::move(at_start);
    have_file_cfg_ = true;
}

void Controller::start_database() {
    if (!have_file_cfg_) {
        file_cfg_ = cfg_;
        have_file_cfg_ = true;
    }
    if (cfg_.database.conninfo.empty()) return;
    DbThreadOptions o;
    o.conninfo = cfg_.database.conninfo;
    o.meter_id = effective_meter_id(cfg_);
    o.poll_interval_s = cfg_.database.poll_interval;
    o.history = cfg_.database.history;
    o.write_flows = true;  // build_live_config turns db_events on whenever conninfo is set
    db_ = std::make_unique<DbThread>(o, seg_.get(), db_start_);
    db_->start();
    // A replay is lossless for the database too: procd waits for room in the event ring, as
    // capd waits for room in the packet ring. Live capture never waits for PostgreSQL.
    if (!opt_.replay.empty()) seg_->control_rw().events_wait.store(1, std::memory_order_release);
}

void Controller::begin_database_stop() {
    if (!db_) return;
    db_dropped_at_stop_ = CheckedSegmentView(*seg_).counter(StageId::procd, procd_events_dropped);
    db_->begin_stop(cfg_.database.stop_drain_ms, opt_.replay.empty());
    // The flow_end events procd makes at the stop wait for the writer, within the bound.
    seg_->control_rw().events_wait.store(1, std::memory_order_release);
}

void Controller::service_database_stop() {
    if (!db_ || !stopping_ || !seg_->control().events_wait.load(std::memory_order_relaxed)) return;
    if (!db_->past_drain_bound()) return;
    seg_->control_rw().events_wait.store(0, std::memory_order_release);
    log_warn("database: the stop's bound passed (database.stop_drain_ms = %d%s); procd drops the flow events "
             "left (counted; the next start reconciles angel.flows)",
             cfg_.database.stop_drain_ms, opt_.replay.empty() ? "" : " without progress");
}

bool Controller::database_holds_stop() const {
    return db_ && seg_->control().events_wait.load(std::memory_order_relaxed) && !db_->past_drain_bound();
}

void Controller::stop_database() {
    if (!db_) return;
    const uint64_t t0 = monotonic_ns();
    // A replay that ended by itself begins the database's stop here (unbounded while it makes
    // progress); a stop by signal or angelctl began it in begin_stop().
    if (!stopping_) db_dropped_at_stop_ = CheckedSegmentView(*seg_).counter(StageId::procd, procd_events_dropped);
    db_->begin_stop(cfg_.database.stop_drain_ms, opt_.replay.empty());
    db_->stop(cfg_.database.stop_drain_ms);
    const uint64_t drain_ms = (monotonic_ns() - t0) / 1000000;
    const DbThreadStats s = db_->stats();
    const uint64_t dropped = CheckedSegmentView(*seg_).counter(StageId::procd, procd_events_dropped);
    const uint64_t dropped_at_stop = dropped > db_dropped_at_stop_ ? dropped - db_dropped_at_stop_ : 0;
    if (s.events_left + dropped_at_stop > 0)
        log_warn("database: %llu flow events left unwritten at stop (%llu in the event ring, %llu dropped by procd "
                 "during the stop; database.stop_drain_ms = %d); the next start reconciles angel.flows with its FlowMap",
                 static_cast<unsigned long long>(s.events_left + dropped_at_stop),
                 static_cast<unsigned long long>(s.events_left), static_cast<unsigned long long>(dropped_at_stop),
                 cfg_.database.stop_drain_ms);
    const double busy_s = static_cast<double>(s.busy_ns) / 1e9;
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    log_notice("database: flows_written=%llu flows_ended=%llu batches=%llu reconciles=%llu connects=%llu "
               "events_dropped=%llu events_left=%llu event_waits=%llu busy_ms=%llu flows_per_s=%.0f "
               "events_per_s=%.0f final_drain_ms=%llu",
               u(s.flows_inserted), u(s.flows_ended), u(s.batches), u(s.reconciles), u(s.connects), u(dropped),
               u(s.events_left + dropped_at_stop),
               u(CheckedSegmentView(*seg_).counter(StageId::procd, procd_event_waits)), u(s.busy_ns / 1000000),
               busy_s > 0 ? static_cast<double>(s.flows_inserted) / busy_s : 0.0,
               busy_s > 0 ? static_cast<double>(s.flows_inserted + s.flows_ended) / busy_s : 0.0, u(drain_ms));
    db_.reset();
}

Config Controller::merge_database(const Config& file) const {
    if (!db_) return file;
    std::vector<std::string> notes;
    Config next = merge_db_config(file, db_->config(), &notes);
    for (const auto& n : notes) log_warn("%s", n.c_str());
    // capture.snaplen sizes what capd holds open: a database change waits for a restart
    // instead of refusing every other change that comes with it.
    if (next.capture.snaplen != cfg_.capture.snaplen && next.capture.snaplen != file.capture.snaplen) {
        log_warn("capture.snaplen = %d from the database applies at the next restart of the meter",
                 next.capture.snaplen);
        next.capture.snaplen = cfg_.capture.snaplen;
    }
    return next;
}

void Controller::apply_database_changes() {
    if (!db_) return;
    // The classifier's mute/full rows: published for procd at once (within this loop turn).
    if (auto fc = db_->take_flow_control_change()) flow_control_->set_database(*fc, realtime_ns());
    if (!db_->take_config_change()) return;
    bool ok = false;
    const std::string msg = reload(&ok, true);
    if (ok) log_notice("database configuration: %s", msg.c_str());
    else log_err("database configuration: %s", msg.c_str());
}

}  // namespace angel
