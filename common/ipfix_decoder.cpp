// Decoding walks message -> sets -> records with an explicit bound at each level. A template is
// compiled once into a list of (target, length) so that data records cost one switch per field.
#include "common/ipfix_decoder.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace angel::ipfix {

const char* decode_status_name(DecodeStatus s) {
    switch (s) {
    case DecodeStatus::ok: return "ok";
    case DecodeStatus::too_short: return "too_short";
    case DecodeStatus::bad_version: return "bad_version";
    case DecodeStatus::bad_length: return "bad_length";
    case DecodeStatus::bad_set: return "bad_set";
    case DecodeStatus::bad_template: return "bad_template";
    case DecodeStatus::bad_data: return "bad_data";
    }
    return "?";
}

Decoder::Target Decoder::classify(uint32_t enterprise, uint16_t id, uint16_t length) {
    // Unsigned integers may be reduced-size (1..8); addresses and timestamps must be exact.
    const bool uint_ok = length >= 1 && length <= 8;
    if (enterprise == 0) {
        switch (id) {
        case ie::flowId: return uint_ok ? Target::flow_id : Target::ignore;
        case ie::observationTimeNanoseconds: return length == 8 ? Target::obs_time_ns : Target::ignore;
        case ie::dataLinkFrameSize: return uint_ok ? Target::frame_len : Target::ignore;
        case ie::tcpControlBits: return uint_ok ? Target::tcp_flags : Target::ignore;
        case ie::flowStartNanoseconds: return length == 8 ? Target::start_ns : Target::ignore;
        case ie::flowEndNanoseconds: return length == 8 ? Target::end_ns : Target::ignore;
        case ie::protocolIdentifier: return uint_ok ? Target::proto : Target::ignore;
        case ie::sourceIPv4Address: return length == 4 ? Target::src4 : Target::ignore;
        case ie::destinationIPv4Address: return length == 4 ? Target::dst4 : Target::ignore;
        case ie::sourceIPv6Address: return length == 16 ? Target::src6 : Target::ignore;
        case ie::destinationIPv6Address: return length == 16 ? Target::dst6 : Target::ignore;
        case ie::sourceTransportPort: return uint_ok ? Target::sport : Target::ignore;
        case ie::destinationTransportPort: return uint_ok ? Target::dport : Target::ignore;
        case ie::flowEndReason: return uint_ok ? Target::iana_reason : Target::ignore;
        case ie::packetDeltaCount: return uint_ok ? Target::pkts_fwd : Target::ignore;
        case ie::octetDeltaCount: return uint_ok ? Target::bytes_fwd : Target::ignore;
        case ie::droppedPacketDeltaCount: return uint_ok ? Target::dropped_pkts : Target::ignore;
        default: return Target::ignore;
        }
    }
    if (enterprise == kPenAngel) {
        if (id == ie::angelPacketFlags && uint_ok) return Target::pkt_flags;
        if (id == ie::angelEndReason && uint_ok) return Target::our_reason;
        if (id == ie::angelPacketIndex && uint_ok) return Target::pkt_index;
        if (id == ie::angelLossCause && uint_ok) return Target::loss_cause;
    }
    if (enterprise == kPenReverse) {
        if (id == ie::packetDeltaCount && uint_ok) return Target::pkts_rev;
        if (id == ie::octetDeltaCount && uint_ok) return Target::bytes_rev;
    }
    return Target::ignore;
}

void Decoder::withdraw(uint64_t session, uint32_t domain, uint16_t tid, bool options,
                       MessageResult& res) {
    auto drop = [&](std::map<Key, Template>::iterator it) {
        fields_ -= it->second.fields.size();
        ++res.templates_withdrawn;
        return templates_.erase(it);
    };
    if (tid >= kMinDataSetId) {
        // One template, whatever set type defined it; an unknown ID withdraws nothing.
        if (auto it = templates_.find(Key{session, domain, tid}); it != templates_.end()) drop(it);
        return;
    }
    // All templates of the set's type for this session+domain: one contiguous key range.
    for (auto it = templates_.lower_bound(Key{session, domain, kMinDataSetId});
         it != templates_.end() && it->first.session == session && it->first.domain == domain;)
        it = it->second.options == options ? drop(it) : std::next(it);
}

