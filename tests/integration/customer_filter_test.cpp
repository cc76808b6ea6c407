// Customer filtering (issue 12, "must show"): the whole meter replays a capture with 100,000
// random prefixes in customers.networks that cover part of its traffic, and the flows, packets
// and bytes at the sink are exactly the reference's. The reference is written here and owes
// nothing to the meter: tshark reads the outermost IP header of every frame (tshark_frames(),
// after VLAN, QinQ, MPLS, PPPoE, SLL, ...), and a frame is kept when its source or destination
// lies in one of the prefixes, looked up in a set of masked networks per prefix length.
//
// Inputs: every real and edge capture of ../shared/pcaps, and a generated capture with IPv4 and
// IPv6 flows, both directions, untagged, VLAN, QinQ, MPLS (one and two labels) and PPPoE.
// Prefixes: for about a quarter of the addresses the capture holds, a prefix of a random length
// around it; the rest of the 100,000 random anywhere (some of them hit traffic too).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr size_t kPrefixes = 100000;

struct Net {
    int version = 4;
    std::array<uint8_t, 16> addr{};
    int len = 32;
};

std::array<uint8_t, 16> masked(const std::array<uint8_t, 16>& a, int len) {
    std::array<uint8_t, 16> m{};
    for (int bit = 0; bit < len; ++bit)
        if (a[bit / 8] & (0x80 >> (bit % 8))) m[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    return m;
}

std::string net_text(const Net& n) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(n.version == 4 ? AF_INET : AF_INET6, n.addr.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(n.len);
}

std::optional<std::pair<int, std::array<uint8_t, 16>>> parse_addr(const std::string& s) {
    std::array<uint8_t, 16> a{};
    if (inet_pton(AF_INET, s.c_str(), a.data()) == 1) return std::make_pair(4, a);
    if (inet_pton(AF_INET6, s.c_str(), a.data()) == 1) return std::make_pair(6, a);
    return std::nullopt;
}

// The reference: per (version, prefix length), the set of networks.
class ReferenceSet {
public:
    void add(const Net& n) { nets_[{n.version, n.len}].insert(masked(n.addr, n.len)); }
    bool contains(int version, const std::array<uint8_t, 16>& a) const {
        for (const auto& [key, set] : nets_)
            if (key.first == version && set.count(masked(a, key.second))) return true;
        return false;
    }

private:
    std::map<std::pair<int, int>, std::set<std::array<uint8_t, 16>>> nets_;
};

// Prefixes around about a quarter of the capture's addresses, then random ones up to kPrefixes.
std::vector<Net> make_prefixes(const std::vector<TsharkFrame>& frames, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::set<std::string> addrs;
    for (const TsharkFrame& f : frames)
        if (f.is_ip) addrs.insert({f.src, f.dst});
    std::vector<Net> out;
    for (const std::string& s : addrs) {
        const auto a = parse_addr(s);
        if (!a || rng() % 4 != 0) continue;
        Net n;
        n.version = a->first;
        const int v4[] = {32, 32, 24, 28, 26, 30};
        const int v6[] = {128, 64, 56, 48, 60, 120};
        n.len = n.version == 4 ? v4[rng() % 6] : v6[rng() % 6];
        n.addr = masked(a->second, n.len);
        out.push_back(n);
    }
    while (out.size() < kPrefixes) {
        Net n;
        n.version = rng() % 3 == 0 ? 6 : 4;
        for (auto& b : n.addr) b = static_cast<uint8_t>(rng());
        if (n.version == 4) {
            n.len = 24 + static_cast<int>(rng() % 9);
        } else {
            n.addr[0] = static_cast<uint8_t>(0x20 | (n.addr[0] & 0x1f));  // 2000::/3
            n.len = 48 + static_cast<int>(rng() % 17);
        }
        n.addr = masked(n.addr, n.len);
        if (n.version == 4) std::fill(n.addr.begin() + 4, n.addr.end(), 0);
        out.push_back(n);
    }
    std::shuffle(out.begin(), out.end(), rng);
    return out;
}

// Flow totals per canonical tuple from the sink's flow_start/flow_end records.
FlowTable sink_flows(const std::vector<std::string>& lines, std::vector<std::string>* problems) {
    FlowTable out;
    std::map<uint32_t, FlowTuple> live;
    for (const std::string& line : lines) {
        std::string err;
        const auto r = parse_sink_line(line, &err);
        if (!r) {
            problems->push_back("cannot parse: " + line);
            continue;
        }
        if (r->type == SinkRecord::Type::flow_start) {
            const auto t = canonical_tuple(r->proto, r->src, r->sport, r->dst, r->dport);
            if (!t) problems->push_back("bad tuple: " + line);
            else live[r->flow_id] = *t;
        } else if (r->type == SinkRecord::Type::flow_end) {
            auto it = live.find(r->flow_id);
            if (it == live.end()) {
                problems->push_back("flow_end of a flow not started: " + line);
                continue;
            }
            Volume& v = out[it->second];
            v.packets += r->packets;
            v.bytes += r->bytes;
            live.erase(it);
        }
    }
    for (const auto& [id, t] : live) problems->push_back("flow " + std::to_string(id) + " never ended");
    return out;
}

std::string describe(const FlowTable& want, const FlowTable& got) {
    std::string s;
    size_t n = 0;
    for (const auto& [t, v] : want) {
        auto it = got.find(t);
        if (it == got.end() || !(it->second == v))
            if (n++ < 10)
                s += "  reference " + std::to_string(v.packets) + " packets/" + std::to_string(v.bytes) + " bytes, meter " +
                     (it == got.end() ? std::string("none") : std::to_string(it->second.packets) + "/" +
                                                                  std::to_string(it->second.bytes)) + "\n";
    }
    for (const auto& [t, v] : got)
        if (!want.count(t) && n++ < 10) s += "  meter has a flow the reference filtered out: " + std::to_string(v.packets) + " packets\n";
    return s;
}

// ---- The generated capture --------------------------------------------------------------------

using Bytes = std::vector<uint8_t>;
void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}

