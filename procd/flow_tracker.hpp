// procd's flow logic: turns parsed packets into FlowMap updates and records, in an order the
// classifier can rely on (for one flow ID: flow-start, packets, flow-end). Owns no memory per
// packet; the FlowMap lives in the segment, records go to the sink functions given.
#pragma once
#include <cstdint>
#include <vector>

#include "common/flow_key.hpp"
#include "shm/flow_map.hpp"
#include "shm/records.hpp"

namespace angel {

struct FlowTimeouts {
    uint64_t idle_ns = 60'000'000'000ull;
    uint64_t tcp_linger_ns = 2'000'000'000ull;
};

struct FlowTrackerStats {
    uint64_t started = 0;
    uint64_t ended = 0;
    uint64_t evicted = 0;
};

// Where records go. emit() must not fail: it blocks until the record is queued.
class RecordSink {
public:
    virtual ~RecordSink() = default;
    virtual void emit(const Record& r) = 0;
    // New/ended-flow events for the database (may drop when full; counted by the sink).
    virtual void event(const Record& r) = 0;
};

class FlowTracker {
public:
    FlowTracker(FlowMap map, FlowIdKey id_key, FlowTimeouts t, RecordSink& out);

    // One IP packet. ts_ns: capture time; wire_len: length on the wire.
    void packet(const ParsedPacket& p, uint64_t ts_ns, uint32_t wire_len);
    // Ends flows idle past the timeout and TCP flows whose linger has passed, as of now_ns.
    void expire(uint64_t now_ns);
    // Ends every live flow (end of replay input, meter stop).
    void end_all(EndReason why);
    void set_timeouts(FlowTimeouts t) { timeouts_ = t; }
    const FlowTrackerStats& stats() const { return stats_; }

private:
    FlowEntry* start_flow(const FlowKey& k, uint32_t hash, const ParsedPacket& p, bool reversed,
                          uint64_t ts_ns);
    void end_flow(FlowEntry* e, EndReason why);
    bool expired(const FlowEntry& e, uint64_t now_ns, EndReason* why) const;

    FlowMap map_;
    FlowIdKey id_key_;
    FlowTimeouts timeouts_;
    RecordSink& out_;
    FlowTrackerStats stats_;
    // Closing TCP flows in order of their close time (linger is the same for all, so FIFO
    // order is expiry order). Private to procd: rebuilt from the FlowMap on restart.
    struct Closing {
        uint32_t flow_id;
        uint64_t close_ns;
        FlowEntry* entry;
    };
    std::vector<Closing> closing_;  // circular, sized once to the FlowMap capacity
    size_t closing_head_ = 0, closing_count_ = 0;
    void closing_push(FlowEntry* e);
};

}  // namespace angel
