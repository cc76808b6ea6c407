// How far the capture of a live meter got, kept in <runtime_dir>/<instance>.coverage while it
// runs, so that the next start can tell the classifier about a gap after an unclean stop (ctld
// killed, a crash, power lost) even when the segment is gone or cannot be adopted (a segment
// that is adopted knows the gap itself: ctld/segment_adoption.hpp):
//
//   start:   a file left behind means the previous run did not stop in order; its time T to
//            now is a ctld_restart loss record (packets not known), via the control object;
//   running: the latest capture time procd has seen (through the checked view), written at
//            most every 100 ms when it moved on;
//   stop:    an orderly stop removes the file (the classifier saw every flow end; no gap).
// The file is root's, in root's runtime_dir, opened without following links (runtime_files).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace angel {

class CaptureCoverage {
public:
    CaptureCoverage(const std::string& runtime_dir, const std::string& instance);
    ~CaptureCoverage();
    CaptureCoverage(const CaptureCoverage&) = delete;
    CaptureCoverage& operator=(const CaptureCoverage&) = delete;

    // What a previous, unclean run left: its last noted capture time, if any and sane
    // (not 0, not after wall_now_ns). Opens (creates) the file for this run.
    std::optional<uint64_t> begin(uint64_t wall_now_ns);
    // The capture has reached covered_ns; mono_ns paces the writes.
    void note(uint64_t covered_ns, uint64_t mono_ns);
    // Orderly stop: no gap to report next time.
    void finish();
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t written_ = 0, last_write_mono_ = 0;
};

}  // namespace angel
