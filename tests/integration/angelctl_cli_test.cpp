// angelctl as an operator types it (issue 13 item 7), against a real angel-ctld:
//  - UsageErrors: a line angelctl cannot parse exits 64 (EX_USAGE) with one line on stderr and
//    nothing sent; a missing configuration file exits 78 and an unreachable socket 69, wherever
//    -c or -s stands.
//  - OptionsAfterCommand: -c, -s and --json after the command give what they give before it
//    (stages and pids, flows, counters, role, a mute set with the options after the command and
//    cleared with them before); IPv6 endpoints in `flows` are [address]:port.
//  - ManPageListsEveryCommand: the commands of docs/angelctl.8 are exactly those angelctl's usage
//    lists and those angel-ctld names in its own "unknown command" answer (plus db-init, which
//    angelctl runs itself); each documented command, with each documented option, is then run
//    against the meter and must not be refused as unknown (stop last, and the meter must stop).
// The meter replays a small generated trace through a FIFO kept open, so it runs (with its flows
// live) until the test ends it. Everything it made goes with the test's temporary directory.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "meter_harness.hpp"
#include "test_support.hpp"

namespace angel::itest {
namespace {

constexpr uint64_t kPackets = 256;  // a multiple of 64: capd publishes it all without an EOF

CommandResult angelctl_run(std::vector<std::string> args) {
    args.insert(args.begin(), binary("angelctl").string());
    return run_command(args, Millis(20000));
}

// One line angel-ctld answers to `line`, sent over its socket without angelctl.
std::string ask_ctld(const fs::path& sock, const std::string& line) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, sock.c_str(), sizeof sa.sun_path - 1);
    std::string reply;
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
        const std::string l = line + "\n";
        if (write(fd, l.data(), l.size()) == static_cast<ssize_t>(l.size())) {
            char buf[4096];
            for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<size_t>(n));
        }
    }
    if (fd >= 0) close(fd);
    return reply;
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

class AngelctlCli : public ::testing::Test {
protected:
    void SetUp() override {
        instance_ = unique_name("cli");
        shm_ = std::make_unique<ShmGuard>(instance_);
        fs::create_directories(dir_ / "run");
        conf_ = dir_ / "meter.conf";
        sock_ = dir_ / "run" / (instance_ + ".sock");
    }
    void TearDown() override {
        if (fifo_ >= 0) close(fifo_);  // end of input: a replay still running drains and exits
        if (ctld_.started() && !ctld_.wait_for(Millis(20000))) ctld_.kill();
    }

