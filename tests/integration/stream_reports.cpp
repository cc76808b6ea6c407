#include "stream_reports.hpp"

#include "test_support.hpp"

namespace angel::itest {

namespace {
void example(StreamReports& r, const std::string& s) {
    if (r.examples.size() < 5) r.examples.push_back(s);
}
}  // namespace

bool StreamReports::line(const std::string& l) {
    const std::string type = json_field(l, "type");
    if (type == "packet") {
        const uint64_t ts = std::stoull(json_field(l, "ts_ns"));
        ++packets_after_last_watermark;
        if (ts < last_watermark) {
            ++packets_behind;
            example(*this, "packet record after watermark " + std::to_string(last_watermark) + ": " + l);
        }
        return false;
    }
    if (type == "watermark") {
        const uint64_t t = std::stoull(json_field(l, "ts_ns"));
        ++watermarks;
        if (t < last_watermark) {
            ++watermark_backwards;
            example(*this, "watermark " + std::to_string(t) + " after " + std::to_string(last_watermark));
        } else {
            last_watermark = t;
        }
        packets_after_last_watermark = 0;
        return true;
    }
    if (type == "loss") {
        const std::string cause = json_field(l, "cause");
        const uint64_t first = std::stoull(json_field(l, "first_ns"));
        const uint64_t last = std::stoull(json_field(l, "last_ns"));
        ++loss_records[cause];
        loss_packets[cause] += std::stoull(json_field(l, "packets"));
        if (first > last || cause == "unknown") {
            ++bad_loss;
            example(*this, "bad loss record: " + l);
        }
        return true;
    }
    return false;
}

uint64_t StreamReports::loss_total() const {
    uint64_t n = 0;
    for (const auto& [c, p] : loss_packets) n += p;
    return n;
}

uint64_t StreamReports::loss_record_total() const {
    uint64_t n = 0;
    for (const auto& [c, k] : loss_records) n += k;
    return n;
}

std::string StreamReports::describe() const {
    std::string s = "watermarks " + std::to_string(watermarks) + " (last " + std::to_string(last_watermark) +
                    ", backwards " + std::to_string(watermark_backwards) + ", packets behind " +
                    std::to_string(packets_behind) + ") | loss records:";
    if (loss_records.empty()) s += " none";
    for (const auto& [c, k] : loss_records)
        s += " " + c + " " + std::to_string(k) + " (" + std::to_string(loss_packets.at(c)) + " packets)";
    return s;
}

}  // namespace angel::itest
