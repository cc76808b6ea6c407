// angel-procd: packet ring in; parse, flow tracking in the FlowMap; record ring (to netd) and
// event ring (to ctld's database writer) out.
#include <sysexits.h>

#include <cstdio>
#include <cstring>

#include "common/flow_key.hpp"
#include "common/log.hpp"
#include "common/packet/parser.hpp"
#include "procd/customer_filter.hpp"
#include "procd/flow_control_applier.hpp"
#include "procd/capture_progress.hpp"
#include "procd/flow_tracker.hpp"
#include "procd/ring_sink.hpp"
#include "shm/sanitizer_stage_options.hpp"
#include "shm/stage_runtime.hpp"

using namespace angel;

namespace {

constexpr size_t kBatch = 256;        // packets between record publishes and packet commits
constexpr int kIdleWaitMs = 100;      // heartbeat pace while there is no traffic

FlowTimeouts timeouts_of(const LiveConfig& c) {
    return FlowTimeouts{uint64_t{c.flow_timeout_s} * 1000000000ull,
                        uint64_t{c.tcp_linger_s} * 1000000000ull};
}

void export_parse_counters(StageRuntime& rt, const PacketParser& parser) {
    const auto& c = parser.counters();
    uint64_t malformed = 0;
    for (size_t i = 0; i < c.by_status.size() && i < 10; ++i) {
        rt.set_counter(procd_parse_first + i, c.by_status[i]);
        auto st = static_cast<ParseStatus>(i);
        if (st != ParseStatus::ok && st != ParseStatus::not_ip) malformed += c.by_status[i];
    }
    rt.set_counter(procd_malformed, malformed);
    rt.set_counter(procd_not_ip, c.by_status[static_cast<size_t>(ParseStatus::not_ip)]);
}

}  // namespace

