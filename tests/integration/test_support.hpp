// Reusable pieces for integration tests that drive the real daemons:
//  - where things are (source tree, binaries, shared pcaps), unique names, file reading;
//  - RAII guards: temporary directories, the shared-memory segment of an instance;
//  - child processes with timeouts (own process group, killed with the whole group when the
//    guard goes away), commands run to completion with captured output;
//  - free UDP ports on loopback, a tcpdump capture on lo that is known to be capturing;
//  - parsing without std::regex: angel-sink JSON lines, ctld's final counter line, flat JSON
//    fields and objects (angelctl --json), "label: number" in tool output;
//  - a meter configuration file; angel-sink on a port it picks itself;
//  - the frames and flows tshark sees in a pcap (outer IP header, canonical 5-tuple);
//  - ReplayHarness: one `angel-ctld --replay` into angel-sink with the export captured.
// The namespace-based pieces (a meter in a network namespace, tcpreplay, angelctl status) are
// in meter_harness.hpp.
// Everything lives in angel::itest; nothing here uses gtest, so any test can include it.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace angel::itest {

namespace fs = std::filesystem;
using Millis = std::chrono::milliseconds;

// ---- Locations and small utilities ----------------------------------------------------------

// $ANGEL_SOURCE_DIR, else the compile-time ANGEL_SOURCE_DIR.
fs::path source_dir();
// $ANGEL_BIN_DIR (set by ctest), else the test binary's own directory if angel-ctld is there,
// else <source>/build/bin.
fs::path bin_dir();
// A program built by the project: bin_dir()/name.
fs::path binary(const std::string& name);
// A copy of binary(name) in dir, mode 0755, for running it as another user: the build tree
// may sit under a 0700 home directory (a clone under /root) that other users cannot reach.
fs::path copy_binary_for_others(const std::string& name, const fs::path& dir);
// <source>/../shared/pcaps/<sub> (the folder may not exist: callers check).
fs::path shared_pcaps_dir(const std::string& sub);
// Regular files of a folder, sorted by name; empty when the folder is missing.
std::vector<fs::path> files_in(const fs::path& dir);
// True when `name` is found in $PATH and is executable.
bool have_program(const std::string& name);
// "<prefix>-<pid>-<seq>": unique among concurrent test processes; at most 40 characters.
std::string unique_name(std::string_view prefix);
// A name usable as a gtest parameter name: [A-Za-z0-9_] only.
std::string sanitize_test_name(std::string_view s);
std::string read_file(const fs::path& p);  // empty when missing
std::vector<std::string> read_lines(const fs::path& p);
// Written to p + ".new" and renamed over p, so that a reader (ctld reloading its configuration)
// never sees half a file; throws on failure.
void write_file(const fs::path& p, const std::string& text);
// CLOCK_REALTIME in ns: what a live capture stamps packets with.
uint64_t wall_clock_ns();
// Classic pcap (microseconds, this host's byte order): the file header, and one record.
void put_pcap_header(std::ostream& out, uint32_t linktype = 1);
void put_pcap_record(std::ostream& out, uint32_t sec, uint32_t usec, const uint8_t* frame, size_t len);
// Fills in the checksum of the 20-byte IPv4 header at ip.
void set_ipv4_checksum(uint8_t* ip);
// Polls pred every `step` until it is true (returns true) or `timeout` passes (returns pred()).
bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis step = Millis(10));

// Non-overlapping occurrences of `what` in `text`.
size_t count_of(const std::string& text, std::string_view what);
// The unsigned number after the first `label` in text (blanks after the label skipped), e.g.
// number_after(out, "Successful packets:"); nullopt when the label or the number is missing.
std::optional<uint64_t> number_after(const std::string& text, std::string_view label);
// Every unsigned number that follows `label` in text, in order.
std::vector<uint64_t> numbers_after(const std::string& text, std::string_view label);

