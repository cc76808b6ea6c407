// The FlowMap (shm/flow_map.hpp): insert/find/erase, capacity, flow-ID uniqueness with the
// deterministic probe sequence (against a model over 100k random operations), LRU order, and
// recover() rebuilding every index after a simulated crash scribbled over them; the two-step
// end (retire, release) and the high-water mark (entries never used are never read).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "shm/flow_map.hpp"
#include "shm/records.hpp"

namespace angel {
namespace {

// Distinct keys from an integer; the hash is chosen by the test (collisions on purpose).
FlowKey key_of(uint32_t n) {
    FlowKey k;
    k.ip_version = (n & 1) ? 6 : 4;
    k.proto = (n & 2) ? 17 : 6;
    k.port_lo = static_cast<uint16_t>(n);
    k.port_hi = static_cast<uint16_t>(n >> 16);
    k.addr_lo[0] = 10;
    k.addr_lo[12] = static_cast<uint8_t>(n >> 8);
    k.addr_hi[0] = 192;
    k.addr_hi[15] = static_cast<uint8_t>(n >> 24);
    return k;
}
uint32_t hash_of(uint32_t n) { return n * 0x9E3779B1u; }

// The map keeps no hash per entry: it asks its hasher again (recover(), taking a flow out of its
// chain), so the hasher must give what the test passed to insert() for key_of(n). The default
// is hash_of(n); a test that wants collisions sets its own after making its MapMem.
uint32_t (*g_test_hash)(uint32_t n) = hash_of;
uint32_t test_hasher(const FlowKey& k, const FlowIdKey&) {
    return g_test_hash(uint32_t{k.port_lo} | uint32_t{k.port_hi} << 16);  // key_of(n)'s n
}
const FlowKeyHasher kTestHasher{&test_hasher, {}};

// A formatted map in private memory (the map only needs bytes_for() bytes, 64-aligned).
struct MapMem {
    explicit MapMem(uint32_t capacity) : bytes(FlowMap::bytes_for(capacity)) {
        g_test_hash = hash_of;
        mem.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) & ~size_t{63})));
        std::memset(mem.get(), 0xA5, bytes);  // format() must not rely on zeroed memory
        FlowMap::format(mem.get(), capacity);
        map = FlowMap(mem.get(), kTestHasher);
    }
    FlowMapHeader* header() const { return reinterpret_cast<FlowMapHeader*>(mem.get()); }
    FlowEntry* entries() const { return const_cast<FlowEntry*>(&map.entry(0)); }
    struct Free {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    size_t bytes;
    std::unique_ptr<uint8_t, Free> mem;
    FlowMap map;
};

TEST(FlowMap, InsertFindErase) {
    MapMem m(64);
    FlowMap& fm = m.map;
    EXPECT_EQ(fm.live(), 0u);
    EXPECT_EQ(fm.capacity(), 64u);
    EXPECT_EQ(fm.find(key_of(1), hash_of(1)), nullptr);
    EXPECT_EQ(fm.oldest(), nullptr);

    FlowEntry* a = fm.insert(key_of(1), hash_of(1), 1000, 5);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->flow_id, 1000u);
    EXPECT_EQ(a->first_ns, 5u);
    EXPECT_EQ(a->last_ns, 5u);
    EXPECT_EQ(a->in_use, 1);
    EXPECT_EQ(a->packets[0] + a->packets[1] + a->bytes[0] + a->bytes[1], 0u);
    EXPECT_TRUE(a->key == key_of(1));
    EXPECT_EQ(fm.find(key_of(1), hash_of(1)), a);
    EXPECT_EQ(fm.find(key_of(2), hash_of(2)), nullptr);
    EXPECT_EQ(fm.find(key_of(1), hash_of(1) + 1), nullptr);  // the hash is part of the lookup
    EXPECT_TRUE(fm.id_in_use(1000));
    EXPECT_FALSE(fm.id_in_use(1001));
    EXPECT_EQ(fm.live(), 1u);

    const uint64_t g = fm.generation();
    fm.erase(a);
    EXPECT_GT(fm.generation(), g);
    EXPECT_EQ(fm.find(key_of(1), hash_of(1)), nullptr);
    EXPECT_FALSE(fm.id_in_use(1000));
    EXPECT_EQ(fm.live(), 0u);
    EXPECT_EQ(fm.oldest(), nullptr);
}

