#include "ctld/stage_supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "ctld/runtime_files.hpp"

namespace angel {

namespace {
constexpr uint64_t kSecond = 1'000'000'000ull;
constexpr uint64_t kFirstBackoff = kSecond / 2;   // first restart well within 1 s
constexpr uint64_t kMaxBackoff = 30 * kSecond;
constexpr uint64_t kStableAfter = 60 * kSecond;   // up this long: the backoff resets
constexpr uint64_t kReadyTimeout = 10 * kSecond;  // not ready by then: counts as a failure

std::string describe_status(int st) {
    if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
    // SIGSYS is what the seccomp filter's kill looks like from here.
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
        return "signal Bad system call: a system call outside its seccomp allow-list";
    if (WIFSIGNALED(st)) return std::string("signal ") + strsignal(WTERMSIG(st));
    return "status " + std::to_string(st);
}
}  // namespace

const char* supervised_state_name(SupervisedState s) {
    switch (s) {
        case SupervisedState::stopped: return "stopped";
        case SupervisedState::starting: return "starting";
        case SupervisedState::running: return "running";
        case SupervisedState::backoff: return "backoff";
        case SupervisedState::finished: return "finished";
    }
    return "?";
}

StageSupervisor::StageSupervisor(StageId id, Segment& seg, const StageOptions& opt)
    : id_(id), seg_(seg), opt_(opt) {}

void StageSupervisor::start() {
    const std::string prog = std::string("angel-") + stage_name(id_);
    const std::string path = opt_.bin_dir + "/" + prog;
    // Everything the child needs is made here, in the parent: between fork and exec the
    // child makes only async-signal-safe calls (ctld has a database thread that may hold
    // malloc's or stdio's locks at the moment of the fork).
    const std::string inst = opt_.instance;
    const std::string uid = std::to_string(opt_.uid), gid = std::to_string(opt_.gid);
    const char* argv[] = {prog.c_str(), "-i", inst.c_str(), "-u", uid.c_str(), "-g", gid.c_str(),
                          "-j", opt_.jail.c_str(), opt_.foreground ? "-f" : nullptr, nullptr};
    const std::string exec_failed = "angel-ctld: cannot execute " + path + "\n";
    // A fresh open file description of the lock for every start: a second stage of this kind
    // (one that outlived a ctld, say) holds another and keeps the lock from this one.
    const std::string lock_path = stage_lock_path(opt_.lock_dir, opt_.instance, stage_name(id_));
    std::string lock_err;
    const int lock_rw = open_runtime_file(lock_path, 0600, false, &lock_err);
    if (lock_rw < 0) {
        log_err("cannot open the lock for angel-%s: %s", stage_name(id_), lock_err.c_str());
        start_failed();
        return;
    }
    // The stage gets read-only descriptors where it needs no more (flock works on them; a
    // writable lock file would let it fill runtime_dir's file system), each opened anew
    // through /proc/self/fd so that the stage's description is its own. All of them go to
    // numbers above the three fixed ones first, so the dup2()s in the child cannot clobber
    // one another or be no-ops that leave close-on-exec set.
    auto reopen_ro_high = [](int fd) {
        const int ro = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC);
        if (ro < 0) return -1;
        const int high = fcntl(ro, F_DUPFD_CLOEXEC, kStageMetricsFd + 1);
        close(ro);
        return high;
    };
    const int lock_fd = reopen_ro_high(lock_rw);
    close(lock_rw);
    // The control object read-only: the object is root-owned 0600, so the stage cannot
    // reopen its descriptor for writing.
    const int ctl_ro = reopen_ro_high(seg_.control_fd());
    const int data_fd = fcntl(seg_.data_fd(), F_DUPFD_CLOEXEC, kStageMetricsFd + 1);
    // netd alone gets the metrics listener (metrics.listen): ctld bound it, netd only accepts.
    const bool metrics = id_ == StageId::netd && opt_.metrics_fd >= 0;
    const int metrics_fd = metrics ? fcntl(opt_.metrics_fd, F_DUPFD_CLOEXEC, kStageMetricsFd + 1) : -1;
    const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    auto close_all = [&] {
        for (int fd : {lock_fd, ctl_ro, data_fd, null_fd, metrics_fd})
            if (fd >= 0) close(fd);
    };
    if (lock_fd < 0 || ctl_ro < 0 || data_fd < 0 || null_fd < 0 || (metrics && metrics_fd < 0)) {
        log_err("cannot prepare the descriptors for angel-%s: %s", stage_name(id_), strerror(errno));
        close_all();
        start_failed();
        return;
    }
    seg_.stage(id_).state.store(static_cast<uint32_t>(StageState::starting));
    seg_.stage(id_).pid.store(0);
    const pid_t pid = fork();
    if (pid < 0) {
        log_err("cannot fork %s: %s", prog.c_str(), strerror(errno));
        close_all();
        start_failed();
        return;
    }
    if (pid == 0) {
        // Child: async-signal-safe calls only. A clean signal mask; a session of its own (no
        // controlling terminal to read or inject into, and a Ctrl-C or a `timeout` aimed at
        // ctld's process group is ctld's to handle: it stops the stages in order); standard
        // input from /dev/null (stdout and stderr stay: the log in the foreground); the three
        // descriptors (netd: four) at their fixed numbers (dup2 clears close-on-exec on the copies); every
        // other descriptor closed, whether or not it was close-on-exec (a socket the database
        // thread is opening at this moment may not be yet).
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        setsid();
        if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(data_fd, kStageDataFd) < 0 || dup2(ctl_ro, kStageControlFd) < 0 ||
            dup2(lock_fd, kStageLockFd) < 0 || (metrics && dup2(metrics_fd, kStageMetricsFd) < 0))
            _exit(EX_OSERR);
        syscall(SYS_close_range, metrics ? kStageMetricsFd + 1 : kStageLockFd + 1, ~0U, 0);
        execv(path.c_str(), const_cast<char* const*>(argv));
        [[maybe_unused]] ssize_t n = write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
        _exit(127);
    }
    close_all();
    pid_ = pid;
    state_ = SupervisedState::starting;
    started_ns_ = monotonic_ns();
    ready_ns_ = 0;
    kill_sent_ = false;
    log_info("started %s (pid %d)", prog.c_str(), pid);
}

