#include "ctld/stats_snapshot.hpp"

#include "common/packet/parser.hpp"
#include "ctld/customers/customer_set_publisher.hpp"
#include "ctld/flow_control_set.hpp"

namespace angel {

StatsSnapshot collect_stats(const Segment& seg, const FlowControlStats* fc, const CustomerSetStatus* cs) {
    const CheckedSegmentView view(seg);
    StatsSnapshot s;
    for (StageId id : {StageId::capd, StageId::procd, StageId::netd}) {
        const StageReading r = view.stage(id);
        StatGroup g{stage_name(id), {}};
        for (size_t i = 0; const char* name = counter_name(id, i); ++i) g.values.push_back({name, r.counters[i]});
        if (id == StageId::procd)
            for (size_t i = 0; i < static_cast<size_t>(ParseStatus::count_) && procd_parse_first + i < kStageCounters; ++i)
                g.values.push_back({std::string("parse_") + parse_status_name(static_cast<ParseStatus>(i)),
                                    r.counters[procd_parse_first + i]});
        s.groups.push_back(std::move(g));
    }
    // What ctld refused at the privilege boundary (ctld/checked_segment_view.hpp).
    StatGroup ctld{"ctld", {}};
    for (size_t k = 0; k < kBoundaryKinds; ++k)
        ctld.values.push_back({boundary_kind_name(static_cast<BoundaryKind>(k)),
                               boundary_counters().refused[k].load(std::memory_order_relaxed)});
    s.groups.push_back(std::move(ctld));
    if (fc) {
        // Muted / full flows (angel.flow_control, angelctl mute), and what did not fit the table.
        s.groups.push_back({"flow_control",
                            {{"local", fc->local, StatKind::gauge},
                             {"database", fc->database, StatKind::gauge},
                             {"published", fc->published, StatKind::gauge},
                             {"left_out", fc->left_out, StatKind::gauge},
                             {"left_out_total", fc->left_out_total, StatKind::counter}}});
    }
    if (cs) {
        // The customer set: its size, the generation published and the one procd uses.
        s.groups.push_back({"customers",
                            {{"prefixes", cs->prefixes, StatKind::gauge},
                             {"ipv4_prefixes", cs->v4_prefixes, StatKind::gauge},
                             {"ipv6_prefixes", cs->v6_prefixes, StatKind::gauge},
                             {"ranges", cs->ranges, StatKind::gauge},
                             {"bytes", cs->bytes, StatKind::gauge},
                             {"generation", cs->generation, StatKind::gauge},
                             {"procd_generation", cs->procd_generation, StatKind::gauge},
                             {"pending", cs->pending ? 1u : 0u, StatKind::gauge}}});
    }
    s.rings = {{"packet", view.ring(Segment::Ring::packet)},
               {"record", view.ring(Segment::Ring::record)},
               {"event", view.ring(Segment::Ring::event)}};
    s.ipfix_sequence = view.ipfix_sequence();
    return s;
}

}  // namespace angel
