#include "procd/flow_tracker.hpp"

#include <algorithm>
#include <cstring>

namespace angel {

namespace {
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kProtoTcp = 6;
}  // namespace

FlowTracker::FlowTracker(FlowMap map, FlowIdKey id_key, FlowTimeouts t, RecordSink& out,
                         CounterArray counters, uint32_t max_flows)
    : map_(map), id_key_(id_key), timeouts_(t), out_(out), ctr_(counters),
      max_flows_(std::max<uint32_t>(1, std::min(max_flows, map_.capacity()))) {
    const size_t cap = std::max<uint32_t>(map_.capacity(), 1);
    ended_.reserve(cap);  // address space only: pages are touched as flows end
    // Twice the capacity: stale entries (flows ended otherwise) stay queued until their
    // linger passes; when that is not enough, closing_push() compacts.
    closing_size_ = 2 * cap;
    closing_.reset(new Closing[closing_size_]);
    // Flows a killed predecessor had ended: their flow_end may not have been published. They
    // are re-ended once the repeated batch is past their packets (flush_retired).
    for (FlowEntry* e = map_.first_retired(); e; e = map_.next_retired(e)) inherited_.push_back(e);
    // Flows that were closing: restore their order by close time.
    std::vector<Closing> found;
    for (uint32_t i = 0; i < map_.high_water(); ++i) {
        const FlowEntry& e = map_.entry(i);
        if (e.in_use && !e.ending && e.close_ns != 0)
            found.push_back({e.flow_id, e.close_ns, const_cast<FlowEntry*>(&e)});
    }
    std::sort(found.begin(), found.end(),
              [](const Closing& a, const Closing& b) { return a.close_ns < b.close_ns; });
    for (const Closing& c : found) closing_[closing_count_++] = c;
}

void FlowTracker::flush_retired(uint64_t pos) {
    if (inherited_.empty()) return;
    size_t kept = 0;
    for (FlowEntry* e : inherited_) {
        if (e->applied_end <= pos) {
            emit_end(*e, static_cast<EndReason>(e->ending));
            ended_.push_back(e);
        } else {
            inherited_[kept++] = e;
        }
    }
    inherited_.resize(kept);
}

FlowEntry* FlowTracker::retired_owner(const FlowKey& k, uint64_t pos) const {
    for (FlowEntry* e : inherited_)
        if (!e->before_creation(pos) && pos < e->applied_end && e->key == k) return e;
    return nullptr;
}

void FlowTracker::closing_push(FlowEntry* e) {
    if (closing_count_ == closing_size_) {
        // Full of items for flows that ended otherwise (churn of short TCP flows): keep only
        // those still closing, in order.
        // Full means every slot holds an item: rotate the oldest to slot 0, then compact in
        // place (the write index never passes the read index).
        std::rotate(closing_.get(), closing_.get() + closing_head_, closing_.get() + closing_size_);
        size_t kept = 0;
        for (size_t i = 0; i < closing_count_; ++i) {
            const Closing c = closing_[i];
            if (c.entry->in_use && !c.entry->ending && c.entry->flow_id == c.flow_id && c.entry->close_ns == c.close_ns)
                closing_[kept++] = c;
        }
        closing_head_ = 0;
        closing_count_ = kept;
        if (closing_count_ == closing_size_) return;  // every item live: impossible, 2 per entry
    }
    closing_[(closing_head_ + closing_count_) % closing_size_] = {e->flow_id, e->close_ns, e};
    ++closing_count_;
}

bool FlowTracker::expired(const FlowEntry& e, uint64_t now_ns, EndReason* why) const {
    if (e.close_ns != 0 && now_ns >= e.close_ns + timeouts_.tcp_linger_ns) {
        *why = EndReason::tcp_close;
        return true;
    }
    if (now_ns > e.last_ns + timeouts_.idle_ns) {
        *why = EndReason::idle;
        return true;
    }
    return false;
}

void FlowTracker::emit_start(const FlowEntry& e, const ParsedPacket& p, uint64_t ts_ns) {
    Record r{};
    r.type = static_cast<uint8_t>(RecordType::flow_start);
    r.flow_id = e.flow_id;
    r.ts_ns = ts_ns;
    r.start.ip_version = p.ip_version;
    r.start.proto = p.proto;
    r.start.sport = p.sport;
    r.start.dport = p.dport;
    r.start.src = p.src;
    r.start.dst = p.dst;
    out_.emit(r);
    out_.event(r);
}

void FlowTracker::emit_end(const FlowEntry& e, EndReason why) {
    Record r{};
    r.type = static_cast<uint8_t>(RecordType::flow_end);
    r.flow_id = e.flow_id;
    r.ts_ns = e.last_ns;
    r.end.first_ns = e.first_ns;
    r.end.packets[0] = e.packets[0];
    r.end.packets[1] = e.packets[1];
    r.end.bytes[0] = e.bytes[0];
    r.end.bytes[1] = e.bytes[1];
    r.end.reason = static_cast<uint8_t>(why);
    out_.emit(r);
    out_.event(r);
}

bool FlowTracker::wants_record(const FlowEntry& e, uint64_t index, bool counted) {
    const auto mode = static_cast<FlowRecordMode>(e.record_mode());
    if (mode == FlowRecordMode::mute) {
        if (counted) bump(procd_records_muted);
        return false;
    }
    if (mode == FlowRecordMode::full || record_limit_ == 0 || index < record_limit_) return true;
    if (counted) bump(procd_records_over_limit);
    return false;
}

uint32_t FlowTracker::repeated_index(FlowEntry& e, uint64_t pos) const {
    // In ring order from the batch's start, the flow's first repeated packet is the noted one.
    const uint32_t index = pos == e.batch_pos() ? e.batch_index : e.repeat_index + 1;
    note_batch_index(e, pos, index);
    e.repeat_index = index;
    return index;
}

void FlowTracker::emit_packet(const FlowEntry& e, const ParsedPacket& p, uint64_t ts_ns,
                              uint32_t wire_len, uint8_t dir, bool is_new, uint32_t index) {
    Record r{};
    r.type = static_cast<uint8_t>(RecordType::packet);
    r.flow_id = e.flow_id;
    r.ts_ns = ts_ns;
    r.packet.wire_len = wire_len;
    r.packet.dir = dir;
    r.packet.tcp_flags = p.tcp_flags;
    r.packet.new_flow = is_new ? 1 : 0;
    r.packet.index = index;
    out_.emit(r);
}

uint32_t FlowTracker::flow_limit() const {
    // The map holds max_flows plus a spare for flows ending within a batch. When it could not
    // get memory for all its entries (a full /dev/shm), the same spare is kept below the
    // reserved part, so evictions there take the same retire-until-published way.
    const uint32_t reserved = map_.reserved();
    if (reserved >= map_.capacity()) return max_flows_;
    const uint32_t spare = map_.capacity() - max_flows_;
    return std::max<uint32_t>(1, std::min(max_flows_, reserved > spare ? reserved - spare : 1));
}

FlowEntry* FlowTracker::create_flow(const FlowKey& k, uint32_t hash, bool reversed, uint64_t ts_ns,
                                    uint64_t pos) {
    if (map_.live() >= flow_limit()) {
        // At capacity: the least recently active flow makes room (counted as evicted).
        if (FlowEntry* victim = map_.oldest()) {
            end_flow(victim, EndReason::evicted);
            bump(procd_flows_evicted);
        }
    }
    const uint32_t wanted_id = flow_id_hash(k, id_key_);
    FlowEntry* e = map_.insert(k, hash, wanted_id, ts_ns, pos, reversed);
    if (!e) {
        // The spare entries are all held by flows that ended in this batch (a batch that ends
        // more flows than the spare, e.g. a GC sweep followed by new flows): publish now.
        out_.publish();
        release_ended();
        e = map_.insert(k, hash, wanted_id, ts_ns, pos, reversed);
    }
    if (!e) return nullptr;  // every usable entry is held by a predecessor's retired flows
    bump(procd_flows_started);
    return e;
}

void FlowTracker::end_flow(FlowEntry* e, EndReason why) {
    emit_end(*e, why);
    map_.retire(e, static_cast<uint8_t>(why));
    bump(procd_flows_ended);
    ended_.push_back(e);
}

void FlowTracker::release_ended() {
    for (FlowEntry* e : ended_) map_.release(e);
    ended_.clear();
}

void FlowTracker::lookup(const ParsedPacket& p, Lookup& out) const {
    // The bucket hash is cheap and runs per packet; the SipHash flow ID only for new flows.
    make_flow_key(p, id_key_, out.key, &out.reversed, &out.hash);
    map_.prefetch_bucket(out.hash);
}

bool FlowTracker::packet(const ParsedPacket& p, uint64_t ts_ns, uint32_t wire_len, uint64_t pos) {
    Lookup l;
    lookup(p, l);
    return packet(p, l, ts_ns, wire_len, pos);
}

bool FlowTracker::packet(const ParsedPacket& p, const Lookup& l, uint64_t ts_ns, uint32_t wire_len,
                         uint64_t pos) {
    if (!inherited_.empty()) flush_retired(pos);  // only after a predecessor crashed
    const bool reversed = l.reversed;
    const FlowKey& k = l.key;
    if (!inherited_.empty()) {
        // Repeating a predecessor's batch: a packet of a flow it ended in that batch.
        if (FlowEntry* r = retired_owner(k, pos)) {
            const bool created_here = r->created_at(pos);
            if (created_here) emit_start(*r, p, ts_ns);
            const uint32_t index = repeated_index(*r, pos);
            if (wants_record(*r, index, false))
                emit_packet(*r, p, ts_ns, wire_len, static_cast<uint8_t>((reversed ? 1 : 0) ^ r->first_reversed),
                            created_here, index);
            bump(procd_repeated);
            return false;
        }
    }
    const uint32_t hash = l.hash;
    FlowEntry* e = map_.find(k, hash);
    if (e && pos < e->applied_end) {
        // Repeated after a predecessor's crash: already counted; re-emit only.
        bump(procd_repeated);
        if (e->before_creation(pos)) return false;  // belonged to a flow long gone: nothing to say
        const bool created_here = e->created_at(pos);
        if (created_here) emit_start(*e, p, ts_ns);
        const uint32_t index = repeated_index(*e, pos);
        if (wants_record(*e, index, false))
            emit_packet(*e, p, ts_ns, wire_len, static_cast<uint8_t>((reversed ? 1 : 0) ^ e->first_reversed),
                        created_here, index);
        return false;
    }
    // This packet created the flow (now, or in a predecessor that was killed before counting
    // it): its flow_start goes first.
    bool is_new = e && e->created_at(pos);
    if (e && !is_new) {
        EndReason why;
        // A packet for a flow past its idle timeout or linger starts a new flow, whatever
        // the garbage collection has done so far: end first, then start.
        if (expired(*e, ts_ns, &why)) {
            end_flow(e, why);
            e = nullptr;
        }
    }
    if (!e) {
        e = create_flow(k, hash, reversed, ts_ns, pos);
        is_new = true;  // created at pos (FlowMap::insert)
    }
    if (!e) {
        // No entry at all (a map so small that a predecessor's retired flows fill it): the
        // packet's record cannot be made; counted, never silent.
        bump(procd_records_lost);
        return false;
    }
    if (is_new) emit_start(*e, p, ts_ns);
    const uint8_t dir = (reversed ? 1 : 0) ^ e->first_reversed;
    // Packets counted before this one, both directions; the exported index wraps at 2^32
    // (docs/protocol.md), the record limit looks at the full count.
    const uint64_t counted_before = e->packets[0] + e->packets[1];
    const uint32_t index = static_cast<uint32_t>(counted_before);
    note_batch_index(*e, pos, index);
    e->packets[dir] += 1;
    e->bytes[dir] += wire_len;
    map_.touch(e, ts_ns);  // last_ns, before applied_end: a repeat never comes back for it
    e->applied_end = pos + 1;
    bump(procd_ip_packets);

    if (p.proto == kProtoTcp && e->close_ns == 0) {
        // kFlowFinForward << dir: the FIN bit of this direction.
        if (p.tcp_flags & kTcpFin) e->flags |= static_cast<uint8_t>(kFlowFinForward << dir);
        if (p.tcp_flags & kTcpRst) e->flags |= kFlowRst;
        if (e->tcp_rst() || e->tcp_fin_mask() == (kFlowFinForward | kFlowFinReverse)) {
            e->close_ns = ts_ns;
            closing_push(e);
        }
    }
    if (wants_record(*e, counted_before, true)) emit_packet(*e, p, ts_ns, wire_len, dir, is_new, index);
    return true;
}

void FlowTracker::expire(uint64_t now_ns) {
    flush_retired(UINT64_MAX);
    // TCP flows whose linger has passed, in close-time order.
    while (closing_count_ > 0) {
        Closing& c = closing_[closing_head_];
        FlowEntry* e = c.entry;
        // The entry may have ended (idle, eviction, a new flow) and been reused since.
        const bool same = e->in_use && !e->ending && e->flow_id == c.flow_id && e->close_ns == c.close_ns;
        if (same && now_ns < c.close_ns + timeouts_.tcp_linger_ns) break;
        if (same) end_flow(e, EndReason::tcp_close);
        closing_head_ = (closing_head_ + 1) % closing_size_;
        --closing_count_;
    }
    // Idle flows, oldest activity first: stop at the first one still active.
    while (FlowEntry* e = map_.oldest()) {
        if (now_ns <= e->last_ns + timeouts_.idle_ns) break;
        end_flow(e, e->close_ns != 0 ? EndReason::tcp_close : EndReason::idle);
    }
}

size_t FlowTracker::announce_all(uint32_t generation) {
    Record m{};
    m.type = static_cast<uint8_t>(RecordType::announce);
    m.flow_id = generation;
    out_.emit(m);
    size_t n = 0;
    for (FlowEntry* e = map_.oldest(); e; e = map_.newer(e)) {
        if (e->ending) continue;  // its flow_end is already queued
        Record r{};
        r.type = static_cast<uint8_t>(RecordType::flow_start);
        r.flags = kRecordReplayed;  // the old master announced this flow too (if it lived then)
        r.flow_id = e->flow_id;
        r.ts_ns = e->first_ns;
        const FlowKey& k = e->key;
        r.start.ip_version = k.ip_version;
        r.start.proto = k.proto;
        // The key is canonical (lo, hi); the first packet went hi -> lo when first_reversed.
        r.start.src = e->first_reversed ? k.addr_hi : k.addr_lo;
        r.start.dst = e->first_reversed ? k.addr_lo : k.addr_hi;
        r.start.sport = e->first_reversed ? k.port_hi : k.port_lo;
        r.start.dport = e->first_reversed ? k.port_lo : k.port_hi;
        out_.emit(r);
        ++n;
    }
    return n;
}

void FlowTracker::end_all(EndReason why) {
    flush_retired(UINT64_MAX);
    while (FlowEntry* e = map_.oldest()) end_flow(e, why);
    closing_head_ = closing_count_ = 0;
}

}  // namespace angel
