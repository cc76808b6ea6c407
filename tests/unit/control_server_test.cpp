// ctld's control socket (ctld/control_server.hpp): one request line, one reply, close; and no
// client can hold up another or the supervisor loop -- silent clients are dropped after the
// request deadline while the others are answered at once, and a client that does not read
// a large reply does not delay anybody either.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ctld/control_server.hpp"
#include "shm/segment.hpp"  // monotonic_ns

using angel::ControlReply;
using angel::ControlServer;

namespace {

std::string socket_path() { return "/tmp/angel-ctl-test-" + std::to_string(getpid()) + ".sock"; }

int connect_to(const std::string& path) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

// Sends one request and reads the reply to EOF; returns it, or "" on timeout.
std::string ask(const std::string& path, const std::string& line, int timeout_ms = 2000) {
    const int fd = connect_to(path);
    if (fd < 0) return "";
    const std::string req = line + "\n";
    if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
        close(fd);
        return "";
    }
    std::string out;
    char buf[4096];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0) break;
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out;
}

// The supervisor loop's part, in a thread: poll, then service, every <= 100 ms.
struct Served {
    explicit Served(ControlServer::Handler h) : path(socket_path()), server(path, -1, std::move(h)) {
        loop = std::thread([this] {
            std::vector<pollfd> fds;
            while (!stop.load()) {
                fds.clear();
                server.poll_fds(fds);
                poll(fds.data(), fds.size(), 100);
                server.service(fds.data(), fds.size(), angel::monotonic_ns());
            }
        });
    }
    ~Served() {
        stop.store(true);
        loop.join();
    }
    std::string path;
    ControlServer server;
    std::atomic<bool> stop{false};
    std::thread loop;
};

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

TEST(ControlServer, AnswersOneLineAndCloses) {
    Served s([](const std::string& line) {
        if (line == "status") return ControlReply{true, "all well\n"};
        return ControlReply{false, "unknown command: " + line};
    });
    EXPECT_EQ(ask(s.path, "status"), "OK\nall well\n");
    EXPECT_EQ(ask(s.path, "bogus"), "ERR unknown command: bogus\n");
}

TEST(ControlServer, SilentClientsDelayNobodyAndAreDroppedAtTheDeadline) {
    Served s([](const std::string&) { return ControlReply{true, "pong\n"}; });
    std::vector<int> silent;
    // The deadline runs from each connection, so the drop is timed from before the first one
    // (timed from after the pings, a slow machine left less than the lower bound).
    const auto connected = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) {
        silent.push_back(connect_to(s.path));
        ASSERT_GE(silent.back(), 0);
    }
    // Before, one silent client held ctld for up to a second per connection.
    for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(ask(s.path, "ping"), "OK\npong\n");
        EXPECT_LT(ms_since(t0), 600.0) << "a reply waited for the silent clients (each held ctld 1 s before)";
    }
    // The silent ones are closed by the server once the request deadline has passed.
    const auto t0 = std::chrono::steady_clock::now();
    for (int fd : silent) {
        pollfd p{fd, POLLIN, 0};
        ASSERT_EQ(poll(&p, 1, 3000), 1);
        char c;
        EXPECT_EQ(read(fd, &c, 1), 0);  // EOF: dropped without a reply
        close(fd);
    }
    EXPECT_GE(ms_since(connected), ControlServer::kRequestDeadlineNs / 1e6) << "dropped before the deadline";
    EXPECT_LT(ms_since(t0), 2500.0);
    EXPECT_EQ(s.server.connections(), 0u);
}

TEST(ControlServer, ClientNotReadingALargeReplyDelaysNobody) {
    const std::string big(4 << 20, 'x');  // far beyond a socket buffer
    Served s([&](const std::string& line) { return ControlReply{true, line == "big" ? big : "small\n"}; });
    const int slow = connect_to(s.path);
    ASSERT_GE(slow, 0);
    ASSERT_EQ(write(slow, "big\n", 4), 4);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // its reply is stuck now
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(ask(s.path, "other"), "OK\nsmall\n");
    EXPECT_LT(ms_since(t0), 600.0);
    // The slow client still gets all of it when it reads.
    std::string got;
    char buf[65536];
    for (;;) {
        pollfd p{slow, POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0) break;
        const ssize_t n = read(slow, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
    }
    close(slow);
    EXPECT_EQ(got.size(), big.size() + 3);
    EXPECT_EQ(got.substr(0, 3), "OK\n");
}

}  // namespace