TEST(FlowMap, SameBucketChainsStayCorrect) {
    MapMem m(64);
    FlowMap& fm = m.map;
    // Every key in one hash bucket, every wanted ID the same: both chains get long.
    g_test_hash = [](uint32_t) { return 77u; };
    std::vector<FlowEntry*> es;
    for (uint32_t n = 0; n < 20; ++n) es.push_back(fm.insert(key_of(n), 77, 5, n));
    for (uint32_t n = 0; n < 20; ++n) {
        ASSERT_NE(es[n], nullptr);
        EXPECT_EQ(es[n]->flow_id, 5 + n);
        EXPECT_EQ(fm.find(key_of(n), 77), es[n]);
    }
    // Erase from the middle, the head and the tail of the chains.
    for (uint32_t n : {10u, 19u, 0u}) fm.erase(es[n]);
    for (uint32_t n = 0; n < 20; ++n) {
        bool gone = n == 10 || n == 19 || n == 0;
        EXPECT_EQ(fm.find(key_of(n), 77), gone ? nullptr : es[n]) << n;
        EXPECT_EQ(fm.id_in_use(5 + n), !gone) << n;
    }
}

// Entries above the reserved part have no memory behind them in the segment: the map is full
// there, whatever its capacity, until set_reserved() lets it use more.
TEST(FlowMap, InsertStopsAtTheReservedPartUntilItGrows) {
    MapMem m(64);
    FlowMap::format(m.mem.get(), 64, 8);
    FlowMap fm(m.mem.get());
    EXPECT_EQ(fm.reserved(), 8u);
    for (uint32_t n = 0; n < 8; ++n) ASSERT_NE(fm.insert(key_of(n), hash_of(n), n, n), nullptr) << n;
    EXPECT_TRUE(fm.full());
    EXPECT_EQ(fm.insert(key_of(8), hash_of(8), 8, 8), nullptr);
    EXPECT_EQ(fm.high_water(), 8u);  // nothing above the reserved part was touched
    fm.set_reserved(4);              // never shrinks
    EXPECT_EQ(fm.reserved(), 8u);
    fm.set_reserved(1000);           // capped at the capacity
    EXPECT_EQ(fm.reserved(), 64u);
    EXPECT_FALSE(fm.full());
    EXPECT_NE(fm.insert(key_of(8), hash_of(8), 8, 8), nullptr);
    FlowMap again(m.mem.get(), kTestHasher);
    again.recover(kTestHasher);  // the reserved part is kept across a procd restart
    EXPECT_EQ(again.reserved(), 64u);
    EXPECT_EQ(again.live(), 9u);
}

TEST(FlowMap, FullMapReturnsNullptr) {
    MapMem m(16);
    FlowMap& fm = m.map;
    std::vector<FlowEntry*> es;
    for (uint32_t n = 0; n < 16; ++n) {
        es.push_back(fm.insert(key_of(n), hash_of(n), n * 10, n));
        ASSERT_NE(es.back(), nullptr) << n;
    }
    EXPECT_TRUE(fm.full());
    EXPECT_EQ(fm.insert(key_of(16), hash_of(16), 999, 16), nullptr);
    EXPECT_FALSE(fm.id_in_use(999));  // a refused insert leaves nothing behind
    EXPECT_EQ(fm.live(), 16u);
    fm.erase(es[7]);
    EXPECT_FALSE(fm.full());
    FlowEntry* e = fm.insert(key_of(16), hash_of(16), 999, 16);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e, es[7]);  // the freed entry is reused
    EXPECT_EQ(e->flow_id, 999u);
    EXPECT_EQ(fm.find(key_of(7), hash_of(7)), nullptr);
    EXPECT_EQ(fm.find(key_of(16), hash_of(16)), e);
}

