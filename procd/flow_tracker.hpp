// procd's flow logic: turns parsed packets into FlowMap updates and records, in an order the
// classifier can rely on (for one flow ID: flow-start, packets, flow-end).
//
// Restart safety: procd processes the packet ring in batches and commits the ring only after
// the batch's records are published. A procd killed mid-batch has updated the FlowMap for
// packets whose records may be lost, so its successor repeats the batch, and every step is
// made repeatable:
//   - a flow is created complete (direction, times) before it is visible, and a flow whose
//     creating packet was not counted yet (0 packets) is started by that packet again;
//   - the map's header says up to which ring position packets were counted
//     (FlowMap::counted_end, set after each packet's counters); a packet below it is a repeat:
//     its records are emitted again, it is not counted again;
//   - an ended flow is only retired (ID reserved, out of key lookup) until its flow_end is
//     published. A successor keeps the retired flows it finds aside and re-ends them once the
//     repeated batch has moved past their last packet.
// Duplicates are thus confined to the one batch that was in flight, as DESIGN.md allows.
//
// Packet index: a packet record carries the number of packets of its flow (both directions)
// counted before it, mod 2^32 (docs/protocol.md, angelPacketIndex). A repeated packet must get
// the index it got the first time, although the counters already include the whole batch. No
// flow keeps anything for it: before repeating, the successor is given the repeated packets
// (plan_repeat(); procd's first batch holds them all, as its predecessor's batch did) and works
// out, per tuple from the last of them back, which flow each belonged to and its index: the
// live flow of the tuple took its last `packets counted` of them (all of them counted, so the
// last one has index counted-1), the flows of the tuple retired in the batch, newest first, the
// ones before; a flow whose whole count lies in the batch was created there (flow_start again).
// Nothing of this is written while repeating, so a successor killed in its turn leaves the same
// state for the next one.
//
// Fewer records (issue 11, item 5): a flow's packet records stop after the first
// export.packet_records_per_flow packets (set_record_limit), unless the flow is marked full;
// a muted flow gets none (FlowEntry::record_mode, set by procd/flow_control_applier.hpp).
// flow_start and flow_end, with every packet counted, are never held back. What is held back
// is counted (procd_records_over_limit, procd_records_muted); a repeated packet is decided the
// same way by its index and not counted twice.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/flow_key.hpp"
#include "shm/flow_control.hpp"
#include "shm/flow_map.hpp"
#include "shm/records.hpp"
#include "shm/stage_status.hpp"

namespace angel {

struct FlowTimeouts {
    uint64_t idle_ns = 60'000'000'000ull;
    uint64_t tcp_linger_ns = 2'000'000'000ull;
};

// Counters live in the segment (procd's StageStatus, indexed by ProcdCounter) and are bumped
// right next to the FlowMap change they count, so a kill cannot separate the two by more
// than a few instructions and the totals stay exact across restarts.
using CounterArray = std::atomic<uint64_t>*;

// Where records go. emit() must not fail: it blocks until the record is queued.
class RecordSink {
public:
    virtual ~RecordSink() = default;
    virtual void emit(const Record& r) = 0;
    // New/ended-flow events for the database (may drop when full; counted by the sink).
    virtual void event(const Record& r) = 0;
    // Makes everything emitted so far visible downstream.
    virtual void publish() = 0;
};

class FlowTracker {
public:
    // map must have been recover()ed. max_flows: live flows at which the least recently active
    // one is evicted (the map has spare entries beyond it for flows ending in a batch).
    FlowTracker(FlowMap map, FlowIdKey id_key, FlowTimeouts t, RecordSink& out, CounterArray counters,
                uint32_t max_flows);

    // One IP packet. ts_ns: capture time; wire_len: length on the wire; pos: its position in
    // the packet ring (monotonic, shared), which makes a repeated batch recognisable.
    // Returns false when the packet was a repeat (already counted by a predecessor).
    bool packet(const ParsedPacket& p, uint64_t ts_ns, uint32_t wire_len, uint64_t pos);

    // After a restart: the packets at ring positions below repeat_end() were counted by a
    // predecessor that was killed before committing them. They are given here, all of them and
    // in ring order, before the first of them goes to packet(); a repeated packet that was not
    // given is passed over without records (counted as repeated).
    struct Repeated {
        uint64_t pos;
        FlowKey key;
        uint32_t hash;  // the key's bucket hash
    };
    uint64_t repeat_end() const { return repeat_end_; }
    void plan_repeat(const std::vector<Repeated>& packets);

