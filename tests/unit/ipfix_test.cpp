// IPFIX encoder/decoder round trips, message size limits, sequence numbers, template refresh and
// a malformed-input corpus for the decoder; plus the netd exporter over loopback UDP.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <random>
#include <tuple>
#include <vector>

#include "tests/unit/udp_receiver.hpp"
#include "common/ipfix.hpp"
#include "common/ipfix_decoder.hpp"
#include "common/ipfix_encoder.hpp"
// The exporter lives in netd/ (an executable, not a library): compile it into this test.
#include "netd/ipfix_exporter.hpp"

namespace angel::ipfix {
namespace {

IpBytes v4(const char* s) {
    IpBytes a{};
    EXPECT_EQ(inet_pton(AF_INET, s, a.data()), 1);
    return a;
}
IpBytes v6(const char* s) {
    IpBytes a{};
    EXPECT_EQ(inet_pton(AF_INET6, s, a.data()), 1);
    return a;
}

constexpr uint64_t kT0 = 1700000000123456789ull;

std::vector<DecodedRecord> decode_all(Decoder& d, const uint8_t* p, size_t n,
                                      MessageResult* res = nullptr, uint64_t session = 1) {
    std::vector<DecodedRecord> out;
    const auto r = d.decode(p, n, session, [&](const DecodedRecord& x) { out.push_back(x); });
    if (res) *res = r;
    return out;
}

TEST(IpfixTime, NtpRoundTripIsExact) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 100000; ++i) {
        const uint64_t ns = rng() % (4000000000ull * 1000000000ull);  // up to year 2096
        ASSERT_EQ(ntp_to_ns(ns_to_ntp(ns)), ns) << ns;
    }
    EXPECT_EQ(ntp_to_ns(ns_to_ntp(0)), 0u);
    EXPECT_EQ(ntp_to_ns(ns_to_ntp(999999999)), 999999999u);
    // 2036-02-07 06:28:16 UTC is where NTP era 0 ends; both sides of it survive.
    const uint64_t era_end = (4294967296ull - 2208988800ull) * 1000000000ull;
    EXPECT_EQ(ntp_to_ns(ns_to_ntp(era_end - 1)), era_end - 1);
    EXPECT_EQ(ntp_to_ns(ns_to_ntp(era_end + 5)), era_end + 5);
}

TEST(IpfixTemplates, SizesAndPacketRecordLimit) {
    EXPECT_LE(template_def(kTplPacket).record_size, 20);  // DESIGN.md: 20 bytes or less
    EXPECT_EQ(kPacketRecordSize, 20u);
    EXPECT_EQ(template_def(kTplPacket).record_size, kPacketRecordSize);
    EXPECT_EQ(template_def(kTplFlowStart4).record_size, kFlowStart4RecordSize);
    EXPECT_EQ(template_def(kTplFlowStart6).record_size, kFlowStart6RecordSize);
    EXPECT_EQ(template_def(kTplFlowEnd).record_size, kFlowEndRecordSize);
    EXPECT_EQ(template_set_size(), 212u);
    // The packet template ends with angelPacketIndex: PEN 32473, element 3, 4 octets.
    const auto& f = template_def(kTplPacket).fields;
    ASSERT_EQ(f.size(), 6u);
    EXPECT_EQ(f[5].id, ie::angelPacketIndex);
    EXPECT_EQ(f[5].id, 3);
    EXPECT_EQ(f[5].length, 4);
    EXPECT_EQ(f[5].enterprise, kPenAngel);
}

TEST(IpfixReasons, MappingKeepsOurNames) {
    EXPECT_EQ(iana_end_reason(kReasonIdle), kIanaIdleTimeout);
    EXPECT_EQ(iana_end_reason(kReasonTcpClose), kIanaEndOfFlow);
    EXPECT_EQ(iana_end_reason(kReasonEndOfInput), kIanaForcedEnd);
    EXPECT_EQ(iana_end_reason(kReasonShutdown), kIanaForcedEnd);
    EXPECT_EQ(iana_end_reason(kReasonEvicted), kIanaLackOfResources);
    EXPECT_STREQ(end_reason_text(kReasonEndOfInput), "end_of_input");
    EXPECT_STREQ(end_reason_text(kReasonShutdown), "shutdown");
    EXPECT_STREQ(end_reason_text(99), "unknown");
}

