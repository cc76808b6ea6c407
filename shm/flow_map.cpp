// FlowMap implementation: see flow_map.hpp for the structure and the crash-recovery rule.
#include "shm/flow_map.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

namespace angel {

namespace {
constexpr uint64_t kFlowMapMagic = 0x50414d574f4c4641ull;  // "AFLOWMAP"

uint32_t buckets_for(uint32_t capacity) {
    uint32_t b = 1;
    while (b < capacity && b < (1u << 31)) b <<= 1;
    return b;
}
size_t align64(size_t n) { return (n + 63) & ~size_t{63}; }
// The ID index hashes the ID itself; mixing keeps sequential probe IDs in different buckets.
uint32_t id_bucket(uint32_t id, uint32_t mask) { return (id * 0x9E3779B1u) >> 7 & mask; }
// The flow-ID index is looked up once per new flow (the probe for a free ID) and once per
// released one, never per packet: half the key index's buckets, two entries a chain at the
// full map, is 2 bytes a flow less for one more entry read per new flow.
uint32_t id_buckets_for(uint32_t key_buckets) { return key_buckets > 1 ? key_buckets / 2 : 1; }
size_t index_bytes(uint32_t capacity) {
    const uint32_t b = buckets_for(capacity);
    return align64(b * sizeof(uint32_t)) + align64(id_buckets_for(b) * sizeof(uint32_t));
}
}  // namespace

size_t FlowMap::bytes_for(uint32_t capacity) {
    // Header, the two bucket arrays, the entries: nothing else (the free and retired lists
    // run through the entries).
    return align64(sizeof(FlowMapHeader)) + index_bytes(capacity) + align64(size_t{capacity} * sizeof(FlowEntry));
}

bool FlowMap::header_fits(const FlowMapHeader& h, uint32_t capacity) {
    return h.magic == kFlowMapMagic && h.capacity == capacity && h.bucket_count == buckets_for(capacity) &&
           h.live.load(std::memory_order_relaxed) <= capacity && h.high_water.load(std::memory_order_relaxed) <= capacity &&
           h.reserved.load(std::memory_order_relaxed) <= capacity && h.retired <= capacity;
}

size_t FlowMap::entry_offset(uint32_t capacity, uint32_t i) {
    return align64(sizeof(FlowMapHeader)) + index_bytes(capacity) + size_t{i} * sizeof(FlowEntry);
}

void FlowMap::format(void* mem, uint32_t capacity, uint32_t reserved) {
    auto* h = new (mem) FlowMapHeader{};
    h->magic = kFlowMapMagic;
    h->capacity = capacity;
    h->bucket_count = buckets_for(capacity);
    h->high_water.store(0, std::memory_order_relaxed);
    h->reserved.store(std::min(reserved, capacity), std::memory_order_relaxed);
    FlowMap m(mem);
    m.recover({});  // no entries yet (never read above high_water): no key is hashed
}

FlowMap::FlowMap(void* mem, FlowKeyHasher hasher) : hasher_(hasher) {
    auto* base = static_cast<uint8_t*>(mem);
    hdr_ = reinterpret_cast<FlowMapHeader*>(base);
    const uint32_t id_count = id_buckets_for(hdr_->bucket_count);
    size_t off = align64(sizeof(FlowMapHeader));
    key_buckets_ = reinterpret_cast<uint32_t*>(base + off);
    off += align64(hdr_->bucket_count * sizeof(uint32_t));
    id_buckets_ = reinterpret_cast<uint32_t*>(base + off);
    off += align64(id_count * sizeof(uint32_t));
    entries_ = reinterpret_cast<FlowEntry*>(base + off);
    bucket_mask_ = hdr_->bucket_count - 1;
    id_bucket_mask_ = id_count - 1;
}

void FlowMap::recover(FlowKeyHasher hasher) {
    hasher_ = hasher;
    std::fill_n(key_buckets_, hdr_->bucket_count, kNoEntry);
    std::fill_n(id_buckets_, id_bucket_mask_ + 1, kNoEntry);
    hdr_->free_head = kNoEntry;
    hdr_->lru_newest = hdr_->lru_oldest = kNoEntry;
    std::vector<uint32_t> live;  // once per attach, not per packet
    uint32_t retired = 0, retired_tail = kNoEntry;
    hdr_->retired_head = kNoEntry;
    const uint32_t hw = std::min(hdr_->high_water.load(std::memory_order_relaxed), hdr_->capacity);
    for (uint32_t i = hw; i-- > 0;) {
        FlowEntry& e = entries_[i];
        if (e.in_use && e.ending && !id_in_use(e.flow_id)) {
            // Retired: ID stays reserved until procd has (re)published its flow_end.
            uint32_t ib = id_bucket(e.flow_id, id_bucket_mask_);
            e.next_by_id = id_buckets_[ib];
            id_buckets_[ib] = i;
            // Listed through lru_next (a retired flow is in no LRU), highest index first.
            e.lru_prev = e.lru_next = kNoEntry;
            if (retired_tail == kNoEntry) hdr_->retired_head = i;
            else entries_[retired_tail].lru_next = i;
            retired_tail = i;
            ++retired;
        } else if (const uint32_t h = e.in_use && !e.ending ? hasher_(e.key) : 0;
                   e.in_use && !e.ending && !id_in_use(e.flow_id) && !find(e.key, h)) {
            link(i, h);
            live.push_back(i);
        } else {
            e.in_use = 0;
            e.next_by_key = hdr_->free_head;
            hdr_->free_head = i;
        }
    }
    // Rebuild the LRU in order of last activity, oldest pushed first (the order of the
    // periods touch() moves flows in, and within one period by time).
    std::sort(live.begin(), live.end(),
              [&](uint32_t a, uint32_t b) { return entries_[a].last_ns < entries_[b].last_ns; });
    for (uint32_t i : live) lru_push_newest(i);
    hdr_->live.store(static_cast<uint32_t>(live.size()), std::memory_order_relaxed);
    hdr_->retired = retired;
    hdr_->generation.fetch_add(1, std::memory_order_release);
}

uint32_t FlowMap::retired_count() const { return hdr_->retired; }
FlowEntry* FlowMap::first_retired() {
    return hdr_->retired_head == kNoEntry ? nullptr : &entries_[hdr_->retired_head];
}
FlowEntry* FlowMap::next_retired(const FlowEntry* e) {
    return e->lru_next == kNoEntry ? nullptr : &entries_[e->lru_next];
}

void FlowMap::retire(FlowEntry* e, uint8_t reason) {
    uint32_t i = index_of(e);
    e->ending = reason != 0 ? reason : 1;  // nonzero: ending
    std::atomic_thread_fence(std::memory_order_release);
    unlink_key(i);
    lru_unlink(i);
    hdr_->live.fetch_sub(1, std::memory_order_relaxed);
    hdr_->generation.fetch_add(1, std::memory_order_release);
}

void FlowMap::release(FlowEntry* e) {
    uint32_t i = index_of(e);
    e->in_use = 0;
    e->ending = 0;
    std::atomic_thread_fence(std::memory_order_release);
    unlink_id(i);
    e->next_by_key = hdr_->free_head;
    hdr_->free_head = i;
    hdr_->generation.fetch_add(1, std::memory_order_release);
}

FlowEntry* FlowMap::find(const FlowKey& k, uint32_t key_hash) {
    for (uint32_t i = key_buckets_[key_hash & bucket_mask_]; i != kNoEntry;
         i = entries_[i].next_by_key) {
        if (entries_[i].key == k) return &entries_[i];
    }
    return nullptr;
}

bool FlowMap::id_in_use(uint32_t id) const {
    for (uint32_t i = id_buckets_[id_bucket(id, id_bucket_mask_)]; i != kNoEntry;
         i = entries_[i].next_by_id) {
        if (entries_[i].flow_id == id) return true;
    }
    return false;
}

FlowEntry* FlowMap::find_id(uint32_t id) {
    for (uint32_t i = id_buckets_[id_bucket(id, id_bucket_mask_)]; i != kNoEntry; i = entries_[i].next_by_id) {
        FlowEntry& e = entries_[i];
        if (e.flow_id == id && e.in_use && !e.ending) return &e;
    }
    return nullptr;
}

void FlowMap::link(uint32_t i, uint32_t key_hash) {
    FlowEntry& e = entries_[i];
    uint32_t kb = key_hash & bucket_mask_;
    e.next_by_key = key_buckets_[kb];
    key_buckets_[kb] = i;
    uint32_t ib = id_bucket(e.flow_id, id_bucket_mask_);
    e.next_by_id = id_buckets_[ib];
    id_buckets_[ib] = i;
}

FlowEntry* FlowMap::insert(const FlowKey& k, uint32_t key_hash, uint32_t wanted_id,
                           uint64_t ts_ns, bool reversed) {
    uint32_t i = hdr_->free_head;
    const uint32_t hw = hdr_->high_water.load(std::memory_order_relaxed);
    if (i == kNoEntry && hw >= usable()) return nullptr;
    uint32_t id = wanted_id;
    while (id_in_use(id)) ++id;  // terminates: fewer live flows than 2^32
    if (i != kNoEntry) {
        hdr_->free_head = entries_[i].next_by_key;
    } else {
        i = hw;
        entries_[i].in_use = 0;  // never used: whatever the memory held is not a flow
        hdr_->high_water.store(hw + 1, std::memory_order_release);
    }
    FlowEntry& e = entries_[i];
    e = FlowEntry{};
    e.key = k;
    e.flow_id = id;
    e.first_ns = e.last_ns = ts_ns;
    e.first_reversed = reversed ? 1 : 0;
    link(i, key_hash);
    lru_push_newest(i);
    std::atomic_thread_fence(std::memory_order_release);
    e.in_use = 1;
    hdr_->live.fetch_add(1, std::memory_order_relaxed);
    hdr_->generation.fetch_add(1, std::memory_order_release);
    return &e;
}

void FlowMap::unlink_key(uint32_t i) {
    uint32_t* p = &key_buckets_[hasher_(entries_[i].key) & bucket_mask_];
    while (*p != i) p = &entries_[*p].next_by_key;
    *p = entries_[i].next_by_key;
}

void FlowMap::unlink_id(uint32_t i) {
    uint32_t* p = &id_buckets_[id_bucket(entries_[i].flow_id, id_bucket_mask_)];
    while (*p != i) p = &entries_[*p].next_by_id;
    *p = entries_[i].next_by_id;
}

void FlowMap::erase(FlowEntry* e) {
    uint32_t i = index_of(e);
    e->in_use = 0;
    std::atomic_thread_fence(std::memory_order_release);
    unlink_key(i);
    unlink_id(i);
    lru_unlink(i);
    e->next_by_key = hdr_->free_head;
    hdr_->free_head = i;
    hdr_->live.fetch_sub(1, std::memory_order_relaxed);
    hdr_->generation.fetch_add(1, std::memory_order_release);
}

void FlowMap::lru_unlink(uint32_t i) {
    FlowEntry& e = entries_[i];
    if (e.lru_prev != kNoEntry) entries_[e.lru_prev].lru_next = e.lru_next;
    else hdr_->lru_newest = e.lru_next;
    if (e.lru_next != kNoEntry) entries_[e.lru_next].lru_prev = e.lru_prev;
    else hdr_->lru_oldest = e.lru_prev;
    e.lru_prev = e.lru_next = kNoEntry;
}

void FlowMap::lru_push_newest(uint32_t i) {
    FlowEntry& e = entries_[i];
    e.lru_prev = kNoEntry;
    e.lru_next = hdr_->lru_newest;
    if (hdr_->lru_newest != kNoEntry) entries_[hdr_->lru_newest].lru_prev = i;
    hdr_->lru_newest = i;
    if (hdr_->lru_oldest == kNoEntry) hdr_->lru_oldest = i;
}

void FlowMap::touch(FlowEntry* e, uint64_t ts_ns) {
    if (ts_ns <= e->last_ns) return;  // not later: neither a new last_ns nor a new period
    // Periods are a power of two long: the same period means the same bits above them.
    const bool later_period = ((ts_ns ^ e->last_ns) & ~(kLruGranularityNs - 1)) != 0;
    e->last_ns = ts_ns;
    if (!later_period) return;
    uint32_t i = index_of(e);
    if (hdr_->lru_newest == i) return;
    lru_unlink(i);
    lru_push_newest(i);
}

FlowEntry* FlowMap::oldest() {
    return hdr_->lru_oldest == kNoEntry ? nullptr : &entries_[hdr_->lru_oldest];
}

FlowEntry* FlowMap::newer(FlowEntry* e) {
    return e->lru_prev == kNoEntry ? nullptr : &entries_[e->lru_prev];
}

}  // namespace angel
