// The classifier's feedback per flow (angel.flow_control, schema 2): the meter's mute/full
// rows, as the database thread reads them on a NOTIFY angel_flow_control, after connecting
// and every database.poll_interval. Bounded: at most kFlowControlMax rows (the oldest first)
// are read; total says how many the table holds, so what is left out is counted.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "shm/flow_control.hpp"

namespace angel {

class DbConnection;

struct DbFlowControl {
    bool fetched = false;
    std::vector<std::pair<uint32_t, FlowRecordMode>> rows;  // (flow_id, mute or full)
    uint64_t total = 0;                                      // rows the table has for the meter
    bool operator==(const DbFlowControl& o) const {
        return fetched == o.fetched && rows == o.rows && total == o.total;
    }
};

// Reads the meter's rows; an empty set when the table does not exist (schema 1). Throws DbError.
DbFlowControl fetch_db_flow_control(DbConnection& db, const std::string& meter_id);

}  // namespace angel
