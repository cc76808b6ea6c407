// angelctl: the operator's tool. Sends one command to angel-ctld over its control socket
// and prints the answer (the commands and options: command_line.cpp, docs/angelctl.8).
// `angelctl db-init -c FILE` creates or upgrades the database schema: it runs
// `angel-ctld --db-init -c FILE` from its own folder (ctld is the one program linked with libpq;
// the conninfo is read from FILE, never passed on a command line).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/config/config.hpp"
#include "common/control_proto.hpp"
#include "ctl/command_line.hpp"

using namespace angel;

int main(int argc, char** argv) {
    const ctl::Request req = ctl::parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
    if (!req.error.empty()) {
        std::fprintf(stderr, "angelctl: %s\n", req.error.c_str());
        return EX_USAGE;
    }
    if (req.help) {
        std::fputs(ctl::usage_text().c_str(), stdout);
        return 0;
    }
    if (!req.command) {
        std::fputs(ctl::usage_text().c_str(), stderr);
        return EX_USAGE;
    }
    const std::string config_path = req.config_path.empty() ? std::string(kDefaultConfigPath) : req.config_path;
    std::string socket_path = req.socket_path;
    if (std::string(req.command->name) == "db-init") {
        char exe[4096];
        const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        std::string dir = n > 0 ? std::string(exe, static_cast<size_t>(n)) : std::string("./angelctl");
        dir = dir.substr(0, dir.rfind('/'));
        const std::string ctld = dir + "/angel-ctld";
        execl(ctld.c_str(), "angel-ctld", "--db-init", "-c", config_path.c_str(), static_cast<char*>(nullptr));
        std::fprintf(stderr, "angelctl: cannot run %s: %s\n", ctld.c_str(), strerror(errno));
        return EX_UNAVAILABLE;
    }
    std::string line = ctl::control_line(req);
    if (socket_path.empty()) {
        try {
            const Config cfg = load_config(config_path);
            socket_path = control_socket_path(cfg.runtime_dir, cfg.instance);
        } catch (const ConfigError& e) {
            std::fprintf(stderr, "angelctl: %s\n", e.what());
            return kExitConfig;
        }
    }
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof sa.sun_path) {
        std::fprintf(stderr, "angelctl: socket path too long: %s\n", socket_path.c_str());
        return EX_USAGE;
    }
    std::memcpy(sa.sun_path, socket_path.c_str(), socket_path.size() + 1);
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        const int e = errno;
        if (e == EACCES || e == EPERM)
            std::fprintf(stderr, "angelctl: %s: permission denied (you must be root or in the meter's group)\n",
                         socket_path.c_str());
        else
            std::fprintf(stderr, "angelctl: cannot reach angel-ctld at %s: %s (is it running?)\n",
                         socket_path.c_str(), strerror(e));
        return EX_UNAVAILABLE;
    }
    line += "\n";
    // ctld may answer and close before reading the command (it refuses the stages' user at
    // once): the write then fails with EPIPE, and the answer is still there to read.
    signal(SIGPIPE, SIG_IGN);
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()) && errno != EPIPE) {
        std::fprintf(stderr, "angelctl: cannot send the command: %s\n", strerror(errno));
        return EX_IOERR;
    }
    std::string reply;
    char buf[65536];
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 10000) <= 0) {
            std::fprintf(stderr, "angelctl: no answer from angel-ctld within 10 s\n");
            return EX_UNAVAILABLE;
        }
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        reply.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    if (reply.rfind("OK\n", 0) == 0) {
        std::fputs(reply.c_str() + 3, stdout);
        return 0;
    }
    if (reply.rfind("ERR ", 0) == 0) {
        std::fprintf(stderr, "angelctl: %s", reply.c_str() + 4);
        return 1;
    }
    std::fprintf(stderr, "angelctl: unexpected answer from angel-ctld\n");
    return EX_PROTOCOL;
}
