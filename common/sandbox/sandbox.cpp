#include "common/sandbox/sandbox.hpp"

#include <dirent.h>
#include <grp.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/sandbox/syscall_allow_lists.hpp"

namespace angel {

const char* sandbox_profile_name(SandboxProfile p) {
    switch (p) {
        case SandboxProfile::capd: return "capd";
        case SandboxProfile::procd: return "procd";
        case SandboxProfile::netd: return "netd";
    }
    return "?";
}

std::string jail_problem(const std::string& path) {
    struct stat st{};
    if (path.empty() || path[0] != '/') return "jail directory '" + path + "' is not an absolute path";
    if (lstat(path.c_str(), &st) != 0) return "jail directory " + path + ": " + strerror(errno);
    if (!S_ISDIR(st.st_mode)) return "jail " + path + " is not a directory";
    if (st.st_uid != geteuid()) return "jail directory " + path + " is not owned by " + (geteuid() == 0 ? "root" : "us");
    if (st.st_mode & (S_IWGRP | S_IWOTH)) return "jail directory " + path + " is writable by group or others";
    DIR* d = opendir(path.c_str());
    if (!d) return "jail directory " + path + ": " + strerror(errno);
    std::string problem;
    while (dirent* e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
            problem = "jail directory " + path + " is not empty";
            break;
        }
    }
    closedir(d);
    return problem;
}

namespace {

std::string errno_text(const char* what) { return std::string(what) + ": " + strerror(errno); }

std::string become(uid_t uid, gid_t gid) {
    if (uid == 0 || gid == 0) return "refusing to run as root (uid or gid 0)";
    // The bounding set first, while we still may: no later exec could grant a capability.
    for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno_text("PR_CAPBSET_DROP");
    if (setgroups(1, &gid) != 0) return errno_text("setgroups");
    if (setresgid(gid, gid, gid) != 0) return errno_text("setresgid");
    if (setresuid(uid, uid, uid) != 0) return errno_text("setresuid");
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid) return "uids did not all change";
    if (getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid) return "gids did not all change";
    // A process that could regain root would defeat the point: check that it cannot.
    if (setuid(0) == 0 || seteuid(0) == 0) return "dropped privileges but could regain root";
    // No capability may survive the change of user (none is kept across setresuid without
    // SECBIT_KEEP_CAPS, which nothing sets; checked, not assumed).
    __user_cap_header_struct hdr{};
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    __user_cap_data_struct data[2];
    std::memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0) return errno_text("capget");
    for (const auto& d : data)
        if (d.effective || d.permitted || d.inheritable) return "capabilities left after the change of user";
    return "";
}

}  // namespace

std::string install_syscall_filter(SandboxProfile p) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx) return "seccomp_init failed";
    std::string err;
    // Every thread of the process, not only the caller: a filter is per thread otherwise, and
    // a thread started earlier (by a library, say) would run unfiltered.
    if (const int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); rc != 0)
        err = std::string("seccomp thread sync: ") + strerror(-rc);
    auto add = [&](uint32_t action, const char* name, int arg, const std::vector<uint64_t>& values, int arg2 = -1,
                   uint64_t value2 = 0) {
        const int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) return;  // not a call on this architecture
        int rc = 0;
        if (arg < 0) {
            rc = seccomp_rule_add(ctx, action, nr, 0);
        } else {
            for (uint64_t v : values) {
                // (Spelled out: clang's -Wmissing-field-initializers rejects libseccomp's SCMP_CMP macro.)
                scmp_arg_cmp cmp[2];
                std::memset(cmp, 0, sizeof cmp);
                // The arguments compared are C ints (descriptors, levels, option names, modes,
                // pids), whose upper 32 bits in the register are not defined by the ABI: compare
                // the lower 32 only. The one pointer compared (sendto's address, to NULL) in full.
                const bool pointer = std::strcmp(name, "sendto") == 0;
                cmp[0].arg = static_cast<unsigned>(arg);
                cmp[0].op = pointer ? SCMP_CMP_EQ : SCMP_CMP_MASKED_EQ;
                cmp[0].datum_a = pointer ? v : 0xFFFFFFFFu;
                cmp[0].datum_b = pointer ? 0 : (v & 0xFFFFFFFFu);
                cmp[1].arg = static_cast<unsigned>(arg2 < 0 ? 0 : arg2);
                cmp[1].op = SCMP_CMP_MASKED_EQ;
                cmp[1].datum_a = 0xFFFFFFFFu;
                cmp[1].datum_b = value2 & 0xFFFFFFFFu;
                rc = seccomp_rule_add_array(ctx, action, nr, arg2 < 0 ? 1 : 2, cmp);
                if (rc != 0) break;
            }
        }
        if (rc != 0 && err.empty()) err = std::string("seccomp rule for ") + name + ": " + strerror(-rc);
    };
    for (const AllowedCall& c : allowed_calls(p)) add(SCMP_ACT_ALLOW, c.name, c.arg, c.values, c.arg2, c.value2);
    for (const FailedCall& c : failed_calls(p)) add(SCMP_ACT_ERRNO(static_cast<uint32_t>(c.error)), c.name, c.arg, c.values);
    if (err.empty()) {
        const int rc = seccomp_load(ctx);
        if (rc != 0) err = std::string("seccomp_load: ") + strerror(-rc);
    }
    seccomp_release(ctx);
    return err;
}

std::string enter_sandbox(const SandboxSpec& spec) {
    if (geteuid() == 0) {
        if (std::string p = jail_problem(spec.jail); !p.empty()) return p;
        if (chroot(spec.jail.c_str()) != 0) return errno_text("chroot");
        if (chdir("/") != 0) return errno_text("chdir");
        if (std::string p = become(spec.uid, spec.gid); !p.empty()) return p;
    } else if (getuid() == 0) {
        return "real uid is root but effective uid is not: refusing a half-dropped start";
    }
    if (spec.parent_death_signal && prctl(PR_SET_PDEATHSIG, spec.parent_death_signal, 0, 0, 0) != 0)
        return errno_text("PR_SET_PDEATHSIG");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return errno_text("PR_SET_DUMPABLE");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno_text("PR_SET_NO_NEW_PRIVS");
    return install_syscall_filter(spec.profile);
}

}  // namespace angel
