// Replay of every file in ../shared/pcaps/real through the whole pipeline (issue 3, "What this
// issue must show", first test): angel-ctld --replay -> capd -> procd -> netd -> IPFIX over UDP on
// loopback -> angel-sink, with the export captured by tcpdump. One parameterized test per file.
//
// Per file it checks:
//  1. angel-ctld exits 0 within 60 s; its final counter line accounts for every packet
//     (captured = queued = procd_packets = frames tshark reads, ring_dropped = 0,
//     ip_packets + not_ip + malformed = procd_packets, flows_started = flows_ended, no send
//     errors), and the sink got exactly what netd sent (records_sent lines; messages frames in
//     the capture).
//  2. The sink's records, per flow ID (IDs are reused by later flows once a flow ended, so each
//     ID runs a state machine): flow_start, then packets, then flow_end; the first packet after a
//     start is flagged new and carries the start's timestamp, later ones are not; flow_end's
//     packets, bytes, first_ns and last_ns equal what the packet records of that flow add up to;
//     no flow is left open; the sink reports no sequence gap, malformed message or unknown
//     template.
//  3. Per canonical bidirectional 5-tuple, the packets and bytes of the flow_end records (tuple
//     taken from the flow's flow_start; flows sharing a tuple -- TCP reuse after close, idle
//     splits -- are summed) equal what tshark counts in the same file (frames with an IP header,
//     frame.len), computed independently by angel::itest::tshark_flows with the field choices
//     of tshark_compare_test.cpp. The one interpretation that differs from tshark's raw output
//     is made explicit there: a later IPv4/IPv6 fragment has no ports in tshark's view (reassembly
//     off), the meter attributes it to its first fragment's ports (fragment cache), so the
//     expectation gives it the ports tshark showed for the first fragment of the same datagram.
//     Every mismatch is printed (file, tuple, ours vs tshark).
//  4. tshark decodes the captured export (decode-as "cflow", the NetFlow/IPFIX dissector) with
//     every frame recognised as IPFIX and no "Malformed", no error or warning expert info and no
//     "no template found" (what the dissector prints for a data set whose template it lacks).
//  5. Packet indexes (angelPacketIndex), as tshark decodes them from the captured export: per
//     flow, from its flow_start on, 0, 1, 2, ... without a gap or a repeat, the last one + 1 equal
//     to the flow_end's packet count in step 2; and the sink printed the same (flow ID, idx)
//     sequence. (Step 2 checks the sink's idx per flow the same way.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "export_capture.hpp"
#include "stream_reports.hpp"
#include "test_support.hpp"

