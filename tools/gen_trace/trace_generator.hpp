// Deterministic synthetic trace: many interleaved TCP and UDP flows over IPv4 and IPv6, some
// VLAN-tagged, IMIX frame sizes, valid checksums. Header-only so that benchmarks can generate
// frames in memory; tools/gen_trace/main.cpp writes them to a pcap file.
//
// Determinism: one xoshiro256** stream seeded through splitmix64, integer arithmetic only
// (no floating point, no <random> distributions), and a merge whose order is a strict total
// order. The same options give the same bytes on every run, compiler and standard library.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <queue>
#include <utility>
#include <vector>

namespace angel::gen {

// Largest frame the generator makes: 1500-byte IMIX frame (the VLAN tag fits inside it).
inline constexpr uint32_t kMaxFrameLen = 1518;

// Client ports: Linux's default ephemeral range (net.ipv4.ip_local_port_range = 32768 60999),
// the one most clients on the Internet pick from (IANA's 49152-65535 is what Windows and macOS use).
inline constexpr uint32_t kEphemeralFirst = 32768, kEphemeralLast = 60999;
inline constexpr uint32_t kEphemeralPorts = kEphemeralLast - kEphemeralFirst + 1;  // 28232

struct Frame {
    uint64_t ts_ns = 0;     // trace time, nanoseconds since the Unix epoch
    uint32_t wire_len = 0;  // length on the wire (pcap "len")
    uint32_t caplen = 0;    // bytes stored below: min(wire_len, snaplen)
    uint8_t bytes[kMaxFrameLen];
};

struct TraceOptions {
    uint64_t packets = 2'000'000;
    uint32_t flows = 50'000;
    uint64_t seed = 1;
    uint32_t snaplen = 128;
    uint64_t pps = 1'000'000;  // timestamp spacing: 1e9 / pps nanoseconds
    uint64_t start_ns = 1'700'000'000ULL * 1'000'000'000ULL;  // 2023-11-14T22:13:20Z
};

struct TraceSummary {
    uint64_t packets = 0, wire_bytes = 0, captured_bytes = 0;
    uint64_t flows = 0, tcp_flows = 0, udp_flows = 0, ipv6_flows = 0, vlan_flows = 0;
};

class SplitMix64 {
public:
    explicit SplitMix64(uint64_t seed) : s_(seed) {}
    uint64_t next() {
        uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    uint64_t s_;
};

// xoshiro256** (Blackman and Vigna), seeded from splitmix64 as its authors recommend.
class Xoshiro256 {
public:
    explicit Xoshiro256(uint64_t seed) {
        SplitMix64 sm(seed);
        for (auto& w : s_) w = sm.next();
    }
    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform-enough integer in [0, n) for n < 2^32 (multiply-shift; bias < 2^-32).
    uint32_t below(uint32_t n) { return static_cast<uint32_t>(((next() >> 32) * n) >> 32); }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t s_[4];
};

namespace detail {

inline void put16(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t* p, uint32_t v) {
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

// Internet checksum (RFC 1071) accumulation over big-endian 16-bit words.
inline uint64_t sum16(const uint8_t* p, size_t n, uint64_t acc = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) acc += uint32_t{p[i]} << 8 | p[i + 1];
    if (n & 1) acc += uint32_t{p[n - 1]} << 8;
    return acc;
}
inline uint16_t fold(uint64_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<uint16_t>(~acc & 0xffff);
}

// The k-th port host `host` uses: a keyed pseudo-random permutation of the ephemeral range
// per host (a 4-round Feistel network on 16 bits, cycle-walked into the range). Real clients
// pick a port per connection over the whole range (Linux: a keyed hash of the addresses and
// ports plus a counter, RFC 6056), so the first flows of different hosts land anywhere in it,
// and one host's flows never reuse a port while fewer than kEphemeralPorts of them exist.
// Requires k < kEphemeralPorts.
inline uint16_t ephemeral_port(uint64_t key, uint32_t host, uint32_t k) {
    const uint64_t host_key = SplitMix64(key ^ (uint64_t{host} << 32)).next();
    uint32_t x = k;
    do {
        uint32_t left = x >> 8, right = x & 0xff;
        for (uint32_t round = 0; round < 4; ++round) {
            const uint32_t f =
                static_cast<uint32_t>(SplitMix64(host_key + (uint64_t{round} << 8 | right)).next()) & 0xff;
            const uint32_t next = left ^ f;
            left = right;
            right = next;
        }
        x = left << 8 | right;
    } while (x >= kEphemeralPorts);
    return static_cast<uint16_t>(kEphemeralFirst + x);
}

}  // namespace detail

class TraceGenerator {
public:
    // Requires opt.pps >= 1, opt.snaplen >= 1 and opt.packets <= UINT32_MAX (main.cpp checks).
    explicit TraceGenerator(const TraceOptions& opt) : opt_(opt), rng_(opt.seed) { plan(); }

