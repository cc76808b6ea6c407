// The FlowMap: every live flow of the instance, in shared memory, written by procd only.
// Fixed capacity (flow.max_flows) allocated at segment creation: bounded memory, no
// allocation per packet. Three intrusive indexes over one entry array:
//   - key hash chains   (find the flow of a packet),
//   - flow-ID chains    (keep IDs unique among live flows),
//   - an LRU list by last activity (idle expiry walks it from the oldest end; eviction
//     when full takes the oldest).
// The indexes are rebuilt from the entries by recover() when procd (re)attaches, so a
// procd killed in the middle of an update leaves nothing that a restart cannot repair.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "common/flow_key.hpp"

namespace angel {

inline constexpr uint32_t kNoEntry = 0xFFFFFFFFu;

// Bits of FlowEntry::flags.
inline constexpr uint8_t kFlowFinForward = 0x01;   // FIN seen in the first packet's direction
inline constexpr uint8_t kFlowFinReverse = 0x02;   // FIN seen the other way
inline constexpr uint8_t kFlowRst = 0x04;          // RST seen
inline constexpr uint8_t kFlowRecordModeShift = 4;  // bits 4-5: FlowRecordMode
inline constexpr uint8_t kFlowRecordModeMask = 0x30;

// 120 bytes, the fields one packet touches first. Only what cannot be derived is stored: the
// bucket hash of the key is computed again where it is needed (FlowMap's hasher), the LRU's move
// time is the granularity period of last_ns (FlowMap::touch), and what a successor needs to
// repeat a batch exactly after a crash is not kept per flow at all: the map's header keeps the
// ring position up to which procd counted packets (FlowMapHeader::counted_end), and the successor
// works out from the counters which flow each repeated packet belonged to and its index
// (procd/flow_tracker.hpp, FlowTracker::plan_repeat).
struct FlowEntry {
    FlowKey key;                 // canonical key
    uint32_t next_by_key;        // hash chain links (indexes into the entry array); free list
    uint32_t flow_id;
    uint8_t in_use;              // written last on insert, first on erase
    // 0, or the EndReason of a flow whose flow_end is emitted and whose entry is not yet
    // released (see FlowMap::retire()).
    uint8_t ending;
    uint8_t first_reversed;      // the first packet travelled hi -> lo
    uint8_t flags;               // kFlow* bits; the record mode in bits 4-5
    uint32_t next_by_id;         // flow-ID chain link
    uint64_t last_ns;
    uint64_t packets[2];         // [0] forward = first packet's direction
    uint64_t bytes[2];
    uint64_t first_ns;
    uint64_t close_ns;           // when FIN-both-ways/RST completed (0: not closing)
    uint32_t lru_prev;           // towards more recent
    uint32_t lru_next;           // towards older; the retired list after recover()

