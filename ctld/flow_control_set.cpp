#include "ctld/flow_control_set.hpp"

namespace angel {

FlowControlSet::FlowControlSet(FlowControlBlock& out) : out_(out), buf_(new FlowControlEntry[kFlowControlMax]) {
    publish();  // an empty set: a ctld that adopts a segment does not keep a dead one's mutes
}

bool FlowControlSet::mute(uint32_t flow_id, uint64_t now_ns) {
    auto it = local_.find(flow_id);
    if (it != local_.end()) return true;  // muted already: keep the time it was first muted
    if (local_.size() >= kFlowControlMax) return false;
    local_[flow_id] = {FlowRecordMode::mute, now_ns};
    publish();
    return true;
}

bool FlowControlSet::unmute(uint32_t flow_id) {
    if (local_.erase(flow_id) == 0) return false;
    publish();
    return true;
}

void FlowControlSet::set_database(const DbFlowControl& rows, uint64_t now_ns) {
    std::map<uint32_t, Entry> next;
    for (const auto& [id, mode] : rows.rows) {
        // A row already taken up keeps its time; a changed action counts as a new row.
        auto old = db_.find(id);
        const bool same = old != db_.end() && old->second.mode == mode;
        next[id] = {mode, same ? old->second.since_ns : now_ns};
    }
    db_ = std::move(next);
    db_beyond_ = rows.total > rows.rows.size() ? rows.total - rows.rows.size() : 0;
    publish();
}

void FlowControlSet::publish() {
    uint32_t n = 0;
    uint64_t left = db_beyond_;
    for (const auto& [id, e] : local_) {
        if (n == kFlowControlMax) {
            ++left;
            continue;
        }
        buf_[n++] = FlowControlEntry{id, static_cast<uint8_t>(e.mode), {}, e.since_ns};
    }
    for (const auto& [id, e] : db_) {
        if (local_.count(id)) continue;  // the operator's mute wins
        if (n == kFlowControlMax) {
            ++left;
            continue;
        }
        buf_[n++] = FlowControlEntry{id, static_cast<uint8_t>(e.mode), {}, e.since_ns};
    }
    write_flow_control(out_, buf_.get(), n);
    stats_.local = local_.size();
    stats_.database = db_.size();
    stats_.published = n;
    stats_.left_out = left;
    stats_.left_out_total += left;
}

}  // namespace angel
