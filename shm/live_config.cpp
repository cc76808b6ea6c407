// Seqlock over the LiveConfig block: one writer (ctld), any number of readers (stages).
#include "shm/live_config.hpp"

#include <cstring>
#include <thread>

namespace angel {

void read_live_config(const LiveConfigBlock& b, LiveConfig& out) {
    for (;;) {
        uint32_t s1 = b.seq.load(std::memory_order_acquire);
        if (s1 & 1) {
            std::this_thread::yield();
            continue;
        }
        std::memcpy(&out, &b.cfg, sizeof out);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (b.seq.load(std::memory_order_relaxed) == s1) return;
    }
}

void write_live_config(LiveConfigBlock& b, const LiveConfig& in) {
    b.seq.fetch_add(1, std::memory_order_acq_rel);
    std::atomic_thread_fence(std::memory_order_release);
    std::memcpy(&b.cfg, &in, sizeof in);
    b.seq.fetch_add(1, std::memory_order_release);
    b.generation.fetch_add(1, std::memory_order_acq_rel);
}

}  // namespace angel
