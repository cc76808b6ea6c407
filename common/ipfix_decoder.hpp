// Template-driven IPFIX (RFC 7011) decoder: learns templates from template sets, then reads data
// records through them, recognising our record kinds by the elements a template contains (not by
// template ID or fixed offsets), so reduced-size or reordered fields from any exporter decode too.
// Every length is checked against the datagram; malformed input is reported, never trusted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "common/ipfix.hpp"

namespace angel::ipfix {

enum class RecordKind : uint8_t { other = 0, packet = 1, flow_start = 2, flow_end = 3, loss = 4, watermark = 5 };
inline constexpr size_t kRecordKinds = 6;

struct DecodedRecord {
    RecordKind kind = RecordKind::other;
    uint16_t template_id = 0;
    PacketFields packet;       // kind == packet
    bool len_saturated = false;
    bool has_index = false;    // the template carries angelPacketIndex (packet.index is valid)
    FlowStartFields start;     // kind == flow_start
    FlowEndFields end;         // kind == flow_end; end.reason is our code (from angelEndReason,
    uint8_t iana_end_reason = 0;  // or mapped from flowEndReason when the exporter is not ours)
    LossFields loss;           // kind == loss
    WatermarkFields watermark; // kind == watermark
};

enum class DecodeStatus : uint8_t {
    ok = 0,
    too_short,         // shorter than a message header
    bad_version,       // version != 10
    bad_length,        // header length larger than the datagram or smaller than the header
    bad_set,           // a set length runs past the message or is < 4
    bad_template,      // a template record runs past its set or has invalid values
    bad_data,          // a variable-length field runs past its set
};
const char* decode_status_name(DecodeStatus s);

struct MessageResult {
    DecodeStatus status = DecodeStatus::ok;
    uint32_t domain_id = 0;
    uint32_t sequence = 0;
    uint32_t export_time = 0;
    uint32_t data_records = 0;        // decoded through a known template (all kinds)
    uint32_t templates = 0;           // template records received (incl. withdrawals, refused)
    uint32_t templates_refused = 0;   // over the decoder's Limits: not kept (their data: unknown)
    uint32_t templates_withdrawn = 0; // templates removed by withdrawals (RFC 7011 §8.1)
    uint32_t unknown_sets = 0;        // data sets whose template we have not seen (skipped)
    uint32_t unknown_set_bytes = 0;
    // Sequence check against the previous message of the same session+domain.
    bool sequence_checked = false;    // false for the first message or after unknown sets
    int64_t sequence_gap = 0;         // > 0: records lost before this message; < 0: went back
};

class Decoder {
public:
    using RecordFn = std::function<void(const DecodedRecord&)>;

    // Upper bound of templates kept (hostile input must not grow memory without limit).
    static constexpr size_t kMaxTemplates = 65536;

    // What one decoder keeps, over all its sessions. A template beyond either bound is refused
    // and counted (MessageResult::templates_refused); the rest of the message still decodes.
    // Fields are bounded too because one template may hold ~16k of them (a 64 KiB datagram).
    struct Limits {
        size_t max_templates = kMaxTemplates;
        size_t max_fields = size_t(1) << 22;  // 4 bytes each: 16 MiB
    };

    Decoder() = default;
    explicit Decoder(const Limits& limits) : limits_(limits) {}

    // DecodeStatus::ok if DATA starts with a usable message header (length >= 16, version 10,
    // header length within the datagram); what decode() would report otherwise.
    static DecodeStatus check_header(const uint8_t* data, size_t len);

    // Decodes one datagram. session identifies the transport session (e.g. a hash of the
    // exporter's address and port): templates and sequence numbers are kept per session+domain
    // (RFC 7011 §8). Records decoded before an error are still delivered.
    MessageResult decode(const uint8_t* data, size_t len, uint64_t session, const RecordFn& fn);

    size_t template_count() const { return templates_.size(); }
    size_t field_count() const { return fields_; }  // over all templates kept
    void clear() { templates_.clear(); sequences_.clear(); fields_ = 0; }

private:
    enum class Target : uint8_t {
        ignore, flow_id, obs_time_ns, frame_len, tcp_flags, pkt_flags, pkt_index, start_ns, end_ns, proto,
        src4, dst4, src6, dst6, sport, dport, iana_reason, our_reason, pkts_fwd, bytes_fwd,
        pkts_rev, bytes_rev, loss_cause, dropped_pkts,
    };
    struct Field {
        Target target;
        uint16_t length;  // kVariableLength for variable
    };
    struct Template {
        std::vector<Field> fields;
        RecordKind kind = RecordKind::other;
        bool options = false;
        bool variable = false;
        uint32_t min_record_size = 0;  // fixed part (variable fields count their length byte)
    };
    struct Key {
        uint64_t session;
        uint32_t domain;
        uint16_t tid;
        auto operator<=>(const Key&) const = default;
    };
    struct SeqKey {
        uint64_t session;
        uint32_t domain;
        auto operator<=>(const SeqKey&) const = default;
    };
    struct SeqState {
        uint32_t next = 0;
        bool known = false;
    };

    static Target classify(uint32_t enterprise, uint16_t id, uint16_t length);
    bool parse_template_set(const uint8_t* p, size_t len, bool options, uint64_t session,
                            uint32_t domain, MessageResult& res);
    void withdraw(uint64_t session, uint32_t domain, uint16_t tid, bool options,
                  MessageResult& res);
    bool parse_data_set(const Template& t, uint16_t tid, const uint8_t* p, size_t len,
                        MessageResult& res, const RecordFn& fn);
    static bool decode_record(const Template& t, const uint8_t* p, size_t avail, size_t* used,
                              DecodedRecord& out);

    Limits limits_;
    std::map<Key, Template> templates_;
    size_t fields_ = 0;  // sum of fields.size() over templates_
    std::map<SeqKey, SeqState> sequences_;
};

}  // namespace angel::ipfix