TEST(FlowMap, CollidingIdsGetTheNextFreeIdOfTheProbeSequence) {
    MapMem m(64);
    FlowMap& fm = m.map;
    const uint32_t w = 0x12345678;
    FlowEntry* a = fm.insert(key_of(1), hash_of(1), w, 1);
    FlowEntry* b = fm.insert(key_of(2), hash_of(2), w, 2);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->flow_id, w);
    EXPECT_EQ(b->flow_id, w + 1);
    FlowEntry* c = fm.insert(key_of(3), hash_of(3), w + 1, 3);  // wants b's ID
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->flow_id, w + 2);
    fm.erase(b);
    FlowEntry* d = fm.insert(key_of(4), hash_of(4), w, 4);  // first free after w is now w+1
    ASSERT_NE(d, nullptr);
    EXPECT_EQ(d->flow_id, w + 1);
    // The probe sequence wraps modulo 2^32.
    FlowEntry* x = fm.insert(key_of(5), hash_of(5), 0xFFFFFFFFu, 5);
    FlowEntry* y = fm.insert(key_of(6), hash_of(6), 0xFFFFFFFFu, 6);
    ASSERT_TRUE(x && y);
    EXPECT_EQ(x->flow_id, 0xFFFFFFFFu);
    EXPECT_EQ(y->flow_id, 0u);
}

// Walks the LRU from the oldest to the newest flow.
std::vector<FlowEntry*> lru_order(FlowMap& fm) {
    std::vector<FlowEntry*> v;
    for (FlowEntry* e = fm.oldest(); e; e = fm.newer(e)) {
        v.push_back(e);
        if (v.size() > fm.capacity()) break;  // a cycle: let the caller's comparison fail
    }
    return v;
}

TEST(FlowMap, LruOrder) {
    MapMem m(16);
    FlowMap& fm = m.map;
    FlowEntry* a = fm.insert(key_of(1), hash_of(1), 1, 1);
    FlowEntry* b = fm.insert(key_of(2), hash_of(2), 2, 2);
    FlowEntry* c = fm.insert(key_of(3), hash_of(3), 3, 3);
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{a, b, c}));
    fm.touch(a, 10 * FlowMap::kLruGranularityNs);
    EXPECT_EQ(fm.oldest(), b);
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{b, c, a}));
    fm.touch(a, 20 * FlowMap::kLruGranularityNs);  // already the newest
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{b, c, a}));
    fm.touch(c, 30 * FlowMap::kLruGranularityNs);
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{b, a, c}));
    FlowEntry* d = fm.insert(key_of(4), hash_of(4), 4, 4);
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{b, a, c, d}));
    fm.erase(a);  // middle
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{b, c, d}));
    fm.erase(b);  // oldest
    EXPECT_EQ(fm.oldest(), c);
    fm.erase(d);  // newest
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{c}));
    EXPECT_EQ(fm.newer(c), nullptr);
    fm.erase(c);
    EXPECT_EQ(fm.oldest(), nullptr);
}

// The model of the map: live flows by key number, with the ID the map gave them.
struct Model {
    std::unordered_map<uint32_t, uint32_t> id_of;  // key number -> flow ID
    std::unordered_map<uint32_t, uint32_t> key_of_id;
    std::set<uint32_t> ids;
    std::map<uint64_t, uint32_t> lru;               // last activity -> key number
    std::unordered_map<uint32_t, uint64_t> last_of;  // key number -> last activity
    // The ID the map must choose: the first free one from wanted upwards (mod 2^32).
    uint32_t expected_id(uint32_t wanted) const {
        uint32_t id = wanted;
        while (ids.count(id)) ++id;
        return id;
    }
};

