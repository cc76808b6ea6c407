// ctld's view of one stage process: start it (fork+exec of its own binary), see it ready,
// notice its death or hang, restart it with backoff. Postfix master-style: the supervisor
// holds no state the stage needs; everything durable is in the segment.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "ctld/checked_segment_view.hpp"
#include "shm/segment.hpp"

namespace angel {

enum class SupervisedState { stopped, starting, running, backoff, finished };
const char* supervised_state_name(SupervisedState s);

struct StageOptions {
    std::string bin_dir;      // where angel-capd etc. live
    std::string instance;
    bool foreground = false;
    uint64_t hang_timeout_ns = 5'000'000'000ull;
    // The stages' identity, resolved by ctld (ctld/stage_user.hpp) and passed on the command
    // line: a stage drops to it itself, right after exec (no account lookup in the child).
    uid_t uid = 0;
    gid_t gid = 0;
    std::string jail;         // empty directory the stages chroot into
    std::string lock_dir;     // <lock_dir>/<instance>.<stage>.lock: one stage of a kind per instance
    bool replay = false;      // a stage may finish on its own (the input ends); live: only in a stop
    int metrics_fd = -1;      // metrics.listen's listening socket, handed to netd as fd 6; -1: off
};

class StageSupervisor {
public:
    StageSupervisor(StageId id, Segment& seg, const StageOptions& opt);

    void start();                         // fork+exec now
    // Called when waitpid reported this stage's pid.
    void on_exit(int wait_status, uint64_t now_ns);
    // Periodic: restarts after backoff, detects readiness and hangs.
    void tick(uint64_t now_ns);
    void signal(int sig) const;
    // supervisor.hang_timeout reloaded: applies from the next tick.
    void set_hang_timeout(uint64_t ns) { opt_.hang_timeout_ns = ns; }
    // The meter is stopping: a stage that exits 0 saying "finished" is done, not restarted.
    // Before that, in live mode, "finished" (which the stage itself writes) is not believed.
    void expect_finish() { finish_expected_ = true; }
    // Operator restart: SIGTERM now, start again as soon as it has exited (no backoff, not a
    // failure). Killed with SIGKILL if it has not exited within 5 s.
    void request_restart(uint64_t now_ns);
    uint32_t consecutive_failures() const { return consecutive_failures_; }

    StageId id() const { return id_; }
    pid_t pid() const { return pid_; }
    SupervisedState state() const { return state_; }
    bool alive() const { return pid_ > 0; }
    bool crash_looping() const { return consecutive_failures_ >= 3; }
    uint32_t restarts() const { return restarts_; }
    int last_exit_status() const { return last_status_; }  // raw wait status, -1 none
    uint64_t backoff_ns() const { return backoff_ns_; }
    uint64_t up_since_ns() const { return started_ns_; }
    // The stage exited 0 after reporting finished: do not restart it.
    bool done() const { return state_ == SupervisedState::finished; }
    // Down and not to be started again (the meter is stopping): counts as done.
    void give_up();

private:
    void start_failed();  // start() could not fork or prepare the stage's descriptors
    StageId id_;
    Segment& seg_;
    StageOptions opt_;
    pid_t pid_ = -1;
    SupervisedState state_ = SupervisedState::stopped;
    uint64_t started_ns_ = 0;
    uint64_t ready_ns_ = 0;
    uint64_t restart_at_ns_ = 0;
    uint64_t backoff_ns_ = 0;
    uint32_t restarts_ = 0;
    uint32_t consecutive_failures_ = 0;
    int last_status_ = -1;
    bool kill_sent_ = false;
    bool restart_requested_ = false;
    bool finish_expected_ = false;
    uint64_t restart_requested_ns_ = 0;
};

}  // namespace angel
