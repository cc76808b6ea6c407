// The sink's table of live flows: flat open addressing, made for one lookup per packet record.
//
// - Keys are flow IDs, which the meter derives with a keyed hash (SipHash): already uniform, so
//   a multiply (Fibonacci hashing, top bits) is mix enough; it also spreads sequential IDs from
//   other exporters.
// - Capacity is a power of two, doubled when the table would pass half full: linear probes stay
//   short (at most about 1.5 slots read for a hit, 2.5 for a miss).
// - Linear probing with backward-shift deletion: an erase moves the following entries of its
//   cluster back, so there are no tombstones and a flow ID can be reused right after its flow
//   ended (IDs are unique only among live flows).
// - A slot holds only what a packet record touches (ID, packets, bytes): 32 bytes, aligned, so
//   a probe reads one cache line. What the flow_start said lives in a separate dense array, read
//   at the flow's end and for the summary only; a slot refers to it by index, and that index
//   moves with the slot.
// - Bounded: at most max_size entries (flow_start records arrive from the network, so memory
//   must not follow what is sent). A full table refuses new IDs. At max_size the slot array is
//   bit_ceil(2 x max_size) slots, 64 to 128 bytes per flow, plus 64 bytes of cold part: at the
//   default 1,000,000 flows 2^21 slots, about 130 MB in all.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/ipfix.hpp"

namespace angel::sink {

// The cold part of a live flow.
struct FlowCold {
    ipfix::FlowStartFields start;
    uint64_t order = 0;  // when the ID entered the table (set by the user): summary tie order
};

class FlowTable {
public:
    struct alignas(32) Slot {
        uint32_t id;
        uint32_t cold;     // 1 + index into the cold array; 0 marks an empty slot
        uint64_t packets;
        uint64_t bytes;
    };
    static_assert(sizeof(Slot) == 32, "two slots per cache line, none straddling");

    static constexpr size_t kDefaultMaxSize = 1'000'000;
    // home() hashes into 32 bits: 2^31 entries need 2^32 slots, the most it can address.
    static constexpr size_t kMaxMaxSize = size_t(1) << 31;

    // capacity: initial slot count, rounded up to a power of two (at least 16, at most what
    // max_size needs). max_size: most entries held, clamped to 1..kMaxMaxSize.
    explicit FlowTable(size_t capacity = 1024, size_t max_size = kDefaultMaxSize);

    // The slot of ID, or nullptr. Valid until the next insert or erase.
    Slot* find(uint32_t id) {
        for (size_t i = home(id);; i = (i + 1) & mask_) {
            Slot& s = slots_[i];
            if (s.cold == 0) return nullptr;
            if (s.id == id) return &s;
        }
    }
    const Slot* find(uint32_t id) const { return const_cast<FlowTable*>(this)->find(id); }

    // The slot of ID; a new one (packets and bytes 0, cold part default) if ID was absent, then
    // *inserted is true; nullptr if ID was absent and the table holds max_size() entries.
    // May grow the table: earlier slot pointers become invalid.
    Slot* insert(uint32_t id, bool* inserted);

    // Removes the entry in slot s (from find or insert) and frees its cold part.
    void erase_slot(Slot* s);
    bool erase(uint32_t id);  // false if absent (two names: erase(0) must not mean a null slot)

    FlowCold& cold(const Slot& s) { return cold_[s.cold - 1]; }
    const FlowCold& cold(const Slot& s) const { return cold_[s.cold - 1]; }

    size_t size() const { return size_; }
    size_t capacity() const { return slots_.size(); }
    size_t max_size() const { return max_size_; }

    // fn(const Slot&, const FlowCold&) for every entry, in slot order.
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (const Slot& s : slots_)
            if (s.cold != 0) fn(s, cold_[s.cold - 1]);
    }

    // For tests: where ID's probe starts, and where a slot sits.
    size_t home(uint32_t id) const { return size_t((id * 0x9E3779B9u) >> shift_); }
    size_t index_of(const Slot* s) const { return size_t(s - slots_.data()); }
    // For tests: every entry reachable from its home without crossing an empty slot, counts and
    // cold indices consistent. Returns false on the first violation.
    bool check_invariants() const;

private:
    void grow();
    size_t place(uint32_t id) const;  // first empty slot on ID's probe path (ID absent)

    std::vector<Slot> slots_;
    size_t mask_ = 0;
    unsigned shift_ = 0;  // 32 - log2(capacity)
    size_t size_ = 0;
    size_t max_size_;
    std::vector<FlowCold> cold_;      // indexed by Slot::cold - 1
    std::vector<uint32_t> free_cold_; // cold entries of erased flows, reused first
};

}  // namespace angel::sink