    // angel-ctld replaying a generated trace through a FIFO; returns once every packet is in
    // procd and the flows are live.
    void start_meter() {
        ASSERT_EQ(start_local_sink(sink_, dir_.path(), "sink", 120), "");
        MeterConfig c;
        c.instance = instance_;
        c.runtime_dir = dir_ / "run";
        c.classifier_host = "127.0.0.1";
        c.classifier_port = sink_.port;
        c.extra = "supervisor = { hang_timeout = 300; };\n";
        write_file(conf_, c.text());
        const fs::path trace = dir_ / "trace.pcap";
        const CommandResult g = run_command({binary("angel-gen-trace").string(), "--out", trace.string(), "--packets",
                                             std::to_string(kPackets), "--flows", "40", "--seed", "3"},
                                            Millis(20000));
        ASSERT_TRUE(g.ok()) << g.describe();
        ASSERT_NE(g.err.find("ipv6"), std::string::npos);
        const fs::path fifo = dir_ / "replay.fifo";
        ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
        ctld_ = Process({{binary("angel-ctld").string(), "-f", "-c", conf_.string(), "--replay", fifo.string()},
                         dir_ / "ctld.stdout", dir_ / "ctld.stderr", {}});
        ASSERT_TRUE(wait_until(
            [&] { return (fifo_ = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0; }, Millis(15000)))
            << log();
        ASSERT_EQ(fcntl(fifo_, F_SETFL, 0), 0);
        const std::string bytes = read_file(trace);
        ASSERT_LT(bytes.size(), 65536u) << "the FIFO must take the whole trace without a reader's help";
        ASSERT_EQ(write(fifo_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
        ASSERT_TRUE(wait_until(
            [&] {
                const CommandResult r = angelctl_run({"-c", conf_.string(), "stats", "--json"});
                return r.ok() && json_number_in(r.out, "procd", "packets") >= kPackets;
            },
            Millis(20000)))
            << log();
    }
    std::string log() const { return read_file(dir_ / "ctld.stderr"); }

    TempDir dir_{"angel-cli"};
    std::string instance_;
    std::unique_ptr<ShmGuard> shm_;
    fs::path conf_, sock_;
    LocalSink sink_;
    Process ctld_;
    int fifo_ = -1;
};

TEST_F(AngelctlCli, UsageErrors) {
    write_file(conf_, "instance = \"" + instance_ + "\";\nruntime_dir = \"" + (dir_ / "run").string() + "\";\n");
    const std::string c = conf_.string();
    const std::vector<std::vector<std::string>> refused = {
        {"status", "-c", c, "--bogus"}, {"--bogus", "-c", c, "status"}, {"-c", c, "-x", "status"},
        {"-c", c, "frobnicate"},        {"-c", c, "status", "now"},     {"-c", c, "restart"},
        {"mute", "-c", c},              {"-c", c, "mute", "1", "2"},    {"flows", "--top", "-c", c},
        {"-c", c, "--top", "5", "flows"}, {"flows", "--top", "5", "--limit", "5", "-c", c},
        {"stats", "--prometheus", "--json", "-c", c}, {"--json=1", "-c", c, "status"},
        {"status", "-c"},               {"-c", c, "status", "--", "--json"}, {"db-init", "-c", c, "--json"},
        {"db-init", "-c", c, "-s", sock_.string()}, {"db-init", "-c", c, "now"},
    };
    for (const auto& args : refused) {
        const CommandResult r = angelctl_run(args);
        EXPECT_EQ(r.status.code(), 64) << command_line(args) << "\n" << r.describe();
        EXPECT_TRUE(one_line(r.err) && r.err.rfind("angelctl: ", 0) == 0) << command_line(args) << ": " << r.err;
        EXPECT_EQ(r.out, "");
    }
    // No command at all: the usage on stderr, 64; asked for: on stdout, 0.
    CommandResult r = angelctl_run({"-c", c});
    EXPECT_EQ(r.status.code(), 64);
    EXPECT_NE(r.err.find("usage: angelctl"), std::string::npos) << r.err;
    for (const char* h : {"-h", "--help"}) {
        r = angelctl_run({"status", h});
        EXPECT_EQ(r.status.code(), 0) << r.describe();
        EXPECT_NE(r.out.find("usage: angelctl"), std::string::npos) << r.out;
    }
    // Not usage errors: a missing file is 78 and a socket nobody listens on 69, before or after.
    for (const auto& args : std::vector<std::vector<std::string>>{{"-c", (dir_ / "none.conf").string(), "status"},
                                                                   {"status", "-c", (dir_ / "none.conf").string()},
                                                                   {"db-init", "-c", (dir_ / "none.conf").string()}}) {
        r = angelctl_run(args);
        EXPECT_EQ(r.status.code(), 78) << command_line(args) << "\n" << r.describe();
    }
    for (const auto& args : std::vector<std::vector<std::string>>{{"-c", c, "status"}, {"status", "-c", c},
                                                                   {"status", "-s", sock_.string()}}) {
        r = angelctl_run(args);
        EXPECT_EQ(r.status.code(), 69) << command_line(args) << "\n" << r.describe();
    }
}

TEST_F(AngelctlCli, OptionsAfterCommand) {
    ASSERT_NO_FATAL_FAILURE(start_meter());
    const std::string c = conf_.string(), s = sock_.string();
    const auto both = [&](const std::vector<std::string>& cmd) {
        std::vector<std::string> before = {"-c", c}, after = cmd;
        before.insert(before.end(), cmd.begin(), cmd.end());
        after.insert(after.end(), {"-c", c});
        std::pair<CommandResult, CommandResult> out{angelctl_run(before), angelctl_run(after)};
        EXPECT_TRUE(out.first.ok()) << command_line(before) << "\n" << out.first.describe();
        EXPECT_TRUE(out.second.ok()) << command_line(after) << "\n" << out.second.describe();
        return out;
    };

    // status: the same three stages with the same pids (uptimes move, so not the whole text).
    auto [sb, sa] = both({"status", "--json"});
    const StatusView vb = parse_status_json(sb.out), va = parse_status_json(sa.out);
    ASSERT_EQ(vb.stages.size(), 3u) << sb.out;
    ASSERT_EQ(va.stages.size(), 3u) << sa.out;
    for (const auto& [name, st] : vb.stages) EXPECT_EQ(va.stages.at(name).pid, st.pid) << name;
    auto [sj, sjj] = both({"--json", "status"});
    EXPECT_EQ(parse_status_json(sjj.out).stages.size(), 3u) << sjj.out;
    // The text status too (not JSON: --json after the command is what made it JSON above).
    auto [tb, ta] = both({"status"});
    EXPECT_EQ(tb.out.find('{'), std::string::npos);
    EXPECT_EQ(ta.out.find('{'), std::string::npos);

    // Nothing moves between two calls of these while the input waits: the whole text is equal.
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"flows"}, {"flows", "--json"}, {"flows", "--top", "3"}, {"flows", "--limit=5", "--json"}}) {
        auto [b, a] = both(cmd);
        EXPECT_EQ(b.out, a.out) << command_line(cmd);
        EXPECT_FALSE(b.out.empty());
    }
    auto [fb, fa] = both({"flows", "--top", "3"});
    EXPECT_EQ(std::count(fb.out.begin(), fb.out.end(), '\n'), 5) << fb.out;  // heading, 3 flows, "not shown"

