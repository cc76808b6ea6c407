// Every stage's seccomp allow-list. Found by tracing each stage under load (strace -f over a
// replay, live capture with a filter reload, export to a classifier that is down, a restart
// of each stage) and kept to what that showed plus what libc and the sanitizers' runtimes do
// on the same paths (memory, futexes, signals, time). Anything else kills the stage; ctld
// logs "a system call outside its seccomp allow-list" and restarts it with backoff.
#include "common/sandbox/syscall_allow_lists.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>

namespace angel {

namespace {

// What any stage does once running: memory, futexes (ring waits, libstdc++), time, signals,
// logging to stderr or to syslog's already-connected socket, and its own exit.
const std::vector<AllowedCall>& common_calls() {
    static const std::vector<AllowedCall> v = {
        {"read"}, {"write"}, {"writev"}, {"close"}, {"fstat"}, {"newfstatat"}, {"lseek"},
        {"mmap"}, {"munmap"}, {"mprotect"}, {"mremap"}, {"madvise"}, {"brk"},
        {"futex"}, {"sched_yield"}, {"clock_gettime"}, {"clock_nanosleep"}, {"nanosleep"},
        {"gettimeofday"}, {"time"}, {"getpid"}, {"gettid"}, {"getppid"},
        {"getuid"}, {"geteuid"}, {"getgid"}, {"getegid"},
        {"rt_sigaction"}, {"rt_sigprocmask"}, {"rt_sigreturn"}, {"sigaltstack"}, {"restart_syscall"},
        {"exit"}, {"exit_group"},
        // abort() and raise() signal the caller itself (assertion failures end the stage).
        {"tgkill"},
        {"poll"}, {"ppoll"},
        {"getrandom"},
        {"fcntl"},
        // syslog(3): sends on the socket opened before the jail (LOG_NDELAY).
        {"sendto"}, {"connect"},
        {"prlimit64"}, {"sched_getaffinity"}, {"uname"},
    };
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
    if (p != SandboxProfile::capd) v.push_back({"ioctl", 1, {TCGETS}});
#endif
    switch (p) {
        case SandboxProfile::capd:
            // The open capture: TPACKET_V3 ring polled, statistics and filter reloads
            // (pcap_setfilter attaches the new program and drains the socket).
            v.insert(v.end(), {{"recvfrom"}, {"recvmsg"}, {"getsockopt"}, {"setsockopt"}, {"ioctl"},
                               {"pread64"}, {"select"}, {"pselect6"}});
            break;
        case SandboxProfile::procd:
            // FlowMap growth: posix_fallocate on the segment, mode 0 only (no hole punching,
            // which would take memory away under ctld's feet).
            v.push_back({"fallocate", 1, {0}});
            break;
        case SandboxProfile::netd:
            // UDP to the classifier, IPv4 or IPv6; a new socket when the classifier moves.
            v.push_back({"socket", 0, {AF_INET, AF_INET6}});
            v.insert(v.end(), {{"sendmsg"}, {"sendmmsg"}, {"recvfrom"}, {"recvmsg"}, {"getsockopt"},
                               {"setsockopt"}, {"getsockname"}, {"getpeername"}});
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
