// bench/customer_set_tool: the customer set's lookups (issue 12). For 1,000, 100,000 and
// 1,000,000 random prefixes as an ISP lists them (IPv4 /24../32, IPv6 /48../64), it builds the
// set (build_customer_ranges + write_customer_slot, as ctld does), then looks up 4,000,000
// addresses, half inside a listed prefix and half outside, in a random order, from a buffer of
// 64 MiB (far larger than the caches, so addresses are not all cache hits), the way procd does
// per packet (CustomerSetView::contains_v4/_v6). The yardstick, in the same run on the same
// addresses: a hash set per prefix length (the structure the issue rules out), probed from the
// longest length down. Prints ns per lookup (median of 5 passes), build time and memory.
//
//   customer_set_tool [--quick]     (--quick: 1k and 100k only, one pass)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "ctld/customers/customer_ranges.hpp"
#include "shm/customer_set.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

angel::Cidr random_net(std::mt19937_64& rng, int version) {
    angel::Cidr c;
    c.ip_version = static_cast<uint8_t>(version);
    const int bits = version == 4 ? 32 : 128;
    c.prefix_len = static_cast<uint8_t>(version == 4 ? 24 + rng() % 9 : 48 + rng() % 17);
    for (int i = 0; i < bits / 8; ++i) c.addr[i] = static_cast<uint8_t>(rng());
    if (version == 6) c.addr[0] = static_cast<uint8_t>(0x20 | (c.addr[0] & 0x1f));
    for (int bit = c.prefix_len; bit < bits; ++bit) c.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    return c;
}

// The yardstick: per prefix length, a hash set of the masked networks (the address as a
// 128-bit number, masked; one std::unordered_set probe per length listed).
struct HashPerLength {
    struct H {
        size_t operator()(unsigned __int128 v) const {
            const uint64_t x = static_cast<uint64_t>(v) ^ static_cast<uint64_t>(v >> 64) * 0x9e3779b97f4a7c15ull;
            return static_cast<size_t>(x ^ (x >> 29));
        }
    };
    std::vector<int> lengths;  // longest first
    std::vector<std::unordered_set<unsigned __int128, H>> sets;  // by length
    int bits;
    explicit HashPerLength(int b) : sets(b + 1), bits(b) {}
    unsigned __int128 num(const uint8_t* a) const {
        unsigned __int128 v = 0;
        for (int i = 0; i < bits / 8; ++i) v = (v << 8) | a[i];
        return v;
    }
    unsigned __int128 mask(unsigned __int128 v, int len) const {
        return len == 0 ? 0 : v & (~static_cast<unsigned __int128>(0) << (bits - len));
    }
    void add(const angel::Cidr& c) {
        if (sets[c.prefix_len].empty()) lengths.push_back(c.prefix_len);
        sets[c.prefix_len].insert(mask(num(c.addr.data()), c.prefix_len));
    }
    void done() { std::sort(lengths.rbegin(), lengths.rend()); }
    bool contains(const uint8_t* a) const {
        const unsigned __int128 v = num(a);
        for (int len : lengths)
            if (sets[len].count(mask(v, len))) return true;
        return false;
    }
};

struct Row {
    size_t prefixes;
    int version;
    double build_s, ns_set, ns_hash;
    uint64_t bytes, ranges;
    double hit_share;
};

Row run(size_t n, int version, int passes, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<angel::Cidr> nets(n);
    for (auto& c : nets) c = random_net(rng, version);
    Row row{n, version, 0, 0, 0, 0, 0, 0};
    const auto t0 = Clock::now();
    const angel::CustomerRanges r = angel::build_customer_ranges(nets);
    row.ranges = r.v4_lo.size() + r.v6_lo.size();
    row.bytes = angel::customer_slot_bytes(r.v4_lo.size(), r.v6_lo.size());
    std::vector<uint64_t> mem(row.bytes / 8 + 1);
    auto* slot = reinterpret_cast<uint8_t*>(mem.data());
    angel::write_customer_slot(slot, row.bytes, r, 1);
    row.build_s = since(t0);
    angel::CustomerSetView view;
    std::string why;
    if (!view.open(slot, row.bytes, &why)) {
        std::fprintf(stderr, "slot refused: %s\n", why.c_str());
        std::exit(1);
    }
    HashPerLength hash(version == 4 ? 32 : 128);
    for (const auto& c : nets) hash.add(c);
    hash.done();

    // 64 MiB of addresses: half inside a listed prefix (random host bits), half anywhere.
    const size_t stride = 16;
    const size_t count = (64u << 20) / stride;
    std::vector<uint8_t> addrs(count * stride);
    for (size_t i = 0; i < count; ++i) {
        uint8_t* a = &addrs[i * stride];
        for (size_t k = 0; k < stride; ++k) a[k] = static_cast<uint8_t>(rng());
        if (i % 2 == 0) {
            const angel::Cidr& c = nets[rng() % n];
            const int bits = version == 4 ? 32 : 128;
            for (int bit = 0; bit < c.prefix_len && bit < bits; ++bit) {
                const uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
                a[bit / 8] = static_cast<uint8_t>((a[bit / 8] & ~m) | (c.addr[bit / 8] & m));
            }
        }
    }
    const size_t lookups = 4'000'000;
    std::vector<uint32_t> order(lookups);
    for (auto& o : order) o = static_cast<uint32_t>(rng() % count);

    auto time_it = [&](auto&& contains, uint64_t* hits) {
        std::vector<double> ns;
        for (int p = 0; p < passes; ++p) {
            uint64_t h = 0;
            const auto t = Clock::now();
            for (uint32_t o : order) h += contains(&addrs[size_t{o} * stride]);
            ns.push_back(since(t) * 1e9 / double(lookups));
            *hits = h;
        }
        std::sort(ns.begin(), ns.end());
        return ns[ns.size() / 2];
    };
    uint64_t hits_set = 0, hits_hash = 0;
    row.ns_set = time_it(
        [&](const uint8_t* a) {
            return version == 4 ? view.contains_v4(angel::u32_from_bytes(a)) : view.contains_v6(angel::u128_from_bytes(a));
        },
        &hits_set);
    row.ns_hash = time_it([&](const uint8_t* a) { return hash.contains(a); }, &hits_hash);
    if (hits_set != hits_hash) {
        std::fprintf(stderr, "the set and the yardstick disagree: %llu vs %llu hits\n",
                     static_cast<unsigned long long>(hits_set), static_cast<unsigned long long>(hits_hash));
        std::exit(1);
    }
    row.hit_share = double(hits_set) / double(lookups);
    return row;
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const int passes = quick ? 1 : 5;
    std::printf("%-9s %-5s %8s %9s %9s %12s %12s %6s\n", "prefixes", "fam", "ranges", "memory", "build_s",
                "ns/lookup", "hash ns", "hits");
    for (size_t n : {size_t{1000}, size_t{100000}, size_t{1000000}}) {
        if (quick && n > 100000) break;
        for (int version : {4, 6}) {
            const Row r = run(n, version, passes, 1000 + n + static_cast<size_t>(version));
            std::printf("%-9zu IPv%-2d %8llu %7.2f MiB %9.3f %12.1f %12.1f %5.1f%%\n", r.prefixes, r.version,
                        static_cast<unsigned long long>(r.ranges), double(r.bytes) / (1 << 20), r.build_s, r.ns_set,
                        r.ns_hash, 100.0 * r.hit_share);
            std::fflush(stdout);
        }
    }
    return 0;
}
