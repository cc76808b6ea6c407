#include "netd/metrics_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "netd/http_request.hpp"

namespace angel {

MetricsServer::~MetricsServer() {
    for (Conn& c : conns_) close(c.fd);
}

bool MetricsServer::is_listener(int fd) {
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

void MetricsServer::finish(Conn& c, bool served) {
    close(c.fd);
    c.fd = -1;
    if (served) ++served_;
    else ++refused_;
}

bool MetricsServer::service(Conn& c, uint64_t now_ns) {
    if (now_ns > c.accepted_ns + kDeadlineNs || (!c.answering && now_ns > c.accepted_ns + kRequestDeadlineNs)) {
        finish(c, false);  // too slow: sending nothing, dripping, or not reading the answer
        return false;
    }
    if (!c.answering) {
        char buf[kRequestLimit];
        const size_t room = kRequestLimit - c.in.size();
        const ssize_t n = recv(c.fd, buf, room, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            finish(c, false);  // gone before asking
            return false;
        }
        if (n > 0) c.in.append(buf, static_cast<size_t>(n));
        const HttpVerdict v = classify_http_request(c.in, kRequestLimit);
        if (v == HttpVerdict::incomplete) return true;
        std::string page;
        const bool have = v == HttpVerdict::metrics && read_metrics_page(page_, &page);
        c.out = http_response(v, page, v == HttpVerdict::metrics && !have);
        c.page = have;
        c.answering = true;
        c.in.clear();
        c.in.shrink_to_fit();
    }
    while (c.sent < c.out.size()) {
        const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;  // later
        if (n <= 0) {
            finish(c, false);
            return false;
        }
        c.sent += static_cast<size_t>(n);
    }
    finish(c, c.page);
    return false;
}

void MetricsServer::poll(uint64_t now_ns) {
    for (size_t i = 0; i < kAcceptsPerPoll; ++i) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;  // EAGAIN: nobody waiting (or EMFILE and the like: try again later)
        if (conns_.size() >= kMaxConnections) {
            close(fd);
            ++refused_;
            continue;
        }
        conns_.push_back(Conn{fd, now_ns, {}, {}, 0, false, false});
    }
    for (size_t i = 0; i < conns_.size();) {
        if (service(conns_[i], now_ns)) {
            ++i;
        } else {
            conns_[i] = std::move(conns_.back());
            conns_.pop_back();
        }
    }
}

}  // namespace angel
