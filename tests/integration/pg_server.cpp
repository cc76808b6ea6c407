#include "pg_server.hpp"

#include <libpq-fe.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace angel::itest {

namespace {

constexpr const char* kOwner = "postgres";
constexpr int kPort = 5432;  // only names the socket file inside our own folder

bool as_root() { return geteuid() == 0; }

}  // namespace

fs::path PgServer::bin_dir() {
    std::vector<fs::path> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec))
        if (fs::exists(e.path() / "bin" / "initdb")) found.push_back(e.path() / "bin");
    if (found.empty()) return {};
    std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
        return std::stoi(a.parent_path().filename().string()) < std::stoi(b.parent_path().filename().string());
    });
    return found.back();
}

std::string PgServer::unavailable_reason() {
    if (bin_dir().empty()) return "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin";
    if (as_root() && !getpwnam(kOwner)) return "running as root and no 'postgres' user to run initdb as";
    if (as_root() && !have_program("runuser")) return "runuser not found";
    return "";
}

std::vector<std::string> PgServer::as_owner(std::vector<std::string> argv) const {
    if (!as_root()) return argv;
    argv.insert(argv.begin(), {"runuser", "-u", kOwner, "--"});
    return argv;
}

PgServer::PgServer() : dir_("angel-pg") {
    if (const std::string why = unavailable_reason(); !why.empty()) throw std::runtime_error(why);
    if (as_root()) {
        const passwd* pw = getpwnam(kOwner);
        if (chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0)
            throw std::runtime_error("cannot give " + dir_.path().string() + " to " + kOwner);
    }
    const CommandResult init = run_command(
        as_owner({(bin_dir() / "initdb").string(), "-D", (dir_.path() / "data").string(), "-A", "trust", "-U",
                  "postgres", "-E", "UTF8", "--no-sync"}),
        Millis(60000));
    if (!init.ok()) throw std::runtime_error("initdb failed: " + init.describe() + "\n" + init.out);
    if (!start()) throw std::runtime_error("the PostgreSQL server did not start:\n" + log());
}

PgServer::~PgServer() {
    if (running_) stop();
    // TempDir removes the folder (data, socket, log).
}

bool PgServer::start() {
    const std::string opts = "-c listen_addresses='' -c unix_socket_directories='" + dir_.path().string() +
                             "' -p " + std::to_string(kPort) + " -c fsync=off -c synchronous_commit=off"
                             " -c full_page_writes=off -c max_connections=30";
    const CommandResult r = run_command(as_owner({(bin_dir() / "pg_ctl").string(), "-D", (dir_.path() / "data").string(),
                                                  "-l", (dir_.path() / "server.log").string(), "-w", "-t", "30", "-o",
                                                  opts, "start"}),
                                        Millis(40000));
    running_ = r.ok();
    return running_;
}

bool PgServer::stop() {
    const CommandResult r = run_command(
        as_owner({(bin_dir() / "pg_ctl").string(), "-D", (dir_.path() / "data").string(), "-m", "immediate", "-w",
                  "-t", "30", "stop"}),
        Millis(40000));
    if (r.ok()) running_ = false;
    return r.ok();
}

std::string PgServer::log() const { return read_file(dir_.path() / "server.log"); }

std::string PgServer::conninfo() const {
    return "host=" + dir_.path().string() + " port=" + std::to_string(kPort) +
           " user=postgres dbname=postgres connect_timeout=5";
}

std::vector<std::vector<std::string>> PgServer::query(const std::string& sql) const {
    PGconn* c = PQconnectdb(conninfo().c_str());
    if (PQstatus(c) != CONNECTION_OK) {
        const std::string e = PQerrorMessage(c);
        PQfinish(c);
        throw std::runtime_error("cannot connect to the test server: " + e);
    }
    PGresult* r = PQexec(c, sql.c_str());
    const ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const std::string e = PQerrorMessage(c);
        PQclear(r);
        PQfinish(c);
        throw std::runtime_error("query failed: " + e + "  in: " + sql);
    }
    std::vector<std::vector<std::string>> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
        std::vector<std::string> row;
        for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j));
        rows.push_back(std::move(row));
    }
    PQclear(r);
    PQfinish(c);
    return rows;
}

}  // namespace angel::itest
