// The loss and watermark records of an angel-sink JSON stream, and the promises they make:
// a watermark never goes back, and no packet record after a watermark T has a time before T.
// Fed line by line in stream order (any record type); the live, supervision and replay tests
// share it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace angel::itest {

struct StreamReports {
    std::map<std::string, uint64_t> loss_packets;  // by cause: sum of the records' packets
    std::map<std::string, uint64_t> loss_records;  // by cause
    uint64_t watermarks = 0;
    uint64_t watermark_backwards = 0;  // watermarks below an earlier one
    uint64_t packets_behind = 0;       // packet records after a watermark, with an earlier time
    uint64_t bad_loss = 0;             // first_ns > last_ns, or an unknown cause
    uint64_t last_watermark = 0;
    uint64_t packets_after_last_watermark = 0;
    std::vector<std::string> examples;

    // One sink line. Returns true when it was a loss or watermark record.
    bool line(const std::string& l);
    uint64_t loss_total() const;
    uint64_t loss_record_total() const;
    uint64_t packets_of(const std::string& cause) const {
        const auto it = loss_packets.find(cause);
        return it == loss_packets.end() ? 0 : it->second;
    }
    std::string describe() const;  // one line, for the test logs
};

}  // namespace angel::itest
