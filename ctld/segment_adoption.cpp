#include "ctld/segment_adoption.hpp"

#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <thread>

#include "common/log.hpp"
#include "ctld/checked_segment_view.hpp"
#include "ctld/runtime_files.hpp"

namespace angel {

namespace {

// A pid that runs angel-ctld. (The pidfile's lock, held by this process by now, already says
// that no ctld of this instance runs; the check keeps a second instance's ctld that somebody
// started on the same segment name from losing its segment.)
bool runs_ctld(int32_t pid) {
    if (pid <= 1 || pid == getpid()) return false;
    if (kill(pid, 0) != 0 && errno == ESRCH) return false;
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    return name == "angel-ctld";
}

// Waits until no process holds a stage lock of the instance: the dead run's stages have
// exited (they get SIGKILL as their parent dies, but exiting takes a moment) and none of
// them writes the segment any more. false: one still holds its lock after wait_ms.
bool stages_gone(const AdoptionRequest& req, std::string* which) {
    const uint64_t deadline = monotonic_ms() + req.lock_wait_ms;
    for (const char* stage : {"capd", "procd", "netd"}) {
        std::string err;
        const int fd = open_runtime_file(stage_lock_path(req.runtime_dir, req.instance, stage), 0600, true, &err);
        if (fd < 0) continue;  // no lock file: that stage never ran
        bool free = false;
        for (;;) {
            if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
                free = true;
                break;
            }
            if (monotonic_ms() >= deadline) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        close(fd);  // the lock goes with the descriptor
        if (!free) {
            *which = std::string("angel-") + stage;
            return false;
        }
    }
    return true;
}

// The dead run's answers to its own control object's requests, which the new control object
// does not make: nothing is stopping, nothing was announced or filtered for this run yet, and
// the gap before it is still to be reported.
void forget_dead_requests(SegmentHeader& h) {
    StopControl& s = h.stop;
    s.capd_finished.store(0);
    s.input_ended.store(0);
    s.procd_finished.store(0);
    s.netd_finished.store(0);
    s.replay_published.store(0);
    s.replay_pending.store(0);
    s.replay_pending_head.store(0);
    h.announced.store(0);
    h.customer_generation.store(0);
    h.progress.restart_gap_reported.store(0);
    h.progress.adopted_gap_first_ns.store(0);
    h.progress.adopted_gap_last_ns.store(0);
    for (StageStatus& st : h.stages) {
        st.pid.store(0);
        st.state.store(static_cast<uint32_t>(StageState::down));
    }
}

}  // namespace

std::unique_ptr<Segment> adopt_left_segment(const AdoptionRequest& req, Recovery* rec) {
    const std::string name = "/dev/shm/" + Segment::shm_name(req.instance);
    std::unique_ptr<Segment> seg;
    try {
        seg = Segment::open_left(req.instance, req.sizes);
    } catch (const SegmentError& e) {
        log_warn("not adopting it, removing it: %s (the number of live flows it held is not known)", e.what());
        Segment::remove(req.instance);
        return nullptr;
    }
    if (!seg) return nullptr;
    const int32_t pid = seg->left_ctld_pid();
    auto refuse = [&](const std::string& why, const std::string& flows) {
        log_warn("removing the segment %s left by angel-ctld pid %d: %s; %s live flows lost unended", name.c_str(),
                 static_cast<int>(pid), why.c_str(), flows.c_str());
        seg.reset();
        Segment::remove(req.instance);
        return nullptr;
    };
    auto live = [&] { return std::to_string(CheckedSegmentView(*seg).live_flows()); };
    if (runs_ctld(pid)) return refuse("that angel-ctld still runs", live());
    if (req.replay) return refuse("a replay starts again from its first packet", live());
    std::string which;
    if (!stages_gone(req, &which))
        return refuse(which + " of that run still holds its lock after " + std::to_string(req.lock_wait_ms) + " ms",
                      live());
    // The stages are gone: nothing changes the segment while it is checked and taken over.
    const CheckedSegmentView view(*seg);
    const CheckedSegmentView::Adoptable a = view.adoptable();
    if (!a.problem.empty()) return refuse(a.problem, live());
    rec->previous_pid = pid;
    rec->adopted_flows = a.flows;
    rec->last_capture_ns = view.capture_covered_ns(realtime_ns());
    try {
        seg->renew_control(req.instance);
    } catch (const SegmentError& e) {
        return refuse(e.what(), std::to_string(a.flows));
    }
    forget_dead_requests(*seg->header());
    log_notice("adopted the segment %s of angel-ctld pid %d, which did not stop in order: %u live flows (%u ending), "
               "%llu bytes of packets, %llu records and %llu database events queued, IPFIX sequence %llu",
               name.c_str(), static_cast<int>(pid), a.flows, a.ending, static_cast<unsigned long long>(a.packets_queued),
               static_cast<unsigned long long>(a.records_queued), static_cast<unsigned long long>(a.events_queued),
               static_cast<unsigned long long>(view.ipfix_sequence()));
    return seg;
}

}  // namespace angel
