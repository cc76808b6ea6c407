// Single-producer single-consumer ring of fixed-size records in shared memory
// (procd -> netd record ring, procd -> ctld event ring). Lock-free: the only shared state
// is the two positions in RingControl. Each side keeps a private cursor and publishes in
// batches; the consumer commits after it has finished with a batch, so a consumer that dies
// mid-batch sees that batch again after restart (at most one batch delivered twice).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "shm/ring_control.hpp"

namespace angel {

template <class T>
class RecordRing {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    RecordRing() = default;
    // capacity: the slot count the caller knows from the layout, never re-read from the
    // shared control block (which the other side could change). The two-argument form takes
    // the block's own value, for rings that one process made for itself (tests, bench).
    RecordRing(RingControl* ctl, T* slots) : RecordRing(ctl, slots, ctl->capacity) {}
    RecordRing(RingControl* ctl, T* slots, uint64_t capacity) : ctl_(ctl), slots_(slots), mask_(capacity - 1) {
        write_ = ctl_->head.load(std::memory_order_acquire);
        read_ = ctl_->tail.load(std::memory_order_acquire);
        cached_tail_ = read_;
        cached_head_ = write_;
    }

    static size_t bytes_for(uint64_t slots) { return slots * sizeof(T); }
    uint64_t capacity() const { return mask_ + 1; }

    // ---- producer ----
    // A slot to fill, or nullptr when the ring is full. Not visible until publish().
    T* claim() {
        if (write_ - cached_tail_ > mask_) {
            cached_tail_ = ctl_->tail.load(std::memory_order_acquire);
            if (write_ - cached_tail_ > mask_) return nullptr;
        }
        return &slots_[write_ & mask_];
    }
    void commit_claimed() { ++write_; }
    bool push(const T& v) {
        T* s = claim();
        if (!s) return false;
        *s = v;
        ++write_;
        return true;
    }
    // Makes everything pushed so far visible, and wakes a sleeping consumer.
    void publish() {
        uint64_t old = ctl_->head.load(std::memory_order_relaxed);
        if (old == write_) return;
        ctl_->head.store(write_, std::memory_order_release);
        ctl_->produced.fetch_add(write_ - old, std::memory_order_relaxed);
        wake_if_sleeping(ctl_->consumer_sleeping, ctl_->data_seq);
    }
    uint64_t unpublished() const { return write_ - ctl_->head.load(std::memory_order_relaxed); }
    // Blocks (futex) until a slot is free or timeout_ms passes; true when there is room.
    bool wait_for_space(int timeout_ms) {
        publish();
        return sleep_until(ctl_->producer_sleeping, ctl_->space_seq, timeout_ms, [&] {
            cached_tail_ = ctl_->tail.load(std::memory_order_acquire);
            return write_ - cached_tail_ <= mask_;
        });
    }
    void count_drop(uint64_t n = 1) { ctl_->dropped.fetch_add(n, std::memory_order_relaxed); }

    // ---- consumer ----
    // Up to max records readable contiguously from the private cursor; *out points at them.
    size_t peek(const T** out, size_t max) {
        if (cached_head_ == read_) {
            cached_head_ = ctl_->head.load(std::memory_order_acquire);
            if (cached_head_ == read_) return 0;
        }
        uint64_t avail = cached_head_ - read_;
        uint64_t idx = read_ & mask_;
        uint64_t contiguous = std::min<uint64_t>(avail, mask_ + 1 - idx);
        *out = &slots_[idx];
        return static_cast<size_t>(std::min<uint64_t>(contiguous, max));
    }
    void advance(size_t n) { read_ += n; }
    // Releases everything advanced over: the producer may now overwrite it.
    void commit() {
        uint64_t old = ctl_->tail.load(std::memory_order_relaxed);
        if (old == read_) return;
        ctl_->tail.store(read_, std::memory_order_release);
        ctl_->consumed.fetch_add(read_ - old, std::memory_order_relaxed);
        wake_if_sleeping(ctl_->producer_sleeping, ctl_->space_seq);
    }
    // Sleeps until data is published or timeout_ms passes; true when data is there.
    bool wait_for_data(int timeout_ms) {
        return sleep_until(ctl_->consumer_sleeping, ctl_->data_seq, timeout_ms, [&] {
            cached_head_ = ctl_->head.load(std::memory_order_acquire);
            return cached_head_ != read_;
        });
    }
    // Consumer cursor, and a commit of only part of what was advanced over (netd releases
    // records only once the IPFIX message that carries them has been sent).
    uint64_t read_pos() const { return read_; }
    void commit_to(uint64_t pos) {
        uint64_t old = ctl_->tail.load(std::memory_order_relaxed);
        if (pos <= old || pos > read_) return;
        ctl_->tail.store(pos, std::memory_order_release);
        ctl_->consumed.fetch_add(pos - old, std::memory_order_relaxed);
        wake_if_sleeping(ctl_->producer_sleeping, ctl_->space_seq);
    }
    // The record at ring position pos, which the consumer has not released yet
    // (tail <= pos < head): netd's replay window reads back what it kept.
    const T& at(uint64_t pos) const { return slots_[pos & mask_]; }
    // Moves the consumer cursor back to pos (>= what it has committed): the records from pos on
    // are read again (netd replays its window on becoming master).
    void rewind_to(uint64_t pos) {
        if (pos >= ctl_->tail.load(std::memory_order_relaxed) && pos <= read_) read_ = pos;
    }
    uint64_t fill() const {
        return ctl_->head.load(std::memory_order_relaxed) - ctl_->tail.load(std::memory_order_relaxed);
    }
    RingControl* control() const { return ctl_; }

private:
    RingControl* ctl_ = nullptr;
    T* slots_ = nullptr;
    uint64_t mask_ = 0;
    uint64_t write_ = 0, cached_tail_ = 0;  // producer-private
    uint64_t read_ = 0, cached_head_ = 0;   // consumer-private
};

}  // namespace angel
