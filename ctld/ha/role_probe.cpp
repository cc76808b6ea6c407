#include "ctld/ha/role_probe.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace angel {

namespace {

struct Address {
    int family = 0;
    in_addr v4{};
    in6_addr v6{};
};

Address parse_address(const std::string& text) {
    Address a;
    if (inet_pton(AF_INET, text.c_str(), &a.v4) == 1) a.family = AF_INET;
    else if (inet_pton(AF_INET6, text.c_str(), &a.v6) == 1) a.family = AF_INET6;
    else throw std::runtime_error("ha.vip \"" + text + "\" is not an IPv4 or IPv6 address");
    return a;
}

bool same_address(const Address& a, const sockaddr* sa) {
    if (!sa || sa->sa_family != a.family) return false;
    if (a.family == AF_INET) return reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr == a.v4.s_addr;
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, &a.v6, sizeof a.v6) == 0;
}

class AlwaysMaster final : public RoleProbe {
public:
    RoleObservation probe() const override { return {true, "ha.mode none"}; }
};

class VipProbe final : public RoleProbe {
public:
    explicit VipProbe(std::string vip) : vip_(std::move(vip)) {
        (void)parse_address(vip_);  // refuse a bad address now, not at the first poll
        fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (fd_ >= 0) {
            sockaddr_nl sa{};
            sa.nl_family = AF_NETLINK;
            sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
            if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
                close(fd_);
                fd_ = -1;  // polling alone still works
            }
        }
    }
    ~VipProbe() override {
        if (fd_ >= 0) close(fd_);
    }
    RoleObservation probe() const override { return probe_vip(vip_); }
    int event_fd() const override { return fd_; }
    void drain_events() override {
        char buf[8192];
        // Bounded: a storm of address events cannot keep ctld here.
        for (int i = 0; i < 64 && recv(fd_, buf, sizeof buf, MSG_DONTWAIT) > 0; ++i) {
        }
    }

private:
    std::string vip_;
    int fd_ = -1;
};

class StateFileProbe final : public RoleProbe {
public:
    explicit StateFileProbe(std::string path) : path_(std::move(path)) {
        fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        const size_t slash = path_.rfind('/');
        // (ha.state_file is absolute; "." keeps a relative path from watching the file itself.)
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
        // The folder, not the file: scripts replace the file (write + rename), and it may not
        // exist yet. A folder that does not exist leaves polling alone.
        if (fd_ >= 0 && inotify_add_watch(fd_, dir.c_str(),
                                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                                              IN_ATTRIB | IN_MODIFY) < 0) {
            close(fd_);
            fd_ = -1;
        }
    }
    ~StateFileProbe() override {
        if (fd_ >= 0) close(fd_);
    }
    RoleObservation probe() const override { return probe_state_file(path_); }
    int event_fd() const override { return fd_; }
    void drain_events() override {
        alignas(inotify_event) char buf[4096];
        for (int i = 0; i < 64 && read(fd_, buf, sizeof buf) > 0; ++i) {
        }
    }

private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace

RoleObservation probe_vip(const std::string& vip) {
    const Address want = parse_address(vip);
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return {false, std::string("cannot list local addresses: ") + std::strerror(errno)};
    RoleObservation o{false, vip + " is on no local interface"};
    for (const ifaddrs* i = list; i; i = i->ifa_next) {
        if (!same_address(want, i->ifa_addr)) continue;
        const bool up = (i->ifa_flags & IFF_UP) && (i->ifa_flags & IFF_RUNNING);
        if (up) {
            o = {true, vip + " on " + i->ifa_name};
            break;
        }
        o.detail = vip + " on " + i->ifa_name + ", which is down";
    }
    freeifaddrs(list);
    return o;
}

bool state_text_says_master(const char* text, size_t len) {
    size_t i = 0;
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (i < len && space(text[i])) ++i;
    size_t j = i;
    while (j < len && !space(text[j]) && text[j] != '\0') ++j;
    return j - i == 6 && std::memcmp(text + i, "MASTER", 6) == 0;
}

RoleObservation probe_state_file(const std::string& path) {
    // O_NONBLOCK: a FIFO put there must not hang ctld's loop; only a regular file counts.
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return {false, "state file " + path + ": " + std::strerror(errno)};
    struct stat st {};
    RoleObservation o;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        o = {false, "state file " + path + " is not a regular file"};
    } else {
        char buf[64];
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            o = {false, "state file " + path + ": " + std::strerror(errno)};
        } else {
            const bool m = state_text_says_master(buf, static_cast<size_t>(n));
            size_t b = 0, e = 0;
            while (b < size_t(n) && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\n' || buf[b] == '\r')) ++b;
            for (e = b; e < size_t(n) && e < b + 16 && buf[e] > ' ' && buf[e] < 127; ++e) {
            }
            o = {m, "state file says " + (e > b ? std::string(buf + b, e - b) : std::string("nothing"))};
        }
    }
    close(fd);
    return o;
}

std::unique_ptr<RoleProbe> make_role_probe(const HaConfig& ha) {
    if (ha.mode == "vip") return std::make_unique<VipProbe>(ha.vip);
    if (ha.mode == "file") return std::make_unique<StateFileProbe>(ha.state_file);
    return std::make_unique<AlwaysMaster>();
}

}  // namespace angel
