// netd's exporter as a backup and at a role change (docs/ha.md): inactive sends nothing, not
// even templates or their refresh; set_active(true) sends the templates at once;
// discard_pending() drops the packed records, which never count in the IPFIX sequence number.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "tests/unit/udp_receiver.hpp"
#include "common/ipfix.hpp"
#include "common/ipfix_decoder.hpp"
#include "netd/ipfix_exporter.hpp"

using namespace angel;

namespace {

constexpr uint64_t kT0 = 1700000000123456789ull;
constexpr uint64_t kSecNs = 1'000'000'000ull;

using unit_testing::UdpReceiver;

Record packet_record(uint32_t id) {
    Record r{};
    r.type = uint8_t(RecordType::packet);
    r.flow_id = id;
    r.ts_ns = kT0;
    r.packet.wire_len = 100;
    return r;
}

IpfixExporterConfig config_for(uint16_t port, bool active) {
    IpfixExporterConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    c.mtu = 1500;
    c.domain_id = 9;
    c.flush_ms = 10;
    c.template_refresh_s = 30;
    c.active = active;
    return c;
}

uint16_t be16(const std::vector<uint8_t>& m, size_t off) { return uint16_t(m[off] << 8 | m[off + 1]); }
uint32_t be32(const std::vector<uint8_t>& m, size_t off) {
    return uint32_t(m[off]) << 24 | uint32_t(m[off + 1]) << 16 | uint32_t(m[off + 2]) << 8 | m[off + 3];
}

// Decodes one message; returns its data records.
uint32_t decode(ipfix::Decoder& d, const std::vector<uint8_t>& m, ipfix::MessageResult& res) {
    uint32_t n = 0;
    res = d.decode(m.data(), m.size(), 1, [&](const ipfix::DecodedRecord&) { ++n; });
    return n;
}

}  // namespace

TEST(IpfixExporterRole, InactiveSendsNothingNotEvenTemplatesOrTheirRefresh) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{500};
    IpfixExporter ex(config_for(rx.port, false), &seq);
    EXPECT_FALSE(ex.active());
    EXPECT_TRUE(rx.recv(100).empty());  // nothing at construction
    const uint64_t now = IpfixExporter::monotonic_ns();
    ex.poll(now);
    ex.poll(now + 31 * kSecNs);  // the refresh would be due
    ex.poll(now + 3600 * kSecNs);
    ex.send_templates();  // an explicit request too
    ex.set_active(false);
    EXPECT_TRUE(rx.recv(100).empty());
    EXPECT_EQ(ex.counters().messages_sent, 0u);
    EXPECT_EQ(ex.counters().templates_sent, 0u);
    EXPECT_EQ(ex.counters().bytes_sent, 0u);
    EXPECT_EQ(seq.load(), 500u);
}

TEST(IpfixExporterRole, BecomingActiveSendsTheTemplatesAtOnce) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{500};
    IpfixExporter ex(config_for(rx.port, false), &seq);
    ASSERT_TRUE(rx.recv(100).empty());
    ex.set_active(true);
    EXPECT_TRUE(ex.active());
    const std::vector<uint8_t> m = rx.recv(0);  // already there: sent inside set_active
    ASSERT_EQ(m.size(), 16u + ipfix::template_set_size());
    EXPECT_EQ(be16(m, 0), 10u);        // IPFIX version
    EXPECT_EQ(be16(m, 2), m.size());   // message length
    EXPECT_EQ(be32(m, 8), 500u);       // sequence: data records before it
    EXPECT_EQ(be32(m, 12), 9u);        // observation domain
    EXPECT_EQ(be16(m, 16), ipfix::kTemplateSetId);  // the first set is a template set (ID 2)
    EXPECT_EQ(be16(m, 18), ipfix::template_set_size());
    ipfix::Decoder dec;
    ipfix::MessageResult res;
    EXPECT_EQ(decode(dec, m, res), 0u);
    EXPECT_EQ(res.status, ipfix::DecodeStatus::ok);
    EXPECT_EQ(res.templates, 6u);
    EXPECT_EQ(ex.counters().templates_sent, 1u);
    EXPECT_EQ(seq.load(), 500u);  // templates are no data records

    ex.set_active(true);  // already active: nothing again
    EXPECT_TRUE(rx.recv(100).empty());
    // The refresh timer starts at activation.
    const uint64_t now = IpfixExporter::monotonic_ns();
    ex.poll(now + 1 * kSecNs);
    EXPECT_TRUE(rx.recv(50).empty());
    ex.poll(now + 31 * kSecNs);
    const std::vector<uint8_t> r = rx.recv();
    ASSERT_FALSE(r.empty());
    EXPECT_EQ(be16(r, 16), ipfix::kTemplateSetId);
    EXPECT_EQ(ex.counters().templates_sent, 2u);

    // Back to backup: the refresh stops.
    ex.set_active(false);
    ex.poll(now + 3600 * kSecNs);
    EXPECT_TRUE(rx.recv(100).empty());
    EXPECT_EQ(ex.counters().templates_sent, 2u);
}

