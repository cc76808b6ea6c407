// A libpq connection for angel-ctld's database thread and for `angel-ctld --db-init`.
// Connecting is non-blocking (PQconnectStart/PQconnectPoll) with a deadline and an optional
// wake-up descriptor, so neither a dead server nor a stop request can hold the caller longer
// than it chose. Queries are plain blocking libpq calls: they run in the database thread only,
// and DbConnection::interrupt() (any thread) breaks one that hangs by shutting the socket down.
// Nothing here logs the conninfo; callers log mask_conninfo() only.
#pragma once
#include <libpq-fe.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace angel {

// One query result; frees itself.
class PgResult {
public:
    PgResult() = default;
    explicit PgResult(PGresult* r) : r_(r) {}
    ~PgResult() { if (r_) PQclear(r_); }
    PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    PgResult& operator=(PgResult&& o) noexcept {
        if (this != &o) { if (r_) PQclear(r_); r_ = o.r_; o.r_ = nullptr; }
        return *this;
    }
    PgResult(const PgResult&) = delete;
    PgResult& operator=(const PgResult&) = delete;
    PGresult* get() const { return r_; }
    int rows() const { return r_ ? PQntuples(r_) : 0; }
    bool null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
    std::string text(int row, int col) const { return PQgetvalue(r_, row, col); }

private:
    PGresult* r_ = nullptr;
};

class DbError : public std::runtime_error {
public:
    explicit DbError(const std::string& what, std::string sqlstate = "")
        : std::runtime_error(what), sqlstate_(std::move(sqlstate)) {}
    // The server's SQLSTATE ("23505": unique violation), empty when the error is not the server's.
    const std::string& sqlstate() const { return sqlstate_; }

private:
    std::string sqlstate_;
};

class DbConnection {
public:
    DbConnection() = default;
    ~DbConnection();
    DbConnection(const DbConnection&) = delete;
    DbConnection& operator=(const DbConnection&) = delete;

    // Connects, giving up after timeout_ms or as soon as wake_fd (if >= 0) becomes readable.
    // On failure returns false and sets *error (libpq's message, no conninfo in it).
    bool connect(const std::string& conninfo, int timeout_ms, int wake_fd, std::string* error);
    void close();
    bool ok() const;
    PGconn* raw() const { return conn_; }
    int socket() const { return conn_ ? PQsocket(conn_) : -1; }

    // Runs SQL (several statements allowed when params is empty); throws DbError on failure.
    PgResult exec(const std::string& sql);
    PgResult exec(const std::string& sql, const std::vector<std::string>& params);
    // COPY ... FROM STDIN with the rows already formatted (text format, one line per row).
    void copy_in(const std::string& copy_sql, const std::string& data);

    // From any thread: makes a query that is blocked in this connection fail at once.
    void interrupt();

private:
    [[noreturn]] void throw_result_error(const PgResult& r) const;
    PGconn* conn_ = nullptr;
    std::mutex fd_mu_;
    int fd_ = -1;  // the socket, for interrupt()
};

// The text of a libpq error without its trailing newline.
std::string pg_error_text(PGconn* c);

// "2024-05-01 12:00:00.123456+00": nanoseconds since the epoch as a timestamptz literal
// (microsecond precision, truncated). The same value always gives the same text, so rows can be
// matched on it exactly.
std::string pg_timestamp(uint64_t ns);

// Escapes a value for COPY text format (backslash, tab, newline, carriage return).
void copy_escape(std::string& out, const std::string& v);

}  // namespace angel