// Checks the whole map against the model: same live set, unique IDs, a consistent LRU.
void check_against_model(FlowMap& fm, const Model& model) {
    ASSERT_EQ(fm.live(), model.id_of.size());
    for (const auto& [n, id] : model.id_of) {
        FlowEntry* e = fm.find(key_of(n), hash_of(n) & 0xFFF);
        ASSERT_NE(e, nullptr) << "key " << n;
        ASSERT_EQ(e->flow_id, id);
    }
    std::set<uint32_t> seen;
    uint32_t in_use = 0;
    ASSERT_LE(fm.high_water(), fm.capacity());
    for (uint32_t i = 0; i < fm.high_water(); ++i) {  // above it: never used, any bytes
        const FlowEntry& e = fm.entry(i);
        if (!e.in_use) continue;
        ++in_use;
        ASSERT_TRUE(seen.insert(e.flow_id).second) << "duplicate live ID " << e.flow_id;
    }
    ASSERT_EQ(in_use, model.id_of.size());
    std::vector<FlowEntry*> order = lru_order(fm);
    ASSERT_EQ(order.size(), model.lru.size());
    size_t i = 0;
    for (const auto& [last, n] : model.lru) ASSERT_TRUE(order[i++]->key == key_of(n)) << "LRU position " << i;
}

TEST(FlowMap, RandomizedAgainstModelIdsUniqueAmongLiveFlows) {
    constexpr uint32_t kCap = 2048;
    MapMem m(kCap);
    g_test_hash = [](uint32_t n) { return hash_of(n) & 0xFFF; };
    FlowMap& fm = m.map;
    Model model;
    std::mt19937 rng(12345);
    std::vector<uint32_t> live_keys;  // for picking a random live flow
    uint64_t now = 1;
    int collisions = 0, refused = 0;
    for (int op = 0; op < 100000; ++op) {
        // Keys from a space of 6000, hashes folded to 4096 values and wanted IDs drawn from
        // only 1500 values: hash chains, ID collisions and a full map are all frequent.
        uint32_t n = rng() % 6000;
        uint32_t h = hash_of(n) & 0xFFF;
        switch (rng() % 8) {
            case 0: case 1: case 2: case 3: {  // a packet: find, else insert
                FlowEntry* e = fm.find(key_of(n), h);
                ASSERT_EQ(e != nullptr, model.id_of.count(n) == 1) << "op " << op;
                if (e) {
                    model.lru.erase(model.last_of.at(n));
                    fm.touch(e, (now += FlowMap::kLruGranularityNs));  // sets last_ns
                    model.lru[now] = n;
                    model.last_of[n] = now;
                    break;
                }
                uint32_t wanted = 0xFFFFFF00u + rng() % 1500;  // also crosses 2^32
                e = fm.insert(key_of(n), h, wanted, (now += FlowMap::kLruGranularityNs));
                if (model.id_of.size() == kCap) {
                    ASSERT_EQ(e, nullptr);
                    ++refused;
                    break;
                }
                ASSERT_NE(e, nullptr);
                uint32_t want_id = model.expected_id(wanted);
                collisions += want_id != wanted;
                ASSERT_EQ(e->flow_id, want_id) << "op " << op;
                model.id_of[n] = e->flow_id;
                model.key_of_id[e->flow_id] = n;
                model.ids.insert(e->flow_id);
                model.lru[now] = n;
                model.last_of[n] = now;
                live_keys.push_back(n);
                break;
            }
            case 4: case 5: {  // a flow ends: a random live one, or the oldest (eviction)
                if (live_keys.empty()) break;
                FlowEntry* e;
                if (rng() % 2) {
                    size_t pick = rng() % live_keys.size();
                    uint32_t k = live_keys[pick];
                    e = fm.find(key_of(k), hash_of(k) & 0xFFF);
                } else {
                    e = fm.oldest();
                }
                ASSERT_NE(e, nullptr);
                ASSERT_EQ(model.key_of_id.count(e->flow_id), 1u);
                uint32_t k = model.key_of_id.at(e->flow_id);
                ASSERT_TRUE(e->key == key_of(k));
                fm.erase(e);
                model.ids.erase(e->flow_id);
                model.key_of_id.erase(e->flow_id);
                model.id_of.erase(k);
                model.lru.erase(model.last_of.at(k));
                model.last_of.erase(k);
                live_keys.erase(std::find(live_keys.begin(), live_keys.end(), k));
                break;
            }
            case 6: {  // ID lookups agree with the model
                uint32_t id = 0xFFFFFF00u + rng() % 1600;
                ASSERT_EQ(fm.id_in_use(id), model.ids.count(id) == 1);
                break;
            }
            case 7: {  // the oldest flow is the least recently active one
                FlowEntry* o = fm.oldest();
                if (model.id_of.empty()) {
                    ASSERT_EQ(o, nullptr);
                    break;
                }
                ASSERT_NE(o, nullptr);
                ASSERT_TRUE(o->key == key_of(model.lru.begin()->second));
                ASSERT_EQ(o->last_ns, model.lru.begin()->first);
                break;
            }
        }
        if (op % 5000 == 0) {
            check_against_model(fm, model);
            if (HasFatalFailure()) return;
        }
    }
    check_against_model(fm, model);
    // The test really exercised what it claims to.
    EXPECT_GT(collisions, 1000);
    EXPECT_GT(refused, 100);
}

