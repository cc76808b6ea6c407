// ctld's control socket: serves angelctl connections (one request line, one reply, close)
// without ever blocking the supervisor loop: every connection is non-blocking and advanced
// from ctld's poll loop, so a slow or silent client holds only its own connection, never
// ctld or the other clients.
#pragma once
#include <poll.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace angel {

struct ControlReply {
    bool ok = true;
    std::string body;  // for errors: the one-line message
};

class ControlServer {
public:
    using Handler = std::function<ControlReply(const std::string& line)>;
    // Creates the socket: 0660 with group gid (the operators', control.group) when gid >= 0,
    // else 0600 (root only). A peer whose uid is refused_uid (the stages' user; -1: none) is
    // turned away whatever the file modes say (SO_PEERCRED). Throws std::runtime_error.
    ControlServer(const std::string& path, int gid, Handler h, long refused_uid = -1);
    uint64_t refused_peers() const { return refused_peers_; }
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Appends what to poll: the listening socket, then each open connection.
    void poll_fds(std::vector<pollfd>& out) const;
    // After poll() over those (ready points at the first of them, in the same order):
    // accepts, reads requests, answers complete ones, sends replies, and closes connections
    // that are done or past their deadline.
    void service(const pollfd* ready, size_t n, uint64_t now_ns);
    size_t connections() const { return conns_.size(); }

    static constexpr size_t kMaxConnections = 32;            // beyond: wait in the backlog
    static constexpr uint64_t kRequestDeadlineNs = 1'000'000'000;  // to send the request line
    static constexpr uint64_t kReplyDeadlineNs = 10'000'000'000;   // without taking any of the reply
    static constexpr uint64_t kAcceptPauseNs = 100'000'000;        // after EMFILE/ENFILE

private:
    struct Conn {
        int fd = -1;
        std::string in;   // request bytes so far
        std::string out;  // the reply, once the request is answered
        size_t sent = 0;
        bool answered = false;
        uint64_t deadline_ns = 0;
    };
    void accept_new(uint64_t now_ns);
    // false: the connection is finished (or failed) and is to be closed.
    bool advance(Conn& c, short revents, uint64_t now_ns);

    std::string path_;
    int fd_ = -1;
    Handler handler_;
    std::vector<Conn> conns_;
    uint64_t accept_paused_until_ns_ = 0;
    long refused_uid_ = -1;
    uint64_t refused_peers_ = 0;
};

}  // namespace angel