TEST(IpfixCodec, RoundTripAllRecordKindsV4AndV6) {
    std::vector<uint8_t> buf(1472);
    Encoder enc(buf.data(), buf.size(), 42);
    ASSERT_TRUE(enc.add_templates());

    FlowStartFields s4{7, kT0, 4, 6, 40000, 443, v4("192.0.2.1"), v4("198.51.100.2")};
    FlowStartFields s6{8, kT0 + 1, 6, 17, 5353, 53, v6("2001:db8::1"), v6("2001:db8:ffff::2")};
    PacketFields p1{7, kT0 + 2, 1514, 0, 0x12, true, 0};
    PacketFields p2{8, kT0 + 3, 70000, 1, 0, false, 0xFFFFFFFFu};  // > 65535: saturated
    PacketFields p3{7, kT0 + 4, 64, 1, 0x11, false, 0x01020304u};
    std::vector<FlowEndFields> ends;
    for (uint8_t r = 1; r <= 5; ++r) {
        FlowEndFields e{uint32_t(100 + r), kT0, kT0 + 99, {3, 4}, {(1ull << 40) + r, 500}, r};
        ends.push_back(e);
    }
    ASSERT_TRUE(enc.add(s4));
    ASSERT_TRUE(enc.add(p1));
    ASSERT_TRUE(enc.add(s6));
    ASSERT_TRUE(enc.add(p2));
    ASSERT_TRUE(enc.add(p3));
    for (const auto& e : ends) ASSERT_TRUE(enc.add(e));
    const size_t n = enc.finish(1700000000, 12345);
    EXPECT_EQ(enc.records(), 10u);

    Decoder dec;
    MessageResult res;
    const auto recs = decode_all(dec, buf.data(), n, &res);
    EXPECT_EQ(res.status, DecodeStatus::ok);
    EXPECT_EQ(res.domain_id, 42u);
    EXPECT_EQ(res.sequence, 12345u);
    EXPECT_EQ(res.export_time, 1700000000u);
    EXPECT_EQ(res.templates, 6u);
    EXPECT_EQ(res.data_records, 10u);
    ASSERT_EQ(recs.size(), 10u);

    auto same_start = [](const FlowStartFields& a, const FlowStartFields& b) {
        EXPECT_EQ(a.flow_id, b.flow_id);
        EXPECT_EQ(a.ts_ns, b.ts_ns);
        EXPECT_EQ(a.ip_version, b.ip_version);
        EXPECT_EQ(a.proto, b.proto);
        EXPECT_EQ(a.sport, b.sport);
        EXPECT_EQ(a.dport, b.dport);
        EXPECT_EQ(a.src, b.src);
        EXPECT_EQ(a.dst, b.dst);
    };
    auto same_packet = [](const PacketFields& a, const PacketFields& b) {
        EXPECT_EQ(a.flow_id, b.flow_id);
        EXPECT_EQ(a.ts_ns, b.ts_ns);
        EXPECT_EQ(a.wire_len, b.wire_len);
        EXPECT_EQ(a.dir, b.dir);
        EXPECT_EQ(a.tcp_flags, b.tcp_flags);
        EXPECT_EQ(a.new_flow, b.new_flow);
        EXPECT_EQ(a.index, b.index);
    };
    // Order is preserved across templates.
    ASSERT_EQ(recs[0].kind, RecordKind::flow_start);
    same_start(recs[0].start, s4);
    ASSERT_EQ(recs[1].kind, RecordKind::packet);
    same_packet(recs[1].packet, p1);
    EXPECT_FALSE(recs[1].len_saturated);
    EXPECT_TRUE(recs[1].has_index);
    ASSERT_EQ(recs[2].kind, RecordKind::flow_start);
    same_start(recs[2].start, s6);
    ASSERT_EQ(recs[3].kind, RecordKind::packet);
    PacketFields p2sat = p2;
    p2sat.wire_len = 65535;
    same_packet(recs[3].packet, p2sat);
    EXPECT_TRUE(recs[3].len_saturated);
    same_packet(recs[4].packet, p3);
    for (size_t i = 0; i < ends.size(); ++i) {
        const auto& r = recs[5 + i];
        ASSERT_EQ(r.kind, RecordKind::flow_end);
        EXPECT_EQ(r.end.flow_id, ends[i].flow_id);
        EXPECT_EQ(r.end.first_ns, ends[i].first_ns);
        EXPECT_EQ(r.end.last_ns, ends[i].last_ns);
        EXPECT_EQ(r.end.packets[0], ends[i].packets[0]);
        EXPECT_EQ(r.end.packets[1], ends[i].packets[1]);
        EXPECT_EQ(r.end.bytes[0], ends[i].bytes[0]);
        EXPECT_EQ(r.end.bytes[1], ends[i].bytes[1]);
        EXPECT_EQ(r.end.reason, ends[i].reason);
        EXPECT_EQ(r.iana_end_reason, iana_end_reason(ends[i].reason));
    }
}

