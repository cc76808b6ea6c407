// Supervision end to end (issue 4): the real angel-ctld with its three stages in a test
// namespace, live traffic from tcpreplay over a veth, IPFIX into angel-sink on the namespace's
// loopback.
//
//   sender netns: tcpreplay -i veth-s ──veth──> meter netns: veth-m
//                                               angel-ctld -f (capd on veth-m, procd, netd)
//                                               └─ IPFIX over lo ─> angel-sink(s) --out FILE
//
// What is asserted:
//  - KillUnderLoad: procd and netd are each killed (SIGKILL) three times at random moments during
//    about 20 s of 100k packets/s. No packet record is lost: the distinct packet records at the
//    sink equal procd's ip_packets exactly. Duplicates are only those the code allows: procd
//    repeats at most its one uncommitted batch (kProcdBatch packets) per kill and counts each
//    repeat (`repeated`); netd re-sends at most what it had sent but not yet committed, which is
//    one ring batch plus the one message pending before it (kNetdBatch + one message) per kill.
//    Flow identity survives: after exact duplicates are removed, every packet record belongs to
//    a flow that is live at that point of the stream, no flow starts again while live, no flow
//    ends twice, and a 5-tuple always gets the same flow ID. Status counts every restart.
//  - RestartUnderLoad: the same with `angelctl restart procd|netd`: SIGTERM stops a stage at a
//    batch boundary, so not one duplicate and not one repeat; restarts counted, last exit 0.
//  - CrashLoopBackoff: netd cannot resolve its classifier and exits 68 at each start: the log
//    shows the backoff doubling (0.5, 1, 2, 4 s), status shows "backoff", then "crash-looping",
//    restarts increasing and last_exit "exit 68"; capd and procd are untouched; SIGTERM then stops
//    the meter at once (the crash-looping netd is not started again during the stop).
//  - HangDetected: procd frozen with SIGSTOP is killed after supervisor.hang_timeout and restarted.
//  - ReloadMovesClassifier: `angelctl reload` and SIGHUP move the export between two sinks while
//    traffic flows; the two sinks together hold every packet record exactly once; a bad file is
//    refused and changes nothing.
// Everything (namespaces, processes in them, temp dir, /dev/shm segment) is removed on failure too.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "netns_fixture.hpp"

namespace fs = std::filesystem;
using angel::netns::CommandResult;
using angel::netns::NetnsLab;
using angel::netns::NetnsPair;

