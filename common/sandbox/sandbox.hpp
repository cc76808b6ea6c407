// How a stage gives up everything it does not need, right after exec and before it reads
// any input (procd, netd), or right after opening its capture (capd). Fails closed: any step
// that does not hold ends the stage (exit 77, EX_NOPERM) with one line saying which.
//
// The sequence, as ntpd's and bgpd's children do it, in Linux terms:
//   1. the jail: an empty directory owned by root and writable by nobody else; chroot, chdir;
//   2. setgroups + setresgid + setresuid to the uid/gid ctld resolved (never 0), checked by
//      reading them back and by trying to regain root; all capabilities dropped from the
//      bounding set first, none left afterwards;
//   3. PR_SET_DUMPABLE 0 (no ptrace or /proc access by another process of the same user),
//      PR_SET_NO_NEW_PRIVS 1 (no exec can give privileges back);
//   4. a seccomp filter that lets through only the system calls the stage's profile lists
//      (common/sandbox/syscall_allow_lists.cpp); any other call kills the process (SIGSYS).
// A ctld that is not root cannot change users or chroot: steps 1-2 are skipped (logged),
// 3 and 4 still apply.
#pragma once
#include <sys/types.h>

#include <string>

namespace angel {

enum class SandboxProfile { capd, procd, netd };
const char* sandbox_profile_name(SandboxProfile p);

struct SandboxSpec {
    SandboxProfile profile = SandboxProfile::procd;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string jail;  // absolute path of the empty directory to chroot into
    // Asked again after the change of user (which clears it), before the filter forbids prctl.
    int parent_death_signal = 0;
};

// Returns "" when the stage is sandboxed, else what failed (the caller exits EX_NOPERM).
std::string enter_sandbox(const SandboxSpec& spec);

// Why a jail directory is not acceptable ("" when it is): not a directory (or a symlink),
// not owned by root (by our own uid when not root), writable by group or others, not empty.
std::string jail_problem(const std::string& path);

// The seccomp step alone (tests use it on a child process). "" on success.
std::string install_syscall_filter(SandboxProfile p);

}  // namespace angel