TEST(IpfixCodec, DataBeforeTemplateIsCountedNotDecoded) {
    std::vector<uint8_t> buf(1472);
    Encoder enc(buf.data(), buf.size(), 0);
    ASSERT_TRUE(enc.add(PacketFields{1, kT0, 60, 0, 0, true}));
    const size_t n = enc.finish(0, 0);
    Decoder dec;
    MessageResult res;
    EXPECT_TRUE(decode_all(dec, buf.data(), n, &res).empty());
    EXPECT_EQ(res.status, DecodeStatus::ok);
    EXPECT_EQ(res.unknown_sets, 1u);
    EXPECT_EQ(res.unknown_set_bytes, 20u);  // one 20-octet packet record
}

TEST(IpfixCodec, MessagesNeverExceedMaxSize) {
    for (size_t mtu : {576u, 1500u, 9000u}) {
        for (bool ipv6 : {false, true}) {
            const size_t max = max_message_size(mtu, ipv6);
            std::vector<uint8_t> buf(max + 64, 0xEE);  // guard bytes after max
            Encoder enc(buf.data(), max, 1);
            Decoder dec;
            std::mt19937 rng(uint32_t(mtu + ipv6));
            uint64_t sent = 0, received = 0, seq = 0;
            int messages = 0;
            auto ship = [&] {
                const size_t n = enc.finish(1, uint32_t(seq));
                ASSERT_LE(n, max);
                MessageResult res;
                received += decode_all(dec, buf.data(), n, &res).size();
                ASSERT_EQ(res.status, DecodeStatus::ok);
                if (messages > 0) {
                    EXPECT_EQ(res.sequence_gap, 0);
                }
                seq += enc.records();
                ++messages;
                enc.reset();
            };
            enc.add_templates();
            for (int i = 0; i < 5000; ++i) {
                const int kind = int(rng() % 4);
                bool ok = false;
                for (int attempt = 0; attempt < 2 && !ok; ++attempt) {
                    if (attempt) ship();
                    if (kind == 0) ok = enc.add(PacketFields{uint32_t(i), kT0 + i, 60, 0, 2, false});
                    else if (kind == 1) ok = enc.add(FlowStartFields{uint32_t(i), kT0, 4, 6, 1, 2, v4("10.0.0.1"), v4("10.0.0.2")});
                    else if (kind == 2) ok = enc.add(FlowStartFields{uint32_t(i), kT0, 6, 6, 1, 2, v6("::1"), v6("::2")});
                    else ok = enc.add(FlowEndFields{uint32_t(i), kT0, kT0, {1, 1}, {60, 60}, 1});
                }
                ASSERT_TRUE(ok);
                ++sent;
            }
            ship();
            EXPECT_EQ(sent, received);
            for (size_t i = max; i < buf.size(); ++i) ASSERT_EQ(buf[i], 0xEE) << "wrote past max";
            EXPECT_GT(messages, 10);
        }
    }
}

TEST(IpfixCodec, TooSmallBufferIsRejected) {
    std::vector<uint8_t> buf(100);
    EXPECT_THROW(Encoder(buf.data(), buf.size(), 0), std::invalid_argument);
}

TEST(IpfixCodec, SequenceGapsAreDetectedPerDomain) {
    std::vector<uint8_t> buf(1472);
    Decoder dec;
    auto msg = [&](uint32_t domain, uint32_t seq, int records) {
        Encoder enc(buf.data(), buf.size(), domain);
        enc.add_templates();
        for (int i = 0; i < records; ++i) enc.add(PacketFields{1, kT0, 60, 0, 0, false});
        MessageResult r;
        decode_all(dec, buf.data(), enc.finish(0, seq), &r);
        return r;
    };
    EXPECT_FALSE(msg(1, 0xfffffffeu, 5).sequence_checked);
    auto r = msg(1, 3, 2);  // wrapped modulo 2^32: 0xfffffffe + 5 = 3
    EXPECT_TRUE(r.sequence_checked);
    EXPECT_EQ(r.sequence_gap, 0);
    EXPECT_FALSE(msg(2, 100, 1).sequence_checked);  // other domain: its own counter
    EXPECT_EQ(msg(1, 15, 1).sequence_gap, 10);      // expected 5: 10 records lost
    EXPECT_EQ(msg(2, 101, 1).sequence_gap, 0);
    EXPECT_EQ(msg(1, 10, 1).sequence_gap, -6);      // went back (reordered or reset)
}