    // The same in two steps, for a batch: lookup() builds the flow key and its bucket hash
    // and asks the FlowMap to prefetch the bucket; prefetch_entry() (a few packets later)
    // the entry; packet() then does the work. Between lookup() and packet() of one packet,
    // other packets may be processed in order: the key and hash depend on the packet alone.
    struct Lookup {
        FlowKey key;
        uint32_t hash;
        bool reversed;
    };
    void lookup(const ParsedPacket& p, Lookup& out) const;
    void prefetch_entry(const Lookup& l) const { map_.prefetch_entry(l.hash); }
    bool packet(const ParsedPacket& p, const Lookup& l, uint64_t ts_ns, uint32_t wire_len, uint64_t pos);
    // Ends flows idle past the timeout and TCP flows whose linger has passed, as of now_ns.
    void expire(uint64_t now_ns);
    // Ends every live flow (end of replay input, meter stop).
    void end_all(EndReason why);
    // A meter that has just become master re-announces its live flows: an announce record
    // (flow_id = generation) and then one flow_start per live flow, with the 5-tuple as its first
    // packet saw it and the flow's first-seen time, to the record ring only (the database is
    // reconciled by ctld). Returns the number of flow_starts.
    size_t announce_all(uint32_t generation);
    // After the records of a batch are published: frees the flows that ended in it.
    void release_ended();
    // Emits flow_end for flows a predecessor retired whose packets all lie before ring
    // position pos (all of them for UINT64_MAX: once the repeated batch is over).
    void flush_retired(uint64_t pos);
    void set_timeouts(FlowTimeouts t) { timeouts_ = t; }
    // Packet records for the first n packets of each flow only; 0: every packet.
    void set_record_limit(uint32_t n) { record_limit_ = n; }

private:
    FlowEntry* create_flow(const FlowKey& k, uint32_t hash, bool reversed, uint64_t ts_ns);
    uint32_t flow_limit() const;  // live flows at which the oldest is evicted
    // A packet below repeat_end(): its records again, as plan_repeat() worked them out.
    bool repeat(const ParsedPacket& p, const Lookup& l, uint64_t ts_ns, uint32_t wire_len, uint64_t pos);
    void end_flow(FlowEntry* e, EndReason why);
    void emit_start(const FlowEntry& e, const ParsedPacket& p, uint64_t ts_ns);
    void emit_end(const FlowEntry& e, EndReason why);
    void emit_packet(const FlowEntry& e, const ParsedPacket& p, uint64_t ts_ns, uint32_t wire_len,
                     uint8_t dir, bool is_new, uint32_t index);
    bool expired(const FlowEntry& e, uint64_t now_ns, EndReason* why) const;
    // Whether the packet with this index (packets of the flow before it) gets its record;
    // counted: a first pass, whose held-back record is counted.
    bool wants_record(const FlowEntry& e, uint64_t index, bool counted);

    FlowMap map_;
    FlowIdKey id_key_;
    FlowTimeouts timeouts_;
    RecordSink& out_;
    CounterArray ctr_;
    // procd is the only writer of its counters: no locked read-modify-write per packet.
    void bump(size_t slot) { ctr_[slot].store(ctr_[slot].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
    std::vector<FlowEntry*> ended_;  // retired in this batch; capacity reserved once
    std::vector<FlowEntry*> inherited_;  // retired by a predecessor, flow_end not yet re-emitted
    // Parallel to inherited_: the ring position past the flow's last repeated packet (0: none
    // repeated), from which its flow_end is re-emitted.
    std::vector<uint64_t> inherited_end_;
    // The repeat (plan_repeat()): for each repeated packet, in ring order, its flow (nullptr: a
    // flow gone before the crash) and its full packet index; plan_next_ is the next to use.
    struct PlanItem {
        uint64_t pos;
        FlowEntry* owner;
        uint64_t index;
    };
    std::vector<PlanItem> plan_;
    size_t plan_next_ = 0;
    uint64_t repeat_end_ = 0;  // FlowMap::counted_end() as the predecessor left it
    uint32_t max_flows_;
    uint64_t record_limit_ = 0;  // set_record_limit(); 0: none
    // Closing TCP flows in order of their close time (linger is the same for all, so FIFO
    // order is expiry order). Private to procd: rebuilt from the FlowMap on restart.
    struct Closing {
        uint32_t flow_id;
        uint64_t close_ns;
        FlowEntry* entry;
    };
    std::unique_ptr<Closing[]> closing_;  // circular, sized once
    size_t closing_size_ = 0;
    size_t closing_head_ = 0, closing_count_ = 0;
    void closing_push(FlowEntry* e);
};

}  // namespace angel
