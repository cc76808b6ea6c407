// The capture filter check: the customer filter's text must fit LiveConfig::bpf_filter, must
// compile, and must stay within what the kernel accepts (BPF_MAXINSNS), because libpcap would
// otherwise filter in user space without telling anyone. Instruction counts are compared with
// tcpdump -d (one line per instruction), not only with the function under test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "ctld/capture_filter_check.hpp"
#include "ctld/live_config_builder.hpp"

namespace angel {
namespace {

enum class Kind { v4_24, v4_32, v6_48, v6_128 };

std::vector<Cidr> networks(Kind kind, int n) {
    std::vector<Cidr> v;
    char buf[64];
    for (int i = 0; i < n; ++i) {
        switch (kind) {
            case Kind::v4_24: std::snprintf(buf, sizeof buf, "10.%d.%d.0/24", i / 256 % 256, i % 256); break;
            case Kind::v4_32:
                std::snprintf(buf, sizeof buf, "10.%d.%d.%d/32", i / 65536 % 256, i / 256 % 256, i % 256);
                break;
            case Kind::v6_48: std::snprintf(buf, sizeof buf, "2001:db8:%x::/48", i); break;
            case Kind::v6_128: std::snprintf(buf, sizeof buf, "2001:db8::%x/128", i + 1); break;
        }
        std::string err;
        auto c = parse_cidr(buf, &err);
        EXPECT_TRUE(c.has_value()) << buf << ": " << err;
        if (c) v.push_back(*c);
    }
    return v;
}

Config config_with(std::vector<Cidr> nets) {
    Config cfg = default_config();
    cfg.customers.networks = std::move(nets);
    return cfg;
}

bool have_tcpdump() { return std::system("command -v tcpdump >/dev/null 2>&1") == 0; }

// Instructions tcpdump -d prints for filter ("-y EN10MB" or "-i lo"); -1 when it fails.
long tcpdump_count(const std::string& where, const std::string& filter) {
    char path[] = "/tmp/angel-filter-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) return -1;
    close(fd);
    std::ofstream(path) << filter;
    const std::string cmd = "tcpdump -d " + where + " -F " + path + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    long lines = 0;
    if (p) {
        char line[512];
        while (std::fgets(line, sizeof line, p))
            if (line[0] == '(') ++lines;
    }
    const int rc = p ? pclose(p) : -1;
    unlink(path);
    return rc == 0 ? lines : -1;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

TEST(CaptureFilterCheck, EmptyFilterPasses) {
    const FilterCheck c = check_capture_filter("");
    EXPECT_TRUE(c.ok) << c.error;
    EXPECT_EQ(c.instructions, 1u);  // ret #snaplen
    EXPECT_EQ(customer_filter_problem(config_with({})), "");
}

TEST(CaptureFilterCheck, ShortListPasses) {
    const Config cfg = config_with(networks(Kind::v4_24, 3));
    const FilterCheck c = check_capture_filter(customer_filter(cfg.customers.networks), DLT_EN10MB, 128);
    EXPECT_TRUE(c.ok) << c.error;
    EXPECT_EQ(c.problem, FilterCheck::Problem::none);
    EXPECT_GT(c.instructions, 1u);
    EXPECT_LT(c.instructions, 200u);
    EXPECT_TRUE(c.error.empty());
    std::string warning = "stale";
    EXPECT_EQ(customer_filter_problem(cfg, false, &warning), "");
    EXPECT_EQ(warning, "");  // no interface configured: nothing was tried live
}

TEST(CaptureFilterCheck, CountMatchesTcpdump) {
    if (!have_tcpdump()) GTEST_SKIP() << "tcpdump not installed";
    std::vector<Cidr> nets = networks(Kind::v4_24, 30);
    for (const Cidr& n : networks(Kind::v6_48, 20)) nets.push_back(n);
    const std::string filter = customer_filter(nets);
    const FilterCheck c = check_capture_filter(filter, DLT_EN10MB, 262144);
    ASSERT_TRUE(c.ok) << c.error;
    EXPECT_GT(c.instructions, 500u);
    EXPECT_EQ(static_cast<long>(c.instructions), tcpdump_count("-y EN10MB", filter));
    EXPECT_EQ(tcpdump_count("-y EN10MB", ""), 1);
}

TEST(CaptureFilterCheck, OverKernelLimitRefusedWithCount) {
    const Config cfg = config_with(networks(Kind::v6_128, 150));  // ~5400 instructions, 7.2k characters
    const std::string filter = customer_filter(cfg.customers.networks);
    ASSERT_LE(filter.size(), kMaxFilterTextLen);
    const FilterCheck c = check_capture_filter(filter, DLT_EN10MB, cfg.capture.snaplen);
    EXPECT_FALSE(c.ok);
    EXPECT_EQ(c.problem, FilterCheck::Problem::too_many_instructions);
    EXPECT_GT(c.instructions, kKernelMaxFilterInsns);
    EXPECT_TRUE(contains(c.error, std::to_string(c.instructions) + " BPF instructions")) << c.error;

    const std::string msg = customer_filter_problem(cfg);
    EXPECT_EQ(msg, "the customer filter compiles to " + std::to_string(c.instructions) +
                       " BPF instructions; the kernel accepts at most 4096 (customers.networks has 150 entries): "
                       "shorten the list or aggregate prefixes");
    // A replay file is filtered in user space by design: only the text and syntax count there.
    EXPECT_EQ(customer_filter_problem(cfg, true), "");
}

TEST(CaptureFilterCheck, TextBeyondFieldRefused) {
    // Exactly at the limit passes the length check; one more character does not.
    std::string at_limit = "ip";
    at_limit.resize(kMaxFilterTextLen, ' ');
    EXPECT_TRUE(check_capture_filter(at_limit).ok);
    const FilterCheck over = check_capture_filter(at_limit + " ");
    EXPECT_FALSE(over.ok);
    EXPECT_EQ(over.problem, FilterCheck::Problem::text_too_long);
    EXPECT_EQ(over.instructions, 0u);  // not compiled
    EXPECT_TRUE(contains(over.error, "8192 characters; at most 8191")) << over.error;

    // 300 /32 networks: about 12k characters, but (were it compiled) under 4096 instructions.
    const Config cfg = config_with(networks(Kind::v4_32, 300));
    const std::string text = customer_filter(cfg.customers.networks);
    ASSERT_GT(text.size(), kMaxFilterTextLen);
    const std::string msg = customer_filter_problem(cfg);
    EXPECT_EQ(msg, "the customer filter is " + std::to_string(text.size()) +
                       " characters; at most 8191 fit its field in the shared segment (customers.networks has "
                       "300 entries): shorten the list or aggregate prefixes");
    EXPECT_EQ(customer_filter_problem(cfg, true), msg);  // also for a replay
    EXPECT_EQ(check_capture_filter_on(text, "lo", 128).problem, FilterCheck::Problem::text_too_long);
}

TEST(CaptureFilterCheck, SyntaxErrorRefused) {
    const FilterCheck c = check_capture_filter("net 10.0.0.0/24 or or");
    EXPECT_FALSE(c.ok);
    EXPECT_EQ(c.problem, FilterCheck::Problem::does_not_compile);
    EXPECT_TRUE(contains(c.compiler, "syntax error")) << c.compiler;  // libpcap's own words
    EXPECT_TRUE(contains(c.error, "the capture filter does not compile: " + c.compiler)) << c.error;
    // Valid syntax that libpcap still refuses: a mask longer than the address.
    const FilterCheck m = check_capture_filter("net 10.0.0.0/33");
    EXPECT_FALSE(m.ok);
    EXPECT_FALSE(m.compiler.empty());
}

// How many networks of each kind pass 4096 instructions (pcap_open_dead, EN10MB): the slope
// between 60 and 100 networks (below 60 libpcap's optimiser shares more between neighbouring
// /32s), extrapolated, and checked on both sides of the crossing for the kinds that compile
// fast. Measured: /24 ~130 networks (32 instructions each), /32 ~430 (10), IPv6 /48 ~170 (24),
// IPv6 /128 ~114 (36). The text field (8191) holds 200 networks of the form 10.a.b.c/32 and 171
// of the form 2001:db8:N::/48, so /32 and /48 lists meet the text limit first. On a live Linux capture
// the same lists compile 13-27 % longer (Live tests below): /24 ~114, /32 ~360, /48 ~147.
TEST(CaptureFilterCheck, MeasuredThresholds) {
    struct Row {
        Kind kind;
        const char* name;
        double lo, hi;  // the measured crossing, with room for another libpcap version
        int fit_lo, fit_hi;
    };
    const Row rows[] = {{Kind::v4_24, "/24", 115, 145, 195, 205},
                        {Kind::v4_32, "/32", 390, 470, 195, 205},
                        {Kind::v6_48, "IPv6 /48", 155, 190, 165, 175},
                        {Kind::v6_128, "IPv6 /128", 100, 130, 165, 175}};
    for (const Row& r : rows) {
        const auto at = [&](int n) { return check_capture_filter(customer_filter(networks(r.kind, n))); };
        const FilterCheck a = at(60), b = at(100);
        ASSERT_TRUE(a.ok && b.ok) << r.name;
        const double per_net = (double(b.instructions) - double(a.instructions)) / 40.0;
        const double crossing = 100.0 + (double(kKernelMaxFilterInsns) - double(b.instructions)) / per_net;
        int fit = 100;  // checked above: 100 fit
        while (customer_filter(networks(r.kind, fit + 1)).size() <= kMaxFilterTextLen) ++fit;
        std::printf("[ measured ] %-9s %5.1f instructions per network; over %zu at ~%.0f networks; "
                    "%d fit the text field\n",
                    r.name, per_net, kKernelMaxFilterInsns, crossing, fit);
        EXPECT_GE(crossing, r.lo) << r.name;
        EXPECT_LE(crossing, r.hi) << r.name;
        EXPECT_GE(fit, r.fit_lo) << r.name;
        EXPECT_LE(fit, r.fit_hi) << r.name;
        if (r.kind == Kind::v6_48 || r.kind == Kind::v6_128) {  // fast to compile
            const FilterCheck below = at(static_cast<int>(crossing) - 5), above = at(static_cast<int>(crossing) + 5);
            EXPECT_TRUE(below.ok) << r.name << " " << below.error;
            EXPECT_FALSE(above.ok) << r.name;
            if (r.kind == Kind::v6_128) {
                EXPECT_EQ(above.problem, FilterCheck::Problem::too_many_instructions);
            }
        }
    }
}

// Compiled on the live interface (needs capture privilege): libpcap's Linux VLAN code makes
// the program longer than the pcap_open_dead one, and that is what the kernel gets.
TEST(CaptureFilterCheck, LiveCountMatchesTcpdumpOnInterface) {
    const std::string filter = customer_filter(networks(Kind::v4_24, 20));
    const FilterCheck live = check_capture_filter_on(filter, "lo", 128);
    if (!live.exact) GTEST_SKIP() << "cannot open lo: " << live.note;
    ASSERT_TRUE(live.ok) << live.error;
    EXPECT_TRUE(live.note.empty());
    const FilterCheck dead = check_capture_filter(filter, DLT_EN10MB, 128);
    EXPECT_GT(live.instructions, dead.instructions);
    if (!have_tcpdump()) GTEST_SKIP() << "tcpdump not installed";
    EXPECT_EQ(static_cast<long>(live.instructions), tcpdump_count("-i lo", filter));
}

TEST(CaptureFilterCheck, LiveVlanCodeCrossesLimitWhereDeadDoesNot) {
    Config cfg = config_with(networks(Kind::v6_48, 150));  // dead ~3560, live ~4180 instructions
    const std::string filter = customer_filter(cfg.customers.networks);
    const FilterCheck dead = check_capture_filter(filter, DLT_EN10MB, cfg.capture.snaplen);
    ASSERT_TRUE(dead.ok) << dead.error;
    const FilterCheck live = check_capture_filter_on(filter, "lo", cfg.capture.snaplen);
    if (!live.exact) GTEST_SKIP() << "cannot open lo: " << live.note;
    EXPECT_EQ(live.problem, FilterCheck::Problem::too_many_instructions) << live.instructions;
    cfg.capture.interfaces = {"lo"};
    const std::string msg = customer_filter_problem(cfg);
    EXPECT_TRUE(contains(msg, "BPF instructions on lo; the kernel accepts at most 4096 (customers.networks has "
                              "150 entries)"))
        << msg;
    // Under the limit on the live interface: the kernel accepted it on that very socket.
    const FilterCheck fine = check_capture_filter_on(customer_filter(networks(Kind::v6_48, 100)), "lo", 128);
    EXPECT_TRUE(fine.ok) << fine.error;
    EXPECT_EQ(fine.kernel_error, 0);
}

TEST(CaptureFilterCheck, FallsBackWithNoteWhenInterfaceCannotOpen) {
    // Far from the limit: the pcap_open_dead count, no note.
    Config cfg = config_with(networks(Kind::v4_24, 5));
    std::string filter = customer_filter(cfg.customers.networks);
    FilterCheck c = check_capture_filter_on(filter, "angel-none0", 128);
    EXPECT_TRUE(c.ok) << c.error;
    EXPECT_FALSE(c.exact);
    EXPECT_EQ(c.instructions, check_capture_filter(filter, DLT_EN10MB, 128).instructions);
    EXPECT_EQ(c.note, "");
    cfg.capture.interfaces = {"angel-none0"};
    std::string warning = "stale";
    EXPECT_EQ(customer_filter_problem(cfg, false, &warning), "");
    EXPECT_EQ(warning, "");

    // Near it (dead ~3320, live ~3900): passes, with a note that says the count is not exact.
    cfg.customers.networks = networks(Kind::v6_48, 140);
    filter = customer_filter(cfg.customers.networks);
    c = check_capture_filter_on(filter, "angel-none0", 128);
    EXPECT_TRUE(c.ok) << c.error;
    EXPECT_FALSE(c.exact);
    EXPECT_TRUE(contains(c.note, "counted without opening angel-none0 (")) << c.note;
    EXPECT_TRUE(contains(c.note, std::to_string(c.instructions) + " BPF instructions")) << c.note;
    EXPECT_EQ(customer_filter_problem(cfg, false, &warning), "");
    EXPECT_TRUE(contains(warning, "customers.networks: the capture filter was counted without")) << warning;
}

}  // namespace
}  // namespace angel
