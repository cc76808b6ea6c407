// angel-sink's per-exporter template state (tools/sink/exporters.*, receiver.*): datagrams from
// spoofed sources cannot fill the real exporter's template table, each exporter's templates are
// bounded and the refusals counted, the exporter table itself is bounded, and RFC 7011 §8.1
// template withdrawals (one template, or all of a set type) are honoured.
//
// The datagrams are written byte by byte from RFC 7011, not with the encoder or the decoder
// under test:
//   message header (§3.1, 16 bytes): version 10, length, export time, sequence, domain ID
//   set header (§3.3.2, 4 bytes): set ID (2 template set, 3 options template set, >= 256 data
//     set of that template ID), set length including the header
//   template record header (§3.4.1): template ID, field count; options template record header
//     (§3.4.2.2): template ID, field count, scope field count
//   field specifier (§3.2): element ID (enterprise bit clear), field length
//   withdrawal (§8.1): template ID, field count 0; template ID 2 in a template set (3 in an
//     options template set) with field count 0 withdraws all templates of that set type
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "common/ipfix_decoder.hpp"
#include "tools/sink/exporters.hpp"
#include "tools/sink/receiver.hpp"
#include "tools/sink/stats.hpp"

namespace angel::sink {
namespace {

using ipfix::DecodeStatus;
using ipfix::DecodedRecord;
using ipfix::MessageResult;

// IANA element IDs (RFC 7012 / IANA IPFIX registry) and their field lengths used below.
constexpr uint16_t kFlowId = 148;                 // flowId, 4 (reduced from 8)
constexpr uint16_t kObsTimeNs = 325;              // observationTimeNanoseconds, 8
constexpr uint16_t kFrameSize = 312;              // dataLinkFrameSize, 2 (reduced)
constexpr uint16_t kPaddingOctets = 210;          // paddingOctets, 1: a field nobody reads
constexpr uint16_t kObsDomainId = 149;            // observationDomainId, 4 (options scope)
constexpr uint16_t kExportedMsgs = 41;            // exportedMessageTotalCount, 8

using Fields = std::vector<std::pair<uint16_t, uint16_t>>;  // (element ID, length)
const Fields kPacketFields = {{kFlowId, 4}, {kObsTimeNs, 8}, {kFrameSize, 2}};  // 14-byte records

class Msg {
public:
    explicit Msg(uint32_t domain, uint32_t sequence = 0) {
        u16(10);        // version
        u16(0);         // length, set by bytes()
        u32(0);         // export time
        u32(sequence);
        u32(domain);
    }
    Msg& set(uint16_t id) {
        close_set();
        set_at_ = b_.size();
        u16(id);
        u16(0);  // length, set when the set is closed
        return *this;
    }
    Msg& tmpl(uint16_t tid, const Fields& fields) {
        u16(tid);
        u16(uint16_t(fields.size()));
        for (auto [id, len] : fields) u16(id), u16(len);
        return *this;
    }
    Msg& options_tmpl(uint16_t tid, uint16_t scope_count, const Fields& fields) {
        u16(tid);
        u16(uint16_t(fields.size()));
        u16(scope_count);
        for (auto [id, len] : fields) u16(id), u16(len);
        return *this;
    }
    Msg& withdraw(uint16_t tid) {
        u16(tid);
        u16(0);
        return *this;
    }
    // A record of kPacketFields.
    Msg& packet(uint32_t flow_id, uint16_t len) {
        u32(flow_id);
        u32(0), u32(0);  // NTP time 0
        u16(len);
        return *this;
    }
    Msg& raw(size_t n, uint8_t v) {
        b_.insert(b_.end(), n, v);
        return *this;
    }
    std::vector<uint8_t> bytes() {
        close_set();
        EXPECT_LE(b_.size(), 65535u);
        put16(2, b_.size());
        return b_;
    }

private:
    void u16(uint16_t v) {
        b_.push_back(uint8_t(v >> 8));
        b_.push_back(uint8_t(v));
    }
    void u32(uint32_t v) {
        u16(uint16_t(v >> 16));
        u16(uint16_t(v));
    }
    void put16(size_t at, size_t v) {
        b_[at] = uint8_t(v >> 8);
        b_[at + 1] = uint8_t(v);
    }
    void close_set() {
        if (set_at_) put16(set_at_ + 2, b_.size() - set_at_);
        set_at_ = 0;
    }
    std::vector<uint8_t> b_;
    size_t set_at_ = 0;  // 0: no set open (a set never starts inside the message header)
};

sockaddr_in v4(const char* ip, uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET, ip, &a.sin_addr), 1) << ip;
    return a;
}