int main(int argc, char** argv) {
    StageRuntime rt(StageId::procd, "angel-procd", argc, argv);
    // Sandboxed before anything that carries traffic is mapped.
    rt.enter_sandbox(SandboxProfile::procd);
    rt.attach();
    const ControlBlock& control = rt.control();
    LiveConfig cfg = rt.segment().config();
    uint32_t cfg_gen = control.config.generation.load();
    const bool replay = cfg.replay_file[0] != '\0';

    const FlowIdKey key{cfg.id_key[0], cfg.id_key[1]};
    FlowMap map = rt.segment().flow_map();
    // Repairs indexes a killed predecessor may have left half-updated, with the bucket hash
    // FlowTracker::lookup() computes for every packet.
    map.recover({&flow_bucket_hash, key});
    PacketRing in = rt.segment().packet_ring();
    // What the predecessor counted and did not commit lies between the ring's committed
    // position and the map's counted_end, which cannot lie past what the ring holds (a value
    // there would make every packet a repeat): such a note is dropped.
    if (map.counted_end() > in.head_pos()) map.set_counted_end(in.tail_pos());
    RecordRing<Record> records = rt.segment().record_ring();
    RecordRing<Record> events = rt.segment().event_ring();
    // Map the rings' pages now rather than one page fault at a time on the packet path.
    rt.segment().prefault(Segment::Ring::packet, Segment::Access::read);
    rt.segment().prefault(Segment::Ring::record, Segment::Access::write);
    if (cfg.db_events) rt.segment().prefault(Segment::Ring::event, Segment::Access::write);
    RingSink sink(rt, records, events, cfg.db_events != 0);
    FlowTracker tracker(map, key, timeouts_of(cfg), sink, rt.status().counters, cfg.max_flows);
    tracker.set_record_limit(cfg.packet_records_per_flow);
    // Muted and full flows (angel.flow_control, angelctl mute): marked in their FlowEntry.
    FlowControlApplier flow_control(map);
    flow_control.reset(control.flow_control);
    // Customer networks (customers.networks): packets of nobody's network go no further.
    CustomerFilter customers(rt.segment());
    customers.poll();
    PacketParser parser;
    CaptureProgress progress(rt.header().progress, sink, rt.status().counters, replay);
    progress.configure(cfg.flush_ms, cfg.watermark_ms);
    // The gap of an unclean stop before this run, once per segment (not again after a restart).
    if (!replay && control.restart_gap_last.load() != 0 &&
        rt.header().progress.restart_gap_reported.load(std::memory_order_acquire) == 0) {
        progress.restart_gap(control.restart_gap_first.load(), control.restart_gap_last.load());
        if (progress.flush_all()) sink.publish();
        rt.header().progress.restart_gap_reported.store(1, std::memory_order_release);
    }
    if (!replay && control.adopted.load() != 0) progress.expect_adopted_gap();
    log_info("attached to instance %s: %u live flows in the FlowMap", rt.instance().c_str(), map.live());
    rt.ready();

    // FlowMap entries get memory (posix_fallocate) a step ahead of use. When /dev/shm has no
    // room, the map stays at its size (procd evicts there) and growth is retried every 10 s.
    uint64_t grow_retry_ns = 0;
    bool grow_failed = false;
    auto grow_flow_map = [&] {
        const uint32_t r = map.reserved();
        if (r >= map.capacity() || uint64_t{map.high_water()} + kFlowReserveStep / 2 < r) return;
        const uint64_t now = monotonic_ns();
        if (now < grow_retry_ns) return;
        const uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(map.capacity(), uint64_t{r} + kFlowReserveStep));
        const int rc = rt.segment().grow_flow_map(want);
        if (rc == 0) {
            if (grow_failed) log_notice("FlowMap grows again: %u entries reserved", map.reserved());
            grow_failed = false;
            return;
        }
        if (!grow_failed)
            log_err("cannot reserve memory for more than %u flows in /dev/shm: %s; flows beyond are evicted "
                    "(enlarge /dev/shm or lower flow.max_flows)", r, strerror(rc));
        grow_failed = true;
        grow_retry_ns = now + 10'000'000'000ull;
    };
    grow_flow_map();

    uint64_t trace_now = 0;        // latest capture timestamp seen (replay clock)
    uint64_t last_gc_trace = 0;
    uint64_t gc_seen = control.gc_request.load();
    const uint64_t gc_step = uint64_t{std::max<uint32_t>(cfg.gc_interval_s, 1)} * 1000000000ull;
    auto& stop = rt.header().stop;

    // One batch, in two passes: parse every packet and start its FlowMap lookup (bucket
    // prefetch), then do the flow work, prefetching the entry kEntryAhead packets ahead.
    // A lookup costs two dependent cache misses (bucket, entry) in a map far larger than the
    // caches; issued ahead, they overlap instead of stalling each packet in turn. Slots stay
    // valid until in.commit().
    struct Item {
        const PacketSlot* slot;
        uint64_t pos;
        ParsedPacket parsed;
        FlowTracker::Lookup lookup;
    };
    static Item batch[kBatch];
    bool repeat_planned = false;  // only the first batch can hold repeated packets
    constexpr size_t kEntryAhead = 4;
    for (;;) {
        size_t n = 0;  // packets taken from the ring
        size_t m = 0;  // of which IP packets of a customer, in batch[0..m)
        size_t filtered = 0;  // IP packets of no customer
        const uint8_t* data = nullptr;
        uint64_t pos = 0;
        // A capture report from capd ends the batch: it is handled after the packets ahead of it.
        const PacketSlot* report = nullptr;
        const uint8_t* report_data = nullptr;
        while (n < kBatch) {
            const PacketSlot* s = in.next(&data, &pos);
            if (!s) break;
            if (s->linktype == kCaptureReport) {
                report = s;
                report_data = data;
                break;
            }
            ++n;
            if (s->ts_ns > trace_now) trace_now = s->ts_ns;
            Item& it = batch[m];
            if (parser.parse(s->linktype, data, s->caplen, s->ts_ns, it.parsed) == ParseStatus::ok) {
                if (!customers.metered(it.parsed)) {
                    ++filtered;
                    continue;
                }
                it.slot = s;
                it.pos = pos;
                tracker.lookup(it.parsed, it.lookup);
                ++m;
            }
        }
        if (m > 0 && batch[0].pos < tracker.repeat_end() && !repeat_planned) {
            // The first batch after a predecessor was killed holds the packets it counted and
            // did not commit (its batch began at the same committed position and ended at the
            // same size or capture report): their flows and indexes are worked out before any
            // is repeated.
            std::vector<FlowTracker::Repeated> repeated;
            for (size_t i = 0; i < m && batch[i].pos < tracker.repeat_end(); ++i)
                repeated.push_back({batch[i].pos, batch[i].lookup.key, batch[i].lookup.hash});
            tracker.plan_repeat(repeated);
        }
        if (m > 0) repeat_planned = true;
        for (size_t i = 0; i < m; ++i) {
            if (i + kEntryAhead < m) tracker.prefetch_entry(batch[i + kEntryAhead].lookup);
            const Item& it = batch[i];
            tracker.packet(it.parsed, it.lookup, it.slot->ts_ns, it.slot->wire_len, it.pos);
        }
        if (!replay && n > 0) progress.covered(trace_now);
        if (report) progress.report(*report, report_data, realtime_ns());
        if (n > 0 || report) {
            grow_flow_map();  // at most kBatch new flows per batch: far less than the step
            rt.count(procd_packets, n);  // includes repeats after a predecessor's crash
            if (filtered) rt.count(procd_filtered, filtered);
            // In replay, expiry follows the trace clock so results do not depend on speed.
            if (replay && trace_now >= last_gc_trace + gc_step) {
                tracker.expire(trace_now);
                last_gc_trace = trace_now;
                rt.count(procd_gc_runs);
            }
            progress.tick(monotonic_ns());
            sink.publish();
            in.commit();  // only after the records of these packets are queued
            tracker.release_ended();
        }
        // Timer-driven expiry in live mode: ctld asks, procd does it (no shared lock).
        const uint64_t gc_req = control.gc_request.load(std::memory_order_acquire);
        if (gc_req != gc_seen) {
            gc_seen = gc_req;
            if (!replay) {
                // Not past a packet still waiting in the ring: its flow is not idle.
                uint64_t now = realtime_ns(), next_ts = 0;
                if (in.peek_ts(&next_ts) && next_ts < now) now = next_ts;
                tracker.expire(now);
                rt.count(procd_gc_runs);
                sink.publish();
                tracker.release_ended();
            }
        }
        // Becoming master: ctld asks, procd re-announces every live flow so that the new
        // master's stream names each flow it carries (docs/ha.md). A procd killed halfway
        // announces again after its restart: announced is only written once all are queued.
        const uint64_t ann = control.announce_request.load(std::memory_order_acquire);
        if (ann != rt.header().announced.load(std::memory_order_relaxed)) {
            const size_t k = tracker.announce_all(static_cast<uint32_t>(ann));
            sink.publish();
            rt.header().announced.store(ann, std::memory_order_release);
            rt.count(procd_flows_announced, k);
            log_info("re-announced %zu live flows for the new master's stream", k);
        }
        const uint32_t gen = control.config.generation.load(std::memory_order_acquire);
        if (gen != cfg_gen) {
            cfg_gen = gen;
            cfg = rt.segment().config();
            tracker.set_timeouts(timeouts_of(cfg));
            tracker.set_record_limit(cfg.packet_records_per_flow);
            progress.configure(cfg.flush_ms, cfg.watermark_ms);
        }
        // A changed mute/full set applies at the next loop turn (at most kIdleWaitMs away).
        flow_control.poll(control.flow_control);
        // A new customer set: the next batch is filtered with it, whole.
        customers.poll();
        rt.heartbeat();
        if (StageRuntime::terminate_requested()) {
            // Restart or kill by the operator: leave every flow in the FlowMap for the
            // successor; the batch above is already published and committed. Loss reports
            // held back by the rate limit leave now rather than with this process.
            if (progress.flush_all()) sink.publish();
            export_parse_counters(rt, parser);
            log_info("terminated; %u live flows stay in the FlowMap", map.live());
            return 0;
        }
        if (n == 0 && !report) {
            // Caught up: flows a predecessor had ended get their flow_end now if the
            // repeated batch did not already pass them.
            tracker.flush_retired(UINT64_MAX);
            progress.tick(monotonic_ns());  // a loss record held back by the rate limit
            sink.publish();
            tracker.release_ended();
            export_parse_counters(rt, parser);
            if (stop.capd_finished.load(std::memory_order_acquire) && !in.wait_for_data(0)) {
                break;  // upstream is done and everything it queued has been processed
            }
            in.wait_for_data(progress.wait_ms(monotonic_ns(), kIdleWaitMs));
        }
    }
    const EndReason why = stop.input_ended.load() ? EndReason::end_of_input : EndReason::shutdown;
    progress.flush_all();  // capd's last reports (the final watermark too), before the flow ends
    tracker.end_all(why);
    sink.publish();
    tracker.release_ended();
    export_parse_counters(rt, parser);
    stop.procd_finished.store(1, std::memory_order_release);
    rt.finished();
    log_info("finished: %llu flows ended in all (%s)",
             static_cast<unsigned long long>(rt.status().counters[procd_flows_ended].load()), end_reason_name(why));
    return 0;
}
