// angel-ctld: the supervisor. Reads and checks the configuration, creates the segment,
// starts capd, procd and netd, restarts what dies, drives flow expiry, and stops the
// pipeline in order (capture first, then drain each stage) on SIGTERM/SIGINT.
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "common/config.hpp"
#include "common/log.hpp"
#include "ctld/daemonize.hpp"
#include "ctld/id_key_store.hpp"
#include "ctld/live_config_builder.hpp"
#include "ctld/stage_supervisor.hpp"

using namespace angel;

namespace {

constexpr uint64_t kSecond = 1'000'000'000ull;
constexpr uint64_t kStopDeadline = 60 * kSecond;  // an orderly stop that takes longer is forced

struct Options {
    std::string config_path = kDefaultConfigPath;
    std::string replay;
    bool foreground = false;
    bool check_only = false;
    bool verbose = false;
};

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: angel-ctld [-f] [-t] [-v] [-c FILE] [--replay PCAP]\n");
    std::exit(EX_USAGE);
}

Options parse_args(int argc, char** argv) {
    static const option longopts[] = {{"replay", required_argument, nullptr, 'r'},
                                      {"config", required_argument, nullptr, 'c'},
                                      {"foreground", no_argument, nullptr, 'f'},
                                      {"check", no_argument, nullptr, 't'},
                                      {"help", no_argument, nullptr, 'h'},
                                      {nullptr, 0, nullptr, 0}};
    Options o;
    int c;
    while ((c = getopt_long(argc, argv, "c:ftvr:h", longopts, nullptr)) != -1) {
        switch (c) {
            case 'c': o.config_path = optarg; break;
            case 'f': o.foreground = true; break;
            case 't': o.check_only = true; break;
            case 'v': o.verbose = true; break;
            case 'r': o.replay = optarg; break;
            default: usage();
        }
    }
    if (optind != argc) usage();
    return o;
}

std::string bin_dir() {
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return ".";
    std::string p(buf, static_cast<size_t>(n));
    return p.substr(0, p.rfind('/'));
}

// One line an operator (and the tests) can read after a stop: where every packet went.
void log_final_counters(Segment& seg, const std::string& instance) {
    auto c = [&](StageId s, size_t i) {
        return static_cast<unsigned long long>(seg.stage(s).counters[i].load());
    };
    log_notice("instance %s stopped: captured=%llu queued=%llu ring_dropped=%llu pcap_received=%llu "
               "pcap_dropped=%llu pcap_ifdropped=%llu procd_packets=%llu ip_packets=%llu not_ip=%llu "
               "malformed=%llu flows_started=%llu flows_ended=%llu evicted=%llu records_sent=%llu "
               "messages=%llu send_errors=%llu",
               instance.c_str(), c(StageId::capd, capd_packets), c(StageId::capd, capd_queued),
               c(StageId::capd, capd_ring_dropped), c(StageId::capd, capd_pcap_received),
               c(StageId::capd, capd_pcap_dropped), c(StageId::capd, capd_pcap_ifdropped),
               c(StageId::procd, procd_packets), c(StageId::procd, procd_ip_packets),
               c(StageId::procd, procd_not_ip), c(StageId::procd, procd_malformed),
               c(StageId::procd, procd_flows_started), c(StageId::procd, procd_flows_ended),
               c(StageId::procd, procd_flows_evicted), c(StageId::netd, netd_records_sent),
               c(StageId::netd, netd_messages), c(StageId::netd, netd_send_errors));
}

