// End to end on loopback: netd's IpfixExporter sends a known set of records to a real angel-sink
// while tcpdump (or tshark) captures the datagrams. Checks that the sink prints exactly the
// records that were sent, and that tshark decodes every captured message as IPFIX without any
// malformed / expert / unknown-template complaint.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// The exporter lives in netd/ (an executable, not a library): compile it into this test.
#include "netd/ipfix_exporter.hpp"
#include "tests/integration/test_support.hpp"

namespace angel {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string bin_dir() { return angel::itest::bin_dir().string(); }

bool have_program(const char* name) {
    const std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::vector<std::string> read_lines(const fs::path& p) {
    std::ifstream f(p);
    std::vector<std::string> v;
    for (std::string l; std::getline(f, l);) v.push_back(l);
    return v;
}

// Child processes and the temp dir, cleaned up whatever happens to the test.
class Sandbox {
public:
    Sandbox() {
        char tmpl[] = "/tmp/angel-sink-test-XXXXXX";
        const char* d = mkdtemp(tmpl);
        if (!d) throw std::runtime_error("mkdtemp failed");
        dir_ = d;
    }
    ~Sandbox() {
        for (pid_t p : pids_) {
            if (kill(p, SIGKILL) == 0 || errno != ESRCH) waitpid(p, nullptr, 0);
        }
        std::error_code ec;
        if (!std::getenv("ANGEL_KEEP_TMP")) fs::remove_all(dir_, ec);
    }
    const fs::path& dir() const { return dir_; }

    // Starts argv with stdout/stderr redirected to files in the sandbox.
    pid_t spawn(const std::vector<std::string>& argv, const std::string& out, const std::string& err) {
        const pid_t pid = fork();
        if (pid == 0) {
            const int o = open((dir_ / out).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int e = open((dir_ / err).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(o, 1);
            dup2(e, 2);
            std::vector<char*> a;
            for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
            a.push_back(nullptr);
            execvp(a[0], a.data());
            _exit(127);
        }
        if (pid > 0) pids_.push_back(pid);
        return pid;
    }

    // Sends sig and waits up to timeout; returns the exit status (-1 on timeout / not ours).
    int stop(pid_t pid, int sig, std::chrono::milliseconds timeout = 10s) {
        if (sig) kill(pid, sig);
        return wait_exit(pid, timeout);
    }
    int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            int st = 0;
            const pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid) {
                std::erase(pids_, pid);
                return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            }
            if (r < 0) return -1;
            std::this_thread::sleep_for(10ms);
        }
        return -1;
    }

    // Waits until file contains needle; returns its content then ("" on timeout).
    std::string wait_for(const std::string& file, const std::string& needle,
                         std::chrono::milliseconds timeout = 10s) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < end) {
            const std::string s = read_file(dir_ / file);
            if (s.find(needle) != std::string::npos) return s;
            std::this_thread::sleep_for(20ms);
        }
        return "";
    }

private:
    fs::path dir_;
    std::vector<pid_t> pids_;
};

