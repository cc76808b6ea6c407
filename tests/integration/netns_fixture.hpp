// Network namespaces for integration tests: a reusable RAII fixture.
//
// NetnsLab creates uniquely named namespaces ("angel-<tag>-<pid>-<seq>-<suffix>") and veth links
// between them, and removes everything in its destructor: processes still running inside its
// namespaces are killed (by pid, SIGTERM then SIGKILL), the namespaces are deleted, which
// deletes the veths in them. A namespace left by a crashed earlier run (same name, or the same
// tag and a pid that no longer runs) is removed before a new one is made.
//
// The links carry only what a test sends: IPv6 is disabled on each test interface before it
// comes up (no router/neighbour solicitations, MLD reports or DAD probes), no address is set
// unless the test adds one, and loopback is up in every namespace.
//
// NetnsPair is the common case: a sender namespace and a meter namespace joined by one veth
// (veth-s in the sender, veth-m in the meter).
//
// Requires root and iproute2; unavailable_reason() says why not, so tests can skip cleanly.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace angel::netns {

struct CommandResult {
    int status = -1;         // waitpid status; -1 when the command could not be started
    bool timed_out = false;  // killed after the timeout
    std::string out;         // stdout
    std::string err;         // stderr
    bool ok() const;         // exited 0 within the timeout
    std::string describe() const;
};

// Runs argv (no shell) to completion, capturing stdout and stderr; SIGKILLed after timeout_s.
CommandResult run(const std::vector<std::string>& argv, double timeout_s = 30);

// Runs argv and throws std::runtime_error (with the command line and its stderr) unless it exits 0.
std::string run_or_throw(const std::vector<std::string>& argv, double timeout_s = 30);

// Empty when namespaces can be made here; otherwise why not (not root, no `ip`).
std::string unavailable_reason();

class NetnsLab {
public:
    explicit NetnsLab(std::string tag = "t");
    ~NetnsLab();
    NetnsLab(const NetnsLab&) = delete;
    NetnsLab& operator=(const NetnsLab&) = delete;

    // Creates namespace "<prefix>-<suffix>" with lo up; returns its full name.
    std::string add_namespace(const std::string& suffix);
    // A veth pair: if_a in ns_a, if_b in ns_b, IPv6 off on both, both up. mtu 0 = default.
    void add_veth(const std::string& ns_a, const std::string& if_a, const std::string& ns_b,
                  const std::string& if_b, unsigned mtu = 0);
    // An address (CIDR, e.g. "10.9.0.1/24") on an interface.
    void add_address(const std::string& ns, const std::string& ifname, const std::string& cidr);

    // argv prefixed with "ip netns exec NS": exec keeps the pid, so signals reach the command.
    static std::vector<std::string> in(const std::string& ns, std::vector<std::string> argv);
    // /sys/class/net/IF/statistics/NAME as seen inside ns (rx_packets, tx_dropped, ...).
    static uint64_t link_stat(const std::string& ns, const std::string& ifname, const std::string& name);
    static std::vector<pid_t> pids(const std::string& ns);
    // Kills every process in ns: SIGTERM, then SIGKILL after grace_s. Returns how many were found.
    static size_t kill_all(const std::string& ns, double grace_s = 2.0);

    const std::string& prefix() const { return prefix_; }
    const std::vector<std::string>& namespaces() const { return namespaces_; }

private:
    static void remove_namespace(const std::string& ns);
    void sweep_stale() const;
    void cleanup() noexcept;

    std::string tag_;
    std::string prefix_;
    std::vector<std::string> namespaces_;
};

class NetnsPair : public NetnsLab {
public:
    explicit NetnsPair(std::string tag = "t", unsigned mtu = 0);
    const std::string& sender() const { return sender_; }
    const std::string& meter() const { return meter_; }
    static constexpr const char* kSenderIf = "veth-s";
    static constexpr const char* kMeterIf = "veth-m";

private:
    std::string sender_;
    std::string meter_;
};

}  // namespace angel::netns
