#include "netns_fixture.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace angel::netns {

namespace {

using Clock = std::chrono::steady_clock;

std::string join(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
    return s;
}

bool drain(int& fd, std::string& into) {
    char buf[65536];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        into.append(buf, static_cast<size_t>(n));
        return true;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    close(fd);
    fd = -1;
    return false;
}

bool alive(pid_t pid) { return kill(pid, 0) == 0 || errno == EPERM; }

}  // namespace

bool CommandResult::ok() const { return !timed_out && status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

std::string CommandResult::describe() const {
    std::ostringstream o;
    if (timed_out)
        o << "timed out";
    else if (status < 0)
        o << "not started";
    else if (WIFEXITED(status))
        o << "exit " << WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        o << "signal " << WTERMSIG(status);
    if (!err.empty()) o << ", stderr: " << err;
    return o.str();
}

CommandResult run(const std::vector<std::string>& argv, double timeout_s) {
    CommandResult r;
    if (argv.empty()) return r;
    int out_pipe[2], err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0) return r;
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
        close(out_pipe[0]);
        close(out_pipe[1]);
        return r;
    }
    const pid_t pid = fork();
    if (pid < 0) {
        for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
        return r;
    }
    if (pid == 0) {
        const int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(err_pipe[1], STDERR_FILENO);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    int fds[2] = {out_pipe[0], err_pipe[0]};
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    bool exited = false;
    auto ms_left = [&] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    };
    // Read until both pipes close (a grandchild may keep them open: then until the child is
    // gone and the deadline passes), reaping the child as soon as it exits.
    while (fds[0] >= 0 || fds[1] >= 0) {
        if (!exited && waitpid(pid, &r.status, WNOHANG) == pid) exited = true;
        const auto left = ms_left();
        if (left <= 0) break;
        pollfd p[2];
        nfds_t n = 0;
        for (int fd : fds)
            if (fd >= 0) p[n++] = {fd, POLLIN, 0};
        const int pr = poll(p, n, static_cast<int>(std::min<long long>(left, 100)));
        if (pr <= 0) continue;
        for (nfds_t i = 0; i < n; ++i) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int& fd = p[i].fd == fds[0] ? fds[0] : fds[1];
            drain(fd, &fd == &fds[0] ? r.out : r.err);
        }
    }
    for (int fd : fds)
        if (fd >= 0) close(fd);
    while (!exited) {
        const pid_t w = waitpid(pid, &r.status, WNOHANG);
        if (w == pid) {
            exited = true;
            break;
        }
        if (w < 0) break;
        if (ms_left() <= 0) {
            r.timed_out = true;
            kill(pid, SIGKILL);
            waitpid(pid, &r.status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return r;
}

std::string run_or_throw(const std::vector<std::string>& argv, double timeout_s) {
    CommandResult r = run(argv, timeout_s);
    if (!r.ok()) throw std::runtime_error(join(argv) + ": " + r.describe());
    return r.out;
}

std::string unavailable_reason() {
    if (geteuid() != 0) return "network namespaces need root";
    if (!run({"ip", "-V"}, 10).ok()) return "iproute2 (ip) is not installed";
    return "";
}

// ---------------------------------------------------------------------------------------------

NetnsLab::NetnsLab(std::string tag) : tag_(std::move(tag)) {
    static std::atomic<unsigned> seq{0};
    prefix_ = "angel-" + tag_ + "-" + std::to_string(getpid()) + "-" + std::to_string(seq++);
    sweep_stale();
}

NetnsLab::~NetnsLab() { cleanup(); }

void NetnsLab::cleanup() noexcept {
    // Newest first: processes die before the namespaces they use go away.
    for (auto it = namespaces_.rbegin(); it != namespaces_.rend(); ++it) {
        try {
            remove_namespace(*it);
        } catch (...) {
        }
    }
    namespaces_.clear();
}

std::string NetnsLab::add_namespace(const std::string& suffix) {
    const std::string ns = prefix_ + "-" + suffix;
    // Same name left by a crashed run of a process that had our pid: remove it first.
    if (std::filesystem::exists("/run/netns/" + ns)) remove_namespace(ns);
    run_or_throw({"ip", "netns", "add", ns});
    namespaces_.push_back(ns);
    run_or_throw({"ip", "-n", ns, "link", "set", "lo", "up"});
    return ns;
}

void NetnsLab::add_veth(const std::string& ns_a, const std::string& if_a, const std::string& ns_b,
                        const std::string& if_b, unsigned mtu) {
    std::vector<std::string> cmd = {"ip", "-n", ns_a, "link", "add", if_a};
    if (mtu) cmd.insert(cmd.end(), {"mtu", std::to_string(mtu)});
    cmd.insert(cmd.end(), {"type", "veth", "peer", "name", if_b, "netns", ns_b});
    if (mtu) cmd.insert(cmd.end(), {"mtu", std::to_string(mtu)});
    run_or_throw(cmd);
    const bool have_ipv6 = std::filesystem::exists("/proc/sys/net/ipv6");
    for (const auto& [ns, ifname] : {std::pair{ns_a, if_a}, std::pair{ns_b, if_b}}) {
        // Before the link comes up, so that not even one DAD probe or MLD report is sent.
        if (have_ipv6)
            run_or_throw(in(ns, {"sysctl", "-qw", "net.ipv6.conf." + ifname + ".disable_ipv6=1"}));
        run_or_throw({"ip", "-n", ns, "link", "set", ifname, "up"});
    }
}

void NetnsLab::add_address(const std::string& ns, const std::string& ifname, const std::string& cidr) {
    run_or_throw({"ip", "-n", ns, "addr", "add", cidr, "dev", ifname});
}

std::vector<std::string> NetnsLab::in(const std::string& ns, std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
    return argv;
}

uint64_t NetnsLab::link_stat(const std::string& ns, const std::string& ifname, const std::string& name) {
    const std::string out =
        run_or_throw(in(ns, {"cat", "/sys/class/net/" + ifname + "/statistics/" + name}));
    return std::strtoull(out.c_str(), nullptr, 10);
}

std::vector<pid_t> NetnsLab::pids(const std::string& ns) {
    std::vector<pid_t> v;
    const CommandResult r = run({"ip", "netns", "pids", ns}, 10);
    std::istringstream in(r.out);
    long p;
    while (in >> p)
        if (p > 1 && p != getpid()) v.push_back(static_cast<pid_t>(p));
    return v;
}

size_t NetnsLab::kill_all(const std::string& ns, double grace_s) {
    std::vector<pid_t> found = pids(ns);
    if (found.empty()) return 0;
    for (pid_t p : found) {
        kill(p, SIGTERM);
        kill(p, SIGCONT);  // a stopped process acts on SIGTERM only once continued
    }
    const auto deadline = Clock::now() + std::chrono::duration<double>(grace_s);
    for (;;) {
        std::vector<pid_t> left;
        for (pid_t p : found) {
            int st;
            if (waitpid(p, &st, WNOHANG) == p) continue;  // our own child: reaped
            if (alive(p)) left.push_back(p);
        }
        // A zombie that is not our child still answers kill(0) but has left the namespace.
        std::vector<pid_t> still = pids(ns);
        std::erase_if(left, [&](pid_t p) { return std::find(still.begin(), still.end(), p) == still.end(); });
        if (left.empty()) break;
        if (Clock::now() >= deadline) {
            for (pid_t p : left) kill(p, SIGKILL);
            for (pid_t p : left) waitpid(p, nullptr, WNOHANG);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        found = left;
    }
    return found.size();
}

void NetnsLab::remove_namespace(const std::string& ns) {
    kill_all(ns);
    // Deleting the namespace deletes the veths in it (and so their peers elsewhere).
    run({"ip", "netns", "delete", ns}, 10);
}

void NetnsLab::sweep_stale() const {
    // "angel-<tag>-<pid>-..." whose pid no longer runs: left by a crashed run.
    const std::string head = "angel-" + tag_ + "-";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(head, 0) != 0) continue;
        char* end = nullptr;
        const long pid = std::strtol(name.c_str() + head.size(), &end, 10);
        if (pid <= 0 || !end || *end != '-' || pid == getpid()) continue;
        if (alive(static_cast<pid_t>(pid))) continue;
        remove_namespace(name);
    }
}

NetnsPair::NetnsPair(std::string tag, unsigned mtu) : NetnsLab(std::move(tag)) {
    // If this throws, ~NetnsLab (a fully built base) removes what was made so far.
    sender_ = add_namespace("s");
    meter_ = add_namespace("m");
    add_veth(sender_, kSenderIf, meter_, kMeterIf, mtu);
}

}  // namespace angel::netns
