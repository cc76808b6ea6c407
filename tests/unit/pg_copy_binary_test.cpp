// PgCopyBinary against the bytes PostgreSQL's binary COPY format defines (the server's own
// check is the database tests: every value read back from angel.flows and angel.flow_history).
#include "ctld/db/pg_copy_binary.hpp"

#include <gtest/gtest.h>

#include <string>

namespace angel {
namespace {

std::string bytes(std::initializer_list<int> v) {
    std::string s;
    for (int b : v) s += static_cast<char>(b);
    return s;
}

const std::string kHeader = std::string("PGCOPY\n\377\r\n\0", 11) + bytes({0, 0, 0, 0, 0, 0, 0, 0});

TEST(PgCopyBinary, EmptyIsHeaderAndTrailer) {
    PgCopyBinary b;
    b.begin();
    b.finish();
    EXPECT_FALSE(b.has_rows());
    EXPECT_EQ(b.data(), kHeader + bytes({0xff, 0xff}));
}

TEST(PgCopyBinary, FieldsBigEndianWithLengths) {
    PgCopyBinary b;
    b.begin();
    b.row(4);
    b.i16(-2);
    b.i32(65535);
    b.i64(4294967295);
    b.text("idle");
    b.finish();
    EXPECT_TRUE(b.has_rows());
    EXPECT_EQ(b.data(), kHeader + bytes({0, 4}) + bytes({0, 0, 0, 2, 0xff, 0xfe}) +
                            bytes({0, 0, 0, 4, 0, 0, 0xff, 0xff}) +
                            bytes({0, 0, 0, 8, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}) + bytes({0, 0, 0, 4}) +
                            "idle" + bytes({0xff, 0xff}));
}

TEST(PgCopyBinary, InetIsPostgresFamilyBitsAndAddress) {
    PgCopyBinary b;
    IpBytes a{};
    a[0] = 192;
    a[1] = 0;
    a[2] = 2;
    a[3] = 1;
    a[15] = 9;  // beyond an IPv4 address: not sent
    b.begin();
    b.inet(4, a);
    EXPECT_EQ(b.data().substr(kHeader.size()), bytes({0, 0, 0, 8, 2, 32, 0, 4, 192, 0, 2, 1}));
    b.begin();
    b.inet(6, a);
    std::string v6 = bytes({0, 0, 0, 20, 3, 128, 0, 16});
    v6.append(reinterpret_cast<const char*>(a.data()), 16);
    EXPECT_EQ(b.data().substr(kHeader.size()), v6);
}

TEST(PgCopyBinary, TimestampIsMicrosecondsSince2000Truncated) {
    PgCopyBinary b;
    b.begin();
    b.timestamptz(946'684'800'000'000'000ull);  // 2000-01-01 00:00:00 UTC
    EXPECT_EQ(b.data().substr(kHeader.size()), bytes({0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}));
    b.begin();
    b.timestamptz(946'684'800'000'001'999ull);  // + 1.999 us: 1 us, as pg_timestamp() prints it
    EXPECT_EQ(b.data().substr(kHeader.size()), bytes({0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1}));
    b.begin();
    b.timestamptz(0);  // 1970: before the PostgreSQL epoch, negative
    EXPECT_EQ(b.data().substr(kHeader.size()),
              bytes({0, 0, 0, 8, 0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00}));
}

}  // namespace
}  // namespace angel
