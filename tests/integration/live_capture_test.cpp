// Live capture end to end: tcpreplay sends real pcaps over a veth into the meter, and every
// packet sent is either a packet record at the sink or counted as dropped at a named place.
//
// Layout (all made by the test, all removed at the end, even on failure):
//   sender netns: tcpreplay -i veth-s ──veth──> meter netns: veth-m
//                                               angel-ctld (capd on veth-m, procd, netd)
//                                               └─ IPFIX over lo ─> angel-sink --out sink.json
// The veth carries only what tcpreplay sends: the fixture turns IPv6 off on both ends before
// they come up and sets no address, and the test checks it (veth-m received exactly the packets
// tcpreplay sent, and sent nothing itself).
//
// The chain of exact equalities asserted (no tolerance anywhere):
//   sent (tcpreplay)        == veth-m rx_packets delta          the link delivered every frame
//   sent                    == captured + pcap_dropped + pcap_ifdropped
//   pcap_received           == captured + pcap_dropped          nothing left unread at stop
//   captured                == queued + ring_dropped
//   procd_packets           == queued
//   procd_packets           == ip_packets + not_ip + malformed
//   sink packet records     == ip_packets                       (and no IPFIX sequence gap)
//   sink flow_start/flow_end== flows_started/flows_ended, all flows ended
//   sink records            == records_sent
// and, when nothing was dropped, ip_packets == tshark's IP frame count x loops and
// not_ip + malformed == the other frames x loops.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/test_support.hpp"
#include "netns_fixture.hpp"

namespace fs = std::filesystem;
using angel::netns::CommandResult;
using angel::netns::NetnsLab;
using angel::netns::NetnsPair;

