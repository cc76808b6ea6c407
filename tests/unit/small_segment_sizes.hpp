// The sizes of a small segment for unit tests: rings of 1 MiB / 64 KiB / 64 KiB and
// max_flows flows, so that a test segment costs little of /dev/shm.
#pragma once
#include "shm/segment.hpp"

namespace angel::unit_testing {

inline SegmentSizes small_segment_sizes(uint32_t max_flows = 1000) {
    SegmentSizes sz;
    sz.packet_ring_bytes = 1 << 20;
    sz.record_ring_bytes = 1 << 16;
    sz.event_ring_bytes = 1 << 16;
    sz.max_flows = max_flows;
    return sz;
}

}  // namespace angel::unit_testing
