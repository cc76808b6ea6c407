// The stages' sandbox (common/sandbox/): each step checked in a forked child, the way a stage
// applies it: a call outside a stage's allow-list kills the process with SIGSYS, allowed calls
// work, the failed-not-killed calls return their errno, and the whole drop leaves no way back
// to root. The jail check refuses what ntpd refuses.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "common/sandbox/sandbox.hpp"

using namespace angel;
namespace fs = std::filesystem;

namespace {

// Runs body in a forked child that leaves with _exit (no atexit work: a sanitizer's
// exit-time leak check is itself outside every allow-list). Returns the wait status.
int in_child(const std::function<int()>& body) {
    const pid_t pid = fork();
    if (pid == 0) _exit(body());
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

bool killed_by_sigsys(int st) { return WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS; }
int exit_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : -1; }

struct TempJail {
    fs::path path;
    TempJail() {
        char tmpl[] = "/tmp/angel-jail-XXXXXX";
        path = mkdtemp(tmpl);
        chmod(path.c_str(), 0755);
    }
    ~TempJail() { fs::remove_all(path); }
};

}  // namespace

TEST(Sandbox, ForbiddenCallKillsEachProfile) {
    for (SandboxProfile p : {SandboxProfile::capd, SandboxProfile::procd, SandboxProfile::netd}) {
        const int st = in_child([&] {
            if (!install_syscall_filter(p).empty()) return 2;
            // ptrace is in no stage's list: a stage taken over must not reach its neighbours.
            syscall(SYS_ptrace, 0, 0, 0, 0);
            return 0;
        });
        EXPECT_TRUE(killed_by_sigsys(st)) << sandbox_profile_name(p) << ": status " << st;
        const int st2 = in_child([&] {
            if (!install_syscall_filter(p).empty()) return 2;
            syscall(SYS_execve, "/bin/true", nullptr, nullptr);  // no stage ever execs
            return 0;
        });
        EXPECT_TRUE(killed_by_sigsys(st2)) << sandbox_profile_name(p) << ": status " << st2;
    }
}

TEST(Sandbox, AllowedCallsWorkAndLibcOpensFailWithErrno) {
    for (SandboxProfile p : {SandboxProfile::capd, SandboxProfile::procd, SandboxProfile::netd}) {
        const int st = in_child([&] {
            if (!install_syscall_filter(p).empty()) return 2;
            if (write(STDERR_FILENO, "", 0) != 0) return 3;
            void* m = malloc(1 << 20);  // mmap or brk
            if (!m) return 4;
            free(m);
            errno = 0;
            // An open fails like one in an empty directory would, instead of killing.
            if (open("/etc/localtime", O_RDONLY) != -1 || errno != ENOENT) return 5;
            return 0;
        });
        EXPECT_EQ(exit_code(st), 0) << sandbox_profile_name(p) << ": status " << st;
    }
}

TEST(Sandbox, OnlyNetdMayOpenAnInternetSocket) {
    for (SandboxProfile p : {SandboxProfile::capd, SandboxProfile::procd, SandboxProfile::netd}) {
        const int st = in_child([&] {
            if (!install_syscall_filter(p).empty()) return 2;
            // The type netd's exporter asks for (any other type is not allowed even to netd).
            const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd >= 0) return 10;
            return errno == EACCES ? 11 : 12;
        });
        if (p == SandboxProfile::netd) {
            EXPECT_EQ(exit_code(st), 10) << "netd needs its UDP socket";
        } else {
            EXPECT_EQ(exit_code(st), 11) << sandbox_profile_name(p) << ": status " << st;
        }
        // A netlink or unix socket (libc's own reconnects) fails with EACCES everywhere.
        const int st2 = in_child([&] {
            if (!install_syscall_filter(p).empty()) return 2;
            return socket(AF_NETLINK, SOCK_RAW, 0) < 0 && errno == EACCES ? 0 : 1;
        });
        EXPECT_EQ(exit_code(st2), 0) << sandbox_profile_name(p) << ": status " << st2;
    }
}