bool fatal_start_failure(StageSupervisor& s) {
    // A stage that cannot even open its input or export target will not get better by
    // restarting: in replay mode that ends the run with the stage's own exit code.
    const int st = s.last_exit_status();
    return WIFEXITED(st) && (WEXITSTATUS(st) == EX_NOINPUT || WEXITSTATUS(st) == EX_CONFIG ||
                             WEXITSTATUS(st) == EX_NOHOST || WEXITSTATUS(st) == 127);
}

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse_args(argc, argv);
    log_init("angel-ctld", true);
    Config cfg;
    try {
        cfg = load_config(opt.config_path);
    } catch (const ConfigError& e) {
        log_err("%s", e.what());
        return kExitConfig;
    }
    const bool replay = !opt.replay.empty();
    const auto missing = missing_required(cfg, replay);
    if (!missing.empty()) {
        std::string names;
        for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
        log_err("%s: required value missing (in neither the file nor the database): %s",
                opt.config_path.c_str(), names.c_str());
        return kExitConfig;
    }
    if (opt.check_only) {
        if (opt.verbose) std::fputs(describe(cfg).c_str(), stdout);
        std::printf("%s: configuration OK\n", opt.config_path.c_str());
        return 0;
    }
    if (replay && access(opt.replay.c_str(), R_OK) != 0) {
        log_err("cannot read replay file %s: %s", opt.replay.c_str(), strerror(errno));
        return EX_NOINPUT;
    }
    if (mkdir(cfg.runtime_dir.c_str(), 0750) != 0 && errno != EEXIST) {
        log_err("cannot create runtime_dir %s: %s", cfg.runtime_dir.c_str(), strerror(errno));
        return EX_CANTCREAT;
    }
    const std::string pidfile = cfg.runtime_dir + "/" + cfg.instance + ".pid";
    if (!opt.foreground) {
        daemonize();
        log_init("angel-ctld", false);
    }
    PidFile pid_guard(pidfile);
    if (!pid_guard.acquired()) return EX_TEMPFAIL;

    FlowIdKey key;
    LiveConfig live;
    try {
        key = resolve_id_key(cfg.flow.id_key, cfg.runtime_dir, cfg.instance);
        live = build_live_config(cfg, opt.replay, key, opt.foreground);
    } catch (const std::exception& e) {
        log_err("%s", e.what());
        return kExitConfig;
    }

    // Signals arrive through a signalfd, read in the main loop: no work in handlers.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    std::unique_ptr<Segment> seg;
    try {
        SegmentSizes sz;
        sz.packet_ring_bytes = cfg.shm.packet_ring;
        sz.record_ring_bytes = cfg.shm.record_ring;
        sz.event_ring_bytes = cfg.shm.event_ring;
        sz.max_flows = static_cast<uint32_t>(cfg.flow.max_flows);
        seg = Segment::create(cfg.instance, sz);
    } catch (const SegmentError& e) {
        log_err("%s", e.what());
        return EX_OSERR;
    }
    write_live_config(seg->header()->config, live);
    seg->header()->ctld_pid.store(getpid());
    seg->stage(StageId::ctld).pid.store(getpid());
    seg->stage(StageId::ctld).state.store(static_cast<uint32_t>(StageState::ready));

    StageOptions so;
    so.bin_dir = bin_dir();
    so.instance = cfg.instance;
    so.foreground = opt.foreground;
    so.hang_timeout_ns = static_cast<uint64_t>(cfg.supervisor.hang_timeout) * kSecond;
    // Downstream first, so every consumer is there before its producer starts.
    std::array<StageSupervisor, 3> stages = {StageSupervisor(StageId::netd, *seg, so),
                                             StageSupervisor(StageId::procd, *seg, so),
                                             StageSupervisor(StageId::capd, *seg, so)};
    for (auto& s : stages) s.start();
    log_notice("instance %s started%s%s", cfg.instance.c_str(), replay ? ", replaying " : "",
               replay ? opt.replay.c_str() : "");

    int exit_code = 0;
    bool stopping = false;
    uint64_t stop_started = 0;
    uint64_t next_gc = monotonic_ns() + static_cast<uint64_t>(cfg.flow.gc_interval) * kSecond;
    auto& stop = seg->header()->stop;
    auto begin_stop = [&](const char* why) {
        if (stopping) return;
        stopping = true;
        stop_started = monotonic_ns();
        stop.stop_capture.store(1, std::memory_order_release);
        log_notice("stopping (%s): closing capture, draining the pipeline", why);
    };

    for (;;) {
        pollfd pfd{sfd, POLLIN, 0};
        poll(&pfd, 1, 100);
        signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) begin_stop(strsignal(static_cast<int>(si.ssi_signo)));
            else if (si.ssi_signo == SIGHUP) log_notice("SIGHUP: reload is not implemented yet; configuration unchanged");
        }
        const uint64_t now = monotonic_ns();
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            for (auto& s : stages)
                if (s.pid() == pid) s.on_exit(st, now);
        }
        for (auto& s : stages) {
            if (s.state() == SupervisedState::backoff && fatal_start_failure(s)) {
                log_err("angel-%s cannot start; giving up", stage_name(s.id()));
                exit_code = WEXITSTATUS(s.last_exit_status());
                begin_stop("a stage cannot start");
                stop_started = 0;  // force: there is nothing to drain into
            }
        }
        for (auto& s : stages) s.tick(now);
        seg->stage(StageId::ctld).heartbeat_ns.store(now, std::memory_order_relaxed);
        if (now >= next_gc) {
            seg->header()->gc_request.fetch_add(1, std::memory_order_release);
            next_gc = now + static_cast<uint64_t>(cfg.flow.gc_interval) * kSecond;
        }
        bool all_done = true;
        for (auto& s : stages) all_done = all_done && s.done();
        if (all_done) break;  // replay finished, or an orderly stop completed
        if (stopping && (stop_started == 0 || now - stop_started > kStopDeadline)) {
            if (stop_started != 0) log_err("orderly stop did not complete in time; killing the stages");
            for (auto& s : stages) s.signal(SIGKILL);
            for (auto& s : stages)
                if (s.alive()) waitpid(s.pid(), &st, 0);
            if (exit_code == 0) exit_code = EX_SOFTWARE;
            break;
        }
    }
    log_final_counters(*seg, cfg.instance);
    seg.reset();
    Segment::remove(cfg.instance);
    unlink((cfg.runtime_dir + "/" + cfg.instance + ".capd.lock").c_str());
    return exit_code;
}
