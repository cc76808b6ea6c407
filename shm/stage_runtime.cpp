#include "shm/stage_runtime.hpp"

#include <sysexits.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"

namespace angel {

void StageRuntime::on_signal(int) { term_.store(true); }

StageRuntime::StageRuntime(StageId id, const char* prog, int argc, char** argv) : id_(id) {
    bool foreground = false;
    int opt;
    while ((opt = getopt(argc, argv, "fi:")) != -1) {
        switch (opt) {
            case 'f': foreground = true; break;
            case 'i': instance_ = optarg; break;
            default:
                std::fprintf(stderr, "usage: %s -i INSTANCE [-f]  (started by angel-ctld)\n", prog);
                std::exit(EX_USAGE);
        }
    }
    if (instance_.empty()) {
        std::fprintf(stderr, "usage: %s -i INSTANCE [-f]  (started by angel-ctld)\n", prog);
        std::exit(EX_USAGE);
    }
    log_init(prog, foreground);
    try {
        seg_ = Segment::attach(instance_);
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
    watch_parent();
    for (size_t i = 0; i < kStageCounters; ++i) base_[i] = status().counters[i].load();
    status().pid.store(getpid(), std::memory_order_relaxed);
    status().started_ns.store(monotonic_ns(), std::memory_order_relaxed);
    status().state.store(static_cast<uint32_t>(StageState::starting), std::memory_order_release);
    heartbeat();
}

void StageRuntime::watch_parent() {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    // ctld may have died before the request took effect.
    const pid_t ctld = header().ctld_pid.load(std::memory_order_relaxed);
    if (ctld > 0 && getppid() != ctld && kill(ctld, 0) != 0) term_.store(true);
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