namespace {

using Clock = std::chrono::steady_clock;

// Bounds taken from the code (procd/main.cpp kBatch, netd/main.cpp kBatch); a packet record is
// 16 octets and a message holds at most (1500 - 20 - 8 - 16 - 4) / 16 = 90 of them.
constexpr uint64_t kProcdBatch = 256;
constexpr uint64_t kNetdBatch = 512;
constexpr uint64_t kRecordsPerMessage = 90;

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}
std::string bin_dir() { return env_or("ANGEL_BIN_DIR", std::string(ANGEL_SOURCE_DIR) + "/build/bin"); }
std::string source_dir() { return env_or("ANGEL_SOURCE_DIR", ANGEL_SOURCE_DIR); }

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void write_text(const fs::path& p, const std::string& s) {
    const fs::path tmp = p.string() + ".new";
    {
        std::ofstream out(tmp);
        out << s;
    }
    fs::rename(tmp, p);  // ctld never reads half a file
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// A background process, stdout/stderr in files; SIGTERM then SIGKILL when destroyed running.
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
        const auto t0 = Clock::now();
        while (running()) {
            if (since(t0) >= timeout_s) return false;
            sleep_s(0.02);
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

bool wait_until(const std::function<bool()>& pred, double timeout_s, double step_s = 0.02) {
    const auto t0 = Clock::now();
    for (;;) {
        if (pred()) return true;
        if (since(t0) >= timeout_s) return pred();
        sleep_s(step_s);
    }
}

size_t count_of(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
    return n;
}

// A temp dir (0755, so that only the meter's own permissions decide access) and the instance's
// segment, removed whatever happens. A crashed run's dirs (pid no longer running) go at start.
struct Scratch {
    fs::path dir;
    std::string instance;
    Scratch() {
        static std::atomic<unsigned> seq{0};
        instance = "sv" + std::to_string(getpid()) + "x" + std::to_string(seq++);
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/tmp", ec)) {
            const std::string name = e.path().filename().string();
            if (name.rfind("angel-sup-", 0) != 0) continue;
            const long pid = std::strtol(name.c_str() + 10, nullptr, 10);
            if (pid > 0 && pid != getpid() && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
                fs::remove_all(e.path(), ec);
        }
        std::string tmpl = "/tmp/angel-sup-" + std::to_string(getpid()) + "-XXXXXX";
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        dir = tmpl;
        chmod(dir.c_str(), 0755);
    }
    ~Scratch() {
        std::error_code ec;
        if (!std::getenv("ANGEL_KEEP_TEST_DIRS")) fs::remove_all(dir, ec);
        fs::remove("/dev/shm/angel." + instance, ec);
    }
};

std::map<std::string, uint64_t> parse_counters(const std::string& line) {
    std::map<std::string, uint64_t> m;
    static const std::regex kv(R"(([a-z_]+)=(\d+))");
    for (auto it = std::sregex_iterator(line.begin(), line.end(), kv); it != std::sregex_iterator(); ++it)
        m[(*it)[1]] = std::stoull((*it)[2]);
    return m;
}

// ---- angelctl status --json ----------------------------------------------------------------

struct StageView {
    long pid = -1;
    std::string state;
    unsigned restarts = 0;
    std::string last_exit;
};
struct StatusView {
    bool ok = false;
    unsigned generation = 0;
    std::map<std::string, StageView> stages;
    std::string raw;
};

// angelctl through the socket (-s): it works whatever state the configuration file is in.
CommandResult angelctl(const fs::path& socket, std::vector<std::string> args) {
    args.insert(args.begin(), {bin_dir() + "/angelctl", "-s", socket.string()});
    return angel::netns::run(args, 15);
}

StatusView get_status(const fs::path& socket) {
    StatusView v;
    const CommandResult r = angelctl(socket, {"status", "--json"});
    v.raw = r.out + r.err;
    if (!r.ok()) return v;
    static const std::regex stage_re(
        R"re(\{"stage":"(\w+)","pid":(-?\d+),"state":"([\w-]+)","uptime_s":[^,]*,"restarts":(\d+),"last_exit":"([^"]*)")re");
    for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), stage_re); it != std::sregex_iterator(); ++it) {
        StageView s;
        s.pid = std::stol((*it)[2]);
        s.state = (*it)[3];
        s.restarts = static_cast<unsigned>(std::stoul((*it)[4]));
        s.last_exit = (*it)[5];
        v.stages[(*it)[1]] = s;
    }
    std::smatch m;
    if (std::regex_search(r.out, m, std::regex(R"("config_generation":(\d+))"))) v.generation = std::stoul(m[1]);
    v.ok = v.stages.size() == 3;
    return v;
}

// ---- the sink's output: duplicates and flow identity -------------------------------------------

struct SinkCheck {
    uint64_t packets = 0, starts = 0, ends = 0, other = 0;       // lines as received
    uint64_t dup_packets = 0, dup_starts = 0, dup_ends = 0;      // exact repeats of an earlier line
    uint64_t packet_not_live = 0;    // packet record for a flow ID that is not live there
    uint64_t start_while_live = 0;   // a second, different flow_start for a live flow ID
    uint64_t end_not_live = 0;       // flow_end for a flow ID that is not live
    uint64_t tuple_restarted = 0;    // a 5-tuple started again while its flow was live (new ID)
    uint64_t live_at_end = 0;
    uint64_t min_packet_ts = UINT64_MAX, max_packet_ts = 0;
    std::vector<uint64_t> packet_ts;  // filled when asked
    std::vector<std::string> examples;
    uint64_t distinct_packets() const { return packets - dup_packets; }
    uint64_t distinct_records() const { return packets + starts + ends - dup_packets - dup_starts - dup_ends; }
    void example(const std::string& s) {
        if (examples.size() < 5) examples.push_back(s);
    }
};

std::string json_str(const std::string& line, const std::string& key) {
    const std::string k = "\"" + key + "\":";
    const size_t at = line.find(k);
    if (at == std::string::npos) return {};
    size_t b = at + k.size(), e = b;
    if (line[b] == '"') {
        ++b;
        e = line.find('"', b);
    } else {
        e = line.find_first_of(",}", b);
    }
    return line.substr(b, e - b);
}

SinkCheck check_sink(const std::vector<fs::path>& files, bool keep_ts = false) {
    SinkCheck c;
    std::unordered_set<uint64_t> seen;  // hashes of every line so far
    std::unordered_map<std::string, std::string> live;  // flow ID -> its flow_start line
    std::unordered_map<std::string, std::string> tuple_of;      // live flow ID -> its 5-tuple
    std::unordered_map<std::string, std::string> live_tuples;   // 5-tuple -> its live flow ID
    seen.reserve(1 << 22);
    const std::hash<std::string> h;
    for (const auto& f : files) {
        std::ifstream in(f);
        std::string line;
        while (std::getline(in, line)) {
            const bool dup = !seen.insert(h(line)).second;
            const std::string type = json_str(line, "type");
            const std::string id = json_str(line, "flow_id");
            if (type == "packet") {
                ++c.packets;
                const uint64_t ts = std::stoull(json_str(line, "ts_ns"));
                c.min_packet_ts = std::min(c.min_packet_ts, ts);
                c.max_packet_ts = std::max(c.max_packet_ts, ts);
                if (keep_ts) c.packet_ts.push_back(ts);
                if (dup) {
                    ++c.dup_packets;
                } else if (!live.count(id)) {
                    ++c.packet_not_live;
                    c.example("packet of a flow that is not live: " + line);
                }
            } else if (type == "flow_start") {
                ++c.starts;
                if (dup) {
                    ++c.dup_starts;
                    continue;
                }
                if (live.count(id)) {
                    ++c.start_while_live;
                    c.example("started again while live: " + live[id] + " then " + line);
                }
                live[id] = line;
                std::string a = json_str(line, "src") + "|" + json_str(line, "sport");
                std::string b = json_str(line, "dst") + "|" + json_str(line, "dport");
                if (b < a) std::swap(a, b);
                const std::string tuple = json_str(line, "proto") + "|" + a + "|" + b;
                // A 5-tuple gets a new flow (and maybe another ID: the old one stays reserved
                // until its flow_end is out) only after its flow ended.
                auto [it, fresh] = live_tuples.emplace(tuple, id);
                if (!fresh) {
                    ++c.tuple_restarted;
                    c.example("5-tuple " + tuple + " started as flow " + id + " while flow " + it->second +
                              " was live");
                    it->second = id;
                }
                tuple_of[id] = tuple;
            } else if (type == "flow_end") {
                ++c.ends;
                if (dup) {
                    ++c.dup_ends;
                    continue;
                }
                if (!live.erase(id)) {
                    ++c.end_not_live;
                    c.example("flow_end of a flow that is not live: " + line);
                } else {
                    live_tuples.erase(tuple_of[id]);
                    tuple_of.erase(id);
                }
            } else {
                ++c.other;
            }
        }
    }
    c.live_at_end = live.size();
    return c;
}

// ---- the meter in its namespace -------------------------------------------------------------------

const std::vector<std::string>& pcap_files() {
    static const std::vector<std::string> files = {
        source_dir() + "/../shared/pcaps/real/ndpi__teams.pcap",
        source_dir() + "/../shared/pcaps/real/ndpi__whatsapp_login_call.pcap",
    };
    return files;
}
constexpr uint64_t kFramesPerLoop = 2793;  // the two files above (tshark -r ... | wc -l)

std::string skip_reason(bool traffic) {
    if (std::string why = angel::netns::unavailable_reason(); !why.empty()) return why;
    if (traffic) {
        if (angel::netns::run({"sh", "-c", "command -v tcpreplay"}, 10).status != 0) return "tcpreplay is not installed";
        for (const auto& f : pcap_files())
            if (!fs::exists(f)) return "missing " + f;
    }
    if (!fs::exists(bin_dir() + "/angel-ctld")) return "no angel-ctld in " + bin_dir() + " (set ANGEL_BIN_DIR)";
    return {};
}

struct MeterRun {
    NetnsPair lab{"sv"};  // first: destroyed last, after every process in it is gone
    Scratch scratch;
    fs::path dir = scratch.dir;
    fs::path conf = dir / "meter.conf";
    fs::path sock = dir / "run" / (scratch.instance + ".sock");
    std::vector<std::unique_ptr<Child>> sinks;
    std::unique_ptr<Child> ctld;
    std::unique_ptr<Child> sender;

    std::string config(int port, const std::string& host = "127.0.0.1", const std::string& extra = "") const {
        std::ostringstream c;
        c << "instance = \"" << scratch.instance << "\";\n"
          << "runtime_dir = \"" << (dir / "run").string() << "\";\n"
          << "capture = { interface = \"" << NetnsPair::kMeterIf << "\"; };\n"
          << "classifier = { host = \"" << host << "\"; port = " << port << "; };\n"
          << extra << "\n";
        return c.str();
    }
    fs::path sink_out(size_t i) const { return dir / ("sink" + std::to_string(i) + ".json"); }
    std::string log() const { return read_text(dir / "ctld.err"); }

    // A sink; stop_meter() stops it once the meter has stopped and its output is still.
    ::testing::AssertionResult start_sink(int port) {
        const size_t i = sinks.size();
        sinks.push_back(std::make_unique<Child>(
            NetnsLab::in(lab.meter(), {bin_dir() + "/angel-sink", "--listen", "127.0.0.1:" + std::to_string(port),
                                       "--idle", "30", "--out", sink_out(i).string()}),
            dir / ("sink" + std::to_string(i) + ".summary"), dir / ("sink" + std::to_string(i) + ".err")));
        const fs::path err = dir / ("sink" + std::to_string(i) + ".err");
        if (!wait_until([&] { return read_text(err).find("listening on") != std::string::npos || !sinks[i]->running(); },
                        10) ||
            !sinks[i]->running())
            return ::testing::AssertionFailure() << "angel-sink did not start: " << read_text(err);
        return ::testing::AssertionSuccess();
    }
    ::testing::AssertionResult start_meter(const std::string& ready_text = "angel-capd ready") {
        ctld = std::make_unique<Child>(NetnsLab::in(lab.meter(), {bin_dir() + "/angel-ctld", "-f", "-c", conf.string()}),
                                       dir / "ctld.out", dir / "ctld.err");
        if (!wait_until([&] { return log().find(ready_text) != std::string::npos || !ctld->running(); }, 15) ||
            log().find(ready_text) == std::string::npos)
            return ::testing::AssertionFailure() << "the meter did not start:\n" << log();
        return ::testing::AssertionSuccess();
    }
    void start_traffic(unsigned loops, unsigned pps) {
        std::vector<std::string> replay = {"tcpreplay", "-i", NetnsPair::kSenderIf, "--pps=" + std::to_string(pps),
                                           "--loop=" + std::to_string(loops), "--duration=60"};
        for (const auto& f : pcap_files()) replay.push_back(f);
        sender = std::make_unique<Child>(NetnsLab::in(lab.sender(), replay), dir / "tcpreplay.out",
                                         dir / "tcpreplay.err");
    }
    // Stops the meter in order; returns its final counter line's values (empty map on failure).
    std::map<std::string, uint64_t> stop_meter() {
        ctld->signal(SIGTERM);
        if (!ctld->wait(60)) {
            ADD_FAILURE() << "angel-ctld did not stop within 60 s:\n" << log();
            return {};
        }
        EXPECT_EQ(ctld->exit_code(), 0) << log();
        // Loopback delivers at once: 1 s without growth and every datagram has been written.
        for (size_t i = 0; i < sinks.size(); ++i) {
            std::error_code ec;
            uintmax_t last = UINTMAX_MAX;
            for (int n = 0; n < 100; ++n) {  // at most 20 s
                const uintmax_t size = fs::file_size(sink_out(i), ec);
                if (size == last) break;
                last = size;
                sleep_s(1.0);
            }
            sinks[i]->signal(SIGTERM);
            EXPECT_TRUE(sinks[i]->wait(10)) << "angel-sink did not stop";
        }
        const std::string text = log();
        const auto at = text.rfind(" stopped: captured=");
        if (at == std::string::npos) {
            ADD_FAILURE() << "no final counter line:\n" << text;
            return {};
        }
        return parse_counters(text.substr(at, text.find('\n', at) - at));
    }
    // Waits until `stage` has logged its ready line `n` times in all.
    bool wait_ready_count(const std::string& stage, size_t n, double timeout_s) {
        return wait_until([&] { return count_of(log(), "angel-" + stage + " ready") >= n; }, timeout_s, 0.01);
    }
};

uint64_t sink_gaps(const fs::path& summary) {
    std::smatch m;
    const std::string s = read_text(summary);
    if (!std::regex_search(s, m, std::regex(R"(sequence\s+(\d+) gaps)"))) return UINT64_MAX;
    return std::stoull(m[1]);
}

// ---- KillUnderLoad / RestartUnderLoad ---------------------------------------------------------------

enum class How { kill9, angelctl_restart };

void run_under_load(How how) {
    if (const std::string why = skip_reason(true); !why.empty()) GTEST_SKIP() << why;
    const unsigned seed = static_cast<unsigned>(std::stoul(env_or("ANGEL_TEST_SEED", std::to_string(time(nullptr)))));
    std::printf("[ sup     ] seed %u (ANGEL_TEST_SEED to repeat)\n", seed);
    std::mt19937 rng(seed);

    MeterRun m;
    write_text(m.conf, m.config(4739));
    ASSERT_TRUE(m.start_sink(4739));
    ASSERT_TRUE(m.start_meter());
    // ~20 s at 100k packets/s: 720 loops of 2793 frames.
    constexpr unsigned kLoops = 720;
    const auto t0 = Clock::now();
    m.start_traffic(kLoops, 100000);

    // Six moments in [1, 15] s, three for each stage, in random order.
    std::vector<std::pair<double, std::string>> plan;
    std::uniform_real_distribution<double> when(1.0, 15.0);
    for (const char* s : {"procd", "procd", "procd", "netd", "netd", "netd"}) plan.push_back({when(rng), s});
    std::sort(plan.begin(), plan.end());
    std::map<std::string, size_t> done;
    std::vector<std::string> notes;
    for (const auto& [at, stage] : plan) {
        // The previous restart of this stage must be complete (ready) before the next.
        ASSERT_TRUE(m.wait_ready_count(stage, done[stage] + 1, 40)) << stage << " did not come back:\n" << m.log();
        if (since(t0) < at) sleep_s(at - since(t0));
        ASSERT_TRUE(m.sender->running()) << "tcpreplay ended before the last restart: make the run longer";
        const StatusView st = get_status(m.sock);
        ASSERT_TRUE(st.ok) << st.raw;
        const long pid = st.stages.at(stage).pid;
        ASSERT_GT(pid, 0) << st.raw;
        if (how == How::kill9) {
            ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
        } else {
            const CommandResult r =
                angelctl(m.sock, {"restart", stage});
            ASSERT_TRUE(r.ok()) << r.describe();
        }
        ++done[stage];
        char note[96];
        std::snprintf(note, sizeof note, "%s pid %ld at %.2f s", stage.c_str(), pid, since(t0));
        notes.push_back(note);
    }
    for (const char* s : {"procd", "netd"})
        ASSERT_TRUE(m.wait_ready_count(s, 4, 40)) << s << " did not come back:\n" << m.log();
    std::string list;
    for (const auto& n : notes) list += (list.empty() ? "" : ", ") + n;
    std::printf("[ sup     ] %s: %s\n", how == How::kill9 ? "killed" : "restarted", list.c_str());

    // Status counts every restart; the stages that were left alone never restarted.
    const StatusView st = get_status(m.sock);
    ASSERT_TRUE(st.ok) << st.raw;
    for (const char* s : {"procd", "netd"}) {
        EXPECT_EQ(st.stages.at(s).restarts, 3u) << st.raw;
        EXPECT_GT(st.stages.at(s).pid, 0) << st.raw;
        EXPECT_EQ(st.stages.at(s).last_exit, how == How::kill9 ? "signal KILL" : "exit 0") << st.raw;
    }
    EXPECT_EQ(st.stages.at("capd").restarts, 0u) << st.raw;

    ASSERT_TRUE(m.sender->wait(90)) << "tcpreplay did not finish";
    EXPECT_EQ(m.sender->exit_code(), 0) << read_text(m.dir / "tcpreplay.out");
    const double send_s = since(t0);
    sleep_s(0.5);  // capd reads the tail (pcap timeout 10 ms)
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty());
    const SinkCheck s = check_sink({m.sink_out(0)});
    const uint64_t gaps = sink_gaps(m.dir / "sink0.summary");
    std::printf("[ sup     ] %.1f s of traffic | captured %llu, ring_dropped %llu, pcap_dropped %llu | ip_packets %llu, "
                "repeated %llu, flows %llu/%llu\n"
                "[ sup     ] sink: packet %llu (%llu duplicates), flow_start %llu (%llu dup), flow_end %llu (%llu "
                "dup), sequence gaps %llu\n",
                send_s, (unsigned long long)C["captured"], (unsigned long long)C["ring_dropped"],
                (unsigned long long)C["pcap_dropped"], (unsigned long long)C["ip_packets"],
                (unsigned long long)C["repeated"], (unsigned long long)C["flows_started"],
                (unsigned long long)C["flows_ended"], (unsigned long long)s.packets,
                (unsigned long long)s.dup_packets, (unsigned long long)s.starts, (unsigned long long)s.dup_starts,
                (unsigned long long)s.ends, (unsigned long long)s.dup_ends, (unsigned long long)gaps);
    std::fflush(stdout);

    EXPECT_EQ(C["captured"] + C["pcap_dropped"] + C["pcap_ifdropped"], kFramesPerLoop * kLoops)
        << "frames sent that the capture never accounted for";
    EXPECT_GT(C["ip_packets"], 1'000'000u) << "the load was not steady";
    // Every packet record arrived; what arrived twice is within the in-flight bound.
    EXPECT_EQ(s.distinct_packets(), C["ip_packets"]);
    EXPECT_EQ(s.packets, C["ip_packets"] + s.dup_packets);
    EXPECT_EQ(s.starts - s.dup_starts, C["flows_started"]);
    EXPECT_EQ(s.ends - s.dup_ends, C["flows_ended"]);
    EXPECT_EQ(gaps, 0u) << read_text(m.dir / "sink0.summary");
    if (how == How::kill9) {
        EXPECT_LE(C["repeated"], 3 * kProcdBatch) << "procd repeats at most its one uncommitted batch per kill";
        EXPECT_LE(s.dup_packets, C["repeated"] + 3 * (kNetdBatch + kRecordsPerMessage))
            << "duplicates beyond the in-flight batches";
        EXPECT_LE(s.dup_packets + s.dup_starts + s.dup_ends,
                  3 * (kProcdBatch * 3) + 3 * (kNetdBatch + kRecordsPerMessage))
            << "duplicate records beyond the in-flight batches";
    } else {
        // SIGTERM: each stage stops at a batch boundary, with what it has published committed.
        EXPECT_EQ(C["repeated"], 0u);
        EXPECT_EQ(s.dup_packets + s.dup_starts + s.dup_ends, 0u);
    }
    // Flow identity across the restarts.
    EXPECT_EQ(s.packet_not_live, 0u);
    EXPECT_EQ(s.start_while_live, 0u);
    EXPECT_EQ(s.end_not_live, 0u);
    EXPECT_EQ(s.tuple_restarted, 0u);
    // Each successor found the live flows in the FlowMap (so they kept their IDs).
    {
        const std::string log = m.log();
        static const std::regex attached(R"(angel-procd: attached to instance \w+: (\d+) live flows)");
        std::vector<uint64_t> live;
        for (auto it = std::sregex_iterator(log.begin(), log.end(), attached); it != std::sregex_iterator(); ++it)
            live.push_back(std::stoull((*it)[1]));
        ASSERT_EQ(live.size(), 4u) << log;
        for (size_t i = 1; i < live.size(); ++i) EXPECT_GT(live[i], 0u) << "procd restart " << i << " found no flow";
    }
    EXPECT_EQ(s.live_at_end, 0u) << "flows without flow_end after the stop";
    EXPECT_EQ(s.other, 0u);
    for (const auto& e : s.examples) ADD_FAILURE() << e;
    if (::testing::Test::HasFailure()) std::printf("%s\n", m.log().c_str());
}