// A foreign exporter's template: different order, other reduced sizes, a variable-length field,
// an unknown enterprise element. Decoded by element, not by offset.
TEST(IpfixCodec, ForeignTemplateIsDecodedByElements) {
    std::vector<uint8_t> m;
    auto u16 = [&](uint16_t v) { m.push_back(uint8_t(v >> 8)); m.push_back(uint8_t(v)); };
    auto u32 = [&](uint32_t v) { u16(uint16_t(v >> 16)); u16(uint16_t(v)); };
    auto u64 = [&](uint64_t v) { u32(uint32_t(v >> 32)); u32(uint32_t(v)); };
    u16(10); u16(0); u32(0); u32(0); u32(9);  // header, length patched below
    // Template set: id 300 = {dataLinkFrameSize/4, interfaceName(82)/var, flowId/8,
    // enterprise 12345.7/2, observationTimeNanoseconds/8, tcpControlBits/2}
    u16(2); u16(4 + 4 + 6 * 4 + 4);
    u16(300); u16(6);
    u16(312); u16(4);
    u16(82); u16(65535);
    u16(148); u16(8);
    u16(0x8007); u16(2); u32(12345);
    u16(325); u16(8);
    u16(6); u16(2);
    // Data set with two records.
    const size_t set_at = m.size();
    u16(300); u16(0);
    u32(1500); m.push_back(3); m.insert(m.end(), {'e', 't', 'h'}); u64(77); u16(0xbeef);
    u64(ns_to_ntp(kT0)); u16(0x0102);
    u32(9000); m.push_back(0); u64(78); u16(1); u64(ns_to_ntp(kT0 + 1)); u16(0x0010);
    m.push_back(0);  // padding
    put16(m.data() + set_at + 2, uint16_t(m.size() - set_at));
    put16(m.data() + 2, uint16_t(m.size()));

    Decoder dec;
    MessageResult res;
    const auto recs = decode_all(dec, m.data(), m.size(), &res);
    EXPECT_EQ(res.status, DecodeStatus::ok);
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ(recs[0].kind, RecordKind::packet);
    EXPECT_EQ(recs[0].packet.flow_id, 77u);
    EXPECT_EQ(recs[0].packet.wire_len, 1500u);
    EXPECT_EQ(recs[0].packet.ts_ns, kT0);
    EXPECT_EQ(recs[0].packet.tcp_flags, 0x02);
    EXPECT_EQ(recs[1].packet.flow_id, 78u);
    EXPECT_EQ(recs[1].packet.wire_len, 9000u);
    EXPECT_EQ(recs[1].packet.ts_ns, kT0 + 1);
    EXPECT_FALSE(recs[0].has_index);  // no angelPacketIndex in this template
}

std::vector<uint8_t> from_hex(const char* h) {
    std::vector<uint8_t> v;
    for (; h[0] && h[1]; h += 2) v.push_back(uint8_t(std::stoi(std::string(h, 2), nullptr, 16)));
    return v;
}

// The annotated example of docs/protocol.md ("Example"), byte for byte: the data message and
// the template message before it. A change to the wire format must change the page too.
TEST(IpfixCodec, DocumentedExampleIsByteExact) {
    const uint64_t syn = 1717171717000000500ull, synack = 1717171717000250000ull;
    std::vector<uint8_t> buf(1472);
    Encoder enc(buf.data(), buf.size(), 0);
    ASSERT_TRUE(enc.add(FlowStartFields{42, syn, 4, 6, 51000, 443, v4("192.0.2.10"), v4("198.51.100.20")}));
    ASSERT_TRUE(enc.add(PacketFields{42, syn, 74, 0, 0x02, true, 0}));
    ASSERT_TRUE(enc.add(PacketFields{42, synack, 74, 1, 0x12, false, 1}));
    ASSERT_TRUE(enc.add(FlowEndFields{42, syn, synack, {1, 1}, {74, 74}, kReasonTcpClose}));
    const size_t n = enc.finish(1717171718, 1234);
    EXPECT_EQ(n, 149u);
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + long(n)),
              from_hex("000a00956659f606000004d2000000000101001e0000002aea0474850000086406c00002"
                       "0ac738c633641401bb000100002c0000002aea04748500000864004a0202000000000000"
                       "002aea0474850010624e004a1201000000010103003b0000002aea04748500000864ea04"
                       "74850010624e03020000000000000001000000000000004a000000000000000100000000"
                       "0000004a00"));
    enc.reset();
    ASSERT_TRUE(enc.add_templates());
    const size_t t = enc.finish(1717171717, 0);
    EXPECT_EQ(t, 228u);
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + long(t)),
              from_hex("000a00e46659f6050000000000000000000200d401000006009400040145000801380002"
                       "000600018001000100007ed98003000400007ed90101000800940004009c000800040001"
                       "0008000400070002000c0004000b00028001000100007ed90102000800940004009c0008"
                       "00040001001b001000070002001c0010000b00028001000100007ed90103000a00940004"
                       "009c0008009d0008008800018002000100007ed900020008000100088002000800007279"
                       "80010008000072798001000100007ed9010400048004000100007ed9009c0008009d0008"
                       "008500080105000101450008"));
    // And back: the sink's view of the two packets.
    Decoder dec;
    std::vector<uint8_t> tm(buf.begin(), buf.begin() + long(t));
    decode_all(dec, tm.data(), tm.size());
    enc.reset();
    enc.add(PacketFields{42, syn, 74, 0, 0x02, true, 0});
    enc.add(PacketFields{42, synack, 74, 1, 0x12, false, 1});
    const auto recs = decode_all(dec, buf.data(), enc.finish(0, 0));
    ASSERT_EQ(recs.size(), 2u);
    EXPECT_EQ(recs[0].packet.index, 0u);
    EXPECT_EQ(recs[1].packet.index, 1u);
    EXPECT_TRUE(recs[1].has_index);
}

