// The capture filter built from customers.networks, compiled by libpcap exactly as capd does,
// and run against crafted frames: traffic from or to a customer network passes (IPv4, IPv6,
// VLAN-tagged), other traffic does not, and an empty list means everything.
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstring>
#include <vector>

#include "common/config.hpp"
#include "ctld/live_config_builder.hpp"

using namespace angel;

namespace {

std::vector<uint8_t> eth_frame(bool v6, const uint8_t* src, const uint8_t* dst, bool vlan) {
    std::vector<uint8_t> f(12, 0x02);  // MAC addresses
    // push_back, not insert: GCC 12 -O3 warns (falsely) on vector::insert of short lists.
    auto put = [&](std::initializer_list<uint8_t> bytes) { for (uint8_t b : bytes) f.push_back(b); };
    auto put_n = [&](const uint8_t* p, size_t n) { for (size_t i = 0; i < n; ++i) f.push_back(p[i]); };
    if (vlan) put({0x81, 0x00, 0x00, 0x64});
    if (!v6) {
        put({0x08, 0x00});
        put({0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0});
        put_n(src, 4);
        put_n(dst, 4);
    } else {
        put({0x86, 0xdd});
        put({0x60, 0, 0, 0, 0, 8, 17, 64});
        put_n(src, 16);
        put_n(dst, 16);
    }
    put({0x13, 0x88, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00});  // UDP 5000 -> 53
    return f;
}

struct Filter {
    explicit Filter(const std::string& expr) {
        dead = pcap_open_dead(DLT_EN10MB, 65535);
        ok = pcap_compile(dead, &prog, expr.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0;
    }
    ~Filter() {
        if (ok) pcap_freecode(&prog);
        pcap_close(dead);
    }
    bool matches(const std::vector<uint8_t>& f) const {
        pcap_pkthdr h{};
        h.caplen = h.len = static_cast<bpf_u_int32>(f.size());
        return pcap_offline_filter(&prog, &h, f.data()) != 0;
    }
    pcap_t* dead;
    bpf_program prog{};
    bool ok = false;
};

std::vector<Cidr> nets(std::initializer_list<const char*> texts) {
    std::vector<Cidr> v;
    for (const char* t : texts) v.push_back(*parse_cidr(t));
    return v;
}

}  // namespace

TEST(CustomerFilter, EmptyListCapturesEverything) { EXPECT_EQ(customer_filter({}), ""); }

TEST(CustomerFilter, MatchesCustomerTrafficEitherWayAlsoTagged) {
    const std::string expr = customer_filter(nets({"192.0.2.0/24", "2001:db8:10::/48"}));
    Filter f(expr);
    ASSERT_TRUE(f.ok) << "libpcap refused: " << expr;
    const uint8_t cust4[4] = {192, 0, 2, 77}, other4[4] = {198, 51, 100, 1}, other4b[4] = {203, 0, 113, 9};
    uint8_t cust6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x10}, other6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x11};
    cust6[15] = 1;
    other6[15] = 2;
    for (bool vlan : {false, true}) {
        EXPECT_TRUE(f.matches(eth_frame(false, cust4, other4, vlan))) << "from a customer, vlan " << vlan;
        EXPECT_TRUE(f.matches(eth_frame(false, other4, cust4, vlan))) << "to a customer, vlan " << vlan;
        EXPECT_FALSE(f.matches(eth_frame(false, other4, other4b, vlan))) << "no customer, vlan " << vlan;
        EXPECT_TRUE(f.matches(eth_frame(true, cust6, other6, vlan))) << "v6 from a customer, vlan " << vlan;
        EXPECT_TRUE(f.matches(eth_frame(true, other6, cust6, vlan))) << "v6 to a customer, vlan " << vlan;
        EXPECT_FALSE(f.matches(eth_frame(true, other6, other6, vlan))) << "v6 no customer, vlan " << vlan;
    }
}