TEST(Supervision, KillUnderLoadLosesNothing) { run_under_load(How::kill9); }
TEST(Supervision, RestartUnderLoadLosesNothing) { run_under_load(How::angelctl_restart); }

// ---- CrashLoopBackoff ---------------------------------------------------------------------------------

TEST(Supervision, CrashLoopBackoff) {
    if (const std::string why = skip_reason(false); !why.empty()) GTEST_SKIP() << why;
    MeterRun m;
    // The namespace has no route to any name server: the lookup fails at once, netd exits 68.
    write_text(m.conf, m.config(4739, "nonexistent.invalid"));
    ASSERT_TRUE(m.start_meter());
    std::set<std::string> states;
    unsigned last_restarts = 0;
    bool monotonic = true;
    std::string last_exit;
    const auto t0 = Clock::now();
    // Deaths at about 0, 0.5, 1.5, 3.5, 7.5 s: wait for the fifth.
    const bool fifth = wait_until(
        [&] {
            const StatusView st = get_status(m.sock);
            if (st.ok) {
                const StageView& n = st.stages.at("netd");
                states.insert(n.state);
                monotonic = monotonic && n.restarts >= last_restarts;
                last_restarts = n.restarts;
                if (n.last_exit != "-") last_exit = n.last_exit;
            }
            return count_of(m.log(), "angel-netd is crash-looping") >= 3;
        },
        15, 0.1);
    const std::string log = m.log();
    EXPECT_TRUE(fifth) << log;
    std::printf("[ sup     ] netd crash loop over %.1f s: states seen", since(t0));
    for (const auto& s : states) std::printf(" %s", s.c_str());
    std::printf(", restarts %u, last exit %s\n", last_restarts, last_exit.c_str());

    // The log: backoff 0.5, 1, 2, 4 s, crash-looping from the third failure in a row.
    std::vector<std::string> waits;
    static const std::regex death(R"(angel-netd (?:died \(exit 68\); restarting in|is crash-looping \(\d+ failures in a row, last: exit 68\); next start in) ([0-9.]+) s)");
    for (auto it = std::sregex_iterator(log.begin(), log.end(), death); it != std::sregex_iterator(); ++it)
        waits.push_back((*it)[1]);
    ASSERT_GE(waits.size(), 5u) << log;
    EXPECT_EQ(std::vector<std::string>(waits.begin(), waits.begin() + 5),
              (std::vector<std::string>{"0.5", "1.0", "2.0", "4.0", "8.0"}))
        << log;
    EXPECT_EQ(count_of(log, "angel-netd died (exit 68)"), 2u) << log;
    EXPECT_NE(log.find("angel-netd is crash-looping (3 failures in a row, last: exit 68)"), std::string::npos) << log;

    // Status: backoff first, then crash-looping; restarts only grow; the exit code is shown.
    EXPECT_TRUE(states.count("backoff")) << "never saw state backoff";
    EXPECT_TRUE(states.count("crash-looping")) << "never saw state crash-looping";
    EXPECT_TRUE(monotonic);
    EXPECT_GE(last_restarts, 4u);
    EXPECT_EQ(last_exit, "exit 68");
    const StatusView st = get_status(m.sock);
    ASSERT_TRUE(st.ok) << st.raw;
    EXPECT_EQ(st.stages.at("netd").state, "crash-looping") << st.raw;
    EXPECT_EQ(st.stages.at("netd").last_exit, "exit 68") << st.raw;
    for (const char* s : {"capd", "procd"}) {
        EXPECT_EQ(st.stages.at(s).restarts, 0u) << st.raw;
        EXPECT_GT(st.stages.at(s).pid, 0) << st.raw;
    }
    // An orderly stop does not wait for the crash-looping netd (it would never drain anything):
    // done in seconds, not after ctld's 60 s forced-stop deadline.
    const auto t_stop = Clock::now();
    m.ctld->signal(SIGTERM);
    EXPECT_TRUE(m.ctld->wait(20)) << "angel-ctld did not stop within 20 s";
    std::printf("[ sup     ] stopped in %.2f s\n", since(t_stop));
    EXPECT_EQ(m.ctld->exit_code(), 0) << m.log();
    EXPECT_NE(m.log().find("angel-netd is crash-looping; not started again during the stop"), std::string::npos)
        << m.log();
}

