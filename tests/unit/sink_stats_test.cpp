// angel-sink's summary (tools/sink/stats.*), fed DecodedRecords directly: the printed text is
// compared whole, so a change in counting, in the live-flow table or in the top-flow order shows.
// The expected texts of the first two tests were produced by the std::unordered_map version
// of Stats (before tools/sink/flow_table.*) and must stay byte-for-byte the same.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/ipfix.hpp"
#include "common/ipfix_decoder.hpp"
#include "tools/sink/stats.hpp"

namespace angel::sink {
namespace {

using ipfix::DecodedRecord;
using ipfix::RecordKind;

IpBytes addr(int family, const char* s) {
    IpBytes a{};
    EXPECT_EQ(inet_pton(family, s, a.data()), 1) << s;
    return a;
}

DecodedRecord start4(uint32_t id, const char* src, uint16_t sport, const char* dst, uint16_t dport,
                     uint8_t proto = 6) {
    DecodedRecord r;
    r.kind = RecordKind::flow_start;
    r.start.flow_id = id;
    r.start.ts_ns = 1000 + id;
    r.start.ip_version = 4;
    r.start.proto = proto;
    r.start.src = addr(AF_INET, src);
    r.start.dst = addr(AF_INET, dst);
    r.start.sport = sport;
    r.start.dport = dport;
    return r;
}

DecodedRecord start6(uint32_t id, const char* src, uint16_t sport, const char* dst, uint16_t dport,
                     uint8_t proto = 17) {
    DecodedRecord r = start4(id, "0.0.0.0", sport, "0.0.0.0", dport, proto);
    r.start.ip_version = 6;
    r.start.src = addr(AF_INET6, src);
    r.start.dst = addr(AF_INET6, dst);
    return r;
}

DecodedRecord packet(uint32_t id, uint32_t len) {
    DecodedRecord r;
    r.kind = RecordKind::packet;
    r.packet.flow_id = id;
    r.packet.wire_len = len;
    return r;
}

DecodedRecord end(uint32_t id, uint64_t pf, uint64_t pr, uint64_t bf, uint64_t br, uint8_t reason) {
    DecodedRecord r;
    r.kind = RecordKind::flow_end;
    r.end.flow_id = id;
    r.end.packets[0] = pf;
    r.end.packets[1] = pr;
    r.end.bytes[0] = bf;
    r.end.bytes[1] = br;
    r.end.reason = reason;
    return r;
}

void packets(Stats& s, uint32_t id, int n, uint32_t len) {
    for (int i = 0; i < n; ++i) s.on_record(packet(id, len));
}

std::string summary(const Stats& s) {
    char* buf = nullptr;
    size_t size = 0;
    FILE* f = open_memstream(&buf, &size);
    EXPECT_NE(f, nullptr);
    s.print(f, 1.5);
    std::fclose(f);
    std::string out(buf, size);
    std::free(buf);
    return out;
}

// Ties are the delicate part: equal packet counts among ended flows (end order), between ended
// and live flows (ended first), and among live flows (the most recently inserted first, which
// is what the unordered_map's iteration gave); an ID reused after its flow ended; a flow_start
// repeated for a live ID (resets it, keeps its place); records for unknown IDs.
TEST(SinkStats, SummaryWithTiesReuseAndUnknownIds) {
    Stats s;
    ipfix::MessageResult m;
    m.templates = 3;
    s.on_message(m, 1000);
    m = {};
    m.sequence_checked = true;
    m.sequence_gap = 7;
    s.on_message(m, 500);
    m.sequence_gap = -2;
    s.on_message(m, 400);
    m = {};
    m.status = ipfix::DecodeStatus::bad_set;
    m.unknown_sets = 2;
    m.unknown_set_bytes = 96;
    s.on_message(m, 300);
    s.on_malformed_datagram();

    s.on_record(start4(100, "192.0.2.1", 1234, "198.51.100.7", 80));
    s.on_record(start6(200, "2001:db8::1", 5353, "2001:db8::2", 53));
    packets(s, 100, 5, 100);
    packets(s, 200, 5, 60);
    packets(s, 999, 3, 70);  // never started: counted as packets, no flow
    s.on_record(end(100, 3, 2, 300, 200, ipfix::kReasonIdle));
    s.on_record(end(200, 5, 0, 300, 0, ipfix::kReasonTcpClose));
    s.on_record(end(300, 4, 3, 700, 0, 0));  // never started: reason 0 -> "unknown", no addresses

    s.on_record(start4(500, "10.0.0.5", 5000, "10.0.0.6", 443));
    packets(s, 500, 2, 1500);
    s.on_record(start4(100, "192.0.2.9", 4321, "198.51.100.8", 8080));  // 100 reused
    s.on_record(start4(400, "10.0.0.4", 4000, "10.0.0.6", 443, 17));
    s.on_record(start4(500, "10.0.0.55", 5500, "10.0.0.66", 22));  // repeated start: reset
    packets(s, 100, 5, 10);
    packets(s, 400, 5, 20);
    packets(s, 500, 5, 30);
    s.on_record(start4(600, "10.0.0.60", 6000, "10.0.0.61", 25));
    packets(s, 600, 9, 40);
    s.on_record(start4(700, "10.0.0.70", 7000, "10.0.0.71", 993));
    packets(s, 700, 1, 50);
    s.on_record(end(700, 1, 0, 50, 0, ipfix::kReasonEndOfInput));
    DecodedRecord other;
    s.on_record(other);

    EXPECT_EQ(s.gaps(), 1u);
    EXPECT_EQ(s.lost_records(), 7u);
    const std::string want =
        "\n=== angel-sink summary (1.5 s) ===\n"
        "IPFIX messages   4 (2200 bytes), malformed 2, template records 3\n"
        "records          53: packet 40, flow_start 8, flow_end 4, other 1\n"
        "unknown template 2 data sets (96 bytes) skipped: their templates never arrived\n"
        "flows            8 started, 4 ended (idle 1, tcp_close 1, end_of_input 1, shutdown 0, "
        "evicted 0), 4 still open\n"
        "packets          40 packet records, 4720 bytes on the wire\n"
        "ended flows      18 packets, 1550 bytes\n"
        "sequence         1 gaps, 7 records lost (plus out-of-order/restarted messages)\n"
        "top 8 flows by packets:\n"
        "  flow_id    proto source                                          destination        "
        "                                packets        bytes  end\n"
        "  600        6     10.0.0.60:6000                                  10.0.0.61:25       "
        "                                      9          360  (open)\n"
        "  300        0     ?                                               ?                  "
        "                                      7          700  unknown\n"
        "  100        6     192.0.2.1:1234                                  198.51.100.7:80    "
        "                                      5          500  idle\n"
        "  200        17    [2001:db8::1]:5353                              [2001:db8::2]:53   "
        "                                      5          300  tcp_close\n"
        "  400        17    10.0.0.4:4000                                   10.0.0.6:443       "
        "                                      5          100  (open)\n"
        "  100        6     192.0.2.9:4321                                  198.51.100.8:8080  "
        "                                      5           50  (open)\n"
        "  500        6     10.0.0.55:5500                                  10.0.0.66:22       "
        "                                      5          150  (open)\n"
        "  700        6     10.0.0.70:7000                                  10.0.0.71:993      "
        "                                      1           50  end_of_input\n";
    EXPECT_EQ(summary(s), want);
}

// More than ten ended flows: the list keeps the first-ended of equal counts at its tail, and a
// live flow with the same count as the last entry comes after it.
TEST(SinkStats, TopListKeepsEarliestEndedOfEqualCounts) {
    Stats s;
    for (uint32_t i = 0; i < 14; ++i) {
        const uint32_t id = 0x80000000u + i * 977;
        s.on_record(start4(id, "10.1.0.1", uint16_t(1000 + i), "10.2.0.1", 80));
        const uint64_t n = i < 4 ? 10 + i : 3;  // 10, 11, 12, 13, then ten flows of 3
        packets(s, id, int(n), 64);
        s.on_record(end(id, n, 0, n * 64, 0, ipfix::kReasonIdle));
    }
    s.on_record(start4(7, "10.9.0.1", 9, "10.9.0.2", 9));
    packets(s, 7, 3, 64);
    const std::string out = summary(s);
    const std::string tail =
        "  2147483648 6     10.1.0.1:1000                                   10.2.0.1:80        "
        "                                     10          640  idle\n"
        "  2147487556 6     10.1.0.1:1004                                   10.2.0.1:80        "
        "                                      3          192  idle\n"
        "  2147488533 6     10.1.0.1:1005                                   10.2.0.1:80        "
        "                                      3          192  idle\n"
        "  2147489510 6     10.1.0.1:1006                                   10.2.0.1:80        "
        "                                      3          192  idle\n"
        "  2147490487 6     10.1.0.1:1007                                   10.2.0.1:80        "
        "                                      3          192  idle\n"
        "  2147491464 6     10.1.0.1:1008                                   10.2.0.1:80        "
        "                                      3          192  idle\n"
        "  2147492441 6     10.1.0.1:1009                                   10.2.0.1:80        "
        "                                      3          192  idle\n";
    ASSERT_GE(out.size(), tail.size()) << out;
    EXPECT_EQ(out.substr(out.size() - tail.size()), tail) << out;
    EXPECT_NE(out.find("top 10 flows by packets:\n"), std::string::npos) << out;
    EXPECT_NE(out.find("1 still open"), std::string::npos) << out;
}

// Beyond 16 candidates the old std::sort was not stable, so this order is the one the table
// version defines: equal counts, most recently inserted first, whatever the IDs.
TEST(SinkStats, ManyLiveTiesNewestInsertedFirst) {
    Stats s;
    std::vector<uint32_t> ids;
    for (uint32_t i = 0; i < 40; ++i) {
        const uint32_t id = (i * 2654435761u) ^ 0x5bd1e995u;  // no relation to start order
        ids.push_back(id);
        s.on_record(start4(id, "10.3.0.1", uint16_t(2000 + i), "10.4.0.1", 443));
        packets(s, id, 4, 100);
    }
    // Every third flow ends (with fewer packets) and its ID comes back as a new flow: inserted
    // last, so those lead the ties, newest first.
    for (uint32_t i = 0; i < 40; i += 3) {
        s.on_record(end(ids[i], 2, 0, 200, 0, ipfix::kReasonIdle));
        s.on_record(start4(ids[i], "10.3.0.2", uint16_t(3000 + i), "10.4.0.1", 443));
        packets(s, ids[i], 4, 100);
    }
    std::string want;
    for (uint32_t i : {39, 36, 33, 30, 27, 24, 21, 18, 15, 12}) want += std::to_string(ids[i]) + " ";
    const std::string out = summary(s);
    std::string got;
    const std::string header = "  end\n";
    for (size_t at = out.find(header); at != std::string::npos && at + header.size() < out.size();) {
        at = out.find('\n', at) + 1;
        if (at == 0 || at >= out.size()) break;
        got += std::to_string(std::stoul(out.substr(at + 2, 10))) + " ";
    }
    EXPECT_EQ(got, want) << out;
    EXPECT_NE(out.find("top 10 flows"), std::string::npos) << out;
    EXPECT_NE(out.find("40 still open"), std::string::npos) << out;
}

// A full live-flow table: flow_starts of new IDs are counted (flows_table_full) and not stored,
// their packets still count in the totals; a repeated start of a live ID is no new flow; once a
// flow ends there is room again. The counter shows in the summary, with the limit.
TEST(SinkStats, FullFlowTableCountsNewFlowsNotStored) {
    Stats s(3);
    for (uint32_t id = 1; id <= 4; ++id) s.on_record(start4(id, "10.0.0.1", uint16_t(id), "10.0.0.2", 80));
    EXPECT_EQ(s.live_flows(), 3u);
    EXPECT_EQ(s.flows_table_full(), 1u);
    s.on_record(start4(2, "10.0.0.1", 22, "10.0.0.2", 80));  // live ID again: stored, not counted
    EXPECT_EQ(s.flows_table_full(), 1u);
    packets(s, 4, 3, 100);  // the flow not stored: totals only
    s.on_record(end(1, 1, 0, 60, 0, ipfix::kReasonIdle));
    s.on_record(start4(5, "10.0.0.1", 5, "10.0.0.2", 80));
    s.on_record(start4(6, "10.0.0.1", 6, "10.0.0.2", 80));
    EXPECT_EQ(s.live_flows(), 3u);
    EXPECT_EQ(s.flows_table_full(), 2u);
    const std::string out = summary(s);
    EXPECT_NE(out.find("flow table full  2 flow_start records of new flows not stored (limit 3 live "
                       "flows)\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("packets          3 packet records, 300 bytes on the wire\n"), std::string::npos)
        << out;
    EXPECT_NE(out.find("3 still open"), std::string::npos) << out;
    // Without overflow the line is absent (the usual summary is unchanged).
    EXPECT_EQ(summary(Stats()).find("flow table full"), std::string::npos);
}

}  // namespace
}  // namespace angel::sink
