#include "procd/flow_control_applier.hpp"

#include <utility>

namespace angel {

FlowControlApplier::FlowControlApplier(FlowMap map)
    : map_(map), cur_(new FlowControlEntry[kFlowControlMax]), next_(new FlowControlEntry[kFlowControlMax]) {}

void FlowControlApplier::reset(const FlowControlBlock& b) {
    for (uint32_t i = 0; i < map_.high_water(); ++i) {
        FlowEntry& e = const_cast<FlowEntry&>(map_.entry(i));  // procd is the map's writer
        if (e.in_use) e.set_record_mode(static_cast<uint8_t>(FlowRecordMode::normal));
    }
    count_ = 0;
    apply(b);
}

bool FlowControlApplier::poll(const FlowControlBlock& b) {
    if (b.generation.load(std::memory_order_acquire) == generation_) return false;
    apply(b);
    return true;
}

void FlowControlApplier::apply(const FlowControlBlock& b) {
    generation_ = b.generation.load(std::memory_order_acquire);
    const uint32_t n = read_flow_control(b, next_.get());
    // Unmark what the last set marked, then mark the new set: a flow whose entry was removed
    // (unmute) returns to normal, one whose mode changed gets the new mode.
    for (uint32_t i = 0; i < count_; ++i)
        if (FlowEntry* e = map_.find_id(cur_[i].flow_id)) e->set_record_mode(static_cast<uint8_t>(FlowRecordMode::normal));
    for (uint32_t i = 0; i < n; ++i) {
        const FlowControlEntry& c = next_[i];
        if (c.mode != static_cast<uint8_t>(FlowRecordMode::mute) && c.mode != static_cast<uint8_t>(FlowRecordMode::full))
            continue;
        FlowEntry* e = map_.find_id(c.flow_id);
        // Only the flow that had the ID when the entry was made: not a later flow that reuses it.
        if (e && e->first_ns <= c.since_ns) e->set_record_mode(c.mode);
    }
    std::swap(cur_, next_);
    count_ = n;
}

}  // namespace angel