// ---- HangDetected -----------------------------------------------------------------------------------------

TEST(Supervision, HangDetected) {
    if (const std::string why = skip_reason(false); !why.empty()) GTEST_SKIP() << why;
    MeterRun m;
    write_text(m.conf, m.config(4739, "127.0.0.1", "supervisor = { hang_timeout = 1; };"));
    ASSERT_TRUE(m.start_sink(4739));
    ASSERT_TRUE(m.start_meter());
    ASSERT_TRUE(m.wait_ready_count("procd", 1, 10));
    const StatusView before = get_status(m.sock);
    ASSERT_TRUE(before.ok) << before.raw;
    const long pid = before.stages.at("procd").pid;
    ASSERT_GT(pid, 0);
    const auto t0 = Clock::now();
    ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGSTOP), 0);
    const bool killed = wait_until([&] { return m.log().find("angel-procd stopped heartbeating") != std::string::npos; }, 6, 0.01);
    const double detect_s = since(t0);
    const bool back = m.wait_ready_count("procd", 2, 10);
    const double back_s = since(t0);
    std::printf("[ sup     ] procd frozen: killed after %.2f s (hang_timeout 1 s), ready again after %.2f s\n",
                detect_s, back_s);
    ASSERT_TRUE(killed) << m.log();
    ASSERT_TRUE(back) << m.log();
    EXPECT_GE(detect_s, 0.9);
    EXPECT_LE(detect_s, 2.5) << "hang detected long after hang_timeout";
    const StatusView after = get_status(m.sock);
    ASSERT_TRUE(after.ok) << after.raw;
    EXPECT_EQ(after.stages.at("procd").restarts, 1u) << after.raw;
    EXPECT_EQ(after.stages.at("procd").last_exit, "signal KILL") << after.raw;
    EXPECT_NE(after.stages.at("procd").pid, pid) << after.raw;
    EXPECT_GT(after.stages.at("procd").pid, 0) << after.raw;
    EXPECT_EQ(after.stages.at("netd").restarts + after.stages.at("capd").restarts, 0u) << after.raw;
    m.stop_meter();
}

