// ctld's control socket: accepts angelctl connections without ever blocking the
// supervisor loop for long (one short request line, one reply, close).
#pragma once
#include <functional>
#include <string>

namespace angel {

struct ControlReply {
    bool ok = true;
    std::string body;  // for errors: the one-line message
};

class ControlServer {
public:
    using Handler = std::function<ControlReply(const std::string& line)>;
    // Creates the socket (0660; group set to gid when gid >= 0). Throws std::runtime_error.
    ControlServer(const std::string& path, int gid, Handler h);
    ~ControlServer();
    int fd() const { return fd_; }
    // Accepts and serves every pending connection.
    void serve_pending();

private:
    void serve(int client);
    std::string path_;
    int fd_ = -1;
    Handler handler_;
};

}  // namespace angel