// The loss and watermark example of docs/protocol.md, byte for byte, and back through the
// decoder: a ring_drop of 1234 packets between two times, then a watermark.
TEST(IpfixCodec, LossAndWatermarkExampleIsByteExactAndDecodes) {
    std::vector<uint8_t> buf(1472);
    Encoder enc(buf.data(), buf.size(), 0);
    ASSERT_TRUE(enc.add_templates());
    Decoder dec;
    const size_t t = enc.finish(1717171717, 0);
    decode_all(dec, buf.data(), t);
    enc.reset();
    const uint64_t first = 1717171717000000500ull, last = 1717171717250000000ull, wm = 1717171717200000000ull;
    ASSERT_TRUE(enc.add(LossFields{kLossRingDrop, first, last, 1234}));
    ASSERT_TRUE(enc.add(WatermarkFields{wm}));
    const size_t n = enc.finish(1717171718, 1234);
    EXPECT_EQ(n, 57u);
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + long(n)),
              from_hex("000a00396659f606000004d20000000001040" "01d03ea04748500000864ea047485400000"
                       "0000000000000004d2010500" "0cea04748533333334"));
    MessageResult res;
    const auto recs = decode_all(dec, buf.data(), n, &res);
    EXPECT_EQ(res.status, DecodeStatus::ok);
    ASSERT_EQ(recs.size(), 2u);
    ASSERT_EQ(recs[0].kind, RecordKind::loss);
    EXPECT_EQ(recs[0].loss.cause, kLossRingDrop);
    EXPECT_EQ(recs[0].loss.first_ns, first);
    EXPECT_EQ(recs[0].loss.last_ns, last);
    EXPECT_EQ(recs[0].loss.packets, 1234u);
    ASSERT_EQ(recs[1].kind, RecordKind::watermark);
    EXPECT_EQ(recs[1].watermark.ts_ns, wm);
    EXPECT_STREQ(loss_cause_text(kLossPcapDrop), "pcap_drop");
    EXPECT_STREQ(loss_cause_text(kLossIfDrop), "if_drop");
    EXPECT_STREQ(loss_cause_text(kLossRingDrop), "ring_drop");
    EXPECT_STREQ(loss_cause_text(kLossCapdRestart), "capd_restart");
    EXPECT_STREQ(loss_cause_text(kLossCtldRestart), "ctld_restart");
    EXPECT_STREQ(loss_cause_text(kLossMasterGap), "master_gap");
    EXPECT_STREQ(loss_cause_text(99), "unknown");
}

// Messages hold as many 20-octet packet records as docs/protocol.md says.
TEST(IpfixCodec, PacketRecordsPerMessage) {
    for (auto [mtu, ipv6, want] : {std::tuple{576, false, 26}, {576, true, 25}, {1500, false, 72},
                                   {1500, true, 71}, {9000, false, 447}}) {
        const size_t max = max_message_size(size_t(mtu), ipv6);
        std::vector<uint8_t> buf(max);
        Encoder enc(buf.data(), max, 0);
        int n = 0;
        while (enc.add(PacketFields{1, kT0, 60, 0, 0, false, uint32_t(n)})) ++n;
        EXPECT_EQ(n, want) << "mtu " << mtu << (ipv6 ? " IPv6" : " IPv4");
    }
}

