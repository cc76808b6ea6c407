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
    map_.set_hasher({&flow_bucket_hash, id_key_});  // the hash lookup() computes
    repeat_end_ = map_.counted_end();
    const size_t cap = std::max<uint32_t>(map_.capacity(), 1);
    ended_.reserve(cap);  // address space only: pages are touched as flows end
    // Twice the capacity: stale entries (flows ended otherwise) stay queued until their
    // linger passes; when that is not enough, closing_push() compacts.
    closing_size_ = 2 * cap;
    closing_.reset(new Closing[closing_size_]);
    // Flows a killed predecessor had ended: their flow_end may not have been published. They
    // are re-ended once the repeated batch is past their packets (flush_retired).
    for (FlowEntry* e = map_.first_retired(); e; e = map_.next_retired(e)) inherited_.push_back(e);
    inherited_end_.assign(inherited_.size(), 0);  // plan_repeat() places those with repeated packets
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
    for (size_t i = 0; i < inherited_.size(); ++i) {
        FlowEntry* e = inherited_[i];
        if (inherited_end_[i] <= pos) {
            emit_end(*e, static_cast<EndReason>(e->ending));
            ended_.push_back(e);
        } else {
            inherited_end_[kept] = inherited_end_[i];
            inherited_[kept++] = e;
        }
    }
    inherited_.resize(kept);
    inherited_end_.resize(kept);
}

void FlowTracker::plan_repeat(const std::vector<Repeated>& packets) {
    // Once, after a restart; the allocations here are not on the packet path.
    plan_.assign(packets.size(), PlanItem{0, nullptr, 0});
    plan_next_ = 0;
    std::vector<size_t> order(packets.size());
    for (size_t i = 0; i < order.size(); ++i) {
        order[i] = i;
        plan_[i].pos = packets[i].pos;
    }
    // By tuple, each tuple's packets in ring order.
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const int c = std::memcmp(&packets[a].key, &packets[b].key, sizeof(FlowKey));
        return c != 0 ? c < 0 : a < b;
    });
    std::vector<size_t> owners;  // indexes into inherited_ of the tuple's retired flows
    for (size_t g = 0; g < order.size();) {
        const FlowKey& k = packets[order[g]].key;
        size_t end = g;
        while (end < order.size() && packets[order[end]].key == k) ++end;
        size_t remaining = end - g;  // the tuple's packets not yet given to a flow: order[g, g+remaining)
        // The newest flow of the tuple took the last of them: the live one, then those retired in
        // the batch, newest first (a tuple's flows follow each other: one ends before the next).
        auto give = [&](FlowEntry* f) {
            const uint64_t c = f->counted();
            const size_t t = static_cast<size_t>(std::min<uint64_t>(c, remaining));
            for (size_t j = 0; j < t; ++j) {
                PlanItem& it = plan_[order[g + remaining - t + j]];
                it.owner = f;
                it.index = c - t + j;
            }
            remaining -= t;
            return t;
        };
        if (FlowEntry* live = map_.find(k, packets[order[g]].hash)) give(live);
        owners.clear();
        for (size_t i = 0; i < inherited_.size(); ++i)
            if (inherited_[i]->key == k) owners.push_back(i);
        std::sort(owners.begin(), owners.end(),
                  [&](size_t a, size_t b) { return inherited_[a]->first_ns > inherited_[b]->first_ns; });
        for (size_t i : owners) {
            if (remaining == 0) break;
            const size_t last = order[g + remaining - 1];  // the flow's last repeated packet
            if (give(inherited_[i]) > 0) inherited_end_[i] = packets[last].pos + 1;
        }
        // What is left belonged to flows gone before the crash (their records were published).
        g = end;
    }
}

bool FlowTracker::repeat(const ParsedPacket& p, const Lookup& l, uint64_t ts_ns, uint32_t wire_len, uint64_t pos) {
    bump(procd_repeated);
    while (plan_next_ < plan_.size() && plan_[plan_next_].pos < pos) ++plan_next_;
    if (plan_next_ == plan_.size() || plan_[plan_next_].pos != pos) return false;  // not given: nothing known
    const PlanItem& it = plan_[plan_next_++];
    FlowEntry* e = it.owner;
    if (!e) return false;  // belonged to a flow gone before the crash: nothing to say
    const bool created_here = it.index == 0;
    if (created_here) emit_start(*e, p, ts_ns);
    if (wants_record(*e, it.index, false))
        emit_packet(*e, p, ts_ns, wire_len, static_cast<uint8_t>((l.reversed ? 1 : 0) ^ e->first_reversed),
                    created_here, static_cast<uint32_t>(it.index));
    return false;
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

FlowEntry* FlowTracker::create_flow(const FlowKey& k, uint32_t hash, bool reversed, uint64_t ts_ns) {
    if (map_.live() >= flow_limit()) {
        // At capacity: the least recently active flow makes room (counted as evicted).
        if (FlowEntry* victim = map_.oldest()) {
            end_flow(victim, EndReason::evicted);
            bump(procd_flows_evicted);
        }
    }
    const uint32_t wanted_id = flow_id_hash(k, id_key_);
    FlowEntry* e = map_.insert(k, hash, wanted_id, ts_ns, reversed);
    if (!e) {
        // The spare entries are all held by flows that ended in this batch (a batch that ends
        // more flows than the spare, e.g. a GC sweep followed by new flows): publish now.
        out_.publish();
        release_ended();
        e = map_.insert(k, hash, wanted_id, ts_ns, reversed);
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
    if (pos < repeat_end_) return repeat(p, l, ts_ns, wire_len, pos);
    const bool reversed = l.reversed;
    const FlowKey& k = l.key;
    const uint32_t hash = l.hash;
    FlowEntry* e = map_.find(k, hash);
    // A flow with no packet counted was created by this packet, in a predecessor killed before
    // counting it: its flow_start goes first.
    bool is_new = e && e->counted() == 0;
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
        e = create_flow(k, hash, reversed, ts_ns);
        is_new = true;  // created by this packet
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
    const uint64_t counted_before = e->counted();
    const uint32_t index = static_cast<uint32_t>(counted_before);
    e->packets[dir] += 1;
    e->bytes[dir] += wire_len;
    map_.touch(e, ts_ns);  // last_ns, before counted_end: a repeat never comes back for it
    map_.set_counted_end(pos + 1);
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