namespace {

using Clock = std::chrono::steady_clock;

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

// Next to this test binary (build, build-clang, build-san), unless ANGEL_BIN_DIR says otherwise.
std::string bin_dir() { return angel::itest::bin_dir().string(); }
std::string source_dir() { return env_or("ANGEL_SOURCE_DIR", ANGEL_SOURCE_DIR); }

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A background process with stdout/stderr in files; SIGTERM then SIGKILL if still running at
// destruction, so a failing assertion never leaves it behind.
class Child {
public:
    Child(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            const int in_fd = open("/dev/null", O_RDONLY);
            const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (in_fd < 0 || out_fd < 0 || err_fd < 0) _exit(126);
            dup2(in_fd, 0);
            dup2(out_fd, 1);
            dup2(err_fd, 2);
            std::vector<char*> args;
            for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            execvp(args[0], args.data());
            _exit(127);
        }
    }
    ~Child() { terminate(5.0); }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    bool running() {
        if (exited_) return false;
        if (waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
        return !exited_;
    }
    bool wait(double timeout_s) {
        const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
        while (running()) {
            if (Clock::now() >= deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return true;
    }
    void signal(int sig) {
        if (running()) kill(pid_, sig);
    }
    void terminate(double grace_s) {
        if (!running()) return;
        kill(pid_, SIGTERM);
        if (wait(grace_s)) return;
        kill(pid_, SIGKILL);
        waitpid(pid_, &status_, 0);
        exited_ = true;
    }
    int exit_code() const { return exited_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    int status_ = 0;
    bool exited_ = false;
};

// Waits until a file contains text; false on timeout or when `alive` says the writer is gone.
template <typename Alive>
bool wait_for_text(const fs::path& file, const std::string& text, double timeout_s, Alive alive) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
        if (read_text(file).find(text) != std::string::npos) return true;
        if (Clock::now() >= deadline || !alive()) return read_text(file).find(text) != std::string::npos;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Removes a directory tree (and the instance's shared memory segment) whatever happens.
struct Scratch {
    fs::path dir;
    std::string instance;
    Scratch() {
        static std::atomic<unsigned> seq{0};
        instance = "lt" + std::to_string(getpid()) + "x" + std::to_string(seq++);
        sweep_stale();
        std::string tmpl = "/tmp/angel-live-" + std::to_string(getpid()) + "-XXXXXX";
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        dir = tmpl;
    }
    // Directories of a crashed run: /tmp/angel-live-<pid>-* whose pid no longer runs.
    static void sweep_stale() {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/tmp", ec)) {
            const std::string name = e.path().filename().string();
            if (name.rfind("angel-live-", 0) != 0) continue;
            const long pid = std::strtol(name.c_str() + 11, nullptr, 10);
            if (pid > 0 && pid != getpid() && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
                fs::remove_all(e.path(), ec);
        }
    }
    ~Scratch() {
        std::error_code ec;
        fs::remove_all(dir, ec);
        fs::remove("/dev/shm/angel." + instance, ec);
    }
};

uint64_t count_lines(const std::string& s) {
    uint64_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

struct PcapCounts {
    uint64_t frames = 0;
    uint64_t ip = 0;  // frames tshark decodes as IPv4 or IPv6
};

PcapCounts tshark_counts(const std::string& file) {
    PcapCounts c;
    CommandResult all = angel::netns::run({"tshark", "-n", "-r", file, "-T", "fields", "-e", "frame.number"}, 120);
    CommandResult ip = angel::netns::run(
        {"tshark", "-n", "-r", file, "-Y", "ip || ipv6", "-T", "fields", "-e", "frame.number"}, 120);
    if (!all.ok() || !ip.ok()) throw std::runtime_error("tshark failed on " + file + ": " + all.describe());
    c.frames = count_lines(all.out);
    c.ip = count_lines(ip.out);
    return c;
}

// "key=value key=value" from ctld's final line.
std::map<std::string, uint64_t> parse_counters(const std::string& line) {
    std::map<std::string, uint64_t> m;
    static const std::regex kv(R"(([a-z_]+)=(\d+))");
    for (auto it = std::sregex_iterator(line.begin(), line.end(), kv); it != std::sregex_iterator(); ++it)
        m[(*it)[1]] = std::stoull((*it)[2]);
    return m;
}

uint64_t find_number(const std::string& text, const std::string& pattern) {
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(pattern))) return UINT64_MAX;
    return std::stoull(m[1]);
}

struct LinkStats {
    uint64_t m_rx = 0, m_rx_dropped = 0, m_tx = 0, s_tx = 0, s_tx_dropped = 0;
    static LinkStats read(const NetnsPair& lab) {
        LinkStats l;
        l.m_rx = NetnsLab::link_stat(lab.meter(), NetnsPair::kMeterIf, "rx_packets");
        l.m_rx_dropped = NetnsLab::link_stat(lab.meter(), NetnsPair::kMeterIf, "rx_dropped");
        l.m_tx = NetnsLab::link_stat(lab.meter(), NetnsPair::kMeterIf, "tx_packets");
        l.s_tx = NetnsLab::link_stat(lab.sender(), NetnsPair::kSenderIf, "tx_packets");
        l.s_tx_dropped = NetnsLab::link_stat(lab.sender(), NetnsPair::kSenderIf, "tx_dropped");
        return l;
    }
    LinkStats operator-(const LinkStats& b) const {
        return {m_rx - b.m_rx, m_rx_dropped - b.m_rx_dropped, m_tx - b.m_tx, s_tx - b.s_tx,
                s_tx_dropped - b.s_tx_dropped};
    }
};

struct LiveCase {
    const char* name;
    int loops;              // tcpreplay --loop over the whole file list
    bool topspeed;          // else --pps=100000
    std::string capture_cfg;  // more keys in the meter's capture group
    std::string top_cfg;      // more top-level settings
    int pause_procd_ms = 0;   // SIGSTOP procd this long while traffic flows: the ring fills
    int stop_after_ms = 0;    // stop the meter this long after tcpreplay starts, mid-traffic
};

const std::vector<std::string>& pcap_files() {
    static const std::vector<std::string> files = {
        source_dir() + "/../shared/pcaps/real/ndpi__teams.pcap",
        source_dir() + "/../shared/pcaps/real/ndpi__whatsapp_login_call.pcap",
    };
    return files;
}

void run_live(const LiveCase& lc) {
    if (const std::string why = angel::netns::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    for (const char* tool : {"tcpreplay", "tshark"})
        if (angel::netns::run({"sh", "-c", std::string("command -v ") + tool}, 10).status != 0)
            GTEST_SKIP() << tool << " is not installed";
    for (const auto& f : pcap_files())
        if (!fs::exists(f)) GTEST_SKIP() << "missing " << f;
    const std::string bins = bin_dir();
    ASSERT_TRUE(fs::exists(bins + "/angel-ctld")) << "no angel-ctld in " << bins << " (set ANGEL_BIN_DIR)";

    // What the files hold, by tshark (once per run of the binary).
    static PcapCounts per_loop;
    if (per_loop.frames == 0) {
        for (const auto& f : pcap_files()) {
            const PcapCounts c = tshark_counts(f);
            per_loop.frames += c.frames;
            per_loop.ip += c.ip;
        }
    }
    const uint64_t loops = static_cast<uint64_t>(lc.loops);

    NetnsPair lab("lt");  // declared first: destroyed last, after the processes in it
    Scratch scratch;
    const fs::path dir = scratch.dir;
    {
        std::ofstream conf(dir / "meter.conf");
        conf << "instance = \"" << scratch.instance << "\";\n"
             << "runtime_dir = \"" << (dir / "run").string() << "\";\n"
             << "capture = { interface = \"" << NetnsPair::kMeterIf << "\"; " << lc.capture_cfg << " };\n"
             << "classifier = { host = \"127.0.0.1\"; port = 4739; };\n"
             << lc.top_cfg << "\n";
    }

    const LinkStats before = LinkStats::read(lab);

    // The sink exits by itself 3 s after the last datagram: every datagram of the stop is read.
    Child sink(NetnsLab::in(lab.meter(), {bins + "/angel-sink", "--listen", "127.0.0.1:4739", "--idle", "3",
                                          "--out", (dir / "sink.json").string()}),
               dir / "sink.summary", dir / "sink.err");
    ASSERT_TRUE(wait_for_text(dir / "sink.err", "listening on", 10, [&] { return sink.running(); }))
        << read_text(dir / "sink.err");

    Child meter(NetnsLab::in(lab.meter(), {bins + "/angel-ctld", "-f", "-c", (dir / "meter.conf").string()}),
                dir / "ctld.out", dir / "ctld.err");
    ASSERT_TRUE(wait_for_text(dir / "ctld.err", "angel-capd ready", 15, [&] { return meter.running(); }))
        << "the meter did not start capturing:\n"
        << read_text(dir / "ctld.err");

    std::vector<std::string> replay = {"tcpreplay", "-i", NetnsPair::kSenderIf,
                                       lc.topspeed ? "--topspeed" : "--pps=100000",
                                       "--loop=" + std::to_string(lc.loops), "--duration=60"};
    for (const auto& f : pcap_files()) replay.push_back(f);
    const auto t0 = Clock::now();
    Child sender(NetnsLab::in(lab.sender(), replay), dir / "tcpreplay.out", dir / "tcpreplay.err");
    if (lc.pause_procd_ms > 0) {
        const uint64_t procd = find_number(read_text(dir / "ctld.err"), R"(started angel-procd \(pid (\d+)\))");
        ASSERT_NE(procd, UINT64_MAX) << read_text(dir / "ctld.err");
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        kill(static_cast<pid_t>(procd), SIGSTOP);
        std::this_thread::sleep_for(std::chrono::milliseconds(lc.pause_procd_ms));
        kill(static_cast<pid_t>(procd), SIGCONT);
    }
    if (lc.stop_after_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(lc.stop_after_ms));
        ASSERT_TRUE(sender.running()) << "tcpreplay ended before the stop: make the run longer";
        meter.signal(SIGTERM);
    }
    ASSERT_TRUE(sender.wait(120)) << "tcpreplay did not finish within 120 s";
    const double send_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string tr_text = read_text(dir / "tcpreplay.out") + read_text(dir / "tcpreplay.err");
    ASSERT_EQ(sender.exit_code(), 0) << "tcpreplay:\n" << tr_text;
    const uint64_t sent = find_number(tr_text, R"(Successful packets:\s+(\d+))");
    const uint64_t failed = find_number(tr_text, R"(Failed packets:\s+(\d+))");
    ASSERT_NE(sent, UINT64_MAX) << "no packet count in tcpreplay's output:\n" << tr_text;

    // Let capd read the tail of the traffic (pcap timeout 10 ms), then stop in order.
    if (lc.stop_after_ms == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        meter.signal(SIGTERM);
    }
    ASSERT_TRUE(meter.wait(60)) << "angel-ctld did not stop within 60 s:\n" << read_text(dir / "ctld.err");
    EXPECT_EQ(meter.exit_code(), 0) << read_text(dir / "ctld.err");
    ASSERT_TRUE(sink.wait(30)) << "angel-sink did not go idle within 30 s";
    EXPECT_EQ(sink.exit_code(), 0) << read_text(dir / "sink.err");
    const LinkStats link = LinkStats::read(lab) - before;

    // The meter's own account.
    const std::string ctld_err = read_text(dir / "ctld.err");
    const auto stop_at = ctld_err.rfind(" stopped: ");
    ASSERT_NE(stop_at, std::string::npos) << "no final counter line:\n" << ctld_err;
    const std::string stop_line = ctld_err.substr(stop_at, ctld_err.find('\n', stop_at) - stop_at);
    auto C = parse_counters(stop_line);
    for (const char* k : {"captured", "queued", "ring_dropped", "pcap_received", "pcap_dropped", "pcap_ifdropped",
                          "procd_packets", "ip_packets", "not_ip", "malformed", "flows_started", "flows_ended",
                          "records_sent", "send_errors"})
        ASSERT_TRUE(C.count(k)) << "no " << k << " in: " << stop_line;

    // The sink's account.
    uint64_t rec_packet = 0, rec_start = 0, rec_end = 0, rec_other = 0;
    {
        std::ifstream in(dir / "sink.json");
        std::string line;
        while (std::getline(in, line)) {
            if (line.find("\"type\":\"packet\"") != std::string::npos)
                ++rec_packet;
            else if (line.find("\"type\":\"flow_start\"") != std::string::npos)
                ++rec_start;
            else if (line.find("\"type\":\"flow_end\"") != std::string::npos)
                ++rec_end;
            else
                ++rec_other;
        }
    }
    const std::string summary = read_text(dir / "sink.summary");
    const uint64_t gaps = find_number(summary, R"(sequence\s+(\d+) gaps)");

    std::printf(
        "[ live    ] %s: %llu loops of %llu frames (%llu IP) in %.2f s%s\n"
        "[ live    ] tcpreplay: sent %llu, failed %llu | veth-m: rx %llu, rx_dropped %llu, tx %llu | "
        "veth-s: tx %llu, tx_dropped %llu\n"
        "[ live    ] capd: pcap_received %llu, captured %llu, pcap_dropped %llu, pcap_ifdropped %llu, "
        "queued %llu, ring_dropped %llu\n"
        "[ live    ] procd: packets %llu, ip %llu, not_ip %llu, malformed %llu, flows %llu started / %llu ended\n"
        "[ live    ] netd: records_sent %llu, messages %llu, send_errors %llu\n"
        "[ live    ] sink: packet %llu, flow_start %llu, flow_end %llu, other %llu, sequence gaps %llu\n",
        lc.name, static_cast<unsigned long long>(loops), static_cast<unsigned long long>(per_loop.frames),
        static_cast<unsigned long long>(per_loop.ip), send_s,
        lc.topspeed ? " (top speed)" : " (100k pps)",
        static_cast<unsigned long long>(sent), static_cast<unsigned long long>(failed),
        static_cast<unsigned long long>(link.m_rx), static_cast<unsigned long long>(link.m_rx_dropped),
        static_cast<unsigned long long>(link.m_tx), static_cast<unsigned long long>(link.s_tx),
        static_cast<unsigned long long>(link.s_tx_dropped), static_cast<unsigned long long>(C["pcap_received"]),
        static_cast<unsigned long long>(C["captured"]), static_cast<unsigned long long>(C["pcap_dropped"]),
        static_cast<unsigned long long>(C["pcap_ifdropped"]), static_cast<unsigned long long>(C["queued"]),
        static_cast<unsigned long long>(C["ring_dropped"]), static_cast<unsigned long long>(C["procd_packets"]),
        static_cast<unsigned long long>(C["ip_packets"]), static_cast<unsigned long long>(C["not_ip"]),
        static_cast<unsigned long long>(C["malformed"]), static_cast<unsigned long long>(C["flows_started"]),
        static_cast<unsigned long long>(C["flows_ended"]), static_cast<unsigned long long>(C["records_sent"]),
        static_cast<unsigned long long>(C["messages"]), static_cast<unsigned long long>(C["send_errors"]),
        static_cast<unsigned long long>(rec_packet), static_cast<unsigned long long>(rec_start),
        static_cast<unsigned long long>(rec_end), static_cast<unsigned long long>(rec_other),
        static_cast<unsigned long long>(gaps));
    std::fflush(stdout);

    // tcpreplay sent the whole bounded run, and the link carried exactly that, nothing more.
    EXPECT_EQ(failed, 0u) << tr_text;
    EXPECT_EQ(sent, per_loop.frames * loops) << tr_text;
    EXPECT_EQ(link.m_rx, sent) << "veth-m received other frames than tcpreplay's (or lost some)";
    EXPECT_EQ(link.m_tx, 0u) << "the meter namespace sent frames on the test link";

    // Every packet sent was captured or dropped by the kernel capture, by name. Stopped
    // mid-traffic, the packets that came after the capture closed were not seen at all.
    if (lc.stop_after_ms == 0) {
        EXPECT_EQ(sent, C["captured"] + C["pcap_dropped"] + C["pcap_ifdropped"]);
    } else {
        EXPECT_GT(sent, C["captured"] + C["pcap_dropped"] + C["pcap_ifdropped"]);
    }
    EXPECT_EQ(C["pcap_received"], C["captured"] + C["pcap_dropped"]) << "packets received but never read";
    // Every captured packet was queued to procd or dropped at the full ring.
    EXPECT_EQ(C["captured"], C["queued"] + C["ring_dropped"]);
    EXPECT_EQ(C["procd_packets"], C["queued"]);
    EXPECT_EQ(C["procd_packets"], C["ip_packets"] + C["not_ip"] + C["malformed"]);
    // Every IP packet procd saw is a packet record at the sink.
    EXPECT_EQ(rec_packet, C["ip_packets"]);
    EXPECT_EQ(gaps, 0u) << summary;
    EXPECT_EQ(rec_start, C["flows_started"]);
    EXPECT_EQ(rec_end, C["flows_ended"]);
    EXPECT_EQ(C["flows_started"], C["flows_ended"]) << "flows still open after the stop";
    EXPECT_EQ(rec_packet + rec_start + rec_end, C["records_sent"]);
    EXPECT_EQ(rec_other, 0u);
    EXPECT_EQ(C["send_errors"], 0u);
    // Nothing dropped: the meter saw exactly what tshark sees in the files.
    if (lc.pause_procd_ms > 0) {
        EXPECT_GT(C["ring_dropped"], 0u) << "procd paused, yet the ring never filled";
    }
    if (lc.stop_after_ms == 0 && C["pcap_dropped"] == 0 && C["pcap_ifdropped"] == 0 && C["ring_dropped"] == 0) {
        EXPECT_EQ(C["ip_packets"], per_loop.ip * loops);
        EXPECT_EQ(C["not_ip"] + C["malformed"], (per_loop.frames - per_loop.ip) * loops);
    }
    if (::testing::Test::HasFailure()) std::printf("%s\n", ctld_err.c_str());
}

}  // namespace

// About 1.4 s at 100k packets/s: 50 loops of two real captures (2793 frames, 44 not IP).
TEST(LiveCapture, HundredKppsEveryPacketAccounted) {
    run_live({"HundredKppsEveryPacketAccounted", 50, false, "", ""});
}

// About 3 s at 100k packets/s with the default buffers: drops, if any, are reported and accounted.
TEST(LiveCapture, HundredKppsThreeSecondsDropsAccounted) {
    run_live({"HundredKppsThreeSecondsDropsAccounted", 110, false, "", ""});
}

// As fast as tcpreplay can send, into the smallest kernel buffer (512 KiB), the smallest packet
// ring (64 KiB) and whole frames (snaplen 65535), with procd frozen (SIGSTOP) for 300 ms so that
// the packet ring fills: drops at both places, and the accounting must still be exact.
TEST(LiveCapture, TopSpeedSmallBuffersDropsAccounted) {
    run_live({"TopSpeedSmallBuffersDropsAccounted", 100, true, "buffer_size = 524288; snaplen = 65535;",
              "shm = { packet_ring = 65536; };", 300, 0});
}

// The meter stopped while traffic still flows (100k packets/s): what the kernel had already
// accepted for the capture is read and counted before capd exits (pcap_received equals
// captured + pcap_dropped), and the chain below capd stays exact.
TEST(LiveCapture, StopUnderLoadLeavesNothingUncounted) {
    run_live({"StopUnderLoadLeavesNothingUncounted", 40, false, "", "", 0, 600});
}
