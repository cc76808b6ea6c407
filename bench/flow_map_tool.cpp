// FlowMap memory and per-packet cost (docs/benchmarks.md, "FlowMap memory").
//
//   flow_map_bench memory [FLOWS]   real segment (Segment::create, flow.max_flows = 1,000,000),
//                                   filled by procd's flow path with FLOWS distinct flows of a
//                                   generated trace (default 1,000,000); prints the FlowMap's
//                                   bytes by its layout (FlowMap::bytes_for) and as allocated
//                                   in /dev/shm (the file's st_blocks less the rest of the
//                                   segment), each divided by the live flows.
//   flow_map_bench cpu [PACKETS FLOWS]  the flow path alone (key, hash, lookup, update) over
//                                   pre-parsed packets of a generated trace, in procd's batches;
//                                   run under callgrind with --toggle-collect='*run_packets*'
//                                   to count its instructions per packet.
// The flow path is procd's: FlowTracker::lookup (bucket prefetch), prefetch_entry a few
// packets ahead, FlowTracker::packet, batches of 256, grow_flow_map as procd does it.
#include <pcap/dlt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/packet/parser.hpp"
#include "procd/flow_tracker.hpp"
#include "shm/segment.hpp"
#include "tools/gen_trace/trace_generator.hpp"

namespace {

using namespace angel;

constexpr size_t kBatch = 256;   // procd's batch (procd/main.cpp)
constexpr size_t kAhead = 4;     // procd's entry prefetch distance
constexpr uint32_t kMaxFlows = 1'000'000;

struct NullSink : RecordSink {
    uint64_t records = 0, events = 0;
    void emit(const Record&) override { ++records; }
    void event(const Record&) override { ++events; }
    void publish() override {}
};

struct Packet {
    ParsedPacket p;
    uint64_t ts_ns;
    uint32_t wire_len;
};

// The trace's IP packets, parsed once (the parser is measured by parse_bench).
std::vector<Packet> parsed_trace(uint64_t packets, uint32_t flows) {
    gen::TraceOptions opt;
    opt.packets = packets;
    opt.flows = flows;
    gen::TraceGenerator g(opt);
    auto f = std::make_unique<gen::Frame>();
    PacketParser parser;
    std::vector<Packet> out;
    out.reserve(packets);
    Packet pk{};
    while (g.next(*f)) {
        if (parser.parse(DLT_EN10MB, f->bytes, f->caplen, f->ts_ns, pk.p) != ParseStatus::ok) continue;
        pk.ts_ns = f->ts_ns;
        pk.wire_len = f->wire_len;
        out.push_back(pk);
    }
    return out;
}

// Timeouts longer than the trace: every flow stays live, so the map holds them all.
constexpr FlowTimeouts kKeepAll{3600ull * 1'000'000'000ull, 3600ull * 1'000'000'000ull};
const FlowIdKey kKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

// procd's per-batch flow work; `grow` is called once per batch (procd's grow_flow_map).
template <class Grow>
__attribute__((noinline)) void run_packets(FlowTracker& t, const std::vector<Packet>& pks, Grow&& grow) {
    static FlowTracker::Lookup look[kBatch];
    uint64_t pos = 64;
    for (size_t b = 0; b < pks.size(); b += kBatch) {
        const size_t m = std::min(kBatch, pks.size() - b);
        for (size_t i = 0; i < m; ++i) t.lookup(pks[b + i].p, look[i]);

        for (size_t i = 0; i < m; ++i) {
            if (i + kAhead < m) t.prefetch_entry(look[i + kAhead]);
            const Packet& pk = pks[b + i];
            t.packet(pk.p, look[i], pk.ts_ns, pk.wire_len, pos);
            pos += 64 + pk.wire_len;  // ring positions grow by each slot's size
        }
        grow();
        t.release_ended();
    }
}

// Bytes of the FlowMap's range [off, off + len) that /dev/shm holds memory for: the file's
// allocated blocks (st_blocks, which count posix_fallocate'd pages too) less the rest of the
// segment, which Segment::create() reserves whole (header and rings before the map, the page
// padding after it).
uint64_t allocated_bytes(int fd, uint64_t off, uint64_t len, uint64_t total) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return 0;
    return static_cast<uint64_t>(st.st_blocks) * 512 - off - (total - off - len);
}