// A sink without the socket: datagrams go through the Receiver as main.cpp's loop sends them.
struct Sink {
    Stats stats;
    Receiver rx{stats};
    std::vector<DecodedRecord> records;

    MessageResult send(std::vector<uint8_t> d, const sockaddr_in& from) {
        return rx.process(d.data(), d.size(), reinterpret_cast<const sockaddr*>(&from),
                          sizeof from, [this](const DecodedRecord& r) {
                              stats.on_record(r);
                              records.push_back(r);
                          });
    }
    std::string summary() const {
        char* buf = nullptr;
        size_t size = 0;
        FILE* f = open_memstream(&buf, &size);
        EXPECT_NE(f, nullptr);
        stats.print(f, 1.0);
        std::fclose(f);
        std::string out(buf, size);
        std::free(buf);
        return out;
    }
};

// The most 1-field templates one datagram holds: (65535 - 16 - 4) / 8.
constexpr uint16_t kFloodTemplates = 8189;

std::vector<uint8_t> template_flood(uint32_t domain) {
    Msg m(domain);
    m.set(2);
    for (uint16_t i = 0; i < kFloodTemplates; ++i) m.tmpl(uint16_t(256 + i), {{kFlowId, 4}});
    return m.bytes();
}

// (a) Twelve spoofed sources, each defining 8189 templates (98,268 in all; a single shared table
// of 65,536 was full after 9), some with the real exporter's address or port, some reusing its
// template ID 256 with another layout: the real exporter's template is still accepted afterwards
// and its records decode through its own layout.
TEST(SinkExporters, SpoofedSourcesDoNotStopTheRealExporter) {
    Sink s;
    const auto real = v4("192.0.2.10", 4739);
    for (uint16_t i = 0; i < 12; ++i) {
        const auto from = i == 0   ? v4("192.0.2.10", 4740)           // its address, other port
                          : i == 1 ? v4("198.51.100.1", 4739)         // its port, other address
                                   : v4(("203.0.113." + std::to_string(i)).c_str(), uint16_t(1000 + i));
        const MessageResult r = s.send(template_flood(7), from);
        EXPECT_EQ(r.status, DecodeStatus::ok) << i;
        EXPECT_EQ(r.templates, kFloodTemplates) << i;
        EXPECT_EQ(r.templates_refused, kFloodTemplates - ExporterTable::kMaxTemplatesPerExporter) << i;
    }
    // Same address and port as the real exporter, another observation domain: another exporter.
    EXPECT_EQ(s.send(template_flood(8), real).status, DecodeStatus::ok);

    Msg m(7);
    m.set(2).tmpl(256, kPacketFields);
    m.set(256).packet(11, 100).packet(12, 1500).packet(13, 64);
    const MessageResult r = s.send(m.bytes(), real);
    EXPECT_EQ(r.status, DecodeStatus::ok);
    EXPECT_EQ(r.templates, 1u);
    EXPECT_EQ(r.templates_refused, 0u);
    EXPECT_EQ(r.unknown_sets, 0u);
    EXPECT_EQ(r.data_records, 3u);
    ASSERT_EQ(s.records.size(), 3u);
    EXPECT_EQ(s.records[0].kind, ipfix::RecordKind::packet);
    EXPECT_EQ(s.records[0].packet.flow_id, 11u);
    EXPECT_EQ(s.records[1].packet.wire_len, 1500u);
    EXPECT_EQ(s.records[2].packet.flow_id, 13u);

    EXPECT_EQ(s.rx.exporters().size(), 14u);
    EXPECT_EQ(s.stats.exporters_evicted(), 0u);
    EXPECT_EQ(s.stats.templates_refused(),
              13u * (kFloodTemplates - ExporterTable::kMaxTemplatesPerExporter));
    const std::string out = s.summary();
    EXPECT_NE(out.find("templates        0 withdrawn, 103129 refused (limit 256 templates, 16384 "
                       "fields per exporter)\n"),  // 13 x (8189 - 256)
              std::string::npos)
        << out;
    EXPECT_NE(out.find("exporters        14 seen, 0 evicted (limit 64 tracked"), std::string::npos)
        << out;
}

