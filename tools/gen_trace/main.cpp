// angel-gen-trace: writes the deterministic synthetic trace of trace_generator.hpp to a pcap
// file (Ethernet, nanosecond timestamps) and prints a one-line summary to stderr.
#include <pcap/pcap.h>

#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "tools/gen_trace/trace_generator.hpp"

namespace {

constexpr int kExitUsage = 64;  // EX_USAGE

void usage(FILE* to) {
    std::fprintf(to,
                 "usage: angel-gen-trace --out FILE [--packets N] [--flows M] [--seed S]\n"
                 "                       [--snaplen L] [--pps R]\n"
                 "  --packets N   packets in the trace (default 2000000)\n"
                 "  --flows M     flows (default 50000; at most N)\n"
                 "  --seed S      PRNG seed (default 1); same options, same bytes\n"
                 "  --snaplen L   bytes stored per packet (default 128, 1..65535)\n"
                 "  --pps R       packets per second of trace time (default 1000000)\n"
                 "  --out FILE    pcap file to write ('-' for stdout)\n"
                 "Client ports are spread over Linux's default ephemeral range, 32768-60999\n"
                 "(net.ipv4.ip_local_port_range), pseudo-randomly per flow from the seed; no two\n"
                 "flows share a 5-tuple.\n");
}

bool parse_u64(std::string_view s, uint64_t min, uint64_t max, uint64_t& out) {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || v < min || v > max) return false;
    out = v;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    angel::gen::TraceOptions opt;
    std::string out;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "angel-gen-trace: %s needs a value\n", argv[i]);
            usage(stderr);
            return kExitUsage;
        }
        std::string_view v = argv[++i];
        uint64_t n = 0;
        bool ok = true;
        if (a == "--packets") {
            ok = parse_u64(v, 0, UINT32_MAX, n);
            opt.packets = n;
        } else if (a == "--flows") {
            ok = parse_u64(v, 0, UINT32_MAX, n);
            opt.flows = static_cast<uint32_t>(n);
        } else if (a == "--seed") {
            ok = parse_u64(v, 0, UINT64_MAX, n);
            opt.seed = n;
        } else if (a == "--snaplen") {
            ok = parse_u64(v, 1, 65535, n);
            opt.snaplen = static_cast<uint32_t>(n);
        } else if (a == "--pps") {
            ok = parse_u64(v, 1, 1'000'000'000, n);
            opt.pps = n;
        } else if (a == "--out") {
            out = v;
        } else {
            std::fprintf(stderr, "angel-gen-trace: unknown option %s\n", argv[i - 1]);
            usage(stderr);
            return kExitUsage;
        }
        if (!ok) {
            std::fprintf(stderr, "angel-gen-trace: bad value for %s: '%s'\n", argv[i - 1],
                         argv[i]);
            return kExitUsage;
        }
    }
    if (opt.flows == 0 && opt.packets > 0) {
        std::fprintf(stderr, "angel-gen-trace: --flows must be at least 1\n");
        return kExitUsage;
    }
    if (out.empty()) {
        std::fprintf(stderr, "angel-gen-trace: --out FILE is required\n");
        usage(stderr);
        return kExitUsage;
    }

    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<pcap_t, decltype(&pcap_close)> pcap(
        pcap_open_dead_with_tstamp_precision(DLT_EN10MB, static_cast<int>(opt.snaplen),
                                             PCAP_TSTAMP_PRECISION_NANO),
        &pcap_close);
    if (!pcap) {
        std::fprintf(stderr, "angel-gen-trace: pcap_open_dead failed\n");
        return 1;
    }
    pcap_dumper_t* dumper = pcap_dump_open(pcap.get(), out.c_str());
    if (!dumper) {
        std::fprintf(stderr, "angel-gen-trace: %s: %s\n", out.c_str(), pcap_geterr(pcap.get()));
        return 1;
    }

    angel::gen::TraceGenerator gen(opt);
    auto frame = std::make_unique<angel::gen::Frame>();
    while (gen.next(*frame)) {
        pcap_pkthdr hdr{};
        hdr.ts.tv_sec = static_cast<time_t>(frame->ts_ns / 1'000'000'000u);
        // With nanosecond precision libpcap takes the sub-second part in nanoseconds here.
        hdr.ts.tv_usec = static_cast<suseconds_t>(frame->ts_ns % 1'000'000'000u);
        hdr.caplen = frame->caplen;
        hdr.len = frame->wire_len;
        pcap_dump(reinterpret_cast<u_char*>(dumper), &hdr, frame->bytes);
    }
    const bool write_failed = pcap_dump_flush(dumper) != 0;
    pcap_dump_close(dumper);
    if (write_failed) {
        std::fprintf(stderr, "angel-gen-trace: writing %s failed\n", out.c_str());
        return 1;
    }

    const auto& s = gen.summary();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr,
                 "angel-gen-trace: %" PRIu64 " packets, %" PRIu64 " flows (%" PRIu64 " tcp, %" PRIu64
                 " udp, %" PRIu64 " ipv6, %" PRIu64 " vlan), %" PRIu64 " wire bytes, %" PRIu64
                 " captured bytes, seed %" PRIu64 " -> %s in %.2f s\n",
                 s.packets, s.flows, s.tcp_flows, s.udp_flows, s.ipv6_flows, s.vlan_flows,
                 s.wire_bytes, s.captured_bytes, opt.seed, out.c_str(), secs);
    return 0;
}
