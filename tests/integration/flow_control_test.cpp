// Muting a flow mid-stream (issue 11, item 5, "must show"), on live traffic: one UDP flow of
// 100 packets a second sent by tcpreplay through a veth pair into the meter's namespace.
//  - MuteThroughDatabase: the classifier's row in angel.flow_control (a real PostgreSQL server,
//    pg_server.hpp) mutes the flow: no packet record captured later than 1 s after the row was
//    committed reaches the sink; the flow_end still counts every packet; procd counted each
//    record it held back; the master removed the row once the flow ended.
//  - MuteUnmuteThroughAngelctl: the same without a database, by angelctl mute and unmute:
//    records stop within 1 s of the mute and come back within 1 s of the unmute.
//  - LimitAppliesOnReload: export.packet_records_per_flow set by angelctl reload while the flow
//    runs cuts its packet records at exactly the new limit.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <fstream>

#include "meter_harness.hpp"
#include "pg_server.hpp"
#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr unsigned kPort = 4739;
constexpr unsigned kPps = 100;

// A classic pcap of n Ethernet/IPv4/UDP frames of one flow, 10.1.0.1:4000 -> 10.2.0.1:5000.
void write_one_flow_pcap(const fs::path& p, unsigned n) {
    std::ofstream f(p, std::ios::binary);
    put_pcap_header(f);
    uint8_t frame[14 + 20 + 8 + 64] = {};
    const uint8_t eth[14] = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00};
    std::memcpy(frame, eth, 14);
    uint8_t* ip = frame + 14;
    ip[0] = 0x45;
    ip[2] = 0;
    ip[3] = 20 + 8 + 64;
    ip[8] = 64;
    ip[9] = 17;
    const uint8_t src[4] = {10, 1, 0, 1}, dst[4] = {10, 2, 0, 1};
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
    set_ipv4_checksum(ip);
    uint8_t* udp = ip + 20;
    udp[0] = 4000 >> 8, udp[1] = 4000 & 0xff, udp[2] = 5000 >> 8, udp[3] = 5000 & 0xff;
    udp[5] = 8 + 64;
    for (unsigned i = 0; i < n; ++i) {
        put_pcap_record(f, 1700000000u + i / kPps, (i % kPps) * (1000000u / kPps), frame, sizeof frame);
    }
}

struct FlowSeen {
    uint32_t flow_id = 0;
    bool started = false;
    std::vector<uint64_t> packet_ts;  // capture times of the packet records
    std::vector<uint32_t> packet_idx;
    uint64_t end_packets = 0;
    bool ended = false;
    size_t flows = 0;
};

FlowSeen read_sink(const fs::path& out) {
    FlowSeen s;
    for (const std::string& line : read_lines(out)) {
        std::string err;
        const auto r = parse_sink_line(line, &err);
        if (!r) continue;
        if (r->type == SinkRecord::Type::flow_start) {
            ++s.flows;
            if (!s.started) s.flow_id = r->flow_id;
            s.started = true;
        } else if (r->type == SinkRecord::Type::packet && r->flow_id == s.flow_id) {
            s.packet_ts.push_back(r->ts_ns);
            s.packet_idx.push_back(r->idx);
        } else if (r->type == SinkRecord::Type::flow_end && r->flow_id == s.flow_id) {
            s.end_packets = r->packets;
            s.ended = true;
        }
    }
    return s;
}

size_t records_between(const FlowSeen& s, uint64_t from_ns, uint64_t to_ns) {
    size_t n = 0;
    for (uint64_t t : s.packet_ts) n += t > from_ns && t < to_ns;
    return n;
}