TEST(IpfixExporterRole, DiscardPendingDropsPackedRecordsOutsideTheSequence) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{1000};
    IpfixExporter ex(config_for(rx.port, true), &seq);
    ipfix::Decoder dec;
    ipfix::MessageResult res;
    std::vector<uint8_t> m = rx.recv();
    ASSERT_FALSE(m.empty());  // templates at start
    decode(dec, m, res);
    EXPECT_EQ(res.sequence, 1000u);

    EXPECT_EQ(ex.discard_pending(), 0u);  // nothing packed
    for (uint32_t i = 0; i < 5; ++i) ex.add(packet_record(i));
    EXPECT_TRUE(ex.pending());
    EXPECT_EQ(ex.discard_pending(), 5u);
    EXPECT_FALSE(ex.pending());
    EXPECT_EQ(ex.discard_pending(), 0u);  // gone, not counted twice
    ex.flush();
    ex.poll(IpfixExporter::monotonic_ns() + kSecNs);  // flush_ms long past: the timer was reset too
    EXPECT_TRUE(rx.recv(100).empty());
    EXPECT_EQ(seq.load(), 1000u);
    EXPECT_EQ(ex.counters().records_sent, 0u);
    EXPECT_EQ(ex.counters().records_lost, 0u);

    // The next message's sequence counts only exported records (RFC 7011 §3.1).
    for (uint32_t i = 10; i < 13; ++i) ex.add(packet_record(i));
    ex.flush();
    m = rx.recv();
    ASSERT_FALSE(m.empty());
    std::vector<uint32_t> ids;
    res = dec.decode(m.data(), m.size(), 1, [&](const ipfix::DecodedRecord& r) { ids.push_back(r.packet.flow_id); });
    EXPECT_EQ(res.sequence, 1000u);
    EXPECT_EQ(be32(m, 8), 1000u);
    EXPECT_EQ(ids, (std::vector<uint32_t>{10, 11, 12}));  // none of the discarded ones
    EXPECT_EQ(seq.load(), 1003u);

    ex.add(packet_record(20));
    ex.add(packet_record(21));
    EXPECT_EQ(ex.discard_pending(), 2u);
    ex.add(packet_record(22));
    ex.flush();
    m = rx.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(decode(dec, m, res), 1u);
    EXPECT_EQ(res.sequence, 1003u);
    EXPECT_TRUE(res.sequence_checked);
    EXPECT_EQ(res.sequence_gap, 0);  // a collector sees no loss
    EXPECT_EQ(seq.load(), 1004u);
    EXPECT_EQ(ex.counters().records_sent, 4u);
}

TEST(IpfixExporterRole, MasterToBackupToMasterStream) {
    // What netd does: discard and go quiet on leaving master; templates first on coming back.
    UdpReceiver rx;
    std::atomic<uint64_t> seq{0};
    IpfixExporter ex(config_for(rx.port, true), &seq);
    ASSERT_FALSE(rx.recv().empty());
    ex.add(packet_record(1));
    ex.flush();
    ASSERT_FALSE(rx.recv().empty());
    ex.add(packet_record(2));
    EXPECT_EQ(ex.discard_pending(), 1u);
    ex.set_active(false);
    EXPECT_TRUE(rx.recv(100).empty());
    ex.set_active(true);
    std::vector<uint8_t> m = rx.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(be16(m, 16), ipfix::kTemplateSetId);
    EXPECT_EQ(be32(m, 8), 1u);  // one record exported before it
    ex.add(packet_record(3));
    ex.flush();
    m = rx.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_NE(be16(m, 16), ipfix::kTemplateSetId);  // a data set
    EXPECT_EQ(be32(m, 8), 1u);
    EXPECT_EQ(seq.load(), 2u);
}

TEST(IpfixExporterRole, DiscardRestartsTheFlushTimer) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{0};
    IpfixExporterConfig cfg = config_for(rx.port, true);
    cfg.flush_ms = 200;
    IpfixExporter ex(cfg, &seq);
    ipfix::Decoder dec;
    ipfix::MessageResult res;
    const std::vector<uint8_t> tpl = rx.recv();
    ASSERT_FALSE(tpl.empty());
    EXPECT_EQ(decode(dec, tpl, res), 0u);
    EXPECT_EQ(res.templates, 6u);
    ex.add(packet_record(1));
    usleep(250'000);  // the discarded record's flush time passes
    EXPECT_EQ(ex.discard_pending(), 1u);
    ex.add(packet_record(2));
    ex.poll(IpfixExporter::monotonic_ns());  // the new record is not 200 ms old: kept
    EXPECT_TRUE(rx.recv(50).empty());
    EXPECT_TRUE(ex.pending());
    ex.poll(IpfixExporter::monotonic_ns() + 200'000'000);
    const std::vector<uint8_t> m = rx.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(decode(dec, m, res), 1u);
    EXPECT_EQ(res.sequence, 0u);
    EXPECT_EQ(seq.load(), 1u);
}