namespace angel::itest {
namespace {

fs::path real_dir() { return shared_pcaps_dir("real"); }

// The parameter list: every file, or one empty path when the folder is missing or empty, so that
// the suite fails visibly instead of vanishing.
std::vector<fs::path> replay_files() {
    std::vector<fs::path> files = files_in(real_dir());
    if (files.empty()) files.emplace_back();
    return files;
}

std::string param_name(const testing::TestParamInfo<fs::path>& info) {
    if (info.param.empty()) return "MISSING_shared_pcaps_real";
    return sanitize_test_name(info.param.filename().string());
}

std::string tail(const std::string& s, size_t n = 3000) {
    return s.size() > n ? "..." + s.substr(s.size() - n) : s;
}

// Collects problems of one kind, prints them all (up to a limit) and fails once with the count.
class Problems {
public:
    Problems(std::string file, std::string what) : file_(std::move(file)), what_(std::move(what)) {}
    void add(const std::string& msg) {
        if (count_++ < kPrintLimit) std::printf("%s %s: %s\n", what_.c_str(), file_.c_str(), msg.c_str());
    }
    size_t count() const { return count_; }
    ~Problems() {
        if (count_ > kPrintLimit)
            std::printf("%s %s: ... %zu more not shown\n", what_.c_str(), file_.c_str(),
                        count_ - kPrintLimit);
        EXPECT_EQ(count_, 0u) << file_ << ": " << count_ << " " << what_ << " problem(s), printed above";
    }

private:
    static constexpr size_t kPrintLimit = 50;
    std::string file_, what_;
    size_t count_ = 0;
};

std::string volume_text(const Volume& v) {
    return std::to_string(v.packets) + " packets/" + std::to_string(v.bytes) + " bytes";
}

struct SinkAnalysis {
    FlowTable flows;  // per canonical tuple, from flow_end records
    uint64_t packet_records = 0, starts = 0, ends = 0;
    std::vector<std::pair<uint32_t, uint32_t>> packet_idx;  // (flow ID, idx) of every packet record
    StreamReports reports;  // loss and watermark records
    uint64_t max_packet_ts = 0;
};

// Step 2: per-ID state machines over the sink's records.
SinkAnalysis check_records(const std::string& file, const std::vector<std::string>& lines) {
    SinkAnalysis a;
    Problems bad(file, "ORDER");
    struct Live {
        FlowTuple tuple;
        uint64_t start_ts = 0;
        uint64_t packets = 0, bytes = 0;
        uint64_t min_ts = 0, max_ts = 0;
        size_t start_line = 0;
    };
    std::map<uint32_t, Live> live;
    for (size_t n = 0; n < lines.size(); ++n) {
        const std::string where = "line " + std::to_string(n + 1);
        std::string err;
        const auto r = parse_sink_line(lines[n], &err);
        if (!r) {
            bad.add(where + ": cannot parse (" + err + "): " + lines[n]);
            continue;
        }
        a.reports.line(lines[n]);
        const std::string id = "flow_id " + std::to_string(r->flow_id);
        auto it = live.find(r->flow_id);
        switch (r->type) {
            case SinkRecord::Type::loss:
            case SinkRecord::Type::watermark:
                break;  // judged below, in the test
            case SinkRecord::Type::flow_start: {
                ++a.starts;
                if (it != live.end()) {
                    bad.add(where + ": flow_start for " + id + " while the flow started on line " +
                            std::to_string(it->second.start_line + 1) + " has not ended");
                    live.erase(it);
                }
                const auto t = canonical_tuple(r->proto, r->src, r->sport, r->dst, r->dport);
                if (!t) {
                    bad.add(where + ": flow_start with unreadable addresses: " + lines[n]);
                    continue;
                }
                live[r->flow_id] = Live{*t, r->ts_ns, 0, 0, 0, 0, n};
                break;
            }
            case SinkRecord::Type::packet: {
                ++a.packet_records;
                if (it == live.end()) {
                    bad.add(where + ": packet for " + id + " which has no started, unended flow");
                    continue;
                }
                Live& l = it->second;
                const bool first = l.packets == 0;
                if (r->is_new != first)
                    bad.add(where + ": packet of " + id + " has new=" + (r->is_new ? "true" : "false") +
                            (first ? " but is the flow's first packet" : " but is not its first packet"));
                if (first && r->ts_ns != l.start_ts)
                    bad.add(where + ": first packet of " + id + " at " + std::to_string(r->ts_ns) +
                            ", flow_start at " + std::to_string(l.start_ts));
                if (r->idx != static_cast<uint32_t>(l.packets))
                    bad.add(where + ": packet of " + id + " has idx " + std::to_string(r->idx) +
                            ", the flow's packets before it: " + std::to_string(l.packets));
                a.packet_idx.emplace_back(r->flow_id, r->idx);
                a.max_packet_ts = std::max(a.max_packet_ts, r->ts_ns);
                l.min_ts = first ? r->ts_ns : std::min(l.min_ts, r->ts_ns);
                l.max_ts = first ? r->ts_ns : std::max(l.max_ts, r->ts_ns);
                ++l.packets;
                l.bytes += r->len;
                break;
            }
            case SinkRecord::Type::flow_end: {
                ++a.ends;
                if (it == live.end()) {
                    bad.add(where + ": flow_end for " + id + " which has no started, unended flow");
                    continue;
                }
                const Live& l = it->second;
                if (r->packets != l.packets || r->bytes != l.bytes)
                    bad.add(where + ": flow_end of " + id + " says " +
                            volume_text({r->packets, r->bytes}) + ", its packet records add up to " +
                            volume_text({l.packets, l.bytes}));
                if (l.packets == 0) bad.add(where + ": " + id + " ended without any packet");
                if (r->first_ns != l.start_ts)
                    bad.add(where + ": flow_end of " + id + " first_ns " + std::to_string(r->first_ns) +
                            " != flow_start ts " + std::to_string(l.start_ts));
                if (l.packets > 0 && r->last_ns != l.max_ts)
                    bad.add(where + ": flow_end of " + id + " last_ns " + std::to_string(r->last_ns) +
                            " != last packet ts " + std::to_string(l.max_ts));
                static const std::set<std::string> kReasons = {"idle", "tcp_close", "end_of_input",
                                                               "shutdown", "evicted"};
                if (!kReasons.count(r->reason))
                    bad.add(where + ": flow_end of " + id + " with reason \"" + r->reason + "\"");
                Volume& v = a.flows[l.tuple];
                v.packets += r->packets;
                v.bytes += r->bytes;
                live.erase(it);
                break;
            }
        }
    }
    for (const auto& [fid, l] : live)
        bad.add("flow_id " + std::to_string(fid) + " (" + l.tuple.describe() + ") started on line " +
                std::to_string(l.start_line + 1) + " never ended");
    return a;
}

// Step 3: ours vs tshark, per canonical tuple.
void compare_flows(const std::string& file, const FlowTable& ours, const FlowTable& theirs) {
    Problems diff(file, "MISMATCH");
    auto o = ours.begin();
    auto t = theirs.begin();
    while (o != ours.end() || t != theirs.end()) {
        if (t == theirs.end() || (o != ours.end() && o->first < t->first)) {
            diff.add(o->first.describe() + ": ours " + volume_text(o->second) + " | tshark none");
            ++o;
        } else if (o == ours.end() || t->first < o->first) {
            diff.add(t->first.describe() + ": ours none | tshark " + volume_text(t->second));
            ++t;
        } else {
            if (!(o->second == t->second))
                diff.add(o->first.describe() + ": ours " + volume_text(o->second) + " | tshark " +
                         volume_text(t->second));
            ++o, ++t;
        }
    }
}

// Step 4: tshark's verbose decode of the captured export.
void check_export_decode(const std::string& file, const ReplayResult& r) {
    const std::vector<std::string> argv = {
        "tshark", "-n", "-r", r.export_pcap.string(), "-d",
        "udp.port==" + std::to_string(r.port) + ",cflow", "-V"};
    const CommandResult res = run_command(argv, Millis(60000));
    ASSERT_TRUE(res.ok()) << file << ": " << command_line(argv) << ": " << res.describe();
    Problems bad(file, "EXPORT-DECODE");
    size_t frames = 0, ipfix = 0;
    std::string frame = "?";
    std::istringstream in(res.out);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Frame ", 0) == 0) {
            ++frames;
            frame = line.substr(0, line.find(':'));
        }
        if (line.rfind("Cisco NetFlow/IPFIX", 0) == 0) ++ipfix;
        std::string lower = line;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (line.find("Malformed") != std::string::npos ||
            line.find("Expert Info (Error") != std::string::npos ||
            line.find("Expert Info (Warn") != std::string::npos ||
            lower.find("no template") != std::string::npos ||
            lower.find("template not found") != std::string::npos)
            bad.add(frame + ": " + line);
    }
    EXPECT_EQ(frames, r.export_frames) << file << ": tshark read a different number of frames";
    EXPECT_EQ(ipfix, frames) << file << ": not every captured datagram decodes as IPFIX";
}