Bytes ip_packet(int version, const std::array<uint8_t, 16>& src, const std::array<uint8_t, 16>& dst, bool tcp,
                uint16_t sport, uint16_t dport, size_t payload) {
    Bytes l4;
    put16(l4, sport);
    put16(l4, dport);
    if (tcp) {
        for (int i = 0; i < 8; ++i) l4.push_back(0);  // seq, ack
        l4.push_back(0x50);
        l4.push_back(0x18);  // PSH ACK
        put16(l4, 1024);
        put16(l4, 0);
        put16(l4, 0);
    } else {
        put16(l4, static_cast<uint16_t>(8 + payload));
        put16(l4, 0);
    }
    l4.insert(l4.end(), payload, 0x5a);
    Bytes ip;
    if (version == 4) {
        ip = {0x45, 0};
        put16(ip, static_cast<uint16_t>(20 + l4.size()));
        ip.insert(ip.end(), {0, 1, 0x40, 0, 64, static_cast<uint8_t>(tcp ? 6 : 17), 0, 0});
        ip.insert(ip.end(), src.begin(), src.begin() + 4);
        ip.insert(ip.end(), dst.begin(), dst.begin() + 4);
        set_ipv4_checksum(ip.data());
    } else {
        ip = {0x60, 0, 0, 0};
        put16(ip, static_cast<uint16_t>(l4.size()));
        ip.push_back(tcp ? 6 : 17);
        ip.push_back(64);
        ip.insert(ip.end(), src.begin(), src.end());
        ip.insert(ip.end(), dst.begin(), dst.end());
    }
    ip.insert(ip.end(), l4.begin(), l4.end());
    return ip;
}

// Ethernet around an IP packet, in one of six encapsulations.
Bytes frame(int encap, int version, const Bytes& ip) {
    Bytes f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1};
    const uint16_t ethertype = version == 4 ? 0x0800 : 0x86dd;
    switch (encap) {
        case 0: put16(f, ethertype); break;
        case 1: put16(f, 0x8100), put16(f, 17), put16(f, ethertype); break;                      // VLAN
        case 2: put16(f, 0x88a8), put16(f, 100), put16(f, 0x8100), put16(f, 7), put16(f, ethertype); break;  // QinQ
        case 3: put16(f, 0x8847), f.insert(f.end(), {0x00, 0x01, 0x01, 0x40}); break;            // MPLS, 1 label
        case 4: put16(f, 0x8847), f.insert(f.end(), {0x00, 0x02, 0x00, 0x40, 0x00, 0x03, 0x01, 0x40}); break;  // 2 labels
        default:                                                                                   // PPPoE session
            put16(f, 0x8864);
            f.insert(f.end(), {0x11, 0x00});
            put16(f, 0x1234);
            put16(f, static_cast<uint16_t>(ip.size() + 2));
            put16(f, version == 4 ? 0x0021 : 0x0057);
            break;
    }
    f.insert(f.end(), ip.begin(), ip.end());
    return f;
}

