// The customer set (shm/customer_set.hpp, ctld/customers/customer_ranges.hpp) against a reference written
// here: a prefix contains an address when their first prefix_len bits agree, checked bit by bit
// over the list as given (duplicates, overlaps and all). Random lists of IPv4 and IPv6 prefixes
// of every length, addresses inside, at the edges of and outside them; and the cases where a
// merge could go wrong (adjacent, nested, 0/0, the largest address).
#include <gtest/gtest.h>

#include <random>

#include "ctld/customers/customer_ranges.hpp"
#include "ctld/customers/customer_set_publisher.hpp"
#include "shm/customer_set.hpp"

namespace angel {
namespace {

bool reference_contains(const std::vector<Cidr>& nets, int version, const std::array<uint8_t, 16>& a) {
    for (const Cidr& c : nets) {
        if (c.ip_version != version) continue;
        bool in = true;
        for (int bit = 0; bit < c.prefix_len && in; ++bit) {
            const uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
            in = (c.addr[bit / 8] & m) == (a[bit / 8] & m);
        }
        if (in) return true;
    }
    return false;
}

Cidr net(const char* text) {
    std::string why;
    auto c = parse_cidr(text, &why);
    EXPECT_TRUE(c.has_value()) << text << ": " << why;
    return c.value_or(Cidr{});
}

// A written slot and its view, in heap memory of the room the set needs.
struct Built {
    std::vector<uint64_t> mem;
    CustomerSetView view;
    explicit Built(const std::vector<Cidr>& nets, uint64_t gen = 1) {
        const CustomerRanges r = build_customer_ranges(nets);
        const uint64_t bytes = customer_slot_bytes(r.v4_lo.size(), r.v6_lo.size());
        mem.assign(bytes / 8 + 1, 0);
        auto* slot = reinterpret_cast<uint8_t*>(mem.data());
        EXPECT_TRUE(write_customer_slot(slot, bytes, r, gen));
        std::string why;
        EXPECT_TRUE(view.open(slot, bytes, &why)) << why;
    }
    bool contains(int version, const std::array<uint8_t, 16>& a) const {
        return version == 4 ? view.contains_v4(u32_from_bytes(a.data())) : view.contains_v6(u128_from_bytes(a.data()));
    }
};

Cidr random_net(std::mt19937_64& rng, int version) {
    Cidr c;
    c.ip_version = static_cast<uint8_t>(version);
    const int bits = version == 4 ? 32 : 128;
    // Mostly the lengths an ISP lists, some of every other length from /8 (shorter ones would
    // cover nearly every probe; /0 is checked on its own below).
    const int common4[] = {32, 32, 24, 28, 30, 16, 20};
    const int common6[] = {128, 64, 56, 48, 60, 32};
    c.prefix_len = static_cast<uint8_t>(rng() % 16 == 0 ? 8 + rng() % (bits - 7)
                                        : version == 4 ? common4[rng() % 7] : common6[rng() % 6]);
    // Addresses from a few small regions, so that prefixes overlap, nest and touch.
    for (int i = 0; i < bits / 8; ++i) c.addr[i] = static_cast<uint8_t>(rng());
    c.addr[0] = static_cast<uint8_t>(version == 4 ? 10 + rng() % 3 : 0x20);
    if (version == 6) c.addr[1] = static_cast<uint8_t>(rng() % 2);
    for (int bit = c.prefix_len; bit < bits; ++bit) c.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    return c;
}

// An address inside c, at its first or last address, or just outside either end.
std::array<uint8_t, 16> probe_near(std::mt19937_64& rng, const Cidr& c) {
    const int bytes = c.ip_version == 4 ? 4 : 16;
    std::array<uint8_t, 16> a = c.addr;
    const int kind = static_cast<int>(rng() % 4);
    for (int bit = c.prefix_len; bit < bytes * 8; ++bit) {
        const uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
        const bool one = kind == 0 ? (rng() & 1) : kind == 1 || kind == 3;
        if (one) a[bit / 8] |= m;
    }
    // kind 2: the first address minus one; kind 3: the last address plus one.
    if (kind == 2) {
        for (int i = bytes - 1; i >= 0 && a[i]-- == 0; --i) {}
    } else if (kind == 3) {
        for (int i = bytes - 1; i >= 0 && ++a[i] == 0; --i) {}
    }
    return a;
}

TEST(CustomerSet, RandomListsMatchTheReference) {
    std::mt19937_64 rng(12);
    for (int round = 0; round < 20; ++round) {
        std::vector<Cidr> nets;
        const int n = 1 + static_cast<int>(rng() % 400);
        for (int i = 0; i < n; ++i) nets.push_back(random_net(rng, rng() % 2 ? 4 : 6));
        if (round % 5 == 0) nets.push_back(nets[rng() % nets.size()]);  // a duplicate
        const Built b(nets);
        size_t in = 0, checked = 0;
        for (int k = 0; k < 4000; ++k) {
            const Cidr& c = nets[rng() % nets.size()];
            std::array<uint8_t, 16> a = k % 3 == 0 ? random_net(rng, c.ip_version).addr : probe_near(rng, c);
            if (k % 7 == 0)  // anywhere at all
                for (int i = 0; i < (c.ip_version == 4 ? 4 : 16); ++i) a[i] = static_cast<uint8_t>(rng());
            const bool want = reference_contains(nets, c.ip_version, a);
            ASSERT_EQ(b.contains(c.ip_version, a), want) << "round " << round << " probe " << k;
            in += want;
            ++checked;
        }
        // Both answers were exercised.
        EXPECT_GT(in, checked / 10);
        EXPECT_LT(in, checked - checked / 10);
    }
}

TEST(CustomerSet, MergesAdjacentNestedAndEdgeRanges) {
    const CustomerRanges r = build_customer_ranges(
        {net("10.0.0.0/25"), net("10.0.0.128/25"), net("10.0.1.0/24"), net("10.0.0.7"), net("10.0.3.0/24"),
         net("255.255.255.255"), net("255.255.255.254/32"), net("2001:db8::/33"), net("2001:db8:8000::/33"),
         net("2001:db8::1"), net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")});
    ASSERT_EQ(r.v4_lo.size(), 3u);  // 10.0.0.0-10.0.1.255, 10.0.3.0/24, 255.255.255.254-255
    EXPECT_EQ(r.v4_lo[0], 0x0a000000u);
    EXPECT_EQ(r.v4_hi[0], 0x0a0001ffu);
    EXPECT_EQ(r.v4_lo[2], 0xfffffffeu);
    EXPECT_EQ(r.v4_hi[2], 0xffffffffu);
    ASSERT_EQ(r.v6_lo.size(), 2u);  // 2001:db8::/32 in one, and the last address
    EXPECT_EQ(r.v6_hi[0], (U128{0x20010db8ffffffffull, UINT64_MAX}));
    EXPECT_EQ(r.prefixes, 11u);
    EXPECT_EQ(r.v4_prefixes, 7u);
    EXPECT_EQ(r.v6_prefixes, 4u);

    const Built all({net("0.0.0.0/0")});
    EXPECT_TRUE(all.view.contains_v4(0));
    EXPECT_TRUE(all.view.contains_v4(UINT32_MAX));
    EXPECT_FALSE(all.view.contains_v6({0, 1}));  // an IPv4 list holds no IPv6 address
    const Built six({net("::/0")});
    EXPECT_TRUE(six.view.contains_v6({UINT64_MAX, UINT64_MAX}));
    EXPECT_FALSE(six.view.contains_v4(1));
}

TEST(CustomerSet, EmptyListMetersEverything) {
    const Built b({});
    EXPECT_TRUE(b.view.empty());
    EXPECT_EQ(b.view.generation(), 1u);
    std::string summary;
    EXPECT_EQ(customer_set_problem({}, &summary), "");
    EXPECT_EQ(summary, "customers.networks empty: every packet is metered");
}

TEST(CustomerSet, ViewRefusesASlotThatCannotBeRead) {
    const CustomerRanges r = build_customer_ranges({net("192.0.2.0/24"), net("2001:db8::/48")});
    const uint64_t bytes = customer_slot_bytes(r.v4_lo.size(), r.v6_lo.size());
    std::vector<uint64_t> mem(bytes / 8 + 1, 0);
    auto* slot = reinterpret_cast<uint8_t*>(mem.data());
    CustomerSetView v;
    std::string why;
    EXPECT_FALSE(v.open(slot, bytes, &why));  // never written
    EXPECT_EQ(why, "the slot was never written");
    EXPECT_FALSE(write_customer_slot(slot, bytes - 1, r, 1)) << "does not fit";
    ASSERT_TRUE(write_customer_slot(slot, bytes, r, 7));
    EXPECT_FALSE(v.open(slot, bytes - 16, &why));
    EXPECT_EQ(why, "the slot's range counts run past its end");
    auto* hdr = reinterpret_cast<CustomerSlotHeader*>(slot);
    hdr->v4_ranges = 2;  // the bucket table still ends at 1
    EXPECT_FALSE(v.open(slot, bytes + 8, &why));
    hdr->v4_ranges = 1;
    ASSERT_TRUE(v.open(slot, bytes, &why)) << why;
    EXPECT_EQ(v.generation(), 7u);
    EXPECT_TRUE(v.contains_v4(0xc0000201u));
    EXPECT_FALSE(v.contains_v4(0xc0000301u));
}

TEST(CustomerSet, AListLargerThanTheSlotIsRefusedWithItsSize) {
    std::vector<Cidr> nets;
    for (int i = 0; i < 1000; ++i) nets.push_back(net(("10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".1").c_str()));
    std::string summary;
    const std::string p = customer_set_problem(nets, &summary, 64 << 10);
    EXPECT_EQ(summary, "customers.networks: 1000 prefixes (1000 IPv4, 0 IPv6) in 1000 ranges, 0.3 MiB");
    EXPECT_EQ(p, summary + ": more than the 0 MiB the meter holds for a set (aggregate prefixes)");
    EXPECT_EQ(customer_set_problem(nets, nullptr), "");
}

}  // namespace
}  // namespace angel
