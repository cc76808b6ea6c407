// Buffered output of the sink: one JSON object per line, formatted by hand into a large buffer
// and written with write(2) in big chunks (the sink may print millions of lines per second).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/ipfix_decoder.hpp"

namespace angel::sink {

class Output {
public:
    explicit Output(int fd, size_t capacity = 4u << 20);
    ~Output();  // flushes
    Output(const Output&) = delete;
    Output& operator=(const Output&) = delete;

    void record(const ipfix::DecodedRecord& r);  // one JSON line (kind other: nothing)
    void flush();
    size_t pending() const { return pos_; }
    bool failed() const { return failed_; }    // a write failed (e.g. closed pipe)

private:
    void reserve(size_t n) {
        if (pos_ + n > buf_.size()) flush();
    }
    void put(std::string_view s);
    void put_u64(uint64_t v);
    void put_addr(uint8_t ip_version, const IpBytes& a);

    int fd_;
    std::vector<char> buf_;
    size_t pos_ = 0;
    bool failed_ = false;
};

// Formats ADDR as text ("192.0.2.1", "2001:db8::1"); for the summary too.
void format_addr(uint8_t ip_version, const IpBytes& a, char out[64]);

}  // namespace angel::sink
