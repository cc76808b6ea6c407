// A UDP socket on 127.0.0.1 (a port of its own) that receives what an exporter under test
// sends: shared by the IPFIX exporter unit tests.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace angel::unit_testing {

struct UdpReceiver {
    int fd = -1;
    uint16_t port = 0;
    // want: a port to bind again (a classifier coming back); 0: any free port.
    explicit UdpReceiver(uint16_t want = 0) {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(want);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        socklen_t l = sizeof a;
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
        port = ntohs(a.sin_port);
    }
    ~UdpReceiver() { close(fd); }
    // Next datagram or empty after timeout_ms.
    std::vector<uint8_t> recv(int timeout_ms = 1000) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0) return {};
        std::vector<uint8_t> b(65536);
        const ssize_t n = ::recv(fd, b.data(), b.size(), 0);
        b.resize(n > 0 ? size_t(n) : 0);
        return b;
    }
};

}  // namespace angel::unit_testing
