// Seqlock over the LiveConfig block: one writer (ctld), any number of readers (stages).
#include "shm/live_config.hpp"

#include <cstring>
#include <chrono>
#include <thread>

namespace angel {

void read_live_config(const LiveConfigBlock& b, LiveConfig& out) {
    // A ctld killed in the middle of a write leaves seq odd for good: after ~1 s of trying,
    // take the copy as it is rather than hang the stage (the fields are plain values).
    for (int tries = 0;; ++tries) {
        uint32_t s1 = b.seq.load(std::memory_order_acquire);
        if ((s1 & 1) && tries < 100000) {
            if (tries > 1000) std::this_thread::sleep_for(std::chrono::microseconds(10));
            else std::this_thread::yield();
            continue;
        }
        std::memcpy(&out, &b.cfg, sizeof out);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (b.seq.load(std::memory_order_relaxed) == s1 || tries >= 100000) return;
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
