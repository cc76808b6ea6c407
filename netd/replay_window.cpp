#include "netd/replay_window.hpp"

#include <algorithm>

namespace angel {

void ReplayWindow::start(uint64_t pos) {
    begin_ = scan_ = pos;
}

void ReplayWindow::observe(const Record& r) {
    if (r.type == static_cast<uint8_t>(RecordType::packet)) newest_ns_ = std::max(newest_ns_, r.ts_ns);
}

ReplayWindow::Released ReplayWindow::release(const RecordRing<Record>& ring, uint64_t read_pos,
                                             uint64_t window_ns, uint64_t max_records, bool frozen) {
    Released out;
    if (read_pos < begin_) return out;  // not ours to judge (the caller rewound): nothing leaves
    const uint64_t old_begin = begin_;
    if (window_ns == 0) {  // no replay (ha.replay_ms = 0): nothing is kept
        out.aged = read_pos - begin_;
        begin_ = scan_ = read_pos;
        return out;
    }
    if (!frozen) {
        const uint64_t cutoff = newest_ns_ > window_ns ? newest_ns_ - window_ns : 0;
        scan_ = std::max(scan_, begin_);
        for (; scan_ < read_pos; ++scan_) {
            const Record& r = ring.at(scan_);
            if (r.type != static_cast<uint8_t>(RecordType::packet)) continue;
            if (r.ts_ns >= cutoff) break;
            begin_ = scan_ + 1;  // this packet and everything before it are out of the window
        }
        out.aged = begin_ - old_begin;
    }
    if (read_pos - begin_ > max_records) {
        const uint64_t to = read_pos - max_records;
        for (uint64_t p = begin_; p < to; ++p) {
            const Record& r = ring.at(p);
            if (r.type != static_cast<uint8_t>(RecordType::packet)) continue;
            if (!out.trimmed_packets++) out.trimmed_first_ns = r.ts_ns;
            out.trimmed_last_ns = r.ts_ns;
        }
        out.trimmed = to - begin_;
        begin_ = to;
        scan_ = std::max(scan_, begin_);
    }
    return out;
}

}  // namespace angel
