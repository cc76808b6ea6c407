// A real PostgreSQL server for integration tests: a reusable RAII fixture.
//
// PgServer runs initdb in a fresh temporary directory as an unprivileged user (the "postgres"
// system user when the tests run as root: initdb refuses root), then starts the server with
// pg_ctl, listening only on a unix socket in that directory (listen_addresses = ''), trust
// authentication, fsync off. The destructor stops it (pg_ctl stop -m immediate) and removes
// the directory, whatever happened in the test. stop()/start() take it away and bring it back
// mid-test (database outage). Every command is bounded.
//
// unavailable_reason() says why no server can be made here (no PostgreSQL binaries, no
// unprivileged user), so tests can skip with a reason.
#pragma once

#include <string>
#include <vector>

#include "test_support.hpp"

namespace angel::itest {

class PgServer {
public:
    PgServer();  // throws std::runtime_error (with initdb's / the server's log) on failure
    ~PgServer();
    PgServer(const PgServer&) = delete;
    PgServer& operator=(const PgServer&) = delete;

    static std::string unavailable_reason();
    // The folder with initdb, pg_ctl, postgres (the highest installed version).
    static fs::path bin_dir();

    // libpq keyword/value conninfo for the superuser over the unix socket.
    std::string conninfo() const;
    const fs::path& socket_dir() const { return dir_.path(); }
    bool running() const { return running_; }

    // Immediate stop (like a crash: no checkpoint, connections cut) and a fresh start on the same
    // data. Both return false (and log() says why) when pg_ctl fails or times out.
    bool stop();
    bool start();
    std::string log() const;

    // One statement (or several separated by ';' when no result is wanted) through libpq.
    // Throws std::runtime_error with the server's message on failure. Rows as text; NULL -> "".
    std::vector<std::vector<std::string>> query(const std::string& sql) const;

private:
    std::vector<std::string> as_owner(std::vector<std::string> argv) const;
    TempDir dir_;
    bool running_ = false;
};

}  // namespace angel::itest
