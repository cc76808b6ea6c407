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

StageIo stage_io(const Segment& seg, StageId id) {
    const auto& c = seg.stage(id).counters;
    auto v = [&](size_t i) { return c[i].load(std::memory_order_relaxed); };
    switch (id) {
        case StageId::capd: return {v(capd_packets), v(capd_queued), v(capd_ring_dropped) + v(capd_pcap_dropped)};
        case StageId::procd:
            return {v(procd_packets), seg.header()->record_ring.produced.load(), v(procd_events_dropped)};
        case StageId::netd: return {v(netd_records), v(netd_records_sent), v(netd_send_errors)};
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

double ring_fill(const RingControl& r) {
    const uint64_t used = r.head.load() - r.tail.load();
    return r.capacity ? 100.0 * static_cast<double>(used) / static_cast<double>(r.capacity) : 0.0;
}

}  // namespace

std::string render_status(const Segment& seg, const MeterView& v, bool json) {
    const uint64_t now = monotonic_ns();
    const SegmentHeader& h = *seg.header();
    if (json) {
        JsonWriter j;
        j.begin_object();
        j.field("instance", v.instance).field("role", v.role).field("config_generation", v.config_generation);
        j.field("uptime_s", age_s(now, v.ctld_started_ns)).field("stopping", v.stopping);
        j.key("stages").begin_array();
        for (const StageSupervisor* s : v.stages) {
            const StageStatus& st = seg.stage(s->id());
            const ProcUsage u = proc_usage(s->pid());
            const StageIo io = stage_io(seg, s->id());
            const uint64_t hb = st.heartbeat_ns.load();
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
        j.field("packet_fill_pct", ring_fill(h.packet_ring)).field("record_fill_pct", ring_fill(h.record_ring));
        j.field("event_fill_pct", ring_fill(h.event_ring));
        j.end_object();
        j.key("flows").begin_object();
        FlowMap fm = seg.flow_map();
        j.field("live", fm.live()).field("capacity", fm.capacity());
        j.end_object();
        j.key("database");
        if (v.database) {
            j.begin_object();
            j.field("connected", v.db.connected).field("connects", v.db.connects);
            j.field("batches", v.db.batches).field("flows_written", v.db.flows_inserted);
            j.field("flows_ended", v.db.flows_ended).field("reconciles", v.db.reconciles);
            j.field("config_reads", v.db.config_reads);
            j.field("events_dropped", seg.stage(StageId::procd).counters[procd_events_dropped].load());
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
    std::snprintf(line, sizeof line, "%-6s %7s %-13s %9s %8s %-14s %8s %8s %8s %7s %12s %12s %9s\n", "stage", "pid",
                  "state", "uptime_s", "restarts", "last_exit", "user_s", "sys_s", "rss_MiB", "hb_age", "in", "out",
                  "dropped");
    out += line;
    for (const StageSupervisor* s : v.stages) {
        const StageStatus& st = seg.stage(s->id());
        const ProcUsage u = proc_usage(s->pid());
        const StageIo io = stage_io(seg, s->id());
        const uint64_t hb = st.heartbeat_ns.load();
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
    FlowMap fm = seg.flow_map();
    std::snprintf(line, sizeof line, "rings  packet %.1f%%  record %.1f%%  event %.1f%%   flows %u live of %u\n",
                  ring_fill(h.packet_ring), ring_fill(h.record_ring), ring_fill(h.event_ring), fm.live(),
                  fm.capacity());
    out += line;
    if (v.database) {
        std::snprintf(line, sizeof line,
                      "database %s  connects %" PRIu64 "  flows written %" PRIu64 " (ended %" PRIu64
                      ")  reconciles %" PRIu64 "  events dropped %" PRIu64 "\n",
                      v.db.connected ? "connected" : "DISCONNECTED", v.db.connects, v.db.flows_inserted,
                      v.db.flows_ended, v.db.reconciles,
                      seg.stage(StageId::procd).counters[procd_events_dropped].load());
        out += line;
        if (!v.db.connected && !v.db.last_error.empty()) out += "database last error: " + v.db.last_error + "\n";
    }
    return out;
}

std::string render_stats(const Segment& seg, bool json) {
    JsonWriter j;
    std::string text;
    j.begin_object();
    for (StageId id : {StageId::capd, StageId::procd, StageId::netd}) {
        const auto& c = seg.stage(id).counters;
        j.key(stage_name(id)).begin_object();
        for (size_t i = 0; const char* name = counter_name(id, i); ++i) {
            j.field(name, c[i].load());
            text += std::string(stage_name(id)) + "." + name + " " + std::to_string(c[i].load()) + "\n";
        }
        if (id == StageId::procd) {
            for (size_t i = 0; i < static_cast<size_t>(ParseStatus::count_) && procd_parse_first + i < kStageCounters;
                 ++i) {
                const std::string name = std::string("parse_") + parse_status_name(static_cast<ParseStatus>(i));
                j.field(name, c[procd_parse_first + i].load());
                text += "procd." + name + " " + std::to_string(c[procd_parse_first + i].load()) + "\n";
            }
        }
        j.end_object();
    }
    const SegmentHeader& h = *seg.header();
    j.key("rings").begin_object();
    const std::pair<const char*, const RingControl*> rings[] = {
        {"packet", &h.packet_ring}, {"record", &h.record_ring}, {"event", &h.event_ring}};
    for (const auto& [name, r] : rings) {
        j.key(name).begin_object();
        j.field("produced", r->produced.load()).field("consumed", r->consumed.load());
        j.field("dropped", r->dropped.load()).field("fill", r->head.load() - r->tail.load());
        j.field("capacity", r->capacity);
        j.end_object();
        text += std::string("ring.") + name + ".produced " + std::to_string(r->produced.load()) + "\n";
        text += std::string("ring.") + name + ".dropped " + std::to_string(r->dropped.load()) + "\n";
    }
    j.end_object();
    j.field("ipfix_sequence", h.ipfix_sequence.load());
    j.end_object();
    text += "ipfix.sequence " + std::to_string(h.ipfix_sequence.load()) + "\n";
    return json ? j.str() + "\n" : text;
}

std::string render_flows(const Segment& seg, size_t top, bool json) {
    // Read without a lock while procd writes: each entry is copied and checked for in_use
    // again afterwards, so a torn read shows at worst a flow that just changed.
    FlowMap fm = seg.flow_map();
    std::vector<FlowEntry> flows;
    flows.reserve(fm.live());
    for (uint32_t i = 0; i < fm.high_water(); ++i) {
        const FlowEntry& e = fm.entry(i);
        if (!e.in_use || e.ending) continue;
        FlowEntry copy;
        std::memcpy(static_cast<void*>(&copy), &e, sizeof copy);
        if (copy.in_use && !copy.ending) flows.push_back(copy);
    }
    auto total = [](const FlowEntry& e) { return e.packets[0] + e.packets[1]; };
    auto busier = [&](const FlowEntry& a, const FlowEntry& b) {
        return total(a) != total(b) ? total(a) > total(b) : a.flow_id < b.flow_id;
    };
    // --top N only orders the N busiest: cheap even with a million live flows.
    if (top && flows.size() > top) {
        std::partial_sort(flows.begin(), flows.begin() + static_cast<std::ptrdiff_t>(top), flows.end(), busier);
        flows.resize(top);
    } else {
        std::sort(flows.begin(), flows.end(), busier);
    }
    JsonWriter j;
    j.begin_array();
    std::string text = "flow_id     proto source                                        destination                                   packets       bytes\n";
    for (const FlowEntry& e : flows) {
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
        char line[256];
        std::snprintf(line, sizeof line, "%-11u %-5u %-45s %-45s %7" PRIu64 " %11" PRIu64 "\n", e.flow_id,
                      unsigned{e.key.proto}, (src + ":" + std::to_string(sport)).c_str(),
                      (dst + ":" + std::to_string(dport)).c_str(), total(e), e.bytes[0] + e.bytes[1]);
        text += line;
    }
    j.end_array();
    return json ? j.str() + "\n" : text;
}

}  // namespace angel
