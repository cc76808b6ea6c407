// angel-gen-trace's client ports as an independent reader sees them (issue 13 item 9): a trace
// of 100,000 flows, read back with tshark. In the order the flows first appear, the first 65,536
// use more than 20,000 distinct client ports (uniform random picks over the 28,232 ports of
// Linux's default ephemeral range give 25,460 on average; the generator used to give all of
// them one port), consecutive flows' ports are far apart (not handed out in sequence), every
// client port is inside 32768-60999, and the distinct 5-tuples are as many as the flows the
// generator says it made (no two flows share one).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>

#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr uint64_t kFlows = 100'000;

bool is_client(const std::string& addr) { return addr.rfind("198.18.", 0) == 0 || addr.rfind("2001:db8:c:", 0) == 0; }

TEST(GenTrace, ClientPortsSpreadOverEphemeralRange) {
    if (!have_program("tshark")) GTEST_SKIP() << "tshark not installed";
    TempDir dir("angel-gen-ports");
    const fs::path pcap = dir / "trace.pcap";
    const CommandResult g = run_command({binary("angel-gen-trace").string(), "--out", pcap.string(), "--packets",
                                         std::to_string(3 * kFlows), "--flows", std::to_string(kFlows), "--seed", "7"},
                                        Millis(60000));
    ASSERT_TRUE(g.ok()) << g.describe();
    const auto made = number_after(g.err, "packets, ");  // "N packets, M flows (...)"
    ASSERT_TRUE(made) << g.err;
    EXPECT_EQ(*made, kFlows) << g.err;

    const TsharkFrames t = tshark_frames(pcap, Millis(180000));
    ASSERT_EQ(t.error, "");
    ASSERT_EQ(t.frames.size(), 3 * kFlows);
    std::map<FlowTuple, uint16_t> client_port;  // per 5-tuple (canonical: either direction)
    std::vector<uint16_t> in_order;             // client port of each flow, in first-seen order
    uint64_t outside = 0, no_client = 0;
    for (const auto& f : t.frames) {
        ASSERT_TRUE(f.is_ip && (f.proto == 6 || f.proto == 17)) << f.line;
        const auto key = canonical_tuple(static_cast<int>(f.proto), f.src, static_cast<unsigned>(f.sport), f.dst,
                                         static_cast<unsigned>(f.dport));
        ASSERT_TRUE(key) << f.line;
        const bool from_client = is_client(f.src);
        if (!from_client && !is_client(f.dst)) ++no_client;
        const long port = from_client ? f.sport : f.dport;
        if (port < 32768 || port > 60999) ++outside;
        if (client_port.emplace(*key, static_cast<uint16_t>(port)).second) in_order.push_back(static_cast<uint16_t>(port));
    }
    EXPECT_EQ(no_client, 0u);
    EXPECT_EQ(outside, 0u) << "client ports outside 32768-60999";
    EXPECT_EQ(client_port.size(), *made) << "distinct 5-tuples vs the flows angel-gen-trace made";

    ASSERT_GE(in_order.size(), 65536u);
    const std::set<uint16_t> distinct(in_order.begin(), in_order.begin() + 65536);
    uint64_t jump = 0;
    for (size_t i = 1; i < 65536; ++i) jump += static_cast<uint64_t>(std::abs(int{in_order[i]} - int{in_order[i - 1]}));
    std::printf("[ ports ] first 65536 flows: %zu distinct client ports, %u..%u, mean jump %llu\n", distinct.size(),
                unsigned{*distinct.begin()}, unsigned{*distinct.rbegin()}, static_cast<unsigned long long>(jump / 65535));
    EXPECT_GT(distinct.size(), 20'000u);
    EXPECT_GT(jump / 65535, 5'000u) << "consecutive flows' ports close together: handed out in sequence";
}

}  // namespace
}  // namespace angel::itest
