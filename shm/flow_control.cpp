// Seqlock over the flow-control table, as for LiveConfig (shm/live_config.cpp).
#include "shm/flow_control.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

namespace angel {

void write_flow_control(FlowControlBlock& b, const FlowControlEntry* e, uint32_t n) {
    n = std::min(n, kFlowControlMax);
    b.seq.fetch_add(1, std::memory_order_acq_rel);
    std::atomic_thread_fence(std::memory_order_release);
    if (n > 0) std::memcpy(b.entries, e, n * sizeof *e);
    b.count = n;
    b.seq.fetch_add(1, std::memory_order_release);
    b.generation.fetch_add(1, std::memory_order_acq_rel);
}

uint32_t read_flow_control(const FlowControlBlock& b, FlowControlEntry* out) {
    // A ctld killed mid-write leaves seq odd: after about 1 s take the copy as it is (plain
    // values, the count clamped) rather than hang procd.
    for (int tries = 0;; ++tries) {
        const uint32_t s1 = b.seq.load(std::memory_order_acquire);
        if ((s1 & 1) && tries < 100000) {
            if (tries > 1000) std::this_thread::sleep_for(std::chrono::microseconds(10));
            else std::this_thread::yield();
            continue;
        }
        const uint32_t n = std::min(b.count, kFlowControlMax);
        if (n > 0) std::memcpy(out, b.entries, n * sizeof *out);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (b.seq.load(std::memory_order_relaxed) == s1 || tries >= 100000) return n;
    }
}

}  // namespace angel
