// Live capture end to end: tcpreplay sends real pcaps over a veth into the meter, and every
// packet sent is either a packet record at the sink or counted as dropped at a named place.
//
// Layout (all made by the test, all removed at the end, even on failure):
//   sender netns: tcpreplay -i veth-s ──veth──> meter netns: veth-m
//                                               angel-ctld (capd on veth-m, procd, netd)
//                                               └─ IPFIX over lo ─> angel-sink --out sink.json
// The veth carries only what tcpreplay sends: the fixture turns IPv6 off on both ends before
// they come up and sets no address, and the test checks it (veth-m received exactly the packets
// tcpreplay sent, and sent nothing itself).
//
// The chain of exact equalities asserted (no tolerance anywhere):
//   sent (tcpreplay)        == veth-m rx_packets delta          the link delivered every frame
//   sent                    == captured + pcap_dropped + pcap_ifdropped
//   pcap_received           == captured + pcap_dropped          nothing left unread at stop
//   captured                == queued + ring_dropped
//   procd_packets           == queued
//   procd_packets           == ip_packets + not_ip + malformed
//   sink packet records     == ip_packets                       (and no IPFIX sequence gap)
//   sink flow_start/flow_end== flows_started/flows_ended, all flows ended
//   sink records            == records_sent (packet, flow_start, flow_end, loss, watermark)
//   sink loss packets, cause pcap_drop == pcap_dropped   (libpcap ps_drop: the capture buffer was full)
//                      cause if_drop   == pcap_ifdropped (libpcap ps_ifdrop: the interface dropped)
//                      cause ring_drop == ring_dropped   (capd's packet ring was full)
//   sink loss/watermark records == procd's loss_records / watermarks counters
//   watermarks: at least one, never backwards, no packet record after one has an earlier time
// and, when nothing was dropped, ip_packets == tshark's IP frame count x loops and
// not_ip + malformed == the other frames x loops.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "meter_harness.hpp"
#include "stream_reports.hpp"