// n flows of 2..9 packets each way, addresses from a few /16s and /40s so that prefixes nest.
void write_generated_pcap(const fs::path& p, int flows, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::ofstream out(p, std::ios::binary);
    put_pcap_header(out);
    uint64_t t_us = 1700000000ull * 1000000;
    for (int i = 0; i < flows; ++i) {
        const int version = rng() % 3 == 0 ? 6 : 4;
        std::array<uint8_t, 16> a{}, b{};
        for (auto* x : {&a, &b}) {
            if (version == 4) {
                (*x)[0] = static_cast<uint8_t>(rng() % 2 ? 10 : 100);
                (*x)[1] = static_cast<uint8_t>(rng() % 4);
                for (int k = 2; k < 4; ++k) (*x)[k] = static_cast<uint8_t>(rng());
            } else {
                const uint8_t pre[5] = {0x20, 0x01, 0x0d, 0xb8, static_cast<uint8_t>(rng() % 4)};
                std::memcpy(x->data(), pre, 5);
                for (int k = 5; k < 16; ++k) (*x)[k] = static_cast<uint8_t>(rng());
            }
        }
        const bool tcp = rng() % 2;
        const uint16_t pa = static_cast<uint16_t>(32768 + rng() % 28000), pb = static_cast<uint16_t>(1 + rng() % 1024);
        const int encap = static_cast<int>(rng() % 6);
        const int packets = 2 + static_cast<int>(rng() % 16);
        for (int k = 0; k < packets; ++k) {
            const bool back = k % 2 == 1;
            const Bytes f = frame(encap, version,
                                  ip_packet(version, back ? b : a, back ? a : b, tcp, back ? pb : pa, back ? pa : pb,
                                            rng() % 200));
            t_us += 10 + rng() % 100;
            put_pcap_record(out, static_cast<uint32_t>(t_us / 1000000), static_cast<uint32_t>(t_us % 1000000), f.data(),
                            f.size());
        }
    }
}

// ---- The test --------------------------------------------------------------------------------

// Returns the frames the reference kept.
uint64_t check_capture(const fs::path& pcap, uint64_t seed) {
    const std::string file = pcap.filename().string();
    const TsharkFrames t = tshark_frames(pcap);
    if (!t.error.empty()) {
        ADD_FAILURE() << file << ": " << t.error;
        return 0;
    }
    const std::vector<Net> nets = make_prefixes(t.frames, seed);
    ReferenceSet ref;
    for (const Net& n : nets) ref.add(n);
    FlowTable want;
    uint64_t ip_frames = 0, kept = 0;
    for (const TsharkFrame& f : t.frames) {
        if (!f.is_ip) continue;
        ++ip_frames;
        const auto s = parse_addr(f.src), d = parse_addr(f.dst);
        if (!s || !d) {
            ADD_FAILURE() << file << ": " << f.line;
            return 0;
        }
        if (!ref.contains(s->first, s->second) && !ref.contains(d->first, d->second)) continue;
        const auto tuple = canonical_tuple(static_cast<int>(f.proto), f.src, static_cast<unsigned>(f.sport), f.dst,
                                           static_cast<unsigned>(f.dport));
        if (!tuple) {
            ADD_FAILURE() << file << ": " << f.line;
            return 0;
        }
        Volume& v = want[*tuple];
        v.packets += 1;
        v.bytes += f.len;
        ++kept;
    }

    std::string list;
    list.reserve(nets.size() * 24);
    for (const Net& n : nets) list += (list.empty() ? "\"" : ", \"") + net_text(n) + "\"";
    ReplayHarness harness("cuf");
    ReplayOptions o;
    o.pcap = pcap;
    o.capture_export = false;
    o.extra_config = "customers = { networks = [ " + list + " ]; };\n";
    const ReplayResult r = harness.run(o);
    for (const auto& p : r.problems) ADD_FAILURE() << file << ": " << p;
    if (!r.ctld_status.ok() || !r.stop_line) {
        ADD_FAILURE() << file << ": angel-ctld " << r.ctld_status.describe() << "\n" << r.ctld_stderr;
        return 0;
    }
    std::vector<std::string> problems;
    const FlowTable got = sink_flows(r.sink_lines, &problems);
    for (const auto& p : problems) ADD_FAILURE() << file << ": " << p;
    EXPECT_TRUE(got == want) << file << ": flows at the sink differ from the reference (" << want.size()
                             << " flows, " << kept << " of " << ip_frames << " IP frames kept)\n"
                             << describe(want, got);
    // Counted: every IP packet metered or filtered, nothing else lost.
    EXPECT_EQ(r.counter("ip_packets"), kept) << file;
    EXPECT_EQ(r.counter("filtered"), ip_frames - kept) << file;
    EXPECT_EQ(r.counter("captured"), r.counter("ip_packets") + r.counter("filtered") + r.counter("not_ip") +
                                         r.counter("malformed"))
        << file << ": " << *r.stop_line;
    std::printf("[ filter  ] %s: %llu of %llu IP frames in %zu flows kept by %zu prefixes\n", file.c_str(),
                static_cast<unsigned long long>(kept), static_cast<unsigned long long>(ip_frames), want.size(),
                nets.size());
    return kept;
}

