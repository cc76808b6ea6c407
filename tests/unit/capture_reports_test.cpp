// capd's capture reports (capd/capture_reports.*) and procd's handling of them
// (procd/capture_progress.*): loss counts that add up exactly, held back while the ring is full;
// loss records rate-limited per cause; watermarks that never go back, also across a restart;
// every malformed report refused and counted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "capd/capture_reports.hpp"
#include "procd/capture_progress.hpp"

namespace angel {
namespace {

constexpr uint64_t kMs = 1'000'000ull;
constexpr uint64_t kT0 = 1'717'171'717'000'000'000ull;

struct Ring {
    explicit Ring(uint64_t bytes) : buf(bytes) {
        ctl.capacity = bytes;
        prod = PacketRing(&ctl, buf.data());
        cons = PacketRing(&ctl, buf.data());
    }
    RingControl ctl;
    std::vector<uint8_t> buf;
    PacketRing prod, cons;
};

struct Slot {
    PacketSlot hdr;
    std::vector<uint8_t> data;
};

std::vector<Slot> drain(PacketRing& c) {
    std::vector<Slot> out;
    const uint8_t* d = nullptr;
    while (const PacketSlot* s = c.next(&d)) out.push_back({*s, std::vector<uint8_t>(d, d + s->caplen)});
    c.commit();
    return out;
}

ReportedLoss loss_of(const Slot& s) {
    ReportedLoss l{};
    EXPECT_EQ(s.hdr.caplen, sizeof l);
    std::memcpy(&l, s.data.data(), sizeof l);
    return l;
}

TEST(CaptureReports, RingDropsWaitForRoomAndAddUpExactly) {
    Ring r(4096);
    CaptureReports rep(r.prod);
    rep.start(kT0);
    ASSERT_TRUE(rep.flush());
    const uint8_t payload[48] = {};
    uint64_t queued = 0, dropped = 0;
    for (uint64_t i = 0; i < 200; ++i) {
        rep.flush();
        PacketSlot s{kT0 + i, 60, sizeof payload, 1};
        if (r.prod.push(s, payload)) {
            ++queued;
        } else {
            rep.ring_drop(s.ts_ns);
            ++dropped;
        }
    }
    ASSERT_GT(dropped, 0u);
    EXPECT_FALSE(rep.flush()) << "the ring is still full";
    r.prod.publish();
    std::vector<Slot> got = drain(r.cons);
    ASSERT_TRUE(rep.flush());
    r.prod.publish();
    for (Slot& s : drain(r.cons)) got.push_back(s);
    // The start report first, then the packets, among them the ring_drop reports (a report is
    // smaller than a packet, so one may fit where the packet did not); they add up exactly.
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.front().hdr.linktype, kCaptureReport);
    EXPECT_EQ(got.front().hdr.wire_len, uint32_t(CaptureReport::start));
    EXPECT_EQ(got.front().hdr.ts_ns, kT0);
    uint64_t packets = 0, reports = 0, lost = 0, first = UINT64_MAX, last = 0;
    for (size_t i = 1; i < got.size(); ++i) {
        if (got[i].hdr.linktype != kCaptureReport) {
            ++packets;
            continue;
        }
        ++reports;
        ASSERT_EQ(got[i].hdr.wire_len, uint32_t(CaptureReport::loss));
        const ReportedLoss l = loss_of(got[i]);
        EXPECT_EQ(l.cause, uint8_t(LossCause::ring_drop));
        lost += l.packets;
        first = std::min(first, l.first_ns);
        last = std::max(last, l.last_ns);
    }
    EXPECT_EQ(packets, queued);
    EXPECT_GE(reports, 1u);
    EXPECT_EQ(lost, dropped);
    EXPECT_EQ(got.back().hdr.linktype, kCaptureReport) << "the last drops' report comes last";
    EXPECT_EQ(first, kT0 + queued);  // the first packet that found the ring full
    EXPECT_EQ(last, kT0 + 199);
    EXPECT_EQ(rep.reported(LossCause::ring_drop), dropped);
}

TEST(CaptureReports, PcapCounterDeltasBetweenReadingsAndProgressLast) {
    Ring r(4096);
    CaptureReports rep(r.prod);
    rep.start(kT0);
    rep.pcap_counters({100, 0, 0}, kT0 + 10 * kMs);   // nothing lost
    rep.pcap_counters({200, 5, 2}, kT0 + 20 * kMs);
    rep.pcap_counters({300, 12, 2}, kT0 + 30 * kMs);  // +7 pcap, if unchanged
    rep.progress(kT0 + 25 * kMs);
    rep.progress(kT0 + 15 * kMs);  // behind: ignored
    ASSERT_TRUE(rep.flush());
    r.prod.publish();
    const auto got = drain(r.cons);
    ASSERT_EQ(got.size(), 4u);
    const ReportedLoss pcap = loss_of(got[1]);
    EXPECT_EQ(pcap.cause, uint8_t(LossCause::pcap_drop));
    EXPECT_EQ(pcap.packets, 12u);
    EXPECT_EQ(pcap.first_ns, kT0 + 10 * kMs);  // the reading before the counter grew
    EXPECT_EQ(pcap.last_ns, kT0 + 30 * kMs);
    const ReportedLoss ifd = loss_of(got[2]);
    EXPECT_EQ(ifd.cause, uint8_t(LossCause::if_drop));
    EXPECT_EQ(ifd.packets, 2u);
    EXPECT_EQ(ifd.last_ns, kT0 + 20 * kMs);
    EXPECT_EQ(got[3].hdr.wire_len, uint32_t(CaptureReport::progress));
    EXPECT_EQ(got[3].hdr.ts_ns, kT0 + 25 * kMs);
    EXPECT_EQ(rep.reported(LossCause::pcap_drop), 12u);
    EXPECT_TRUE(rep.flush());  // nothing left
    r.prod.publish();
    EXPECT_TRUE(drain(r.cons).empty());
}

struct Collect : RecordSink {
    std::vector<Record> records;
    void emit(const Record& r) override { records.push_back(r); }
    void event(const Record&) override {}
    void publish() override {}
};

PacketSlot report_slot(CaptureReport k, uint64_t ts, uint16_t caplen = 0) {
    return PacketSlot{ts, uint32_t(k), caplen, kCaptureReport};
}

void loss_report(CaptureProgress& p, LossCause c, uint64_t first, uint64_t last, uint64_t n, uint64_t wall) {
    ReportedLoss l{};
    l.first_ns = first;
    l.last_ns = last;
    l.packets = n;
    l.cause = uint8_t(c);
    p.report(report_slot(CaptureReport::loss, last, sizeof l), reinterpret_cast<const uint8_t*>(&l), wall);
}

TEST(CaptureProgress, LossRecordsAtMostOnePerCausePerFlushInterval) {
    ExportProgress st;
    Collect out;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    CaptureProgress p(st, out, ctr, false);
    p.configure(10, 1000);
    const uint64_t wall = kT0 + 1000 * kMs;
    uint64_t mono = 5'000 * kMs;
    loss_report(p, LossCause::pcap_drop, kT0, kT0 + 1, 5, wall);
    EXPECT_TRUE(p.tick(mono));  // the first leaves at once
    loss_report(p, LossCause::pcap_drop, kT0 + 2, kT0 + 3, 7, wall);
    loss_report(p, LossCause::pcap_drop, kT0 + 4, kT0 + 5, 1, wall);
    loss_report(p, LossCause::ring_drop, kT0 + 4, kT0 + 9, 3, wall);
    EXPECT_TRUE(p.tick(mono + 1 * kMs));  // ring_drop: its first; pcap_drop held back
    EXPECT_EQ(p.wait_ms(mono + 1 * kMs, 100), 9);
    EXPECT_FALSE(p.tick(mono + 9 * kMs));
    EXPECT_TRUE(p.tick(mono + 10 * kMs));
    ASSERT_EQ(out.records.size(), 3u);
    auto check = [](const Record& r, LossCause c, uint64_t first, uint64_t last, uint64_t n) {
        EXPECT_EQ(r.type, uint8_t(RecordType::loss));
        EXPECT_EQ(r.loss.cause, uint8_t(c));
        EXPECT_EQ(r.loss.first_ns, first);
        EXPECT_EQ(r.ts_ns, last);
        EXPECT_EQ(r.loss.packets, n);
    };
    check(out.records[0], LossCause::pcap_drop, kT0, kT0 + 1, 5);
    check(out.records[1], LossCause::ring_drop, kT0 + 4, kT0 + 9, 3);
    check(out.records[2], LossCause::pcap_drop, kT0 + 2, kT0 + 5, 8);  // accumulated
    EXPECT_EQ(ctr[procd_loss_records].load(), 3u);
    // At the stop, what is held back leaves whatever the interval.
    loss_report(p, LossCause::pcap_drop, kT0 + 6, kT0 + 6, 2, wall);
    EXPECT_FALSE(p.tick(mono + 11 * kMs));
    EXPECT_TRUE(p.flush_all());
    ASSERT_EQ(out.records.size(), 4u);
    check(out.records[3], LossCause::pcap_drop, kT0 + 6, kT0 + 6, 2);
}

TEST(CaptureProgress, WatermarksEveryIntervalNeverBackAlsoAfterARestart) {
    ExportProgress st;
    Collect out;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    const uint64_t wall = kT0 + 1000 * kMs;
    uint64_t mono = 7'000 * kMs;
    {
        CaptureProgress p(st, out, ctr, false);
        p.configure(10, 1000);
        p.report(report_slot(CaptureReport::progress, kT0 + 100), nullptr, wall);
        EXPECT_TRUE(p.tick(mono));
        p.report(report_slot(CaptureReport::progress, kT0 + 200), nullptr, wall);
        EXPECT_FALSE(p.tick(mono + 999 * kMs));  // not yet: one per export.watermark_ms
        p.report(report_slot(CaptureReport::progress, kT0 + 150), nullptr, wall);  // behind: no effect
        EXPECT_TRUE(p.tick(mono + 1000 * kMs));
        EXPECT_FALSE(p.tick(mono + 5000 * kMs)) << "T did not move: no watermark";
    }
    ASSERT_EQ(out.records.size(), 2u);
    EXPECT_EQ(out.records[0].type, uint8_t(RecordType::watermark));
    EXPECT_EQ(out.records[0].ts_ns, kT0 + 100);
    EXPECT_EQ(out.records[1].ts_ns, kT0 + 200);
    EXPECT_EQ(st.watermark_ns.load(), kT0 + 200);
    // A successor on the same segment: a repeated report of an old T sends nothing.
    CaptureProgress q(st, out, ctr, false);
    q.configure(10, 1000);
    q.report(report_slot(CaptureReport::progress, kT0 + 180), nullptr, wall);
    EXPECT_FALSE(q.flush_all());
    q.report(report_slot(CaptureReport::progress, kT0 + 300), nullptr, wall);
    EXPECT_TRUE(q.tick(mono));
    ASSERT_EQ(out.records.size(), 3u);
    EXPECT_EQ(out.records[2].ts_ns, kT0 + 300);
    EXPECT_EQ(ctr[procd_watermarks].load(), 3u);
    // Off: none at all.
    q.configure(10, 0);
    q.report(report_slot(CaptureReport::progress, kT0 + 400), nullptr, wall);
    EXPECT_FALSE(q.flush_all());
}

TEST(CaptureProgress, CapdRestartIsAGapFromTheLastCaptureTimeToTheNewStart) {
    ExportProgress st;
    Collect out;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    CaptureProgress p(st, out, ctr, false);
    p.configure(10, 1000);
    const uint64_t wall = kT0 + 10'000 * kMs;
    p.report(report_slot(CaptureReport::start, kT0), nullptr, wall);  // the first capture: no gap
    p.covered(kT0 + 500 * kMs);
    EXPECT_FALSE(p.flush_all());
    p.report(report_slot(CaptureReport::start, kT0 + 800 * kMs), nullptr, wall);
    EXPECT_TRUE(p.flush_all());
    ASSERT_EQ(out.records.size(), 1u);
    EXPECT_EQ(out.records[0].loss.cause, uint8_t(LossCause::capd_restart));
    EXPECT_EQ(out.records[0].loss.first_ns, kT0 + 500 * kMs);
    EXPECT_EQ(out.records[0].ts_ns, kT0 + 800 * kMs);
    EXPECT_EQ(out.records[0].loss.packets, 0u);  // not known
    EXPECT_EQ(st.covered_ns.load(), kT0 + 800 * kMs);
}

TEST(CaptureProgress, MalformedReportsAreRefusedAndCounted) {
    ExportProgress st;
    Collect out;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    CaptureProgress p(st, out, ctr, false);
    p.configure(10, 1000);
    const uint64_t wall = kT0;
    const uint8_t junk[64] = {};
    p.report(report_slot(CaptureReport(9), kT0), nullptr, wall);                     // unknown kind
    p.report(report_slot(CaptureReport::progress, kT0, 8), junk, wall);              // progress with a body
    p.report(report_slot(CaptureReport::progress, kT0 + 2000 * kMs), nullptr, wall); // in the future
    p.report(report_slot(CaptureReport::loss, kT0, 16), junk, wall);                 // short body
    loss_report(p, LossCause::capd_restart, kT0, kT0, 1, wall);                      // not capd's to report
    loss_report(p, LossCause(77), kT0, kT0, 1, wall);                                // unknown cause
    loss_report(p, LossCause::pcap_drop, kT0 + 5, kT0, 1, wall);                     // first after last
    loss_report(p, LossCause::pcap_drop, kT0, kT0, 0, wall);                         // nothing lost
    loss_report(p, LossCause::ring_drop, kT0, kT0 + 3000 * kMs, 1, wall);            // in the future
    EXPECT_EQ(ctr[procd_bad_reports].load(), 9u);
    EXPECT_FALSE(p.flush_all());
    EXPECT_TRUE(out.records.empty());
}

}  // namespace
}  // namespace angel