namespace angel::itest {
namespace {

using Clock = std::chrono::steady_clock;
using netns::NetnsLab;
using netns::NetnsPair;

struct PcapCounts {
    uint64_t frames = 0;
    uint64_t ip = 0;  // frames tshark decodes as IPv4 or IPv6
};

PcapCounts tshark_counts(const std::string& file) {
    const TsharkFrames t = tshark_frames(file, Millis(120000));
    if (!t.error.empty()) throw std::runtime_error("tshark failed on " + file + ": " + t.error);
    PcapCounts c;
    c.frames = t.frames.size();
    for (const auto& f : t.frames) c.ip += f.is_ip;
    return c;
}

struct LinkStats {
    uint64_t m_rx = 0, m_rx_dropped = 0, m_tx = 0, s_tx = 0, s_tx_dropped = 0;
    static LinkStats read(const NetnsPair& lab) {
        LinkStats l;
        l.m_rx = NetnsLab::link_stat(lab.meter(), NetnsPair::kMeterIf, "rx_packets");
        l.m_rx_dropped = NetnsLab::link_stat(lab.meter(), NetnsPair::kMeterIf, "rx_dropped");
        l.m_tx = NetnsLab::link_stat(lab.meter(), NetnsPair::kMeterIf, "tx_packets");
        l.s_tx = NetnsLab::link_stat(lab.sender(), NetnsPair::kSenderIf, "tx_packets");
        l.s_tx_dropped = NetnsLab::link_stat(lab.sender(), NetnsPair::kSenderIf, "tx_dropped");
        return l;
    }
    LinkStats operator-(const LinkStats& b) const {
        return {m_rx - b.m_rx, m_rx_dropped - b.m_rx_dropped, m_tx - b.m_tx, s_tx - b.s_tx,
                s_tx_dropped - b.s_tx_dropped};
    }
};

struct LiveCase {
    const char* name;
    int loops;              // tcpreplay --loop over the whole file list
    bool topspeed;          // else --pps=100000
    std::string capture_cfg;  // more keys in the meter's capture group
    std::string top_cfg;      // more top-level settings
    int pause_procd_ms = 0;   // SIGSTOP procd this long while traffic flows: the ring fills
    int stop_after_ms = 0;    // stop the meter this long after tcpreplay starts, mid-traffic
    bool expect_pcap_drops = false;  // the run must make libpcap drop
};

void run_live(const LiveCase& lc) {
    if (const std::string why = live_skip_reason({"tcpreplay", "tshark"}, true); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "no angel-ctld in " << bin_dir() << " (set ANGEL_BIN_DIR)";

    // What the files hold, by tshark (once per run of the binary).
    static PcapCounts per_loop;
    if (per_loop.frames == 0) {
        for (const auto& f : live_pcap_files()) {
            const PcapCounts c = tshark_counts(f);
            per_loop.frames += c.frames;
            per_loop.ip += c.ip;
        }
    }
    const uint64_t loops = static_cast<uint64_t>(lc.loops);

    NetnsMeter m("lt", "live");  // the namespaces are destroyed last, after the processes in them
    const NetnsPair& lab = m.lab;
    {
        MeterConfig conf = m.config(4739);
        conf.capture_extra = lc.capture_cfg;
        conf.extra = lc.top_cfg;
        m.write_config(conf);
    }

    const LinkStats before = LinkStats::read(lab);

    // The sink exits by itself 3 s after the last datagram: every datagram of the stop is read.
    ASSERT_TRUE(m.start_sink(4739, 3));
    Child& sink = *m.sinks[0];
    ASSERT_TRUE(m.start_meter()) << "the meter did not start capturing";
    Child& meter = *m.ctld;

    const auto t0 = Clock::now();
    m.start_traffic(static_cast<unsigned>(lc.loops), lc.topspeed ? "--topspeed" : "--pps=100000");
    Child& sender = *m.sender;
    if (lc.pause_procd_ms > 0) {
        const auto procd = number_after(m.log(), "started angel-procd (pid ");
        ASSERT_TRUE(procd.has_value()) << m.log();
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        kill(static_cast<pid_t>(*procd), SIGSTOP);
        std::this_thread::sleep_for(std::chrono::milliseconds(lc.pause_procd_ms));
        kill(static_cast<pid_t>(*procd), SIGCONT);
    }
    if (lc.stop_after_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(lc.stop_after_ms));
        ASSERT_TRUE(sender.running()) << "tcpreplay ended before the stop: make the run longer";
        meter.signal(SIGTERM);
    }
    ASSERT_TRUE(sender.wait(120)) << "tcpreplay did not finish within 120 s";
    const double send_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string tr_text = read_file(m.tcpreplay_out()) + read_file(m.tcpreplay_err());
    ASSERT_EQ(sender.exit_code(), 0) << "tcpreplay:\n" << tr_text;
    const TcpreplayCounts tr = parse_tcpreplay(tr_text);
    ASSERT_TRUE(tr.sent.has_value()) << "no packet count in tcpreplay's output:\n" << tr_text;
    const uint64_t sent = *tr.sent;
    const uint64_t failed = tr.failed.value_or(UINT64_MAX);

    // Let capd read the tail of the traffic (pcap timeout 10 ms), then stop in order.
    if (lc.stop_after_ms == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        meter.signal(SIGTERM);
    }
    ASSERT_TRUE(meter.wait(60)) << "angel-ctld did not stop within 60 s:\n" << m.log();
    EXPECT_EQ(meter.exit_code(), 0) << m.log();
    ASSERT_TRUE(sink.wait(30)) << "angel-sink did not go idle within 30 s";
    EXPECT_EQ(sink.exit_code(), 0) << read_file(m.sink_err(0));
    const LinkStats link = LinkStats::read(lab) - before;

    // The meter's own account.
    const std::string ctld_err = m.log();
    std::string stop_line;
    const auto counters = m.final_counters(&stop_line);
    ASSERT_TRUE(counters.has_value()) << "no final counter line:\n" << ctld_err;
    auto C = *counters;
    for (const char* k : {"captured", "queued", "ring_dropped", "pcap_received", "pcap_dropped", "pcap_ifdropped",
                          "procd_packets", "ip_packets", "not_ip", "malformed", "flows_started", "flows_ended",
                          "records_sent", "send_errors", "loss_records", "watermarks"})
        ASSERT_TRUE(C.count(k)) << "no " << k << " in: " << stop_line;

    // The sink's account.
    uint64_t rec_packet = 0, rec_start = 0, rec_end = 0, rec_other = 0;
    StreamReports reports;
    for (const std::string& line : read_lines(m.sink_out(0))) {
        if (reports.line(line)) continue;  // loss or watermark
        if (line.find("\"type\":\"packet\"") != std::string::npos)
            ++rec_packet;
        else if (line.find("\"type\":\"flow_start\"") != std::string::npos)
            ++rec_start;
        else if (line.find("\"type\":\"flow_end\"") != std::string::npos)
            ++rec_end;
        else
            ++rec_other;
    }
    const std::string summary = read_file(m.sink_summary(0));
    const uint64_t gaps = sink_sequence_gaps(summary);

    std::printf(
        "[ live    ] %s: %llu loops of %llu frames (%llu IP) in %.2f s%s\n"
        "[ live    ] tcpreplay: sent %llu, failed %llu | veth-m: rx %llu, rx_dropped %llu, tx %llu | "
        "veth-s: tx %llu, tx_dropped %llu\n"
        "[ live    ] capd: pcap_received %llu, captured %llu, pcap_dropped %llu, pcap_ifdropped %llu, "
        "queued %llu, ring_dropped %llu\n"
        "[ live    ] procd: packets %llu, ip %llu, not_ip %llu, malformed %llu, flows %llu started / %llu ended\n"
        "[ live    ] netd: records_sent %llu, messages %llu, send_errors %llu\n"
        "[ live    ] sink: packet %llu, flow_start %llu, flow_end %llu, other %llu, sequence gaps %llu\n"
        "[ live    ] sink: %s\n",
        lc.name, static_cast<unsigned long long>(loops), static_cast<unsigned long long>(per_loop.frames),
        static_cast<unsigned long long>(per_loop.ip), send_s,
        lc.topspeed ? " (top speed)" : " (100k pps)",
        static_cast<unsigned long long>(sent), static_cast<unsigned long long>(failed),
        static_cast<unsigned long long>(link.m_rx), static_cast<unsigned long long>(link.m_rx_dropped),
        static_cast<unsigned long long>(link.m_tx), static_cast<unsigned long long>(link.s_tx),
        static_cast<unsigned long long>(link.s_tx_dropped), static_cast<unsigned long long>(C["pcap_received"]),
        static_cast<unsigned long long>(C["captured"]), static_cast<unsigned long long>(C["pcap_dropped"]),
        static_cast<unsigned long long>(C["pcap_ifdropped"]), static_cast<unsigned long long>(C["queued"]),
        static_cast<unsigned long long>(C["ring_dropped"]), static_cast<unsigned long long>(C["procd_packets"]),
        static_cast<unsigned long long>(C["ip_packets"]), static_cast<unsigned long long>(C["not_ip"]),
        static_cast<unsigned long long>(C["malformed"]), static_cast<unsigned long long>(C["flows_started"]),
        static_cast<unsigned long long>(C["flows_ended"]), static_cast<unsigned long long>(C["records_sent"]),
        static_cast<unsigned long long>(C["messages"]), static_cast<unsigned long long>(C["send_errors"]),
        static_cast<unsigned long long>(rec_packet), static_cast<unsigned long long>(rec_start),
        static_cast<unsigned long long>(rec_end), static_cast<unsigned long long>(rec_other),
        static_cast<unsigned long long>(gaps), reports.describe().c_str());
    std::fflush(stdout);

    // tcpreplay sent the whole bounded run, and the link carried exactly that, nothing more.
    EXPECT_EQ(failed, 0u) << tr_text;
    EXPECT_EQ(sent, per_loop.frames * loops) << tr_text;
    EXPECT_EQ(link.m_rx, sent) << "veth-m received other frames than tcpreplay's (or lost some)";
    EXPECT_EQ(link.m_tx, 0u) << "the meter namespace sent frames on the test link";

    // Every packet sent was captured or dropped by the kernel capture, by name. Stopped
    // mid-traffic, the packets that came after the capture closed were not seen at all.
    if (lc.stop_after_ms == 0) {
        EXPECT_EQ(sent, C["captured"] + C["pcap_dropped"] + C["pcap_ifdropped"]);
    } else {
        EXPECT_GT(sent, C["captured"] + C["pcap_dropped"] + C["pcap_ifdropped"]);
    }
    EXPECT_EQ(C["pcap_received"], C["captured"] + C["pcap_dropped"]) << "packets received but never read";
    // Every captured packet was queued to procd or dropped at the full ring.
    EXPECT_EQ(C["captured"], C["queued"] + C["ring_dropped"]);
    EXPECT_EQ(C["procd_packets"], C["queued"]);
    EXPECT_EQ(C["procd_packets"], C["ip_packets"] + C["not_ip"] + C["malformed"]);
    // Every IP packet procd saw is a packet record at the sink.
    EXPECT_EQ(rec_packet, C["ip_packets"]);
    EXPECT_EQ(gaps, 0u) << summary;
    EXPECT_EQ(rec_start, C["flows_started"]);
    EXPECT_EQ(rec_end, C["flows_ended"]);
    EXPECT_EQ(C["flows_started"], C["flows_ended"]) << "flows still open after the stop";
    EXPECT_EQ(rec_packet + rec_start + rec_end + reports.loss_record_total() + reports.watermarks, C["records_sent"]);
    // Loss records: per cause, their packets add up exactly to the drop counters.
    EXPECT_EQ(reports.packets_of("pcap_drop"), C["pcap_dropped"]) << reports.describe();
    EXPECT_EQ(reports.packets_of("if_drop"), C["pcap_ifdropped"]) << reports.describe();
    EXPECT_EQ(reports.packets_of("ring_drop"), C["ring_dropped"]) << reports.describe();
    EXPECT_EQ(reports.loss_total(), C["pcap_dropped"] + C["pcap_ifdropped"] + C["ring_dropped"])
        << "loss of a cause that did not happen: " << reports.describe();
    EXPECT_EQ(reports.loss_record_total(), C["loss_records"]);
    EXPECT_EQ(reports.bad_loss, 0u);
    // Watermarks (every export.watermark_ms, 1000 by default; a final one at the stop).
    EXPECT_GT(reports.watermarks, 0u);
    EXPECT_EQ(reports.watermarks, C["watermarks"]);
    EXPECT_EQ(reports.watermark_backwards, 0u);
    EXPECT_EQ(reports.packets_behind, 0u);
    EXPECT_EQ(reports.packets_after_last_watermark, 0u) << "the stop's watermark covers every packet";
    for (const auto& e : reports.examples) ADD_FAILURE() << e;
    EXPECT_EQ(rec_other, 0u);
    EXPECT_EQ(C["send_errors"], 0u);
    // Nothing dropped: the meter saw exactly what tshark sees in the files.
    if (lc.pause_procd_ms > 0) {
        EXPECT_GT(C["ring_dropped"], 0u) << "procd paused, yet the ring never filled";
    }
    if (lc.expect_pcap_drops) {
        EXPECT_GT(C["pcap_dropped"], 0u) << "a tiny capture buffer at top speed, yet libpcap dropped nothing";
        EXPECT_GT(reports.loss_records["pcap_drop"], 0u);
    }
    if (lc.stop_after_ms == 0 && C["pcap_dropped"] == 0 && C["pcap_ifdropped"] == 0 && C["ring_dropped"] == 0) {
        EXPECT_EQ(C["ip_packets"], per_loop.ip * loops);
        EXPECT_EQ(C["not_ip"] + C["malformed"], (per_loop.frames - per_loop.ip) * loops);
    }
    if (::testing::Test::HasFailure()) std::printf("%s\n", ctld_err.c_str());
}

}  // namespace

// About 1.4 s at 100k packets/s: 50 loops of two real captures (2793 frames, 44 not IP).
TEST(LiveCapture, HundredKppsEveryPacketAccounted) {
    run_live({"HundredKppsEveryPacketAccounted", 50, false, "", ""});
}

// About 3 s at 100k packets/s with the default buffers: drops, if any, are reported and accounted.
TEST(LiveCapture, HundredKppsThreeSecondsDropsAccounted) {
    run_live({"HundredKppsThreeSecondsDropsAccounted", 110, false, "", ""});
}

// As fast as tcpreplay can send, into the smallest kernel buffer (512 KiB), the smallest packet
// ring (64 KiB) and whole frames (snaplen 65535), with procd frozen (SIGSTOP) for 300 ms so that
// the packet ring fills: drops at both places, and the accounting must still be exact.
TEST(LiveCapture, TopSpeedSmallBuffersDropsAccounted) {
    run_live({"TopSpeedSmallBuffersDropsAccounted", 100, true, "buffer_size = 524288; snaplen = 65535;",
              "shm = { packet_ring = 65536; };", 300, 0, true});
}

// The meter stopped while traffic still flows (100k packets/s): what the kernel had already
// accepted for the capture is read and counted before capd exits (pcap_received equals
// captured + pcap_dropped), and the chain below capd stays exact.
TEST(LiveCapture, StopUnderLoadLeavesNothingUncounted) {
    run_live({"StopUnderLoadLeavesNothingUncounted", 40, false, "", "", 0, 600});
}

// angel-capd restarted mid-traffic (angelctl restart capd, 100k packets/s): the time nothing was
// captured reaches the classifier as one loss record of cause capd_restart, from the latest
// capture time before to the new capture's start, with no packet record inside it; watermarks
// stay monotonic and never ahead of a later packet record across the restart.
TEST(LiveCapture, CapdRestartIsOneLossGapWithNoPacketInside) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "no angel-ctld in " << bin_dir() << " (set ANGEL_BIN_DIR)";
    NetnsMeter m("lr", "liverestart");
    m.write_config(m.config(4739));
    ASSERT_TRUE(m.start_sink(4739, 3));
    ASSERT_TRUE(m.start_meter()) << "the meter did not start capturing";
    m.start_traffic(60, "--pps=100000");  // about 1.7 s
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto r = angelctl(m.sock, {"restart", "capd"});
    ASSERT_TRUE(r.ok()) << r.describe();
    ASSERT_TRUE(m.wait_ready_count("capd", 2, 20)) << m.log();
    ASSERT_TRUE(m.sender->wait(60)) << "tcpreplay did not finish";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty());

    const std::vector<std::string> lines = read_lines(m.sink_out(0));
    StreamReports reports;
    uint64_t gap_first = 0, gap_last = 0, gaps = 0, packets = 0;
    for (const std::string& l : lines) {
        reports.line(l);
        if (json_field(l, "type") == "loss" && json_field(l, "cause") == "capd_restart") {
            ++gaps;
            gap_first = std::stoull(json_field(l, "first_ns"));
            gap_last = std::stoull(json_field(l, "last_ns"));
            EXPECT_EQ(json_field(l, "packets"), "0") << "not known: " << l;
        }
    }
    uint64_t inside = 0;
    for (const std::string& l : lines) {
        if (json_field(l, "type") != "packet") continue;
        ++packets;
        const uint64_t ts = std::stoull(json_field(l, "ts_ns"));
        if (ts > gap_first && ts < gap_last) ++inside;
    }
    std::printf("[ live    ] capd restart: %llu packet records, gap %.3f ms, %s\n",
                static_cast<unsigned long long>(packets), double(gap_last - gap_first) / 1e6,
                reports.describe().c_str());
    EXPECT_EQ(gaps, 1u) << reports.describe();
    EXPECT_LT(gap_first, gap_last);
    EXPECT_LT(gap_last - gap_first, 10'000'000'000ull) << "a gap of more than 10 s for one restart";
    EXPECT_EQ(inside, 0u) << "packet records inside the reported gap";
    EXPECT_GT(packets, 0u);
    EXPECT_EQ(reports.watermark_backwards, 0u);
    EXPECT_EQ(reports.packets_behind, 0u);
    EXPECT_EQ(reports.bad_loss, 0u);
    for (const auto& e : reports.examples) ADD_FAILURE() << e;
    if (::testing::Test::HasFailure()) std::printf("%s\n", m.log().c_str());
}

