// Per-packet cost of what procd does before touching the FlowMap: parse the frame, build the
// canonical flow key, compute the flow ID. Frames come from the deterministic trace generator
// (same mix as angel-gen-trace's default trace), pre-generated into one contiguous buffer so
// the loop measures the parser and not the generator.
#include <benchmark/benchmark.h>
#include <pcap/dlt.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "common/flow_key.hpp"
#include "common/packet/parser.hpp"
#include "tools/gen_trace/trace_generator.hpp"

namespace {

struct FrameRef {
    uint64_t ts_ns;
    uint32_t offset;
    uint32_t caplen;
};

// 1M frames of the default trace's mix (packets/flows ratio of 40), snaplen 128.
struct Corpus {
    std::vector<uint8_t> bytes;
    std::vector<FrameRef> frames;

    Corpus() {
        angel::gen::TraceOptions opt;
        opt.packets = 1'000'000;
        opt.flows = 25'000;
        angel::gen::TraceGenerator gen(opt);
        auto f = std::make_unique<angel::gen::Frame>();
        bytes.reserve(opt.packets * 100);
        frames.reserve(opt.packets);
        while (gen.next(*f)) {
            frames.push_back({f->ts_ns, static_cast<uint32_t>(bytes.size()), f->caplen});
            bytes.insert(bytes.end(), f->bytes, f->bytes + f->caplen);
        }
    }
};

const Corpus& corpus() {
    static const Corpus c;
    return c;
}

const angel::FlowIdKey kKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

void set_per_packet_counters(benchmark::State& state, uint64_t failures) {
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
    // Inverted rate: seconds per packet, printed with an SI prefix (e.g. "40n" = 40 ns).
    state.counters["per_packet"] = benchmark::Counter(
        static_cast<double>(state.iterations()),
        benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.counters["parse_failures"] = static_cast<double>(failures);
}

// parse + key + ID: the number reported for the issue.
void BM_ParseKeyId(benchmark::State& state) {
    const Corpus& c = corpus();
    angel::PacketParser parser;
    angel::ParsedPacket pkt;
    size_t i = 0;
    uint64_t failures = 0;
    uint32_t acc = 0;
    for (auto _ : state) {
        const FrameRef& fr = c.frames[i];
        if (++i == c.frames.size()) i = 0;
        if (parser.parse(DLT_EN10MB, c.bytes.data() + fr.offset, fr.caplen, fr.ts_ns, pkt) !=
            angel::ParseStatus::ok) {
            ++failures;
            continue;
        }
        bool reversed = false;
        const angel::FlowKey key = angel::make_flow_key(pkt, &reversed);
        acc += angel::flow_id_hash(key, kKey) + reversed;
        benchmark::DoNotOptimize(acc);
    }
    set_per_packet_counters(state, failures);
}
BENCHMARK(BM_ParseKeyId);

// The parser alone, to split the cost.
void BM_ParseOnly(benchmark::State& state) {
    const Corpus& c = corpus();
    angel::PacketParser parser;
    angel::ParsedPacket pkt;
    size_t i = 0;
    uint64_t failures = 0;
    for (auto _ : state) {
        const FrameRef& fr = c.frames[i];
        if (++i == c.frames.size()) i = 0;
        failures += parser.parse(DLT_EN10MB, c.bytes.data() + fr.offset, fr.caplen, fr.ts_ns,
                                 pkt) != angel::ParseStatus::ok;
        benchmark::DoNotOptimize(pkt);
    }
    set_per_packet_counters(state, failures);
}
BENCHMARK(BM_ParseOnly);

// Key + ID alone, on packets parsed beforehand.
void BM_KeyIdOnly(benchmark::State& state) {
    const Corpus& c = corpus();
    static const std::vector<angel::ParsedPacket> parsed = [&c] {
        angel::PacketParser parser;
        std::vector<angel::ParsedPacket> v(c.frames.size());
        for (size_t k = 0; k < c.frames.size(); ++k)
            parser.parse(DLT_EN10MB, c.bytes.data() + c.frames[k].offset, c.frames[k].caplen,
                         c.frames[k].ts_ns, v[k]);
        return v;
    }();
    size_t i = 0;
    uint32_t acc = 0;
    for (auto _ : state) {
        const angel::ParsedPacket& pkt = parsed[i];
        if (++i == parsed.size()) i = 0;
        bool reversed = false;
        acc += angel::flow_id_hash(angel::make_flow_key(pkt, &reversed), kKey) + reversed;
        benchmark::DoNotOptimize(acc);
    }
    set_per_packet_counters(state, 0);
}
BENCHMARK(BM_KeyIdOnly);

}  // namespace

BENCHMARK_MAIN();