std::vector<fs::path> captures() {
    std::vector<fs::path> files = files_in(shared_pcaps_dir("real"));
    for (const fs::path& f : files_in(shared_pcaps_dir("edge"))) files.push_back(f);
    if (files.empty()) files.emplace_back();
    return files;
}

class CustomerFilterReplay : public testing::TestWithParam<fs::path> {};

// Link types of a file's frames as tshark reads them (frame.encap_type values).
std::set<std::string> encap_types(const fs::path& pcap) {
    const CommandResult r = run_command({"tshark", "-n", "-r", pcap.string(), "-T", "fields", "-e", "frame.encap_type"},
                                        Millis(60000));
    std::set<std::string> out;
    for (size_t at = 0; at < r.out.size();) {
        const size_t nl = std::min(r.out.find('\n', at), r.out.size());
        if (nl > at) out.insert(r.out.substr(at, nl - at));
        at = nl + 1;
    }
    return out;
}

TEST_P(CustomerFilterReplay, SinkHoldsExactlyTheReferencesFlows) {
    ASSERT_FALSE(GetParam().empty()) << "missing or empty shared pcaps folders";
    ASSERT_TRUE(have_program("tshark")) << "tshark is not installed";
    // libpcap stops reading a pcapng file at the first interface of another link type than the
    // first one's (the meter replays through libpcap): tshark reads on. Not the filter's matter.
    if (encap_types(GetParam()).size() > 1)
        GTEST_SKIP() << "pcapng with interfaces of several link types: libpcap reads only the first type";
    check_capture(GetParam(), std::hash<std::string>{}(GetParam().filename().string()));
}

INSTANTIATE_TEST_SUITE_P(SharedPcaps, CustomerFilterReplay, testing::ValuesIn(captures()),
                         [](const testing::TestParamInfo<fs::path>& i) {
                             return i.param.empty() ? std::string("MISSING") : sanitize_test_name(i.param.filename().string());
                         });

TEST(CustomerFilter, GeneratedEncapsulationsMatchTheReference) {
    ASSERT_TRUE(have_program("tshark")) << "tshark is not installed";
    TempDir dir("angel-cufgen");
    const fs::path pcap = dir / "generated.pcap";
    write_generated_pcap(pcap, 3000, 42);
    // tshark reads all six encapsulations (else the reference would drop them): each has flows.
    const TsharkFrames t = tshark_frames(pcap);
    ASSERT_TRUE(t.error.empty()) << t.error;
    uint64_t ip = 0;
    for (const TsharkFrame& f : t.frames) ip += f.is_ip;
    ASSERT_EQ(ip, t.frames.size()) << "tshark found no IP header in some generated frames";
    const uint64_t kept = check_capture(pcap, 7);
    EXPECT_GT(kept, ip / 10) << "the prefixes should keep part of the traffic";
    EXPECT_LT(kept, ip - ip / 10) << "the prefixes should filter part of the traffic";
}

}  // namespace
}  // namespace angel::itest