    // The counters of the stages equal, whichever side the options stand on.
    auto [kb, ka] = both({"stats", "--json"});
    for (const char* k : {"packets", "ip_packets", "flows_started"})
        EXPECT_EQ(json_number_in(kb.out, "procd", k), json_number_in(ka.out, "procd", k)) << k;
    EXPECT_EQ(json_number_in(ka.out, "procd", "packets"), kPackets);
    auto [pb, pa] = both({"stats", "--prometheus"});
    EXPECT_NE(pa.out.find("# TYPE angel_"), std::string::npos);
    auto [rb, ra] = both({"role", "--json"});
    EXPECT_EQ(json_field(rb.out, "role"), "master");
    EXPECT_EQ(json_field(ra.out, "role"), "master");

    // A mute set with every option after the command is the one cleared with them before it.
    CommandResult r = angelctl_run({"mute", "4242", "-s", s, "--json"});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.out, "{\"flow_id\":4242,\"state\":\"muted\"}\n");
    r = angelctl_run({"-c", c, "unmute", "4242"});
    EXPECT_EQ(r.out, "flow 4242 unmuted\n") << r.describe();
    r = angelctl_run({"unmute", "--config=" + c, "4242"});
    EXPECT_EQ(r.out, "flow 4242 not muted\n") << r.describe();
    // "--" ends the options: what follows is the command.
    r = angelctl_run({"-c", c, "--", "role"});
    EXPECT_TRUE(r.ok()) << r.describe();

    // IPv6 endpoints (a fifth of the generated flows) are [address]:port; IPv4 ones a.b.c.d:port.
    r = angelctl_run({"flows", "--limit", "100", "-c", c});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_NE(r.out.find(" [2001:db8:c:"), std::string::npos) << r.out;
    for (size_t at = r.out.find("2001:db8:"); at != std::string::npos; at = r.out.find("2001:db8:", at + 1)) {
        EXPECT_EQ(r.out[at - 1], '[') << "an IPv6 endpoint without brackets:\n" << r.out;
        const size_t close = r.out.find(']', at);
        ASSERT_NE(close, std::string::npos);
        EXPECT_EQ(r.out[close + 1], ':') << r.out;
        EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(r.out[close + 2]))) << r.out;
    }
    EXPECT_NE(r.out.find(" 198.18."), std::string::npos) << r.out;
}

// docs/angelctl.8's commands: the first word of each heading (.TP, then a .B/.BI/.BR line) of
// the COMMANDS section, and the long options (\-\-name) each heading shows.
std::map<std::string, std::set<std::string>> man_page_commands(const std::string& man) {
    std::map<std::string, std::set<std::string>> out;
    std::istringstream in(man);
    bool in_commands = false, heading = false;
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(".SH ", 0) == 0) {
            in_commands = line == ".SH COMMANDS";
            continue;
        }
        if (!in_commands) continue;
        if (line == ".TP") {
            heading = true;
            continue;
        }
        if (!heading) continue;
        heading = false;
        std::istringstream words(line);
        std::string macro, name;
        words >> macro >> name;
        if (macro != ".B" && macro != ".BI" && macro != ".BR") continue;
        for (size_t at; (at = name.find("\\-")) != std::string::npos;) name.erase(at, 1);  // troff's \- is a dash
        auto& opts = out[name];
        for (size_t at = line.find("\\-\\-"); at != std::string::npos; at = line.find("\\-\\-", at + 4)) {
            size_t end = at + 4;
            while (end < line.size() && (std::isalnum(static_cast<unsigned char>(line[end])) || line[end] == '-')) ++end;
            opts.insert("--" + line.substr(at + 4, end - at - 4));
        }
    }
    return out;
}

// The commands listed under "commands:" in angelctl's usage: the first word of each indented line.
std::set<std::string> usage_commands(const std::string& usage) {
    std::set<std::string> out;
    std::istringstream in(usage);
    bool listing = false;
    for (std::string line; std::getline(in, line);) {
        if (line == "commands:") {
            listing = true;
            continue;
        }
        if (!listing) continue;
        if (line.rfind("  ", 0) != 0) break;
        std::istringstream w(line);
        std::string name;
        w >> name;
        out.insert(name);
    }
    return out;
}

