// /metrics (metrics.listen), served by netd: unprivileged, chrooted, under its seccomp list.
// ctld bound the socket (descriptor 6) and writes the page into the control object every
// second; this serves the page as it finds it and holds nothing root relies on.
//
// Everything is non-blocking and bounded, so that no client can slow the export loop it runs
// in: at most kMaxConnections at once (more are accepted and closed at once), kRequestLimit
// bytes of request, kRequestDeadline for the request to arrive and kDeadline for the whole
// exchange; each poll() reads and writes only what the sockets take without waiting, and
// accepts at most kAcceptsPerPoll. A connection closed early, refused or answered 4xx/5xx
// counts as refused; a page sent whole as served.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "shm/metrics_page.hpp"

namespace angel {

class MetricsServer {
public:
    static constexpr size_t kMaxConnections = 8;
    static constexpr size_t kRequestLimit = 8192;
    static constexpr size_t kAcceptsPerPoll = 16;
    static constexpr uint64_t kRequestDeadlineNs = 2'000'000'000ull;
    static constexpr uint64_t kDeadlineNs = 10'000'000'000ull;

    MetricsServer(int listen_fd, const MetricsPage& page) : listen_fd_(listen_fd), page_(page) {}
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // True when fd is a listening socket (ctld passed metrics.listen).
    static bool is_listener(int fd);
    // Accepts, reads, answers, closes: what can be done now without waiting.
    void poll(uint64_t now_ns);
    uint64_t served() const { return served_; }
    uint64_t refused() const { return refused_; }
    size_t open_connections() const { return conns_.size(); }

private:
    struct Conn {
        int fd;
        uint64_t accepted_ns;
        std::string in;
        std::string out;   // the answer, once the request is read
        size_t sent = 0;
        bool answering = false;
        bool page = false;  // the answer is the page (200)
    };
    // False once the connection is finished (and closed).
    bool service(Conn& c, uint64_t now_ns);
    void finish(Conn& c, bool served);

    int listen_fd_;
    const MetricsPage& page_;
    std::vector<Conn> conns_;
    uint64_t served_ = 0, refused_ = 0;
};

}  // namespace angel
