// Whether the record ring can hold the HA replay window (docs/ha.md, "Sizing shm.record_ring"):
// said at angel-ctld -t and at start, as a warning (the meter runs; a window that does not fit
// is trimmed and counted in netd.window_trimmed).
#pragma once
#include <cstdint>
#include <string>

#include "common/config/config.hpp"

namespace angel {

// Records of one packet in the ring (one packet record; flow records are extra) and the share
// of the ring netd may keep (the rest is procd's headroom: netd/main.cpp).
inline constexpr uint64_t kRingRecordBytes = 64;
inline constexpr double kWindowShareOfRing = 0.75;

// Packets per second whose replay window (ha.replay_ms + ha.takeover_ms) the ring holds.
uint64_t replay_window_pps(const Config& cfg);

// Ring size a window at pps needs (bytes, rounded up to a power of two as the ring is sized).
uint64_t record_ring_for(const Config& cfg, uint64_t pps);

// A warning when an interface can carry more packets per second than the window holds (line
// rate of minimum-size Ethernet frames, from /sys/class/net/IF/speed; sys_root for tests), or
// when its speed is unknown; empty when HA or the replay is off, or everything fits.
std::string replay_window_warning(const Config& cfg, const std::string& sys_root = "/sys/class/net");

}  // namespace angel
