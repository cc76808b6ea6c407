#include "ctld/metrics/metrics_listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/config/config.hpp"
#include "common/log.hpp"
#include "shm/metrics_page.hpp"

namespace angel {

namespace {
constexpr int kBacklog = 16;  // netd accepts at most its few connections at a time anyway
}

int open_metrics_listener(const std::string& listen, std::string* err) {
    std::string why;
    const auto a = parse_listen_address(listen, &why);
    if (!a) {
        *err = "metrics.listen \"" + listen + "\": " + why;
        return -1;
    }
    const int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *err = "metrics.listen " + listen + ": cannot make a socket: " + strerror(errno);
        return -1;
    }
    const int one = 1;
    // A restarted meter binds again at once although the old connections linger in TIME_WAIT.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (a->family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        std::memcpy(&s4->sin_addr, a->addr.data(), 4);
        len = sizeof *s4;
    } else {
        // "[::]:PORT" means IPv6 only, as written: IPv4 has an address of its own to name.
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        std::memcpy(&s6->sin6_addr, a->addr.data(), 16);
        len = sizeof *s6;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, kBacklog) != 0) {
        const int e = errno;
        *err = "metrics.listen " + listen + ": cannot listen: " + strerror(e) +
               (e == EADDRINUSE ? " (another program, or another angel-ctld, holds the port)"
                : e == EADDRNOTAVAIL ? " (no such address on this host)" : "");
        close(fd);
        return -1;
    }
    return fd;
}

void MetricsPublisher::publish(const std::string& text) {
    if (write_metrics_page(page_, text)) return;
    if (!warned_)
        log_err("the metrics page is %zu bytes, the control object holds %u: /metrics keeps the last page that fit",
                text.size(), kMetricsPageBytes);
    warned_ = true;
}

}  // namespace angel
