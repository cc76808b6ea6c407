// Every stage's seccomp allow-list. Found by tracing each stage under load (strace -f over a
// replay, live capture with a filter reload, export to a classifier that is down, a restart
// of each stage) and kept to what that showed plus what libc and the sanitizers' runtimes do
// on the same paths (memory, futexes, signals, time). Anything else kills the stage; ctld
// logs "a system call outside its seccomp allow-list" and restarts it with backoff.
#include "common/sandbox/syscall_allow_lists.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <unistd.h>

namespace angel {

namespace {

// Advice a stage gives: prefaulting its rings, what malloc and the sanitizer runtimes use.
// Never MADV_REMOVE, which punches a hole in the shared segment under ctld's feet.
const std::vector<uint64_t> kAdvice = {MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
                                       MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, 22 /* POPULATE_READ */,
                                       23 /* POPULATE_WRITE */};

// What any stage does once running: memory, futexes (ring waits, libstdc++), time, signals,
// logging to stderr or to syslog's already-connected socket, and its own exit.
std::vector<AllowedCall> common_calls() {
    const uint64_t self = static_cast<uint64_t>(getpid());
    std::vector<AllowedCall> v = {
        {"read"}, {"close"}, {"fstat"}, {"newfstatat"}, {"lseek"},
        {"mmap"}, {"munmap"}, {"mprotect"}, {"mremap"}, {"madvise", 2, kAdvice}, {"brk"},
        {"futex"}, {"sched_yield"}, {"clock_gettime"}, {"clock_nanosleep"}, {"nanosleep"},
        {"gettimeofday"}, {"time"}, {"getpid"}, {"gettid"}, {"getppid"},
        {"getuid"}, {"geteuid"}, {"getgid"}, {"getegid"},
        {"rt_sigaction"}, {"rt_sigprocmask"}, {"rt_sigreturn"}, {"sigaltstack"}, {"restart_syscall"},
        {"exit"}, {"exit_group"},
        // abort() and raise() signal the caller itself, and no other process.
        {"tgkill", 0, {self}},
        {"poll"}, {"ppoll"},
        {"getrandom"},
        {"fcntl"},
        // syslog(3): sends on the socket connected before the jail (LOG_NDELAY), no address.
        {"sendto", 4, {0}},
        // Its own limits only (glibc, the sanitizers), never another process's.
        {"prlimit64", 0, {0}}, {"sched_getaffinity"}, {"uname"},
    };
#ifdef ANGEL_SANITIZER_BUILD
    // UBSan's vptr check writes memory into a pipe to see whether it is readable.
    v.insert(v.end(), {{"write"}, {"writev"}});
#else
    // Logging: stdout and stderr only. Not the segment or the lock (a write past the end
    // would grow them: /dev/shm filled, or the segment resized under ctld).
    v.insert(v.end(), {{"write", 0, {1, 2}}, {"writev", 0, {1, 2}}});
#endif
    return v;
}

}  // namespace

std::vector<AllowedCall> allowed_calls(SandboxProfile p) {
    std::vector<AllowedCall> v = common_calls();
#ifdef ANGEL_SANITIZER_BUILD
    // Sanitizer builds only (make test SANITIZE=1): UBSan's vptr check probes whether memory
    // is readable by writing it into a pipe (IsAccessibleMemoryRange); ASan reads its options
    // and maps. Release builds never make these calls and do not allow them.
    v.insert(v.end(), {{"pipe"}, {"pipe2"}, {"getrusage"}, {"mincore"}, {"sched_getparam"}});
    // A sanitizer's report asks whether stderr is a terminal (isatty: ioctl TCGETS) before
    // printing; without it the stage died by SIGSYS with the report unprinted.
    v.push_back({"ioctl", 1, {TCGETS}});
#endif
    switch (p) {
        case SandboxProfile::capd:
            // The open capture: TPACKET_V3 ring polled, statistics read, and on a filter
            // reload the new program attached (pcap_setfilter: SO_ATTACH_FILTER, after
            // SO_DETACH_FILTER, at SOL_SOCKET) and the socket drained. No other socket option:
            // a membership request could put another interface into promiscuous mode.
            v.insert(v.end(), {{"recvfrom"}, {"recvmsg"}, {"getsockopt"},
                               {"setsockopt", 2, {SO_ATTACH_FILTER, SO_DETACH_FILTER}, 1, SOL_SOCKET},
                               // pcap_close() tears its ring down (PACKET_RX_RING, all zero).
                               {"setsockopt", 2, {PACKET_RX_RING}, 1, SOL_PACKET},
                               {"pread64"}, {"select"}, {"pselect6"}});
            break;
        case SandboxProfile::procd:
            // FlowMap growth on the segment (descriptor 3) that keeps its size: no hole
            // punching, no growing the segment beyond what ctld made.
            v.push_back({"fallocate", 1, {FALLOC_FL_KEEP_SIZE}, 0, 3});
            break;
        case SandboxProfile::netd:
            // UDP to the classifier, IPv4 or IPv6 (exactly the type the exporter and the
            // resolver ask for); a new socket and connect when the classifier moves.
            v.push_back({"socket", 0, {AF_INET, AF_INET6}, 1,
                         static_cast<uint64_t>(SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK)});
            v.insert(v.end(), {{"connect"}, {"sendmsg"}, {"sendmmsg"}, {"recvfrom"}, {"recvmsg"},
                               {"getsockopt"}, {"getsockname"}, {"getpeername"}});
            // Only if ctld could not resolve classifier.host and netd gets a name: glibc's
            // resolver asks for ICMP errors on its socket and how much a reply holds.
            v.push_back({"setsockopt", 2, {IP_RECVERR, IPV6_RECVERR}});
            v.push_back({"ioctl", 1, {FIONREAD}});
            // metrics.listen: accept on the listening socket ctld passed as descriptor 6 and no
            // other (netd can make no TCP socket: `socket` above is SOCK_DGRAM only; no bind or
            // listen). The accepted connections are read with recvfrom and answered with
            // send() (sendto without an address, allowed above) and closed.
            v.push_back({"accept4", 0, {6}});
            break;
    }
    return v;
}

std::vector<FailedCall> failed_calls(SandboxProfile p) {
    // Opens inside the empty jail find nothing anyway; syslog's reconnect cannot reach
    // /dev/log from there. Failing them keeps libc on its error paths instead of a kill.
    std::vector<FailedCall> v = {{"openat", ENOENT}, {"open", ENOENT}, {"access", ENOENT},
                                 {"readlink", ENOENT}, {"readlinkat", ENOENT}};
    if (p != SandboxProfile::netd) v.push_back({"socket", EACCES});
    else v.push_back({"socket", EACCES, 0, {AF_UNIX, AF_NETLINK}});
    return v;
}

}  // namespace angel
