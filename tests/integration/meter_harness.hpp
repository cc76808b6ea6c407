// The real meter in a network namespace, for the live tests (live_capture_test.cpp,
// supervision_test.cpp, rc_script_test.cpp):
//
//   sender netns: tcpreplay -i veth-s ──veth──> meter netns: veth-m
//                                               angel-ctld -f (capd on veth-m, procd, netd)
//                                               └─ IPFIX over lo ─> angel-sink(s) --out FILE
//
//  - Child: a background process signalled by pid (not by process group: SIGTERM to
//    `ip netns exec ... angel-ctld` must reach ctld alone, which then stops its stages in order);
//  - MeterScratch: a temp dir and an instance name, removed (with the segment) whatever happens;
//  - NetnsMeter: the namespaces, the scratch, the sinks, ctld and tcpreplay of one test;
//  - tcpreplay's command line and the counts it prints; the pcaps the live tests send;
//  - angelctl over the control socket, and `angelctl status --json` read into a StatusView;
//  - the "sequence N gaps" of a sink summary.
// The gtest-aware parts (AssertionResult, stop_meter()'s EXPECTs) need gtest; the rest does not.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "netns_fixture.hpp"
#include "test_support.hpp"

namespace angel::itest {

// ---- Processes -----------------------------------------------------------------------------------

// A background process with stdout/stderr in files; SIGTERM then SIGKILL (after 5 s) if still
// running at destruction, so a failing assertion never leaves it behind.
class Child {
public:
    Child(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err);
    ~Child() { terminate(5.0); }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    bool running();
    bool wait(double timeout_s);  // true once exited
    void signal(int sig);         // to the pid, while it runs
    void terminate(double grace_s);
    int exit_code() const;  // -1 unless exited normally
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    int status_ = 0;
    bool exited_ = false;
};

// Polls pred every step_s until true (returns true) or timeout_s passes (returns pred()).
bool wait_until_s(const std::function<bool()>& pred, double timeout_s, double step_s = 0.02);
void sleep_s(double s);

// ---- Scratch space ---------------------------------------------------------------------------------

// /tmp/angel-<tag>-<pid>-XXXXXX (0755, so that only the meter's own permissions decide access)
// and an instance name "<instance_prefix><pid>x<seq>". The directory (unless
// $ANGEL_KEEP_TEST_DIRS is set) and /dev/shm/angel.<instance> are removed on destruction; the
// directories of a crashed run (/tmp/angel-<tag>-<pid>-* whose pid no longer runs) at construction.
class MeterScratch {
public:
    MeterScratch(const std::string& tag, const std::string& instance_prefix);
    ~MeterScratch();
    MeterScratch(const MeterScratch&) = delete;
    MeterScratch& operator=(const MeterScratch&) = delete;
    fs::path dir;
    std::string instance;
};

// ---- Traffic ---------------------------------------------------------------------------------------

// The two real captures the live tests send: 2793 frames in all, 44 of them not IP.
const std::vector<std::string>& live_pcap_files();
constexpr uint64_t kLiveFramesPerLoop = 2793;

// tcpreplay -i IF <rate> --loop=N --duration=60 FILES..., rate "--topspeed" or "--pps=N".
std::vector<std::string> tcpreplay_argv(const std::string& ifname, const std::string& rate, unsigned loops,
                                        const std::vector<std::string>& files);
// "Successful packets:" and "Failed packets:" of tcpreplay's output; nullopt when not printed.
struct TcpreplayCounts {
    std::optional<uint64_t> sent, failed;
};
TcpreplayCounts parse_tcpreplay(const std::string& output);

// Why a live test cannot run here (empty: it can): namespaces, the named programs, the pcaps,
// angel-ctld built.
std::string live_skip_reason(const std::vector<std::string>& programs, bool need_pcaps);

// ---- angelctl ----------------------------------------------------------------------------------------

// angelctl through the socket (-s): it works whatever state the configuration file is in.
netns::CommandResult angelctl(const fs::path& socket, std::vector<std::string> args);

struct StageView {
    long pid = -1;
    std::string state;
    unsigned restarts = 0;
    std::string last_exit;
};
struct StatusView {
    bool ok = false;  // angelctl succeeded and listed the three stages
    unsigned generation = 0;
    std::map<std::string, StageView> stages;
    std::string raw;  // angelctl's stdout and stderr
};
// The "stages" array of `angelctl status --json` (an entry needs stage, pid, state, restarts
// and last_exit) and config_generation.
StatusView parse_status_json(const std::string& json);
StatusView angelctl_status(const fs::path& socket);

// ---- The sink's summary ------------------------------------------------------------------------------

// N of "sequence   N gaps" in an angel-sink summary; UINT64_MAX when absent.
uint64_t sink_sequence_gaps(const std::string& summary);

// ---- One meter in a namespace pair -------------------------------------------------------------------

class NetnsMeter {
public:
    // tag: names the namespaces and the instance ("lt" -> angel-lt-..., lt<pid>x<n>);
    // dir_tag: names the temp dir (/tmp/angel-<dir_tag>-...).
    NetnsMeter(const std::string& tag, const std::string& dir_tag);

