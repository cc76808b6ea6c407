// What a meter that is not exporting keeps of its record stream (docs/ha.md, "Replay"): the
// records of the last ha.replay_ms of packet time stay in the record ring, uncommitted, so that
// on becoming master netd can send them again, flagged replayed, before the live records. From
// takeover on nothing ages out: the window then reaches back replay_ms before the takeover.
//
// The window is a range of ring positions [begin, read): netd reads every record as it comes
// (to see its time) and only moves begin, which is where it commits. Packet records carry the
// time the window is measured in; the records between them (flow_start, flow_end) leave with
// the packet records around them, because procd wrote them at about that time (a flow_end's
// own timestamp is the flow's last packet, up to flow.timeout older than the record).
#pragma once
#include <cstdint>

#include "shm/record_ring.hpp"
#include "shm/records.hpp"

namespace angel {

class ReplayWindow {
public:
    struct Released {
        uint64_t aged = 0;     // older than the window: released as the window intends
        uint64_t trimmed = 0;  // released early because the ring cannot hold the window
        uint64_t trimmed_packets = 0;  // packet records among trimmed
        uint64_t trimmed_first_ns = 0, trimmed_last_ns = 0;  // their times (0: none)
    };

    // Everything before pos has been released (committed); the window starts there.
    void start(uint64_t pos);
    // Called for each record netd reads, in ring order (positions begin..read-1).
    void observe(const Record& r);
    // Moves begin forward: packet records older than newest - window_ns leave (aging, off
    // while frozen; window_ns 0 keeps nothing), and the window never holds more than max_records (the rest of the ring
    // is procd's headroom: a full ring would stop procd, and capture behind it). Returns what
    // left; ring gives the records by position.
    Released release(const RecordRing<Record>& ring, uint64_t read_pos, uint64_t window_ns,
                     uint64_t max_records, bool frozen);

    uint64_t begin() const { return begin_; }
    uint64_t newest_packet_ns() const { return newest_ns_; }

private:
    uint64_t begin_ = 0;
    uint64_t scan_ = 0;        // records in [begin_, scan_) are known to be older than the cutoff
                               // or not packets; scan_ stops at the first packet still inside
    uint64_t newest_ns_ = 0;   // newest packet time seen
};

}  // namespace angel
