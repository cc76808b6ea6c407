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

namespace angel {

ControlServer::ControlServer(const std::string& path, int gid, Handler h) : path_(path), handler_(std::move(h)) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) throw std::runtime_error("control socket path too long: " + path);
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + strerror(errno));
    unlink(path.c_str());  // a stale socket of a dead ctld (the pidfile lock proved it dead)
    // Created 0660 from the start: no window in which others could connect.
    const mode_t old = umask(0117);
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

ControlServer::~ControlServer() {
    if (fd_ >= 0) {
        close(fd_);
        unlink(path_.c_str());
    }
}

void ControlServer::serve_pending() {
    for (;;) {
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        serve(c);
        close(c);
    }
}

void ControlServer::serve(int c) {
    // One request line, read with a short deadline: a silent client cannot stall ctld.
    std::string line;
    char buf[512];
    for (int waited = 0; line.find('\n') == std::string::npos && line.size() < 4096;) {
        pollfd p{c, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0 || (waited += 200) > 1000) return;
        const ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        line.append(buf, static_cast<size_t>(n));
    }
    if (auto nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
    const ControlReply r = handler_(line);
    std::string out = r.ok ? "OK\n" + r.body : "ERR " + r.body + "\n";
    size_t off = 0;
    while (off < out.size()) {
        pollfd p{c, POLLOUT, 0};
        if (poll(&p, 1, 1000) <= 0) return;
        const ssize_t n = send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<size_t>(n);
    }
}

}  // namespace angel
