// angel-capd: libpcap in (live interfaces or a replay file), packet ring out.
// Live capture never blocks on a full ring (drops and counts); replay blocks, so it is lossless.
#include <fcntl.h>
#include <sys/file.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "capd/capture_reports.hpp"
#include "capd/capture_source.hpp"
#include "common/log.hpp"
#include "shm/sanitizer_stage_options.hpp"
#include "shm/stage_runtime.hpp"

using namespace angel;

namespace {

// Packets per publish. Each publish may wake a sleeping procd (a futex system call on each
// side), so larger publishes cost less (measured: 2.05x -> 2.32x softflowd's replay rate
// going from 64 to 512). A replay read from a pipe or FIFO, though, blocks inside libpcap with
// the unpublished packets held back, so only a regular file gets the large batch. Live capture
// publishes at least at the end of every kernel block as well.
constexpr uint32_t kPublishEveryFile = 512;
constexpr uint32_t kPublishEvery = 64;
constexpr int kPollMs = 100;            // heartbeat and stop-check pace on a quiet link
constexpr uint64_t kDrainLimitNs = 2000000000ull;  // bound on reading the kernel buffer at stop
// A capture that has just come up empty has read every packet captured more than this long
// ago. Not less: with TPACKET_V3 a packet becomes readable only when the kernel retires its
// block (the 10 ms pcap timeout, on a timer of jiffy granularity), and the kernel stamps it when
// it is queued for the receive softirq, which a busy CPU may run milliseconds later.
constexpr uint64_t kProgressMarginNs = 100'000'000ull;
constexpr uint64_t kProgressEveryNs = 10'000'000ull;  // progress reports at most this often

void export_pcap_stats(StageRuntime& rt, const CaptureSource& src, CaptureReports& reports) {
    if (!src.live()) return;
    const PcapCounters c = src.stats();
    rt.set_counter(capd_pcap_received, c.received);
    rt.set_counter(capd_pcap_dropped, c.dropped);
    rt.set_counter(capd_pcap_ifdropped, c.ifdropped);
    reports.pcap_counters(c, realtime_ns());
}

}  // namespace

