#include "capd/mapped_file.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace angel {

namespace {
// What the SIGBUS handler needs, set before it is installed (lock-free atomics and a fixed
// buffer: only async-signal-safe work happens in the handler).
std::atomic<uintptr_t> watched_begin{0}, watched_end{0};
char bus_message[512];

void on_bus_error(int sig, siginfo_t* info, void*) {
    const auto at = reinterpret_cast<uintptr_t>(info->si_addr);
    const uintptr_t begin = watched_begin.load(), end = watched_end.load();
    if (begin != 0 && at >= begin && at < end) {
        const ssize_t n = write(STDERR_FILENO, bus_message, strlen(bus_message));
        (void)n;
        _exit(EX_IOERR);
    }
    signal(sig, SIG_DFL);  // not ours: die of it as before
    raise(sig);
}
}  // namespace

bool MappedFile::map(int fd) {
    struct stat st{};
    if (data_ || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) return false;
    if (static_cast<uint64_t>(st.st_size) > SIZE_MAX) return false;
    const size_t size = static_cast<size_t>(st.st_size);
    // MAP_PRIVATE + PROT_READ: nothing can write through the view, and the page cache is shared.
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return false;
    // Sequential: larger read-ahead, and pages already passed may be reclaimed early.
    madvise(p, size, MADV_SEQUENTIAL);
    data_ = static_cast<const uint8_t*>(p);
    size_ = size;
    return true;
}

MappedFile::~MappedFile() {
    if (data_) {
        watched_begin.store(0);  // the range no longer means this file
        munmap(const_cast<uint8_t*>(data_), size_);
    }
}

void MappedFile::exit_cleanly_if_truncated(const char* name) const {
    if (!data_) return;
    std::snprintf(bus_message, sizeof bus_message,
                  "angel-capd: the replay file %s became shorter while being read; exiting\n", name);
    watched_end.store(reinterpret_cast<uintptr_t>(data_) + size_);
    watched_begin.store(reinterpret_cast<uintptr_t>(data_));
    struct sigaction sa{};
    sa.sa_sigaction = on_bus_error;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace angel