    netns::NetnsPair lab;  // first: destroyed last, after every process in it is gone
    MeterScratch scratch;
    fs::path dir, conf, sock;
    std::vector<std::unique_ptr<Child>> sinks;
    std::unique_ptr<Child> ctld;
    std::unique_ptr<Child> sender;

    // instance, runtime_dir, capture on veth-m (+ capture_extra), classifier host:port, extra.
    MeterConfig config(unsigned port, const std::string& host = "127.0.0.1", const std::string& extra = "") const;
    void write_config(const MeterConfig& c) const { write_file(conf, c.text()); }
    fs::path sink_out(size_t i) const { return dir / ("sink" + std::to_string(i) + ".json"); }
    fs::path sink_summary(size_t i) const { return dir / ("sink" + std::to_string(i) + ".summary"); }
    fs::path sink_err(size_t i) const { return dir / ("sink" + std::to_string(i) + ".err"); }
    fs::path tcpreplay_out() const { return dir / "tcpreplay.out"; }
    fs::path tcpreplay_err() const { return dir / "tcpreplay.err"; }
    std::string log() const;  // ctld's stderr

    // angel-sink in the meter namespace on 127.0.0.1:port, exiting after idle_s without datagrams;
    // succeeds once it listens.
    // dedup false: --no-dedup (every copy printed, as the meter sent it).
    ::testing::AssertionResult start_sink(unsigned port, int idle_s = 30, bool dedup = true);
    // angel-ctld -f -c conf in the meter namespace; succeeds once its log shows ready_text.
    ::testing::AssertionResult start_meter(const std::string& ready_text = "angel-capd ready");
    // tcpreplay of live_pcap_files() in the sender namespace; rate "--topspeed" or "--pps=N".
    void start_traffic(unsigned loops, const std::string& rate);
    // The same with these pcap files.
    void start_traffic(unsigned loops, const std::string& rate, const std::vector<std::string>& pcaps);
    // config() with a database section: conninfo, meter_id = the instance, poll_interval 60.
    MeterConfig config_with_database(unsigned port, const std::string& conninfo) const;
    // angelctl -c conf ARGS (20 s at most).
    CommandResult angelctl(std::vector<std::string> args) const;
    // Stops the meter in order (SIGTERM, 60 s, exit 0 expected), then each sink once its output
    // has not grown for 1 s; returns the final counter line's values (empty map on failure).
    std::map<std::string, uint64_t> stop_meter();
    // The counters of ctld's final line, or nullopt (and *line empty) when there is none.
    std::optional<std::map<std::string, uint64_t>> final_counters(std::string* line = nullptr) const;
    // Waits until `stage` has logged its ready line `n` times in all.
    bool wait_ready_count(const std::string& stage, size_t n, double timeout_s);
};

}  // namespace angel::itest
