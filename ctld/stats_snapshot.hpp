// What `angelctl stats` shows, read once: every stage counter, ctld's refusals at the
// privilege boundary, the muted/full flows, the customer set, the rings and the IPFIX
// sequence. angelctl stats (text and JSON, ctld/status_report.cpp) and the Prometheus page
// (ctld/metrics/meter_metrics.cpp) both render from one of these, so the two show the same
// values from the same checked reads (ctld/checked_segment_view.hpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ctld/checked_segment_view.hpp"
#include "shm/segment.hpp"

namespace angel {

struct FlowControlStats;
struct CustomerSetStatus;

// How a value behaves: a counter only grows (it may restart from 0 with its stage), a gauge
// goes up and down.
enum class StatKind { counter, gauge };

struct StatValue {
    std::string name;  // "packets", "parse_truncated"
    uint64_t value = 0;
    StatKind kind = StatKind::counter;
};
struct StatGroup {
    std::string name;  // "capd", "procd", "netd", "ctld", "flow_control", "customers"
    std::vector<StatValue> values;
};
struct RingStats {
    const char* name;  // "packet", "record", "event"
    RingReading reading;
};
struct StatsSnapshot {
    std::vector<StatGroup> groups;  // in angelctl stats' order
    std::vector<RingStats> rings;
    uint64_t ipfix_sequence = 0;
};

// fc, cs: null when not shown (as for render_stats).
StatsSnapshot collect_stats(const Segment& seg, const FlowControlStats* fc, const CustomerSetStatus* cs);

}  // namespace angel