int main(int argc, char** argv) {
    StageRuntime rt(StageId::capd, "angel-capd", argc, argv);
    // As root, capd reads only the control object, which ctld alone writes: the interfaces,
    // the filter and the replay file it opens come from there, never from the data segment.
    LiveConfig cfg = rt.segment().config();
    const ControlBlock& control = rt.control();
    uint32_t cfg_gen = control.config.generation.load();

    // Taken before the capture opens: a packet the new capture holds was stamped after it, so
    // a restart's gap (procd reports it, up to this time) contains none of them.
    const uint64_t open_ns = realtime_ns();
    std::unique_ptr<CaptureSource> src;
    try {
        src = std::make_unique<CaptureSource>(cfg);
    } catch (const std::exception& e) {
        log_err("%s", e.what());
        return EX_NOINPUT;
    }
    // Capture is open: nothing below needs root. Only now the data segment is mapped.
    rt.enter_sandbox(SandboxProfile::capd);
    rt.attach();
    auto& stop = rt.header().stop;
    PacketRing ring = rt.segment().packet_ring();
    rt.segment().prefault(Segment::Ring::packet, Segment::Access::write);  // no fault per page later
    const bool replay = !src->live();
    CaptureReports reports(ring);
    if (!replay) reports.start(open_ns);
    // A restarted replay capd resumes after what its predecessor published.
    if (replay) {
        // A predecessor killed inside publish(): if the ring head reached the noted head,
        // those packets are visible to procd and the noted total is the published count.
        const uint64_t target = stop.replay_pending.load(std::memory_order_acquire);
        if (target && rt.header().packet_ring.head.load(std::memory_order_acquire) ==
                          stop.replay_pending_head.load(std::memory_order_relaxed))
            stop.replay_published.store(target, std::memory_order_release);
        stop.replay_pending.store(0, std::memory_order_release);
    }
    uint64_t skip = replay ? stop.replay_published.load() : 0;
    if (skip) log_info("resuming replay after %llu packets", static_cast<unsigned long long>(skip));
    if (replay)
        log_info("replaying %s%s", cfg.replay_file, src->reads_in_place() ? " (mapped, read in place)" : "");
    else
        log_info("capturing on %u interface(s), snaplen %u", cfg.interface_count, cfg.snaplen);
    rt.ready();

    uint32_t unpublished = 0;
    const uint32_t publish_every = replay && src->regular_file() ? kPublishEveryFile : kPublishEvery;
    uint64_t last_stats_ns = 0;
    uint64_t last_progress_ns = 0;
    uint64_t max_ts = 0;  // replay: latest capture time in the file so far
    CapturedPacket pkt{};
    // In replay, replay_published counts the file's packets that procd can see, so that a
    // restarted capd skips exactly those. A kill between the ring's publish and that count
    // must not make the successor queue packets twice: the pending count and the head it
    // leads to are noted first, and the successor checks the ring head against them.
    auto publish = [&] {
        if (replay && ring.pending()) {
            const uint64_t target = stop.replay_published.load(std::memory_order_relaxed) + unpublished;
            stop.replay_pending_head.store(ring.write_pos(), std::memory_order_relaxed);
            stop.replay_pending.store(target, std::memory_order_release);
            ring.publish();
            stop.replay_published.store(target, std::memory_order_release);
            stop.replay_pending.store(0, std::memory_order_release);
        } else {
            ring.publish();
        }
        unpublished = 0;
    };
    // A reload's values (flush_ms for the capture reports) apply at once.
    auto check_reload = [&] {
        const uint32_t gen = control.config.generation.load(std::memory_order_acquire);
        if (gen != cfg_gen) {
            cfg_gen = gen;
            cfg = rt.segment().config();
        }
    };
    auto take = [&](const CapturedPacket& p) {
        PacketSlot slot{p.ts_ns, p.wire_len, static_cast<uint16_t>(p.caplen), static_cast<uint16_t>(p.linktype)};
        if (replay && p.ts_ns > max_ts) max_ts = p.ts_ns;
        reports.flush();  // what waits for room goes ahead of this packet
        bool queued = ring.push(slot, p.data);
        // Counted once its bytes were read: a replay file cut short under capd (SIGBUS while
        // copying) leaves no packet counted as captured that was neither queued nor dropped.
        rt.count(capd_packets);
        rt.count(capd_bytes, p.wire_len);
        if (!queued && replay) {
            // Replay is lossless: wait for procd, still heartbeating and honouring stop.
            do {
                publish();
                rt.heartbeat();
                ring.wait_for_space(slot.caplen, 50);
                if (StageRuntime::terminate_requested() || control.stop_capture.load()) break;
            } while (!(queued = ring.push(slot, p.data)));
        }
        if (queued) {
            rt.count(capd_queued);
            if (++unpublished >= publish_every) {
                publish();
                rt.heartbeat();
            }
        } else {
            ring.count_drop();
            reports.ring_drop(p.ts_ns);
            // Dropping on a full ring is busy work, not a hang: keep the heartbeat going.
            rt.count(capd_ring_dropped);
            if ((rt.status().counters[capd_ring_dropped].load(std::memory_order_relaxed) & 0x3FF) == 0)
                rt.heartbeat();
        }
        if (!replay && (rt.status().counters[capd_packets].load(std::memory_order_relaxed) & 0xFFFF) == 0) {
            export_pcap_stats(rt, *src, reports);  // a busy link never reaches the idle branch above
            check_reload();
        }
    };
    bool input_ended = false;
    while (!control.stop_capture.load(std::memory_order_relaxed) && !StageRuntime::terminate_requested()) {
        const auto r = src->next(pkt, unpublished ? 0 : kPollMs);
        if (r == CaptureSource::Result::end) {
            input_ended = true;
            break;
        }
        if (r == CaptureSource::Result::none) {
            // Nothing to read: what was captured before now - margin is all in (or dropped).
            const uint64_t wall = realtime_ns();
            if (cfg.watermark_ms != 0 && wall >= last_progress_ns + kProgressEveryNs) {
                reports.progress(wall - kProgressMarginNs);
                last_progress_ns = wall;
            }
            const uint64_t now = monotonic_ns();
            // Read as often as loss reports may leave (export.flush_ms): they go out as they happen.
            if (now - last_stats_ns > std::max<uint64_t>(cfg.flush_ms, 10) * 1'000'000ull) {
                export_pcap_stats(rt, *src, reports);
                last_stats_ns = now;
            }
            reports.flush();
            publish();
            rt.heartbeat();
            check_reload();
            continue;
        }
        if (skip) {
            --skip;
            if (pkt.ts_ns > max_ts) max_ts = pkt.ts_ns;
            continue;
        }
        take(pkt);
    }
    if (!replay && control.stop_capture.load()) {
        // Orderly stop: packets the kernel already accepted (counted in pcap_received) are
        // read and counted too, not left unseen in the buffer. The socket first stops taking
        // new ones, so the drain ends when captured + dropped reaches received.
        src->stop_accepting();
        const uint64_t deadline = monotonic_ns() + kDrainLimitNs;
        int settled = 0;  // consecutive empty polls with the counts matching
        while (settled < 2 && monotonic_ns() < deadline) {
            if (src->next(pkt, 10) == CaptureSource::Result::packet) {
                take(pkt);
                settled = 0;
                continue;
            }
            const PcapCounters c = src->stats();
            const uint64_t captured = rt.status().counters[capd_packets].load();
            settled = captured + c.dropped >= c.received ? settled + 1 : 0;
        }
        // Drained: every packet the capture accepted has been read.
        if (settled >= 2 && cfg.watermark_ms != 0) reports.progress(realtime_ns());
    }
    // Replay: the file's timestamps need not be in order, so only its end proves that no
    // earlier packet follows (docs/protocol.md, Watermarks).
    if (input_ended && cfg.watermark_ms != 0 && max_ts != 0) reports.progress(max_ts + 1);
    export_pcap_stats(rt, *src, reports);
    // The last reports wait for room (bounded): the loss reports must add up to the counters.
    for (int i = 0; !reports.flush() && i < 40; ++i) {
        publish();
        rt.heartbeat();
        ring.wait_for_space(sizeof(ReportedLoss), 50);
        if (StageRuntime::terminate_requested() && !control.stop_capture.load()) break;
    }
    if (reports.pending()) log_warn("the packet ring stayed full: the last loss reports were not queued");
    publish();
    // Finished only when the meter stops or the input ended; a capd killed or restarted on its
    // own must not make procd end every flow.
    if (input_ended) stop.input_ended.store(1, std::memory_order_release);
    if (input_ended || control.stop_capture.load()) {
        stop.capd_finished.store(1, std::memory_order_release);
        rt.finished();
    }
    log_info("finished: %llu packets captured, %llu queued, %llu dropped at the ring; loss reported: "
             "pcap_drop %llu, if_drop %llu, ring_drop %llu",
             static_cast<unsigned long long>(rt.status().counters[capd_packets].load()),
             static_cast<unsigned long long>(rt.status().counters[capd_queued].load()),
             static_cast<unsigned long long>(rt.status().counters[capd_ring_dropped].load()),
             static_cast<unsigned long long>(reports.reported(LossCause::pcap_drop)),
             static_cast<unsigned long long>(reports.reported(LossCause::if_drop)),
             static_cast<unsigned long long>(reports.reported(LossCause::ring_drop)));
    return 0;
}