void StageSupervisor::start_failed() {
    // Counts like a death before readiness: a start that cannot happen (a refused lock file,
    // say) ends as crash-looping, which an orderly stop does not wait for.
    ++consecutive_failures_;
    backoff_ns_ = std::min(kMaxBackoff, std::max(kSecond, backoff_ns_ * 2));
    state_ = SupervisedState::backoff;
    restart_at_ns_ = monotonic_ns() + backoff_ns_;
}

void StageSupervisor::on_exit(int st, uint64_t now_ns) {
    const std::string how = describe_status(st);
    last_status_ = st;
    pid_ = -1;
    if (restart_requested_) {
        restart_requested_ = false;
        ++restarts_;
        log_notice("angel-%s stopped (%s) for a restart", stage_name(id_), how.c_str());
        start();
        return;
    }
    const bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (clean && (opt_.replay || finish_expected_) && CheckedSegmentView(seg_).stage(id_).state == StageState::finished) {
        state_ = SupervisedState::finished;
        log_info("angel-%s finished", stage_name(id_));
        return;
    }
    // now_ns may predate ready_ns_ by a few ms (taken before this batch of events).
    const bool was_stable = ready_ns_ != 0 && now_ns >= ready_ns_ + kStableAfter;
    if (was_stable) {
        consecutive_failures_ = 0;
        backoff_ns_ = 0;
    }
    ++consecutive_failures_;
    // First death after a stable run: back within a second. Repeated deaths, and deaths
    // before readiness, back off exponentially up to 30 s.
    if (consecutive_failures_ == 1 && ready_ns_ != 0) backoff_ns_ = kFirstBackoff;
    else backoff_ns_ = std::min(kMaxBackoff, std::max(kFirstBackoff, backoff_ns_ * 2));
    restart_at_ns_ = now_ns + backoff_ns_;
    state_ = SupervisedState::backoff;
    if (crash_looping())
        log_err("angel-%s is crash-looping (%u failures in a row, last: %s); next start in %.1f s",
                stage_name(id_), consecutive_failures_, how.c_str(), static_cast<double>(backoff_ns_) / 1e9);
    else
        log_warn("angel-%s died (%s); restarting in %.1f s", stage_name(id_), how.c_str(),
                 static_cast<double>(backoff_ns_) / 1e9);
}

void StageSupervisor::tick(uint64_t now_ns) {
    const StageReading s = CheckedSegmentView(seg_).stage(id_);
    if (restart_requested_ && !kill_sent_ && now_ns > restart_requested_ns_ + 5 * kSecond) {
        log_warn("angel-%s did not stop within 5 s for its restart; killing it", stage_name(id_));
        signal(SIGKILL);
        kill_sent_ = true;
    }
    switch (state_) {
        case SupervisedState::backoff:
            if (now_ns >= restart_at_ns_) {
                ++restarts_;
                start();
            }
            break;
        case SupervisedState::starting:
            if (s.state == StageState::ready && s.pid == pid_) {
                state_ = SupervisedState::running;
                ready_ns_ = now_ns;
                log_info("angel-%s ready", stage_name(id_));
            } else if (now_ns > started_ns_ + kReadyTimeout && !kill_sent_) {
                log_err("angel-%s not ready after %llu s; killing it", stage_name(id_),
                        static_cast<unsigned long long>(kReadyTimeout / kSecond));
                signal(SIGKILL);
                kill_sent_ = true;
            }
            break;
        case SupervisedState::running: {
            if (ready_ns_ && now_ns >= ready_ns_ + kStableAfter && consecutive_failures_) {
                consecutive_failures_ = 0;
                backoff_ns_ = 0;
            }
            const uint64_t hb = s.heartbeat_ns;
            if (!kill_sent_ && hb && now_ns > hb + opt_.hang_timeout_ns) {
                log_err("angel-%s stopped heartbeating %.1f s ago; killing it", stage_name(id_),
                        static_cast<double>(now_ns - hb) / 1e9);
                signal(SIGKILL);
                kill_sent_ = true;
            }
            break;
        }
        case SupervisedState::stopped:
        case SupervisedState::finished: break;
    }
}

void StageSupervisor::request_restart(uint64_t now_ns) {
    if (pid_ <= 0) {
        // Down or backing off: start it now.
        ++restarts_;
        consecutive_failures_ = 0;
        backoff_ns_ = 0;
        start();
        return;
    }
    restart_requested_ = true;
    restart_requested_ns_ = now_ns;
    signal(SIGTERM);
}

void StageSupervisor::give_up() {
    if (pid_ > 0) return;
    state_ = SupervisedState::finished;
    log_warn("angel-%s is crash-looping; not started again during the stop (what it had queued is not sent)",
             stage_name(id_));
}

void StageSupervisor::signal(int sig) const {
    if (pid_ > 0) kill(pid_, sig);
}

}  // namespace angel
