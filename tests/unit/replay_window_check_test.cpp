// The -t warning about the HA replay window (ctld/ha/replay_window_check.*), against a fake
// /sys/class/net.
#include <gtest/gtest.h>

#include <fstream>

#include "ctld/ha/replay_window_check.hpp"
#include "unit_temp_dir.hpp"

using namespace angel;

namespace {

Config ha_config(uint64_t ring, int replay_ms, int takeover_ms) {
    Config c;
    c.ha.mode = "vip";
    c.ha.vip = "192.0.2.1";
    c.ha.replay_ms = replay_ms;
    c.ha.takeover_ms = takeover_ms;
    c.shm.record_ring = ring;
    c.capture.interfaces = {"cap0"};
    return c;
}

}  // namespace

TEST(ReplayWindowCheck, RatesAndSizes) {
    // 16 MiB = 262144 records, 3/4 for the window = 196608; over 8 s: 24576 packets/s.
    const Config c = ha_config(16ull << 20, 6000, 2000);
    EXPECT_EQ(replay_window_pps(c), 24576u);
    // 1 Gb/s of minimum frames: 1e9 / 672 = 1488095 packets/s -> 64 B x 8 s / 0.75 = 1016 MB -> 1 GiB.
    EXPECT_EQ(record_ring_for(c, 1488095), 1ull << 30);
    EXPECT_EQ(record_ring_for(c, 24576), 32ull << 20);  // just over 16 MiB: the next power of two
}

TEST(ReplayWindowCheck, WarnsWhenTheLineRateExceedsTheWindow) {
    unit_testing::TempDir d("replay-window-check");
    std::filesystem::create_directories(d.file("cap0"));
    std::ofstream(d.file("cap0/speed")) << "1000\n";
    const Config c = ha_config(16ull << 20, 6000, 2000);
    const std::string w = replay_window_warning(c, d.path);
    EXPECT_EQ(w, "ha.replay_ms: shm.record_ring (16 MiB) holds the replay window (ha.replay_ms 6000 + "
                 "ha.takeover_ms 2000) up to 24576 packets/s; cap0 (1000 Mb/s) can carry 1488095 packets/s "
                 "of minimum-size frames, which needs shm.record_ring = 1 GiB (docs/ha.md)");
    // A ring that holds the line rate: nothing to say.
    EXPECT_EQ(replay_window_warning(ha_config(1ull << 30, 6000, 2000), d.path), "");
    // Unknown speed (no such interface here): said, with what the ring holds.
    Config u = c;
    u.capture.interfaces = {"nosuch0"};
    EXPECT_NE(replay_window_warning(u, d.path).find("the speed of nosuch0 is unknown"), std::string::npos);
    // HA or the replay off: silent.
    Config off = c;
    off.ha.replay_ms = 0;
    EXPECT_EQ(replay_window_warning(off, d.path), "");
    off = c;
    off.ha.mode = "none";
    EXPECT_EQ(replay_window_warning(off, d.path), "");
}
