// The classifier stops for 3 s and comes back on its port while live traffic runs (issue 13,
// item 3): netd sees the send errors, and once sending works again it sends the templates before
// any data, so the classifier decodes records within 1 s of its return (not at the next template
// refresh, 30 s by default). The records lost while it was away are counted: every record netd took
// from the ring is sent or counted lost in a failed datagram.
#include <gtest/gtest.h>

#include <cstdio>

#include "meter_harness.hpp"
#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr unsigned kPort = 4739;

// Records the sink decoded into its output so far.
size_t decoded_records(const fs::path& out) {
    size_t n = 0;
    std::string err;
    for (const std::string& line : read_lines(out)) n += parse_sink_line(line, &err).has_value();
    return n;
}

TEST(ExportRecovery, ClassifierBackAfterThreeSecondsDecodesWithinOneSecond) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    NetnsMeter m("exr", "exr");
    // The refresh far beyond the test: only the recovery can bring the templates in time.
    m.write_config(m.config(kPort, "127.0.0.1", "export = { template_refresh = 300; };\n"));
    ASSERT_TRUE(m.start_sink(kPort, 60));
    ASSERT_TRUE(m.start_meter());
    m.start_traffic(4, "--pps=1000");  // 11,172 frames, about 11 s
    ASSERT_TRUE(wait_until_s([&] { return decoded_records(m.sink_out(0)) >= 500; }, 20)) << m.log();

    m.sinks[0]->terminate(5.0);  // the classifier stops
    ASSERT_FALSE(m.sinks[0]->running());
    sleep_s(3.0);
    ASSERT_TRUE(m.angelctl({"stats"}).ok());
    const uint64_t back_ns = wall_clock_ns();
    ASSERT_TRUE(m.start_sink(kPort, 60));  // and comes back on its port
    ASSERT_TRUE(wait_until_s([&] { return decoded_records(m.sink_out(1)) > 0; }, 10)) << m.log();
    const double first_s = static_cast<double>(wall_clock_ns() - back_ns) / 1e9;
    EXPECT_LT(first_s, 1.0) << "the classifier could decode nothing for " << first_s << " s";
    ASSERT_TRUE(m.sender->running()) << "the traffic ended before the classifier came back";

    ASSERT_TRUE(m.sender->wait(60)) << "tcpreplay did not finish";
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();
    const uint64_t sent = C["records_sent"], lost = C["records_lost"];
    EXPECT_GT(C["send_errors"], 0u);
    EXPECT_GT(C["datagrams_failed"], 0u);
    EXPECT_GT(lost, 0u);
    EXPECT_EQ(sent + lost, C["netd_records"]) << "a record taken from the ring was neither sent nor counted lost";
    const std::string summary = read_file(m.sink_summary(1));
    EXPECT_EQ(summary.find("unknown template"), std::string::npos)
        << "data reached the classifier before its templates:\n" << summary;
    const size_t before = decoded_records(m.sink_out(0)), after = decoded_records(m.sink_out(1));
    EXPECT_LE(before + after, sent) << "the sinks decoded more than netd sent";
    std::printf("[ export  ] classifier back: first record decoded after %.3f s; %llu records lost in %llu failed "
                "datagrams (%llu send errors); sinks decoded %zu + %zu of %llu sent\n",
                first_s, static_cast<unsigned long long>(lost), static_cast<unsigned long long>(C["datagrams_failed"]),
                static_cast<unsigned long long>(C["send_errors"]), before, after, static_cast<unsigned long long>(sent));
}

}  // namespace
}  // namespace angel::itest
