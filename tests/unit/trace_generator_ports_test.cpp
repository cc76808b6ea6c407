// angel-gen-trace's client ports (tools/gen_trace/trace_generator.hpp): each host's ports are a
// permutation of Linux's ephemeral range 32768-60999 (so one host's flows never share a port),
// the permutation follows the seed's key, and the generated flows' ports are spread over the
// whole range, not handed out in sequence. (tests/integration/gen_trace_ports_test.cpp reads
// a generated trace back with tshark.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "tools/gen_trace/trace_generator.hpp"

namespace angel::gen {
namespace {

TEST(TraceGeneratorPorts, EachHostsPortsArePermutationOfTheRange) {
    static_assert(kEphemeralFirst == 32768 && kEphemeralLast == 60999 && kEphemeralPorts == 28232);
    for (const uint32_t host : {0u, 1u, 40503u, 65535u}) {
        std::vector<bool> used(kEphemeralPorts, false);
        for (uint32_t k = 0; k < kEphemeralPorts; ++k) {
            const uint16_t p = detail::ephemeral_port(0x1234'5678'9abc'def0ULL, host, k);
            ASSERT_GE(p, kEphemeralFirst);
            ASSERT_LE(p, kEphemeralLast);
            ASSERT_FALSE(used[p - kEphemeralFirst]) << "host " << host << " k " << k << " port " << p;
            used[p - kEphemeralFirst] = true;
        }
    }
}

TEST(TraceGeneratorPorts, FollowTheKeyAndSpread) {
    // The first port of 65536 hosts (a trace's first 65536 IPv4 flows): as many distinct ports
    // as independent uniform picks give (28232 * (1 - e^(-65536/28232)) = 25,460 expected), and
    // neighbouring hosts far apart (a uniform pick: a third of the range, 9,400, on average).
    for (const uint64_t key : {1ULL, 0xfeedULL}) {
        std::set<uint16_t> distinct;
        uint64_t jump = 0;
        uint16_t prev = detail::ephemeral_port(key, 0, 0);
        for (uint32_t host = 0; host < 65536; ++host) {
            const uint16_t p = detail::ephemeral_port(key, host, 0);
            distinct.insert(p);
            jump += static_cast<uint64_t>(std::abs(int{p} - int{prev}));
            prev = p;
        }
        EXPECT_GT(distinct.size(), 24'500u) << "key " << key;
        EXPECT_LT(distinct.size(), 26'500u) << "key " << key << ": more even than random picks";
        EXPECT_GT(jump / 65535, 8'000u) << "key " << key;
    }
    int same = 0;
    for (uint32_t host = 0; host < 1000; ++host)
        same += detail::ephemeral_port(1, host, 0) == detail::ephemeral_port(2, host, 0);
    EXPECT_LT(same, 10) << "another key, other ports";
}

}  // namespace
}  // namespace angel::gen