// angel-ctld killed (SIGKILL: its stages die with it) and started again while traffic flows:
// the new run adopts the segment (tests/integration/ctld_adoption_test.cpp checks the flows)
// and sends one loss record of cause ctld_restart, from the latest capture time the killed run
// had processed to the new capture's opening; no packet record of the new run lies inside it.
// The coverage file (for a segment that cannot be adopted) is there while running; an orderly
// stop removes it.
TEST(LiveCapture, CtldKilledAndRestartedReportsTheGap) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "no angel-ctld in " << bin_dir() << " (set ANGEL_BIN_DIR)";
    NetnsMeter m("lk", "livekill");
    m.write_config(m.config(4739));
    ASSERT_TRUE(m.start_sink(4739, 20));
    ASSERT_TRUE(m.start_meter()) << "the meter did not start capturing";
    const StatusView before = angelctl_status(m.sock);
    ASSERT_TRUE(before.ok) << before.raw;
    m.start_traffic(110, "--pps=100000");  // about 3 s
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    const std::string coverage = (m.dir / "run" / (m.scratch.instance + ".coverage")).string();
    ASSERT_TRUE(fs::exists(coverage)) << "no coverage file while running";
    m.ctld->signal(SIGKILL);
    ASSERT_TRUE(m.ctld->wait(5));
    const std::string first_log = m.log();
    // Its stages follow it (parent-death signal); the next run's need their locks.
    for (const auto& [name, st] : before.stages) {
        const auto pid = static_cast<pid_t>(st.pid);
        ASSERT_TRUE(wait_until_s([pid] { return kill(pid, 0) != 0; }, 10)) << name;
    }
    ASSERT_TRUE(fs::exists(coverage)) << "the killed run left no coverage file";
    ASSERT_TRUE(m.start_meter()) << "the meter did not start again";
    ASSERT_TRUE(m.sender->wait(60)) << "tcpreplay did not finish";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty());
    EXPECT_FALSE(fs::exists(coverage)) << "an orderly stop leaves the coverage file behind";
    EXPECT_NE(m.log().find("did not stop in order"), std::string::npos);

    const std::vector<std::string> lines = read_lines(m.sink_out(0));
    uint64_t gaps = 0, gap_first = 0, gap_last = 0, at = 0, gap_line = 0;
    for (const std::string& l : lines) {
        ++at;
        if (json_field(l, "type") == "loss" && json_field(l, "cause") == "ctld_restart") {
            ++gaps;
            gap_line = at;
            gap_first = std::stoull(json_field(l, "first_ns"));
            gap_last = std::stoull(json_field(l, "last_ns"));
            EXPECT_EQ(json_field(l, "packets"), "0") << l;
        }
    }
    // The second run's packet records (after the gap's record) all come after it, and the first
    // run's packets before the kill ended within 200 ms of where the gap starts.
    uint64_t inside = 0, first_run_last = 0, second_run = 0;
    at = 0;
    for (const std::string& l : lines) {
        ++at;
        if (json_field(l, "type") != "packet") continue;
        const uint64_t ts = std::stoull(json_field(l, "ts_ns"));
        if (at < gap_line) {
            first_run_last = std::max(first_run_last, ts);
        } else {
            ++second_run;
            if (ts < gap_last) ++inside;
        }
    }
    std::printf("[ live    ] ctld kill: gap %.3f ms, first run's last packet %.3f ms after its start, "
                "%llu packet records after it\n",
                double(gap_last - gap_first) / 1e6, (double(first_run_last) - double(gap_first)) / 1e6,
                static_cast<unsigned long long>(second_run));
    EXPECT_EQ(gaps, 1u);
    EXPECT_LT(gap_first, gap_last);
    EXPECT_LT(gap_last - gap_first, 10'000'000'000ull);
    EXPECT_GT(second_run, 0u);
    EXPECT_EQ(inside, 0u) << "packet records of the new run inside the reported gap";
    // The killed run noted its capture time at most every 100 ms (ctld's loop).
    EXPECT_LE(first_run_last, gap_first + 300'000'000ull) << "the gap starts too early";
    if (::testing::Test::HasFailure()) std::printf("%s\n----\n%s\n", first_log.c_str(), m.log().c_str());
}

}  // namespace angel::itest