// (b) One exporter's limit: 300 templates in one datagram keep the first 256 (IDs 256..511) and
// refuse the rest, counted; data of a refused ID is a set without template. Redefining a kept
// ID at the limit is no new template. The field budget is per exporter as well. Other
// exporters keep their full allowance.
TEST(SinkExporters, PerExporterTemplateLimitEnforcedAndCounted) {
    Sink s;
    const auto a = v4("192.0.2.20", 5000), b = v4("192.0.2.21", 5000);
    Msg m(1);
    m.set(2);
    for (uint16_t i = 0; i < 300; ++i) m.tmpl(uint16_t(256 + i), kPacketFields);
    MessageResult r = s.send(m.bytes(), a);
    EXPECT_EQ(r.status, DecodeStatus::ok);
    EXPECT_EQ(r.templates, 300u);
    EXPECT_EQ(r.templates_refused, 44u);

    Msg d(1);
    d.set(511).packet(1, 100);  // the 256th: kept
    d.set(512).packet(2, 100);  // the 257th: refused
    d.set(2).tmpl(300, kPacketFields);  // redefinition at the limit: accepted
    d.set(555).packet(3, 100);
    r = s.send(d.bytes(), a);
    EXPECT_EQ(r.status, DecodeStatus::ok);
    EXPECT_EQ(r.data_records, 1u);
    EXPECT_EQ(r.unknown_sets, 2u);
    EXPECT_EQ(r.templates_refused, 0u);
    ASSERT_EQ(s.records.size(), 1u);
    EXPECT_EQ(s.records[0].packet.flow_id, 1u);

    Msg other(1);
    other.set(2);
    for (uint16_t i = 0; i < 256; ++i) other.tmpl(uint16_t(256 + i), kPacketFields);
    r = s.send(other.bytes(), b);
    EXPECT_EQ(r.templates, 256u);
    EXPECT_EQ(r.templates_refused, 0u);

    // Fields: 8000 + 8000 of the 16384 per exporter; 500 more do not fit until a redefinition
    // with 100 fields gives 7900 back.
    const auto c = v4("192.0.2.22", 5000);
    auto wide = [](uint16_t tid, uint16_t n) {
        Msg w(1);
        w.set(2).tmpl(tid, Fields(n, {kPaddingOctets, 1}));
        return w.bytes();
    };
    EXPECT_EQ(s.send(wide(256, 8000), c).templates_refused, 0u);
    EXPECT_EQ(s.send(wide(257, 8000), c).templates_refused, 0u);
    EXPECT_EQ(s.send(wide(258, 500), c).templates_refused, 1u);
    EXPECT_EQ(s.send(wide(256, 100), c).templates_refused, 0u);
    EXPECT_EQ(s.send(wide(258, 500), c).templates_refused, 0u);

    EXPECT_EQ(s.stats.templates_refused(), 45u);
    EXPECT_EQ(s.stats.unknown_sets(), 2u);
    const std::string out = s.summary();
    EXPECT_NE(out.find("templates        0 withdrawn, 45 refused"), std::string::npos) << out;
}

