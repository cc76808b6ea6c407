// The Prometheus text format writer (ctld/metrics/prometheus_text.hpp): exact output for
// families, labels and escaping as the text exposition format 0.0.4 defines them; families
// refused when repeated or when a counter lacks _total. Then the meter's page
// (ctld/metrics/meter_metrics.cpp) from a real segment: every sample belongs to the family
// whose HELP and TYPE precede it, names are valid, counters end in _total, no family twice,
// and the page fits half of the control object's area.
#include <gtest/gtest.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>

#include "ctld/flow_control_set.hpp"
#include "ctld/metrics/meter_metrics.hpp"
#include "ctld/metrics/prometheus_text.hpp"

using namespace angel;

TEST(PrometheusText, FamiliesSamplesAndLabelsExactly) {
    PrometheusText p(PromLabels{{"angel_instance", "edge-1"}});
    EXPECT_TRUE(p.family("angel_capd_packets_total", PrometheusText::Type::counter, "Packets read."));
    p.sample(42);
    EXPECT_TRUE(p.family("angel_ring_fill", PrometheusText::Type::gauge, "Entries in the ring."));
    p.sample(0, {{"ring", "packet"}});
    p.sample(18446744073709551615ull, {{"ring", "record"}});
    EXPECT_EQ(p.str(),
              "# HELP angel_capd_packets_total Packets read.\n"
              "# TYPE angel_capd_packets_total counter\n"
              "angel_capd_packets_total{angel_instance=\"edge-1\"} 42\n"
              "# HELP angel_ring_fill Entries in the ring.\n"
              "# TYPE angel_ring_fill gauge\n"
              "angel_ring_fill{angel_instance=\"edge-1\",ring=\"packet\"} 0\n"
              "angel_ring_fill{angel_instance=\"edge-1\",ring=\"record\"} 18446744073709551615\n");
}

TEST(PrometheusText, Escaping) {
    // HELP: backslash and line feed; label values: also the double quote. Nothing else.
    EXPECT_EQ(PrometheusText::escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
    EXPECT_EQ(PrometheusText::escape_label_value("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
    EXPECT_EQ(PrometheusText::escape_label_value("plain-text_1.2"), "plain-text_1.2");
    PrometheusText p;
    p.family("x", PrometheusText::Type::gauge, "two\nlines \\ here");
    p.sample(1, {{"v", "q\"uote\\back\nnl"}});
    EXPECT_EQ(p.str(),
              "# HELP x two\\nlines \\\\ here\n"
              "# TYPE x gauge\n"
              "x{v=\"q\\\"uote\\\\back\\nnl\"} 1\n");
}

TEST(PrometheusText, NamesAndRefusedFamilies) {
    EXPECT_EQ(PrometheusText::metric_name("angel_procd_parse_bad-version"), "angel_procd_parse_bad_version");
    EXPECT_EQ(PrometheusText::metric_name("9lives:ok"), "_lives:ok");
    EXPECT_EQ(PrometheusText::metric_name(""), "_");
    PrometheusText p;
    EXPECT_FALSE(p.family("angel_packets", PrometheusText::Type::counter, "no _total"));
    p.sample(1);  // dropped: no family open
    EXPECT_TRUE(p.family("angel_g", PrometheusText::Type::gauge, "g"));
    p.sample(2);
    EXPECT_FALSE(p.family("angel_g", PrometheusText::Type::gauge, "again"));
    p.sample(3);  // dropped with its refused family
    EXPECT_EQ(p.str(), "# HELP angel_g g\n# TYPE angel_g gauge\nangel_g 2\n");
}

TEST(PrometheusText, MeterPageIsWellFormedAndFits) {
    const std::string name = "promtext-" + std::to_string(getpid());
    SegmentSizes sz;
    sz.packet_ring_bytes = 1 << 20;
    sz.record_ring_bytes = 1 << 16;
    sz.event_ring_bytes = 1 << 16;
    sz.max_flows = 1000;
    auto seg = Segment::create(name, sz);
    StageOptions so;
    StageSupervisor capd(StageId::capd, *seg, so), procd(StageId::procd, *seg, so), netd(StageId::netd, *seg, so);
    MeterView v;
    v.instance = "unit\"test";  // a quote in a label value comes out escaped
    v.stages = {&netd, &procd, &capd};
    v.database = true;
    FlowControlStats fc;
    CustomerSetStatus cs;
    const std::string page = render_prometheus(*seg, v, &fc, &cs);
    Segment::remove(name);

    EXPECT_LT(page.size(), kMetricsPageBytes / 2) << "the page outgrows the control object's area";
    std::istringstream in(page);
    std::set<std::string> families;
    std::string line, help_of, type_of, type;
    size_t samples = 0;
    while (std::getline(in, line)) {
        ASSERT_FALSE(line.empty());
        if (line.rfind("# HELP ", 0) == 0) {
            help_of = line.substr(7, line.find(' ', 7) - 7);
            EXPECT_TRUE(families.insert(help_of).second) << "family twice: " << help_of;
            continue;
        }
        if (line.rfind("# TYPE ", 0) == 0) {
            std::istringstream t(line.substr(7));
            t >> type_of >> type;
            EXPECT_EQ(type_of, help_of) << line;
            EXPECT_TRUE(type == "counter" || type == "gauge") << line;
            const bool total = type_of.size() > 6 && type_of.compare(type_of.size() - 6, 6, "_total") == 0;
            EXPECT_EQ(type == "counter", total) << "counters end in _total, gauges do not: " << line;
            continue;
        }
        const std::string metric = line.substr(0, line.find_first_of("{ "));
        EXPECT_EQ(metric, type_of) << "sample outside its family: " << line;
        EXPECT_EQ(metric, PrometheusText::metric_name(metric));
        EXPECT_NE(line.find("{angel_instance=\"unit\\\"test\""), std::string::npos) << line;
        ++samples;
    }
    EXPECT_GT(families.size(), 60u);
    EXPECT_GT(samples, families.size());
    for (const char* f : {"angel_capd_packets_total", "angel_procd_parse_truncated_total", "angel_netd_metrics_scrapes_total",
                          "angel_ctld_bad_ring_position_total", "angel_flow_control_left_out_total",
                          "angel_customers_prefixes", "angel_ring_fill", "angel_ha_role", "angel_stage_state",
                          "angel_stage_restarts_total", "angel_database_connected", "angel_ipfix_sequence"})
        EXPECT_TRUE(families.count(f)) << f;
    // Each stage's state is one of six, exactly one of them 1.
    EXPECT_NE(page.find("angel_stage_state{angel_instance=\"unit\\\"test\",stage=\"capd\",state=\"stopped\"} 1\n"),
              std::string::npos);
    EXPECT_NE(page.find("angel_stage_state{angel_instance=\"unit\\\"test\",stage=\"capd\",state=\"running\"} 0\n"),
              std::string::npos);
}
