// Message layout: 16-byte header, then sets. See docs/protocol.md for the field-by-field view.
#include "common/ipfix_encoder.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace angel::ipfix {

Encoder::Encoder(uint8_t* buf, size_t max_size, uint32_t domain_id)
    : buf_(buf), max_(std::min<size_t>(max_size, 65535)), domain_(domain_id) {
    const size_t need = kMessageHeaderSize +
                        std::max(template_set_size(), kSetHeaderSize + kFlowEndRecordSize +
                                                          kFlowStart6RecordSize);
    if (buf == nullptr || max_ < need)
        throw std::invalid_argument("IPFIX message size too small for the templates");
}

void Encoder::reset() {
    pos_ = kMessageHeaderSize;
    set_start_ = 0;
    set_tid_ = 0;
    records_ = 0;
    templates_ = false;
}

void Encoder::close_set() {
    if (set_start_ == 0) return;
    put16(buf_ + set_start_ + 2, uint16_t(pos_ - set_start_));
    set_start_ = 0;
    set_tid_ = 0;
}

bool Encoder::add_templates() {
    const size_t n = template_set_size();
    if (pos_ + n > max_) return false;
    close_set();
    uint8_t* p = buf_ + pos_;
    put16(p, kTemplateSetId);
    put16(p + 2, uint16_t(n));
    p += kSetHeaderSize;
    for (const auto& t : templates()) {
        put16(p, t.id);
        put16(p + 2, uint16_t(t.fields.size()));
        p += 4;
        for (const auto& f : t.fields) {
            put16(p, uint16_t(f.id | (f.enterprise ? kEnterpriseBit : 0)));
            put16(p + 2, f.length);
            p += 4;
            if (f.enterprise) {
                put32(p, f.enterprise);
                p += 4;
            }
        }
    }
    pos_ += n;
    templates_ = true;
    return true;
}

uint8_t* Encoder::reserve(uint16_t tid, size_t size) {
    if (tid == set_tid_) {
        if (pos_ + size > max_) return nullptr;
    } else {
        if (pos_ + kSetHeaderSize + size > max_) return nullptr;
        close_set();
        set_start_ = pos_;
        set_tid_ = tid;
        put16(buf_ + pos_, tid);
        pos_ += kSetHeaderSize;  // length written by close_set()
    }
    uint8_t* p = buf_ + pos_;
    pos_ += size;
    ++records_;
    return p;
}

bool Encoder::add(const PacketFields& r) {
    uint8_t* p = reserve(kTplPacket, kPacketRecordSize);
    if (!p) return false;
    uint8_t flags = (r.dir ? kFlagReverse : 0) | (r.new_flow ? kFlagNewFlow : 0) | (r.replayed ? kFlagReplayed : 0);
    uint16_t len = uint16_t(r.wire_len);
    if (r.wire_len > 65535) {
        len = 65535;
        flags |= kFlagLenSaturated;
    }
    put32(p, r.flow_id);
    put64(p + 4, ns_to_ntp(r.ts_ns));
    put16(p + 12, len);
    p[14] = r.tcp_flags;
    p[15] = flags;
    put32(p + 16, r.index);
    return true;
}

bool Encoder::add(const FlowStartFields& r) {
    const bool v6 = r.ip_version == 6;
    uint8_t* p = v6 ? reserve(kTplFlowStart6, kFlowStart6RecordSize)
                    : reserve(kTplFlowStart4, kFlowStart4RecordSize);
    if (!p) return false;
    const size_t alen = v6 ? 16 : 4;
    put32(p, r.flow_id);
    put64(p + 4, ns_to_ntp(r.ts_ns));
    p[12] = r.proto;
    p += 13;
    std::memcpy(p, r.src.data(), alen);
    put16(p + alen, r.sport);
    p += alen + 2;
    std::memcpy(p, r.dst.data(), alen);
    put16(p + alen, r.dport);
    p[alen + 2] = r.replayed ? kFlagReplayed : 0;
    return true;
}

bool Encoder::add(const FlowEndFields& r) {
    uint8_t* p = reserve(kTplFlowEnd, kFlowEndRecordSize);
    if (!p) return false;
    put32(p, r.flow_id);
    put64(p + 4, ns_to_ntp(r.first_ns));
    put64(p + 12, ns_to_ntp(r.last_ns));
    p[20] = iana_end_reason(r.reason);
    p[21] = r.reason;
    put64(p + 22, r.packets[0]);
    put64(p + 30, r.bytes[0]);
    put64(p + 38, r.packets[1]);
    put64(p + 46, r.bytes[1]);
    p[54] = r.replayed ? kFlagReplayed : 0;
    return true;
}

bool Encoder::add(const LossFields& r) {
    uint8_t* p = reserve(kTplLoss, kLossRecordSize);
    if (!p) return false;
    p[0] = r.cause;
    put64(p + 1, ns_to_ntp(r.first_ns));
    put64(p + 9, ns_to_ntp(r.last_ns));
    put64(p + 17, r.packets);
    return true;
}

bool Encoder::add(const WatermarkFields& r) {
    uint8_t* p = reserve(kTplWatermark, kWatermarkRecordSize);
    if (!p) return false;
    put64(p, ns_to_ntp(r.ts_ns));
    return true;
}

size_t Encoder::finish(uint32_t export_time_s, uint32_t sequence) {
    close_set();
    put16(buf_, kVersion);
    put16(buf_ + 2, uint16_t(pos_));
    put32(buf_ + 4, export_time_s);
    put32(buf_ + 8, sequence);
    put32(buf_ + 12, domain_);
    return pos_;
}

}  // namespace angel::ipfix