    // Writes the next frame; false when the trace is complete.
    bool next(Frame& f) {
        if (queue_.empty()) return false;
        auto [vtime, idx] = queue_.top();
        queue_.pop();
        Flow& fl = flows_[idx];
        emit(fl, idx, f);
        if (++fl.sent < fl.total) queue_.push({vtime + fl.gap / 2 + 1 + rng_.below(fl.gap), idx});
        return true;
    }

    const TraceSummary& summary() const { return sum_; }

private:
    static constexpr uint8_t kTcp = 6, kUdp = 17;
    static constexpr uint8_t kFin = 0x01, kSyn = 0x02, kPsh = 0x08, kAck = 0x10;

    struct Flow {
        uint32_t total = 0, sent = 0;
        uint32_t gap = 1;  // mean virtual ticks between two packets of this flow
        uint32_t index = 0;
        uint8_t version = 4, proto = kUdp;
        bool vlan = false;
        uint16_t vlan_id = 0;
        uint16_t client_port = 0, server_port = 0;
        uint32_t flow_label = 0;
        uint32_t seq[2] = {0, 0};  // next sequence number; [0] client->server, [1] reverse
        uint16_t ip_id[2] = {0, 0};
        uint8_t client[16] = {}, server[16] = {};
    };

    using Event = std::pair<uint64_t, uint32_t>;  // (virtual time, flow index): unique keys

    // Decides every flow up front: size, family, protocol, endpoints, start and pacing.
    void plan() {
        const uint64_t n = opt_.packets;
        const uint32_t m = static_cast<uint32_t>(std::min<uint64_t>(opt_.flows, n));
        if (m == 0) return;
        flows_.resize(m);

        // Protocol first: a TCP flow needs 5 packets (SYN, SYN-ACK, FIN, FIN, ACK), a UDP flow 1.
        // When the packet budget cannot hold that, the last TCP flows become UDP flows.
        uint64_t minimum = 0;
        for (auto& fl : flows_) {
            fl.proto = rng_.below(10) < 7 ? kTcp : kUdp;
            minimum += fl.proto == kTcp ? 5 : 1;
        }
        for (uint32_t i = m; i-- > 0 && minimum > n;) {
            if (flows_[i].proto == kTcp) {
                flows_[i].proto = kUdp;
                minimum -= 4;
            }
        }

        // Heavy-tailed sizes: relative weights in four tiers share out the remaining packets.
        std::vector<uint32_t> weight(m);
        unsigned __int128 total_weight = 0;
        for (auto& w : weight) {
            uint32_t tier = rng_.below(100);
            w = tier < 60 ? 1 + rng_.below(8)
              : tier < 90 ? 8 + rng_.below(56)
              : tier < 99 ? 64 + rng_.below(448)
                          : 512 + rng_.below(3584);
            total_weight += w;
        }
        const uint64_t extra = n - minimum;
        uint64_t assigned = 0;
        for (uint32_t i = 0; i < m; ++i) {
            const uint64_t share =
                static_cast<uint64_t>(extra * static_cast<unsigned __int128>(weight[i]) /
                                      total_weight);
            flows_[i].total = static_cast<uint32_t>((flows_[i].proto == kTcp ? 5 : 1) + share);
            assigned += flows_[i].total;
        }
        for (uint64_t i = 0; assigned < n; ++i, ++assigned) flows_[i % m].total++;

        // Pacing in virtual ticks: about max(1, m/10) flows are active at any moment.
        // (concurrency ≈ n * mean_gap / ticks, and ticks / n = 64.)
        const uint64_t ticks = n * 64;
        const uint64_t concurrency = std::max<uint64_t>(1, m / 10);
        const uint64_t mean_gap = concurrency * 64;
        // One draw keys every client's port choice (ephemeral_port()); the draw stands where an
        // older generator drew a port base, so that the rest of a seed's trace is unchanged.
        const uint64_t port_key = rng_.next();

        for (uint32_t i = 0; i < m; ++i) {
            Flow& fl = flows_[i];
            fl.index = i;
            fl.version = rng_.below(5) == 0 ? 6 : 4;
            fl.vlan = rng_.below(10) == 0;
            fl.vlan_id = static_cast<uint16_t>(2 + rng_.below(4093));
            choose_endpoints(fl, i, port_key);
            fl.flow_label = rng_.below(1u << 20);
            fl.seq[0] = static_cast<uint32_t>(rng_.next());
            fl.seq[1] = static_cast<uint32_t>(rng_.next());
            fl.ip_id[0] = static_cast<uint16_t>(rng_.next());
            fl.ip_id[1] = static_cast<uint16_t>(rng_.next());

            // A flow lasts at most half the trace, so long flows still overlap short ones.
            uint64_t gap = 1 + rng_.below(static_cast<uint32_t>(std::min<uint64_t>(
                                   2 * mean_gap, UINT32_MAX - 1)));
            gap = std::max<uint64_t>(1, std::min<uint64_t>(gap, ticks / 2 / fl.total));
            fl.gap = static_cast<uint32_t>(std::min<uint64_t>(gap, UINT32_MAX / 2));
            const uint64_t span = uint64_t{fl.gap} * fl.total;
            const uint64_t room = ticks > span ? ticks - span : 1;
            const uint64_t start =
                (static_cast<unsigned __int128>(rng_.next()) * room) >> 64;
            queue_.push({start, i});

            sum_.flows++;
            (fl.proto == kTcp ? sum_.tcp_flows : sum_.udp_flows)++;
            sum_.ipv6_flows += fl.version == 6;
            sum_.vlan_flows += fl.vlan;
        }
    }