// Step 5: the packet indexes as tshark decodes them.
void check_export_indexes(const std::string& file, const ReplayResult& r, const SinkAnalysis& a) {
    const ExportCapture cap = read_export_capture(r.export_pcap, r.port, Millis(120000));
    ASSERT_TRUE(cap.error.empty()) << file << ": " << cap.error;
    Problems bad(file, "EXPORT-INDEX");
    std::map<uint32_t, int64_t> next;  // per live flow ID: the index its next packet must have
    std::vector<std::pair<uint32_t, uint32_t>> seen;
    size_t frame_no = 0;
    for (const ExportFrame& f : cap.frames) {
        ++frame_no;
        for (const ExportRecord& x : f.records) {
            const std::string where = "frame " + std::to_string(frame_no) + " flow_id " + std::to_string(x.flow_id);
            if (x.is_flow_start()) {
                next[x.flow_id] = 0;
            } else if (x.is_packet()) {
                if (x.packet_index < 0) {
                    bad.add(where + ": tshark shows no packet index");
                    continue;
                }
                seen.emplace_back(x.flow_id, static_cast<uint32_t>(x.packet_index));
                auto it = next.find(x.flow_id);
                if (it == next.end()) {
                    bad.add(where + ": packet before its flow_start");
                } else if (x.packet_index != it->second) {
                    bad.add(where + ": packet index " + std::to_string(x.packet_index) + ", expected " +
                            std::to_string(it->second));
                    it->second = x.packet_index + 1;
                } else {
                    ++it->second;
                }
            } else if (x.set_id == 259) {
                next.erase(x.flow_id);
            }
        }
    }
    EXPECT_EQ(seen.size(), a.packet_records) << file << ": packet records tshark decoded vs the sink's";
    EXPECT_TRUE(seen == a.packet_idx) << file << ": tshark's (flow ID, packet index) sequence differs from the sink's";
}

