// angel-sink: reference IPFIX receiver for the ANGEL flow meter (docs/protocol.md).
// Receives UDP datagrams, decodes them through the templates it has received, prints one JSON
// object per record and a summary at the end.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/ipfix_decoder.hpp"
#include "tools/sink/output.hpp"
#include "tools/sink/receiver.hpp"
#include "tools/sink/stats.hpp"

namespace {

const char kUsage[] =
    "usage: angel-sink --listen HOST:PORT [--json] [--summary] [--idle SECONDS] [--out FILE]\n"
    "                  [--max-flows N] [--no-dedup]\n"
    "\n"
    "Receives the meter's IPFIX export over UDP and decodes it through the templates it\n"
    "receives (docs/protocol.md).\n"
    "\n"
    "  --listen HOST:PORT  address to bind: 127.0.0.1:4739, [::1]:4739, 0.0.0.0:4739;\n"
    "                      port 0 picks a free port (printed on stderr at start)\n"
    "  --json              print one JSON object per record (the default unless --summary)\n"
    "  --summary           print the end-of-run summary on stdout; alone, no per-record output\n"
    "  --idle SECONDS      exit after SECONDS without any datagram (counted from start too)\n"
    "  --out FILE          write the JSON lines to FILE instead of stdout\n"
    "  --max-flows N       most live flows tracked for the summary (default 1000000, about\n"
    "                      130 MB when full; at most 100000000); beyond, flow_starts of new\n"
    "                      flows are counted as \"flow table full\" and not stored\n"
    "  --no-dedup          print and count every record, copies too; by default a record a\n"
    "                      meter replayed after a failover that was already received is\n"
    "                      dropped: packets by (flow ID, idx), flow_start and flow_end once\n"
    "                      per flow life (docs/protocol.md); at most --max-flows flows are\n"
    "                      checked, ended ones for 75 s\n"
    "\n"
    "Output: per record exactly one of\n"
    "  {\"type\":\"packet\",\"flow_id\":N,\"idx\":N,\"ts_ns\":N,\"len\":N,\"dir\":0|1,\"tcp_flags\":N,"
    "\"new\":B}\n"
    "    (idx: the flow's packet index, packets of the flow seen before this one, mod 2^32;\n"
    "    absent when the exporter's template has no angelPacketIndex)\n"
    "  {\"type\":\"flow_start\",\"flow_id\":N,\"ts_ns\":N,\"proto\":N,\"src\":\"A\",\"sport\":N,"
    "\"dst\":\"A\",\"dport\":N}\n"
    "  {\"type\":\"flow_end\",\"flow_id\":N,\"reason\":\"R\",\"first_ns\":N,\"last_ns\":N,"
    "\"packets\":N,\"bytes\":N}\n"
    "Records sent again by a new master carry \"replayed\":true as their last key.\n"
    "On SIGINT/SIGTERM or --idle, a summary (messages, records by type, flows, packets, bytes,\n"
    "sequence gaps, replayed records, duplicates dropped, index gaps, top 10 flows) is printed and the sink exits 0. The summary goes to stdout\n"
    "when stdout carries no JSON (--summary alone, or --out FILE), else to stderr.\n"
    "Sequence gaps (lost datagrams) are also reported on stderr as they happen.\n"
    "Templates are kept per exporter (source address, port and observation domain): at most\n"
    "256 templates and 16384 fields each, at most 64 exporters (the least recently seen is\n"
    "evicted). Template withdrawals (RFC 7011 section 8.1) are honoured.\n";

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
    std::string host, port;
    bool json = false, summary = false;
    double idle_s = 0;
    std::string out;
    size_t max_flows = angel::sink::FlowTable::kDefaultMaxSize;
    bool dedup = true;
};

// Beyond this the table (130 to 190 bytes per flow) would take more than some 13 GB.
constexpr size_t kMaxMaxFlows = 100'000'000;
static_assert(kMaxMaxFlows <= angel::sink::FlowTable::kMaxMaxSize);
// kUsage and docs/angel-sink.1 spell these out.
static_assert(angel::sink::FlowTable::kDefaultMaxSize == 1'000'000 &&
              angel::sink::ExporterTable::kMaxExporters == 64 &&
              angel::sink::ExporterTable::kMaxTemplatesPerExporter == 256 &&
              angel::sink::ExporterTable::kMaxFieldsPerExporter == 16384);

[[noreturn]] void usage_exit(const char* msg) {
    if (msg) std::fprintf(stderr, "angel-sink: %s\n", msg);
    std::fputs(kUsage, stderr);
    std::exit(64);
}

