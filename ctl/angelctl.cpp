// angelctl: the operator's tool. Sends one command to angel-ctld over its control socket
// and prints the answer: status, stats [--prometheus], flows [--top N | --limit N], reload, restart STAGE, stop, role,
// mute FLOW_ID, unmute FLOW_ID.
// `angelctl db-init -c FILE` creates or upgrades the database schema: it runs
// `angel-ctld --db-init -c FILE` from its own folder (ctld is the one program linked with libpq;
// the conninfo is read from FILE, never passed on a command line).
#include <getopt.h>
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

#include "common/config/config.hpp"
#include "common/control_proto.hpp"

using namespace angel;

namespace {

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: angelctl [-c FILE | -s SOCKET] COMMAND [--json]\n"
                 "commands: status | stats [--prometheus] | flows [--top N | --limit N] | reload | restart capd|procd|netd\n"
                 "          | stop | role\n"
                 "          mute FLOW_ID | unmute FLOW_ID (no more packet records for a live flow; flow_end stays)\n"
                 "          db-init (create or upgrade the database schema; needs no running meter)\n");
    std::exit(EX_USAGE);
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path = kDefaultConfigPath;
    std::string socket_path;
    static const option longopts[] = {{"config", required_argument, nullptr, 'c'},
                                      {"socket", required_argument, nullptr, 's'},
                                      {"help", no_argument, nullptr, 'h'},
                                      {nullptr, 0, nullptr, 0}};
    int c;
    // "+": stop at the command, so that its own options (--top, --json) pass through.
    while ((c = getopt_long(argc, argv, "+c:s:h", longopts, nullptr)) != -1) {
        switch (c) {
            case 'c': config_path = optarg; break;
            case 's': socket_path = optarg; break;
            default: usage();
        }
    }
    if (optind >= argc) usage();
    if (std::string(argv[optind]) == "db-init") {
        if (optind + 1 != argc) usage();
        char exe[4096];
        const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        std::string dir = n > 0 ? std::string(exe, static_cast<size_t>(n)) : std::string("./angelctl");
        dir = dir.substr(0, dir.rfind('/'));
        const std::string ctld = dir + "/angel-ctld";
        execl(ctld.c_str(), "angel-ctld", "--db-init", "-c", config_path.c_str(), static_cast<char*>(nullptr));
        std::fprintf(stderr, "angelctl: cannot run %s: %s\n", ctld.c_str(), strerror(errno));
        return EX_UNAVAILABLE;
    }
    std::string line;
    for (int i = optind; i < argc; ++i) line += (line.empty() ? "" : " ") + std::string(argv[i]);
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
