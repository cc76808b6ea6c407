// Seqlock over the metrics page (shm/metrics_page.hpp): one writer (ctld), readers that never wait.
#include "shm/metrics_page.hpp"

#include <algorithm>
#include <cstring>

namespace angel {

bool write_metrics_page(MetricsPage& p, const std::string& text) {
    if (text.size() > kMetricsPageBytes) return false;
    p.seq.fetch_add(1, std::memory_order_acq_rel);
    std::atomic_thread_fence(std::memory_order_release);
    std::memcpy(p.text, text.data(), text.size());
    p.length = static_cast<uint32_t>(text.size());
    p.generation.fetch_add(1, std::memory_order_relaxed);  // inside the write: seen with the text
    p.seq.fetch_add(1, std::memory_order_release);
    return true;
}

bool read_metrics_page(const MetricsPage& p, std::string* out) {
    // A write takes a few microseconds once a second: a second try almost always succeeds.
    constexpr int kTries = 4;
    for (int i = 0; i < kTries; ++i) {
        const uint64_t s1 = p.seq.load(std::memory_order_acquire);
        if (s1 & 1) continue;
        if (p.generation.load(std::memory_order_acquire) == 0) return false;
        const uint32_t n = std::min(p.length, kMetricsPageBytes);  // clamped: never past the area
        out->assign(p.text, n);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (p.seq.load(std::memory_order_relaxed) == s1) return true;
    }
    return false;
}

}  // namespace angel
