#include "ctld/control_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/log.hpp"
#include "shm/segment.hpp"  // monotonic_ns

namespace angel {

ControlServer::ControlServer(const std::string& path, int gid, Handler h, long refused_uid)
    : path_(path), handler_(std::move(h)), refused_uid_(refused_uid) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) throw std::runtime_error("control socket path too long: " + path);
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + strerror(errno));
    unlink(path.c_str());  // a stale socket of a dead ctld (the pidfile lock proved it dead)
    // Created with its final mode from the start: no window in which others could connect.
    const mode_t old = umask(gid >= 0 ? 0117 : 0177);
    const int rc = bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    umask(old);
    if (rc != 0 || listen(fd_, 16) != 0) {
        const std::string err = strerror(errno);
        close(fd_);
        throw std::runtime_error("cannot listen on " + path + ": " + err);
    }
    if (gid >= 0 && chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(gid)) != 0)
        log_warn("cannot give %s to group %d: %s", path.c_str(), gid, strerror(errno));
}

void ControlServer::poll_fds(std::vector<pollfd>& out) const {
    // -1: not polled (all slots taken, or pausing after running out of descriptors, when the
    // listening socket would stay readable and spin the loop).
    const bool listen = conns_.size() < kMaxConnections && monotonic_ns() >= accept_paused_until_ns_;
    out.push_back({listen ? fd_ : -1, POLLIN, 0});
    for (const Conn& c : conns_) out.push_back({c.fd, static_cast<short>(c.answered ? POLLOUT : POLLIN), 0});
}

void ControlServer::service(const pollfd* ready, size_t n, uint64_t now_ns) {
    // Connections first (their entries follow the listening socket's), then new ones.
    std::vector<Conn> kept;
    kept.reserve(conns_.size());
    for (size_t i = 0; i < conns_.size(); ++i) {
        const short ev = i + 1 < n && ready[i + 1].fd == conns_[i].fd ? ready[i + 1].revents : 0;
        if (advance(conns_[i], ev, now_ns)) {
            kept.push_back(std::move(conns_[i]));
        } else {
            close(conns_[i].fd);
        }
    }
    conns_ = std::move(kept);
    if (n > 0 && (ready[0].revents & POLLIN)) accept_new(now_ns);
}

void ControlServer::accept_new(uint64_t now_ns) {
    while (conns_.size() < kMaxConnections) {
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE) accept_paused_until_ns_ = now_ns + kAcceptPauseNs;
            return;
        }
        ucred cred{};
        socklen_t len = sizeof cred;
        if (refused_uid_ >= 0 && (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
                                  static_cast<long>(cred.uid) == refused_uid_)) {
            // A stage (or anything running as the stages' user) never commands ctld.
            static const char kRefused[] = "ERR the stages' user may not use the control socket\n";
            [[maybe_unused]] ssize_t n = send(c, kRefused, sizeof kRefused - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (refused_peers_++ == 0) log_warn("refused a control connection from uid %u (the stages' user)", cred.uid);
            close(c);
            continue;
        }
        Conn conn;
        conn.fd = c;
        conn.deadline_ns = now_ns + kRequestDeadlineNs;
        // A client that already sent its line is answered at once, not one loop turn later.
        if (advance(conn, POLLIN, now_ns)) {
            conns_.push_back(std::move(conn));
        } else {
            close(c);
        }
    }
}

bool ControlServer::advance(Conn& c, short revents, uint64_t now_ns) {
    if (!c.answered) {
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[512];
            for (;;) {
                const ssize_t n = read(c.fd, buf, sizeof buf);
                if (n > 0) {
                    c.in.append(buf, static_cast<size_t>(n));
                    if (c.in.find('\n') != std::string::npos || c.in.size() >= 4096) break;
                    continue;
                }
                if (n == 0) break;  // the client closed its side: answer what it sent
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    if (now_ns >= c.deadline_ns) return false;
                    return true;  // more to come
                }
                return false;
            }
        } else {
            return now_ns < c.deadline_ns;
        }
        std::string line = c.in;
        if (auto nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
        const ControlReply r = handler_(line);
        c.out = r.ok ? "OK\n" + r.body : "ERR " + r.body + "\n";
        c.answered = true;
        now_ns = monotonic_ns();  // the handler may have taken a while (flows of a large map)
        c.deadline_ns = now_ns + kReplyDeadlineNs;
        revents = POLLOUT;  // try to send at once
    }
    if (revents & (POLLERR | POLLHUP)) return false;
    if (revents & POLLOUT) {
        while (c.sent < c.out.size()) {
            const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                c.sent += static_cast<size_t>(n);
                c.deadline_ns = now_ns + kReplyDeadlineNs;  // a client taking the reply keeps it
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            return false;
        }
        if (c.sent == c.out.size()) return false;  // done: close
    }
    return now_ns < c.deadline_ns;
}

ControlServer::~ControlServer() {
    for (const Conn& c : conns_) close(c.fd);
    if (fd_ >= 0) {
        close(fd_);
        unlink(path_.c_str());
    }
}

}  // namespace angel
