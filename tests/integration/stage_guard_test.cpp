// Guards an operator relies on: one capd per instance (a second one fails with a clear
// message and leaves the running meter alone), a stage refuses a segment of another layout,
// and angel-ctld -t tells a good configuration from a bad one with the right exit codes.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sysexits.h>

#include <cstring>
#include <string>

#include "shm/segment.hpp"
#include "tests/integration/test_support.hpp"

using namespace angel;
using namespace angel::itest;
using namespace std::chrono_literals;

namespace {

std::string config_text(const std::string& instance, const fs::path& run_dir, int port) {
    return "instance = \"" + instance + "\";\nruntime_dir = \"" + run_dir.string() +
           "\";\ncapture = { interface = \"lo\"; };\nclassifier = { host = \"127.0.0.1\"; port = " +
           std::to_string(port) + "; };\ncustomers = { networks = [\"192.0.2.0/24\"]; };\n";
}

}  // namespace

TEST(StageGuard, SecondCapdForAnInstanceIsRefused) {
    TempDir dir("angel-guard");
    const std::string inst = unique_name("guard");
    ShmGuard shm(inst);
    write_file(dir / "m.conf", config_text(inst, dir / "run", 9));  // discard port; no traffic
    Process ctld({{binary("angel-ctld").string(), "-f", "-c", (dir / "m.conf").string()},
                  dir / "ctld.out", dir / "ctld.err", {}});
    ASSERT_TRUE(wait_until([&] { return read_file(dir / "ctld.err").find("angel-capd ready") != std::string::npos; },
                           15000ms))
        << read_file(dir / "ctld.err");
    const CommandResult second = run_command({binary("angel-capd").string(), "-i", inst, "-f"}, 10000ms);
    EXPECT_TRUE(second.status.exited());
    EXPECT_NE(second.status.code(), 0);
    EXPECT_NE(second.err.find("another angel-capd already captures for instance " + inst), std::string::npos)
        << second.err;
    // The running meter is untouched: its capd is still the one that started first.
    const CommandResult st = run_command({binary("angelctl").string(), "-c", (dir / "m.conf").string(), "status"}, 10000ms);
    EXPECT_TRUE(st.status.ok()) << st.err;
    EXPECT_EQ(st.out.find("backoff"), std::string::npos) << st.out;
    const ExitStatus e = ctld.stop(SIGTERM, 20000ms);
    EXPECT_TRUE(e.ok()) << e.describe() << "\n" << read_file(dir / "ctld.err");
}

TEST(StageGuard, StageRefusesASegmentOfAnotherLayout) {
    const std::string inst = unique_name("layout");
    ShmGuard shm(inst);
    {
        SegmentSizes sz;
        sz.packet_ring_bytes = 1 << 20;
        sz.record_ring_bytes = 1 << 16;
        sz.event_ring_bytes = 1 << 16;
        sz.max_flows = 64;
        auto seg = Segment::create(inst, sz);
        seg->header()->layout_version = kLayoutVersion + 1;  // as a newer build would leave it
    }
    const CommandResult r = run_command({binary("angel-procd").string(), "-i", inst, "-f"}, 10000ms);
    EXPECT_TRUE(r.status.exited());
    EXPECT_EQ(r.status.code(), EX_UNAVAILABLE);
    EXPECT_NE(r.err.find("layout version"), std::string::npos) << r.err;
}

TEST(StageGuard, ConfigCheckExitCodes) {
    TempDir dir("angel-check");
    write_file(dir / "good.conf", config_text("chk", dir / "run", 4739));
    write_file(dir / "bad.conf", "instance = \"chk\";\nclassifier = { host = \"127.0.0.1\"; port = 70000; };\n");
    const CommandResult good = run_command({binary("angel-ctld").string(), "-t", "-c", (dir / "good.conf").string()}, 10000ms);
    EXPECT_TRUE(good.status.ok()) << good.err;
    const CommandResult bad = run_command({binary("angel-ctld").string(), "-t", "-c", (dir / "bad.conf").string()}, 10000ms);
    EXPECT_EQ(bad.status.code(), 78);
    // One line, file:line: what is wrong.
    EXPECT_NE(bad.err.find((dir / "bad.conf").string() + ":2: classifier.port"), std::string::npos) << bad.err;
}
