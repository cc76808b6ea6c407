// The Prometheus page (metrics.listen, docs/operations.md), ctld -> netd: ctld renders the
// text exposition every second into this fixed-size area of the control object, which only
// root writes and netd maps read-only; netd serves the bytes as they are. So the process that
// talks to scrapers holds nothing it could change, and the one that renders (root) never
// talks to the network.
//
// A seqlock, as for LiveConfig (shm/live_config.cpp), except that the reader does not wait:
// netd's export loop must never stall behind it, so a copy torn by a write in progress (or by
// a ctld killed mid-write, which leaves seq odd for good) is retried a few times at once and
// then refused (the scrape gets 503 and the next one tries again).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

namespace angel {

// Room for the page: the meter's exposition is about 18 KB, 113 samples (tests/unit/prometheus_text_test.cpp
// checks it stays below half of this).
inline constexpr uint32_t kMetricsPageBytes = 128 * 1024;

struct MetricsPage {
    std::atomic<uint64_t> seq{0};         // odd while ctld writes
    std::atomic<uint64_t> generation{0};  // bumped on every page written (0: none yet)
    uint32_t length;                      // bytes of text in use (<= kMetricsPageBytes)
    uint32_t pad_;
    char text[kMetricsPageBytes];
};

// ctld: publishes text; false (nothing changed) when it does not fit.
bool write_metrics_page(MetricsPage& p, const std::string& text);
// netd: a consistent copy into out; false when no page was written yet or every try was torn.
bool read_metrics_page(const MetricsPage& p, std::string* out);

}  // namespace angel