TEST(Sandbox, ProcdMayNotPunchHolesInTheSegment) {
    const int st = in_child([&] {
        char tmpl[] = "/tmp/angel-fa-XXXXXX";
        const int fd = mkstemp(tmpl);
        unlink(tmpl);
        // The segment is descriptor 3 in a stage.
        if (fd < 0 || dup2(fd, 3) != 3 || ftruncate(3, 8192) != 0) return 2;
        if (!install_syscall_filter(SandboxProfile::procd).empty()) return 2;
        if (fallocate(3, FALLOC_FL_KEEP_SIZE, 0, 4096) != 0) return 3;  // backing what exists: allowed
        fallocate(3, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);  // never
        return 0;
    });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
}

TEST(Sandbox, ProcdMayNotGrowTheSegmentNorWriteIt) {
    for (int how = 0; how < 3; ++how) {
#ifdef ANGEL_SANITIZER_BUILD
        // Sanitizer builds let write() through on any descriptor (UBSan's vptr check writes
        // into a pipe); release builds, which this case is about, allow stdout and stderr only.
        if (how == 1) continue;
#endif
        const int st = in_child([&] {
            char tmpl[] = "/tmp/angel-fa-XXXXXX";
            const int fd = mkstemp(tmpl);
            unlink(tmpl);
            if (fd < 0 || dup2(fd, 3) != 3 || !install_syscall_filter(SandboxProfile::procd).empty()) return 2;
            if (how == 0) fallocate(3, 0, 0, 1 << 20);               // mode 0 grows the file
            if (how == 1) [[maybe_unused]] ssize_t n = write(3, "x", 1);  // so does a write
            if (how == 2) madvise(nullptr, 0, MADV_REMOVE);          // punches a hole in shared memory
            return 0;
        });
        EXPECT_TRUE(killed_by_sigsys(st)) << "case " << how << ": status " << st;
    }
}

TEST(Sandbox, NetdMayNotOpenATcpSocket) {
    const int st = in_child([&] {
        if (!install_syscall_filter(SandboxProfile::netd).empty()) return 2;
        socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return 0;
    });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
}