// ---- ReloadMovesClassifier ------------------------------------------------------------------------------

TEST(Supervision, ReloadMovesClassifier) {
    if (const std::string why = skip_reason(true); !why.empty()) GTEST_SKIP() << why;
    MeterRun m;
    write_text(m.conf, m.config(4739));
    ASSERT_TRUE(m.start_sink(4739));  // sink 0: A
    ASSERT_TRUE(m.start_sink(4740));  // sink 1: B
    ASSERT_TRUE(m.start_meter());
    const unsigned gen0 = get_status(m.sock).generation;
    const auto t0 = Clock::now();
    m.start_traffic(290, 100000);  // ~8 s
    auto traffic_at = [&](double s) {
        sleep_s(std::max(0.0, s - since(t0)));
        return m.sender->running();
    };

    // 1. angelctl reload after the file moved the classifier to B.
    ASSERT_TRUE(traffic_at(2.0)) << "tcpreplay ended early";
    write_text(m.conf, m.config(4740));
    CommandResult r = angelctl(m.sock, {"reload"});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_NE(r.out.find("reloaded"), std::string::npos) << r.out;
    EXPECT_TRUE(wait_until([&] { return m.log().find("classifier moved to 127.0.0.1:4740") != std::string::npos; }, 5))
        << m.log();
    const unsigned gen1 = get_status(m.sock).generation;
    EXPECT_GT(gen1, gen0);

    // 2. A file that does not parse is refused; nothing changes.
    ASSERT_TRUE(traffic_at(3.5)) << "tcpreplay ended early";
    write_text(m.conf, m.config(4739) + "classifier = {\n");
    r = angelctl(m.sock, {"reload"});
    EXPECT_FALSE(r.ok()) << "a bad file was accepted: " << r.describe();
    EXPECT_EQ(get_status(m.sock).generation, gen1);

    // 3. SIGHUP after the file moved it back to A.
    ASSERT_TRUE(traffic_at(5.0)) << "tcpreplay ended early";
    write_text(m.conf, m.config(4739));
    m.ctld->signal(SIGHUP);
    EXPECT_TRUE(wait_until([&] { return m.log().find("classifier moved to 127.0.0.1:4739") != std::string::npos; }, 5))
        << m.log();
    EXPECT_GT(get_status(m.sock).generation, gen1);
    EXPECT_NE(m.log().find("SIGHUP: reloaded"), std::string::npos) << m.log();
    EXPECT_TRUE(m.sender->running()) << "tcpreplay ended before the second move: make the run longer";

    ASSERT_TRUE(m.sender->wait(60));
    sleep_s(0.5);
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty());
    const SinkCheck a = check_sink({m.sink_out(0)}, true);
    const SinkCheck b = check_sink({m.sink_out(1)});
    const SinkCheck both = check_sink({m.sink_out(0), m.sink_out(1)});
    uint64_t a_before = 0, a_after = 0;
    for (uint64_t ts : a.packet_ts) {
        a_before += ts < b.min_packet_ts;
        a_after += ts > b.max_packet_ts;
    }
    std::printf("[ sup     ] ip_packets %llu | sink A %llu packet records (%llu before B's, %llu after), sink B %llu\n",
                (unsigned long long)C["ip_packets"], (unsigned long long)a.packets, (unsigned long long)a_before,
                (unsigned long long)a_after, (unsigned long long)b.packets);
    // No loss, no duplicate, across both moves; the records moved and came back.
    EXPECT_EQ(a.packets + b.packets, C["ip_packets"]);
    EXPECT_EQ(both.dup_packets + both.dup_starts + both.dup_ends, 0u);
    EXPECT_EQ(a.starts + b.starts, C["flows_started"]);
    EXPECT_EQ(a.ends + b.ends, C["flows_ended"]);
    EXPECT_GT(b.packets, 0u);
    EXPECT_GT(a_before, 0u);
    EXPECT_GT(a_after, 0u);
    EXPECT_EQ(a_before + a_after, a.packets) << "sink A got records from the time B was the classifier";
    EXPECT_EQ(C["send_errors"], 0u);
    if (::testing::Test::HasFailure()) std::printf("%s\n", m.log().c_str());
}

}  // namespace