bool Decoder::parse_template_set(const uint8_t* p, size_t len, bool options, uint64_t session,
                                 uint32_t domain, MessageResult& res) {
    size_t off = 0;
    // A template record is at least 4 bytes; shorter leftovers are padding (RFC 7011 §3.3.1).
    while (len - off >= 4) {
        const uint16_t tid = get16(p + off);
        const uint16_t count = get16(p + off + 2);
        off += 4;
        if (count == 0) {
            // Withdrawal (RFC 7011 §8.1): of template TID, or, with TID equal to the set ID
            // (2 in a template set, 3 in an options template set), of all templates of that type.
            if (tid < kMinDataSetId && tid != (options ? kOptionsTemplateSetId : kTemplateSetId))
                return false;
            withdraw(session, domain, tid, options, res);
            ++res.templates;
            continue;
        }
        if (tid < kMinDataSetId) return false;
        if (options) {
            if (len - off < 2) return false;
            const uint16_t scope = get16(p + off);
            off += 2;
            if (scope == 0 || scope > count) return false;
        }
        Template t;
        t.options = options;
        t.fields.reserve(std::min<size_t>(count, (len - off) / 4));  // count may lie
        bool has[32] = {};
        for (uint16_t i = 0; i < count; ++i) {
            if (len - off < 4) return false;
            uint16_t id = get16(p + off);
            const uint16_t flen = get16(p + off + 2);
            off += 4;
            uint32_t ent = 0;
            if (id & kEnterpriseBit) {
                if (len - off < 4) return false;
                ent = get32(p + off);
                off += 4;
                id = uint16_t(id & ~kEnterpriseBit);
            }
            if (flen == 0) return false;
            const Target tg = options ? Target::ignore : classify(ent, id, flen);
            has[size_t(tg)] = true;
            t.fields.push_back({tg, flen});
            if (flen == kVariableLength) {
                t.variable = true;
                t.min_record_size += 1;
            } else {
                t.min_record_size += flen;
            }
        }
        // A loss record has flow times too: its cause element decides first. A watermark is
        // an observation time without a flow (a packet record always names its flow).
        if (has[size_t(Target::loss_cause)])
            t.kind = RecordKind::loss;
        else if (has[size_t(Target::end_ns)] || has[size_t(Target::iana_reason)] ||
            has[size_t(Target::our_reason)])
            t.kind = RecordKind::flow_end;
        else if (has[size_t(Target::src4)] || has[size_t(Target::src6)])
            t.kind = RecordKind::flow_start;
        else if (has[size_t(Target::obs_time_ns)] && !has[size_t(Target::flow_id)])
            t.kind = RecordKind::watermark;
        else if (has[size_t(Target::obs_time_ns)])
            t.kind = RecordKind::packet;
        ++res.templates;
        // Within the limits, a redefinition replaces the old template in place. Over them the
        // template is refused, but the record was well formed: the rest of the set still counts.
        const auto old = templates_.find(Key{session, domain, tid});
        const bool known = old != templates_.end();
        const size_t old_fields = known ? old->second.fields.size() : 0;
        const bool fits = (known || templates_.size() < limits_.max_templates) &&
                          fields_ - old_fields + t.fields.size() <= limits_.max_fields;
        if (!fits) {
            // The exporter's records now follow the definition we refused, not the old one.
            if (known) {
                fields_ -= old_fields;
                templates_.erase(old);
            }
            ++res.templates_refused;
            continue;
        }
        fields_ = fields_ - old_fields + t.fields.size();
        if (known)
            old->second = std::move(t);
        else
            templates_.emplace(Key{session, domain, tid}, std::move(t));
    }
    return true;
}