// The names in angel-ctld's "unknown command 'x' (a, b, c)".
std::set<std::string> ctld_commands(const std::string& reply) {
    std::set<std::string> out;
    const size_t open = reply.find('('), close = reply.find(')', open);
    if (open == std::string::npos || close == std::string::npos) return out;
    std::istringstream in(reply.substr(open + 1, close - open - 1));
    for (std::string w; std::getline(in, w, ',');) {
        w.erase(0, w.find_first_not_of(' '));
        out.insert(w);
    }
    return out;
}

std::string joined(const std::set<std::string>& s) {
    std::string out;
    for (const auto& w : s) out += (out.empty() ? "" : " ") + w;
    return out;
}

TEST_F(AngelctlCli, ManPageListsEveryCommand) {
    const auto man = man_page_commands(read_file(source_dir() / "docs" / "angelctl.8"));
    std::set<std::string> documented;
    for (const auto& [name, opts] : man) documented.insert(name);
    ASSERT_GE(documented.size(), 5u) << "no COMMANDS section found in docs/angelctl.8";

    const CommandResult help = angelctl_run({"-h"});
    ASSERT_TRUE(help.ok()) << help.describe();
    EXPECT_EQ(joined(usage_commands(help.out)), joined(documented)) << "angelctl -h vs docs/angelctl.8\n" << help.out;

    ASSERT_NO_FATAL_FAILURE(start_meter());
    const std::string unknown = ask_ctld(sock_, "no-such-command");
    ASSERT_EQ(unknown.rfind("ERR unknown command", 0), 0u) << unknown;
    std::set<std::string> served = ctld_commands(unknown);
    served.insert("db-init");  // angelctl's own: it runs angel-ctld --db-init
    EXPECT_EQ(joined(served), joined(documented)) << "angel-ctld's commands vs docs/angelctl.8";

    // Each documented command, then each with each documented option, run for real. What a
    // command needs as arguments and option values is the test's: a harmless one each.
    const std::map<std::string, std::vector<std::string>> args = {
        {"restart", {"no-such-stage"}}, {"mute", {"77"}}, {"unmute", {"77"}}};
    const std::set<std::string> valued = {"--top", "--limit"};
    std::vector<std::vector<std::string>> runs;
    for (const auto& [name, opts] : man) {
        if (name == "stop") continue;
        std::vector<std::string> base = {name};
        if (args.count(name)) base.insert(base.end(), args.at(name).begin(), args.at(name).end());
        runs.push_back(base);
        for (const auto& o : opts) {
            auto with = base;
            with.push_back(o);
            if (valued.count(o)) with.push_back("3");
            runs.push_back(with);
        }
    }
    runs.push_back({"stop"});
    for (auto cmd : runs) {
        if (cmd[0] != "db-init" && cmd[0] != "stop") {  // angel-ctld knows it by name, without angelctl
            const std::string raw = ask_ctld(sock_, cmd[0]);
            EXPECT_EQ(raw.find("unknown command"), std::string::npos) << cmd[0] << ": " << raw;
        }
        cmd.insert(cmd.end(), {"-c", conf_.string()});
        const CommandResult r = angelctl_run(cmd);
        EXPECT_NE(r.status.code(), 64) << command_line(cmd) << "\n" << r.describe();
        EXPECT_EQ(r.err.find("unknown"), std::string::npos) << command_line(cmd) << "\n" << r.describe();
        if (cmd[0] == "restart") {
            EXPECT_EQ(r.status.code(), 1);  // refused by ctld for its argument, not for the command
            EXPECT_NE(r.err.find("no stage named"), std::string::npos) << r.err;
        } else if (cmd[0] == "db-init") {
            EXPECT_EQ(r.status.code(), 78) << r.describe();  // this meter has no database section
        } else {
            EXPECT_TRUE(r.ok()) << command_line(cmd) << "\n" << r.describe();
        }
    }
    // capd replaying a FIFO sits in a blocking read that the stop does not break: the end of
    // the input lets it finish the stop that angelctl began.
    ASSERT_TRUE(wait_until([&] { return log().find("stopping (angelctl stop)") != std::string::npos; }, Millis(5000)))
        << log();
    close(fifo_);
    fifo_ = -1;
    const auto st = ctld_.wait_for(Millis(30000));
    ASSERT_TRUE(st) << "the meter did not stop\n" << log();
    EXPECT_TRUE(st->ok()) << st->describe() << "\n" << log();
}

}  // namespace
}  // namespace angel::itest