int memory(uint32_t flows) {
    const uint32_t capacity = kMaxFlows + kFlowMapSpare;
    const size_t layout_bytes = FlowMap::bytes_for(capacity);
    std::printf("FlowEntry: %zu bytes; flow.max_flows %u -> %u entries (spare %u)\n", sizeof(FlowEntry), kMaxFlows,
                capacity, kFlowMapSpare);
    std::printf("layout: FlowMap::bytes_for(%u) = %zu bytes = %.2f bytes per flow at %u flows\n", capacity,
                layout_bytes, static_cast<double>(layout_bytes) / kMaxFlows, kMaxFlows);

    SegmentSizes sz;
    sz.max_flows = kMaxFlows;
    sz.packet_ring_bytes = 1 << 20;
    sz.record_ring_bytes = 1 << 20;
    sz.event_ring_bytes = 1 << 20;
    const std::string instance = "flowmapbench-" + std::to_string(getpid());
    auto seg = Segment::create(instance, sz);
    const SegmentLayout& l = seg->layout();
    std::printf("segment: FlowMap at offset %llu, %llu bytes; allocated before filling: %llu bytes\n",
                static_cast<unsigned long long>(l.flow_map_offset), static_cast<unsigned long long>(l.flow_map_bytes),
                static_cast<unsigned long long>(allocated_bytes(seg->data_fd(), l.flow_map_offset, l.flow_map_bytes, l.total_size)));

    const auto t0 = std::chrono::steady_clock::now();
    // One packet per flow is enough to create it; the trace's own mix (TCP needs 5) decides
    // how many packets make FLOWS flows.
    const std::vector<Packet> pks = parsed_trace(uint64_t{flows} * 3, flows);
    FlowMap map = seg->flow_map();
    map.recover({&flow_bucket_hash, kKey});
    NullSink sink;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    FlowTracker t(map, kKey, kKeepAll, sink, ctr, kMaxFlows);
    auto grow = [&] {
        const uint32_t r = map.reserved();
        if (r >= map.capacity() || uint64_t{map.high_water()} + kFlowReserveStep / 2 < r) return;
        seg->grow_flow_map(static_cast<uint32_t>(std::min<uint64_t>(map.capacity(), uint64_t{r} + kFlowReserveStep)));
    };
    grow();
    run_packets(t, pks, grow);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const uint64_t alloc = allocated_bytes(seg->data_fd(), l.flow_map_offset, l.flow_map_bytes, l.total_size);
    const uint32_t live = map.live();
    std::printf("filled in %.1f s: %zu packets, %u live flows, %llu evicted; high water %u, reserved %u entries\n", secs,
                pks.size(), live, static_cast<unsigned long long>(ctr[procd_flows_evicted].load()), map.high_water(),
                map.reserved());
    std::printf("allocated in /dev/shm for the FlowMap: %llu bytes = %.2f bytes per live flow\n",
                static_cast<unsigned long long>(alloc), live ? static_cast<double>(alloc) / live : 0.0);
    Segment::remove(instance);
    return 0;
}

int cpu(uint64_t packets, uint32_t flows) {
    const std::vector<Packet> pks = parsed_trace(packets, flows);
    const uint32_t capacity = kMaxFlows + kFlowMapSpare;
    const size_t bytes = FlowMap::bytes_for(capacity);
    std::unique_ptr<uint8_t, decltype(&std::free)> mem(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) & ~size_t{63})),
                                                      &std::free);
    FlowMap::format(mem.get(), capacity);
    FlowMap map(mem.get());
    NullSink sink;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    // procd's default timeouts: TCP flows of the trace close and end as in a replay.
    FlowTracker t(map, kKey, FlowTimeouts{}, sink, ctr, kMaxFlows);
    const auto t0 = std::chrono::steady_clock::now();
    run_packets(t, pks, [] {});
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%zu IP packets, %u live flows at the end, %llu records: %.1f ns per packet\n", pks.size(), map.live(),
                static_cast<unsigned long long>(sink.records), secs * 1e9 / static_cast<double>(pks.size()));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "memory";
    try {
        if (mode == "memory") return memory(argc > 2 ? static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10)) : kMaxFlows);
        if (mode == "cpu")
            return cpu(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2'000'000,
                       argc > 3 ? static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) : 50'000);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "flow_map_bench: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: flow_map_bench [memory [FLOWS] | cpu [PACKETS FLOWS]]\n");
    return 64;
}
