// export.packet_records_per_flow = 32 on the real captures (issue 11, item 5, "must show"):
// every file of ../shared/pcaps/real replayed twice through the whole meter, without the
// limit and with it, and compared.
//
// Per file:
//  1. the flows are the same: the same sequence of (flow ID, 5-tuple, first_ns) with the
//     same flow_end (packets, bytes, first and last seen, reason) in both runs; and the
//     limited run's flow_end totals per canonical tuple equal what tshark counts in the file;
//  2. with the limit, each flow has exactly min(32, its packets) packet records, with
//     indexes 0..31, in the sink and in the export as tshark decodes it;
//  3. procd counted every record it held back: records_over_limit = the sum over flows of
//     (packets - 32) where positive, and records_sent dropped by exactly that much.
// It prints the share of records saved per file ("SAVED <file>: ..."); ctest runs each file's
// test in a process of its own, so the total over the files is summed from those lines.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "export_capture.hpp"
#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr uint64_t kLimit = 32;
// Both runs compute the same flow IDs.
const std::string kIdKey = "flow = { id_key = \"000102030405060708090a0b0c0d0e0f\"; };\n";

struct Flow {
    uint32_t flow_id = 0;
    std::string tuple;
    uint64_t first_ns = 0, last_ns = 0, packets = 0, bytes = 0;
    std::string reason;
    uint64_t packet_records = 0;
    bool indexes_in_order = true;
    bool operator==(const Flow& o) const {
        return flow_id == o.flow_id && tuple == o.tuple && first_ns == o.first_ns && last_ns == o.last_ns &&
               packets == o.packets && bytes == o.bytes && reason == o.reason;
    }
    std::string describe() const {
        return "flow " + std::to_string(flow_id) + " " + tuple + " " + std::to_string(packets) + " packets/" +
               std::to_string(bytes) + " bytes, " + std::to_string(packet_records) + " packet records, " + reason;
    }
};

struct Flows {
    std::vector<Flow> ended;  // in flow_end order
    FlowTable by_tuple;       // flow_end totals per canonical tuple
    std::vector<std::string> problems;
};

Flows read_flows(const std::vector<std::string>& lines) {
    Flows out;
    std::map<uint32_t, Flow> live;
    std::map<uint32_t, FlowTuple> tuples;
    for (const std::string& line : lines) {
        std::string err;
        const auto r = parse_sink_line(line, &err);
        if (!r) {
            out.problems.push_back("cannot parse: " + line);
            continue;
        }
        // Loss and watermark records belong to no flow (a replay ends with one watermark).
        if (r->type == SinkRecord::Type::loss || r->type == SinkRecord::Type::watermark) continue;
        if (r->type == SinkRecord::Type::flow_start) {
            Flow f;
            f.flow_id = r->flow_id;
            f.tuple = std::to_string(r->proto) + " " + r->src + ":" + std::to_string(r->sport) + ">" + r->dst + ":" +
                      std::to_string(r->dport);
            live[r->flow_id] = f;
            if (auto t = canonical_tuple(r->proto, r->src, r->sport, r->dst, r->dport)) tuples[r->flow_id] = *t;
            continue;
        }
        auto it = live.find(r->flow_id);
        if (it == live.end()) {
            out.problems.push_back("record of a flow not started: " + line);
            continue;
        }
        Flow& f = it->second;
        if (r->type == SinkRecord::Type::packet) {
            if (r->idx != f.packet_records) f.indexes_in_order = false;
            ++f.packet_records;
            continue;
        }
        f.first_ns = r->first_ns;
        f.last_ns = r->last_ns;
        f.packets = r->packets;
        f.bytes = r->bytes;
        f.reason = r->reason;
        Volume& v = out.by_tuple[tuples[r->flow_id]];
        v.packets += r->packets;
        v.bytes += r->bytes;
        out.ended.push_back(f);
        live.erase(it);
    }
    for (const auto& [id, f] : live) out.problems.push_back("never ended: " + f.describe());
    return out;
}

// Packet records per flow (in flow_start order) as tshark decodes the export.
std::vector<uint64_t> tshark_packet_records(const ExportCapture& cap, std::vector<std::string>* problems) {
    std::vector<uint64_t> out;
    std::map<uint32_t, size_t> live;  // flow ID -> its slot in out
    for (const ExportFrame& f : cap.frames)
        for (const ExportRecord& x : f.records) {
            if (x.is_flow_start()) {
                live[x.flow_id] = out.size();
                out.push_back(0);
            } else if (x.is_packet()) {
                auto it = live.find(x.flow_id);
                if (it == live.end()) {
                    problems->push_back("tshark: packet of flow " + std::to_string(x.flow_id) + " before its start");
                    continue;
                }
                if (x.packet_index != static_cast<int64_t>(out[it->second]))
                    problems->push_back("tshark: flow " + std::to_string(x.flow_id) + " packet index " +
                                        std::to_string(x.packet_index) + ", expected " +
                                        std::to_string(out[it->second]));
                ++out[it->second];
            } else if (x.set_id == 259) {
                live.erase(x.flow_id);
            }
        }
    return out;
}

std::vector<fs::path> replay_files() {
    std::vector<fs::path> files = files_in(shared_pcaps_dir("real"));
    if (files.empty()) files.emplace_back();
    return files;
}

std::string param_name(const testing::TestParamInfo<fs::path>& info) {
    if (info.param.empty()) return "MISSING_shared_pcaps_real";
    return sanitize_test_name(info.param.filename().string());
}

double pct(uint64_t saved, uint64_t of) { return of ? 100.0 * static_cast<double>(saved) / static_cast<double>(of) : 0.0; }