TEST(IpfixCodec, TemplateWithdrawalAndOptionsTemplates) {
    std::vector<uint8_t> m;
    auto u16 = [&](uint16_t v) { m.push_back(uint8_t(v >> 8)); m.push_back(uint8_t(v)); };
    u16(10); u16(0); u16(0); u16(0); u16(0); u16(0); u16(0); u16(0);
    u16(3); u16(4 + 6 + 8);  // options template 400: scope 1 field, 2 fields
    u16(400); u16(2); u16(1); u16(149); u16(4); u16(41); u16(8);
    u16(400); u16(4 + 12);  // one options data record: no callback, counted
    for (int i = 0; i < 6; ++i) u16(uint16_t(i));
    u16(2); u16(8); u16(400); u16(0);  // withdrawal of 400
    u16(400); u16(4 + 12);  // now unknown
    for (int i = 0; i < 6; ++i) u16(uint16_t(i));
    put16(m.data() + 2, uint16_t(m.size()));
    Decoder dec;
    MessageResult res;
    EXPECT_TRUE(decode_all(dec, m.data(), m.size(), &res).empty());
    EXPECT_EQ(res.status, DecodeStatus::ok);
    EXPECT_EQ(res.data_records, 1u);
    EXPECT_EQ(res.templates, 2u);
    EXPECT_EQ(res.unknown_sets, 1u);
    EXPECT_EQ(dec.template_count(), 0u);
}

std::vector<uint8_t> sample_message() {
    std::vector<uint8_t> buf(1472);
    Encoder enc(buf.data(), buf.size(), 3);
    enc.add_templates();
    enc.add(FlowStartFields{7, kT0, 6, 6, 1, 2, v6("2001:db8::1"), v6("2001:db8::2")});
    enc.add(PacketFields{7, kT0, 100, 0, 2, true});
    enc.add(FlowEndFields{7, kT0, kT0, {1, 0}, {100, 0}, 2});
    buf.resize(enc.finish(5, 6));
    return buf;
}

TEST(IpfixMalformed, CorpusNeverCrashesAndIsReported) {
    const auto good = sample_message();
    // Every truncation: the header length then exceeds the datagram.
    for (size_t n = 0; n < good.size(); ++n) {
        Decoder dec;
        MessageResult r;
        decode_all(dec, good.data(), n, &r);
        EXPECT_NE(r.status, DecodeStatus::ok) << n;
    }
    // Truncations with a consistent header length: sets cut in the middle.
    for (size_t n = kMessageHeaderSize; n < good.size(); ++n) {
        auto m = good;
        m.resize(n);
        put16(m.data() + 2, uint16_t(n));
        Decoder dec;
        decode_all(dec, m.data(), m.size());
    }
    // Hand-made bad cases.
    auto with = [&](size_t off, uint16_t v) {
        auto m = good;
        put16(m.data() + off, v);
        Decoder dec;
        MessageResult r;
        decode_all(dec, m.data(), m.size(), &r);
        return r.status;
    };
    EXPECT_EQ(with(0, 9), DecodeStatus::bad_version);
    EXPECT_EQ(with(2, 5), DecodeStatus::bad_length);
    EXPECT_EQ(with(2, 0xffff), DecodeStatus::bad_length);
    EXPECT_EQ(with(16 + 2, 0), DecodeStatus::bad_set);            // template set length 0
    EXPECT_EQ(with(16 + 2, 0xfff0), DecodeStatus::bad_set);       // past the message
    EXPECT_EQ(with(16 + 4, 5), DecodeStatus::bad_template);       // template id < 256
    EXPECT_EQ(with(16 + 6, 0xffff), DecodeStatus::bad_template);  // field count too large
    EXPECT_EQ(with(16 + 10, 0), DecodeStatus::bad_template);      // zero-length field
    // Random bit flips and random bytes: must not crash (ASan/UBSan builds check memory).
    std::mt19937 rng(1234);
    for (int i = 0; i < 20000; ++i) {
        auto m = good;
        const int flips = 1 + int(rng() % 8);
        for (int f = 0; f < flips; ++f) m[rng() % m.size()] ^= uint8_t(1u << (rng() % 8));
        if (rng() % 4 == 0) m.resize(rng() % (m.size() + 1));
        Decoder dec;
        decode_all(dec, m.data(), m.size());
    }
    Decoder shared;  // one decoder fed garbage with random template IDs and domains
    for (int i = 0; i < 20000; ++i) {
        std::vector<uint8_t> m(16 + rng() % 200);
        for (auto& b : m) b = uint8_t(rng());
        put16(m.data(), 10);
        put16(m.data() + 2, uint16_t(m.size()));
        if (m.size() >= 20) put16(m.data() + 16, uint16_t(2 + rng() % 2));
        decode_all(shared, m.data(), m.size(), nullptr, rng() % 3);
    }
    SUCCEED();
}

// ---- the netd exporter, over loopback UDP ----

using unit_testing::UdpReceiver;

