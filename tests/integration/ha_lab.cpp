#include "ha_lab.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

namespace angel::itest {

namespace {

constexpr const char* kIdKey = "7f3a9c0e11d24b6a8e5f0c9d2b4a6e81";  // the same on both meters
constexpr unsigned kTracePackets = 240000;  // 12 s at 20k packets/s
constexpr unsigned kTraceFlows = 2000;

std::string run_file(const fs::path& dir, const char* stem, unsigned run, const char* ext) {
    return (dir / (std::string(stem) + std::to_string(run) + ext)).string();
}

std::string concat_runs(const fs::path& dir, const char* stem, unsigned runs, const char* ext) {
    std::string all;
    for (unsigned r = 0; r < runs; ++r) all += read_file(run_file(dir, stem, r, ext));
    return all;
}

fs::path ha_script(const char* name) { return source_dir() / "tools" / "ha" / name; }

}  // namespace

std::string HaLab::Meter::log() const { return concat_runs(dir, "ctld", ctld_runs, ".err"); }
std::string HaLab::Meter::carp_log() const { return concat_runs(dir, "carp", carp_runs, ".log"); }

std::string HaLab::skip_reason(Carp carp) {
    std::vector<std::string> programs = {"tcpreplay", "tcpdump", "tshark"};
    programs.emplace_back(carp == Carp::ucarp_vip ? "ucarp" : "keepalived");
    if (std::string why = live_skip_reason(programs, false); !why.empty()) return why;
    if (std::string why = PgServer::unavailable_reason(); !why.empty()) return why;
    for (const char* b : {"angel-ctld", "angelctl", "angel-sink", "angel-gen-trace"})
        if (!fs::exists(binary(b))) return std::string("build ") + b + " first";
    return {};
}

HaLab::HaLab(Carp c) : carp(c), lab("ha") {
    pg = std::make_unique<PgServer>();
    src_ns = lab.add_namespace("src");
    tap_ns = lab.add_namespace("tap");
    cls_ns = lab.add_namespace("cls");
    for (size_t i = 0; i < m.size(); ++i) {
        Meter& x = m[i];
        x.name = "m" + std::to_string(i + 1);
        x.ns = lab.add_namespace(x.name);
        x.addr = "10.77.0." + std::to_string(i + 1);
        // m1 is the preferred master: ucarp's lower advskew, keepalived's higher priority.
        x.preference = carp == Carp::ucarp_vip ? (i == 0 ? 0 : 100) : (i == 0 ? 150 : 100);
        x.scratch = std::make_unique<MeterScratch>("ha", "ha");
        x.dir = x.scratch->dir;
        x.conf = x.dir / "meter.conf";
        x.sock = x.dir / "run" / (x.scratch->instance + ".sock");
        x.state_file = x.dir / "ha.state";
    }
    dir = m[0].dir;
    auto bridge = [&](const std::string& ns, const std::string& br, std::vector<std::string> opts) {
        std::vector<std::string> cmd = {"ip", "-n", ns, "link", "add", br, "type", "bridge"};
        cmd.insert(cmd.end(), opts.begin(), opts.end());
        netns::run_or_throw(cmd);
        if (fs::exists("/proc/sys/net/ipv6"))
            netns::run_or_throw(netns::NetnsLab::in(ns, {"sysctl", "-qw", "net.ipv6.conf." + br + ".disable_ipv6=1"}));
    };
    // The tap: a bridge that learns nothing (ageing_time 0) floods every frame to both meters.
    bridge(tap_ns, "br0", {"ageing_time", "0", "mcast_snooping", "0"});
    lab.add_veth(src_ns, "eth0", tap_ns, "p-src");
    for (size_t i = 0; i < m.size(); ++i) lab.add_veth(tap_ns, "p-" + m[i].name, m[i].ns, "cap0");
    for (const std::string port : {"p-src", "p-m1", "p-m2"})
        netns::run_or_throw({"ip", "-n", tap_ns, "link", "set", port, "master", "br0"});
    netns::run_or_throw({"ip", "-n", tap_ns, "link", "set", "br0", "up"});
    // The classifier link: CARP/VRRP adverts are multicast, so no snooping may hold them back.
    bridge(cls_ns, "br1", {"mcast_snooping", "0"});
    for (size_t i = 0; i < m.size(); ++i) {
        lab.add_veth(m[i].ns, "cl0", cls_ns, "c-" + m[i].name);
        netns::run_or_throw({"ip", "-n", cls_ns, "link", "set", "c-" + m[i].name, "master", "br1"});
        lab.add_address(m[i].ns, "cl0", m[i].addr + "/24");
    }
    lab.add_address(cls_ns, "br1", std::string(kClassifier) + "/24");
    netns::run_or_throw({"ip", "-n", cls_ns, "link", "set", "br1", "up"});

    trace = dir / "trace.pcap";
    netns::run_or_throw({binary("angel-gen-trace").string(), "--out", trace.string(), "--packets",
                         std::to_string(kTracePackets), "--flows", std::to_string(kTraceFlows), "--seed", "10",
                         // Whole frames: a bridge with br_netfilter loaded drops IP packets shorter
                         // than their header says (the default 128-byte snaplen would be cut).
                         "--snaplen", "65535"},
                        60);
    export_pcap = dir / "export.pcap";
    for (size_t i = 0; i < m.size(); ++i) {
        write_file(m[i].conf, config_text(i));
        chmod(m[i].conf.c_str(), 0600);  // it holds the conninfo
        if (carp == Carp::keepalived_vip_file) write_keepalived_conf(i);
    }
    const netns::CommandResult init = netns::run({binary("angelctl").string(), "-c", m[0].conf.string(), "db-init"}, 30);
    if (!init.ok()) throw std::runtime_error("angelctl db-init: " + init.describe());
}

HaLab::~HaLab() {
    sender.reset();
    tcpdump.reset();
    sink.reset();
    for (Meter& x : m) {
        x.carp.reset();  // ucarp's down script runs while the address is still there
        x.ctld.reset();
    }
}

std::string HaLab::config_text(size_t i) const {
    const Meter& x = m[i];
    MeterConfig c;
    c.instance = x.scratch->instance;
    c.runtime_dir = x.dir / "run";
    c.capture_interface = "cap0";
    c.classifier_host = kClassifier;
    c.classifier_port = kPort;
    c.extra = std::string("flow = { id_key = \"") + kIdKey + "\"; };\n" + "database = { conninfo = \"" +
              pg->conninfo() + "\"; meter_id = \"" + kMeterId + "\"; };\n";
    if (carp == Carp::ucarp_vip) c.extra += std::string("ha = { mode = \"vip\"; vip = \"") + kVip + "\"; };\n";
    else if (i == 0) c.extra += std::string("ha = { mode = \"vip\"; vip = \"") + kKeepalivedVip + "\"; };\n";
    else c.extra += "ha = { mode = \"file\"; state_file = \"" + x.state_file.string() + "\"; };\n";
    return c.text();
}

void HaLab::write_keepalived_conf(size_t i) const {
    const Meter& x = m[i];
    // A real keepalived.conf as docs/ha.md gives it, with the lab's names.
    std::ofstream(x.dir / "keepalived.conf")
        << "global_defs {\n  router_id " << x.name << "\n  enable_script_security\n  script_user root\n}\n"
        << "vrrp_instance angel {\n  state BACKUP\n  interface cl0\n  virtual_router_id 51\n  priority "
        << x.preference << "\n  advert_int 1\n  virtual_ipaddress {\n    " << kKeepalivedVip << "/24\n  }\n"
        << "  notify \"" << ha_script("keepalived-notify").string() << " " << x.state_file.string() << "\"\n}\n";
}

::testing::AssertionResult HaLab::start_classifier() {
    sink = std::make_unique<Child>(
        netns::NetnsLab::in(cls_ns, {binary("angel-sink").string(), "--listen",
                                     std::string(kClassifier) + ":" + std::to_string(kPort), "--idle", "600",
                                     "--out", sink_out().string()}),
        sink_summary(), dir / "sink.err");
    tcpdump = std::make_unique<Child>(
        netns::NetnsLab::in(cls_ns, {"tcpdump", "-n", "-i", "br1", "--immediate-mode", "-B", "65536", "-U", "-w", export_pcap.string(), "udp", "port",
                                     std::to_string(kPort)}),
        dir / "tcpdump.out", dir / "tcpdump.err");
    const bool ok = wait_until_s(
        [&] {
            return read_file(dir / "sink.err").find("listening on") != std::string::npos &&
                   read_file(dir / "tcpdump.err").find("listening on") != std::string::npos;
        },
        10);
    if (!ok || !sink->running() || !tcpdump->running())
        return ::testing::AssertionFailure() << "classifier side did not start: " << read_file(dir / "sink.err")
                                             << read_file(dir / "tcpdump.err");
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult HaLab::start_meter(size_t i) {
    Meter& x = m[i];
    const unsigned run = x.ctld_runs++;
    const fs::path err = run_file(x.dir, "ctld", run, ".err");
    x.ctld = std::make_unique<Child>(
        netns::NetnsLab::in(x.ns, {binary("angel-ctld").string(), "-f", "-c", x.conf.string()}),
        run_file(x.dir, "ctld", run, ".out"), err);
    if (!wait_until_s([&] { return read_file(err).find("angel-capd ready") != std::string::npos || !x.ctld->running(); },
                      20) ||
        !x.ctld->running())
        return ::testing::AssertionFailure() << x.name << " did not start:\n" << read_file(err);
    return ::testing::AssertionSuccess();
}

void HaLab::start_carp(size_t i) {
    Meter& x = m[i];
    const unsigned run = x.carp_runs++;
    std::vector<std::string> argv;
    if (carp == Carp::ucarp_vip) {
        // The command line of docs/ha.md: advbase 1 s, preempt, the vip scripts with prefix 24.
        argv = {"ucarp", "-i", "cl0", "-s", x.addr, "-v", "7", "-p", "angel-pair", "-a", kVip,
                "-u", ha_script("ucarp-vip-up").string(), "-d", ha_script("ucarp-vip-down").string(),
                "-x", "24", "-P", "-k", std::to_string(x.preference), "-b", "1", "-z"};
    } else {
        fs::remove(x.state_file);  // a fresh start: no state left from an earlier run
        argv = {"keepalived", "-n", "-l", "-D", "-f", (x.dir / "keepalived.conf").string(),
                "-p", (x.dir / "keepalived.pid").string(), "-r", (x.dir / "keepalived-vrrp.pid").string()};
    }
    const std::string log = run_file(x.dir, "carp", run, ".log");
    x.carp = std::make_unique<Child>(netns::NetnsLab::in(x.ns, argv), log, log + ".err");
}

void HaLab::stop_carp(size_t i) {
    Meter& x = m[i];
    if (!x.carp) return;
    x.carp->signal(SIGTERM);
    x.carp->wait(10);
}

void HaLab::kill_host(size_t i) {
    Meter& x = m[i];
    if (carp == Carp::keepalived_vip_file) {
        // keepalived's VRRP child would outlive its parent for a moment: kill it first.
        const long vrrp = std::strtol(read_file(x.dir / "keepalived-vrrp.pid").c_str(), nullptr, 10);
        if (vrrp > 1) kill(static_cast<pid_t>(vrrp), SIGKILL);
    }
    if (x.carp) x.carp->signal(SIGKILL);
    if (x.ctld) x.ctld->signal(SIGKILL);
    if (x.carp) x.carp->wait(5);
    if (x.ctld) x.ctld->wait(5);
}

void HaLab::set_link(size_t i, bool up) {
    netns::run_or_throw({"ip", "-n", m[i].ns, "link", "set", "cl0", up ? "up" : "down"});
}

HaLab::Role HaLab::role(size_t i) const {
    Role r;
    const netns::CommandResult c = angelctl(m[i].sock, {"role", "--json"});
    r.raw = c.out + c.err;
    if (!c.ok()) return r;
    r.role = json_field(c.out, "role");
    r.transitions = std::strtoull(json_field(c.out, "transitions").c_str(), nullptr, 10);
    return r;
}

bool HaLab::wait_role(size_t i, const std::string& want, double timeout_s) const {
    return wait_until_s([&] { return role(i).role == want; }, timeout_s, 0.05);
}

std::vector<uint32_t> HaLab::live_flow_ids(size_t i) const {
    std::vector<uint32_t> ids;
    const netns::CommandResult c = angelctl(m[i].sock, {"flows", "--limit", "10000", "--json"});
    for (const auto& o : json_flat_objects(c.out))
        if (auto it = o.find("flow_id"); it != o.end()) ids.push_back(static_cast<uint32_t>(std::stoul(it->second)));
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::vector<uint32_t> HaLab::db_flow_ids() const {
    std::vector<uint32_t> ids;
    for (const auto& row : pg->query(std::string("SELECT flow_id FROM angel.flows WHERE meter_id = '") + kMeterId + "'"))
        ids.push_back(static_cast<uint32_t>(std::stoul(row.at(0))));
    std::sort(ids.begin(), ids.end());
    return ids;
}

void HaLab::start_traffic(unsigned run) {
    sender = std::make_unique<Child>(
        netns::NetnsLab::in(src_ns, {"tcpreplay", "-i", "eth0", "--pps=20000", "--duration=30", trace.string()}),
        sender_out(run), dir / ("tcpreplay" + std::to_string(run) + ".err"));
}

void HaLab::stop_classifier() {
    if (tcpdump) {
        sleep_s(1.0);  // the last datagrams written (immediate mode: no block left unread at SIGINT)
        tcpdump->signal(SIGINT);
        tcpdump->wait(10);
    }
    if (sink) {
        // Nothing has been sent for a while: what the socket held has been read.
        sink->signal(SIGTERM);
        sink->wait(10);
    }
}

}  // namespace angel::itest