// ---- RAII guards ------------------------------------------------------------------------------

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction,
// unless $ANGEL_KEEP_TEST_DIRS is set (then its path is printed on stderr, for debugging).
class TempDir {
public:
    explicit TempDir(std::string_view prefix = "angel-test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }
    fs::path operator/(const std::string& name) const { return path_ / name; }

private:
    fs::path path_;
};

// Removes /dev/shm/angel.<instance> (and its .ctl control object) on construction (a leftover from a crashed run) and on
// destruction (ctld removes it on a clean exit; this covers every other exit).
class ShmGuard {
public:
    explicit ShmGuard(std::string instance);
    ~ShmGuard();
    ShmGuard(const ShmGuard&) = delete;
    ShmGuard& operator=(const ShmGuard&) = delete;
    static fs::path path_of(const std::string& instance);

private:
    std::string instance_;
};

// ---- Processes ---------------------------------------------------------------------------------

// A waitpid() status.
struct ExitStatus {
    int raw = -1;  // -1: not started / not reaped
    bool exited() const;
    int code() const;  // exit code, -1 unless exited()
    bool signaled() const;
    int signal() const;  // terminating signal, 0 unless signaled()
    bool ok() const { return exited() && code() == 0; }
    std::string describe() const;  // "exit 0", "killed by signal 9 (Killed)", "not run"
};

// One child process. It runs in its own process group (so a daemon's children are killed with
// it), gets SIGKILL if the test process dies (PR_SET_PDEATHSIG), has stdin from /dev/null and
// stdout/stderr in the given files (empty path: /dev/null). The destructor kills the whole
// group (SIGKILL) if the child has not been reaped, and reaps it.
class Process {
public:
    struct Options {
        std::vector<std::string> argv;  // argv[0] is looked up in $PATH when it has no '/'
        fs::path stdout_path;
        fs::path stderr_path;
        fs::path cwd;  // empty: inherited
    };
    Process() = default;
    explicit Process(const Options& o);  // throws std::runtime_error when fork fails
    ~Process();
    Process(Process&& other) noexcept;
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    bool started() const { return pid_ > 0; }
    // Reaps without blocking; true while the child has not exited.
    bool running();
    // Waits up to `timeout` for the exit; nullopt if still running.
    std::optional<ExitStatus> wait_for(Millis timeout);
    // Sends sig to the child's process group (or the child if the group is gone).
    void signal(int sig);
    // sig, then up to `grace` for an exit, then SIGKILL to the group; returns the status.
    ExitStatus stop(int sig, Millis grace);
    // SIGKILL to the group and reap.
    ExitStatus kill();
    // The status once reaped.
    std::optional<ExitStatus> status() const { return status_; }

private:
    pid_t pid_ = -1;
    std::optional<ExitStatus> status_;
};

struct CommandResult {
    ExitStatus status;
    bool timed_out = false;
    std::string out;
    std::string err;
    bool ok() const { return !timed_out && status.ok(); }
    std::string describe() const;  // status plus the tail of stderr
};
// Runs argv to completion (no shell) with stdout and stderr captured in memory; the process
// group is SIGKILLed when `timeout` passes.
CommandResult run_command(const std::vector<std::string>& argv, Millis timeout);
// The command line, quoted for messages.
std::string command_line(const std::vector<std::string>& argv);

// ---- Network -----------------------------------------------------------------------------------

// A UDP port that was free on `host` a moment ago (bound to port 0, then released).
uint16_t free_udp_port(const char* host = "127.0.0.1");

// Complete packet records in a classic pcap file that may still be written; nullopt while the
// file header is not there (or the file is not a pcap).
std::optional<size_t> count_pcap_records(const fs::path& file);

// tcpdump on the loopback interface into a pcap file. wait_ready() returns once the file
// header is written and tcpdump says it is listening: packets sent after that are captured.
class LoopbackCapture {
public:
    LoopbackCapture(fs::path file, const std::string& filter, fs::path log);
    bool wait_ready(Millis timeout);
    size_t frames() const;  // complete records so far
    bool wait_frames(size_t n, Millis timeout) const;
    ExitStatus stop();  // SIGINT (tcpdump flushes and exits), SIGKILL after 5 s
    // After stop(): tcpdump's "N packets dropped by kernel"; nullopt when it did not say.
    std::optional<uint64_t> dropped_by_kernel() const;
    const fs::path& file() const { return file_; }
    std::string log() const { return read_file(log_); }

private:
    fs::path file_, log_;
    Process proc_;
};

// ---- Parsing -----------------------------------------------------------------------------------

// One angel-sink JSON line (tools/sink/output.cpp).
struct SinkRecord {
    enum class Type { packet, flow_start, flow_end, loss, watermark };
    Type type = Type::packet;
    uint32_t flow_id = 0;
    uint64_t ts_ns = 0;  // packet, flow_start
    // packet
    uint32_t idx = 0;    // the flow's packet index
    uint64_t len = 0;
    int dir = 0;
    int tcp_flags = 0;
    bool is_new = false;
    // flow_start
    int proto = 0;
    std::string src, dst;
    uint16_t sport = 0, dport = 0;
    // flow_end
    std::string reason;
    uint64_t first_ns = 0, last_ns = 0, packets = 0, bytes = 0;
};
// Parses a line; nullopt (and *error set) when it is not one of the three record objects with
// exactly its keys.
std::optional<SinkRecord> parse_sink_line(const std::string& line, std::string* error);

// "key=value" tokens of a line whose values are unsigned integers.
std::map<std::string, uint64_t> parse_counters(const std::string& line);
// The last "instance NAME stopped: ..." line of ctld's stderr, if any.
std::optional<std::string> find_stop_line(const std::string& ctld_stderr, const std::string& instance);

// Flat JSON (what angelctl --json and angel-sink print: no nesting inside the objects read).
// The raw value of the first "key": in text (a string without its quotes); empty when absent.
std::string json_field(const std::string& text, std::string_view key);
// Same, but nullopt when the key is absent.
std::optional<std::string> json_field_opt(const std::string& text, std::string_view key);
// The objects of a JSON array of flat objects: key -> raw value (strings without quotes).
std::vector<std::map<std::string, std::string>> json_flat_objects(const std::string& text);
// The number after "\"name\":" following the first occurrence of "\"section\"" (0 if absent).
uint64_t json_number_in(const std::string& text, const std::string& section, const std::string& name);

// ---- Meter configuration file ------------------------------------------------------------------

// The settings the tests vary; empty strings (and port 0) leave a setting out. text() writes, in
// this order: instance, user, runtime_dir, capture = { interface; capture_extra },
// classifier = { host; port }, then `extra` verbatim.
struct MeterConfig {
    std::string instance;
    std::string user;
    fs::path runtime_dir;
    std::string capture_interface;
    std::string capture_extra;  // more keys inside the capture group
    std::string classifier_host;
    unsigned classifier_port = 0;
    std::string extra;  // more top-level settings
    std::string text() const;
};

// ---- angel-sink on a port of its own choosing --------------------------------------------------

// angel-sink --listen 127.0.0.1:0 (it binds port 0 and says which port it got: no race for a
// "free" port) --idle <idle_s> --out <out>, summary on stdout in <summary>, stderr in <err>.
struct LocalSink {
    Process proc;
    uint16_t port = 0;
    fs::path out, summary, err;
    size_t lines() const;  // complete lines in out so far
};
// Starts the sink with its files dir/<name>.jsonl, .stdout, .stderr and waits (up to 10 s) until
// it says which port it listens on. Empty on success, else why not (the sink is then stopped).
std::string start_local_sink(LocalSink& sink, const fs::path& dir, const std::string& name, int idle_s);

// ---- Flows as tshark sees them -----------------------------------------------------------------

// Canonical bidirectional 5-tuple: the (address, port) pair that sorts lower comes first.
struct FlowTuple {
    int version = 0;
    int proto = -1;
    std::array<uint8_t, 16> addr_a{}, addr_b{};
    uint16_t port_a = 0, port_b = 0;
    auto operator<=>(const FlowTuple&) const = default;
    std::string describe() const;
};
// From textual addresses (the version follows from the text: ':' means IPv6); nullopt when an
// address does not parse.
std::optional<FlowTuple> canonical_tuple(int proto, const std::string& src, unsigned sport,
                                         const std::string& dst, unsigned dport);

// One frame as tshark shows it (reassembly off), reduced to its OUTERMOST IP header the way
// tests/integration/tshark_compare_test.cpp explains: IPv6 protocol after the extension headers;
// ports only when TCP, UDP, UDP-Lite or SCTP follows the outer IP directly (0 otherwise); a later
// fragment takes the ports tshark showed for its first fragment earlier in the file.
struct TsharkFrame {
    long number = 0;        // frame.number
    uint64_t len = 0;       // frame.len
    bool is_ip = false;     // tshark found an IP header
    int version = 0;        // 4 or 6
    long proto = -1;        // -1 when tshark shows none
    std::string src, dst;   // as tshark prints them
    long sport = 0, dport = 0;
    bool ports_from_first_fragment = false;
    std::string line;  // tshark's raw line, for messages
};
struct TsharkFrames {
    std::vector<TsharkFrame> frames;  // every line tshark printed, in order
    std::string error;                // non-empty when tshark failed (frames: what it printed)
};
TsharkFrames tshark_frames(const fs::path& pcap, Millis timeout = Millis(60000));

struct Volume {
    uint64_t packets = 0, bytes = 0;
    bool operator==(const Volume&) const = default;
};
using FlowTable = std::map<FlowTuple, Volume>;

// The flows of a pcap file per tshark_frames(): every frame in which tshark finds an IP header,
// keyed on the canonical tuple of its outer IP header, summing frames and frame.len.
struct TsharkFlows {
    FlowTable flows;
    uint64_t frames = 0;     // every frame tshark read
    uint64_t ip_frames = 0;  // frames counted in flows
    uint64_t later_fragments_with_first = 0;  // later fragments given their first's ports
    std::string error;  // non-empty when tshark failed
};
TsharkFlows tshark_flows(const fs::path& pcap, Millis timeout = Millis(60000));

// ---- A whole replay ------------------------------------------------------------------------------

struct ReplayOptions {
    fs::path pcap;
    std::string extra_config;  // appended to the generated configuration file
    Millis ctld_timeout = Millis(60000);
    bool capture_export = true;  // tcpdump the IPFIX datagrams into export.pcap
};

struct ReplayResult {
    std::string instance;
    uint16_t port = 0;
    fs::path config, ctld_log, sink_jsonl, sink_stdout, sink_stderr, export_pcap;
    ExitStatus ctld_status;
    bool ctld_timed_out = false;
    std::string ctld_stderr;
    std::optional<std::string> stop_line;    // ctld's final counter line
    std::map<std::string, uint64_t> counters;  // parsed from stop_line
    std::vector<std::string> sink_lines;       // JSON lines
    std::string sink_out, sink_err;            // summary (stdout with --out) and stderr
    ExitStatus sink_status;
    size_t export_frames = 0;
    std::vector<std::string> problems;  // harness failures: timeouts, missing output...
    uint64_t counter(const std::string& k) const {
        const auto it = counters.find(k);
        return it == counters.end() ? 0 : it->second;
    }
};

// Runs one replay: angel-sink on 127.0.0.1 port 0 (it picks a free port P and prints it), tcpdump
// on lo for udp port P, angel-ctld -f --replay with a unique instance and runtime_dir in a
// temporary directory; waits for ctld (killed with its stages on timeout), then until the sink
// has written every record netd sent and the capture holds every message (bounded), then stops
// the sink and the capture. The files stay until the harness is destroyed; the segment is
// removed in any case.
class ReplayHarness {
public:
    explicit ReplayHarness(std::string_view name_prefix = "replay");
    ReplayResult run(const ReplayOptions& o);
    const TempDir& dir() const { return dir_; }

private:
    std::string prefix_;
    TempDir dir_;
    int runs_ = 0;
};

}  // namespace angel::itest
