#include "ctld/ha/replay_window_check.hpp"

#include <bit>
#include <cstdio>
#include <fstream>

namespace angel {

namespace {

double window_s(const Config& cfg) {
    return static_cast<double>(cfg.ha.replay_ms + cfg.ha.takeover_ms) / 1000.0;
}

// Minimum Ethernet frame (64 octets) plus preamble, start delimiter and inter-frame gap (20).
constexpr double kMinFrameBits = (64 + 20) * 8;

std::string mib(uint64_t bytes) {
    char b[32];
    if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) std::snprintf(b, sizeof b, "%llu GiB", static_cast<unsigned long long>(bytes >> 30));
    else std::snprintf(b, sizeof b, "%llu MiB", static_cast<unsigned long long>((bytes + (1ull << 20) - 1) >> 20));
    return b;
}

}  // namespace

uint64_t replay_window_pps(const Config& cfg) {
    const double records = static_cast<double>(cfg.shm.record_ring / kRingRecordBytes) * kWindowShareOfRing;
    return static_cast<uint64_t>(records / window_s(cfg));
}

uint64_t record_ring_for(const Config& cfg, uint64_t pps) {
    const double bytes = static_cast<double>(pps) * window_s(cfg) * kRingRecordBytes / kWindowShareOfRing;
    return std::bit_ceil(static_cast<uint64_t>(bytes) + 1);
}

std::string replay_window_warning(const Config& cfg, const std::string& sys_root) {
    if (cfg.ha.mode == "none" || cfg.ha.replay_ms == 0 || window_s(cfg) <= 0) return {};
    const uint64_t held = replay_window_pps(cfg);
    std::string out;
    for (const std::string& ifname : cfg.capture.interfaces) {
        long mbps = -1;
        std::ifstream f(sys_root + "/" + ifname + "/speed");
        if (!(f >> mbps)) mbps = -1;
        char line[512];
        if (mbps <= 0) {
            std::snprintf(line, sizeof line,
                          "ha.replay_ms: shm.record_ring (%s) holds the replay window (ha.replay_ms %d + "
                          "ha.takeover_ms %d) up to %llu packets/s; the speed of %s is unknown: size the ring "
                          "for its packet rate (docs/ha.md)",
                          mib(cfg.shm.record_ring).c_str(), cfg.ha.replay_ms, cfg.ha.takeover_ms,
                          static_cast<unsigned long long>(held), ifname.c_str());
        } else {
            const auto line_pps = static_cast<uint64_t>(static_cast<double>(mbps) * 1e6 / kMinFrameBits);
            if (line_pps <= held) continue;
            std::snprintf(line, sizeof line,
                          "ha.replay_ms: shm.record_ring (%s) holds the replay window (ha.replay_ms %d + "
                          "ha.takeover_ms %d) up to %llu packets/s; %s (%ld Mb/s) can carry %llu packets/s "
                          "of minimum-size frames, which needs shm.record_ring = %s (docs/ha.md)",
                          mib(cfg.shm.record_ring).c_str(), cfg.ha.replay_ms, cfg.ha.takeover_ms,
                          static_cast<unsigned long long>(held), ifname.c_str(), mbps,
                          static_cast<unsigned long long>(line_pps), mib(record_ring_for(cfg, line_pps)).c_str());
        }
        out += (out.empty() ? "" : "\n") + std::string(line);
    }
    return out;
}

}  // namespace angel
