// procd's side of per-flow record control: turns the set ctld publishes in the control object
// (shm/flow_control.hpp) into FlowEntry::record_mode marks, once per generation, so the packet
// path only reads a byte of the entry it already holds. Both copies of the set are allocated
// once at start: nothing is allocated afterwards.
#pragma once
#include <cstdint>
#include <memory>

#include "shm/flow_control.hpp"
#include "shm/flow_map.hpp"

namespace angel {

class FlowControlApplier {
public:
    explicit FlowControlApplier(FlowMap map);
    // At procd start: clears every live flow's mark (a predecessor's may be stale, and which
    // set it applied is not known), then applies the current set.
    void reset(const FlowControlBlock& b);
    // Applies the set again when ctld has published a new one. True when it did.
    bool poll(const FlowControlBlock& b);
    uint32_t entries() const { return count_; }

private:
    void apply(const FlowControlBlock& b);

    FlowMap map_;
    std::unique_ptr<FlowControlEntry[]> cur_, next_;
    uint32_t count_ = 0;
    uint32_t generation_ = 0;
};

}  // namespace angel
