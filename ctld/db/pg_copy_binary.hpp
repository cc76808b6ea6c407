// Rows in PostgreSQL's binary COPY format (COPY ... FROM STDIN WITH (FORMAT binary)), for the
// flow writer's temporary tables. Binary instead of text: the server takes the values as they
// are (no parsing of timestamps and addresses) and the meter prints none (inet_ntop and a
// formatted time per column). Only the column types the writer uses; a row's field count and
// each field's type must match the table, which the server checks by length.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "common/packet/parsed_packet.hpp"

namespace angel {

class PgCopyBinary {
public:
    // Empties the buffer and writes the header.
    void begin();
    // Starts a row of n fields; the fields follow.
    void row(uint16_t n);
    void i16(int16_t v);
    void i32(int32_t v);
    void i64(int64_t v);
    // version 4: the first 4 bytes of a (inet, /32); otherwise 16 bytes (/128).
    void inet(uint8_t version, const IpBytes& a);
    // Nanoseconds since the Unix epoch, truncated to microseconds (as pg_timestamp() prints them).
    void timestamptz(uint64_t ns);
    void text(std::string_view s);
    // The trailer; the buffer is then ready for copy_in().
    void finish();

    bool has_rows() const { return rows_ > 0; }
    const std::string& data() const { return buf_; }

private:
    void be(uint64_t v, int bytes);

    std::string buf_;
    uint64_t rows_ = 0;
};

}  // namespace angel