// recover(): a procd killed in the middle of an update leaves the indexes in any state; the
// entries (in_use, key, flow_id, last_ns) are the truth and everything else is rebuilt.
TEST(FlowMap, RecoverRebuildsLiveSetAndLruAfterIndexesAreScribbled) {
    constexpr uint32_t kCap = 1000;  // not a power of two: buckets are rounded up
    MapMem m(kCap);
    g_test_hash = [](uint32_t n) { return hash_of(n) & 0x3FF; };
    FlowMap& fm = m.map;
    std::mt19937 rng(99);
    uint64_t now = 100;
    std::map<uint32_t, FlowEntry*> by_key;
    for (int op = 0; op < 20000; ++op) {
        uint32_t n = rng() % 3000;
        uint32_t h = hash_of(n) & 0x3FF;
        auto it = by_key.find(n);
        if (it != by_key.end()) {
            if (rng() % 3 == 0) {
                fm.erase(it->second);
                by_key.erase(it);
            } else {
                it->second->packets[0] += 1;
                it->second->bytes[1] += n;
                fm.touch(it->second, (now += FlowMap::kLruGranularityNs));  // sets last_ns
            }
        } else if (FlowEntry* e = fm.insert(key_of(n), h, rng() % 500, (now += FlowMap::kLruGranularityNs))) {
            by_key[n] = e;
        }
    }
    // Leave free entries between live ones, so the free list has to be rebuilt too.
    for (auto it = by_key.begin(); it != by_key.end();) {
        if (rng() % 3 == 0) {
            fm.erase(it->second);
            it = by_key.erase(it);
        } else {
            ++it;
        }
    }
    ASSERT_GT(by_key.size(), 200u);
    ASSERT_LT(by_key.size(), size_t{kCap});

    // What must survive: per flow its ID, stats, and the LRU order (which is last_ns order
    // since every touch set last_ns to a fresh, increasing time).
    struct Saved {
        uint32_t n, id;
        uint64_t last, pk0, by1;
    };
    std::vector<Saved> before;
    for (FlowEntry* e : lru_order(fm)) {
        uint32_t n = 0;
        for (auto& [k, p] : by_key)
            if (p == e) n = k;
        before.push_back({n, e->flow_id, e->last_ns, e->packets[0], e->bytes[1]});
    }
    ASSERT_EQ(before.size(), by_key.size());
    for (size_t i = 1; i < before.size(); ++i) ASSERT_LT(before[i - 1].last, before[i].last);

    // The crash: hash buckets, chains, LRU links, free list and counters all scribbled; and
    // one insert that died before setting in_use (an entry with data but not live).
    FlowMapHeader* hdr = m.header();
    uint8_t* buckets_begin = m.mem.get() + ((sizeof(FlowMapHeader) + 63) & ~size_t{63});
    std::memset(buckets_begin, 0, reinterpret_cast<uint8_t*>(m.entries()) - buckets_begin);
    FlowEntry* half = nullptr;
    for (uint32_t i = 0; i < fm.high_water(); ++i) {
        FlowEntry& e = m.entries()[i];
        e.next_by_key = e.next_by_id = 0;
        e.lru_prev = e.lru_next = 0;
        if (!e.in_use && !half) {
            half = &e;
            e.key = key_of(5000);
            e.flow_id = before.front().id;  // would clash with a live flow
        }
    }
    hdr->free_head = 0;
    hdr->lru_newest = hdr->lru_oldest = 0;
    hdr->live.store(12345);
    ASSERT_NE(half, nullptr);

    FlowMap again(m.mem.get(), kTestHasher);  // a restarted procd attaching
    again.recover(kTestHasher);

    ASSERT_EQ(again.live(), before.size());
    std::vector<FlowEntry*> after = lru_order(again);
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < before.size(); ++i) {
        const Saved& s = before[i];
        FlowEntry* e = again.find(key_of(s.n), hash_of(s.n) & 0x3FF);
        ASSERT_NE(e, nullptr) << "flow " << s.n << " lost";
        EXPECT_EQ(e, after[i]) << "LRU position " << i;
        EXPECT_EQ(e->flow_id, s.id);
        EXPECT_EQ(e->last_ns, s.last);
        EXPECT_EQ(e->packets[0], s.pk0);
        EXPECT_EQ(e->bytes[1], s.by1);
        EXPECT_TRUE(again.id_in_use(s.id));
    }
    EXPECT_EQ(again.find(key_of(5000), hash_of(5000) & 0x3FF), nullptr);

    // The rebuilt free list holds exactly the free entries: the map fills up to capacity,
    // with IDs still unique.
    std::set<uint32_t> ids;
    for (const Saved& s : before) ids.insert(s.id);
    uint32_t added = 0;
    for (uint32_t n = 10000; ; ++n) {
        FlowEntry* e = again.insert(key_of(n), hash_of(n) & 0x3FF, before.front().id, (now += FlowMap::kLruGranularityNs));
        if (!e) break;
        ASSERT_TRUE(ids.insert(e->flow_id).second) << "ID " << e->flow_id << " given twice";
        ++added;
        ASSERT_LE(added, kCap);
    }
    EXPECT_EQ(added, kCap - before.size());
    EXPECT_EQ(again.live(), kCap);
    EXPECT_EQ(lru_order(again).size(), size_t{kCap});
}

