// Implementation of tests/integration/meter_harness.hpp.
#include "meter_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace angel::itest {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

bool wait_until_s(const std::function<bool()>& pred, double timeout_s, double step_s) {
    const auto t0 = Clock::now();
    for (;;) {
        if (pred()) return true;
        if (since(t0) >= timeout_s) return pred();
        sleep_s(step_s);
    }
}

// ---- Processes -----------------------------------------------------------------------------------

Child::Child(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
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

bool Child::running() {
    if (exited_) return false;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) exited_ = true;
    return !exited_;
}

bool Child::wait(double timeout_s) {
    const auto t0 = Clock::now();
    while (running()) {
        if (since(t0) >= timeout_s) return false;
        sleep_s(0.02);
    }
    return true;
}

void Child::signal(int sig) {
    if (running()) kill(pid_, sig);
}

void Child::terminate(double grace_s) {
    if (!running()) return;
    kill(pid_, SIGTERM);
    if (wait(grace_s)) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    exited_ = true;
}

int Child::exit_code() const { return exited_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }

// ---- Scratch space ---------------------------------------------------------------------------------

MeterScratch::MeterScratch(const std::string& tag, const std::string& instance_prefix) {
    static std::atomic<unsigned> seq{0};
    instance = instance_prefix + std::to_string(getpid()) + "x" + std::to_string(seq++);
    const std::string head = "angel-" + tag + "-";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/tmp", ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(head, 0) != 0) continue;
        const long pid = std::strtol(name.c_str() + head.size(), nullptr, 10);
        if (pid > 0 && pid != getpid() && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
            fs::remove_all(e.path(), ec);
    }
    std::string tmpl = "/tmp/" + head + std::to_string(getpid()) + "-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    chmod(dir.c_str(), 0755);
}

MeterScratch::~MeterScratch() {
    std::error_code ec;
    if (std::getenv("ANGEL_KEEP_TEST_DIRS") == nullptr) fs::remove_all(dir, ec);
    else std::fprintf(stderr, "[meter_harness] keeping %s\n", dir.c_str());
    fs::remove(ShmGuard::path_of(instance), ec);
    fs::remove(ShmGuard::path_of(instance).string() + ".ctl", ec);
}

// ---- Traffic ---------------------------------------------------------------------------------------

const std::vector<std::string>& live_pcap_files() {
    static const std::vector<std::string> files = {
        (shared_pcaps_dir("real") / "ndpi__teams.pcap").string(),
        (shared_pcaps_dir("real") / "ndpi__whatsapp_login_call.pcap").string(),
    };
    return files;
}

std::vector<std::string> tcpreplay_argv(const std::string& ifname, const std::string& rate, unsigned loops,
                                        const std::vector<std::string>& files) {
    std::vector<std::string> argv = {"tcpreplay", "-i", ifname, rate, "--loop=" + std::to_string(loops),
                                     "--duration=60"};
    argv.insert(argv.end(), files.begin(), files.end());
    return argv;
}

TcpreplayCounts parse_tcpreplay(const std::string& output) {
    return {number_after(output, "Successful packets:"), number_after(output, "Failed packets:")};
}

std::string live_skip_reason(const std::vector<std::string>& programs, bool need_pcaps) {
    if (std::string why = netns::unavailable_reason(); !why.empty()) return why;
    for (const auto& p : programs)
        if (!have_program(p)) return p + " is not installed";
    if (need_pcaps)
        for (const auto& f : live_pcap_files())
            if (!fs::exists(f)) return "missing " + f;
    return {};
}

// ---- angelctl ----------------------------------------------------------------------------------------

netns::CommandResult angelctl(const fs::path& socket, std::vector<std::string> args) {
    args.insert(args.begin(), {binary("angelctl").string(), "-s", socket.string()});
    return netns::run(args, 15);
}

StatusView parse_status_json(const std::string& json) {
    StatusView v;
    if (const auto g = json_field_opt(json, "config_generation"))
        v.generation = static_cast<unsigned>(std::strtoul(g->c_str(), nullptr, 10));
    const size_t at = json.find("\"stages\":[");
    if (at == std::string::npos) return v;
    const size_t end = json.find(']', at);
    for (const auto& o : json_flat_objects(json.substr(at, end == std::string::npos ? std::string::npos : end - at))) {
        bool complete = true;
        for (const char* k : {"stage", "pid", "state", "restarts", "last_exit"}) complete = complete && o.count(k);
        if (!complete) continue;
        StageView s;
        s.pid = std::strtol(o.at("pid").c_str(), nullptr, 10);
        s.state = o.at("state");
        s.restarts = static_cast<unsigned>(std::strtoul(o.at("restarts").c_str(), nullptr, 10));
        s.last_exit = o.at("last_exit");
        v.stages[o.at("stage")] = s;
    }
    return v;
}

StatusView angelctl_status(const fs::path& socket) {
    const netns::CommandResult r = angelctl(socket, {"status", "--json"});
    if (!r.ok()) {
        StatusView v;
        v.raw = r.out + r.err;
        return v;
    }
    StatusView v = parse_status_json(r.out);
    v.raw = r.out + r.err;
    v.ok = v.stages.size() == 3;
    return v;
}

