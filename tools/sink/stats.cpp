// Flow accounting for the summary. Flow IDs are unique only among live flows, so an ended flow
// leaves the live table (and competes for the top list) before its ID can be reused.
#include "tools/sink/stats.hpp"

#include <algorithm>
#include <cinttypes>

#include "tools/sink/exporters.hpp"
#include "tools/sink/output.hpp"

namespace angel::sink {

// Room for 32k live flows before the first doubling.
Stats::Stats(size_t max_flows) : live_(1 << 16, max_flows) {}

void Stats::on_message(const ipfix::MessageResult& m, size_t bytes) {
    ++datagrams_;
    bytes_ += bytes;
    if (m.status != ipfix::DecodeStatus::ok) ++malformed_;
    template_records_ += m.templates;
    unknown_sets_ += m.unknown_sets;
    unknown_set_bytes_ += m.unknown_set_bytes;
    templates_refused_ += m.templates_refused;
    templates_withdrawn_ += m.templates_withdrawn;
    if (m.sequence_checked && m.sequence_gap > 0) {
        ++gaps_;
        lost_ += uint64_t(m.sequence_gap);
    } else if (m.sequence_checked && m.sequence_gap < 0) {
        ++backwards_;
    }
}

void Stats::offer_top(const FlowStat& f) {
    if (top_.size() == kTop && f.packets <= top_.back().packets) return;
    auto it = std::upper_bound(top_.begin(), top_.end(), f, [](const FlowStat& a, const FlowStat& b) {
        return a.packets > b.packets;
    });
    top_.insert(it, f);
    if (top_.size() > kTop) top_.pop_back();
}

void Stats::on_flow_record(const ipfix::DecodedRecord& r) {
    ++by_kind_[size_t(r.kind)];
    switch (r.kind) {
    case ipfix::RecordKind::packet: break;  // on_record's inline path
    case ipfix::RecordKind::flow_start: {
        // A repeated start for a live ID resets its counts but keeps its place in the tie order.
        bool inserted = false;
        FlowTable::Slot* f = live_.insert(r.start.flow_id, &inserted);
        if (!f) {  // table full: its packets count in the totals only, its end has no addresses
            ++flows_table_full_;
            break;
        }
        f->packets = f->bytes = 0;
        FlowCold& c = live_.cold(*f);
        c.start = r.start;
        if (inserted) c.order = ++inserted_;
        break;
    }
    case ipfix::RecordKind::flow_end: {
        const uint64_t p = r.end.packets[0] + r.end.packets[1];
        const uint64_t b = r.end.bytes[0] + r.end.bytes[1];
        end_packets_ += p;
        end_bytes_ += b;
        ++reasons_[r.end.reason < 6 ? r.end.reason : 0];
        FlowStat f;  // unknown ID (start lost): no addresses
        if (FlowTable::Slot* s = live_.find(r.end.flow_id)) {
            f.start = live_.cold(*s).start;
            f.have_start = true;
            live_.erase_slot(s);  // before the ID can be reused
        }
        f.flow_id = r.end.flow_id;
        f.packets = p;
        f.bytes = b;
        f.reason = r.end.reason ? r.end.reason : 255;
        offer_top(f);
        break;
    }
    case ipfix::RecordKind::loss: loss_packets_ += r.loss.packets; break;
    case ipfix::RecordKind::watermark: break;
    case ipfix::RecordKind::other: break;
    }
}

void Stats::print(FILE* out, double seconds) const {
    uint64_t records = 0;
    for (const uint64_t n : by_kind_) records += n;
    const uint64_t loss = by_kind_[size_t(ipfix::RecordKind::loss)];
    const uint64_t watermarks = by_kind_[size_t(ipfix::RecordKind::watermark)];
    std::fprintf(out, "\n=== angel-sink summary (%.1f s) ===\n", seconds);
    std::fprintf(out, "IPFIX messages   %" PRIu64 " (%" PRIu64 " bytes), malformed %" PRIu64
                      ", template records %" PRIu64 "\n",
                 datagrams_, bytes_, malformed_, template_records_);
    std::fprintf(out, "records          %" PRIu64 ": packet %" PRIu64 ", flow_start %" PRIu64
                      ", flow_end %" PRIu64 ", other %" PRIu64,
                 records, by_kind_[1], by_kind_[2], by_kind_[3], by_kind_[0]);
    // Only when present, so that a summary without them reads as before they existed.
    if (loss || watermarks)
        std::fprintf(out, ", loss %" PRIu64 " (%" PRIu64 " packets), watermark %" PRIu64, loss,
                     loss_packets_, watermarks);
    std::fprintf(out, "\n");
    if (unknown_sets_)
        std::fprintf(out, "unknown template %" PRIu64 " data sets (%" PRIu64
                          " bytes) skipped: their templates never arrived\n",
                     unknown_sets_, unknown_set_bytes_);
    // The bounds' lines appear only when they mattered (the usual summary stays as it was).
    if (templates_withdrawn_ || templates_refused_)
        std::fprintf(out, "templates        %" PRIu64 " withdrawn, %" PRIu64
                          " refused (limit %zu templates, %zu fields per exporter)\n",
                     templates_withdrawn_, templates_refused_,
                     ExporterTable::kMaxTemplatesPerExporter, ExporterTable::kMaxFieldsPerExporter);
    if (exporters_ > 1)
        std::fprintf(out, "exporters        %" PRIu64 " seen, %" PRIu64 " evicted (limit %zu"
                          " tracked, the least recently seen evicted)\n",
                     exporters_, exporters_evicted_, ExporterTable::kMaxExporters);
    if (flows_table_full_)
        std::fprintf(out, "flow table full  %" PRIu64 " flow_start records of new flows not stored"
                          " (limit %zu live flows)\n",
                     flows_table_full_, live_.max_size());
    std::fprintf(out, "flows            %" PRIu64 " started, %" PRIu64 " ended (idle %" PRIu64
                      ", tcp_close %" PRIu64 ", end_of_input %" PRIu64 ", shutdown %" PRIu64
                      ", evicted %" PRIu64 "), %zu still open\n",
                 by_kind_[2], by_kind_[3], reasons_[1], reasons_[2], reasons_[3], reasons_[4],
                 reasons_[5], live_.size());
    std::fprintf(out, "packets          %" PRIu64 " packet records, %" PRIu64 " bytes on the wire\n",
                 by_kind_[1], pkt_bytes_);
    std::fprintf(out, "ended flows      %" PRIu64 " packets, %" PRIu64 " bytes\n", end_packets_,
                 end_bytes_);
    std::fprintf(out, "sequence         %" PRIu64 " gaps, %" PRIu64 " records lost%s\n", gaps_,
                 lost_, backwards_ ? " (plus out-of-order/restarted messages)" : "");
    if (dedup_)
        std::fprintf(out, "replay           %" PRIu64 " replayed records, %" PRIu64 " duplicates dropped, %" PRIu64
                          " index gaps (packets missing in %" PRIu64 " flows)%s\n",
                     dedup_->replayed(), dedup_->duplicates(), dedup_->index_gaps(), dedup_->flows_with_gaps(),
                     dedup_->untracked() ? ", some flows not checked (table full)" : "");

    // Top flows: ended ones from the list, live ones from their packet records. Equal counts
    // keep the order the std::unordered_map version printed (for up to 16 candidates its sort
    // was stable): ended flows first, in list order, then live flows, the most recently
    // inserted first (its iteration order, bucket collisions aside). Made explicit here, so it
    // is deterministic for any number of flows.
    struct Candidate {
        FlowStat f;
        uint64_t rank;  // smaller first among equal packet counts
    };
    std::vector<Candidate> cand;
    cand.reserve(top_.size() + live_.size());
    for (size_t i = 0; i < top_.size(); ++i) cand.push_back({top_[i], i});
    live_.for_each([&](const FlowTable::Slot& s, const FlowCold& c) {
        FlowStat f;
        f.start = c.start;
        f.have_start = true;
        f.packets = s.packets;
        f.bytes = s.bytes;
        f.flow_id = s.id;
        cand.push_back({f, ~uint64_t(0) - c.order});  // > any list index: order << 2^64
    });
    const size_t n = std::min(cand.size(), kTop);
    std::partial_sort(cand.begin(), cand.begin() + ptrdiff_t(n), cand.end(),
                      [](const Candidate& a, const Candidate& b) {
                          return a.f.packets != b.f.packets ? a.f.packets > b.f.packets
                                                            : a.rank < b.rank;
                      });
    std::vector<FlowStat> all;
    for (size_t i = 0; i < n; ++i) all.push_back(cand[i].f);
    if (all.empty()) return;
    std::fprintf(out, "top %zu flows by packets:\n", all.size());
    std::fprintf(out, "  %-10s %-5s %-47s %-47s %10s %12s  %s\n", "flow_id", "proto", "source",
                 "destination", "packets", "bytes", "end");
    for (const auto& f : all) {
        char src[80] = "?", dst[80] = "?";
        if (f.have_start) {
            char a[64];
            format_addr(f.start.ip_version, f.start.src, a);
            std::snprintf(src, sizeof src, f.start.ip_version == 6 ? "[%s]:%u" : "%s:%u", a,
                          unsigned(f.start.sport));
            format_addr(f.start.ip_version, f.start.dst, a);
            std::snprintf(dst, sizeof dst, f.start.ip_version == 6 ? "[%s]:%u" : "%s:%u", a,
                          unsigned(f.start.dport));
        }
        std::fprintf(out, "  %-10u %-5u %-47s %-47s %10" PRIu64 " %12" PRIu64 "  %s\n",
                     f.flow_id, unsigned(f.start.proto), src, dst, f.packets, f.bytes,
                     f.reason == 0 ? "(open)" : ipfix::end_reason_text(f.reason));
    }
}

}  // namespace angel::sink