    uint64_t counted() const { return packets[0] + packets[1]; }
    uint8_t tcp_fin_mask() const { return flags & (kFlowFinForward | kFlowFinReverse); }
    bool tcp_rst() const { return flags & kFlowRst; }
    // FlowRecordMode: procd sets it from ControlBlock::flow_control (muted, or exempt from
    // export.packet_records_per_flow); 0 at insert, so a new flow reusing an ID starts plain.
    uint8_t record_mode() const { return static_cast<uint8_t>((flags & kFlowRecordModeMask) >> kFlowRecordModeShift); }
    void set_record_mode(uint8_t m) {
        flags = static_cast<uint8_t>((flags & ~kFlowRecordModeMask) | ((m << kFlowRecordModeShift) & kFlowRecordModeMask));
    }
};
static_assert(sizeof(FlowEntry) == 120);

struct FlowMapHeader {
    uint64_t magic;
    uint32_t capacity;           // entries
    uint32_t bucket_count;       // power of two, the key index's; the flow-ID index has half
    std::atomic<uint32_t> live{0};
    uint32_t free_head;          // free list through next_by_key
    uint32_t lru_newest;
    uint32_t lru_oldest;
    uint32_t retired;            // entries retired and not yet released, found by recover()
    uint32_t retired_head;       // the first of them; the others follow through lru_next
    // Entries at or above this index have never been used: they count as free without being
    // on the free list, so creating a large map and attaching to it cost nothing per entry.
    std::atomic<uint32_t> high_water{0};
    std::atomic<uint64_t> generation{0};  // bumped on every insert/erase (for readers)
    // Ring position past the last packet procd counted into a flow (set after the packet's
    // counters, procd only): what lies between the packet ring's committed position and this
    // was counted by a procd that was killed before committing it, and is repeated by the next
    // one without counting it again (procd/flow_tracker.hpp).
    std::atomic<uint64_t> counted_end{0};
    // Entries below this index have memory behind them (posix_fallocate on the segment): the
    // segment reserves a first part, procd reserves more ahead of high_water as flows arrive
    // (Segment::grow_flow_map), so /dev/shm holds what the traffic uses, not max_flows, and
    // an entry is never touched without backing (no SIGBUS when /dev/shm fills up).
    std::atomic<uint32_t> reserved{0};
};

// The bucket hash of a key (flow_bucket_hash with the instance's key in procd): the map keeps
// no hash per entry, so it computes the hash again where it needs one (recover(), and taking
// a flow out of its chain). Whoever inserts must pass this hasher's value for the key.
struct FlowKeyHasher {
    uint32_t (*fn)(const FlowKey&, const FlowIdKey&) = &flow_bucket_hash;
    FlowIdKey key{};
    uint32_t operator()(const FlowKey& k) const { return fn(k, key); }
};

class FlowMap {
public:
    static size_t bytes_for(uint32_t capacity);
    // Byte offsets inside the map's memory of entry i, and of what follows the entries; the
    // segment reserves memory by these (everything but the entries up front).
    static size_t entry_offset(uint32_t capacity, uint32_t i);
    static size_t entries_end(uint32_t capacity) { return entry_offset(capacity, capacity); }
    // Lays out an empty map in mem (bytes_for(capacity) bytes) whose first `reserved` entries
    // have memory behind them (all of them by default: ordinary memory).
    static void format(void* mem, uint32_t capacity, uint32_t reserved = UINT32_MAX);
    // Whether h is the header format() lays out for this capacity (magic, capacity, bucket
    // count), and its counts within it: ctld's check of a map a dead run left (it reads a
    // copy; nothing here follows the header's values).
    static bool header_fits(const FlowMapHeader& h, uint32_t capacity);

    FlowMap() = default;
    explicit FlowMap(void* mem, FlowKeyHasher hasher = {});
    void set_hasher(FlowKeyHasher h) { hasher_ = h; }

    // Rebuilds the free list, both hash indexes and the LRU order from the entries, with the
    // hasher every later insert will use (it is kept: taking a flow out of its chain needs it).
    // Called by procd on attach; O(capacity).
    void recover(FlowKeyHasher hasher);

