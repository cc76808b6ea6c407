#include "ctld/db/pg_copy_binary.hpp"

namespace angel {

namespace {

// PostgreSQL's inet wire format: its own family numbers, not the socket ones.
constexpr uint8_t kPgAfInet = 2;
constexpr uint8_t kPgAfInet6 = 3;
// timestamptz on the wire: microseconds since 2000-01-01 00:00:00 UTC.
constexpr int64_t kPgEpochUnixUs = 946'684'800'000'000;

}  // namespace

void PgCopyBinary::be(uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) buf_ += static_cast<char>((v >> (8 * i)) & 0xff);
}

void PgCopyBinary::begin() {
    buf_.clear();
    rows_ = 0;
    static constexpr char kSignature[] = "PGCOPY\n\377\r\n";  // 11 bytes with the final NUL
    buf_.append(kSignature, sizeof kSignature);
    be(0, 4);  // flags: no OIDs
    be(0, 4);  // header extension length
}

void PgCopyBinary::row(uint16_t n) {
    be(n, 2);
    ++rows_;
}

void PgCopyBinary::i16(int16_t v) {
    be(2, 4);
    be(static_cast<uint16_t>(v), 2);
}

void PgCopyBinary::i32(int32_t v) {
    be(4, 4);
    be(static_cast<uint32_t>(v), 4);
}

void PgCopyBinary::i64(int64_t v) {
    be(8, 4);
    be(static_cast<uint64_t>(v), 8);
}

void PgCopyBinary::inet(uint8_t version, const IpBytes& a) {
    const bool v4 = version == 4;
    const uint8_t n = v4 ? 4 : 16;
    be(4u + n, 4);
    buf_ += static_cast<char>(v4 ? kPgAfInet : kPgAfInet6);
    buf_ += static_cast<char>(v4 ? 32 : 128);  // prefix bits: a host address
    buf_ += '\0';                               // inet, not cidr
    buf_ += static_cast<char>(n);
    buf_.append(reinterpret_cast<const char*>(a.data()), n);
}

void PgCopyBinary::timestamptz(uint64_t ns) {
    i64(static_cast<int64_t>(ns / 1000) - kPgEpochUnixUs);
}

void PgCopyBinary::text(std::string_view s) {
    be(s.size(), 4);
    buf_.append(s);
}

void PgCopyBinary::finish() {
    be(0xffff, 2);  // the field count -1 ends the data
}

}  // namespace angel
