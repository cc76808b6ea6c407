// netd's /metrics server (netd/metrics_server.hpp, netd/http_request.hpp) and the page it
// serves (shm/metrics_page.hpp), over real TCP on 127.0.0.1:
//   - requests classified exactly: GET /metrics, other paths 404, other methods 405, garbage 400
//     as soon as its first line is complete, no end of header within the limit 431;
//   - the seqlock: a page is read whole, a write in progress (seq odd) is refused, not waited
//     for; a page larger than the area is not published;
//   - the server: a scrape gets the page byte for byte with its headers; a client that sends
//     nothing and one that sends 1 MB of garbage neither delay a scrape nor stall poll() (each
//     call returns in well under a millisecond); the idle one is dropped at the request
//     deadline; connections beyond the bound are refused; counts of served and refused exact.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "netd/http_request.hpp"
#include "netd/metrics_server.hpp"

using namespace angel;

namespace {

uint64_t now_ns() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

struct Listener {
    int fd = -1;
    uint16_t port = 0;
    Listener() {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        listen(fd, 16);
        socklen_t len = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~Listener() { close(fd); }
};

int connect_to(uint16_t port) {
    const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(c);
        return -1;
    }
    return c;
}

// Polls the server (as netd's loop does) until the client has read the whole answer (EOF),
// at most timeout_ms; returns what it read. *max_poll_ns: the longest single poll() call.
std::string exchange(MetricsServer& srv, int c, int timeout_ms, uint64_t* max_poll_ns) {
    fcntl(c, F_SETFL, O_NONBLOCK);
    std::string got;
    const uint64_t end = now_ns() + uint64_t(timeout_ms) * 1'000'000ull;
    while (now_ns() < end) {
        const uint64_t t0 = now_ns();
        srv.poll(t0);
        *max_poll_ns = std::max(*max_poll_ns, now_ns() - t0);
        char buf[65536];
        const ssize_t n = read(c, buf, sizeof buf);
        if (n == 0) break;
        if (n > 0) got.append(buf, static_cast<size_t>(n));
        else std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return got;
}

}  // namespace

TEST(HttpRequest, Classification) {
    constexpr size_t L = 8192;
    EXPECT_EQ(classify_http_request("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", L), HttpVerdict::metrics);
    EXPECT_EQ(classify_http_request("GET /metrics?x=1 HTTP/1.0\r\n\r\n", L), HttpVerdict::metrics);
    EXPECT_EQ(classify_http_request("GET /metrics HTTP/1.1\n\n", L), HttpVerdict::metrics);
    EXPECT_EQ(classify_http_request("GET /metrics HTTP/1.1\r\nHost: x\r\n", L), HttpVerdict::incomplete);
    EXPECT_EQ(classify_http_request("GET /metr", L), HttpVerdict::incomplete);
    EXPECT_EQ(classify_http_request("", L), HttpVerdict::incomplete);
    EXPECT_EQ(classify_http_request("GET / HTTP/1.1\r\n\r\n", L), HttpVerdict::not_found);
    EXPECT_EQ(classify_http_request("GET /metricsx HTTP/1.1\r\n\r\n", L), HttpVerdict::not_found);
    EXPECT_EQ(classify_http_request("POST /metrics HTTP/1.1\r\n\r\n", L), HttpVerdict::method_not_allowed);
    EXPECT_EQ(classify_http_request("HEAD /metrics HTTP/1.1\r\n\r\n", L), HttpVerdict::method_not_allowed);
    // Garbage is refused once its first line ends, without waiting for more.
    EXPECT_EQ(classify_http_request("\x16\x03\x01 hello\r\n", L), HttpVerdict::bad_request);
    EXPECT_EQ(classify_http_request("GET /metrics HTTP/2\r\n", L), HttpVerdict::bad_request);
    EXPECT_EQ(classify_http_request("GET metrics HTTP/1.1\r\n", L), HttpVerdict::bad_request);
    EXPECT_EQ(classify_http_request("get /metrics HTTP/1.1\r\n", L), HttpVerdict::bad_request);
    EXPECT_EQ(classify_http_request("GET  /metrics HTTP/1.1\r\n", L), HttpVerdict::bad_request);
    EXPECT_EQ(classify_http_request(std::string(L, 'x'), L), HttpVerdict::too_large);
    EXPECT_EQ(classify_http_request("GET /metrics HTTP/1.1\r\n" + std::string(L, 'h'), L), HttpVerdict::too_large);
}

TEST(HttpRequest, Responses) {
    EXPECT_EQ(http_response(HttpVerdict::metrics, "a 1\n"),
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\n"
              "Connection: close\r\n\r\na 1\n");
    EXPECT_EQ(http_response(HttpVerdict::method_not_allowed, ""),
              "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 18\r\n"
              "Allow: GET\r\nConnection: close\r\n\r\nonly GET /metrics\n");
    EXPECT_EQ(http_response(HttpVerdict::metrics, "", true).rfind("HTTP/1.1 503 Service Unavailable\r\n", 0), 0u);
    EXPECT_EQ(http_response(HttpVerdict::not_found, "").rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
    EXPECT_EQ(http_response(HttpVerdict::bad_request, "").rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
    EXPECT_EQ(http_response(HttpVerdict::too_large, "").rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u);
}

TEST(MetricsPage, SeqlockReadsWholeOrRefuses) {
    auto page = std::make_unique<MetricsPage>();
    std::string out;
    EXPECT_FALSE(read_metrics_page(*page, &out)) << "no page written yet";
    ASSERT_TRUE(write_metrics_page(*page, "a 1\n"));
    ASSERT_TRUE(read_metrics_page(*page, &out));
    EXPECT_EQ(out, "a 1\n");
    EXPECT_EQ(page->generation.load(), 1u);
    // A write in progress (or a ctld killed in one): refused at once, not waited for.
    page->seq.fetch_add(1);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(read_metrics_page(*page, &out));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(5));
    page->seq.fetch_add(1);
    EXPECT_TRUE(read_metrics_page(*page, &out));
    // Too large for the area: not published, the last page stays.
    EXPECT_FALSE(write_metrics_page(*page, std::string(kMetricsPageBytes + 1, 'x')));
    ASSERT_TRUE(read_metrics_page(*page, &out));
    EXPECT_EQ(out, "a 1\n");
    const std::string full(kMetricsPageBytes, 'y');
    ASSERT_TRUE(write_metrics_page(*page, full));
    ASSERT_TRUE(read_metrics_page(*page, &out));
    EXPECT_EQ(out, full);
}

TEST(MetricsServer, ServesThePageAndRefusesTheRest) {
    Listener l;
    auto page = std::make_unique<MetricsPage>();
    MetricsServer srv(l.fd, *page);
    EXPECT_TRUE(MetricsServer::is_listener(l.fd));
    EXPECT_FALSE(MetricsServer::is_listener(STDIN_FILENO));
    uint64_t max_poll = 0;
    auto ask = [&](const std::string& request) {
        const int c = connect_to(l.port);
        EXPECT_GE(c, 0);
        EXPECT_EQ(write(c, request.data(), request.size()), static_cast<ssize_t>(request.size()));
        const std::string got = exchange(srv, c, 2000, &max_poll);
        close(c);
        return got;
    };
    // Before ctld wrote a page: 503.
    EXPECT_EQ(ask("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 503 ", 0), 0u);
    // A page of 100 KiB, byte for byte.
    std::string text;
    for (int i = 0; text.size() < 100 * 1024; ++i) text += "angel_x_total{n=\"" + std::to_string(i) + "\"} " + std::to_string(i) + "\n";
    ASSERT_TRUE(write_metrics_page(*page, text));
    EXPECT_EQ(ask("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"),
              http_response(HttpVerdict::metrics, text));
    EXPECT_EQ(ask("GET /other HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404 ", 0), 0u);
    EXPECT_EQ(ask("DELETE /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405 ", 0), 0u);
    EXPECT_EQ(srv.served(), 1u);
    EXPECT_EQ(srv.refused(), 3u);  // 503, 404, 405
}

TEST(MetricsServer, HostileClientsDelayNothing) {
    Listener l;
    auto page = std::make_unique<MetricsPage>();
    ASSERT_TRUE(write_metrics_page(*page, "angel_up 1\n"));
    MetricsServer srv(l.fd, *page);
    uint64_t max_poll = 0;
    // One connects and sends nothing; one sends 1 MB of garbage (no line end) from a thread.
    const int idle = connect_to(l.port);
    ASSERT_GE(idle, 0);
    const int garbage = connect_to(l.port);
    ASSERT_GE(garbage, 0);
    std::thread flood([garbage] {
        const std::string junk(1 << 20, 'Z');
        size_t sent = 0;
        while (sent < junk.size()) {
            const ssize_t n = send(garbage, junk.data() + sent, junk.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) break;  // reset by the server once it has refused the request
            sent += static_cast<size_t>(n);
        }
    });
    const uint64_t t0 = now_ns();
    srv.poll(t0);
    // A real scrape meanwhile, answered at once.
    const int c = connect_to(l.port);
    ASSERT_GE(c, 0);
    const std::string req = "GET /metrics HTTP/1.1\r\n\r\n";
    ASSERT_EQ(write(c, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    const uint64_t asked = now_ns();
    const std::string got = exchange(srv, c, 2000, &max_poll);
    const double answer_ms = double(now_ns() - asked) / 1e6;
    close(c);
    EXPECT_EQ(got, http_response(HttpVerdict::metrics, "angel_up 1\n"));
    EXPECT_LT(answer_ms, 100.0) << "a scrape waited behind the hostile clients";
    std::printf("[ metrics ] scrape answered in %.2f ms beside an idle and a flooding client\n", answer_ms);
    // The flood's answer is 431 (read from its socket), its connection closed.
    flood.join();
    // The idle one goes at the request deadline; poll() never waits meanwhile.
    bool idle_closed = false;
    const uint64_t end = now_ns() + MetricsServer::kRequestDeadlineNs + 1'000'000'000ull;
    while (now_ns() < end && srv.open_connections() > 0) {
        const uint64_t p0 = now_ns();
        srv.poll(p0);
        max_poll = std::max(max_poll, now_ns() - p0);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pollfd pf{idle, POLLIN, 0};
    if (::poll(&pf, 1, 100) == 1) {
        char b;
        idle_closed = read(idle, &b, 1) == 0;
    }
    EXPECT_TRUE(idle_closed) << "the idle client was not dropped at the deadline";
    EXPECT_LE(double(now_ns() - t0) / 1e9, MetricsServer::kRequestDeadlineNs / 1e9 + 1.0);
    EXPECT_LT(max_poll, 2'000'000u) << "one poll() took " << max_poll / 1000 << " us";
    std::printf("[ metrics ] longest poll() %.3f ms\n", double(max_poll) / 1e6);
    EXPECT_EQ(srv.served(), 1u);
    EXPECT_EQ(srv.refused(), 2u);  // the flood (431) and the idle one (deadline)
    close(idle);
    close(garbage);
}

TEST(MetricsServer, ConnectionsBeyondTheBoundAreRefused) {
    Listener l;
    auto page = std::make_unique<MetricsPage>();
    ASSERT_TRUE(write_metrics_page(*page, "angel_up 1\n"));
    MetricsServer srv(l.fd, *page);
    std::vector<int> held;
    for (size_t i = 0; i < MetricsServer::kMaxConnections + 3; ++i) held.push_back(connect_to(l.port));
    srv.poll(now_ns());
    EXPECT_EQ(srv.open_connections(), MetricsServer::kMaxConnections);
    EXPECT_EQ(srv.refused(), 3u);
    for (int fd : held) close(fd);
    // Each held connection is seen gone (EOF before a request) and counted.
    for (int i = 0; i < 100 && srv.open_connections() > 0; ++i) {
        srv.poll(now_ns());
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_EQ(srv.open_connections(), 0u);
    EXPECT_EQ(srv.refused(), 3u + MetricsServer::kMaxConnections);
    EXPECT_EQ(srv.served(), 0u);
}