    // Clients in 198.18.0.0/16 or 2001:db8:c::/48, servers in 198.19.0.0/16 or 2001:db8:5::/48
    // (benchmarking and documentation ranges). A client (address, port) is unique per flow,
    // so no two flows share a 5-tuple in either direction: an IPv6 client address holds i; an
    // IPv4 one is host(i mod 2^16), and the flows of one host (i = host, host + 2^16, ...) take
    // the ports of a permutation of the ephemeral range, distinct up to 2^16 * 28232 flows.
    void choose_endpoints(Flow& fl, uint32_t i, uint64_t port_key) {
        static constexpr uint16_t tcp_ports[] = {443, 443, 443, 80, 80, 22, 25, 993, 8080, 5222};
        // No DNS, NTP, IPsec or OpenVPN ports: the payload is zeros, which tshark's dissectors for
        // those protocols would report as malformed.
        static constexpr uint16_t udp_ports[] = {443, 443, 3478, 3478, 5060, 27015, 3074, 19302,
                                                 9987, 50000};
        const uint32_t host = (i * 40503u) & 0xffff;  // odd multiplier: a permutation mod 2^16
        fl.client_port = detail::ephemeral_port(port_key, host, (i >> 16) % kEphemeralPorts);
        const uint32_t server = rng_.below(1024);
        fl.server_port = fl.proto == kTcp ? tcp_ports[rng_.below(10)] : udp_ports[rng_.below(10)];
        if (fl.version == 4) {
            const uint8_t c[4] = {198, 18, static_cast<uint8_t>(host >> 8),
                                  static_cast<uint8_t>(host)};
            const uint8_t s[4] = {198, 19, static_cast<uint8_t>(server >> 8),
                                  static_cast<uint8_t>(1 + (server & 0xff) % 254)};
            std::memcpy(fl.client, c, 4);
            std::memcpy(fl.server, s, 4);
        } else {
            const uint8_t c[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0c, 0, 0,
                                   static_cast<uint8_t>(rng_.next()), static_cast<uint8_t>(rng_.next()),
                                   0, 0,
                                   static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16),
                                   static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
            const uint8_t s[16] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x05, 0, 0, 0, 0, 0, 0, 0, 0,
                                   static_cast<uint8_t>(server >> 8), static_cast<uint8_t>(server)};
            std::memcpy(fl.client, c, 16);
            std::memcpy(fl.server, s, 16);
        }
    }

    // IMIX 7:4:1 of 64, 576 and 1500-byte frames.
    uint32_t imix_size() {
        uint32_t r = rng_.below(12);
        return r < 7 ? 64 : r < 11 ? 576 : 1500;
    }