// The exporter table is bounded: the 65th exporter evicts the least recently seen one (counted),
// and an evicted exporter's data has no template until it sends its templates again. Datagrams
// with an unusable header create no exporter.
TEST(SinkExporters, ExporterTableBoundedLeastRecentlySeenEvicted) {
    Sink s;
    const auto real = v4("192.0.2.30", 4739);
    Msg t(3);
    t.set(2).tmpl(256, kPacketFields);
    s.send(t.bytes(), real);
    auto data = [] {
        Msg d(3);
        d.set(256).packet(42, 80);
        return d.bytes();
    };
    auto empty = [] { return Msg(3).bytes(); };  // a header and nothing else: valid
    for (uint16_t i = 0; i < 63; ++i) s.send(empty(), v4("10.1.0.1", uint16_t(2000 + i)));
    EXPECT_EQ(s.rx.exporters().size(), ExporterTable::kMaxExporters);
    EXPECT_EQ(s.send(data(), real).data_records, 1u);  // still tracked; now the most recent

    for (uint16_t i = 0; i < 63; ++i) s.send(empty(), v4("10.2.0.1", uint16_t(2000 + i)));
    EXPECT_EQ(s.stats.exporters_evicted(), 63u);
    EXPECT_EQ(s.send(data(), real).data_records, 1u);  // the 63 evicted were older
    for (uint16_t i = 0; i < 64; ++i) s.send(empty(), v4("10.3.0.1", uint16_t(2000 + i)));
    EXPECT_EQ(s.stats.exporters_evicted(), 127u);
    const MessageResult r = s.send(data(), real);  // evicted: its template is gone
    EXPECT_EQ(r.data_records, 0u);
    EXPECT_EQ(r.unknown_sets, 1u);
    EXPECT_EQ(s.stats.exporters_evicted(), 128u);  // and it came back as a new exporter

    std::vector<uint8_t> junk(40, 0xee);  // version 0xeeee
    for (uint16_t i = 0; i < 100; ++i)
        EXPECT_EQ(s.send(junk, v4("10.4.0.1", uint16_t(2000 + i))).status, DecodeStatus::bad_version);
    EXPECT_EQ(s.rx.exporters().size(), ExporterTable::kMaxExporters);
    EXPECT_EQ(s.stats.exporters_evicted(), 128u);
    const std::string out = s.summary();
    EXPECT_NE(out.find("exporters        192 seen, 128 evicted (limit 64 tracked, the least "
                       "recently seen evicted)\n"),
              std::string::npos)
        << out;
}