// Starts angel-sink on 127.0.0.1 with a kernel-chosen free port; returns the port (0 on failure).
uint16_t start_sink(Sandbox& sb, pid_t* pid, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {bin_dir() + "/angel-sink", "--listen", "127.0.0.1:0",
                                     "--json", "--out", (sb.dir() / "records.json").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    *pid = sb.spawn(argv, "sink.out", "sink.err");
    const std::string s = sb.wait_for("sink.err", "listening on 127.0.0.1:");
    const auto at = s.find("127.0.0.1:");
    if (at == std::string::npos) return 0;
    return uint16_t(std::atoi(s.c_str() + at + 10));
}

std::string ip_text(uint8_t ver, const IpBytes& a) {
    char b[64];
    inet_ntop(ver == 6 ? AF_INET6 : AF_INET, a.data(), b, sizeof b);
    return b;
}

// The JSON line issue 3 specifies for one record, built independently of the sink's code.
std::string expected_json(const Record& r) {
    std::string s;
    switch (RecordType(r.type)) {
    case RecordType::packet:
        s = "{\"type\":\"packet\",\"flow_id\":" + std::to_string(r.flow_id) +
            ",\"idx\":" + std::to_string(r.packet.index) + ",\"ts_ns\":" + std::to_string(r.ts_ns) +
            ",\"len\":" + std::to_string(std::min<uint32_t>(r.packet.wire_len, 65535)) +
            ",\"dir\":" + std::to_string(r.packet.dir) +
            ",\"tcp_flags\":" + std::to_string(r.packet.tcp_flags) +
            ",\"new\":" + (r.packet.new_flow ? "true" : "false") + "}";
        break;
    case RecordType::flow_start:
        s = "{\"type\":\"flow_start\",\"flow_id\":" + std::to_string(r.flow_id) +
            ",\"ts_ns\":" + std::to_string(r.ts_ns) + ",\"proto\":" + std::to_string(r.start.proto) +
            ",\"src\":\"" + ip_text(r.start.ip_version, r.start.src) +
            "\",\"sport\":" + std::to_string(r.start.sport) + ",\"dst\":\"" +
            ip_text(r.start.ip_version, r.start.dst) + "\",\"dport\":" + std::to_string(r.start.dport) +
            "}";
        break;
    case RecordType::flow_end: {
        static const char* names[] = {"?", "idle", "tcp_close", "end_of_input", "shutdown", "evicted"};
        s = "{\"type\":\"flow_end\",\"flow_id\":" + std::to_string(r.flow_id) + ",\"reason\":\"" +
            names[r.end.reason] + "\",\"first_ns\":" + std::to_string(r.end.first_ns) +
            ",\"last_ns\":" + std::to_string(r.ts_ns) +
            ",\"packets\":" + std::to_string(r.end.packets[0] + r.end.packets[1]) +
            ",\"bytes\":" + std::to_string(r.end.bytes[0] + r.end.bytes[1]) + "}";
        break;
    }
    case RecordType::loss: {
        static const char* causes[] = {"?", "pcap_drop", "if_drop", "ring_drop", "capd_restart", "ctld_restart",
                                       "master_gap"};
        s = "{\"type\":\"loss\",\"cause\":\"" + std::string(causes[r.loss.cause]) +
            "\",\"first_ns\":" + std::to_string(r.loss.first_ns) + ",\"last_ns\":" + std::to_string(r.ts_ns) +
            ",\"packets\":" + std::to_string(r.loss.packets) + "}";
        break;
    }
    case RecordType::watermark:
        s = "{\"type\":\"watermark\",\"ts_ns\":" + std::to_string(r.ts_ns) + "}";
        break;
    case RecordType::announce:
        break;  // never exported: no line
    }
    return s;
}

// Loss records of every cause and rising watermarks, between packet records of one flow.
std::vector<Record> make_loss_and_watermark_records() {
    std::vector<Record> v;
    const uint64_t t0 = 1717171717000000000ull;
    Record s{};
    s.type = uint8_t(RecordType::flow_start);
    s.flow_id = 99;
    s.ts_ns = t0;
    s.start.ip_version = 4;
    s.start.proto = 17;
    inet_pton(AF_INET, "192.0.2.1", s.start.src.data());
    inet_pton(AF_INET, "198.51.100.1", s.start.dst.data());
    v.push_back(s);
    for (uint32_t i = 0; i < 60; ++i) {
        Record p{};
        p.type = uint8_t(RecordType::packet);
        p.flow_id = 99;
        p.ts_ns = t0 + i * 1'000'000;
        p.packet.wire_len = 100;
        p.packet.index = i;
        p.packet.new_flow = i == 0;
        v.push_back(p);
        if (i % 10 == 9) {
            Record l{};
            l.type = uint8_t(RecordType::loss);
            l.loss.cause = uint8_t(1 + (i / 10) % 6);  // every cause once
            l.loss.first_ns = t0 + i * 1'000'000 - 777;
            l.ts_ns = t0 + i * 1'000'000 + 500;
            l.loss.packets = l.loss.cause >= 4 ? 0 : 1000 * i + 1;  // gaps: not known
            v.push_back(l);
            Record w{};
            w.type = uint8_t(RecordType::watermark);
            w.ts_ns = p.ts_ns + 1;
            v.push_back(w);
        }
    }
    return v;
}

// A known set: 60 flows alternating IPv4 / IPv6 and TCP / UDP, every end reason, 1..30 packets
// each, one oversized (GSO) packet; flows interleave so that sets of all templates alternate.
std::vector<Record> make_records() {
    std::vector<Record> v;
    const uint64_t t0 = 1717171717000000000ull;
    for (uint32_t f = 0; f < 60; ++f) {
        Record s{};
        s.type = uint8_t(RecordType::flow_start);
        s.flow_id = 0x10000 + f * 7919;
        s.ts_ns = t0 + f * 1000;
        s.start.ip_version = (f % 2) ? 6 : 4;
        s.start.proto = (f % 3) ? 6 : 17;
        s.start.sport = uint16_t(10000 + f);
        s.start.dport = uint16_t(f % 3 ? 443 : 53);
        if (s.start.ip_version == 6) {
            inet_pton(AF_INET6, ("2001:db8::" + std::to_string(f + 1)).c_str(), s.start.src.data());
            inet_pton(AF_INET6, "2001:db8:1::ff", s.start.dst.data());
        } else {
            inet_pton(AF_INET, ("192.0.2." + std::to_string(f + 1)).c_str(), s.start.src.data());
            inet_pton(AF_INET, "198.51.100.200", s.start.dst.data());
        }
        v.push_back(s);
        const uint32_t npk = 1 + f % 30;
        Record e{};
        e.type = uint8_t(RecordType::flow_end);
        e.flow_id = s.flow_id;
        e.end.first_ns = s.ts_ns;
        for (uint32_t p = 0; p < npk; ++p) {
            Record r{};
            r.type = uint8_t(RecordType::packet);
            r.flow_id = s.flow_id;
            r.ts_ns = s.ts_ns + p * 137;
            r.packet.wire_len = (f == 5 && p == 0) ? 70000 : 60 + (p * 97) % 1450;
            r.packet.dir = uint8_t(p % 2);
            r.packet.tcp_flags = s.start.proto == 6 ? uint8_t(p == 0 ? 0x02 : 0x10) : 0;
            r.packet.new_flow = p == 0;
            // The flow's packet index; flow 7 as if it had passed 2^32 packets (wraps to 0).
            r.packet.index = f == 7 ? uint32_t(0xFFFFFFFCu + p) : p;
            v.push_back(r);
            e.end.packets[r.packet.dir] += 1;
            e.end.bytes[r.packet.dir] += r.packet.wire_len;
            e.ts_ns = r.ts_ns;
        }
        e.end.reason = uint8_t(1 + f % 5);
        v.push_back(e);
    }
    return v;
}

// Starts a loopback capture of udp port `port` into cap.pcap; 0 if no capture tool works here.
pid_t start_capture(Sandbox& sb, uint16_t port) {
    const std::string file = (sb.dir() / "cap.pcap").string();
    if (have_program("tcpdump")) {
        // Root's tcpdump drops privileges to user tcpdump: it must be able to write the file.
        chmod(sb.dir().c_str(), 0777);
        const pid_t pid = sb.spawn({"tcpdump", "-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0", "-w", file,
                                    "udp port " + std::to_string(port)},
                                   "capture.out", "capture.err");
        if (!sb.wait_for("capture.err", "listening on").empty()) return pid;
        sb.stop(pid, SIGKILL);
    }
    if (have_program("tshark")) {
        const pid_t pid = sb.spawn({"tshark", "-i", "lo", "-f", "udp port " + std::to_string(port),
                                    "-w", file},
                                   "capture.out", "capture.err");
        if (!sb.wait_for("capture.err", "Capturing on").empty()) {
            std::this_thread::sleep_for(300ms);  // tshark's dumpcap announces just before it reads
            return pid;
        }
        sb.stop(pid, SIGKILL);
    }
    return 0;
}

// tshark -V's reading of dir/cap.pcap (kept in dir/tshark.txt), and how often a text occurs in it.
struct TsharkText {
    TsharkText(const fs::path& dir, unsigned port) {
        const std::string cmd = "tshark -n -r " + (dir / "cap.pcap").string() + " -d udp.port==" +
                                std::to_string(port) + ",cflow -V 2>&1";
        FILE* p = popen(cmd.c_str(), "r");
        if (p == nullptr) return;
        char buf[65536];
        for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) text.append(buf, n);
        pclose(p);
        ran = true;
        std::ofstream(dir / "tshark.txt") << text;
    }
    size_t count(const std::string& needle) const {
        size_t c = 0;
        for (size_t at = 0; (at = text.find(needle, at)) != std::string::npos; at += needle.size()) ++c;
        return c;
    }
    std::string text;
    bool ran = false;
};