// Starts sink, meter and n packets at kPps; waits for the flow's first 150 packet records.
::testing::AssertionResult start_flow(NetnsMeter& m, unsigned n, FlowSeen* seen) {
    if (auto r = m.start_sink(kPort, 60); !r) return r;
    if (auto r = m.start_meter(); !r) return r;
    const fs::path pcap = m.dir / "one_flow.pcap";
    write_one_flow_pcap(pcap, n);
    m.start_traffic(1, "--pps=" + std::to_string(kPps), {pcap.string()});
    if (!wait_until_s([&] { *seen = read_sink(m.sink_out(0)); return seen->packet_ts.size() >= 150; }, 20, 0.05))
        return ::testing::AssertionFailure() << "the flow's records did not arrive:\n" << m.log();
    return ::testing::AssertionSuccess();
}

std::string skip_reason() { return live_skip_reason({"tcpreplay"}, false); }

TEST(FlowControl, MuteThroughDatabase) {
    if (const std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
    if (const std::string why = PgServer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    constexpr unsigned kPackets = 800;
    PgServer pg;
    NetnsMeter m("fcdb", "fcdb");
    const std::string meter_id = m.scratch.instance;
    m.write_config(m.config_with_database(kPort, pg.conninfo()));
    const CommandResult init = m.angelctl({"db-init"});
    ASSERT_TRUE(init.ok()) << init.describe();

    FlowSeen before;
    ASSERT_TRUE(start_flow(m, kPackets, &before));
    pg.query("INSERT INTO angel.flow_control (meter_id, flow_id, action) VALUES ('" + meter_id + "', " +
             std::to_string(before.flow_id) + ", 'mute')");
    const uint64_t row_ns = wall_clock_ns();  // committed
    // Taken up by ctld (angelctl stats shows it) while the flow still runs.
    ASSERT_TRUE(wait_until_s([&] { return m.angelctl({"stats"}).out.find("flow_control.database 1\n") != std::string::npos; }, 1.0))
        << m.angelctl({"stats"}).out;
    ASSERT_TRUE(m.sender->wait(30)) << "tcpreplay did not finish";
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();

    const FlowSeen s = read_sink(m.sink_out(0));
    ASSERT_TRUE(s.ended);
    EXPECT_EQ(s.flows, 1u);
    EXPECT_EQ(C["ip_packets"], kPackets) << "every packet sent was seen";
    EXPECT_EQ(s.end_packets, kPackets) << "the muted flow's flow_end counts every packet";
    EXPECT_EQ(records_between(s, row_ns + 1'000'000'000ull, UINT64_MAX), 0u)
        << "packet records more than 1 s after the row";
    EXPECT_LT(s.packet_ts.size(), kPackets / 2u) << "the mute held back nothing much";
    EXPECT_GE(s.packet_ts.size(), 150u);
    EXPECT_EQ(C["records_muted"], kPackets - s.packet_ts.size()) << "every record held back is counted";
    EXPECT_EQ(C["records_over_limit"], 0u);
    for (size_t i = 0; i < s.packet_idx.size(); ++i) EXPECT_EQ(s.packet_idx[i], i) << "records kept: the first ones";
    std::printf("[ mute    ] row at +%.3f s after the first record; last record +%.3f s; %zu of %u packet records sent\n",
                static_cast<double>(row_ns - s.packet_ts.front()) / 1e9,
                static_cast<double>(s.packet_ts.back() - s.packet_ts.front()) / 1e9, s.packet_ts.size(), kPackets);
    // The flow ended: the master removed its row.
    EXPECT_EQ(pg.query("SELECT count(*) FROM angel.flow_control")[0][0], "0");
}

TEST(FlowControl, MuteUnmuteThroughAngelctl) {
    if (const std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
    constexpr unsigned kPackets = 1000;
    NetnsMeter m("fcctl", "fcctl");
    m.write_config(m.config(kPort));
    FlowSeen before;
    ASSERT_TRUE(start_flow(m, kPackets, &before));
    const std::string id = std::to_string(before.flow_id);

    const CommandResult mute = m.angelctl({"mute", id});
    const uint64_t mute_ns = wall_clock_ns();
    ASSERT_TRUE(mute.ok()) << mute.describe();
    EXPECT_EQ(mute.out, "flow " + id + " muted\n");
    const std::string stats = m.angelctl({"stats"}).out;
    EXPECT_NE(stats.find("flow_control.local 1\n"), std::string::npos) << stats;
    EXPECT_NE(stats.find("flow_control.published 1\n"), std::string::npos) << stats;
    sleep_s(3.0);
    // Taken before the command: a packet captured while angelctl returns is already unmuted.
    const uint64_t unmute_ns = wall_clock_ns();
    const CommandResult unmute = m.angelctl({"unmute", id});
    ASSERT_TRUE(unmute.ok()) << unmute.describe();
    EXPECT_EQ(unmute.out, "flow " + id + " unmuted\n");

    // Refused or harmless: not a flow ID; a flow nobody muted.
    EXPECT_FALSE(m.angelctl({"mute", "x1"}).ok());
    EXPECT_FALSE(m.angelctl({"mute", "4294967296"}).ok());
    EXPECT_EQ(m.angelctl({"unmute", "12345"}).out, "flow 12345 not muted\n");
    EXPECT_EQ(m.angelctl({"mute", id, "--json"}).out, "{\"flow_id\":" + id + ",\"state\":\"muted\"}\n");
    ASSERT_TRUE(m.angelctl({"unmute", id}).ok());

    ASSERT_TRUE(m.sender->wait(30)) << "tcpreplay did not finish";
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();
    const FlowSeen s = read_sink(m.sink_out(0));
    ASSERT_TRUE(s.ended);
    EXPECT_EQ(C["ip_packets"], kPackets);
    EXPECT_EQ(s.end_packets, kPackets) << "flow_end counts every packet";
    EXPECT_EQ(records_between(s, mute_ns + 1'000'000'000ull, unmute_ns), 0u) << "records while muted";
    EXPECT_GT(records_between(s, unmute_ns + 1'000'000'000ull, UINT64_MAX), 0u) << "records did not come back";
    EXPECT_GT(C["records_muted"], 150u) << "about 3 s at 100 packets/s were muted";
    EXPECT_EQ(C["records_muted"] + s.packet_ts.size(), kPackets) << "every record held back is counted";
    // The indexes jump over the muted packets: the classifier sees how many it missed.
    size_t jumps = 0;
    for (size_t i = 1; i < s.packet_idx.size(); ++i) jumps += s.packet_idx[i] != s.packet_idx[i - 1] + 1;
    EXPECT_GE(jumps, 1u);
    EXPECT_LE(jumps, 2u);  // one mute, one short second mute (--json check above)
}

TEST(FlowControl, LimitAppliesOnReload) {
    if (const std::string why = skip_reason(); !why.empty()) GTEST_SKIP() << why;
    constexpr unsigned kPackets = 600, kLimit = 250;
    NetnsMeter m("fcrl", "fcrl");
    m.write_config(m.config(kPort));
    FlowSeen before;
    ASSERT_TRUE(start_flow(m, kPackets, &before));
    m.write_config(m.config(kPort, "127.0.0.1", "export = { packet_records_per_flow = " + std::to_string(kLimit) + "; };\n"));
    const CommandResult r = m.angelctl({"reload"});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_NE(r.out.find("export.packet_records_per_flow"), std::string::npos) << r.out;
    ASSERT_LT(read_sink(m.sink_out(0)).packet_ts.size(), kLimit) << "the flow passed the limit before the reload";
    ASSERT_TRUE(m.sender->wait(30)) << "tcpreplay did not finish";
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();
    const FlowSeen s = read_sink(m.sink_out(0));
    ASSERT_TRUE(s.ended);
    EXPECT_EQ(C["ip_packets"], kPackets);
    EXPECT_EQ(s.end_packets, kPackets);
    EXPECT_EQ(s.packet_ts.size(), kLimit);
    EXPECT_EQ(C["records_over_limit"], kPackets - kLimit);
}

}  // namespace
}  // namespace angel::itest
