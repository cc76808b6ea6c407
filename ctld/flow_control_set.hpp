// ctld's set of muted and full flows (issue 11, item 5): the classifier's angel.flow_control
// rows (through the database thread) and the operator's angelctl mute/unmute, merged and
// published in the control object (shm/flow_control.hpp), where procd picks it up.
//
// The two sources are kept apart: angelctl mute/unmute change only this meter's in-memory
// set (docs/angelctl.8 says why), database rows only what the database says. Where both name
// a flow, the operator's mute wins. Each entry carries the time ctld first took it up, so a
// later flow reusing the ID is not affected. At most kFlowControlMax entries are published:
// the operator's first, then the database's (the oldest rows, as read); the rest are left out
// and counted.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "ctld/db/db_flow_control.hpp"
#include "shm/flow_control.hpp"

namespace angel {

struct FlowControlStats {
    uint64_t local = 0;      // angelctl mute entries
    uint64_t database = 0;   // angel.flow_control rows taken up
    uint64_t published = 0;  // entries in the control object
    uint64_t left_out = 0;   // entries that did not fit at the last publish (gauge)
    uint64_t left_out_total = 0;  // the same, summed over every publish
};

class FlowControlSet {
public:
    explicit FlowControlSet(FlowControlBlock& out);
    // angelctl mute: false when the set is full (nothing changed).
    bool mute(uint32_t flow_id, uint64_t now_ns);
    // angelctl unmute: whether this meter's own mute was there to remove.
    bool unmute(uint32_t flow_id);
    bool database_has(uint32_t flow_id) const { return db_.count(flow_id) != 0; }
    // The database thread's latest read of angel.flow_control.
    void set_database(const DbFlowControl& rows, uint64_t now_ns);
    const FlowControlStats& stats() const { return stats_; }

private:
    struct Entry {
        FlowRecordMode mode;
        uint64_t since_ns;
    };
    void publish();

    FlowControlBlock& out_;
    std::map<uint32_t, Entry> local_, db_;
    uint64_t db_beyond_ = 0;  // rows the database holds beyond what was read
    std::unique_ptr<FlowControlEntry[]> buf_;
    FlowControlStats stats_;
};

}  // namespace angel
