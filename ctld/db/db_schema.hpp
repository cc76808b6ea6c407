// The database schema (db/schema.sql, compiled in) and `angel-ctld --db-init`, which
// `angelctl db-init -c FILE` runs: creates or upgrades the schema, idempotently.
#pragma once
#include <string>

namespace angel {

// 2: angel.flow_control (issue 11, item 5). 3: flow_history's ended_at index is BRIN (issue 13).
inline constexpr int kSchemaVersion = 3;

// The text of db/schema.sql (a unit check keeps the two equal).
const char* schema_sql();

// Connects with conninfo (bounded by timeout_ms) and applies the schema in one transaction
// under an advisory lock, so two concurrent runs do not interleave. Refuses a database whose
// schema is newer than this program knows. Returns a one-line message for the operator;
// *ok says whether it worked. Never puts the conninfo in the message.
std::string db_init(const std::string& conninfo, int timeout_ms, bool* ok);

}  // namespace angel