bool Decoder::decode_record(const Template& t, const uint8_t* p, size_t avail, size_t* used,
                            DecodedRecord& r) {
    size_t off = 0;
    uint8_t pkt_flags = 0;
    bool have_our_reason = false;
    bool have_index = false;
    // Fixed-length templates (ours) are bounds-checked once per record, not per field.
    if (!t.variable && avail < t.min_record_size) return false;
    for (const Field& f : t.fields) {
        size_t n = f.length;
        if (t.variable) {
            if (n == kVariableLength) {
                if (off >= avail) return false;
                n = p[off++];
                if (n == 255) {
                    if (avail - off < 2) return false;
                    n = get16(p + off);
                    off += 2;
                }
            }
            if (avail - off < n) return false;
        }
        const uint8_t* v = p + off;
        off += n;
        switch (f.target) {
        case Target::ignore: break;
        case Target::flow_id: {
            const auto id = uint32_t(get_uint(v, n));
            r.packet.flow_id = r.start.flow_id = r.end.flow_id = id;
            break;
        }
        case Target::obs_time_ns: r.packet.ts_ns = ntp_to_ns(get64(v)); break;
        case Target::frame_len: r.packet.wire_len = uint32_t(get_uint(v, n)); break;
        case Target::tcp_flags: r.packet.tcp_flags = uint8_t(get_uint(v, n)); break;
        case Target::pkt_flags: pkt_flags = uint8_t(get_uint(v, n)); break;
        case Target::pkt_index:
            r.packet.index = uint32_t(get_uint(v, n));
            have_index = true;
            break;
        case Target::start_ns: r.start.ts_ns = r.end.first_ns = ntp_to_ns(get64(v)); break;
        case Target::end_ns: r.end.last_ns = ntp_to_ns(get64(v)); break;
        case Target::proto: r.start.proto = uint8_t(get_uint(v, n)); break;
        case Target::src4: std::memcpy(r.start.src.data(), v, 4); r.start.ip_version = 4; break;
        case Target::dst4: std::memcpy(r.start.dst.data(), v, 4); break;
        case Target::src6: std::memcpy(r.start.src.data(), v, 16); r.start.ip_version = 6; break;
        case Target::dst6: std::memcpy(r.start.dst.data(), v, 16); break;
        case Target::sport: r.start.sport = uint16_t(get_uint(v, n)); break;
        case Target::dport: r.start.dport = uint16_t(get_uint(v, n)); break;
        case Target::iana_reason: r.iana_end_reason = uint8_t(get_uint(v, n)); break;
        case Target::our_reason:
            r.end.reason = uint8_t(get_uint(v, n));
            have_our_reason = true;
            break;
        case Target::pkts_fwd: r.end.packets[0] = get_uint(v, n); break;
        case Target::bytes_fwd: r.end.bytes[0] = get_uint(v, n); break;
        case Target::pkts_rev: r.end.packets[1] = get_uint(v, n); break;
        case Target::bytes_rev: r.end.bytes[1] = get_uint(v, n); break;
        case Target::loss_cause: r.loss.cause = uint8_t(get_uint(v, n)); break;
        case Target::dropped_pkts: r.loss.packets = get_uint(v, n); break;
        }
    }
    r.packet.dir = (pkt_flags & kFlagReverse) ? 1 : 0;
    r.packet.new_flow = (pkt_flags & kFlagNewFlow) != 0;
    r.len_saturated = (pkt_flags & kFlagLenSaturated) != 0;
    r.packet.replayed = r.start.replayed = r.end.replayed = (pkt_flags & kFlagReplayed) != 0;
    r.has_index = have_index;
    if (!have_our_reason) r.end.reason = our_end_reason(r.iana_end_reason);
    if (t.kind == RecordKind::loss) {
        r.loss.first_ns = r.end.first_ns;
        r.loss.last_ns = r.end.last_ns;
    } else if (t.kind == RecordKind::watermark) {
        r.watermark.ts_ns = r.packet.ts_ns;
    }
    *used = off;
    return true;
}