TEST(SinkTshark, SinkPrintsExactlyWhatWasSentAndTsharkDecodesIt) {
    ASSERT_TRUE(fs::exists(bin_dir() + "/angel-sink")) << "build angel-sink first";
    Sandbox sb;
    pid_t sink = 0;
    const uint16_t port = start_sink(sb, &sink);
    ASSERT_NE(port, 0) << read_file(sb.dir() / "sink.err");
    const pid_t cap = start_capture(sb, port);

    const auto records = make_records();
    std::atomic<uint64_t> seq{4294967000u};  // wraps 2^32 during the run
    IpfixExporterCounters counters;
    {
        IpfixExporterConfig cfg;
        cfg.host = "127.0.0.1";
        cfg.port = port;
        cfg.mtu = 576;  // many small messages
        cfg.domain_id = 7;
        IpfixExporter ex(cfg, &seq);
        for (size_t i = 0; i < records.size(); ++i) {
            ex.add(records[i]);
            if (i % 50 == 0) std::this_thread::sleep_for(1ms);  // no burst loss on lo
        }
        ex.flush();
        ex.send_templates();  // a refresh in mid-stream must decode cleanly too
        counters = ex.counters();
    }
    EXPECT_EQ(counters.send_errors, 0u);
    EXPECT_EQ(counters.records_sent, records.size());

    std::vector<std::string> want;
    for (const auto& r : records) want.push_back(expected_json(r));
    // Wait for the sink to print everything, then stop it like an operator would.
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (read_lines(sb.dir() / "records.json").size() < want.size() &&
           std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(sb.stop(sink, SIGTERM), 0);
    const auto got = read_lines(sb.dir() / "records.json");
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "line " << i;

    const std::string summary = read_file(sb.dir() / "sink.out");  // --out: summary on stdout
    EXPECT_NE(summary.find("0 gaps, 0 records lost"), std::string::npos) << summary;
    EXPECT_NE(summary.find("60 started, 60 ended"), std::string::npos) << summary;
    EXPECT_NE(summary.find("malformed 0"), std::string::npos) << summary;

    if (cap == 0 || !have_program("tshark")) GTEST_SKIP() << "no loopback capture or no tshark";
    std::this_thread::sleep_for(200ms);
    sb.stop(cap, SIGINT);
    const TsharkText tshark(sb.dir(), port);
    ASSERT_TRUE(tshark.ran);
    auto count = [&](const std::string& needle) { return tshark.count(needle); };
    EXPECT_EQ(count("Cisco NetFlow/IPFIX"), counters.messages_sent);
    EXPECT_EQ(count("Malformed"), 0u);
    EXPECT_EQ(count("Expert Info"), 0u);
    EXPECT_EQ(count("no template"), 0u);
    EXPECT_EQ(count("Template not found"), 0u);
    EXPECT_EQ(count("Unknown"), 0u);
    EXPECT_EQ(count("Template Id: 259"), 2u);  // start + explicit refresh
    EXPECT_EQ(count("PKTS (2) [Reverse]"), 2u);
    // Every data record decoded by tshark: count the flow IDs it printed.
    EXPECT_EQ(count("Flow Id: "), records.size());
    // The packet template's sixth field is PEN 32473 element 3, 4 octets (angelPacketIndex)...
    EXPECT_EQ(count("Field (6/6):   3 [pen: Example Enterprise Number for Documentation Use]"), 2u);
    // ... and tshark, an independent decoder, reads in every packet record exactly the index
    // that was sent, in order (it prints the value of an enterprise element as hex bytes).
    std::vector<std::pair<uint32_t, uint32_t>> sent_idx, tshark_idx;
    for (const auto& r : records)
        if (r.type == uint8_t(RecordType::packet)) sent_idx.emplace_back(r.flow_id, r.packet.index);
    {
        std::istringstream in(tshark.text);
        uint32_t flow = 0;
        const std::string kIdx = "(Example Enterprise Number for Documentation Use) Type 3: Value (hex bytes): ";
        for (std::string line; std::getline(in, line);) {
            if (const auto at = line.find("Flow Id: "); at != std::string::npos)
                flow = uint32_t(std::stoul(line.substr(at + 9)));
            else if (const auto at2 = line.find(kIdx); at2 != std::string::npos) {
                std::string hex = line.substr(at2 + kIdx.size());
                std::erase(hex, ' ');
                EXPECT_EQ(hex.size(), 8u) << line;
                tshark_idx.emplace_back(flow, uint32_t(std::stoul(hex, nullptr, 16)));
            }
        }
    }
    EXPECT_EQ(tshark_idx, sent_idx);
    EXPECT_EQ(count("Type 3: Value (hex bytes): ff ff ff ff"), 1u);  // flow 7, before the wrap
    if (HasFailure()) std::fprintf(stderr, "tshark output kept in %s\n", sb.dir().c_str());
}

// Loss and watermark records (templates 260 and 261): angel-sink prints exactly the JSON lines
// specified for them, and tshark decodes their messages without a complaint.
TEST(SinkTshark, LossAndWatermarkRecordsDecodeInSinkAndTshark) {
    ASSERT_TRUE(fs::exists(bin_dir() + "/angel-sink")) << "build angel-sink first";
    Sandbox sb;
    pid_t sink = 0;
    const uint16_t port = start_sink(sb, &sink);
    ASSERT_NE(port, 0) << read_file(sb.dir() / "sink.err");
    const pid_t cap = start_capture(sb, port);

    const auto records = make_loss_and_watermark_records();
    std::atomic<uint64_t> seq{0};
    IpfixExporterCounters counters;
    {
        IpfixExporterConfig cfg;
        cfg.host = "127.0.0.1";
        cfg.port = port;
        cfg.mtu = 576;
        IpfixExporter ex(cfg, &seq);
        for (const Record& r : records) ex.add(r);
        // netd's own loss record (HA master_gap), in stream order after the rest.
        ex.add_loss(LossCause::master_gap, 1717171718000000000ull, 1717171719000000000ull, 0);
        ex.flush();
        ex.send_templates();
        counters = ex.counters();
    }
    EXPECT_EQ(counters.send_errors, 0u);
    EXPECT_EQ(counters.records_sent, records.size() + 1);

    std::vector<std::string> want;
    for (const auto& r : records) want.push_back(expected_json(r));
    want.push_back("{\"type\":\"loss\",\"cause\":\"master_gap\",\"first_ns\":1717171718000000000,"
                   "\"last_ns\":1717171719000000000,\"packets\":0}");
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (read_lines(sb.dir() / "records.json").size() < want.size() && std::chrono::steady_clock::now() < end)
        std::this_thread::sleep_for(20ms);
    EXPECT_EQ(sb.stop(sink, SIGTERM), 0);
    const auto got = read_lines(sb.dir() / "records.json");
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "line " << i;
    const std::string summary = read_file(sb.dir() / "sink.out");
    // 7 loss records; packets 10 + 20 + 30 thousand-odd (pcap, if, ring) and 0 for the gaps.
    EXPECT_NE(summary.find("loss 7 (57003 packets), watermark 6"), std::string::npos) << summary;

    if (cap == 0 || !have_program("tshark")) GTEST_SKIP() << "no loopback capture or no tshark";
    std::this_thread::sleep_for(200ms);
    sb.stop(cap, SIGINT);
    const TsharkText tshark(sb.dir(), port);
    ASSERT_TRUE(tshark.ran);
    auto count = [&](const std::string& needle) { return tshark.count(needle); };
    EXPECT_EQ(count("Cisco NetFlow/IPFIX"), counters.messages_sent);
    EXPECT_EQ(count("Malformed"), 0u);
    EXPECT_EQ(count("Expert Info"), 0u);
    EXPECT_EQ(count("no template"), 0u);
    EXPECT_EQ(count("Template not found"), 0u);
    EXPECT_EQ(count("Unknown"), 0u);
    EXPECT_EQ(count("Template Id: 260"), 2u);  // start + explicit refresh
    EXPECT_EQ(count("Template Id: 261"), 2u);
    // Every loss record: its cause (PEN 32473 element 4) and its dropped-packet count.
    EXPECT_EQ(count("(Example Enterprise Number for Documentation Use) Type 4: Value (hex bytes): "), 7u);
    EXPECT_EQ(count("Dropped Packets: "), 7u);
    if (HasFailure()) std::fprintf(stderr, "tshark output kept in %s\n", sb.dir().c_str());
}

// Garbage, data before templates and a sequence gap: counted and reported, never a crash.
TEST(SinkTshark, SinkSurvivesMalformedInputAndReportsGaps) {
    ASSERT_TRUE(fs::exists(bin_dir() + "/angel-sink")) << "build angel-sink first";
    Sandbox sb;
    pid_t sink = 0;
    const uint16_t port = start_sink(sb, &sink, {"--idle", "1"});
    ASSERT_NE(port, 0) << read_file(sb.dir() / "sink.err");

    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    auto send_raw = [&](const std::vector<uint8_t>& m) {
        sendto(fd, m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        std::this_thread::sleep_for(1ms);
    };
    send_raw({});
    send_raw({1, 2, 3});
    send_raw({0, 10, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});  // length past the end
    send_raw({0, 10, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 8, 1, 2, 3, 4});  // no template
    std::vector<uint8_t> junk(1400);
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = uint8_t(i * 37);
    send_raw(junk);

    const auto records = make_records();
    std::atomic<uint64_t> seq{0};
    {
        IpfixExporterConfig cfg;
        cfg.host = "127.0.0.1";
        cfg.port = port;
        IpfixExporter ex(cfg, &seq);
        for (size_t i = 0; i < 10; ++i) ex.add(records[i]);
        ex.flush();
        seq += 1000;  // as if a 1000-record message had been lost
        for (size_t i = 10; i < 20; ++i) ex.add(records[i]);
        ex.flush();
    }
    close(fd);
    EXPECT_EQ(sb.wait_exit(sink, 10s), 0);  // --idle 1
    EXPECT_EQ(read_lines(sb.dir() / "records.json").size(), 20u);
    const std::string err = read_file(sb.dir() / "sink.err");
    EXPECT_NE(err.find("1000 records lost"), std::string::npos) << err;
    EXPECT_NE(err.find("malformed message"), std::string::npos) << err;
    const std::string summary = read_file(sb.dir() / "sink.out");
    EXPECT_NE(summary.find("1 gaps, 1000 records lost"), std::string::npos) << summary;
    EXPECT_NE(summary.find("unknown template"), std::string::npos) << summary;
}

}  // namespace
}  // namespace angel

