#include "ctld/metrics/meter_metrics.hpp"

#include "ctld/checked_segment_view.hpp"
#include "ctld/metrics/prometheus_text.hpp"
#include "ctld/stats_snapshot.hpp"

namespace angel {

namespace {

using Type = PrometheusText::Type;

// HELP of a value of angelctl stats: the stage's own description where there is one.
std::string stat_help(const StatGroup& g, size_t i) {
    const StatValue& v = g.values[i];
    for (StageId id : {StageId::capd, StageId::procd, StageId::netd})
        if (g.name == stage_name(id)) {
            if (const char* h = counter_help(id, i)) return h;
            if (v.name.rfind("parse_", 0) == 0) return "Frames the parser classified as " + v.name.substr(6) + ".";
        }
    if (g.name == "ctld") return "Values ctld refused at the privilege boundary: " + v.name + " (docs/security.md).";
    if (g.name == "flow_control") return "Muted and full flows: " + v.name + " (angelctl stats flow_control).";
    if (g.name == "customers") return "The customer set: " + v.name + " (angelctl stats customers).";
    return "angelctl stats " + g.name + "." + v.name + ".";
}

// The states a stage can show in angelctl status (state_text in ctld/status_report.cpp).
constexpr const char* kStageStates[] = {"stopped", "starting", "running", "backoff", "finished", "crash-looping"};

const char* stage_state_text(const StageSupervisor& s) {
    if (s.crash_looping() && s.state() != SupervisedState::running) return "crash-looping";
    return supervised_state_name(s.state());
}

}  // namespace

std::string render_prometheus(const Segment& seg, const MeterView& v, const FlowControlStats* fc,
                              const CustomerSetStatus* cs) {
    const StatsSnapshot s = collect_stats(seg, fc, cs);
    PrometheusText p(PromLabels{{"angel_instance", v.instance}});
    for (const StatGroup& g : s.groups)
        for (size_t i = 0; i < g.values.size(); ++i) {
            const StatValue& val = g.values[i];
            const bool counter = val.kind == StatKind::counter;
            // A counter already named ..._total (flow_control.left_out_total) keeps its name.
            std::string name = "angel_" + g.name + "_" + val.name;
            if (counter && !(name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0)) name += "_total";
            if (p.family(name, counter ? Type::counter : Type::gauge, stat_help(g, i))) p.sample(val.value);
        }
    struct RingFamily {
        const char* name;
        Type type;
        const char* help;
        uint64_t RingReading::*field;
    };
    const RingFamily rf[] = {
        {"angel_ring_produced_total", Type::counter, "Entries the ring's producer published (packet ring: bytes).",
         &RingReading::produced},
        {"angel_ring_consumed_total", Type::counter, "Entries the ring's consumer released (packet ring: bytes).",
         &RingReading::consumed},
        {"angel_ring_dropped_total", Type::counter, "Entries the ring's producer dropped because it was full.",
         &RingReading::dropped},
        {"angel_ring_fill", Type::gauge, "Entries in the ring now (packet ring: bytes).", &RingReading::fill},
        {"angel_ring_capacity", Type::gauge, "The ring's size (packet ring: bytes; record and event rings: records).",
         &RingReading::capacity},
    };
    for (const RingFamily& f : rf) {
        p.family(f.name, f.type, f.help);
        for (const RingStats& r : s.rings) p.sample(r.reading.*f.field, {{"ring", r.name}});
    }
    p.family("angel_ipfix_sequence", Type::gauge, "The IPFIX sequence number: data records exported so far.");
    p.sample(s.ipfix_sequence);

    // What angelctl status shows of the supervisor.
    p.family("angel_ha_role", Type::gauge, "1 for the meter's current HA role (ha.mode; docs/ha.md), 0 for the others.");
    for (HaRole r : {HaRole::backup, HaRole::master, HaRole::takeover})
        p.sample(v.ha.role == r ? 1 : 0, {{"role", ha_role_name(r)}});
    p.family("angel_ha_transitions_total", Type::counter, "HA role changes since ctld started.");
    p.sample(v.ha.transitions);
    p.family("angel_stage_state", Type::gauge, "1 for the stage's state as angelctl status shows it, 0 for the others.");
    for (const StageSupervisor* st : v.stages)
        for (const char* state : kStageStates)
            p.sample(std::string(stage_state_text(*st)) == state ? 1 : 0, {{"stage", stage_name(st->id())}, {"state", state}});
    p.family("angel_stage_restarts_total", Type::counter, "Times ctld started the stage again (after a death or on request).");
    for (const StageSupervisor* st : v.stages) p.sample(st->restarts(), {{"stage", stage_name(st->id())}});
    p.family("angel_stage_consecutive_failures", Type::gauge, "Deaths of the stage in a row (0 after 60 s up).");
    for (const StageSupervisor* st : v.stages) p.sample(st->consecutive_failures(), {{"stage", stage_name(st->id())}});
    const CheckedSegmentView view(seg);
    p.family("angel_flows_live", Type::gauge, "Live flows in the FlowMap.");
    p.sample(view.live_flows());
    p.family("angel_flows_capacity", Type::gauge, "FlowMap capacity (flow.max_flows and its spare).");
    p.sample(view.flow_capacity());
    p.family("angel_config_generation", Type::gauge, "The configuration generation (bumped by every applied reload).");
    p.sample(v.config_generation);
    p.family("angel_stopping", Type::gauge, "1 while the meter stops in order.");
    p.sample(v.stopping ? 1 : 0);
    if (v.database) {
        p.family("angel_database_connected", Type::gauge, "1 while ctld is connected to PostgreSQL.");
        p.sample(v.db.connected ? 1 : 0);
        const std::pair<const char*, uint64_t> db[] = {{"connects", v.db.connects},
                                                       {"batches", v.db.batches},
                                                       {"flows_written", v.db.flows_inserted},
                                                       {"flows_ended", v.db.flows_ended},
                                                       {"reconciles", v.db.reconciles},
                                                       {"config_reads", v.db.config_reads}};
        for (const auto& [name, n] : db) {
            p.family(std::string("angel_database_") + name + "_total", Type::counter,
                     std::string("angelctl status database.") + name + ".");
            p.sample(n);
        }
    }
    return p.str();
}

}  // namespace angel
