#include "procd/capture_progress.hpp"

#include <algorithm>
#include <cstring>

namespace angel {

namespace {
// A capture time further ahead of procd's clock than this is a lie (or a clock step): refused.
constexpr uint64_t kFutureSlackNs = 1'000'000'000ull;
}

CaptureProgress::CaptureProgress(ExportProgress& state, RecordSink& out, CounterArray counters, bool replay)
    : st_(state), out_(out), ctr_(counters), replay_(replay) {
    covered_ = st_.covered_ns.load(std::memory_order_relaxed);
}

void CaptureProgress::configure(uint32_t flush_ms, uint32_t watermark_ms) {
    flush_ns_ = uint64_t{std::max<uint32_t>(flush_ms, 1)} * 1'000'000ull;
    watermark_every_ns_ = uint64_t{watermark_ms} * 1'000'000ull;
}

void CaptureProgress::accumulate(LossCause c, uint64_t first_ns, uint64_t last_ns, uint64_t packets) {
    Pending& p = loss_[static_cast<size_t>(c)];
    if (!p.any) {
        p.first_ns = first_ns;
        p.last_ns = last_ns;
        p.packets = 0;
        p.any = true;
    }
    p.first_ns = std::min(p.first_ns, first_ns);
    p.last_ns = std::max(p.last_ns, last_ns);
    p.packets += packets;
    loss_pending_ = true;
}

void CaptureProgress::report(const PacketSlot& s, const uint8_t* data, uint64_t wall_ns) {
    // Replay times are the file's, not the clock's: only live ones can be checked against now.
    const bool future = !replay_ && s.ts_ns > wall_ns + kFutureSlackNs;
    switch (static_cast<CaptureReport>(s.wire_len)) {
    case CaptureReport::progress:
        if (s.caplen != 0 || future) return bad_report();
        candidate_ = std::max(candidate_, s.ts_ns);
        return;
    case CaptureReport::start:
        if (s.caplen != 0 || future || replay_) return bad_report();
        // Nothing was captured from the latest time procd saw to the new capture's opening.
        // (The first capture of a segment has nothing before it: covered is 0.)
        if (covered_ != 0 && s.ts_ns > covered_) {
            if (adopted_gap_) {
                accumulate(LossCause::ctld_restart, covered_, s.ts_ns, 0);
                st_.adopted_gap_first_ns.store(covered_, std::memory_order_relaxed);
                st_.adopted_gap_last_ns.store(s.ts_ns, std::memory_order_relaxed);
                st_.restart_gap_reported.store(1, std::memory_order_release);
            } else {
                accumulate(LossCause::capd_restart, covered_, s.ts_ns, 0);
            }
        }
        adopted_gap_ = false;
        covered(s.ts_ns);
        return;
    case CaptureReport::loss: {
        ReportedLoss l;
        if (s.caplen != sizeof l) return bad_report();
        std::memcpy(&l, data, sizeof l);
        const auto c = static_cast<LossCause>(l.cause);
        const bool capd_cause = c == LossCause::pcap_drop || c == LossCause::if_drop || c == LossCause::ring_drop;
        if (!capd_cause || l.packets == 0 || l.first_ns > l.last_ns || (!replay_ && l.last_ns > wall_ns + kFutureSlackNs))
            return bad_report();
        accumulate(c, l.first_ns, l.last_ns, l.packets);
        return;
    }
    }
    bad_report();
}

bool CaptureProgress::due(uint64_t mono_ns) const {
    if (loss_pending_) {
        for (const Pending& p : loss_)
            if (p.any && (p.last_emit_mono == 0 || mono_ns >= p.last_emit_mono + flush_ns_)) return true;
    }
    return watermark_every_ns_ != 0 && candidate_ > st_.watermark_ns.load(std::memory_order_relaxed) &&
           (last_watermark_mono_ == 0 || mono_ns >= last_watermark_mono_ + watermark_every_ns_);
}

bool CaptureProgress::emit_due(uint64_t mono_ns, bool all) {
    bool any = false;
    if (loss_pending_) {
        loss_pending_ = false;
        for (size_t c = 0; c < std::size(loss_); ++c) {
            Pending& p = loss_[c];
            if (!p.any) continue;
            if (!all && p.last_emit_mono != 0 && mono_ns < p.last_emit_mono + flush_ns_) {
                loss_pending_ = true;  // held back by the rate limit, still accumulating
                continue;
            }
            Record r{};
            r.type = static_cast<uint8_t>(RecordType::loss);
            r.ts_ns = p.last_ns;
            r.loss.first_ns = p.first_ns;
            r.loss.packets = p.packets;
            r.loss.cause = static_cast<uint8_t>(c);
            out_.emit(r);
            ctr_[procd_loss_records].fetch_add(1, std::memory_order_relaxed);
            p.any = false;
            p.last_emit_mono = std::max<uint64_t>(mono_ns, 1);
            any = true;
        }
    }
    const uint64_t last = st_.watermark_ns.load(std::memory_order_relaxed);
    if (watermark_every_ns_ != 0 && candidate_ > last &&
        (all || last_watermark_mono_ == 0 || mono_ns >= last_watermark_mono_ + watermark_every_ns_)) {
        Record r{};
        r.type = static_cast<uint8_t>(RecordType::watermark);
        r.ts_ns = candidate_;
        out_.emit(r);
        // Noted once queued: a procd killed in between sends it again (the same T, not a lower one).
        st_.watermark_ns.store(candidate_, std::memory_order_relaxed);
        ctr_[procd_watermarks].fetch_add(1, std::memory_order_relaxed);
        last_watermark_mono_ = std::max<uint64_t>(mono_ns, 1);
        any = true;
    }
    return any;
}

int CaptureProgress::wait_ms(uint64_t mono_ns, int max_ms) const {
    uint64_t wait = uint64_t(max_ms) * 1'000'000ull;
    auto until = [&](uint64_t at) {
        wait = std::min(wait, at > mono_ns ? at - mono_ns : 0);
    };
    if (loss_pending_)
        for (const Pending& p : loss_)
            if (p.any) until(p.last_emit_mono + flush_ns_);
    if (watermark_every_ns_ != 0 && candidate_ > st_.watermark_ns.load(std::memory_order_relaxed))
        until(last_watermark_mono_ + watermark_every_ns_);
    return static_cast<int>((wait + 999'999) / 1'000'000);
}

}  // namespace angel