// A crash can also leave two in_use entries claiming the same key or ID (an insert that set
// in_use while an erase of the same key had not finished cannot happen with one writer, but a
// torn update could). recover() must keep the map consistent: one of them wins.
TEST(FlowMap, RecoverDropsDuplicates) {
    MapMem m(32);
    FlowMap& fm = m.map;
    FlowEntry* a = fm.insert(key_of(1), hash_of(1), 7, 1);
    FlowEntry* b = fm.insert(key_of(2), hash_of(2), 8, 2);
    ASSERT_TRUE(a && b);
    b->flow_id = 7;  // torn: same ID as a
    FlowMap again(m.mem.get(), kTestHasher);
    again.recover(kTestHasher);
    EXPECT_EQ(again.live(), 1u);
    EXPECT_TRUE(again.id_in_use(7));
    uint32_t live = 0;
    for (uint32_t i = 0; i < again.high_water(); ++i) live += again.entry(i).in_use;
    EXPECT_EQ(live, 1u);
}

// Memory above the high-water mark is never read: a map formatted over garbage is empty,
// stays empty through recover(), and hands out entries in order.
TEST(FlowMap, EntriesAboveHighWaterAreNeverRead) {
    MapMem m(64);  // MapMem fills the memory with 0xA5 before format()
    FlowMap& fm = m.map;
    EXPECT_EQ(fm.high_water(), 0u);
    EXPECT_EQ(fm.live(), 0u);
    EXPECT_EQ(fm.oldest(), nullptr);
    fm.recover(kTestHasher);
    EXPECT_EQ(fm.live(), 0u);
    FlowEntry* a = fm.insert(key_of(1), hash_of(1), 1, 1);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a, &m.entries()[0]);
    EXPECT_EQ(fm.high_water(), 1u);
    fm.erase(a);
    FlowEntry* b = fm.insert(key_of(2), hash_of(2), 2, 2);
    EXPECT_EQ(b, a);  // the free list first, the mark only when it is empty
    EXPECT_EQ(fm.high_water(), 1u);
    // A crash right after insert() moved the mark (it clears in_use first) but before it
    // wrote the rest of the entry: not a flow, whatever the other bytes hold.
    m.entries()[1].in_use = 0;
    m.header()->high_water.store(2);
    FlowMap again(m.mem.get(), kTestHasher);
    again.recover(kTestHasher);
    EXPECT_EQ(again.live(), 1u);
    EXPECT_EQ(again.retired_count(), 0u);
    EXPECT_NE(again.find(key_of(2), hash_of(2)), nullptr);
    FlowEntry* c = again.insert(key_of(3), hash_of(3), 3, 3);
    EXPECT_EQ(c, &m.entries()[1]);  // the half-made entry is free again
    EXPECT_EQ(again.high_water(), 2u);
}