class RecordsPerFlow : public testing::TestWithParam<fs::path> {};

TEST_P(RecordsPerFlow, LimitKeepsFlowTotalsAndCutsPacketRecords) {
    const fs::path pcap = GetParam();
    ASSERT_FALSE(pcap.empty()) << "missing or empty shared pcaps folder";
    ASSERT_TRUE(have_program("tshark")) << "tshark is not installed";
    const std::string file = pcap.filename().string();

    ReplayHarness harness("rpf");
    ReplayOptions full_opt;
    full_opt.pcap = pcap;
    full_opt.capture_export = false;
    full_opt.extra_config = kIdKey;
    const ReplayResult full = harness.run(full_opt);
    ReplayOptions lim_opt;
    lim_opt.pcap = pcap;
    lim_opt.extra_config = kIdKey + "export = { packet_records_per_flow = " + std::to_string(kLimit) + "; };\n";
    const ReplayResult lim = harness.run(lim_opt);
    for (const auto* r : {&full, &lim}) {
        for (const auto& p : r->problems) ADD_FAILURE() << file << ": " << p;
        ASSERT_TRUE(r->ctld_status.ok()) << file << ": angel-ctld " << r->ctld_status.describe();
        ASSERT_TRUE(r->stop_line.has_value()) << file << ": no final counter line";
        EXPECT_EQ(r->counter("send_errors"), 0u) << file;
        EXPECT_EQ(r->sink_lines.size(), r->counter("records_sent")) << file;
        EXPECT_NE(r->sink_out.find("sequence         0 gaps, 0 records lost"), std::string::npos)
            << file << ": " << r->sink_out;
    }

    // 1. The same flows, the same flow_end totals; and tshark's count of the file.
    const Flows a = read_flows(full.sink_lines), b = read_flows(lim.sink_lines);
    for (const auto& p : a.problems) ADD_FAILURE() << file << " (no limit): " << p;
    for (const auto& p : b.problems) ADD_FAILURE() << file << " (limit): " << p;
    ASSERT_EQ(a.ended.size(), b.ended.size()) << file << ": flows ended without vs with the limit";
    size_t differ = 0;
    for (size_t i = 0; i < a.ended.size(); ++i)
        if (!(a.ended[i] == b.ended[i]) && differ++ < 20)
            ADD_FAILURE() << file << ": " << a.ended[i].describe() << " | with the limit " << b.ended[i].describe();
    EXPECT_EQ(differ, 0u) << file << ": flow_end records that differ";
    EXPECT_EQ(lim.counter("ip_packets"), full.counter("ip_packets")) << file;
    const TsharkFlows t = tshark_flows(pcap);
    ASSERT_TRUE(t.error.empty()) << file << ": " << t.error;
    EXPECT_TRUE(b.by_tuple == t.flows) << file << ": flow_end totals with the limit differ from tshark's count";

    // 2. min(32, packets) packet records per flow, indexes 0.., in the sink and as tshark decodes.
    uint64_t over = 0, full_packet_records = 0, lim_packet_records = 0;
    for (size_t i = 0; i < b.ended.size(); ++i) {
        const Flow& f = b.ended[i];
        const uint64_t want = std::min(kLimit, f.packets);
        EXPECT_EQ(f.packet_records, want) << file << ": " << f.describe();
        EXPECT_TRUE(f.indexes_in_order) << file << ": " << f.describe();
        EXPECT_EQ(a.ended[i].packet_records, a.ended[i].packets) << file << " (no limit): " << a.ended[i].describe();
        over += f.packets - want;
        full_packet_records += a.ended[i].packet_records;
        lim_packet_records += f.packet_records;
    }
    const ExportCapture cap = read_export_capture(lim.export_pcap, lim.port, Millis(120000));
    ASSERT_TRUE(cap.error.empty()) << file << ": " << cap.error;
    std::vector<std::string> problems;
    const std::vector<uint64_t> per_flow = tshark_packet_records(cap, &problems);
    for (const auto& p : problems) ADD_FAILURE() << file << ": " << p;
    EXPECT_EQ(per_flow.size(), b.ended.size()) << file << ": flows tshark decoded";
    uint64_t tshark_total = 0;
    for (uint64_t n : per_flow) {
        EXPECT_LE(n, kLimit) << file;
        tshark_total += n;
    }
    EXPECT_EQ(tshark_total, lim_packet_records) << file << ": packet records tshark decoded vs the sink's";

    // 3. Counted: what was held back, and what netd sent less.
    EXPECT_EQ(lim.counter("records_over_limit"), over) << file;
    EXPECT_EQ(full.counter("records_over_limit"), 0u) << file;
    EXPECT_EQ(lim.counter("records_muted"), 0u) << file;
    EXPECT_EQ(full.counter("records_sent") - lim.counter("records_sent"), over) << file;

    const uint64_t rf = full.counter("records_sent"), rl = lim.counter("records_sent");
    std::printf("SAVED %s: %zu flows, records %llu -> %llu (%.1f%% saved), packet records %llu -> %llu (%.1f%% saved)\n",
                file.c_str(), b.ended.size(), static_cast<unsigned long long>(rf), static_cast<unsigned long long>(rl),
                pct(rf - rl, rf), static_cast<unsigned long long>(full_packet_records),
                static_cast<unsigned long long>(lim_packet_records), pct(full_packet_records - lim_packet_records,
                                                                          full_packet_records));
}

INSTANTIATE_TEST_SUITE_P(RealPcaps, RecordsPerFlow, testing::ValuesIn(replay_files()), param_name);

}  // namespace
}  // namespace angel::itest
