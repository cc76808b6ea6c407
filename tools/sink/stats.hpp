// What the sink counts for its end-of-run summary: messages, records by kind, flows, packets,
// bytes, sequence gaps, malformed input, what the bounds refused (templates, exporters, flows),
// and the top flows by packets.
#pragma once
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/ipfix_decoder.hpp"
#include "tools/sink/dedup.hpp"
#include "tools/sink/flow_table.hpp"

namespace angel::sink {

struct FlowStat {
    ipfix::FlowStartFields start;
    bool have_start = false;
    uint64_t packets = 0;  // from packet records while live; from flow_end once ended
    uint64_t bytes = 0;
    uint8_t reason = 0;    // 0 = still live
    uint32_t flow_id = 0;
};

class Stats {
public:
    // max_flows: most live flows tracked (FlowTable bound); flow_starts beyond are counted.
    explicit Stats(size_t max_flows = FlowTable::kDefaultMaxSize);
    void on_message(const ipfix::MessageResult& m, size_t bytes);
    // A new exporter (tools/sink/exporters.hpp) was tracked; evicted: one was dropped for it.
    void on_new_exporter(bool evicted) {
        ++exporters_;
        if (evicted) ++exporters_evicted_;
    }
    // Packet records (nearly all records) take this inline path: measured 4% fewer sink
    // instructions than a call per record into stats.cpp.
    void on_record(const ipfix::DecodedRecord& r) {
        if (r.kind != ipfix::RecordKind::packet) return on_flow_record(r);
        ++by_kind_[size_t(ipfix::RecordKind::packet)];
        pkt_bytes_ += r.packet.wire_len;
        // One probe, usually one cache line. Unknown IDs (flow_start lost, or sent before the
        // sink started) are counted above but have no flow.
        if (FlowTable::Slot* f = live_.find(r.packet.flow_id)) {
            ++f->packets;
            f->bytes += r.packet.wire_len;
        }
    }
    void on_malformed_datagram() { ++malformed_; }
    // The de-duplicator whose counts the summary prints (nullptr: --no-dedup).
    void set_dedup(const Dedup* d) { dedup_ = d; }
    // Prints the human-readable summary.
    void print(FILE* f, double seconds) const;

    uint64_t gaps() const { return gaps_; }
    uint64_t lost_records() const { return lost_; }
    uint64_t templates_refused() const { return templates_refused_; }
    uint64_t templates_withdrawn() const { return templates_withdrawn_; }
    uint64_t unknown_sets() const { return unknown_sets_; }
    uint64_t exporters_evicted() const { return exporters_evicted_; }
    uint64_t flows_table_full() const { return flows_table_full_; }
    size_t live_flows() const { return live_.size(); }

private:
    void on_flow_record(const ipfix::DecodedRecord& r);  // every kind but packet
    void offer_top(const FlowStat& f);

    uint64_t datagrams_ = 0, bytes_ = 0, malformed_ = 0, template_records_ = 0;
    uint64_t unknown_sets_ = 0, unknown_set_bytes_ = 0;
    uint64_t templates_refused_ = 0, templates_withdrawn_ = 0;
    uint64_t exporters_ = 0, exporters_evicted_ = 0;
    uint64_t flows_table_full_ = 0;  // flow_starts of new IDs while live_ was full: not stored
    uint64_t by_kind_[ipfix::kRecordKinds] = {};
    uint64_t loss_packets_ = 0;  // sum of the loss records' packet counts
    uint64_t pkt_bytes_ = 0;
    uint64_t end_packets_ = 0, end_bytes_ = 0;
    uint64_t reasons_[6] = {0, 0, 0, 0, 0, 0};
    uint64_t gaps_ = 0, lost_ = 0, backwards_ = 0;
    const Dedup* dedup_ = nullptr;
    FlowTable live_;           // live flows by ID (entered at flow_start, left at flow_end)
    uint64_t inserted_ = 0;    // IDs that entered live_, numbering them for the tie order
    std::vector<FlowStat> top_;  // ended flows, at most kTop, by packets descending
    static constexpr size_t kTop = 10;
};

}  // namespace angel::sink