    void emit(Flow& fl, uint32_t idx, Frame& f) {
        // What this packet is: direction, TCP flags, size.
        const uint32_t j = fl.sent, n = fl.total;
        bool from_client = true;
        uint8_t flags = 0;
        bool control = false;  // header-only TCP segment
        if (fl.proto == kTcp) {
            if (j == 0) { flags = kSyn; control = true; }
            else if (j == 1) { from_client = false; flags = kSyn | kAck; control = true; }
            else if (j == n - 3) { flags = kFin | kAck; control = true; }
            else if (j == n - 2) { from_client = false; flags = kFin | kAck; control = true; }
            else if (j == n - 1) { flags = kAck; control = true; }
            else { from_client = rng_.below(2) == 0; flags = kAck; }
        } else {
            from_client = j == 0 || rng_.below(2) == 0;
        }

        const uint32_t l2 = fl.vlan ? 18 : 14;
        const uint32_t l3 = fl.version == 4 ? 20 : 40;
        const uint32_t l4 = fl.proto == kTcp ? 20 : 8;
        const uint32_t headers = l2 + l3 + l4;
        const uint32_t wire = control ? headers : std::max(headers, imix_size());
        const uint32_t payload = wire - headers;
        if (fl.proto == kTcp && payload > 0) flags |= kPsh;

        uint8_t h[96];  // the headers; the payload is zeros
        write_headers(fl, idx, from_client, flags, payload, h);

        // Sequence space: SYN and FIN take one number, data takes its length.
        const int dir = from_client ? 0 : 1;
        fl.seq[dir] += payload + ((flags & (kSyn | kFin)) ? 1 : 0);
        fl.ip_id[dir]++;

        const uint64_t k = sum_.packets;
        f.ts_ns = opt_.start_ns + static_cast<uint64_t>(
                                      static_cast<unsigned __int128>(k) * 1'000'000'000u / opt_.pps);
        f.wire_len = wire;
        f.caplen = std::min(wire, opt_.snaplen);
        const uint32_t hdr_copy = std::min(headers, f.caplen);
        std::memcpy(f.bytes, h, hdr_copy);
        std::memset(f.bytes + hdr_copy, 0, f.caplen - hdr_copy);

        sum_.packets++;
        sum_.wire_bytes += wire;
        sum_.captured_bytes += f.caplen;
    }

    void write_headers(const Flow& fl, uint32_t idx, bool from_client, uint8_t flags,
                       uint32_t payload, uint8_t* h) {
        using detail::put16;
        using detail::put32;
        const uint8_t* src = from_client ? fl.client : fl.server;
        const uint8_t* dst = from_client ? fl.server : fl.client;
        const uint16_t sport = from_client ? fl.client_port : fl.server_port;
        const uint16_t dport = from_client ? fl.server_port : fl.client_port;
        const int dir = from_client ? 0 : 1;

        // Ethernet: the client's own locally administered MAC, the other side a router.
        const uint8_t client_mac[6] = {0x02, 0x00, static_cast<uint8_t>(idx >> 24),
                                       static_cast<uint8_t>(idx >> 16), static_cast<uint8_t>(idx >> 8),
                                       static_cast<uint8_t>(idx)};
        const uint8_t router_mac[6] = {0x02, 0x00, 0x5e, 0x00, 0x00, 0x01};
        std::memcpy(h, from_client ? router_mac : client_mac, 6);
        std::memcpy(h + 6, from_client ? client_mac : router_mac, 6);
        uint8_t* p = h + 12;
        if (fl.vlan) {
            put16(p, 0x8100);
            put16(p + 2, fl.vlan_id);
            p += 4;
        }
        put16(p, fl.version == 4 ? 0x0800 : 0x86dd);
        p += 2;

        const uint32_t l4 = fl.proto == kTcp ? 20 : 8;
        const uint32_t l4_len = l4 + payload;
        uint8_t* ip = p;
        uint64_t pseudo = 0;
        if (fl.version == 4) {
            std::memset(ip, 0, 20);
            ip[0] = 0x45;
            put16(ip + 2, 20 + l4_len);
            put16(ip + 4, fl.ip_id[dir]);
            put16(ip + 6, 0x4000);  // don't fragment
            ip[8] = from_client ? 64 : 57;
            ip[9] = fl.proto;
            std::memcpy(ip + 12, src, 4);
            std::memcpy(ip + 16, dst, 4);
            put16(ip + 10, detail::fold(detail::sum16(ip, 20)));
            pseudo = detail::sum16(src, 4, detail::sum16(dst, 4)) + fl.proto + l4_len;
            p += 20;
        } else {
            put32(ip, 0x60000000u | fl.flow_label);
            put16(ip + 4, l4_len);
            ip[6] = fl.proto;
            ip[7] = from_client ? 64 : 57;
            std::memcpy(ip + 8, src, 16);
            std::memcpy(ip + 24, dst, 16);
            pseudo = detail::sum16(src, 16, detail::sum16(dst, 16)) + fl.proto + l4_len;
            p += 40;
        }

        std::memset(p, 0, l4);
        put16(p, sport);
        put16(p + 2, dport);
        if (fl.proto == kTcp) {
            put32(p + 4, fl.seq[dir]);
            if (flags & kAck) put32(p + 8, fl.seq[1 - dir]);
            p[12] = 0x50;  // 20-byte header, no options
            p[13] = flags;
            put16(p + 14, 65535);
        } else {
            put16(p + 4, l4_len);
        }
        // The payload is all zeros, so the transport header alone completes the sum.
        uint16_t csum = detail::fold(detail::sum16(p, l4, pseudo));
        if (fl.proto == kUdp && csum == 0) csum = 0xffff;  // 0 means "no checksum" in UDP
        put16(p + (fl.proto == kTcp ? 16 : 6), csum);
    }

    TraceOptions opt_;
    Xoshiro256 rng_;
    std::vector<Flow> flows_;
    std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
    TraceSummary sum_;
};

}  // namespace angel::gen
