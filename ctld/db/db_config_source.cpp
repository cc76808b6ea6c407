#include "ctld/db/db_config_source.hpp"

#include "ctld/db/db_connection.hpp"

namespace angel {

std::string effective_meter_id(const Config& c) {
    return c.database.meter_id.empty() ? c.instance : c.database.meter_id;
}

DbConfigValues fetch_db_config(DbConnection& db, const std::string& meter_id) {
    DbConfigValues v;
    // One statement, so the row and the networks come from one snapshot.
    PgResult r = db.exec(
        "SELECT m.classifier_host, m.classifier_port::text, m.flow_timeout::text, m.capture_snaplen::text, "
        "       (SELECT string_agg(n.network::text, ',' ORDER BY n.network) FROM angel.customer_networks n "
        "         WHERE n.meter_id = $1) "
        "FROM (SELECT 1) one LEFT JOIN angel.meter_config m ON m.meter_id = $1",
        {meter_id});
    v.fetched = true;
    if (r.rows() != 1) return v;
    static const char* keys[] = {"classifier.host", "classifier.port", "flow.timeout", "capture.snaplen",
                                 "customers.networks"};
    for (int c = 0; c < 5; ++c)
        if (!r.null(0, c)) v.values[keys[c]] = r.text(0, c);
    return v;
}

Config merge_db_config(const Config& file, const DbConfigValues& db, std::vector<std::string>* notes) {
    Config out = file;
    for (const auto& [key, value] : db.values) {
        try {
            apply_override(out, key, value, "database");
        } catch (const ConfigError& e) {
            if (notes) notes->push_back(std::string(e.what()) + " (the file's value applies)");
        }
    }
    return out;
}

DbConfigValues fetch_db_config_at_start(const Config& file, int timeout_ms, std::string* error) {
    DbConnection db;
    if (!db.connect(file.database.conninfo, timeout_ms, -1, error)) return {};
    try {
        return fetch_db_config(db, effective_meter_id(file));
    } catch (const DbError& e) {
        *error = e.what();
        return {};
    }
}

}  // namespace angel
