// angel-ctld: the supervisor. Checks the configuration (-t), detaches (unless -f), holds the
// pidfile, and hands over to the Controller, which creates the segment, starts capd, procd
// and netd, restarts what dies, drives flow expiry, serves angelctl and stops in order.
#include <getopt.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/config/config.hpp"
#include "common/log.hpp"
#include "ctld/customers/customer_set_publisher.hpp"
#include "ctld/controller.hpp"
#include "ctld/daemonize.hpp"
#include "ctld/db/db_config_source.hpp"
#include "ctld/db/db_schema.hpp"
#include "ctld/ha/replay_window_check.hpp"
#include "ctld/metrics/metrics_listener.hpp"
#include "ctld/runtime_files.hpp"
#include "ctld/stage_user.hpp"

using namespace angel;

namespace {

struct Options {
    ControllerOptions ctl;
    bool check_only = false;
    bool verbose = false;
    bool print_pidfile = false;  // for service scripts: where the pidfile of this config is
    bool db_init = false;        // create or upgrade the database schema (angelctl db-init) and exit
};

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: angel-ctld [-f] [-t [-v]] [-c FILE] [--replay PCAP] [--pidfile-path] [--db-init]\n");
    std::exit(EX_USAGE);
}

Options parse_args(int argc, char** argv) {
    static const option longopts[] = {{"replay", required_argument, nullptr, 'r'},
                                      {"config", required_argument, nullptr, 'c'},
                                      {"foreground", no_argument, nullptr, 'f'},
                                      {"check", no_argument, nullptr, 't'},
                                      {"pidfile-path", no_argument, nullptr, 'P'},
                                      {"db-init", no_argument, nullptr, 'D'},
                                      {"help", no_argument, nullptr, 'h'},
                                      {nullptr, 0, nullptr, 0}};
    Options o;
    o.ctl.config_path = kDefaultConfigPath;
    int c;
    while ((c = getopt_long(argc, argv, "c:ftvr:h", longopts, nullptr)) != -1) {
        switch (c) {
            case 'c': o.ctl.config_path = optarg; break;
            case 'f': o.ctl.foreground = true; break;
            case 't': o.check_only = true; break;
            case 'v': o.verbose = true; break;
            case 'r': o.ctl.replay = optarg; break;
            case 'P': o.print_pidfile = true; break;
            case 'D': o.db_init = true; break;
            default: usage();
        }
    }
    if (optind != argc) usage();
    return o;
}

void warn_readable_secrets(const Config& cfg, const std::string& path) {
    struct stat st{};
    if (conninfo_has_password(cfg.database.conninfo) && stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
        log_warn("%s holds a database password and is readable by group or others (mode %03o): chmod 600 it",
                 path.c_str(), st.st_mode & 0777);
}

}  // namespace

