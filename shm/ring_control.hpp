// The control block shared by producer and consumer of one ring, and the futex-based
// idle wait. Lives inside the segment; positions are monotonically increasing 64-bit
// counters (slots or bytes), so they survive either side restarting: a restarted side
// simply resumes from the shared value.
#pragma once
#include <atomic>
#include <cstdint>

namespace angel {

inline constexpr size_t kCacheLine = 64;

struct RingControl {
    // Producer side: published write position; its futex word wakes a sleeping consumer.
    alignas(kCacheLine) std::atomic<uint64_t> head{0};
    std::atomic<uint32_t> data_seq{0};        // futex word: bumped when data is published
    std::atomic<uint32_t> consumer_sleeping{0};
    std::atomic<uint64_t> dropped{0};         // entries the producer could not queue (live mode)
    std::atomic<uint64_t> produced{0};        // entries published, for counters

    // Consumer side: committed read position; its futex word wakes a producer waiting for room.
    alignas(kCacheLine) std::atomic<uint64_t> tail{0};
    std::atomic<uint32_t> space_seq{0};       // futex word: bumped when space is released
    std::atomic<uint32_t> producer_sleeping{0};
    std::atomic<uint64_t> consumed{0};

    alignas(kCacheLine) uint64_t capacity = 0;  // slots or bytes, a power of two
    uint64_t reserved_[7]{};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(RingControl) == 3 * kCacheLine);

// Futex helpers (shared, not private: the words live in a MAP_SHARED segment).
// Returns after a wake, a timeout, or when *word != expected.
void futex_wait_shared(std::atomic<uint32_t>* word, uint32_t expected, int timeout_ms);
void futex_wake_shared(std::atomic<uint32_t>* word);

// Dekker-style handshake: the sleeper announces itself, re-checks, then sleeps; the waker
// publishes, then looks for a sleeper. Both sides use seq_cst so neither misses the other.
// The waker takes the flag down: one FUTEX_WAKE per sleep. Left up, every publish made while
// the sleeper is still waking up (tens of microseconds) paid a syscall (bench/ring counted
// one per batch: 195k wakes for 22k sleeps). Taking the flag down cannot lose a wake: the
// sleeper raises it again before each sleep, and reads its futex value before raising it,
// so the seq bump below always makes that futex_wait return.
inline void wake_if_sleeping(std::atomic<uint32_t>& sleeping, std::atomic<uint32_t>& seq) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_relaxed) != 0 &&
        sleeping.exchange(0, std::memory_order_relaxed) != 0) {
        seq.fetch_add(1, std::memory_order_release);
        futex_wake_shared(&seq);
    }
}

// Polls before sleeping. When traffic flows, the other side is usually only between two
// batches: a futex round trip costs a syscall on each side and 5-10 us of wake latency, and
// a consumer faster than its producer would otherwise sleep after nearly every batch
// (bench/ring measures it). Bounded to a few microseconds, so an idle stage costs no CPU.
inline constexpr int kSpinBeforeSleep = 128;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Sleeps until ready() holds or timeout_ms passes. ready() re-reads the shared position.
template <class Ready>
bool sleep_until(std::atomic<uint32_t>& sleeping, std::atomic<uint32_t>& seq, int timeout_ms,
                 Ready ready) {
    for (int i = 0; i < kSpinBeforeSleep; ++i) {
        if (ready()) return true;
        cpu_relax();
    }
    uint32_t s = seq.load(std::memory_order_acquire);
    sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (ready()) {
        sleeping.store(0, std::memory_order_relaxed);
        return true;
    }
    futex_wait_shared(&seq, s, timeout_ms);
    sleeping.store(0, std::memory_order_relaxed);
    return ready();
}

}  // namespace angel
