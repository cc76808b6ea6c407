// libFuzzer target over everything root code reads from the stage-writable data segment:
// ctld's status, stats and flows replies and the database thread's event drain, all through
// ctld/checked_segment_view.hpp. The input is laid over the parts a stage controls (the
// segment header with the stage status blocks and ring controls, the FlowMap header and its
// first entries, the first event-ring slots), the rest of the segment stays as created.
// Any crash, sanitizer report, hang (-timeout) or allocation past -rss_limit_mb is a finding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>

#include "ctld/checked_segment_view.hpp"
#include "ctld/db/db_flow_writer.hpp"
#include "ctld/status_report.hpp"
#include "shm/segment.hpp"

namespace {

angel::Segment& segment() {
    static std::unique_ptr<angel::Segment> seg = [] {
        angel::SegmentSizes sz;
        sz.packet_ring_bytes = 1 << 20;
        sz.record_ring_bytes = 1 << 16;
        sz.event_ring_bytes = 1 << 16;
        sz.max_flows = 2048;
        const std::string name = "fuzz-view-" + std::to_string(getpid());
        auto s = angel::Segment::create(name, sz);
        angel::Segment::remove(name);  // the mapping stays; nothing is left in /dev/shm
        return s;
    }();
    return *seg;
}

// Copies the next part of the input over [dst, dst+len).
void lay(const uint8_t*& data, size_t& size, uint8_t* dst, size_t len) {
    const size_t n = std::min(size, len);
    std::memcpy(dst, data, n);
    data += n;
    size -= n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    angel::Segment& seg = segment();
    const angel::SegmentLayout& l = seg.layout();
    uint8_t* base = seg.base();
    // The fixed identification fields stay (a stage cannot make ctld re-attach); everything
    // after them is the stage's to write.
    const size_t keep = offsetof(angel::SegmentHeader, ipfix_sequence);
    std::memset(base + keep, 0, sizeof(angel::SegmentHeader) - keep);
    lay(data, size, base + keep, sizeof(angel::SegmentHeader) - keep);
    const size_t fm_part = angel::FlowMap::entry_offset(l.flow_map_capacity, 64);
    std::memset(base + l.flow_map_offset, 0, fm_part);
    // Entries go in through the header part too: the FlowMap header first, then the first
    // 64 entries (the bucket arrays between are never read by root).
    lay(data, size, base + l.flow_map_offset, sizeof(angel::FlowMapHeader));
    lay(data, size, base + l.flow_map_offset + angel::FlowMap::entry_offset(l.flow_map_capacity, 0),
        64 * sizeof(angel::FlowEntry));
    const size_t ev_part = 64 * sizeof(angel::Record);
    std::memset(base + l.event_ring_offset, 0, ev_part);
    lay(data, size, base + l.event_ring_offset, ev_part);

    angel::MeterView v;
    v.instance = "fuzz";
    v.role = "master";
    v.database = true;
    const angel::Recovery rec{1234, 3, 0};
    v.recovery = &rec;  // the adopted gap (ExportProgress) is rendered too
    (void)angel::render_status(seg, v, true);
    (void)angel::render_status(seg, v, false);
    (void)angel::render_stats(seg, true);
    (void)angel::render_stats(seg, false);
    (void)angel::render_flows(seg, angel::FlowsQuery{true, 10}, true);
    (void)angel::render_flows(seg, angel::FlowsQuery{false, 100}, false);
    (void)angel::snapshot_live_flows(angel::CheckedSegmentView(seg));
    (void)angel::CheckedSegmentView(seg).adoptable();  // a dead run's segment, checked for adoption
    // The database drain: a bounded number of reads must reach an empty ring whatever the
    // head says (the drain loop in ctld/db/db_thread.cpp relies on it).
    angel::CheckedEventReader events(seg);
    static angel::Record out[256];
    int rounds = 0;
    while (!events.empty()) {
        const size_t n = events.read(out, 256);
        for (size_t i = 0; i < n; ++i)
            if (out[i].type != 2 && out[i].type != 3) __builtin_trap();  // only checked events pass
        events.commit();
        if (++rounds > 1 + 2 * static_cast<int>(l.event_ring_slots / 256)) __builtin_trap();  // unbounded drain
    }
    return 0;
}
