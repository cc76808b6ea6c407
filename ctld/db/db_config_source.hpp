// Configuration from the database: the meter's angel.meter_config row and its
// angel.customer_networks rows, as override values for apply_override() (the file's checks).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.hpp"

namespace angel {

class DbConnection;

struct DbConfigValues {
    bool fetched = false;  // false: never read (database unreachable so far)
    // key (as apply_override names it) -> value text; only keys the database sets.
    std::map<std::string, std::string> values;
    bool operator==(const DbConfigValues& o) const { return fetched == o.fetched && values == o.values; }
};

// Reads the meter's rows. Throws DbError.
DbConfigValues fetch_db_config(DbConnection& db, const std::string& meter_id);

// file + the database's values, each checked by apply_override(); a value the checks refuse is
// left out and described in *notes ("database: flow.timeout must be ...: the file's value applies").
Config merge_db_config(const Config& file, const DbConfigValues& db, std::vector<std::string>* notes);

// At start, before deciding whether a required value is missing: one bounded attempt
// (timeout_ms in all) to read the database. On failure *error says why (no conninfo in it).
DbConfigValues fetch_db_config_at_start(const Config& file, int timeout_ms, std::string* error);

// database.meter_id, or the instance name when it is not set.
std::string effective_meter_id(const Config& c);

}  // namespace angel
