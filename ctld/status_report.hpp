// Renders angelctl's status, stats and flows answers (text for people, JSON for scripts)
// from the segment and the supervisor's view of each stage. Reads only.
#pragma once
#include <string>
#include <vector>

#include "ctld/customers/customer_set_publisher.hpp"
#include "ctld/db/db_thread.hpp"
#include "ctld/ha/ha_monitor.hpp"
#include "ctld/segment_adoption.hpp"
#include "ctld/stage_supervisor.hpp"
#include "shm/segment.hpp"

namespace angel {

struct MeterView {
    std::string instance;
    std::string role;
    RoleReport ha;            // role, mode, transitions, time as master
    uint32_t config_generation = 0;
    uint64_t ctld_started_ns = 0;
    bool stopping = false;
    std::vector<const StageSupervisor*> stages;
    bool database = false;  // database.conninfo is set
    DbThreadStats db;       // the database thread's view, when database
    CustomerSetStatus customers;  // the customer set published for procd
    const Recovery* recovery = nullptr;  // the segment of a run that died was adopted at start
};

std::string render_status(const Segment& seg, const MeterView& v, bool json);
struct FlowControlStats;
// fc: ctld's set of muted / full flows (ctld/flow_control_set.hpp), null: not shown.
// cs: the customer set (ctld/customers/customer_set_publisher.hpp), null: not shown.
std::string render_stats(const Segment& seg, bool json, const FlowControlStats* fc = nullptr,
                         const CustomerSetStatus* cs = nullptr);
// angelctl role: the role, the HA mode, since when, transitions and time as master.
std::string render_role(const RoleReport& r, bool json);
// angelctl flows: --top N (the N busiest) or --limit N (the first N found); neither: the
// first kDefaultFlowsReply. N is capped at kMaxFlowsReply, so a reply (and ctld's memory for
// it) stays bounded at any number of live flows.
inline constexpr size_t kDefaultFlowsReply = 1000;
inline constexpr size_t kMaxFlowsReply = 10000;
struct FlowsQuery {
    bool top = false;
    size_t count = kDefaultFlowsReply;
};
std::string render_flows(const Segment& seg, const FlowsQuery& q, bool json);

}  // namespace angel
