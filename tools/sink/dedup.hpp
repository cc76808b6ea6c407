// The receiver's side of a failover (docs/protocol.md, "Across an HA failover"): a meter that has just
// become master sends again, flagged replayed, what the old master may already have sent. The
// rule: a packet record is a duplicate when its (flow ID, packet index) was seen in the same
// life of the flow; a flow_start or flow_end when that life already had one. A life begins with
// a flow_start that is not a copy (not replayed and a different start time, or replayed but
// starting after the previous life ended) and ends with its flow_end. A replayed record timed
// before the current life's start belongs to an earlier life: a copy too (a replay reaches back
// seconds, over the end of a flow and the start of the next one on the same tuple), except the
// other meter's copy of the current start itself, timed by its clock at most kClockSkewNs
// earlier and after the previous life's end: the life then starts at that time, so that the
// replaying meter's first packets of it count (its old master may have stopped right between
// the flow_start and the first packet record). After a
// flow_end, a packet or flow_end that is not replayed begins the next life even without its
// flow_start (the receiver missed it); so does a packet, not replayed,
// whose index was seen but that is timed after every packet of the life (a copy carries the
// time of its original: this is a later flow on the same tuple whose end and start went
// elsewhere).
//
// Per flow it keeps the packet indexes seen as a few ranges (one while they arrive in order),
// so the usual packet costs one hash lookup. Ended flows are remembered kHoldSeconds (sink time)
// so that copies arriving after the end are still recognised: longer than the largest window
// a meter replays (ha.replay_ms up to 60 s, ha.takeover_ms up to 10 s). Bounded: at most
// max_flows flows; when full, the oldest ended flow is forgotten, or if none, a new flow is not
// tracked (its records pass unchecked and are counted).
#pragma once
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "common/ipfix_decoder.hpp"

namespace angel::sink {

class Dedup {
public:
    static constexpr double kHoldSeconds = 75;
    // How much earlier than the current life's start another meter's replayed copy of that
    // start may be timed and still be taken for it (the two meters' clocks and capture paths
    // differ: microseconds on one tap, milliseconds between NTP-synced hosts).
    static constexpr uint64_t kClockSkewNs = 100'000'000;

    explicit Dedup(size_t max_flows) : max_flows_(max_flows) {}

    // True if r is the first copy (print and count it); false for a duplicate. now_s: the sink's
    // monotonic clock, for forgetting ended flows.
    bool admit(const ipfix::DecodedRecord& r, double now_s);

    uint64_t replayed() const { return replayed_; }      // records flagged replayed, copies or not
    uint64_t duplicates() const { return duplicates_; }  // records dropped as copies
    uint64_t untracked() const { return untracked_; }    // records of flows the bound left out
    // Packet indexes missing inside the flows seen: between the lowest and the highest index
    // (from 0 when the flow's flow_start was seen), over ended and live flows; and the number
    // of flows with any missing.
    uint64_t index_gaps() const;
    uint64_t flows_with_gaps() const;

private:
    struct Range {
        uint32_t lo, hi;  // [lo, hi)
    };
    struct Flow {
        std::vector<Range> seen;  // sorted, disjoint, not adjacent
        uint64_t start_ns = 0;    // flow_start of this life (0: none seen)
        uint64_t end_last_ns = 0; // flow_end of this life: its last packet time
        bool started = false, ended = false;
        uint64_t gaps_at_end = 0; // missing indexes, frozen when the life ended
        uint64_t newest_ns = 0;   // the latest packet time of this life
        uint64_t prev_end_ns = 0; // the previous life's last packet time (0: none known)
    };

    Flow* find_or_add(uint32_t id);
    void new_life(Flow& f);
    bool add_index(Flow& f, uint32_t idx);  // false: already seen
    static uint64_t missing(const Flow& f);
    void forget_old(double now_s);

    size_t max_flows_;
    std::unordered_map<uint32_t, Flow> flows_;
    struct Ended {
        uint32_t id;
        double at_s;
    };
    std::deque<Ended> ended_;  // in order of ending; may name flows that started again since
    uint64_t replayed_ = 0, duplicates_ = 0, untracked_ = 0;
    uint64_t forgotten_gaps_ = 0, forgotten_gap_flows_ = 0;  // of flows no longer held
};

}  // namespace angel::sink