// retire() ends a flow for lookups but keeps its ID reserved until release(), across a
// restart too (recover() lists the retired entries so procd can publish their flow_end).
TEST(FlowMap, RetireKeepsIdUntilReleaseAndSurvivesRecover) {
    MapMem m(16);
    FlowMap& fm = m.map;
    FlowEntry* a = fm.insert(key_of(1), hash_of(1), 100, 1);
    FlowEntry* b = fm.insert(key_of(2), hash_of(2), 200, 2);
    ASSERT_TRUE(a && b);
    fm.retire(a, static_cast<uint8_t>(EndReason::idle));
    EXPECT_EQ(fm.find(key_of(1), hash_of(1)), nullptr);
    EXPECT_TRUE(fm.id_in_use(100));
    EXPECT_EQ(fm.live(), 1u);
    EXPECT_EQ(lru_order(fm), (std::vector<FlowEntry*>{b}));
    // A new flow of the same key while the old one is retired: a new entry, the next ID.
    FlowEntry* a2 = fm.insert(key_of(1), hash_of(1), 100, 3);
    ASSERT_NE(a2, nullptr);
    EXPECT_NE(a2, a);
    EXPECT_EQ(a2->flow_id, 101u);

    FlowMap again(m.mem.get(), kTestHasher);  // procd killed before publishing a's flow_end
    again.recover(kTestHasher);
    EXPECT_EQ(again.live(), 2u);
    EXPECT_EQ(again.retired_count(), 1u);
    EXPECT_EQ(again.first_retired(), a);
    EXPECT_EQ(again.next_retired(a), nullptr);
    EXPECT_EQ(a->ending, static_cast<uint8_t>(EndReason::idle));  // the reason survives too
    EXPECT_TRUE(again.id_in_use(100));
    EXPECT_EQ(again.find(key_of(1), hash_of(1)), a2);
    EXPECT_EQ(lru_order(again), (std::vector<FlowEntry*>{b, a2}));

    again.release(a);
    EXPECT_FALSE(again.id_in_use(100));
    FlowEntry* c = again.insert(key_of(3), hash_of(3), 100, 4);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->flow_id, 100u);
    EXPECT_EQ(c, a);  // the released entry went back to the free list
}

}  // namespace
// A flow moves to the newest end at most once per kLruGranularityNs of its own time, so
// last_ns never runs ahead of its place in the list by more than that.
TEST(FlowMap, TouchMovesAtMostOncePerGranularity) {
    MapMem m(16);
    FlowMap& fm = m.map;
    const uint64_t g = FlowMap::kLruGranularityNs;
    FlowEntry* a = fm.insert(key_of(1), hash_of(1), 1, 1 * g);
    FlowEntry* b = fm.insert(key_of(2), hash_of(2), 2, 1 * g);
    fm.touch(a, 1 * g + g / 2);  // within the granularity: stays the oldest
    EXPECT_EQ(fm.oldest(), a);
    fm.touch(a, 2 * g);  // a whole granularity later: moves
    EXPECT_EQ(fm.oldest(), b);
}

}  // namespace angel
