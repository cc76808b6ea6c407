// angel-netd: record ring in, IPFIX over UDP out. A record leaves the ring (is committed)
// only once the message that carries it has been handed to the socket, so a netd killed at
// any moment loses nothing: its successor re-sends at most the one message in flight.
// A backup sends nothing and keeps the last ha.replay_ms of records in the ring instead; on
// becoming master it sends them again, flagged replayed, then the live stream (docs/ha.md).
#include <sysexits.h>
#include <time.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "common/log.hpp"
#include "netd/ipfix_exporter.hpp"
#include "netd/metrics_server.hpp"
#include "netd/replay_window.hpp"
#include "shm/sanitizer_stage_options.hpp"
#include "shm/stage_runtime.hpp"

using namespace angel;

namespace {

constexpr size_t kBatch = 512;
constexpr size_t kReplayBatch = 256;  // per 0.5 ms while replaying the window

// Packet time of the first packet record in [from, end), for the log; 0 if none.
uint64_t first_packet_ns(const RecordRing<Record>& ring, uint64_t from, uint64_t end) {
    for (uint64_t p = from; p < end; ++p)
        if (ring.at(p).type == static_cast<uint8_t>(RecordType::packet)) return ring.at(p).ts_ns;
    return 0;
}

constexpr uint64_t kAnnounceWaitNs = 2'000'000'000ull;  // procd down or slow: export anyway

IpfixExporterConfig exporter_config(const LiveConfig& c, HaRole role) {
    IpfixExporterConfig e;
    e.active = role != HaRole::backup;  // a backup sends nothing, templates included
    e.host = c.classifier_host;
    e.port = static_cast<uint16_t>(c.classifier_port);
    e.mtu = c.mtu;
    e.domain_id = c.domain_id;
    e.flush_ms = c.flush_ms;
    e.template_refresh_s = c.template_refresh_s;
    return e;
}

void export_counters(StageRuntime& rt, const IpfixExporter& x) {
    const auto& c = x.counters();
    rt.set_counter(netd_messages, c.messages_sent);
    rt.set_counter(netd_records_sent, c.records_sent);
    rt.set_counter(netd_bytes, c.bytes_sent);
    rt.set_counter(netd_send_errors, c.send_errors);
    rt.set_counter(netd_templates, c.templates_sent);
    rt.set_counter(netd_datagrams_failed, c.datagrams_failed);
    rt.set_counter(netd_records_lost, c.records_lost);
}

}  // namespace

