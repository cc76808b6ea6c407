#include "ctld/capture_coverage.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"
#include "ctld/runtime_files.hpp"

namespace angel {

namespace {
constexpr uint64_t kWriteEveryNs = 100'000'000ull;
}

CaptureCoverage::CaptureCoverage(const std::string& runtime_dir, const std::string& instance)
    : path_(runtime_dir + "/" + instance + ".coverage") {}

CaptureCoverage::~CaptureCoverage() {
    if (fd_ >= 0) close(fd_);
}

std::optional<uint64_t> CaptureCoverage::begin(uint64_t wall_now_ns) {
    std::string err;
    std::optional<uint64_t> left;
    if (const int fd = open_runtime_file(path_, 0600, true, &err); fd >= 0) {
        char buf[32] = {};
        const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        char* end = nullptr;
        const unsigned long long v = n > 0 ? std::strtoull(buf, &end, 10) : 0;
        if (v != 0 && v <= wall_now_ns) left = v;
        unlink(path_.c_str());  // this run writes its own
    } else if (errno != ENOENT) {
        log_warn("%s", err.c_str());
    }
    fd_ = open_runtime_file(path_, 0600, false, &err);
    if (fd_ < 0) log_warn("%s; a later unclean stop will not be reported as a capture gap", err.c_str());
    return left;
}

void CaptureCoverage::note(uint64_t covered_ns, uint64_t mono_ns) {
    if (fd_ < 0 || covered_ns <= written_ || mono_ns < last_write_mono_ + kWriteEveryNs) return;
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%020llu\n", static_cast<unsigned long long>(covered_ns));
    // Fixed width: each write replaces the whole content in place.
    if (pwrite(fd_, buf, size_t(n), 0) == n) written_ = covered_ns;
    last_write_mono_ = mono_ns;
}

void CaptureCoverage::finish() {
    if (fd_ < 0) return;
    close(fd_);
    fd_ = -1;
    unlink(path_.c_str());
}

}  // namespace angel
