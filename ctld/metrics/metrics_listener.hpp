// metrics.listen: ctld (root) opens the listening TCP socket once, before it detaches, so a
// privileged port works and a refusal is seen where the meter was started; netd inherits it as
// descriptor 6 (kStageMetricsFd) and is the only process that accepts on it.
#pragma once
#include <string>

namespace angel {

// A listening, non-blocking, close-on-exec TCP socket on listen ("ADDR:PORT" or
// "[IPv6]:PORT", checked by the configuration). -1 with *err (one line) on failure.
int open_metrics_listener(const std::string& listen, std::string* err);

// Publishes rendered pages into the control object, for netd (shm/metrics_page.hpp).
struct MetricsPage;
class MetricsPublisher {
public:
    explicit MetricsPublisher(MetricsPage& page) : page_(page) {}
    // Writes the page; a page too large for the area is logged once and not published.
    void publish(const std::string& text);

private:
    MetricsPage& page_;
    bool warned_ = false;
};

}  // namespace angel
