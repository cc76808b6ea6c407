// Per-flow record control, ctld -> procd (issue 11, item 5): which flows get no more packet
// records (mute) and which are exempt from export.packet_records_per_flow (full). ctld merges
// the classifier's angel.flow_control rows and angelctl mute/unmute into one set and publishes
// it here, in the control object that only root writes; procd copies it whenever the
// generation moves and marks the flows (FlowEntry::record_mode), so the packet path reads a
// byte of the entry it already has and never searches the set.
//
// Bounded: at most kFlowControlMax entries (1 MiB of the control object); what does not fit
// is counted by ctld (flow_control_overflow) and left out.
#pragma once
#include <atomic>
#include <cstdint>

namespace angel {

enum class FlowRecordMode : uint8_t { normal = 0, mute = 1, full = 2 };

inline constexpr uint32_t kFlowControlMax = 65536;

struct FlowControlEntry {
    uint32_t flow_id;
    uint8_t mode;      // FlowRecordMode (mute or full)
    uint8_t pad_[3];
    // Wall-clock time ctld took the entry up. It applies to the live flow with this ID only
    // if that flow started no later: a flow ID is reused once its flow ended, and a new flow
    // under an old muted ID must not inherit the mute.
    uint64_t since_ns;
};
static_assert(sizeof(FlowControlEntry) == 16);

struct FlowControlBlock {
    std::atomic<uint32_t> seq{0};         // seqlock: odd while ctld writes
    std::atomic<uint32_t> generation{0};  // bumped on every publish
    uint32_t count;                       // entries in use (<= kFlowControlMax)
    uint32_t pad_;
    FlowControlEntry entries[kFlowControlMax];
};

// ctld: publishes n entries (n <= kFlowControlMax). procd: a consistent copy into out
// (room for kFlowControlMax), returns the count, clamped to the bound.
void write_flow_control(FlowControlBlock& b, const FlowControlEntry* e, uint32_t n);
uint32_t read_flow_control(const FlowControlBlock& b, FlowControlEntry* out);

}  // namespace angel
