// What a live ctld does at start with the segment a predecessor left when it died (kill -9,
// a crash): its stages die with it (parent-death signal), and the data segment stays in
// /dev/shm with every live flow, what the rings hold, the IPFIX sequence and the counters.
// Adopting it lets the new run go on where the dead one stopped: flows keep their IDs and
// counts and get one flow_start and one flow_end in all, netd sends on from the sequence,
// the database writer from its last commit, and the capture gap becomes one ctld_restart
// loss record (procd reports it when the new capd's capture opens: see
// ControlBlock::adopted and procd/capture_progress.hpp).
//
// The data segment is stage-written, so it is input, not state: it is taken over only when
//   - it is a segment of this layout version and of this configuration's sizes (its own
//     header, shm/segment.hpp Segment::open_left; geometry is always ctld's own plan);
//   - the run that left it is gone: its pid (from the old control object, root's alone) is
//     not running, and no stage of it holds its lock any more (waited for, bounded);
//   - every ring position, the FlowMap header and every entry ever used pass
//     CheckedSegmentView::adoptable();
//   - the meter runs live (a replay starts again from its file's first packet).
// Otherwise the segment is removed with a log line saying how many flows were lost
// unended, and the caller creates a new one, as before adoption existed. The control object
// is always made anew: its requests were the dead run's. An orderly stop removes both.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "shm/segment.hpp"

namespace angel {

// angelctl status's "recovery" object, and the start log line.
struct Recovery {
    int32_t previous_pid = 0;
    uint32_t adopted_flows = 0;
    uint64_t last_capture_ns = 0;  // the latest capture time the dead run had processed (wall)
};

struct AdoptionRequest {
    std::string instance;
    std::string runtime_dir;  // for the stage locks
    SegmentSizes sizes;
    bool replay = false;
    uint64_t lock_wait_ms = 5000;  // how long the dead run's stages may take to exit
};

// The adopted segment (with a new control object), or nullptr: none was left, or it was
// removed (and logged). *rec is filled when one is adopted.
std::unique_ptr<Segment> adopt_left_segment(const AdoptionRequest& req, Recovery* rec);

}  // namespace angel
