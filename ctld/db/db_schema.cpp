#include "ctld/db/db_schema.hpp"

#include "ctld/db/db_connection.hpp"

namespace angel {

std::string db_init(const std::string& conninfo, int timeout_ms, bool* ok) {
    *ok = false;
    if (conninfo.empty()) return "database.conninfo is not set: no database to initialise";
    DbConnection db;
    std::string err;
    if (!db.connect(conninfo, timeout_ms, -1, &err)) return "cannot connect to the database: " + err;
    try {
        db.exec("SET client_min_messages = warning");
        db.exec("BEGIN");
        // One db-init at a time (the lock ends with the transaction).
        db.exec("SELECT pg_advisory_xact_lock(4242424242)");
        int before = 0;
        PgResult t = db.exec("SELECT to_regclass('angel.schema_version') IS NOT NULL");
        if (t.text(0, 0) == "t") {
            PgResult v = db.exec("SELECT coalesce(max(version), 0) FROM angel.schema_version");
            before = std::stoi(v.text(0, 0));
        }
        if (before > kSchemaVersion) {
            db.exec("ROLLBACK");
            return "the database schema is at version " + std::to_string(before) + ", newer than this program's " +
                   std::to_string(kSchemaVersion) + ": nothing changed";
        }
        db.exec(schema_sql());
        db.exec("COMMIT");
        *ok = true;
        if (before == kSchemaVersion) return "schema angel is at version " + std::to_string(kSchemaVersion) + " (checked, nothing missing)";
        if (before == 0) return "schema angel created at version " + std::to_string(kSchemaVersion);
        return "schema angel upgraded from version " + std::to_string(before) + " to " + std::to_string(kSchemaVersion);
    } catch (const DbError& e) {
        return std::string("db-init failed, nothing changed: ") + e.what();
    }
}

}  // namespace angel
