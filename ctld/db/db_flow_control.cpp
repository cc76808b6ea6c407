#include "ctld/db/db_flow_control.hpp"

#include <cstdlib>

#include "ctld/db/db_connection.hpp"

namespace angel {

DbFlowControl fetch_db_flow_control(DbConnection& db, const std::string& meter_id) {
    DbFlowControl out;
    out.fetched = true;
    if (db.exec("SELECT to_regclass('angel.flow_control') IS NOT NULL").text(0, 0) != "t") return out;
    PgResult r = db.exec("SELECT flow_id, action, count(*) OVER () FROM angel.flow_control WHERE meter_id = $1 "
                         "ORDER BY set_at, flow_id LIMIT " + std::to_string(kFlowControlMax),
                         {meter_id});
    out.rows.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
        const uint32_t id = static_cast<uint32_t>(std::strtoull(r.text(i, 0).c_str(), nullptr, 10));
        const FlowRecordMode m = r.text(i, 1) == "full" ? FlowRecordMode::full : FlowRecordMode::mute;
        out.rows.emplace_back(id, m);
        out.total = std::strtoull(r.text(i, 2).c_str(), nullptr, 10);
    }
    return out;
}

}  // namespace angel