class PipelineReplay : public testing::TestWithParam<fs::path> {};

TEST(PipelineReplayInputs, RealPcapFolderAndTools) {
    EXPECT_TRUE(fs::is_directory(real_dir())) << "missing shared pcaps folder " << real_dir();
    EXPECT_FALSE(files_in(real_dir()).empty()) << "no files in " << real_dir();
    EXPECT_TRUE(have_program("tshark")) << "tshark is not installed";
    EXPECT_TRUE(have_program("tcpdump")) << "tcpdump is not installed";
    EXPECT_TRUE(fs::exists(binary("angel-ctld"))) << binary("angel-ctld") << " not built";
}

TEST_P(PipelineReplay, FlowsMatchTshark) {
    const fs::path pcap = GetParam();
    ASSERT_FALSE(pcap.empty()) << "missing or empty shared pcaps folder " << real_dir();
    ASSERT_TRUE(have_program("tshark")) << "tshark is not installed";
    ASSERT_TRUE(have_program("tcpdump")) << "tcpdump is not installed";
    const std::string file = pcap.filename().string();

    ReplayHarness harness("replay");
    ReplayOptions opt;
    opt.pcap = pcap;
    const ReplayResult r = harness.run(opt);
    for (const auto& p : r.problems) ADD_FAILURE() << file << ": " << p;

    // 1. ctld and the counters.
    EXPECT_TRUE(r.ctld_status.ok()) << file << ": angel-ctld " << r.ctld_status.describe()
                                    << "\n" << tail(r.ctld_stderr);
    ASSERT_TRUE(r.stop_line.has_value()) << file << ": no final counter line from angel-ctld\n"
                                         << tail(r.ctld_stderr);
    std::printf("COUNTERS %s: %s\n", file.c_str(), r.stop_line->c_str());
    for (const char* k : {"captured", "queued", "ring_dropped", "procd_packets", "ip_packets",
                          "not_ip", "malformed", "flows_started", "flows_ended", "records_sent",
                          "messages", "send_errors"})
        EXPECT_TRUE(r.counters.count(k)) << file << ": counter " << k << " missing: " << *r.stop_line;
    const uint64_t captured = r.counter("captured");
    EXPECT_EQ(r.counter("ring_dropped"), 0u) << file << ": replay must be lossless";
    EXPECT_EQ(r.counter("queued"), captured) << file;
    EXPECT_EQ(r.counter("procd_packets"), captured) << file;
    EXPECT_EQ(r.counter("ip_packets") + r.counter("not_ip") + r.counter("malformed"),
              r.counter("procd_packets"))
        << file << ": procd does not account for every packet";
    EXPECT_EQ(r.counter("flows_started"), r.counter("flows_ended")) << file;
    EXPECT_EQ(r.counter("send_errors"), 0u) << file;
    EXPECT_EQ(r.sink_lines.size(), r.counter("records_sent")) << file << ": sink lines vs records sent";
    EXPECT_EQ(r.export_frames, r.counter("messages")) << file << ": captured datagrams vs messages sent";

    // 2. Record order and per-flow consistency; the sink's own report.
    const SinkAnalysis a = check_records(file, r.sink_lines);
    EXPECT_EQ(a.packet_records, r.counter("ip_packets")) << file << ": packet records vs ip_packets";
    EXPECT_EQ(a.starts, r.counter("flows_started")) << file;
    EXPECT_EQ(a.ends, r.counter("flows_ended")) << file;
    // Replay: no loss, and one watermark, after the last packet record: T = the latest capture
    // time of the file + 1 ns (a file need not be in time order, so nothing earlier is proven).
    EXPECT_EQ(a.reports.loss_record_total(), 0u) << file << ": " << a.reports.describe();
    EXPECT_EQ(a.reports.watermarks, a.packet_records ? 1u : 0u) << file << ": " << a.reports.describe();
    EXPECT_EQ(r.counter("watermarks"), a.reports.watermarks) << file;
    if (a.packet_records) {
        EXPECT_GT(a.reports.last_watermark, a.max_packet_ts) << file;  // non-IP frames may be later
        EXPECT_EQ(a.reports.packets_after_last_watermark, 0u) << file;
    }
    EXPECT_EQ(a.packet_records + a.starts + a.ends + a.reports.watermarks, r.counter("records_sent")) << file;
    EXPECT_TRUE(r.sink_status.ok()) << file << ": angel-sink " << r.sink_status.describe();
    for (const char* bad : {"sequence gap", "sequence went back", "malformed message"})
        EXPECT_EQ(r.sink_err.find(bad), std::string::npos) << file << ": sink reports " << bad
                                                           << ":\n" << tail(r.sink_err);
    EXPECT_NE(r.sink_out.find("sequence         0 gaps, 0 records lost"), std::string::npos)
        << file << ": sink summary:\n" << r.sink_out;
    EXPECT_NE(r.sink_out.find(", malformed 0,"), std::string::npos) << file << ": " << r.sink_out;
    EXPECT_EQ(r.sink_out.find("unknown template"), std::string::npos) << file << ": " << r.sink_out;

    // 3. Flows against tshark's independent count.
    const TsharkFlows t = tshark_flows(pcap);
    ASSERT_TRUE(t.error.empty()) << file << ": " << t.error;
    EXPECT_EQ(t.frames, captured) << file << ": frames tshark reads vs frames capd captured";
    EXPECT_EQ(t.ip_frames, r.counter("ip_packets")) << file << ": IP frames tshark vs ip_packets";
    compare_flows(file, a.flows, t.flows);
    std::printf("RESULT %s: %zu tuples (tshark %zu), %llu flows, %llu IP packets (tshark %llu, "
                "%llu later fragments given their first's ports), %zu export datagrams\n",
                file.c_str(), a.flows.size(), t.flows.size(),
                static_cast<unsigned long long>(a.ends),
                static_cast<unsigned long long>(a.packet_records),
                static_cast<unsigned long long>(t.ip_frames),
                static_cast<unsigned long long>(t.later_fragments_with_first), r.export_frames);

    // 4. The export as tshark decodes it.
    check_export_decode(file, r);

    // 5. The packet indexes in it, as tshark reads them.
    check_export_indexes(file, r, a);
}

INSTANTIATE_TEST_SUITE_P(RealPcaps, PipelineReplay, testing::ValuesIn(replay_files()), param_name);

}  // namespace
}  // namespace angel::itest
