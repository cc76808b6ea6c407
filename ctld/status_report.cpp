#include "ctld/status_report.hpp"

#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/json_writer.hpp"
#include "common/packet/parser.hpp"
#include "ctld/checked_segment_view.hpp"
#include "ctld/flow_control_set.hpp"
#include "ctld/stats_snapshot.hpp"

namespace angel {

namespace {

struct ProcUsage {
    double user_s = 0, sys_s = 0;
    uint64_t rss_bytes = 0;
};

// CPU and RSS of a live process from /proc (Linux).
ProcUsage proc_usage(pid_t pid) {
    ProcUsage u;
    if (pid <= 0) return u;
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (std::getline(st, line)) {
        // Fields after the command name, which may contain spaces: skip past the last ')'.
        std::istringstream in(line.substr(line.rfind(')') + 2));
        std::string f;
        uint64_t utime = 0, stime = 0;
        for (int i = 3; i <= 15 && in >> f; ++i) {
            if (i == 14) utime = std::stoull(f);
            if (i == 15) stime = std::stoull(f);
        }
        const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
        u.user_s = static_cast<double>(utime) / hz;
        u.sys_s = static_cast<double>(stime) / hz;
    }
    std::ifstream sm("/proc/" + std::to_string(pid) + "/statm");
    uint64_t size = 0, resident = 0;
    if (sm >> size >> resident) u.rss_bytes = resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    return u;
}

std::string exit_text(int st) {
    if (st < 0) return "-";
    if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
    if (WIFSIGNALED(st)) return std::string("signal ") + sigabbrev_np(WTERMSIG(st));
    return "?";
}

struct StageIo {
    uint64_t in = 0, out = 0, dropped = 0;
};

StageIo stage_io(const CheckedSegmentView& view, StageId id) {
    auto v = [&](size_t i) { return view.counter(id, i); };
    switch (id) {
        case StageId::capd: return {v(capd_packets), v(capd_queued), v(capd_ring_dropped) + v(capd_pcap_dropped)};
        case StageId::procd:
            return {v(procd_packets), view.ring(Segment::Ring::record).produced, v(procd_events_dropped)};
        case StageId::netd: return {v(netd_records), v(netd_records_sent), v(netd_records_lost)};
        default: return {};
    }
}

std::string addr_text(uint8_t version, const IpBytes& a) {
    char buf[INET6_ADDRSTRLEN] = "?";
    inet_ntop(version == 6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof buf);
    return buf;
}

// Seconds from t to now; 0 when t was taken after now (another process's clock read).
double age_s(uint64_t now, uint64_t t) { return now > t ? static_cast<double>(now - t) / 1e9 : 0.0; }

// A stage that keeps dying shows as crash-looping while it is down; once it runs again it
// shows as running (consecutive_failures in the JSON keeps the history until 60 s up).
const char* state_text(const StageSupervisor& s) {
    if (s.crash_looping() && s.state() != SupervisedState::running) return "crash-looping";
    return supervised_state_name(s.state());
}

double ring_fill(const CheckedSegmentView& view, Segment::Ring r) { return view.ring(r).fill_pct(); }

}  // namespace

std::string render_status(const Segment& seg, const MeterView& v, bool json) {
    const uint64_t now = monotonic_ns();
    const CheckedSegmentView view(seg);
    using R = Segment::Ring;
    if (json) {
        JsonWriter j;
        j.begin_object();
        j.field("instance", v.instance).field("role", v.role).field("config_generation", v.config_generation);
        j.field("uptime_s", age_s(now, v.ctld_started_ns)).field("stopping", v.stopping);
        j.key("ha").begin_object();
        j.field("mode", v.ha.mode).field("since_s", v.ha.since_s).field("transitions", v.ha.transitions);
        j.field("master_s", v.ha.master_s);
        j.end_object();
        j.key("stages").begin_array();
        for (const StageSupervisor* s : v.stages) {
            const ProcUsage u = proc_usage(s->pid());
            const StageIo io = stage_io(view, s->id());
            const uint64_t hb = view.stage(s->id()).heartbeat_ns;
            j.begin_object();
            j.field("stage", stage_name(s->id())).field("pid", static_cast<int64_t>(s->pid()));
            j.field("state", state_text(*s)).field("consecutive_failures", s->consecutive_failures());
            j.field("uptime_s", s->alive() ? age_s(now, s->up_since_ns()) : 0.0);
            j.field("restarts", s->restarts()).field("last_exit", exit_text(s->last_exit_status()));
            j.field("cpu_user_s", u.user_s).field("cpu_sys_s", u.sys_s).field("rss_bytes", u.rss_bytes);
            j.field("heartbeat_age_s", hb && s->alive() ? age_s(now, hb) : -1.0);
            j.field("records_in", io.in).field("records_out", io.out).field("dropped", io.dropped);
            j.end_object();
        }
        j.end_array();
        j.key("rings").begin_object();
        j.field("packet_fill_pct", ring_fill(view, R::packet)).field("record_fill_pct", ring_fill(view, R::record));
        j.field("event_fill_pct", ring_fill(view, R::event));
        j.end_object();
        j.key("flows").begin_object();
        j.field("live", view.live_flows()).field("capacity", view.flow_capacity());
        j.end_object();
        j.key("customers").begin_object();
        j.field("prefixes", v.customers.prefixes).field("ipv4_prefixes", v.customers.v4_prefixes);
        j.field("ipv6_prefixes", v.customers.v6_prefixes).field("ranges", v.customers.ranges);
        j.field("bytes", v.customers.bytes).field("generation", v.customers.generation);
        j.field("procd_generation", v.customers.procd_generation).field("pending", v.customers.pending);
        j.field("filtered", view.counter(StageId::procd, procd_filtered));
        j.end_object();
        // The dead run whose segment this one adopted at start; capture_gap_ms is null until the
        // new capture has opened (procd reports the gap then).
        j.key("recovery");
        if (v.recovery) {
            const auto gap = view.adopted_gap(realtime_ns());
            j.begin_object();
            j.field("previous_pid", static_cast<int64_t>(v.recovery->previous_pid));
            j.field("adopted_flows", v.recovery->adopted_flows);
            j.key("capture_gap_ms");
            if (gap.second) j.value((gap.second - gap.first) / 1'000'000);
            else j.null_value();
            j.end_object();
        } else {
            j.null_value();
        }
        j.key("database");
        if (v.database) {
            j.begin_object();
            j.field("connected", v.db.connected).field("connects", v.db.connects);
            j.field("batches", v.db.batches).field("flows_written", v.db.flows_inserted);
            j.field("flows_ended", v.db.flows_ended).field("reconciles", v.db.reconciles);
            j.field("config_reads", v.db.config_reads);
            j.field("events_dropped", view.counter(StageId::procd, procd_events_dropped));
            j.field("event_waits", view.counter(StageId::procd, procd_event_waits));
            j.field("last_error", v.db.last_error);
            j.end_object();
        } else {
            j.null_value();
        }
        j.end_object();
        return j.str() + "\n";
    }
    char line[512];
    std::string out;
    std::snprintf(line, sizeof line, "instance %s  role %s  config generation %u  up %.0f s%s\n", v.instance.c_str(),
                  v.role.c_str(), v.config_generation, age_s(now, v.ctld_started_ns),
                  v.stopping ? "  STOPPING" : "");
    out += line;
    if (v.recovery) {
        const auto gap = view.adopted_gap(realtime_ns());
        std::snprintf(line, sizeof line, "recovered the segment of angel-ctld pid %d: %u flows adopted, capture gap %s\n",
                      static_cast<int>(v.recovery->previous_pid), v.recovery->adopted_flows,
                      gap.second ? (std::to_string((gap.second - gap.first) / 1'000'000) + " ms").c_str()
                                 : "not known yet (capture not open)");
        out += line;
    }
    if (v.ha.mode != "none") {
        std::snprintf(line, sizeof line, "ha %s: %s for %.1f s, %llu transitions, %.1f s as master (%s)\n",
                      v.ha.mode.c_str(), v.role.c_str(), v.ha.since_s, static_cast<unsigned long long>(v.ha.transitions),
                      v.ha.master_s, v.ha.detail.c_str());
        out += line;
    }
    std::snprintf(line, sizeof line, "%-6s %7s %-13s %9s %8s %-14s %8s %8s %8s %7s %12s %12s %9s\n", "stage", "pid",
                  "state", "uptime_s", "restarts", "last_exit", "user_s", "sys_s", "rss_MiB", "hb_age", "in", "out",
                  "dropped");
    out += line;
    for (const StageSupervisor* s : v.stages) {
        const ProcUsage u = proc_usage(s->pid());
        const StageIo io = stage_io(view, s->id());
        const uint64_t hb = view.stage(s->id()).heartbeat_ns;
        std::snprintf(line, sizeof line,
                      "%-6s %7d %-13s %9.1f %8u %-14s %8.2f %8.2f %8.1f %7.2f %12" PRIu64 " %12" PRIu64 " %9" PRIu64 "\n",
                      stage_name(s->id()), s->pid(),
                      state_text(*s),
                      s->alive() ? age_s(now, s->up_since_ns()) : 0.0, s->restarts(),
                      exit_text(s->last_exit_status()).c_str(), u.user_s, u.sys_s,
                      static_cast<double>(u.rss_bytes) / 1048576.0,
                      hb && s->alive() ? age_s(now, hb) : -1.0, io.in, io.out, io.dropped);
        out += line;
    }
    std::snprintf(line, sizeof line, "rings  packet %.1f%%  record %.1f%%  event %.1f%%   flows %u live of %u\n",
                  ring_fill(view, R::packet), ring_fill(view, R::record), ring_fill(view, R::event), view.live_flows(),
                  view.flow_capacity());
    out += line;
    if (v.customers.prefixes == 0)
        std::snprintf(line, sizeof line, "customers none: every packet metered  generation %" PRIu64 " (procd %" PRIu64 ")\n",
                      v.customers.generation, v.customers.procd_generation);
    else
        std::snprintf(line, sizeof line,
                      "customers %" PRIu64 " prefixes (%" PRIu64 " IPv4, %" PRIu64 " IPv6) in %" PRIu64
                      " ranges  generation %" PRIu64 " (procd %" PRIu64 ")%s  filtered %" PRIu64 "\n",
                      v.customers.prefixes, v.customers.v4_prefixes, v.customers.v6_prefixes, v.customers.ranges,
                      v.customers.generation, v.customers.procd_generation, v.customers.pending ? ", next pending" : "",
                      view.counter(StageId::procd, procd_filtered));
    out += line;
    if (v.database) {
        std::snprintf(line, sizeof line,
                      "database %s  connects %" PRIu64 "  flows written %" PRIu64 " (ended %" PRIu64
                      ")  reconciles %" PRIu64 "  events dropped %" PRIu64 "\n",
                      v.db.connected ? "connected" : "DISCONNECTED", v.db.connects, v.db.flows_inserted,
                      v.db.flows_ended, v.db.reconciles,
                      view.counter(StageId::procd, procd_events_dropped));
        out += line;
        if (!v.db.connected && !v.db.last_error.empty()) out += "database last error: " + v.db.last_error + "\n";
    }
    return out;
}

std::string render_stats(const Segment& seg, bool json, const FlowControlStats* fc, const CustomerSetStatus* cs) {
    const StatsSnapshot s = collect_stats(seg, fc, cs);
    JsonWriter j;
    std::string text;
    j.begin_object();
    for (const StatGroup& g : s.groups) {
        j.key(g.name).begin_object();
        for (const StatValue& v : g.values) {
            j.field(v.name, v.value);
            text += g.name + "." + v.name + " " + std::to_string(v.value) + "\n";
        }
        j.end_object();
    }
    j.key("rings").begin_object();
    for (const RingStats& ring : s.rings) {
        const RingReading& r = ring.reading;
        j.key(ring.name).begin_object();
        j.field("produced", r.produced).field("consumed", r.consumed);
        j.field("dropped", r.dropped).field("fill", r.fill);
        j.field("capacity", r.capacity);
        j.end_object();
        text += std::string("ring.") + ring.name + ".produced " + std::to_string(r.produced) + "\n";
        text += std::string("ring.") + ring.name + ".dropped " + std::to_string(r.dropped) + "\n";
    }
    j.end_object();
    j.field("ipfix_sequence", s.ipfix_sequence);
    j.end_object();
    text += "ipfix.sequence " + std::to_string(s.ipfix_sequence) + "\n";
    return json ? j.str() + "\n" : text;
}

std::string render_flows(const Segment& seg, const FlowsQuery& q, bool json) {
    // Bounded whatever the number of live flows: at most q.count entries are kept (a heap of
    // the busiest for --top, the first found for --limit), and the reply holds only those.
    const CheckedSegmentView view(seg);
    const size_t want = std::min(q.count, kMaxFlowsReply);
    auto total = [](const FlowEntry& e) { return e.packets[0] + e.packets[1]; };
    // "a before b" in the reply: busier first, then by flow ID.
    auto before = [&](const FlowEntry& a, const FlowEntry& b) {
        return total(a) != total(b) ? total(a) > total(b) : a.flow_id < b.flow_id;
    };
    std::vector<FlowEntry> kept;
    kept.reserve(want);
    uint64_t seen = 0;
    view.scan_flows([&](const FlowEntry& e) {
        ++seen;
        if (!q.top) {
            if (kept.size() < want) kept.push_back(e);
            return true;  // keep counting
        }
        // Max-heap on "before": its front is the entry that sorts last, the first to go.
        if (kept.size() < want) {
            kept.push_back(e);
            std::push_heap(kept.begin(), kept.end(), before);
        } else if (want && before(e, kept.front())) {
            std::pop_heap(kept.begin(), kept.end(), before);
            kept.back() = e;
            std::push_heap(kept.begin(), kept.end(), before);
        }
        return true;
    });
    std::sort(kept.begin(), kept.end(), before);
    const uint64_t not_shown = seen - kept.size();
    // JSON stays an array of flows (scripts read it as such); the text says what was left out.
    JsonWriter j;
    j.begin_array();
    std::string text = "flow_id     proto source                                        destination                                   packets       bytes\n";
    for (const FlowEntry& e : kept) {
        // Show the tuple as the flow's first packet saw it.
        const bool rev = e.first_reversed;
        const std::string src = addr_text(e.key.ip_version, rev ? e.key.addr_hi : e.key.addr_lo);
        const std::string dst = addr_text(e.key.ip_version, rev ? e.key.addr_lo : e.key.addr_hi);
        const unsigned sport = rev ? e.key.port_hi : e.key.port_lo;
        const unsigned dport = rev ? e.key.port_lo : e.key.port_hi;
        j.begin_object();
        j.field("flow_id", e.flow_id).field("proto", unsigned{e.key.proto}).field("src", src).field("sport", sport);
        j.field("dst", dst).field("dport", dport).field("packets", total(e)).field("bytes", e.bytes[0] + e.bytes[1]);
        j.field("first_ns", e.first_ns).field("last_ns", e.last_ns);
        j.end_object();
        // IPv6 endpoints in brackets, so the port is not read as part of the address.
        auto endpoint = [&](const std::string& a, unsigned port) {
            return (e.key.ip_version == 6 ? "[" + a + "]" : a) + ":" + std::to_string(port);
        };
        char line[256];
        std::snprintf(line, sizeof line, "%-11u %-5u %-45s %-45s %7" PRIu64 " %11" PRIu64 "\n", e.flow_id,
                      unsigned{e.key.proto}, endpoint(src, sport).c_str(), endpoint(dst, dport).c_str(), total(e),
                      e.bytes[0] + e.bytes[1]);
        text += line;
    }
    j.end_array();
    if (not_shown)
        text += "(" + std::to_string(not_shown) + " more live flows not shown: --top N or --limit N, at most " +
                std::to_string(kMaxFlowsReply) + ")\n";
    return json ? j.str() + "\n" : text;
}

std::string render_role(const RoleReport& r, bool json) {
    if (json) {
        JsonWriter j;
        j.begin_object();
        j.field("role", ha_role_name(r.role)).field("mode", r.mode).field("detail", r.detail);
        j.field("since_s", r.since_s).field("transitions", r.transitions).field("master_s", r.master_s);
        j.field("transitions_last_minute", static_cast<uint64_t>(r.transitions_last_minute));
        j.end_object();
        return j.str() + "\n";
    }
    char line[512];
    std::snprintf(line, sizeof line, "%s for %.1f s (ha.mode %s: %s), %llu transitions, %.1f s as master\n",
                  ha_role_name(r.role), r.since_s, r.mode.c_str(), r.detail.c_str(),
                  static_cast<unsigned long long>(r.transitions), r.master_s);
    return line;
}

}  // namespace angel