// (c) RFC 7011 §8.1 withdrawals: one template (field count 0), then all templates of a template
// set (template ID 2) and all options templates (template ID 3 in an options template set).
// Data of a withdrawn template is then a set without template; other exporters are untouched.
TEST(SinkExporters, TemplateWithdrawalSingleAndAll) {
    Sink s;
    const auto a = v4("192.0.2.40", 4739), b = v4("192.0.2.41", 4739);
    Msg t(5);
    t.set(2).tmpl(256, kPacketFields).tmpl(257, kPacketFields).tmpl(258, kPacketFields);
    t.set(3).options_tmpl(300, 1, {{kObsDomainId, 4}, {kExportedMsgs, 8}});
    for (const auto& from : {a, b}) {
        const MessageResult r = s.send(Msg(t).bytes(), from);
        ASSERT_EQ(r.status, DecodeStatus::ok);
        ASSERT_EQ(r.templates, 4u);
    }
    auto data = [](std::initializer_list<uint16_t> tids) {
        Msg d(5);
        for (uint16_t tid : tids) {
            d.set(tid);
            if (tid == 300)
                d.raw(12, 0);  // one options record: 4 + 8 bytes
            else
                d.packet(tid, 100);
        }
        return d.bytes();
    };

    Msg w1(5);
    w1.set(2).withdraw(256);
    MessageResult r = s.send(w1.bytes(), a);
    EXPECT_EQ(r.status, DecodeStatus::ok);
    EXPECT_EQ(r.templates, 1u);
    EXPECT_EQ(r.templates_withdrawn, 1u);
    r = s.send(data({256, 257, 258, 300}), a);
    EXPECT_EQ(r.unknown_sets, 1u);
    EXPECT_EQ(r.data_records, 3u);  // 257, 258 and the options record

    Msg all(5);
    all.set(2).withdraw(2);  // all (non-options) templates
    r = s.send(all.bytes(), a);
    EXPECT_EQ(r.status, DecodeStatus::ok);
    EXPECT_EQ(r.templates_withdrawn, 2u);
    r = s.send(data({256, 257, 258, 300}), a);
    EXPECT_EQ(r.unknown_sets, 3u);
    EXPECT_EQ(r.data_records, 1u);  // the options template is not of that type

    Msg all_opt(5);
    all_opt.set(3).withdraw(3);  // all options templates
    r = s.send(all_opt.bytes(), a);
    EXPECT_EQ(r.status, DecodeStatus::ok);
    EXPECT_EQ(r.templates_withdrawn, 1u);
    r = s.send(data({300}), a);
    EXPECT_EQ(r.unknown_sets, 1u);
    EXPECT_EQ(r.data_records, 0u);

    // Exporter b still has all four.
    const size_t before = s.records.size();
    r = s.send(data({256, 257, 258, 300}), b);
    EXPECT_EQ(r.unknown_sets, 0u);
    EXPECT_EQ(r.data_records, 4u);
    EXPECT_EQ(s.records.size(), before + 3);  // options records are counted, not delivered

    // The all-withdrawal IDs belong to their set type; other IDs below 256 stay malformed.
    Msg bad1(5);
    bad1.set(2).withdraw(3);
    EXPECT_EQ(s.send(bad1.bytes(), b).status, DecodeStatus::bad_template);
    Msg bad2(5);
    bad2.set(3).withdraw(2);
    EXPECT_EQ(s.send(bad2.bytes(), b).status, DecodeStatus::bad_template);
    Msg bad3(5);
    bad3.set(2).withdraw(5);
    EXPECT_EQ(s.send(bad3.bytes(), b).status, DecodeStatus::bad_template);

    // Sent again, a withdrawn template decodes again.
    Msg again(5);
    again.set(2).tmpl(256, kPacketFields);
    again.set(256).packet(77, 60);
    r = s.send(again.bytes(), a);
    EXPECT_EQ(r.data_records, 1u);
    EXPECT_EQ(s.records.back().packet.flow_id, 77u);

    EXPECT_EQ(s.stats.templates_withdrawn(), 4u);
    EXPECT_EQ(s.stats.unknown_sets(), 5u);
    const std::string out = s.summary();
    EXPECT_NE(out.find("templates        4 withdrawn, 0 refused"), std::string::npos) << out;
    EXPECT_NE(out.find("unknown template 5 data sets"), std::string::npos) << out;
}

// The key is the exact source: address family, address, port, (IPv6) scope, domain.
TEST(SinkExporters, KeyIsExactSourceAndDomain) {
    const auto a = v4("192.0.2.1", 4739);
    const auto* sa = reinterpret_cast<const sockaddr*>(&a);
    EXPECT_EQ(exporter_key(sa, sizeof a, 1), exporter_key(sa, sizeof a, 1));
    EXPECT_FALSE(exporter_key(sa, sizeof a, 1) == exporter_key(sa, sizeof a, 2));
    const auto b = v4("192.0.2.1", 4740);
    EXPECT_FALSE(exporter_key(sa, sizeof a, 1) ==
                 exporter_key(reinterpret_cast<const sockaddr*>(&b), sizeof b, 1));
    sockaddr_in6 s6{};
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(4739);
    ASSERT_EQ(inet_pton(AF_INET6, "fe80::1", &s6.sin6_addr), 1);
    s6.sin6_scope_id = 2;
    const auto k1 = exporter_key(reinterpret_cast<const sockaddr*>(&s6), sizeof s6, 1);
    s6.sin6_scope_id = 3;
    const auto k2 = exporter_key(reinterpret_cast<const sockaddr*>(&s6), sizeof s6, 1);
    EXPECT_EQ(k1.family, AF_INET6);
    EXPECT_EQ(k1.port, 4739);
    EXPECT_FALSE(k1 == k2);
    // A truncated address is no address: the unknown-source key.
    EXPECT_EQ(exporter_key(sa, 4, 1), exporter_key(nullptr, 0, 1));
}

}  // namespace
}  // namespace angel::sink