int main(int argc, char** argv) {
    StageRuntime rt(StageId::netd, "angel-netd", argc, argv);
    // Sandboxed before anything that carries traffic is mapped.
    rt.enter_sandbox(SandboxProfile::netd);
    rt.attach();
    const ControlBlock& control = rt.control();
    LiveConfig cfg = rt.segment().config();
    uint32_t cfg_gen = control.config.generation.load();
    RecordRing<Record> ring = rt.segment().record_ring();
    rt.segment().prefault(Segment::Ring::record, Segment::Access::read);  // no fault per page later
    auto& stop = rt.header().stop;
    auto role_now = [&] { return static_cast<HaRole>(control.role.load(std::memory_order_acquire)); };
    HaRole role = role_now();

    std::unique_ptr<IpfixExporter> x;
    try {
        x = std::make_unique<IpfixExporter>(exporter_config(cfg, role), &rt.header().ipfix_sequence);
    } catch (const std::exception& e) {
        log_err("cannot export to %s:%u: %s", cfg.classifier_host, cfg.classifier_port, e.what());
        return EX_NOHOST;
    }
    log_info("exporting IPFIX to %s (messages up to %zu bytes)", x->destination().c_str(),
             x->max_message_size());
    // metrics.listen: ctld passed its listening socket as descriptor 6 (docs/operations.md).
    std::unique_ptr<MetricsServer> metrics;
    if (MetricsServer::is_listener(kStageMetricsFd)) {
        metrics = std::make_unique<MetricsServer>(kStageMetricsFd, control.metrics);
        log_info("serving /metrics on the socket ctld passed");
    }
    // The scrapes are answered between batches, at most every kMetricsPollNs: the export loop
    // never waits for a client (netd/metrics_server.hpp).
    constexpr uint64_t kMetricsPollNs = 5'000'000;
    uint64_t next_metrics_poll = 0;
    auto serve_metrics = [&] {
        if (!metrics) return;
        const uint64_t now = IpfixExporter::monotonic_ns();
        if (now < next_metrics_poll) return;
        next_metrics_poll = now + kMetricsPollNs;
        metrics->poll(now);
        rt.set_counter(netd_metrics_scrapes, metrics->served());
        rt.set_counter(netd_metrics_refused, metrics->refused());
    };
    rt.ready();

    // The first record of the message being packed (what may be committed while it is pending).
    uint64_t pending_from = ring.read_pos();
    uint64_t high_water = ring.read_pos();  // past the last record ever read (replay reads again)
    // While not exporting, what was read stays in the ring as the replay window (ReplayWindow).
    ReplayWindow window;
    window.start(ring.read_pos());
    // procd blocks when the ring is full, and capture behind it: the window leaves it a quarter.
    const uint64_t max_window = ring.capacity() - ring.capacity() / 4;
    ReplayWindow::Released trimmed_since_backup;  // the window's incompleteness, told on promotion
    uint64_t replay_end = 0;  // records before this position are sent flagged replayed
    // After becoming master, the live stream starts at procd's announce record of this generation
    // (followed by a flow_start for every live flow); the window kept before it is replayed first
    // (docs/ha.md).
    bool awaiting_announce = false;
    uint64_t awaiting_since = 0;
    auto exporting = [&] { return role == HaRole::master && !awaiting_announce; };
    auto window_ns = [&] { return uint64_t(cfg.replay_ms) * 1'000'000ull; };
    auto idle_ms = [&] { return static_cast<int>(std::clamp<uint32_t>(cfg.flush_ms, 1, 100)); };
    // From the window's first record to the live point `end`: sent again, flagged replayed.
    auto replay_up_to = [&](uint64_t end) {
        const uint64_t from = window.begin();
        if (cfg.replay_ms == 0 || from >= end) return;
        replay_end = end;
        ring.rewind_to(from);
        const uint64_t first_ns = first_packet_ns(ring, from, end);
        log_notice("master: replaying %llu records kept as backup (%.3f s of packet time)",
                   static_cast<unsigned long long>(end - from),
                   first_ns ? static_cast<double>(window.newest_packet_ns() - first_ns) / 1e9 : 0.0);
        if (trimmed_since_backup.trimmed_packets) {
            // The classifier hears of it first, as a loss record (docs/protocol.md).
            x->add_loss(LossCause::master_gap, trimmed_since_backup.trimmed_first_ns,
                        trimmed_since_backup.trimmed_last_ns, trimmed_since_backup.trimmed_packets);
            pending_from = from;
            log_warn("master: the replay window lost %llu packet records (%.3f s of packet time) because "
                     "shm.record_ring cannot hold ha.replay_ms at this rate (docs/ha.md)",
                     static_cast<unsigned long long>(trimmed_since_backup.trimmed_packets),
                     static_cast<double>(trimmed_since_backup.trimmed_last_ns - trimmed_since_backup.trimmed_first_ns) / 1e9);
        }
        trimmed_since_backup = {};
    };

    for (;;) {
        // (takeover after master: this loop already started from the announce marker in the
        // instant between ctld's request and its master write; ctld never goes master -> takeover.)
        if (const HaRole r = role_now(); r != role && !(r == HaRole::takeover && role == HaRole::master)) {
            if (r == HaRole::backup) {
                // No longer ours to send: what is packed is not sent (the classifier must never
                // hear this meter once the other one may be speaking); it stays in the ring, the
                // start of the window, with everything read after it.
                const uint32_t k = x->discard_pending();
                rt.count(netd_unsent_at_demotion, k);
                x->set_active(false);
                window.start(k ? pending_from : ring.read_pos());
                trimmed_since_backup = {};
                awaiting_announce = false;
                replay_end = 0;
                log_notice("backup: not exporting (%u packed records kept unsent)", k);
            } else {
                if (role == HaRole::backup) {
                    x->set_active(true);  // templates at once
                    log_notice("%s: templates sent", r == HaRole::master ? "master" : "taking over");
                }
                if (r == HaRole::master) {
                    awaiting_announce = true;
                    awaiting_since = IpfixExporter::monotonic_ns();
                    log_notice("master: exporting from procd's announcement of the live flows");
                }
            }
            role = r;
        }
        const bool replaying = exporting() && ring.read_pos() < replay_end;
        const Record* recs = nullptr;
        const size_t n = ring.peek(&recs, replaying ? kReplayBatch : kBatch);
        const uint64_t pos0 = ring.read_pos();
        size_t taken = n;  // records of this batch passed over; fewer when a replay rewinds
        bool rewound = false;
        for (size_t i = 0; i < n; ++i) {
            const Record& rec = recs[i];
            const uint64_t pos = pos0 + i;
            if (rec.type == static_cast<uint8_t>(RecordType::announce)) {
                // ctld bumps announce_request just before it writes master, so a marker of the
                // current request means master even if this loop read the role a moment earlier
                // (takeover): start here rather than skip the flow_starts that follow it.
                const auto gen = static_cast<uint32_t>(control.announce_request.load(std::memory_order_acquire));
                if (role != HaRole::backup && rec.flow_id == gen && (awaiting_announce || role == HaRole::takeover)) {
                    if (role == HaRole::takeover) log_notice("master: exporting from procd's announcement of the live flows");
                    role = HaRole::master;
                    awaiting_announce = false;
                    if (cfg.replay_ms) {
                        // Read again from the window's start; this marker is passed over then.
                        taken = i + 1;
                        ring.advance(taken);
                        replay_up_to(pos);
                        rewound = true;
                        break;
                    }
                }
            } else if (exporting() && pos < replay_end && rec.type == static_cast<uint8_t>(RecordType::watermark)) {
                // A watermark of the time as backup would go back behind the old master's last
                // one: the replay leaves them out (nothing is lost: the live ones after it move on).
            } else if (exporting()) {
                const Record* out = &rec;
                Record flagged;
                if (pos < replay_end) {
                    flagged = rec;
                    flagged.flags |= kRecordReplayed;
                    out = &flagged;
                    rt.count(netd_replayed);
                }
                x->add(*out);
                if (x->pending_records() == 1) pending_from = pos;  // opened a message
            } else {
                window.observe(rec);
            }
        }
        if (!rewound) ring.advance(n);
        if (const uint64_t end = pos0 + taken; end > high_water) {
            rt.count(netd_records, end - high_water);
            high_water = end;
        }
        if (awaiting_announce && IpfixExporter::monotonic_ns() - awaiting_since > kAnnounceWaitNs) {
            awaiting_announce = false;
            log_warn("master: procd has not announced the live flows within %llu s; exporting without it",
                     static_cast<unsigned long long>(kAnnounceWaitNs / 1'000'000'000ull));
            replay_up_to(ring.read_pos());
        }
        x->poll(IpfixExporter::monotonic_ns());
        if (exporting()) {
            // Committed: everything up to the message still being packed.
            ring.commit_to(x->pending() ? pending_from : ring.read_pos());
        } else {
            // Kept: the window; from takeover on nothing ages out (the window then reaches back
            // ha.replay_ms before the takeover).
            const auto rel = window.release(ring, ring.read_pos(), window_ns(), max_window,
                                            /*frozen=*/role != HaRole::backup);
            if (rel.aged) rt.count(netd_not_master, rel.aged);
            if (rel.trimmed) {
                rt.count(netd_window_trimmed, rel.trimmed);
                if (!trimmed_since_backup.trimmed_packets) trimmed_since_backup.trimmed_first_ns = rel.trimmed_first_ns;
                if (rel.trimmed_packets) trimmed_since_backup.trimmed_last_ns = rel.trimmed_last_ns;
                trimmed_since_backup.trimmed_packets += rel.trimmed_packets;
            }
            ring.commit_to(window.begin());
        }
        export_counters(rt, *x);
        serve_metrics();
        rt.heartbeat();
        if (replaying && n > 0) {
            // Paced: a burst of the whole window at once would overrun the classifier's socket
            // buffer; kReplayBatch records per 0.5 ms is about 500,000 records/s.
            const timespec pause{0, 500'000};
            nanosleep(&pause, nullptr);
        }

        const uint32_t gen = control.config.generation.load(std::memory_order_acquire);
        if (gen != cfg_gen) {
            cfg_gen = gen;
            const LiveConfig nc = rt.segment().config();
            if (std::string(nc.classifier_host) != cfg.classifier_host || nc.classifier_port != cfg.classifier_port) {
                if (x->set_destination(nc.classifier_host, static_cast<uint16_t>(nc.classifier_port)))
                    log_notice("classifier moved to %s", x->destination().c_str());
                else
                    log_err("cannot export to %s:%u; keeping %s", nc.classifier_host, nc.classifier_port,
                            x->destination().c_str());
            }
            if (nc.flush_ms != cfg.flush_ms || nc.template_refresh_s != cfg.template_refresh_s ||
                nc.mtu != cfg.mtu || nc.domain_id != cfg.domain_id) {
                // Message size and timers are fixed per exporter: send what is pending, then
                // continue with a new exporter (it sends templates first; the sequence number
                // lives in the segment and carries on).
                x->flush();
                if (exporting()) ring.commit_to(ring.read_pos());
                try {
                    auto nx = std::make_unique<IpfixExporter>(exporter_config(nc, role), &rt.header().ipfix_sequence);
                    x = std::move(nx);
                    log_notice("export settings changed: mtu %u, flush %u ms, template refresh %u s, domain %u",
                               nc.mtu, nc.flush_ms, nc.template_refresh_s, nc.domain_id);
                } catch (const std::exception& e) {
                    log_err("cannot apply the new export settings: %s; keeping the old ones", e.what());
                }
            }
            cfg = nc;
        }
        if (StageRuntime::terminate_requested()) {
            // Restart by the operator: send what is pending, release it, leave the rest queued.
            x->flush();
            if (exporting()) ring.commit_to(ring.read_pos());
            export_counters(rt, *x);
            log_info("terminated; %llu records stay queued", static_cast<unsigned long long>(ring.fill()));
            return 0;
        }
        if (n == 0) {
            if (stop.procd_finished.load(std::memory_order_acquire) && !ring.wait_for_data(0)) break;
            // An open /metrics connection is served again within 5 ms; a new one is seen within 100 ms.
            ring.wait_for_data(x->pending() ? idle_ms() : metrics && metrics->open_connections() ? 5 : 100);
        }
    }
    x->flush();
    ring.commit();
    export_counters(rt, *x);
    stop.netd_finished.store(1, std::memory_order_release);
    rt.finished();
    log_info("finished: %llu records in %llu messages, %llu send errors, %llu records lost in %llu failed datagrams",
             static_cast<unsigned long long>(x->counters().records_sent),
             static_cast<unsigned long long>(x->counters().messages_sent),
             static_cast<unsigned long long>(x->counters().send_errors),
             static_cast<unsigned long long>(x->counters().records_lost),
             static_cast<unsigned long long>(x->counters().datagrams_failed));
    return 0;
}
