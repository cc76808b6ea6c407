// The body of angel-ctld once the configuration has been checked: owns the segment, the
// three stage supervisors and the control socket, and runs the supervision loop.
#pragma once
#include <array>
#include <memory>
#include <string>

#include "common/config/config.hpp"
#include "ctld/capture_coverage.hpp"
#include "ctld/control_server.hpp"
#include "ctld/db/db_config_source.hpp"
#include "ctld/stage_supervisor.hpp"
#include "ctld/stage_user.hpp"
#include "shm/segment.hpp"

namespace angel {

class DbThread;
class CustomerSetPublisher;
class FlowControlSet;
class HaMonitor;
class MetricsPublisher;
struct Recovery;
struct MeterView;

struct ControllerOptions {
    std::string config_path;
    std::string replay;
    bool foreground = false;
    int metrics_fd = -1;  // metrics.listen's socket (main() binds it), handed to netd; -1: off
};

class Controller {
public:
    Controller(const ControllerOptions& opt, Config cfg, StageUser user);
    ~Controller();
    // Creates the segment, starts the stages and supervises until the meter has stopped.
    // Returns the process exit code.
    int run();
    // The file's own values and the database's values read at start (before merging), when a
    // database is configured (ctld/db/db_hooks.cpp).
    void set_database(Config file_cfg, DbConfigValues at_start);

private:
    void start_stages();
    void loop();
    void handle_signals();
    ControlReply handle_command(const std::string& line);
    // angelctl mute FLOW_ID / unmute FLOW_ID (ctld/flow_control_command.cpp).
    ControlReply flow_control_command(const std::vector<std::string>& words, bool json);
    std::string reload(bool* ok, bool db_only = false);  // db_only: the database changed, not the file
    // ctld/db/db_hooks.cpp: the database thread and configuration from the database.
    void start_database();
    void stop_database();
    // The database part of an orderly stop (db_hooks.cpp): its bound begins with the stop, and
    // procd waits for room in the event ring within it.
    void begin_database_stop();
    void service_database_stop();
    bool database_holds_stop() const;  // procd waits on the writer, within the bound
    void apply_database_changes();
    Config merge_database(const Config& file) const;
    void begin_stop(const char* why);
    void drive_gc(uint64_t now);
    MeterView meter_view() const;  // what status and the metrics page show of the supervisor
    void publish_metrics(uint64_t now);  // every second with metrics.listen
    void log_recovery_gap();  // once procd has reported the gap of an adopted segment

    ControllerOptions opt_;
    Config cfg_;
    StageUser user_;
    std::string jail_;
    FlowIdKey key_{};
    std::unique_ptr<Segment> seg_;
    std::array<std::unique_ptr<StageSupervisor>, 3> stages_;
    std::unique_ptr<ControlServer> control_;
    std::vector<pollfd> pfds_;  // the loop's poll set, reused
    std::unique_ptr<DbThread> db_;
    std::unique_ptr<HaMonitor> ha_;  // the role (ctld/ha/)
    std::unique_ptr<FlowControlSet> flow_control_;  // muted / full flows, published for procd
    std::unique_ptr<CustomerSetPublisher> customers_;  // customers.networks, published for procd
    std::unique_ptr<MetricsPublisher> metrics_;  // the /metrics page netd serves
    uint64_t next_metrics_ = 0;
    std::unique_ptr<Recovery> recovery_;  // the segment of a run that died, adopted at start
    bool recovery_gap_logged_ = false;
    std::unique_ptr<CaptureCoverage> coverage_;  // live only: the capture gap of an unclean stop
    Config file_cfg_;            // the file's values, before the database's are merged
    bool have_file_cfg_ = false;
    DbConfigValues db_start_;
    uint64_t db_dropped_at_stop_ = 0;  // procd's events_dropped when the stop began
    int signal_fd_ = -1;
    bool stopping_ = false;
    bool force_stop_ = false;
    uint64_t stop_started_ = 0;
    uint64_t next_gc_ = 0;
    uint64_t started_ns_ = 0;
    int exit_code_ = 0;
};

}  // namespace angel
