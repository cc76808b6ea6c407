// The system calls each stage may make once sandboxed: one table per profile, side by side
// in syscall_allow_lists.cpp, so that a reviewer sees every stage's reach in one place.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "common/sandbox/sandbox.hpp"

namespace angel {

// A call allowed outright, or allowed only when argument `arg` equals one of `values`.
struct AllowedCall {
    AllowedCall(const char* n, int a = -1, std::vector<uint64_t> v = {}, int a2 = -1, uint64_t v2 = 0)
        : name(n), arg(a), values(std::move(v)), arg2(a2), value2(v2) {}
    const char* name;
    int arg;                       // -1: any arguments
    std::vector<uint64_t> values;  // with arg >= 0: the values allowed for it
    int arg2;                      // -1: none; else this argument must also equal value2
    uint64_t value2;
};
// A call that fails with an errno instead of killing the stage: what libc does on its own
// (glibc's syslog() reconnecting after syslogd restarted, a time-zone file lookup) and
// handles when it fails, which inside the empty jail it would anyway.
struct FailedCall {
    FailedCall(const char* n, int e, int a = -1, std::vector<uint64_t> v = {})
        : name(n), error(e), arg(a), values(std::move(v)) {}
    const char* name;
    int error;
    int arg;                       // -1: whatever the arguments
    std::vector<uint64_t> values;  // with arg >= 0: only for these values
};

std::vector<AllowedCall> allowed_calls(SandboxProfile p);
std::vector<FailedCall> failed_calls(SandboxProfile p);

}  // namespace angel