int main(int argc, char** argv) {
    const Options opt = parse_args(argc, argv);
    log_init("angel-ctld", true);
    Config cfg;
    try {
        cfg = load_config(opt.ctl.config_path);
    } catch (const ConfigError& e) {
        log_err("%s", e.what());
        return kExitConfig;
    }
    if (opt.print_pidfile) {
        std::printf("%s/%s.pid\n", cfg.runtime_dir.c_str(), cfg.instance.c_str());
        return 0;
    }
    if (opt.db_init) {
        warn_readable_secrets(cfg, opt.ctl.config_path);
        bool ok = false;
        const std::string msg = db_init(cfg.database.conninfo, 10000, &ok);
        if (ok) std::printf("%s\n", msg.c_str());
        else log_err("%s", msg.c_str());
        return ok ? 0 : (cfg.database.conninfo.empty() ? kExitConfig : EX_UNAVAILABLE);
    }
    // Values the database sets override the file's; they are read (bounded) before deciding
    // whether something required is missing. Unreachable: the file's values, if complete.
    const Config file_cfg = cfg;
    DbConfigValues db_values;
    if (!cfg.database.conninfo.empty()) {
        std::string err;
        db_values = fetch_db_config_at_start(cfg, 2500, &err);
        if (!db_values.fetched) {
            log_warn("database %s unreachable at start (%s): running on the file's values; retrying in the "
                     "background", mask_conninfo(cfg.database.conninfo).c_str(), err.c_str());
        } else {
            std::vector<std::string> notes;
            cfg = merge_db_config(file_cfg, db_values, &notes);
            for (const auto& n : notes) log_warn("%s", n.c_str());
        }
    }
    const bool replay = !opt.ctl.replay.empty();
    const auto missing = missing_required(cfg, replay);
    if (!missing.empty()) {
        std::string names;
        for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
        log_err("%s: required value missing (in neither the file nor the database): %s",
                opt.ctl.config_path.c_str(), names.c_str());
        return kExitConfig;
    }
    warn_readable_secrets(cfg, opt.ctl.config_path);
    // The customer set must fit the room the meter keeps for it: refused here, at -t and
    // before detaching (the same check applies on reload).
    std::string customer_summary;
    if (const std::string p = customer_set_problem(cfg.customers.networks, &customer_summary); !p.empty()) {
        log_err("%s: %s", opt.ctl.config_path.c_str(), p.c_str());
        return kExitConfig;
    }
    // The HA replay window the record ring can hold, against the interfaces' line rate.
    if (!replay) {
        const std::string w = replay_window_warning(cfg);
        for (size_t at = 0; at < w.size();) {
            const size_t nl = std::min(w.find('\n', at), w.size());
            log_warn("%s", w.substr(at, nl - at).c_str());
            at = nl + 1;
        }
    }
    // Who the stages run as: refused here, before anything starts, when it would be root.
    StageUser stage_user;
    try {
        stage_user = resolve_stage_user(cfg);
    } catch (const ConfigError& e) {
        log_err("%s", e.what());
        return kExitConfig;
    }
    if (opt.check_only) {
        if (opt.verbose) std::fputs(describe(cfg).c_str(), stdout);
        std::printf("%s: stages run as %s (uid %u, gid %u)%s\n", opt.ctl.config_path.c_str(), stage_user.name.c_str(),
                    static_cast<unsigned>(stage_user.uid), static_cast<unsigned>(stage_user.gid),
                    stage_user.notice.empty() ? "" : " - user not set, no 'angel' account");
        if (cfg.ha.mode != "none")
            std::printf("%s: ha.mode %s (%s): both meters of the pair must use database.meter_id \"%s\" and the "
                        "same flow.id_key\n",
                        opt.ctl.config_path.c_str(), cfg.ha.mode.c_str(),
                        cfg.ha.mode == "vip" ? cfg.ha.vip.c_str() : cfg.ha.state_file.c_str(),
                        cfg.database.meter_id.c_str());
        std::printf("%s: %s\n", opt.ctl.config_path.c_str(), customer_summary.c_str());
        std::printf("%s: configuration OK\n", opt.ctl.config_path.c_str());
        return 0;
    }
    if (replay && access(opt.ctl.replay.c_str(), R_OK) != 0) {
        log_err("cannot read replay file %s: %s", opt.ctl.replay.c_str(), strerror(errno));
        return EX_NOINPUT;
    }
    if (!stage_user.notice.empty()) log_notice("%s", stage_user.notice.c_str());
    // runtime_dir and the stages' jail are checked before detaching, so that a refusal is
    // seen on the terminal (or by the rc script), not only in syslog.
    const std::string dir_problem =
        prepare_runtime_dir(cfg.runtime_dir, stage_user.control_group ? static_cast<int>(stage_user.control_gid) : -1);
    if (!dir_problem.empty()) {
        log_err("%s", dir_problem.c_str());
        return EX_CANTCREAT;
    }
    std::string jail;
    if (const std::string p = prepare_jail(cfg.runtime_dir, &jail); !p.empty()) {
        log_err("%s", p.c_str());
        return EX_CANTCREAT;
    }
    // metrics.listen: bound here, as root and before detaching, so that a privileged port works
    // and a refusal is seen where the meter was started; netd serves it (ctld/metrics/).
    ControllerOptions ctl_opt = opt.ctl;
    if (!cfg.metrics.listen.empty()) {
        std::string err;
        ctl_opt.metrics_fd = open_metrics_listener(cfg.metrics.listen, &err);
        if (ctl_opt.metrics_fd < 0) {
            log_err("%s: %s", opt.ctl.config_path.c_str(), err.c_str());
            return kExitConfig;
        }
    }
    int ready_fd = -1;
    if (!opt.ctl.foreground) {
        ready_fd = daemonize();
        log_init("angel-ctld", false);
    }
    PidFile pid_guard(cfg.runtime_dir + "/" + cfg.instance + ".pid");
    if (!pid_guard.acquired()) return EX_TEMPFAIL;
    daemon_ready(ready_fd);
    Controller ctl(ctl_opt, cfg, stage_user);
    ctl.set_database(file_cfg, db_values);
    return ctl.run();
}
