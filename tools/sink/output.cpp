// JSON lines with exactly the keys issue 3 specifies, in that order. No iostreams, no printf per
// field: integers are converted with a small digit loop into the buffer.
#include "tools/sink/output.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace angel::sink {

void format_addr(uint8_t ip_version, const IpBytes& a, char out[64]) {
    if (!inet_ntop(ip_version == 6 ? AF_INET6 : AF_INET, a.data(), out, 64)) std::strcpy(out, "?");
}

Output::Output(int fd, size_t capacity) : fd_(fd), buf_(capacity) {}

Output::~Output() { flush(); }

void Output::flush() {
    size_t off = 0;
    while (off < pos_ && !failed_) {
        const ssize_t n = write(fd_, buf_.data() + off, pos_ - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            failed_ = true;  // EPIPE etc.: keep decoding and counting, stop printing
            break;
        }
        off += size_t(n);
    }
    pos_ = 0;
}

void Output::put(std::string_view s) {
    std::memcpy(buf_.data() + pos_, s.data(), s.size());
    pos_ += s.size();
}

namespace {
// "00".."99": two digits per division halves the divisions of the digit loop.
constexpr auto kDigitPairs = [] {
    std::array<char, 200> t{};
    for (int i = 0; i < 100; ++i) {
        t[size_t(2 * i)] = char('0' + i / 10);
        t[size_t(2 * i + 1)] = char('0' + i % 10);
    }
    return t;
}();
}  // namespace

void Output::put_u64(uint64_t v) {
    char tmp[20];
    size_t at = sizeof tmp;
    while (v >= 100) {
        const size_t d = size_t(v % 100) * 2;
        v /= 100;
        tmp[--at] = kDigitPairs[d + 1];
        tmp[--at] = kDigitPairs[d];
    }
    if (v >= 10) {
        tmp[--at] = kDigitPairs[size_t(v) * 2 + 1];
        tmp[--at] = kDigitPairs[size_t(v) * 2];
    } else {
        tmp[--at] = char('0' + v);
    }
    std::memcpy(buf_.data() + pos_, tmp + at, sizeof tmp - at);
    pos_ += sizeof tmp - at;
}

void Output::put_addr(uint8_t ip_version, const IpBytes& a) {
    char s[64];
    format_addr(ip_version, a, s);
    put(s);
}

void Output::record(const ipfix::DecodedRecord& r) {
    reserve(512);  // longest line (flow_start with two IPv6 addresses) is well below this
    switch (r.kind) {
    case ipfix::RecordKind::packet:
        put("{\"type\":\"packet\",\"flow_id\":");
        put_u64(r.packet.flow_id);
        if (r.has_index) {  // absent only from an exporter without angelPacketIndex
            put(",\"idx\":");
            put_u64(r.packet.index);
        }
        put(",\"ts_ns\":");
        put_u64(r.packet.ts_ns);
        put(",\"len\":");
        put_u64(r.packet.wire_len);
        put(",\"dir\":");
        put_u64(r.packet.dir);
        put(",\"tcp_flags\":");
        put_u64(r.packet.tcp_flags);
        put(r.packet.new_flow ? ",\"new\":true" : ",\"new\":false");
        put(r.packet.replayed ? ",\"replayed\":true}\n" : "}\n");
        break;
    case ipfix::RecordKind::flow_start:
        put("{\"type\":\"flow_start\",\"flow_id\":");
        put_u64(r.start.flow_id);
        put(",\"ts_ns\":");
        put_u64(r.start.ts_ns);
        put(",\"proto\":");
        put_u64(r.start.proto);
        put(",\"src\":\"");
        put_addr(r.start.ip_version, r.start.src);
        put("\",\"sport\":");
        put_u64(r.start.sport);
        put(",\"dst\":\"");
        put_addr(r.start.ip_version, r.start.dst);
        put("\",\"dport\":");
        put_u64(r.start.dport);
        put(r.start.replayed ? ",\"replayed\":true}\n" : "}\n");
        break;
    case ipfix::RecordKind::flow_end:
        put("{\"type\":\"flow_end\",\"flow_id\":");
        put_u64(r.end.flow_id);
        put(",\"reason\":\"");
        put(ipfix::end_reason_text(r.end.reason));
        put("\",\"first_ns\":");
        put_u64(r.end.first_ns);
        put(",\"last_ns\":");
        put_u64(r.end.last_ns);
        put(",\"packets\":");
        put_u64(r.end.packets[0] + r.end.packets[1]);
        put(",\"bytes\":");
        put_u64(r.end.bytes[0] + r.end.bytes[1]);
        put(r.end.replayed ? ",\"replayed\":true}\n" : "}\n");
        break;
    case ipfix::RecordKind::loss:
        put("{\"type\":\"loss\",\"cause\":\"");
        put(ipfix::loss_cause_text(r.loss.cause));
        put("\",\"first_ns\":");
        put_u64(r.loss.first_ns);
        put(",\"last_ns\":");
        put_u64(r.loss.last_ns);
        put(",\"packets\":");
        put_u64(r.loss.packets);
        put("}\n");
        break;
    case ipfix::RecordKind::watermark:
        put("{\"type\":\"watermark\",\"ts_ns\":");
        put_u64(r.watermark.ts_ns);
        put("}\n");
        break;
    case ipfix::RecordKind::other:
        break;
    }
}

}  // namespace angel::sink
