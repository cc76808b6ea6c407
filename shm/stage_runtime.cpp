#include "shm/stage_runtime.hpp"

#include <sys/file.h>
#include <sys/prctl.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"

namespace angel {

namespace {

[[noreturn]] void usage(const char* prog) {
    std::fprintf(stderr, "usage: %s -i INSTANCE -u UID -g GID -j JAIL [-f]  (started by angel-ctld)\n", prog);
    std::exit(EX_USAGE);
}

bool parse_id(const char* s, unsigned long* out) {
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(s, &end, 10);
    if (errno || !end || *end || end == s || v > 0x7FFFFFFFul) return false;
    *out = v;
    return true;
}

}  // namespace

void StageRuntime::on_signal(int) { term_.store(true); }

StageRuntime::StageRuntime(StageId id, const char* prog, int argc, char** argv) : id_(id) {
    bool foreground = false;
    bool have_uid = false, have_gid = false;
    int opt;
    unsigned long v = 0;
    while ((opt = getopt(argc, argv, "fi:u:g:j:")) != -1) {
        switch (opt) {
            case 'f': foreground = true; break;
            case 'i': instance_ = optarg; break;
            case 'u':
                if (!parse_id(optarg, &v)) usage(prog);
                uid_ = static_cast<uid_t>(v);
                have_uid = true;
                break;
            case 'g':
                if (!parse_id(optarg, &v)) usage(prog);
                gid_ = static_cast<gid_t>(v);
                have_gid = true;
                break;
            case 'j': jail_ = optarg; break;
            default: usage(prog);
        }
    }
    if (instance_.empty() || !have_uid || !have_gid || jail_.empty() || optind != argc) usage(prog);
    log_init(prog, foreground);
    // One stage of each kind per instance: ctld opens a fresh description of the lock file
    // for every start, so a second process holding another one cannot take the lock.
    if (flock(kStageLockFd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            if (id_ == StageId::capd)
                log_err("another angel-capd already captures for instance %s (its lock is held)", instance_.c_str());
            else
                log_err("another angel-%s already runs for instance %s (its lock is held)", stage_name(id_),
                        instance_.c_str());
            std::exit(EX_TEMPFAIL);
        }
        log_err("no instance lock on descriptor %d (%s): %s is started by angel-ctld", kStageLockFd,
                strerror(errno), prog);
        std::exit(EX_UNAVAILABLE);
    }
    try {
        seg_ = Segment::attach_control_fd(kStageControlFd);
    } catch (const SegmentError& e) {
        log_err("%s", e.what());
        std::exit(EX_UNAVAILABLE);
    }
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // no stage outlives its supervisor
    check_parent();
}

void StageRuntime::check_parent() {
    const pid_t ctld = seg_->control().ctld_pid.load(std::memory_order_relaxed);
    if (ctld > 0 && getppid() != ctld) term_.store(true);
}

void StageRuntime::enter_sandbox(SandboxProfile profile) {
    SandboxSpec spec;
    spec.profile = profile;
    spec.uid = uid_;
    spec.gid = gid_;
    spec.jail = jail_;
    spec.parent_death_signal = SIGTERM;  // the change of user cleared it
    if (const std::string err = ::angel::enter_sandbox(spec); !err.empty()) {
        log_err("cannot enter the sandbox: %s", err.c_str());
        std::exit(EX_NOPERM);
    }
    check_parent();
}

void StageRuntime::attach() {
    try {
        seg_->attach_data_fd(kStageDataFd);
    } catch (const SegmentError& e) {
        log_err("%s", e.what());
        std::exit(EX_UNAVAILABLE);
    }
    for (size_t i = 0; i < kStageCounters; ++i) base_[i] = status().counters[i].load();
    status().pid.store(getpid(), std::memory_order_relaxed);
    status().started_ns.store(monotonic_ns(), std::memory_order_relaxed);
    status().state.store(static_cast<uint32_t>(StageState::starting), std::memory_order_release);
    heartbeat();
}

void StageRuntime::ready() {
    heartbeat();
    status().state.store(static_cast<uint32_t>(StageState::ready), std::memory_order_release);
}

void StageRuntime::finished() {
    heartbeat();
    status().state.store(static_cast<uint32_t>(StageState::finished), std::memory_order_release);
}

}  // namespace angel
