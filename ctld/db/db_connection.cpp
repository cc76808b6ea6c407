#include "ctld/db/db_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "shm/segment.hpp"  // monotonic_ms

namespace angel {

std::string pg_error_text(PGconn* c) {
    std::string s = c ? PQerrorMessage(c) : "out of memory";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

DbConnection::~DbConnection() { close(); }

void DbConnection::close() {
    {
        std::lock_guard<std::mutex> g(fd_mu_);
        fd_ = -1;
    }
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
}

bool DbConnection::ok() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

bool DbConnection::connect(const std::string& conninfo, int timeout_ms, int wake_fd, std::string* error) {
    close();
    conn_ = PQconnectStart(conninfo.c_str());
    if (!conn_) {
        *error = "out of memory";
        return false;
    }
    if (PQstatus(conn_) == CONNECTION_BAD) {
        *error = pg_error_text(conn_);
        close();
        return false;
    }
    const uint64_t deadline = monotonic_ms() + static_cast<uint64_t>(timeout_ms);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
        if (st == PGRES_POLLING_OK) break;
        if (st == PGRES_POLLING_FAILED) {
            *error = pg_error_text(conn_);
            close();
            return false;
        }
        const uint64_t now = monotonic_ms();
        if (now >= deadline) {
            *error = "timed out after " + std::to_string(timeout_ms) + " ms";
            close();
            return false;
        }
        pollfd p[2] = {{PQsocket(conn_), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0},
                       {wake_fd, POLLIN, 0}};
        const int n = poll(p, wake_fd >= 0 ? 2 : 1, static_cast<int>(std::min<uint64_t>(deadline - now, 100)));
        if (wake_fd >= 0 && (p[1].revents & POLLIN)) {
            *error = "interrupted";
            close();
            return false;
        }
        if (n > 0) st = PQconnectPoll(conn_);
    }
    PQsetnonblocking(conn_, 0);
    std::lock_guard<std::mutex> g(fd_mu_);
    fd_ = PQsocket(conn_);
    return true;
}

void DbConnection::interrupt() {
    std::lock_guard<std::mutex> g(fd_mu_);
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
}

void DbConnection::throw_result_error(const PgResult& r) const {
    const char* state = r.get() ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    throw DbError(pg_error_text(conn_), state ? state : "");
}

PgResult DbConnection::exec(const std::string& sql) {
    if (!conn_) throw DbError("not connected");
    PgResult r(PQexec(conn_, sql.c_str()));
    const ExecStatusType st = r.get() ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw_result_error(r);
    return r;
}

PgResult DbConnection::exec(const std::string& sql, const std::vector<std::string>& params) {
    if (!conn_) throw DbError("not connected");
    std::vector<const char*> p;
    p.reserve(params.size());
    for (const auto& s : params) p.push_back(s.c_str());
    PgResult r(PQexecParams(conn_, sql.c_str(), static_cast<int>(p.size()), nullptr, p.data(), nullptr, nullptr, 0));
    const ExecStatusType st = r.get() ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) throw_result_error(r);
    return r;
}

void DbConnection::copy_in(const std::string& copy_sql, const std::string& data) {
    if (!conn_) throw DbError("not connected");
    {
        PgResult r(PQexec(conn_, copy_sql.c_str()));
        if (!r.get() || PQresultStatus(r.get()) != PGRES_COPY_IN) throw DbError(pg_error_text(conn_));
    }
    if (!data.empty() && PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1)
        throw DbError(pg_error_text(conn_));
    if (PQputCopyEnd(conn_, nullptr) != 1) throw DbError(pg_error_text(conn_));
    std::string err, state;
    while (PGresult* r = PQgetResult(conn_)) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && err.empty()) {
            err = pg_error_text(conn_);
            if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) state = s;
        }
        PQclear(r);
    }
    if (!err.empty()) throw DbError(err, state);
}

std::string pg_timestamp(uint64_t ns) {
    const time_t s = static_cast<time_t>(ns / 1'000'000'000ull);
    const unsigned us = static_cast<unsigned>((ns % 1'000'000'000ull) / 1000);
    tm t{};
    gmtime_r(&s, &t);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06u+00", t.tm_year + 1900, t.tm_mon + 1,
                  t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, us);
    return buf;
}

void copy_escape(std::string& out, const std::string& v) {
    for (char c : v) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            default: out += c;
        }
    }
}

}  // namespace angel