Record packet_record(uint32_t id, uint64_t ts) {
    Record r{};
    r.type = uint8_t(RecordType::packet);
    r.flow_id = id;
    r.ts_ns = ts;
    r.packet.wire_len = 100;
    r.packet.index = id * 7 + 3;
    return r;
}

IpfixExporterConfig config_for(uint16_t port) {
    IpfixExporterConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    c.mtu = 576;
    c.domain_id = 9;
    c.flush_ms = 10;
    c.template_refresh_s = 30;
    return c;
}

TEST(IpfixExporter, TemplatesFirstThenSequencedFullMessages) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{0xfffffff0u};  // crosses 2^32 during the test
    IpfixExporter ex(config_for(rx.port), &seq);
    EXPECT_EQ(ex.max_message_size(), 576u - 28u);
    Decoder dec;
    MessageResult res;
    auto first = rx.recv();
    ASSERT_FALSE(first.empty());
    EXPECT_TRUE(decode_all(dec, first.data(), first.size(), &res).empty());
    EXPECT_EQ(res.templates, 6u);
    EXPECT_EQ(res.sequence, 0xfffffff0u);
    EXPECT_EQ(res.domain_id, 9u);

    for (uint32_t i = 0; i < 100; ++i) ex.add(packet_record(i, kT0 + i));
    ex.flush();
    uint32_t got = 0;
    for (;;) {
        auto m = rx.recv(200);
        if (m.empty()) break;
        EXPECT_LE(m.size(), 548u);
        const auto recs = decode_all(dec, m.data(), m.size(), &res);
        EXPECT_TRUE(res.sequence_checked);
        EXPECT_EQ(res.sequence_gap, 0);
        for (const auto& r : recs) {
            EXPECT_EQ(r.packet.index, r.packet.flow_id * 7 + 3);  // netd passes the index through
            EXPECT_EQ(r.packet.flow_id, got++);
        }
    }
    EXPECT_EQ(got, 100u);
    EXPECT_EQ(seq.load(), 0xfffffff0ull + 100);
    EXPECT_EQ(ex.counters().records_sent, 100u);
    EXPECT_EQ(ex.counters().templates_sent, 1u);
    EXPECT_EQ(ex.counters().send_errors, 0u);
}

TEST(IpfixExporter, SequenceSurvivesRestart) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{0};
    Decoder dec;
    for (int run = 0; run < 3; ++run) {
        IpfixExporter ex(config_for(rx.port), &seq);
        for (uint32_t i = 0; i < 10; ++i) ex.add(packet_record(i, kT0));
        ex.flush();
    }  // a restarted netd continues the counter; the same session key stands for the classifier
    int msgs = 0;
    for (;;) {
        auto m = rx.recv(200);
        if (m.empty()) break;
        MessageResult res;
        decode_all(dec, m.data(), m.size(), &res, /*session=*/1);
        if (msgs++) {
            EXPECT_EQ(res.sequence_gap, 0);
        }
    }
    EXPECT_EQ(msgs, 6);
    EXPECT_EQ(seq.load(), 30u);
}

