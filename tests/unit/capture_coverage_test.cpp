// ctld's coverage file (ctld/capture_coverage.*): what an unclean stop leaves is read back
// once by the next run; an orderly stop leaves nothing; nonsense in the file is ignored.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ctld/capture_coverage.hpp"
#include "unit_temp_dir.hpp"

namespace angel {
namespace {

constexpr uint64_t kT0 = 1'717'171'717'000'000'000ull;
constexpr uint64_t kMs = 1'000'000ull;

TEST(CaptureCoverage, UncleanStopLeavesTheLastCaptureTimeOrderlyStopNothing) {
    unit_testing::TempDir d("angel-coverage");
    {
        CaptureCoverage c(d.path, "inst");
        EXPECT_FALSE(c.begin(kT0).has_value()) << "a first run has no gap";
        c.note(kT0 + 10 * kMs, 1000 * kMs);
        c.note(kT0 + 20 * kMs, 1050 * kMs);  // within 100 ms of the last write: not written
        c.note(kT0 + 30 * kMs, 1100 * kMs);
        // Destroyed without finish(): as if ctld had been killed.
    }
    ASSERT_TRUE(std::filesystem::exists(d.file("inst.coverage")));
    {
        CaptureCoverage c(d.path, "inst");
        const auto left = c.begin(kT0 + 5000 * kMs);
        ASSERT_TRUE(left.has_value());
        EXPECT_EQ(*left, kT0 + 30 * kMs);
        c.note(kT0 + 6000 * kMs, 9000 * kMs);
        c.finish();
    }
    EXPECT_FALSE(std::filesystem::exists(d.file("inst.coverage")));
    {
        CaptureCoverage c(d.path, "inst");
        EXPECT_FALSE(c.begin(kT0 + 7000 * kMs).has_value()) << "an orderly stop is no gap";
        c.finish();
    }
    // A time in the future or garbage is no gap either.
    for (const char* text : {"99999999999999999999\n", "garbage\n", "0\n"}) {
        std::ofstream(d.file("inst.coverage")) << text;
        CaptureCoverage c(d.path, "inst");
        EXPECT_FALSE(c.begin(kT0).has_value()) << text;
        c.finish();
    }
}

}  // namespace
}  // namespace angel
