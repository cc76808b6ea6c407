// The meter's Prometheus page: angelctl stats --prometheus prints it, and ctld publishes it
// every second for netd to serve on metrics.listen (ctld/metrics/metrics_publisher.hpp).
//
// Families (label angel_instance="<instance>" on every sample; see docs/operations.md):
//   every value of `angelctl stats` from the same StatsSnapshot (ctld/stats_snapshot.hpp):
//     angel_<group>_<name>_total for counters (angel_capd_packets_total, angel_ctld_bad_ring_position_total),
//     angel_<group>_<name> for gauges (angel_customers_prefixes);
//     angel_ring_{produced,consumed,dropped}_total, angel_ring_fill, angel_ring_capacity {ring=...};
//     angel_ipfix_sequence;
//   from the supervisor (what `angelctl status` shows): angel_ha_role{role}, angel_ha_transitions_total,
//     angel_stage_state{stage,state}, angel_stage_restarts_total{stage},
//     angel_stage_consecutive_failures{stage}, angel_flows_live, angel_flows_capacity,
//     angel_config_generation, angel_stopping, and angel_database_* when a database is configured.
#pragma once
#include <string>

#include "ctld/status_report.hpp"

namespace angel {

std::string render_prometheus(const Segment& seg, const MeterView& v, const FlowControlStats* fc,
                              const CustomerSetStatus* cs);

}  // namespace angel
