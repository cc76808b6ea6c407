// Single-producer single-consumer ring of variable-length captured packets (capd -> procd).
// Each entry is a PacketSlot header followed by caplen bytes, rounded up to 16 bytes.
// An entry never wraps: when it does not fit before the end of the buffer, the producer
// writes a wrap marker there and continues at the start. Same batching and restart rules
// as RecordRing: private cursors, batched publish/commit, 64-bit positions in shared memory.
#pragma once
#include <cstdint>
#include <cstring>

#include "shm/records.hpp"
#include "shm/ring_control.hpp"

namespace angel {

class PacketRing {
public:
    static constexpr uint16_t kWrapMarker = 0xFFFF;
    static constexpr uint64_t kAlign = 16;

    PacketRing() = default;
    // capacity (bytes): from the layout, never re-read from the shared block (see RecordRing).
    PacketRing(RingControl* ctl, uint8_t* buf) : PacketRing(ctl, buf, ctl->capacity) {}
    PacketRing(RingControl* ctl, uint8_t* buf, uint64_t capacity) : ctl_(ctl), buf_(buf), mask_(capacity - 1) {
        write_ = ctl_->head.load(std::memory_order_acquire);
        read_ = ctl_->tail.load(std::memory_order_acquire);
        cached_tail_ = read_;
        cached_head_ = write_;
    }
    static uint64_t entry_size(uint32_t caplen) {
        return (sizeof(PacketSlot) + caplen + kAlign - 1) & ~(kAlign - 1);
    }
    uint64_t capacity() const { return mask_ + 1; }

    // ---- producer ----
    // Copies one packet in; false when the ring has no room (caller drops or waits).
    bool push(const PacketSlot& hdr, const uint8_t* data) {
        uint64_t need = entry_size(hdr.caplen);
        uint64_t idx = write_ & mask_;
        uint64_t to_end = mask_ + 1 - idx;
        uint64_t total = need <= to_end ? need : to_end + need;  // wrap costs the tail space
        if (!has_room(total)) return false;
        if (need > to_end) {
            PacketSlot marker{};
            marker.linktype = kWrapMarker;
            std::memcpy(buf_ + idx, &marker, sizeof marker);
            write_ += to_end;
            idx = 0;
        }
        std::memcpy(buf_ + idx, &hdr, sizeof hdr);
        // A header-only entry may come with data == nullptr: memcpy from null is undefined
        // even for 0 bytes.
        if (hdr.caplen != 0 && data != nullptr) std::memcpy(buf_ + idx + sizeof hdr, data, hdr.caplen);
        write_ += need;
        ++pending_;
        return true;
    }
    void publish() {
        if (pending_ == 0) return;
        ctl_->head.store(write_, std::memory_order_release);
        ctl_->produced.fetch_add(pending_, std::memory_order_relaxed);
        pending_ = 0;
        wake_if_sleeping(ctl_->consumer_sleeping, ctl_->data_seq);
    }
    bool wait_for_space(uint32_t caplen, int timeout_ms) {
        publish();
        uint64_t need = 2 * entry_size(caplen);  // worst case: a wrap before it
        return sleep_until(ctl_->producer_sleeping, ctl_->space_seq, timeout_ms,
                           [&] { return has_room(need); });
    }
    void count_drop(uint64_t n = 1) { ctl_->dropped.fetch_add(n, std::memory_order_relaxed); }

    // ---- consumer ----
    // The next packet, or nullptr when none is published. Valid until commit().
    // *pos (optional) receives the packet's ring position: unique and stable across restarts.
    const PacketSlot* next(const uint8_t** data, uint64_t* pos = nullptr) {
        for (;;) {
            if (cached_head_ == read_) {
                cached_head_ = ctl_->head.load(std::memory_order_acquire);
                if (cached_head_ == read_) return nullptr;
            }
            uint64_t idx = read_ & mask_;
            auto* hdr = reinterpret_cast<const PacketSlot*>(buf_ + idx);
            if (hdr->linktype == kWrapMarker) {
                read_ += mask_ + 1 - idx;
                continue;
            }
            *data = buf_ + idx + sizeof(PacketSlot);
            if (pos) *pos = read_;
            read_ += entry_size(hdr->caplen);
            ++taken_;
            return hdr;
        }
    }
    // Capture time of the next unread packet without taking it; false when none is published.
    bool peek_ts(uint64_t* ts) {
        for (;;) {
            if (cached_head_ == read_) {
                cached_head_ = ctl_->head.load(std::memory_order_acquire);
                if (cached_head_ == read_) return false;
            }
            uint64_t idx = read_ & mask_;
            auto* hdr = reinterpret_cast<const PacketSlot*>(buf_ + idx);
            if (hdr->linktype == kWrapMarker) {
                read_ += mask_ + 1 - idx;  // skipping a marker consumes nothing
                continue;
            }
            *ts = hdr->ts_ns;
            return true;
        }
    }
    // Producer side: where the next publish will move the head (capd's replay bookkeeping).
    uint64_t write_pos() const { return write_; }
    uint64_t pending() const { return pending_; }
    void commit() {
        if (ctl_->tail.load(std::memory_order_relaxed) == read_) return;
        ctl_->tail.store(read_, std::memory_order_release);
        ctl_->consumed.fetch_add(taken_, std::memory_order_relaxed);
        taken_ = 0;
        wake_if_sleeping(ctl_->producer_sleeping, ctl_->space_seq);
    }
    bool wait_for_data(int timeout_ms) {
        return sleep_until(ctl_->consumer_sleeping, ctl_->data_seq, timeout_ms, [&] {
            cached_head_ = ctl_->head.load(std::memory_order_acquire);
            return cached_head_ != read_;
        });
    }
    // The shared positions: the producer's published head, the consumer's committed tail.
    uint64_t head_pos() const { return ctl_->head.load(std::memory_order_acquire); }
    uint64_t tail_pos() const { return ctl_->tail.load(std::memory_order_acquire); }
    uint64_t fill_bytes() const {
        return ctl_->head.load(std::memory_order_relaxed) - ctl_->tail.load(std::memory_order_relaxed);
    }
    RingControl* control() const { return ctl_; }

private:
    bool has_room(uint64_t total) {
        if (write_ + total - cached_tail_ <= mask_ + 1) return true;
        cached_tail_ = ctl_->tail.load(std::memory_order_acquire);
        return write_ + total - cached_tail_ <= mask_ + 1;
    }

    RingControl* ctl_ = nullptr;
    uint8_t* buf_ = nullptr;
    uint64_t mask_ = 0;
    uint64_t write_ = 0, cached_tail_ = 0, pending_ = 0;  // producer-private
    uint64_t read_ = 0, cached_head_ = 0, taken_ = 0;     // consumer-private
};

}  // namespace angel