TEST(IpfixExporter, FlushAfterFlushMsAndTemplateRefresh) {
    UdpReceiver rx;
    std::atomic<uint64_t> seq{0};
    auto cfg = config_for(rx.port);
    cfg.template_refresh_s = 2;
    IpfixExporter ex(cfg, &seq);
    Decoder dec;
    MessageResult res;
    auto m = rx.recv();  // templates at start
    ASSERT_FALSE(m.empty());
    decode_all(dec, m.data(), m.size(), &res);
    const uint64_t t = IpfixExporter::monotonic_ns();
    ex.add(packet_record(1, kT0));
    ex.poll(t);  // flush_ms not yet passed
    EXPECT_TRUE(rx.recv(50).empty());
    ex.poll(IpfixExporter::monotonic_ns() + 10'000'000);
    m = rx.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(decode_all(dec, m.data(), m.size(), &res).size(), 1u);
    EXPECT_EQ(res.templates, 0u);
    // The refresh timer: nothing at 1 s, templates at 2 s.
    ex.poll(t + 1'000'000'000);
    EXPECT_TRUE(rx.recv(50).empty());
    ex.poll(t + 2'100'000'000);
    m = rx.recv();
    ASSERT_FALSE(m.empty());
    decode_all(dec, m.data(), m.size(), &res);
    EXPECT_EQ(res.templates, 6u);
    EXPECT_EQ(ex.counters().templates_sent, 2u);
}

TEST(IpfixExporter, SendErrorsAreCountedNeverThrown) {
    uint16_t dead_port;
    {
        UdpReceiver tmp;  // bind then close: a port where nobody listens
        dead_port = tmp.port;
    }
    std::atomic<uint64_t> seq{0};
    IpfixExporter ex(config_for(dead_port), &seq);
    for (int i = 0; i < 5; ++i) {
        ex.add(packet_record(1, kT0));
        ex.flush();
        usleep(2000);  // let the ICMP port unreachable arrive
    }
    EXPECT_GT(ex.counters().send_errors, 0u);
    EXPECT_EQ(ex.counters().last_errno, ECONNREFUSED);
    EXPECT_EQ(seq.load(), 5u);  // the sequence advanced: a collector would see the gap
}

// A classifier that restarts has forgotten the templates: once sending works again after errors,
// the templates go first, so the first data it receives can be decoded (not 30 s later, at the
// refresh). Every record given is either sent or counted lost in a failed datagram.
TEST(IpfixExporter, TemplatesFirstWhenSendingWorksAgainAfterErrors) {
    uint16_t port;
    std::atomic<uint64_t> seq{0};
    std::unique_ptr<IpfixExporter> ex;
    {
        UdpReceiver up;
        port = up.port;
        ex = std::make_unique<IpfixExporter>(config_for(port), &seq);
        ASSERT_FALSE(up.recv().empty());  // the start's templates
    }  // the classifier stops
    for (int i = 0; i < 6; ++i) {
        ex->add(packet_record(1, kT0 + i));
        ex->flush();
        usleep(2000);  // let the ICMP port unreachable arrive
    }
    const IpfixExporterCounters down = ex->counters();
    EXPECT_GT(down.send_errors, 0u);
    EXPECT_GT(down.datagrams_failed, 0u);
    EXPECT_GT(down.records_lost, 0u);
    EXPECT_EQ(down.records_sent + down.records_lost, 6u);  // the ones "sent" went to a closed port
    EXPECT_EQ(seq.load(), 6u);

    UdpReceiver back(port);  // the classifier is back on its port
    ASSERT_EQ(back.port, port);
    ex->add(packet_record(7, kT0 + 7));
    ex->flush();
    Decoder dec;
    MessageResult res;
    auto m = back.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_TRUE(decode_all(dec, m.data(), m.size(), &res).empty());
    EXPECT_EQ(res.templates, 6u) << "the first message after the errors is not the templates";
    m = back.recv();
    ASSERT_FALSE(m.empty());
    const auto recs = decode_all(dec, m.data(), m.size(), &res);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0].packet.flow_id, 7u);
    EXPECT_EQ(ex->counters().records_sent + ex->counters().records_lost, 7u);
    // Sending works: no more templates before data until the next error or refresh.
    ex->add(packet_record(8, kT0 + 8));
    ex->flush();
    m = back.recv();
    ASSERT_FALSE(m.empty());
    EXPECT_EQ(decode_all(dec, m.data(), m.size(), &res).size(), 1u);
    EXPECT_TRUE(back.recv(50).empty());
}

TEST(IpfixExporter, SetDestinationSendsTemplatesFirst) {
    UdpReceiver a, b;
    std::atomic<uint64_t> seq{0};
    IpfixExporter ex(config_for(a.port), &seq);
    ASSERT_FALSE(a.recv().empty());
    ex.add(packet_record(1, kT0));
    ASSERT_TRUE(ex.set_destination("127.0.0.1", b.port));
    EXPECT_FALSE(a.recv().empty());  // pending record went to the old destination
    ex.add(packet_record(2, kT0));
    ex.flush();
    Decoder dec;
    MessageResult res;
    auto m = b.recv();
    EXPECT_TRUE(decode_all(dec, m.data(), m.size(), &res).empty());
    EXPECT_EQ(res.templates, 6u);
    m = b.recv();
    const auto recs = decode_all(dec, m.data(), m.size(), &res);
    ASSERT_EQ(recs.size(), 1u);
    EXPECT_EQ(recs[0].packet.flow_id, 2u);
    EXPECT_FALSE(ex.set_destination("no-such-host.invalid", 1));
    EXPECT_EQ(ex.destination(), "127.0.0.1:" + std::to_string(b.port));
}

TEST(IpfixExporter, Ipv6DestinationUsesSmallerMessages) {
    const int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        if (fd >= 0) close(fd);
        GTEST_SKIP() << "no IPv6 loopback";
    }
    socklen_t l = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    std::atomic<uint64_t> seq{0};
    auto cfg = config_for(ntohs(a.sin6_port));
    cfg.host = "::1";
    IpfixExporter ex(cfg, &seq);
    EXPECT_EQ(ex.max_message_size(), 576u - 48u);
    EXPECT_EQ(ex.destination(), "[::1]:" + std::to_string(ntohs(a.sin6_port)));
    close(fd);
}

}  // namespace
}  // namespace angel::ipfix