bool Decoder::parse_data_set(const Template& t, uint16_t tid, const uint8_t* p, size_t len,
                             MessageResult& res, const RecordFn& fn) {
    size_t off = 0;
    // min_record_size >= 1 (no zero-length fields), so the loop always advances. Anything left
    // that is shorter than one record is padding.
    // One record object per set: every record of a template writes the same fields, so the
    // ones it does not write keep their defaults (saves clearing ~150 bytes per record).
    DecodedRecord r;
    r.kind = t.kind;
    r.template_id = tid;
    while (len - off >= t.min_record_size) {
        size_t used = 0;
        if (!decode_record(t, p + off, len - off, &used, r)) {
            // A variable-length record that does not fit: padding only if it is all zeros.
            for (size_t i = off; i < len; ++i)
                if (p[i] != 0) return false;
            return true;
        }
        off += used;
        ++res.data_records;
        if (!t.options && fn) fn(r);
    }
    return true;
}

DecodeStatus Decoder::check_header(const uint8_t* data, size_t len) {
    if (len < kMessageHeaderSize) return DecodeStatus::too_short;
    if (get16(data) != kVersion) return DecodeStatus::bad_version;
    const size_t mlen = get16(data + 2);
    if (mlen < kMessageHeaderSize || mlen > len) return DecodeStatus::bad_length;
    return DecodeStatus::ok;
}

MessageResult Decoder::decode(const uint8_t* data, size_t len, uint64_t session,
                              const RecordFn& fn) {
    MessageResult res;
    res.status = check_header(data, len);
    if (res.status != DecodeStatus::ok) return res;
    const size_t mlen = get16(data + 2);
    res.export_time = get32(data + 4);
    res.sequence = get32(data + 8);
    res.domain_id = get32(data + 12);

    size_t off = kMessageHeaderSize;
    while (off < mlen) {
        if (mlen - off < kSetHeaderSize) {
            res.status = DecodeStatus::bad_set;
            break;
        }
        const uint16_t sid = get16(data + off);
        const size_t slen = get16(data + off + 2);
        if (slen < kSetHeaderSize || slen > mlen - off) {
            res.status = DecodeStatus::bad_set;
            break;
        }
        const uint8_t* body = data + off + kSetHeaderSize;
        const size_t blen = slen - kSetHeaderSize;
        if (sid == kTemplateSetId || sid == kOptionsTemplateSetId) {
            if (!parse_template_set(body, blen, sid == kOptionsTemplateSetId, session,
                                    res.domain_id, res)) {
                res.status = DecodeStatus::bad_template;
                break;
            }
        } else if (sid >= kMinDataSetId) {
            auto it = templates_.find(Key{session, res.domain_id, sid});
            if (it == templates_.end()) {
                ++res.unknown_sets;
                res.unknown_set_bytes += uint32_t(blen);
            } else if (!parse_data_set(it->second, sid, body, blen, res, fn)) {
                res.status = DecodeStatus::bad_data;
                break;
            }
        }  // set IDs 0, 1, 4..255 are reserved: skipped (RFC 7011 §3.3.2)
        off += slen;
    }

    // Sequence: the header counts data records sent before this message (mod 2^32).
    if (sequences_.size() >= kMaxTemplates && !sequences_.count(SeqKey{session, res.domain_id}))
        sequences_.clear();  // hostile stream of domains: forget rather than grow
    SeqState& s = sequences_[SeqKey{session, res.domain_id}];
    if (s.known) {
        res.sequence_checked = true;
        res.sequence_gap = int64_t(int32_t(res.sequence - s.next));
    }
    // After an unknown set or an error we cannot know how many records this message held.
    s.known = res.unknown_sets == 0 && res.status == DecodeStatus::ok;
    s.next = res.sequence + res.data_records;
    return res;
}

}  // namespace angel::ipfix
