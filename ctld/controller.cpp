#include "ctld/controller.hpp"
#include "ctld/db/db_thread.hpp"
#include "ctld/flow_control_set.hpp"
#include "ctld/ha/ha_monitor.hpp"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "common/control_proto.hpp"
#include "common/log.hpp"
#include "ctld/customers/customer_set_publisher.hpp"
#include "ctld/id_key_store.hpp"
#include "ctld/live_config_builder.hpp"
#include "ctld/metrics/meter_metrics.hpp"
#include "ctld/metrics/metrics_listener.hpp"
#include "ctld/reload_plan.hpp"
#include "ctld/runtime_files.hpp"
#include "ctld/segment_adoption.hpp"
#include "ctld/status_report.hpp"

namespace angel {

namespace {

constexpr uint64_t kSecond = 1'000'000'000ull;
constexpr uint64_t kStopDeadline = 60 * kSecond;  // an orderly stop that takes longer is forced

std::string bin_dir() {
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return ".";
    std::string p(buf, static_cast<size_t>(n));
    return p.substr(0, p.rfind('/'));
}

bool fatal_start_failure(const StageSupervisor& s) {
    // A stage that cannot even open its input or export target will not get better by
    // restarting a replay: that ends the run with the stage's own exit code.
    const int st = s.last_exit_status();
    // (EX_NOPERM: the sandbox could not be entered; EX_UNAVAILABLE: the descriptors were not
    // what a stage needs. Neither gets better by retrying.)
    return WIFEXITED(st) && (WEXITSTATUS(st) == EX_NOINPUT || WEXITSTATUS(st) == EX_CONFIG ||
                             WEXITSTATUS(st) == EX_NOHOST || WEXITSTATUS(st) == EX_NOPERM ||
                             WEXITSTATUS(st) == EX_UNAVAILABLE || WEXITSTATUS(st) == 127);
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

// One line an operator (and the tests) can read after a stop: where every packet went.
void log_final_counters(const Segment& seg, const std::string& instance) {
    const CheckedSegmentView view(seg);
    auto c = [&](StageId s, size_t i) { return static_cast<unsigned long long>(view.counter(s, i)); };
    log_notice("instance %s stopped: captured=%llu queued=%llu ring_dropped=%llu pcap_received=%llu "
               "pcap_dropped=%llu pcap_ifdropped=%llu procd_packets=%llu ip_packets=%llu not_ip=%llu "
               "malformed=%llu repeated=%llu flows_started=%llu flows_ended=%llu evicted=%llu netd_records=%llu records_sent=%llu "
               "messages=%llu send_errors=%llu datagrams_failed=%llu records_lost=%llu records_over_limit=%llu records_muted=%llu "
               "loss_records=%llu watermarks=%llu filtered=%llu",
               instance.c_str(), c(StageId::capd, capd_packets), c(StageId::capd, capd_queued),
               c(StageId::capd, capd_ring_dropped), c(StageId::capd, capd_pcap_received),
               c(StageId::capd, capd_pcap_dropped), c(StageId::capd, capd_pcap_ifdropped),
               c(StageId::procd, procd_packets), c(StageId::procd, procd_ip_packets), c(StageId::procd, procd_not_ip),
               c(StageId::procd, procd_malformed), c(StageId::procd, procd_repeated),
               c(StageId::procd, procd_flows_started), c(StageId::procd, procd_flows_ended),
               c(StageId::procd, procd_flows_evicted), c(StageId::netd, netd_records), c(StageId::netd, netd_records_sent),
               c(StageId::netd, netd_messages), c(StageId::netd, netd_send_errors),
               c(StageId::netd, netd_datagrams_failed), c(StageId::netd, netd_records_lost),
               c(StageId::procd, procd_records_over_limit), c(StageId::procd, procd_records_muted),
               c(StageId::procd, procd_loss_records), c(StageId::procd, procd_watermarks),
               c(StageId::procd, procd_filtered));
}

}  // namespace

Controller::Controller(const ControllerOptions& opt, Config cfg, StageUser user)
    : opt_(opt), cfg_(std::move(cfg)), user_(std::move(user)) {}

Controller::~Controller() {
    if (signal_fd_ >= 0) close(signal_fd_);
}

int Controller::run() {
    started_ns_ = monotonic_ns();
    jail_ = jail_path(cfg_.runtime_dir);  // checked by main() before detaching
    LiveConfig live;
    try {
        key_ = resolve_id_key(cfg_.flow.id_key, cfg_.runtime_dir, cfg_.instance);
        live = build_live_config(cfg_, opt_.replay, key_, opt_.foreground);
    } catch (const std::exception& e) {
        log_err("%s", e.what());
        return kExitConfig;
    }
    // Signals arrive through a signalfd read in the loop: no work in signal handlers.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    signal_fd_ = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);

    try {
        SegmentSizes sz;
        sz.packet_ring_bytes = cfg_.shm.packet_ring;
        sz.record_ring_bytes = cfg_.shm.record_ring;
        sz.event_ring_bytes = cfg_.shm.event_ring;
        sz.max_flows = static_cast<uint32_t>(cfg_.flow.max_flows);
        // A segment left by a run that died is taken over when it can be (flows, rings,
        // sequence, counters go on); otherwise it is removed and a new one made.
        AdoptionRequest adopt;
        adopt.instance = cfg_.instance;
        adopt.runtime_dir = cfg_.runtime_dir;
        adopt.sizes = sz;
        adopt.replay = !opt_.replay.empty();
        Recovery rec;
        seg_ = adopt_left_segment(adopt, &rec);
        if (seg_) recovery_ = std::make_unique<Recovery>(rec);
        else seg_ = Segment::create(cfg_.instance, sz);
        // Operators (control.group) reach the socket; the stages' user never does, whatever
        // the modes (see docs/security.md). Nobody but root opens the shared memory.
        const int gid = user_.control_group ? static_cast<int>(user_.control_gid) : -1;
        control_ = std::make_unique<ControlServer>(
            control_socket_path(cfg_.runtime_dir, cfg_.instance), gid,
            [this](const std::string& l) { return handle_command(l); },
            geteuid() == 0 ? static_cast<long>(user_.uid) : -1L);
    } catch (const std::exception& e) {
        log_err("%s", e.what());
        return EX_OSERR;
    }
    write_live_config(seg_->control_rw().config, live);
    flow_control_ = std::make_unique<FlowControlSet>(seg_->control_rw().flow_control);
    // The first customer set goes out before procd starts.
    customers_ = std::make_unique<CustomerSetPublisher>(*seg_);
    customers_->offer(cfg_.customers.networks);
    customers_->service(0, monotonic_ns());
    try {
        // The role is known before any stage starts: a backup's netd never sends a byte.
        ha_ = std::make_unique<HaMonitor>(cfg_.ha, seg_->control_rw(), monotonic_ns());
    } catch (const std::exception& e) {
        log_err("%s", e.what());
        return kExitConfig;
    }
    seg_->control_rw().ctld_pid.store(getpid());
    seg_->stage(StageId::ctld).pid.store(getpid());
    seg_->stage(StageId::ctld).state.store(static_cast<uint32_t>(StageState::ready));

    if (opt_.replay.empty()) {
        // Before capd starts: every packet of this run is stamped after restart_gap_last.
        coverage_ = std::make_unique<CaptureCoverage>(cfg_.runtime_dir, cfg_.instance);
        const uint64_t wall = realtime_ns();
        const auto left = coverage_->begin(wall);
        if (recovery_) {
            // The adopted segment knows where capture stopped; procd reports the gap to the
            // new capture's opening (ControlBlock::adopted).
            seg_->control_rw().adopted.store(1);
        } else if (left) {
            seg_->control_rw().restart_gap_first.store(*left);
            seg_->control_rw().restart_gap_last.store(wall);
            log_warn("the previous run of instance %s did not stop in order: nothing captured for %.3f s "
                     "(reported to the classifier as a ctld_restart loss record)",
                     cfg_.instance.c_str(), double(wall - *left) / 1e9);
        }
    }
    start_database();
    start_stages();
    loop();
    if (coverage_ && exit_code_ == 0) coverage_->finish();  // an orderly stop leaves no gap
    stop_database();  // writes the last flow events (procd has finished) before the segment goes

    log_final_counters(*seg_, cfg_.instance);
    control_.reset();
    flow_control_.reset();
    customers_.reset();
    seg_.reset();
    Segment::remove(cfg_.instance);
    for (StageId id : {StageId::capd, StageId::procd, StageId::netd})
        unlink(stage_lock_path(cfg_.runtime_dir, cfg_.instance, stage_name(id)).c_str());
    return exit_code_;
}

void Controller::start_stages() {
    StageOptions so;
    so.bin_dir = bin_dir();
    so.instance = cfg_.instance;
    so.foreground = opt_.foreground;
    so.hang_timeout_ns = static_cast<uint64_t>(cfg_.supervisor.hang_timeout) * kSecond;
    so.uid = user_.uid;
    so.gid = user_.gid;
    so.jail = jail_;
    so.lock_dir = cfg_.runtime_dir;
    so.replay = !opt_.replay.empty();
    so.metrics_fd = opt_.metrics_fd;
    if (opt_.metrics_fd >= 0) metrics_ = std::make_unique<MetricsPublisher>(seg_->control_rw().metrics);
    // Downstream first, so every consumer is there before its producer starts.
    stages_[0] = std::make_unique<StageSupervisor>(StageId::netd, *seg_, so);
    stages_[1] = std::make_unique<StageSupervisor>(StageId::procd, *seg_, so);
    stages_[2] = std::make_unique<StageSupervisor>(StageId::capd, *seg_, so);
    for (auto& s : stages_) s->start();
    next_gc_ = monotonic_ns() + static_cast<uint64_t>(cfg_.flow.gc_interval) * kSecond;
    log_notice("instance %s started%s%s", cfg_.instance.c_str(), opt_.replay.empty() ? "" : ", replaying ",
               opt_.replay.c_str());
}

void Controller::begin_stop(const char* why) {
    if (stopping_) return;
    stopping_ = true;
    stop_started_ = monotonic_ns();
    seg_->control_rw().stop_capture.store(1, std::memory_order_release);
    for (auto& s : stages_)
        if (s) s->expect_finish();
    begin_database_stop();
    log_notice("stopping (%s): closing capture, draining the pipeline", why);
}

void Controller::handle_signals() {
    signalfd_siginfo si;
    while (read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        const int sig = static_cast<int>(si.ssi_signo);
        if (sig == SIGTERM || sig == SIGINT) {
            begin_stop(sigabbrev_np(sig));
        } else if (sig == SIGHUP) {
            bool ok = false;
            const std::string msg = reload(&ok);
            if (ok) log_notice("SIGHUP: %s", msg.c_str());
            else log_err("SIGHUP: %s", msg.c_str());
        }
    }
}

void Controller::drive_gc(uint64_t now) {
    // Expiry runs inside procd (the FlowMap's only writer); ctld only says when. No lock is
    // shared, so a killed procd or ctld leaves nothing held.
    if (now >= next_gc_) {
        seg_->control_rw().gc_request.fetch_add(1, std::memory_order_release);
        next_gc_ = now + static_cast<uint64_t>(cfg_.flow.gc_interval) * kSecond;
    }
}

void Controller::loop() {
    for (;;) {
        pfds_.clear();
        pfds_.push_back({signal_fd_, POLLIN, 0});
        control_->poll_fds(pfds_);
        const size_t n_control = pfds_.size() - 1;
        if (ha_->event_fd() >= 0) pfds_.push_back({ha_->event_fd(), POLLIN, 0});
        poll(pfds_.data(), pfds_.size(), std::min(100, ha_->timeout_ms(monotonic_ns())));
        handle_signals();
        const uint64_t now = monotonic_ns();
        // The role first: a change reaches netd and the DB writer before anything else here.
        ha_->service(pfds_.size() > n_control + 1 && (pfds_.back().revents & POLLIN), now);
        control_->service(pfds_.data() + 1, n_control, now);
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            for (auto& s : stages_)
                if (s->pid() == pid) s->on_exit(st, now);
        }
        for (auto& s : stages_) {
            if (!opt_.replay.empty() && s->state() == SupervisedState::backoff && fatal_start_failure(*s)) {
                log_err("angel-%s cannot start; giving up", stage_name(s->id()));
                exit_code_ = WEXITSTATUS(s->last_exit_status());
                begin_stop("a stage cannot start");
                force_stop_ = true;  // nothing to drain into
            }
        }
        // During an orderly stop a crash-looping stage that is down is not started again:
        // it would not get up to drain anything, and waiting for it only ends in the forced
        // stop after kStopDeadline. A single death is still restarted, so the drain completes.
        if (stopping_)
            for (auto& s : stages_)
                if (s->state() == SupervisedState::backoff && s->crash_looping()) {
                    s->give_up();
                    // Downstream must not wait for what a given-up stage will never say.
                    auto& st = seg_->header()->stop;
                    if (s->id() == StageId::capd) st.capd_finished.store(1, std::memory_order_release);
                    if (s->id() == StageId::procd) st.procd_finished.store(1, std::memory_order_release);
                    if (s->id() == StageId::netd) seg_->control_rw().netd_gone.store(1, std::memory_order_release);
                }
        for (auto& s : stages_) s->tick(now);
        seg_->stage(StageId::ctld).heartbeat_ns.store(now, std::memory_order_relaxed);
        drive_gc(now);
        customers_->service(CheckedSegmentView(*seg_).customer_generation(), now);
        publish_metrics(now);
        if (coverage_) coverage_->note(CheckedSegmentView(*seg_).capture_covered_ns(realtime_ns()), now);
        if (recovery_ && !recovery_gap_logged_) log_recovery_gap();
        apply_database_changes();
        service_database_stop();
        bool all_done = true;
        for (auto& s : stages_) all_done = all_done && s->done();
        if (all_done) return;  // replay finished, or an orderly stop completed
        // (Not while procd waits on the database writer within database.stop_drain_ms: that
        // bound is the operator's.)
        if (stopping_ && (force_stop_ || (now > stop_started_ + kStopDeadline && !database_holds_stop()))) {
            if (!force_stop_) log_err("orderly stop did not complete in time; killing the stages");
            for (auto& s : stages_) s->signal(SIGKILL);
            for (auto& s : stages_)
                if (s->alive()) waitpid(s->pid(), &st, 0);
            if (exit_code_ == 0) exit_code_ = EX_SOFTWARE;
            return;
        }
    }
}

std::string Controller::reload(bool* ok, bool db_only) {
    *ok = false;
    Config next;
    try {
        next = db_only ? file_cfg_ : load_config(opt_.config_path);
    } catch (const ConfigError& e) {
        return std::string("reload refused, running configuration kept: ") + e.what();
    }
    if (db_ && !db_only) db_->request_refresh();  // a changed database row follows within a moment
    const Config file_next = next;
    next = merge_database(file_next);
    const auto missing = missing_required(next, !opt_.replay.empty());
    if (!missing.empty()) return "reload refused, running configuration kept: required value missing: " + join(missing);
    const ReloadPlan plan = plan_reload(cfg_, next);
    const bool customers_changed = !(next.customers.networks == cfg_.customers.networks);
    if (customers_changed) {
        // The same check as at start: a set that fits the meter's room for it.
        if (const std::string p = customer_set_problem(next.customers.networks, nullptr); !p.empty())
            return "reload refused, running configuration kept: " + p;
    }
    if (!plan.restart_changes.empty())
        return "reload refused, nothing applied: " + join(plan.restart_changes) +
               " changed, which needs a restart of the meter";
    if (plan.live_changes.empty()) {
        *ok = true;
        file_cfg_ = file_next;
        return "reloaded: no change";
    }
    LiveConfig live;
    try {
        live = build_live_config(next, opt_.replay, key_, opt_.foreground);
    } catch (const std::exception& e) {
        return std::string("reload refused: ") + e.what();
    }
    // ha.mode is in the restart list above; the rest of ha applies here (the probe is rebuilt
    // only when its source changed, and the role looked at again at once).
    try {
        ha_->reconfigure(next.ha, monotonic_ns());
    } catch (const std::exception& e) {
        return std::string("reload refused: ") + e.what();
    }
    write_live_config(seg_->control_rw().config, live);
    // Built now, swapped in for procd by the loop (at once, unless procd still moves to the
    // set before).
    if (customers_changed) {
        customers_->offer(next.customers.networks);
        customers_->service(CheckedSegmentView(*seg_).customer_generation(), monotonic_ns());
    }
    // The supervisors keep their own copy of the hang timeout: hand them the new one.
    for (auto& s : stages_)
        if (s) s->set_hang_timeout(static_cast<uint64_t>(next.supervisor.hang_timeout) * kSecond);
    cfg_ = next;
    file_cfg_ = file_next;
    *ok = true;
    return "reloaded (generation " + std::to_string(seg_->control().config.generation.load()) +
           "): " + join(plan.live_changes);
}

void Controller::log_recovery_gap() {
    const auto gap = CheckedSegmentView(*seg_).adopted_gap(realtime_ns());
    if (!gap.second) return;
    recovery_gap_logged_ = true;
    log_warn("capture gap across the restart after angel-ctld pid %d died: %.3f s with nothing captured "
             "(reported to the classifier as a ctld_restart loss record)",
             static_cast<int>(recovery_->previous_pid), double(gap.second - gap.first) / 1e9);
}

MeterView Controller::meter_view() const {
    MeterView v;
    v.instance = cfg_.instance;
    v.ha = ha_->report(monotonic_ns());
    v.role = ha_role_name(v.ha.role);
    v.config_generation = seg_->control().config.generation.load();
    v.ctld_started_ns = started_ns_;
    v.stopping = stopping_;
    v.customers = customers_->status(CheckedSegmentView(*seg_).customer_generation());
    v.recovery = recovery_.get();
    for (auto& s : stages_) v.stages.push_back(s.get());
    if (db_) {
        v.database = true;
        v.db = db_->stats();
    }
    return v;
}

void Controller::publish_metrics(uint64_t now) {
    if (!metrics_ || now < next_metrics_) return;
    next_metrics_ = now + kSecond;
    const CustomerSetStatus cs = customers_->status(CheckedSegmentView(*seg_).customer_generation());
    metrics_->publish(render_prometheus(*seg_, meter_view(), &flow_control_->stats(), &cs));
}

ControlReply Controller::handle_command(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> words;
    bool json = false;
    for (std::string w; in >> w;) {
        if (w == "--json") json = true;
        else words.push_back(w);
    }
    if (words.empty()) return {false, "empty command"};
    const std::string& cmd = words[0];
    if (cmd == "status") {
        const MeterView v = meter_view();
        return {true, render_status(*seg_, v, json)};
    }
    const CustomerSetStatus cs = customers_->status(CheckedSegmentView(*seg_).customer_generation());
    if (cmd == "stats") {
        // --prometheus: the page /metrics serves, rendered now (node_exporter's textfile collector).
        if (std::find(words.begin(), words.end(), "--prometheus") != words.end())
            return {true, render_prometheus(*seg_, meter_view(), &flow_control_->stats(), &cs)};
        return {true, render_stats(*seg_, json, &flow_control_->stats(), &cs)};
    }
    if (cmd == "mute" || cmd == "unmute") return flow_control_command(words, json);
    if (cmd == "flows") {
        FlowsQuery q;
        for (size_t i = 1; i < words.size(); i += 2) {  // option, value
            const bool top = words[i] == "--top", limit = words[i] == "--limit";
            if ((!top && !limit) || i + 1 >= words.size())
                return {false, "usage: flows [--top N | --limit N] [--json]"};
            char* end = nullptr;
            const unsigned long n = std::strtoul(words[i + 1].c_str(), &end, 10);
            if (!end || *end || words[i + 1].empty() || n == 0 || n > kMaxFlowsReply)
                return {false, "flows: N must be 1.." + std::to_string(kMaxFlowsReply)};
            q.top = top;
            q.count = n;
        }
        return {true, render_flows(*seg_, q, json)};
    }
    if (cmd == "role") {
        return {true, render_role(ha_->report(monotonic_ns()), json)};
    }
    if (cmd == "reload") {
        bool ok = false;
        const std::string msg = reload(&ok);
        if (ok) log_notice("%s", msg.c_str());
        else log_err("%s", msg.c_str());
        return {ok, ok ? msg + "\n" : msg};
    }
    if (cmd == "restart") {
        if (words.size() != 2) return {false, "usage: restart capd|procd|netd"};
        for (auto& s : stages_) {
            if (words[1] == stage_name(s->id()) || words[1] == std::string("angel-") + stage_name(s->id())) {
                if (stopping_) return {false, "the meter is stopping"};
                log_notice("restarting angel-%s on request", stage_name(s->id()));
                s->request_restart(monotonic_ns());
                return {true, std::string("restarting ") + stage_name(s->id()) + "\n"};
            }
        }
        return {false, "no stage named '" + words[1] + "' (capd, procd, netd)"};
    }
    if (cmd == "stop") {
        begin_stop("angelctl stop");
        return {true, "stopping\n"};
    }
    return {false, "unknown command '" + cmd + "' (status, stats, flows, reload, restart, stop, role, mute, unmute)"};
}

}  // namespace angel
