#include "capd/capture_reports.hpp"

namespace angel {

namespace {
constexpr LossCause kCauseOf[] = {LossCause::pcap_drop, LossCause::if_drop, LossCause::ring_drop};
}

void CaptureReports::start(uint64_t open_ns) {
    start_ns_ = open_ns;
    start_pending_ = true;
    seen_ns_ = open_ns;
    any_ = true;
}

void CaptureReports::add(Slot s, uint64_t delta, uint64_t first_ns, uint64_t last_ns) {
    Pending& p = loss_[s];
    if (p.packets == 0) p.first_ns = first_ns;
    p.last_ns = last_ns;
    p.packets += delta;
    any_ = true;
}

void CaptureReports::pcap_counters(const PcapCounters& c, uint64_t now_ns) {
    // libpcap's counters only grow while the capture is open (Linux: it sums the kernel's
    // per-read deltas). A smaller value (a 32-bit ps_* wrapping) restarts the count from it.
    const uint64_t d = c.dropped >= seen_dropped_ ? c.dropped - seen_dropped_ : c.dropped;
    const uint64_t i = c.ifdropped >= seen_ifdropped_ ? c.ifdropped - seen_ifdropped_ : c.ifdropped;
    if (d) add(kPcap, d, seen_ns_, now_ns);
    if (i) add(kIf, i, seen_ns_, now_ns);
    seen_dropped_ = c.dropped;
    seen_ifdropped_ = c.ifdropped;
    seen_ns_ = now_ns;
}

bool CaptureReports::flush_slow() {
    if (start_pending_) {
        PacketSlot s{start_ns_, static_cast<uint32_t>(CaptureReport::start), 0, kCaptureReport};
        if (!ring_.push(s, nullptr)) return false;
        start_pending_ = false;
    }
    for (int k = 0; k < kSlots; ++k) {
        Pending& p = loss_[k];
        if (p.packets == 0) continue;
        ReportedLoss body{};
        body.first_ns = p.first_ns;
        body.last_ns = p.last_ns;
        body.packets = p.packets;
        body.cause = static_cast<uint8_t>(kCauseOf[k]);
        PacketSlot s{p.last_ns, static_cast<uint32_t>(CaptureReport::loss), sizeof body, kCaptureReport};
        if (!ring_.push(s, reinterpret_cast<const uint8_t*>(&body))) return false;
        reported_[k] += p.packets;
        p = Pending{};
    }
    if (progress_ns_ > progress_sent_ns_) {
        PacketSlot s{progress_ns_, static_cast<uint32_t>(CaptureReport::progress), 0, kCaptureReport};
        if (!ring_.push(s, nullptr)) return false;
        progress_sent_ns_ = progress_ns_;
    }
    any_ = false;
    return true;
}

uint64_t CaptureReports::reported(LossCause c) const {
    for (int k = 0; k < kSlots; ++k)
        if (kCauseOf[k] == c) return reported_[k];
    return 0;
}

}  // namespace angel