bool split_host_port(const std::string& s, std::string* host, std::string* port) {
    if (!s.empty() && s[0] == '[') {
        const auto rb = s.find(']');
        if (rb == std::string::npos || rb + 1 >= s.size() || s[rb + 1] != ':') return false;
        *host = s.substr(1, rb - 1);
        *port = s.substr(rb + 2);
    } else {
        const auto c = s.rfind(':');
        if (c == std::string::npos) return false;
        *host = s.substr(0, c);
        *port = s.substr(c + 1);
    }
    if (port->empty() || port->find_first_not_of("0123456789") != std::string::npos) return false;
    return std::strtoul(port->c_str(), nullptr, 10) <= 65535;
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage_exit(("missing value for " + a).c_str());
            return argv[++i];
        };
        if (a == "--listen") {
            if (!split_host_port(value(), &o.host, &o.port)) usage_exit("bad --listen HOST:PORT");
        } else if (a == "--json") {
            o.json = true;
        } else if (a == "--no-dedup") {
            o.dedup = false;
        } else if (a == "--summary") {
            o.summary = true;
        } else if (a == "--idle") {
            char* end = nullptr;
            const std::string v = value();
            o.idle_s = std::strtod(v.c_str(), &end);
            if (!end || *end || o.idle_s <= 0) usage_exit("bad --idle SECONDS");
        } else if (a == "--out") {
            o.out = value();
        } else if (a == "--max-flows") {
            const std::string v = value();
            char* end = nullptr;
            const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || v[0] == '-' || !end || *end || n == 0 || n > kMaxMaxFlows)
                usage_exit("bad --max-flows N (1..100000000)");
            o.max_flows = size_t(n);
        } else if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else {
            usage_exit(("unknown argument " + a).c_str());
        }
    }
    if (o.port.empty()) usage_exit("--listen is required");
    if (!o.summary) o.json = true;
    return o;
}

int open_socket(const Options& o, std::string* bound) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(o.host.empty() ? nullptr : o.host.c_str(), o.port.c_str(), &hints, &res);
    if (rc != 0) {
        std::fprintf(stderr, "angel-sink: %s: %s\n", o.host.c_str(), gai_strerror(rc));
        return -1;
    }
    const int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        std::fprintf(stderr, "angel-sink: bind %s:%s: %s\n", o.host.c_str(), o.port.c_str(),
                     std::strerror(errno));
        freeaddrinfo(res);
        if (fd >= 0) close(fd);
        return -1;
    }
    freeaddrinfo(res);
    // A large receive buffer lets the sink ride out bursts of a replay on the same machine.
    // SO_RCVBUFFORCE ignores rmem_max but needs CAP_NET_ADMIN; otherwise ask within the limit.
    int want = 64 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl);
    char h[NI_MAXHOST], p[NI_MAXSERV];
    getnameinfo(reinterpret_cast<sockaddr*>(&ss), sl, h, sizeof h, p, sizeof p,
                NI_NUMERICHOST | NI_NUMERICSERV);
    *bound = ss.ss_family == AF_INET6 ? "[" + std::string(h) + "]:" + p : std::string(h) + ":" + p;
    return fd;
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

std::string peer_text(const sockaddr_storage& ss, socklen_t len) {
    char h[NI_MAXHOST] = "?", p[NI_MAXSERV] = "?";
    getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, h, sizeof h, p, sizeof p,
                NI_NUMERICHOST | NI_NUMERICSERV);
    return std::string(h) + ":" + p;
}

// Reports gaps as they happen without flooding stderr when a burst of datagrams is lost.
class GapReporter {
public:
    void report(const std::string& peer, const angel::ipfix::MessageResult& m, double now) {
        if (!m.sequence_checked || m.sequence_gap == 0) return;
        if (m.sequence_gap < 0) {
            std::fprintf(stderr,
                         "angel-sink: %s domain %" PRIu32 ": sequence went back by %" PRId64
                         " (reordered datagram or exporter reset)\n",
                         peer.c_str(), m.domain_id, -m.sequence_gap);
            return;
        }
        ++pending_gaps_;
        pending_lost_ += uint64_t(m.sequence_gap);
        if (reported_ < 10 || now - last_ >= 1.0) {
            std::fprintf(stderr,
                         "angel-sink: %s domain %" PRIu32 ": sequence gap, %" PRIu64
                         " records lost in %" PRIu64 " gap(s) (now at sequence %" PRIu32 ")\n",
                         peer.c_str(), m.domain_id, pending_lost_, pending_gaps_, m.sequence);
            ++reported_;
            last_ = now;
            pending_gaps_ = pending_lost_ = 0;
        }
    }

private:
    uint64_t reported_ = 0, pending_gaps_ = 0, pending_lost_ = 0;
    double last_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse_args(argc, argv);

