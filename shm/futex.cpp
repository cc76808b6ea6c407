// Linux futex on words in shared memory (no FUTEX_PRIVATE_FLAG: waiter and waker are
// different processes mapping the same segment).
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/ring_control.hpp"

namespace angel {

void futex_wait_shared(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms) {
    struct timespec ts;
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000L;
    // EINTR, EAGAIN (value changed) and ETIMEDOUT all mean: go and look again.
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_shared(std::atomic<uint32_t>* word) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

}  // namespace angel
