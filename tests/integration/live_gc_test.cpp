// Timer-driven expiry on a live capture: a flow that sees no further packet is ended by the
// garbage collection ctld drives every flow.gc_interval (reason "idle"), not only when a later
// packet arrives. Traffic is UDP on loopback to 127.0.0.2, the only customer network, so the
// meter's own export to the sink on 127.0.0.1 is filtered out.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/integration/test_support.hpp"

using namespace angel::itest;
using namespace std::chrono_literals;

namespace {

struct Fd {
    int fd;
    ~Fd() { if (fd >= 0) close(fd); }
};

}  // namespace

TEST(LiveGc, IdleFlowIsEndedByTheCollectorWithoutAnotherPacket) {
    TempDir dir("angel-gc");
    const std::string inst = unique_name("gc");
    ShmGuard shm(inst);
    LocalSink sink;
    ASSERT_EQ(start_local_sink(sink, dir.path(), "sink", 30), "");

    // A receiver on 127.0.0.2, so the kernel answers no datagram with ICMP.
    Fd rx{socket(AF_INET, SOCK_DGRAM, 0)};
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(0x7F000002);
    ASSERT_EQ(bind(rx.fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
    socklen_t len = sizeof to;
    ASSERT_EQ(getsockname(rx.fd, reinterpret_cast<sockaddr*>(&to), &len), 0);

    MeterConfig mc;
    mc.instance = inst;
    mc.runtime_dir = dir / "run";
    mc.capture_interface = "lo";
    mc.classifier_host = "127.0.0.1";
    mc.classifier_port = sink.port;
    mc.extra = "customers = { networks = [\"127.0.0.2/32\"]; };\nflow = { timeout = 1; gc_interval = 1; };\n";
    write_file(dir / "m.conf", mc.text());
    Process ctld({{binary("angel-ctld").string(), "-f", "-c", (dir / "m.conf").string()}, dir / "ctld.out",
                  dir / "ctld.err", {}});
    ASSERT_TRUE(wait_until([&] { return read_file(dir / "ctld.err").find("angel-capd ready") != std::string::npos; },
                           15000ms))
        << read_file(dir / "ctld.err");

    Fd tx{socket(AF_INET, SOCK_DGRAM, 0)};
    for (int i = 0; i < 5; ++i)
        ASSERT_EQ(sendto(tx.fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1);
    const auto ctl = [&](const char* cmd) {
        return run_command({binary("angelctl").string(), "-c", (dir / "m.conf").string(), cmd, "--json"}, 10000ms);
    };
    // The flow is live with its 5 packets ...
    ASSERT_TRUE(wait_until([&] { return json_flat_objects(ctl("flows").out).size() == 1; }, 5000ms))
        << ctl("flows").out;
    const auto live = json_flat_objects(ctl("flows").out);
    EXPECT_EQ(live[0].at("packets"), "5");
    // ... and, with no further packet, gone within timeout (1 s) + a GC interval (1 s) + slack.
    EXPECT_TRUE(wait_until([&] { return json_flat_objects(ctl("flows").out).empty(); }, 6000ms))
        << ctl("flows").out;

    const ExitStatus e = ctld.stop(SIGTERM, 20000ms);
    EXPECT_TRUE(e.ok()) << e.describe() << "\n" << read_file(dir / "ctld.err");
    ASSERT_TRUE(wait_until([&] { return read_file(sink.out).find("flow_end") != std::string::npos; }, 5000ms));
    sink.proc.stop(SIGTERM, 5000ms);
    const auto recs = json_flat_objects(read_file(sink.out));
    int ends = 0, packets = 0;
    for (const auto& r : recs) {
        if (r.at("type") == "packet") ++packets;
        if (r.at("type") == "flow_end") {
            ++ends;
            EXPECT_EQ(r.at("reason"), "idle") << "the collector ended it, not the stop";
            EXPECT_EQ(r.at("packets"), "5");
        }
    }
    EXPECT_EQ(ends, 1);
    EXPECT_EQ(packets, 5);
}
