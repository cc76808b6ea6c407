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
}

void Controller::stop_database() {
    if (!db_) return;
    const uint64_t t0 = monotonic_ns();
    db_->stop(5000);
    const uint64_t drain_ms = (monotonic_ns() - t0) / 1000000;
    const DbThreadStats s = db_->stats();
    const double busy_s = static_cast<double>(s.busy_ns) / 1e9;
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    log_notice("database: flows_written=%llu flows_ended=%llu batches=%llu reconciles=%llu connects=%llu "
               "events_dropped=%llu busy_ms=%llu flows_per_s=%.0f final_drain_ms=%llu",
               u(s.flows_inserted), u(s.flows_ended), u(s.batches), u(s.reconciles), u(s.connects),
               u(CheckedSegmentView(*seg_).counter(StageId::procd, procd_events_dropped)), u(s.busy_ns / 1000000),
               busy_s > 0 ? static_cast<double>(s.flows_inserted) / busy_s : 0.0, u(drain_ms));
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