    struct sigaction sa{};
    sa.sa_handler = on_signal;  // no SA_RESTART: poll() returns EINTR and the loop sees g_stop
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int out_fd = STDOUT_FILENO;
    if (!opt.out.empty()) {
        out_fd = open(opt.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0) {
            std::fprintf(stderr, "angel-sink: %s: %s\n", opt.out.c_str(), std::strerror(errno));
            return 1;
        }
    }
    std::string bound;
    const int fd = open_socket(opt, &bound);
    if (fd < 0) return 1;
    int rcvbuf = 0;
    socklen_t rl = sizeof rcvbuf;
    getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &rl);
    std::fprintf(stderr, "angel-sink: listening on %s (receive buffer %d bytes)\n", bound.c_str(),
                 rcvbuf);

    angel::sink::Output out(out_fd);
    angel::sink::Stats stats(opt.max_flows);
    angel::sink::Receiver receiver(stats);
    GapReporter gaps;

    constexpr unsigned kBatch = 64;
    constexpr size_t kDgram = 65536;
    std::vector<uint8_t> bufs(size_t(kBatch) * kDgram);
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    sockaddr_storage peers[kBatch];

    const double start = now_s();
    double last_data = start;
    bool drained_flush_pending = false;
    uint64_t malformed = 0;
    angel::sink::Dedup dedup(opt.max_flows);
    if (opt.dedup) stats.set_dedup(&dedup);
    double batch_now = start;  // receive time of the current batch, for the dedup's hold
    auto on_rec = [&](const angel::ipfix::DecodedRecord& r) {
        if (opt.dedup && !dedup.admit(r, batch_now)) return;
        stats.on_record(r);
        if (opt.json) out.record(r);
    };
    const angel::ipfix::Decoder::RecordFn fn = on_rec;

    // Reads what the socket holds, batch by batch, until it is empty or `until` (now_s()) has
    // passed: the bound keeps a sender that never stops from holding the loop (or the exit).
    auto receive_queued = [&](double until) {
        for (;;) {
            for (unsigned i = 0; i < kBatch; ++i) {
                iov[i] = {bufs.data() + size_t(i) * kDgram, kDgram};
                msgs[i].msg_hdr = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = &peers[i];
                msgs[i].msg_hdr.msg_namelen = sizeof peers[i];
                msgs[i].msg_len = 0;
            }
            const int n = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
            if (n <= 0) return;  // EAGAIN: drained (other errors: retry after poll)
            const double now = now_s();
            last_data = now;
            batch_now = now;
            for (int i = 0; i < n; ++i) {
                const socklen_t pl = msgs[i].msg_hdr.msg_namelen;
                const auto res = receiver.process(bufs.data() + size_t(i) * kDgram, msgs[i].msg_len,
                                                  reinterpret_cast<const sockaddr*>(&peers[i]), pl,
                                                  fn);
                // Reported, but a flood of garbage must not flood stderr: the first 20, then
                // every 1000th (the summary has the total).
                if (res.status != angel::ipfix::DecodeStatus::ok &&
                    (++malformed < 20 || malformed % 1000 == 0))
                    std::fprintf(stderr, "angel-sink: malformed message #%" PRIu64 " from %s: %s\n",
                                 malformed, peer_text(peers[i], pl).c_str(),
                                 angel::ipfix::decode_status_name(res.status));
                if (res.sequence_checked && res.sequence_gap != 0)
                    gaps.report(peer_text(peers[i], pl), res, now);
            }
            drained_flush_pending = true;
            if (unsigned(n) < kBatch || now >= until) return;
        }
    };

    while (!g_stop) {
        // Short wait while output is pending (flush on a 5 ms lull), else up to 200 ms so that
        // signals and --idle are noticed promptly.
        pollfd pfd{fd, POLLIN, 0};
        const int pr = poll(&pfd, 1, drained_flush_pending ? 5 : 200);
        if (pr < 0 && errno != EINTR) {
            std::perror("angel-sink: poll");
            break;
        }
        if (pr <= 0) {
            if (drained_flush_pending) {
                out.flush();
                drained_flush_pending = false;
            }
            if (opt.idle_s > 0 && now_s() - last_data >= opt.idle_s) break;
            continue;
        }
        receive_queued(now_s() + 1.0);
    }
    // A signal stops the loop, not the reading: what the kernel has already queued for us is
    // part of what was sent before the stop, so it is read (for at most 2 s) before the summary.
    if (g_stop) receive_queued(now_s() + 2.0);
    out.flush();
    const bool summary_to_stdout = !opt.json || out_fd != STDOUT_FILENO;
    stats.print(summary_to_stdout ? stdout : stderr, now_s() - start);
    std::fflush(stdout);
    if (out_fd != STDOUT_FILENO) close(out_fd);
    close(fd);
    return 0;
}