// ---- The sink's summary ------------------------------------------------------------------------------

uint64_t sink_sequence_gaps(const std::string& summary) {
    // "sequence         N gaps, M records lost" (tools/sink/stats.cpp): the first "sequence",
    // blanks, digits, " gaps".
    for (size_t at = summary.find("sequence"); at != std::string::npos; at = summary.find("sequence", at + 1)) {
        size_t p = at + 8;
        const size_t blanks = p;
        while (p < summary.size() && std::isspace(static_cast<unsigned char>(summary[p]))) ++p;
        const size_t digits = p;
        while (p < summary.size() && std::isdigit(static_cast<unsigned char>(summary[p]))) ++p;
        if (digits > blanks && p > digits && summary.compare(p, 5, " gaps") == 0)
            return std::strtoull(summary.c_str() + digits, nullptr, 10);
    }
    return UINT64_MAX;
}

// ---- One meter in a namespace pair -------------------------------------------------------------------

NetnsMeter::NetnsMeter(const std::string& tag, const std::string& dir_tag)
    : lab(tag), scratch(dir_tag, tag), dir(scratch.dir), conf(dir / "meter.conf"),
      sock(dir / "run" / (scratch.instance + ".sock")) {}

MeterConfig NetnsMeter::config(unsigned port, const std::string& host, const std::string& extra) const {
    MeterConfig c;
    c.instance = scratch.instance;
    c.runtime_dir = dir / "run";
    c.capture_interface = netns::NetnsPair::kMeterIf;
    c.classifier_host = host;
    c.classifier_port = port;
    c.extra = extra;
    return c;
}

std::string NetnsMeter::log() const { return read_file(dir / "ctld.err"); }

::testing::AssertionResult NetnsMeter::start_sink(unsigned port, int idle_s, bool dedup) {
    const size_t i = sinks.size();
    std::vector<std::string> argv = {binary("angel-sink").string(), "--listen", "127.0.0.1:" + std::to_string(port),
                                     "--idle", std::to_string(idle_s), "--out", sink_out(i).string()};
    if (!dedup) argv.push_back("--no-dedup");
    sinks.push_back(std::make_unique<Child>(netns::NetnsLab::in(lab.meter(), argv), sink_summary(i), sink_err(i)));
    const fs::path err = sink_err(i);
    if (!wait_until_s([&] { return read_file(err).find("listening on") != std::string::npos || !sinks[i]->running(); },
                      10) ||
        !sinks[i]->running())
        return ::testing::AssertionFailure() << "angel-sink did not start: " << read_file(err);
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult NetnsMeter::start_meter(const std::string& ready_text) {
    // A second start's log replaces the first's; removed now, so that the wait below never
    // reads the previous run's ready line (the child opens its files only after the fork).
    std::error_code ec;
    fs::remove(dir / "ctld.err", ec);
    fs::remove(dir / "ctld.out", ec);
    ctld = std::make_unique<Child>(
        netns::NetnsLab::in(lab.meter(), {binary("angel-ctld").string(), "-f", "-c", conf.string()}),
        dir / "ctld.out", dir / "ctld.err");
    if (!wait_until_s([&] { return log().find(ready_text) != std::string::npos || !ctld->running(); }, 15) ||
        log().find(ready_text) == std::string::npos)
        return ::testing::AssertionFailure() << "the meter did not start:\n" << log();
    return ::testing::AssertionSuccess();
}

void NetnsMeter::start_traffic(unsigned loops, const std::string& rate) { start_traffic(loops, rate, live_pcap_files()); }

void NetnsMeter::start_traffic(unsigned loops, const std::string& rate, const std::vector<std::string>& pcaps) {
    sender = std::make_unique<Child>(
        netns::NetnsLab::in(lab.sender(), tcpreplay_argv(netns::NetnsPair::kSenderIf, rate, loops, pcaps)),
        tcpreplay_out(), tcpreplay_err());
}

MeterConfig NetnsMeter::config_with_database(unsigned port, const std::string& conninfo) const {
    return config(port, "127.0.0.1",
                  "database = { conninfo = \"" + conninfo + "\"; meter_id = \"" + scratch.instance +
                      "\"; poll_interval = 60; };\n");
}

CommandResult NetnsMeter::angelctl(std::vector<std::string> args) const {
    args.insert(args.begin(), {binary("angelctl").string(), "-c", conf.string()});
    return run_command(args, Millis(20000));
}

std::optional<std::map<std::string, uint64_t>> NetnsMeter::final_counters(std::string* line) const {
    const auto stop = find_stop_line(log(), scratch.instance);
    if (line != nullptr) *line = stop.value_or(std::string());
    if (!stop) return std::nullopt;
    return parse_counters(*stop);
}

std::map<std::string, uint64_t> NetnsMeter::stop_meter() {
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
    auto counters = final_counters();
    if (!counters) {
        ADD_FAILURE() << "no final counter line:\n" << log();
        return {};
    }
    return *counters;
}

bool NetnsMeter::wait_ready_count(const std::string& stage, size_t n, double timeout_s) {
    return wait_until_s([&] { return count_of(log(), "angel-" + stage + " ready") >= n; }, timeout_s, 0.01);
}

}  // namespace angel::itest