namespace angel {
namespace {

// The process state letter of /proc/PID/stat ('T' stopped, 'S' sleeping, ...); 0 if unreadable.
char process_state(pid_t pid) {
    const std::string s = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = s.rfind(')');
    return close != std::string::npos && close + 2 < s.size() ? s[close + 2] : 0;
}

// Issue 13, item 4: what the kernel has queued for the sink when SIGTERM arrives was sent before
// the stop, so it is in the summary and the output. The sink is stopped (SIGSTOP) while it waits
// in poll(); the records are sent; SIGTERM then SIGCONT: poll() returns EINTR with every datagram
// still queued, which a sink that leaves at once never reads.
TEST(SinkTshark, SinkReadsWhatIsQueuedBeforeExitingOnASignal) {
    ASSERT_TRUE(fs::exists(bin_dir() + "/angel-sink")) << "build angel-sink first";
    for (const int sig : {SIGTERM, SIGINT}) {
        Sandbox sb;
        pid_t sink = 0;
        const uint16_t port = start_sink(sb, &sink);
        ASSERT_NE(port, 0) << read_file(sb.dir() / "sink.err");
        std::this_thread::sleep_for(100ms);  // in its poll() by now
        ASSERT_EQ(kill(sink, SIGSTOP), 0);
        const auto until = std::chrono::steady_clock::now() + 5s;
        while (process_state(sink) != 'T' && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(5ms);
        ASSERT_EQ(process_state(sink), 'T');

        const auto records = make_records();
        std::atomic<uint64_t> seq{0};
        IpfixExporterCounters counters;
        {
            IpfixExporterConfig cfg;
            cfg.host = "127.0.0.1";
            cfg.port = port;
            IpfixExporter ex(cfg, &seq);
            for (const Record& r : records) ex.add(r);
            ex.flush();
            counters = ex.counters();
        }
        ASSERT_EQ(counters.records_sent, records.size());
        ASSERT_EQ(counters.send_errors, 0u);
        ASSERT_EQ(kill(sink, sig), 0);
        ASSERT_EQ(kill(sink, SIGCONT), 0);
        EXPECT_EQ(sb.wait_exit(sink, 10s), 0) << read_file(sb.dir() / "sink.err");
        EXPECT_EQ(read_lines(sb.dir() / "records.json").size(), records.size()) << "signal " << sig;
        const std::string summary = read_file(sb.dir() / "sink.out");
        EXPECT_NE(summary.find("records          " + std::to_string(records.size())), std::string::npos) << summary;
    }
}

}  // namespace
}  // namespace angel