// metrics.listen: netd accepts on descriptor 6 (the socket ctld passed) and on no other, and
// answers with send() and reads with recv() on what it accepted; the other stages accept nothing.
TEST(Sandbox, NetdAcceptsOnlyOnTheMetricsDescriptor) {
    auto listener_at = [](int want) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 4) != 0) return -1;
        if (fd != want && (dup2(fd, want) < 0 || close(fd) != 0)) return -1;
        return want;
    };
    const int st = in_child([&] {
        if (listener_at(6) != 6) return 3;
        if (!install_syscall_filter(SandboxProfile::netd).empty()) return 2;
        // Nobody connected: EAGAIN, not a kill.
        if (accept4(6, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC) != -1 || errno != EAGAIN) return 4;
        return 0;
    });
    EXPECT_EQ(exit_code(st), 0) << "status " << st;
    const int st2 = in_child([&] {
        if (listener_at(7) != 7) return 3;
        if (!install_syscall_filter(SandboxProfile::netd).empty()) return 2;
        accept4(7, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        return 0;
    });
    EXPECT_TRUE(killed_by_sigsys(st2)) << "accept4 on descriptor 7: status " << st2;
    for (SandboxProfile p : {SandboxProfile::capd, SandboxProfile::procd}) {
        const int st3 = in_child([&] {
            if (listener_at(6) != 6) return 3;
            if (!install_syscall_filter(p).empty()) return 2;
            accept4(6, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            return 0;
        });
        EXPECT_TRUE(killed_by_sigsys(st3)) << sandbox_profile_name(p) << ": status " << st3;
    }
    // send() on an accepted connection is sendto without an address: allowed to netd.
    const int st4 = in_child([&] {
        if (listener_at(6) != 6) return 3;
        sockaddr_in a{};
        socklen_t len = sizeof a;
        getsockname(6, reinterpret_cast<sockaddr*>(&a), &len);
        const int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 5;
        if (!install_syscall_filter(SandboxProfile::netd).empty()) return 2;
        int s = -1;
        for (int i = 0; i < 1000 && s < 0; ++i) s = accept4(6, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s < 0) return 6;
        if (send(s, "x", 1, MSG_NOSIGNAL) != 1) return 7;
        char b = 0;
        if (recv(c, &b, 1, 0) != 1 || b != 'x') return 8;
        return 0;
    });
    EXPECT_EQ(exit_code(st4), 0) << "status " << st4;
}

TEST(Sandbox, SignalsOnlyItself) {
    const pid_t parent = getpid();
    const int st = in_child([&] {
        if (!install_syscall_filter(SandboxProfile::netd).empty()) return 2;
        syscall(SYS_tgkill, parent, parent, 0);  // another process: never
        return 0;
    });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
}

TEST(Sandbox, EnterDropsRootForGoodAndChroots) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    TempJail jail;
    // A child that enters procd's sandbox as nobody, checks its ids, then runs then().
    auto sandboxed = [&](const std::function<int()>& then) {
        return in_child([&] {
            SandboxSpec s;
            s.profile = SandboxProfile::procd;
            s.uid = 65534;
            s.gid = 65534;
            s.jail = jail.path.string();
            if (!enter_sandbox(s).empty()) return 2;
            if (getuid() != 65534 || geteuid() != 65534 || getgid() != 65534) return 3;
            return then();
        });
    };
    // prctl is not on procd's list: reaching it proves the filter is in place.
    const int st = sandboxed([] { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : 4; });
    EXPECT_TRUE(killed_by_sigsys(st)) << "status " << st;
    // (setuid is on no list: trying it would kill the child; enter_sandbox() itself tried to
    // regain root before the filter and refuses to go on if it could.) The jail is the root
    // now: nothing of the real file system is there.
    const int st2 = sandboxed([] {
        struct stat st{};
        return stat("/etc/passwd", &st) == 0 ? 5 : 0;
    });
    EXPECT_EQ(exit_code(st2), 0) << "status " << st2;
}

TEST(Sandbox, RefusesRootAsTheTarget) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    TempJail jail;
    const int st = in_child([&] {
        SandboxSpec s;
        s.uid = 0;
        s.gid = 0;
        s.jail = jail.path.string();
        const std::string err = enter_sandbox(s);
        return err.find("refusing to run as root") != std::string::npos ? 0 : 1;
    });
    EXPECT_EQ(exit_code(st), 0);
}

TEST(Sandbox, JailMustBeAnEmptyRootOwnedDirectoryNoOneElseWrites) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    TempJail jail;
    EXPECT_EQ(jail_problem(jail.path.string()), "");
    chmod(jail.path.c_str(), 0775);
    EXPECT_NE(jail_problem(jail.path.string()).find("writable by group or others"), std::string::npos);
    chmod(jail.path.c_str(), 0755);
    { FILE* f = fopen((jail.path / "x").c_str(), "w"); ASSERT_NE(f, nullptr); fclose(f); }
    EXPECT_NE(jail_problem(jail.path.string()).find("not empty"), std::string::npos);
    fs::remove(jail.path / "x");
    ASSERT_EQ(chown(jail.path.c_str(), 65534, 65534), 0);
    EXPECT_NE(jail_problem(jail.path.string()).find("not owned by root"), std::string::npos);
    ASSERT_EQ(chown(jail.path.c_str(), 0, 0), 0);
    const fs::path link = jail.path.string() + "-link";
    fs::create_directory_symlink(jail.path, link);
    EXPECT_NE(jail_problem(link.string()).find("not a directory"), std::string::npos);
    fs::remove(link);
    EXPECT_NE(jail_problem("relative").find("absolute"), std::string::npos);
}