    FlowEntry* find(const FlowKey& k, uint32_t key_hash);
    // Cache hints for find(), issued a few packets ahead so that the two dependent memory
    // misses of a lookup (bucket head, then entry) overlap with other packets' work: step 1
    // fetches the bucket, step 2 (once the bucket is likely cached) the first entry of its
    // chain. They change nothing and may be skipped.
    void prefetch_bucket(uint32_t key_hash) const {
        __builtin_prefetch(&key_buckets_[key_hash & bucket_mask_]);
    }
    void prefetch_entry(uint32_t key_hash) const {
        const uint32_t i = key_buckets_[key_hash & bucket_mask_];
        if (i != kNoEntry) __builtin_prefetch(&entries_[i]);
    }
    // Inserts a new flow; the ID is wanted_id, or the next free one of the probe sequence
    // wanted_id+1, +2, ... (mod 2^32). Returns nullptr when full (caller evicts first): no
    // free entry below the capacity and the reserved part.
    // reversed describes the creating packet; every field is set before the entry becomes
    // visible (in_use), so a reader or a successor never sees a half-made flow. key_hash must
    // be the hasher's value for k.
    FlowEntry* insert(const FlowKey& k, uint32_t key_hash, uint32_t wanted_id, uint64_t ts_ns,
                      bool reversed = false);
    void erase(FlowEntry* e);
    // Two-step end, so that a procd killed mid-batch can repeat the batch exactly:
    // retire() takes the flow out of key lookup and the LRU but keeps its ID reserved, with
    // the reason (an EndReason, nonzero) in e->ending; release() frees it once the flow_end
    // record is published. recover() keeps retired entries retired and lists them:
    // first_retired(), then next_retired() of each (valid until the first release()).
    void retire(FlowEntry* e, uint8_t reason);
    void release(FlowEntry* e);
    uint32_t retired_count() const;
    FlowEntry* first_retired();
    FlowEntry* next_retired(const FlowEntry* e);
    // The flow was active at ts_ns: last_ns becomes the later of the two, and the flow moves
    // to the newest end of the LRU when ts_ns lies in a later kLruGranularityNs period than
    // last_ns did. To spare a relink (three random memory accesses) on every packet, a flow
    // moves at most once a period: the list is ordered by the time of those moves, and
    // last_ns lies in the same period as its flow's move, so idle expiry and eviction are
    // exact to within a period (134 ms). Nothing else is stored for it (recover() orders by
    // last_ns). A power of two, so that finding the period costs no division per packet.
    void touch(FlowEntry* e, uint64_t ts_ns);
    static constexpr uint64_t kLruGranularityNs = uint64_t{1} << 27;
    FlowEntry* oldest();
    FlowEntry* newer(FlowEntry* e);  // next towards the most recent, nullptr at the end
    bool id_in_use(uint32_t id) const;
    // The live (not retired) flow with this ID, or nullptr.
    FlowEntry* find_id(uint32_t id);

    uint32_t live() const { return hdr_->live.load(std::memory_order_relaxed); }
    uint32_t capacity() const { return hdr_->capacity; }
    // No entry left for insert(): retired flows hold theirs until released.
    bool full() const { return hdr_->free_head == kNoEntry && hdr_->high_water.load(std::memory_order_relaxed) >= usable(); }
    uint32_t reserved() const { return hdr_->reserved.load(std::memory_order_acquire); }
    // After more entries got memory behind them (never lowers it).
    void set_reserved(uint32_t n) {
        if (n > reserved()) hdr_->reserved.store(std::min(n, hdr_->capacity), std::memory_order_release);
    }
    // For readers (angelctl flows): entry i, whether in use or not; only entries below
    // high_water() have ever held a flow.
    const FlowEntry& entry(uint32_t i) const { return entries_[i]; }
    uint32_t high_water() const { return hdr_->high_water.load(std::memory_order_acquire); }
    uint64_t generation() const { return hdr_->generation.load(std::memory_order_acquire); }
    // FlowMapHeader::counted_end (procd only).
    uint64_t counted_end() const { return hdr_->counted_end.load(std::memory_order_relaxed); }
    void set_counted_end(uint64_t pos) { hdr_->counted_end.store(pos, std::memory_order_relaxed); }

private:
    uint32_t usable() const { return std::min(hdr_->capacity, hdr_->reserved.load(std::memory_order_relaxed)); }
    uint32_t index_of(const FlowEntry* e) const { return static_cast<uint32_t>(e - entries_); }
    void lru_unlink(uint32_t i);
    void lru_push_newest(uint32_t i);
    void unlink_key(uint32_t i);
    void unlink_id(uint32_t i);
    void link(uint32_t i, uint32_t key_hash);

    FlowMapHeader* hdr_ = nullptr;
    uint32_t* key_buckets_ = nullptr;
    uint32_t* id_buckets_ = nullptr;
    FlowEntry* entries_ = nullptr;
    uint32_t bucket_mask_ = 0;     // key index
    uint32_t id_bucket_mask_ = 0;  // flow-ID index (half the buckets: one lookup per new flow)
    FlowKeyHasher hasher_;
};

}  // namespace angel
