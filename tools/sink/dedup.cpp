#include "tools/sink/dedup.hpp"

#include <algorithm>

namespace angel::sink {

Dedup::Flow* Dedup::find_or_add(uint32_t id) {
    if (auto it = flows_.find(id); it != flows_.end()) return &it->second;
    if (flows_.size() >= max_flows_) {
        // Make room by forgetting the oldest ended flow; none: this one is not tracked.
        while (!ended_.empty()) {
            const Ended e = ended_.front();
            ended_.pop_front();
            auto it = flows_.find(e.id);
            if (it == flows_.end() || !it->second.ended) continue;
            if (it->second.gaps_at_end) {
                forgotten_gaps_ += it->second.gaps_at_end;
                ++forgotten_gap_flows_;
            }
            flows_.erase(it);
            break;
        }
        if (flows_.size() >= max_flows_) return nullptr;
    }
    return &flows_[id];
}

void Dedup::new_life(Flow& f) {
    if (f.ended && f.gaps_at_end) {
        forgotten_gaps_ += f.gaps_at_end;
        ++forgotten_gap_flows_;
    }
    const uint64_t prev_end = f.ended ? f.end_last_ns : f.prev_end_ns;
    f = Flow{};
    f.prev_end_ns = prev_end;
}

bool Dedup::add_index(Flow& f, uint32_t idx) {
    auto& v = f.seen;
    if (!v.empty() && v.back().hi == idx && idx != UINT32_MAX) {  // in order: the usual case
        ++v.back().hi;
        return true;
    }
    // First range whose hi > idx: idx lies in it, in the hole before it, or past the end.
    auto it = std::upper_bound(v.begin(), v.end(), idx, [](uint32_t x, const Range& r) { return x < r.hi; });
    if (it != v.end() && it->lo <= idx) return false;
    const bool joins_prev = it != v.begin() && std::prev(it)->hi == idx;
    const bool joins_next = it != v.end() && it->lo == idx + 1;
    if (joins_prev && joins_next) {
        std::prev(it)->hi = it->hi;
        v.erase(it);
    } else if (joins_prev) {
        std::prev(it)->hi = idx + 1;
    } else if (joins_next) {
        it->lo = idx;
    } else {
        v.insert(it, Range{idx, idx + 1});
    }
    return true;
}

uint64_t Dedup::missing(const Flow& f) {
    if (f.seen.empty()) return 0;
    uint64_t have = 0;
    for (const Range& r : f.seen) have += r.hi - r.lo;
    const uint64_t from = f.started ? 0 : f.seen.front().lo;
    return uint64_t(f.seen.back().hi) - from - have;
}

void Dedup::forget_old(double now_s) {
    while (!ended_.empty() && now_s - ended_.front().at_s > kHoldSeconds) {
        const uint32_t id = ended_.front().id;
        ended_.pop_front();
        auto it = flows_.find(id);
        if (it == flows_.end() || !it->second.ended) continue;  // started again meanwhile
        if (it->second.gaps_at_end) {
            forgotten_gaps_ += it->second.gaps_at_end;
            ++forgotten_gap_flows_;
        }
        flows_.erase(it);
    }
}

bool Dedup::admit(const ipfix::DecodedRecord& r, double now_s) {
    bool replayed = false;
    uint32_t id = 0;
    uint64_t t = 0;  // the record's packet time: packet, flow's first, flow's last
    switch (r.kind) {
    case ipfix::RecordKind::packet: replayed = r.packet.replayed; id = r.packet.flow_id; t = r.packet.ts_ns; break;
    case ipfix::RecordKind::flow_start: replayed = r.start.replayed; id = r.start.flow_id; t = r.start.ts_ns; break;
    case ipfix::RecordKind::flow_end: replayed = r.end.replayed; id = r.end.flow_id; t = r.end.last_ns; break;
    case ipfix::RecordKind::loss:
    case ipfix::RecordKind::watermark:
    case ipfix::RecordKind::other: return true;  // no flow
    }
    if (replayed) ++replayed_;
    if (!ended_.empty() && now_s - ended_.front().at_s > kHoldSeconds) forget_old(now_s);
    Flow* f = find_or_add(id);
    if (!f) {
        ++untracked_;
        return true;
    }
    bool first = true;
    // After a flow_end, a live (not replayed) packet or flow_end belongs to the ID's next life,
    // whose flow_start this receiver missed (it went to another classifier, or was lost). A
    // replayed one is a copy of the ended life, even when timed a little after its end: the two
    // meters' clocks differ (a replayed next life starts with its replayed flow_start).
    if (f->ended && r.kind != ipfix::RecordKind::flow_start && !replayed) new_life(*f);
    // A replay reaches back ha.replay_ms: it can hold records of an earlier life of this flow
    // ID, all timed before the current life began.
    if (replayed && f->started && t < f->start_ns) {
        // The replaying meter's copy of this life's start, by its own clock: the life starts
        // there (its records from then on are this life's), the copy itself is a duplicate.
        if (r.kind == ipfix::RecordKind::flow_start && !f->ended && f->start_ns - t <= kClockSkewNs &&
            t > f->prev_end_ns)
            f->start_ns = t;
        ++duplicates_;
        return false;
    }
    switch (r.kind) {
    case ipfix::RecordKind::packet:
        if (!r.has_index) break;  // an exporter without packet indexes: nothing to compare
        first = add_index(*f, r.packet.index);
        if (!first && !replayed && t > f->newest_ns) {
            new_life(*f);
            first = add_index(*f, r.packet.index);
        }
        f->newest_ns = std::max(f->newest_ns, t);
        break;
    case ipfix::RecordKind::flow_start:
        if (f->started && !f->ended && f->start_ns == r.start.ts_ns) {
            first = false;  // the same start again (a message sent twice)
        } else if (replayed && (f->started || f->ended) &&
                   !(f->ended && r.start.ts_ns > f->end_last_ns)) {
            first = false;  // a copy of this life's start (two meters' clocks differ a little)
        } else {
            new_life(*f);
            f->started = true;
            f->start_ns = r.start.ts_ns;
        }
        break;
    case ipfix::RecordKind::flow_end:
        if (f->ended) {
            first = false;
        } else {
            f->ended = true;
            f->end_last_ns = r.end.last_ns;
            f->gaps_at_end = missing(*f);
            ended_.push_back({id, now_s});
        }
        break;
    case ipfix::RecordKind::loss:
    case ipfix::RecordKind::watermark:
    case ipfix::RecordKind::other: break;
    }
    if (!first) ++duplicates_;
    return first;
}

uint64_t Dedup::index_gaps() const {
    uint64_t n = forgotten_gaps_;
    for (const auto& [id, f] : flows_) n += f.ended ? f.gaps_at_end : missing(f);
    return n;
}

uint64_t Dedup::flows_with_gaps() const {
    uint64_t n = forgotten_gap_flows_;
    for (const auto& [id, f] : flows_) n += (f.ended ? f.gaps_at_end : missing(f)) != 0;
    return n;
}

}  // namespace angel::sink
