// The body of angel-ctld once the configuration has been checked: owns the segment, the
// three stage supervisors and the control socket, and runs the supervision loop.
#pragma once
#include <array>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "ctld/control_server.hpp"
#include "ctld/stage_supervisor.hpp"
#include "shm/segment.hpp"

namespace angel {

struct ControllerOptions {
    std::string config_path;
    std::string replay;
    bool foreground = false;
};

class Controller {
public:
    Controller(const ControllerOptions& opt, Config cfg);
    ~Controller();
    // Creates the segment, starts the stages and supervises until the meter has stopped.
    // Returns the process exit code.
    int run();

private:
    void start_stages();
    void loop();
    void handle_signals();
    ControlReply handle_command(const std::string& line);
    std::string reload(bool* ok);
    void begin_stop(const char* why);
    void drive_gc(uint64_t now);
    int stage_gid() const;

    ControllerOptions opt_;
    Config cfg_;
    FlowIdKey key_{};
    std::unique_ptr<Segment> seg_;
    std::array<std::unique_ptr<StageSupervisor>, 3> stages_;
    std::unique_ptr<ControlServer> control_;
    int signal_fd_ = -1;
    bool stopping_ = false;
    bool force_stop_ = false;
    uint64_t stop_started_ = 0;
    uint64_t next_gc_ = 0;
    uint64_t started_ns_ = 0;
    int exit_code_ = 0;
};

}  // namespace angel
