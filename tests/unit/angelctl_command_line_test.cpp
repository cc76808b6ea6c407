// angelctl's command-line parse (ctl/command_line.cpp): its own options anywhere on the line,
// a command's options after the command, "--" ending the options, and a one-line refusal for
// everything else. The line sent to angel-ctld is the same wherever the options stood.
// (tests/integration/angelctl_cli_test.cpp runs the binary against a real meter.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ctl/command_line.hpp"

namespace angel::ctl {
namespace {

Request parse(std::vector<std::string> argv) { return parse_command_line(argv); }

TEST(AngelctlCommandLine, GlobalOptionsAnywhere) {
    const std::vector<std::vector<std::string>> same = {
        {"-c", "/etc/m.conf", "--json", "flows", "--top", "5"},
        {"flows", "--top", "5", "-c", "/etc/m.conf", "--json"},
        {"flows", "-c", "/etc/m.conf", "--top", "5", "--json"},
        {"--json", "flows", "--top=5", "--config=/etc/m.conf"},
        {"flows", "-c/etc/m.conf", "--json", "--top", "5"},
        {"--config", "/etc/m.conf", "flows", "--json", "--top", "5"},
    };
    for (const auto& argv : same) {
        const Request r = parse(argv);
        ASSERT_EQ(r.error, "") << ::testing::PrintToString(argv);
        ASSERT_NE(r.command, nullptr);
        EXPECT_STREQ(r.command->name, "flows");
        EXPECT_EQ(r.config_path, "/etc/m.conf");
        EXPECT_TRUE(r.json);
        EXPECT_EQ(control_line(r), "flows --top 5 --json") << ::testing::PrintToString(argv);
    }
    const Request s = parse({"mute", "17", "-s", "/run/angel/x.sock"});
    ASSERT_EQ(s.error, "");
    EXPECT_EQ(s.socket_path, "/run/angel/x.sock");
    EXPECT_EQ(control_line(s), "mute 17");
    const Request d = parse({"db-init", "-c", "/etc/m.conf"});
    ASSERT_EQ(d.error, "");
    EXPECT_TRUE(d.command->local);
    EXPECT_EQ(d.config_path, "/etc/m.conf");
}

TEST(AngelctlCommandLine, DoubleDashEndsOptions) {
    Request r = parse({"-c", "f", "--", "status"});
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(control_line(r), "status");
    // After "--" a word that looks like an option is an argument: status takes none.
    r = parse({"status", "--", "-c", "f"});
    EXPECT_EQ(r.error, "status takes 0 arguments, not 2 (usage: angelctl status)");
    r = parse({"--", "--json"});
    EXPECT_EQ(r.error, "unknown command '--json' (angelctl -h lists them)");
}

TEST(AngelctlCommandLine, RefusedInOneLine) {
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"status", "--bogus"}, "unknown option '--bogus' for status (usage: angelctl status)"},
        {{"--bogus", "status"}, "unknown option '--bogus' (angelctl -h lists the options)"},
        {{"-x"}, "unknown option '-x' (angelctl -h lists the options)"},
        {{"--top", "5", "flows"}, "--top is an option of flows: write it after the command"},
        {{"stats", "--top", "5"}, "unknown option '--top' for stats (usage: angelctl stats [--prometheus])"},
        {{"flows", "--top"}, "option --top needs a value"},
        {{"status", "-c"}, "option -c needs a value"},
        {{"flows", "--top", "5", "--limit", "3"},
         "flows takes one option at most (usage: angelctl flows [--top N | --limit N])"},
        {{"stats", "--prometheus=1"}, "option --prometheus takes no value"},
        {{"--json=yes", "status"}, "option --json takes no value"},
        {{"frob"}, "unknown command 'frob' (angelctl -h lists them)"},
        {{"status", "now"}, "status takes 0 arguments, not 1 (usage: angelctl status)"},
        {{"restart"}, "restart takes 1 argument, not 0 (usage: angelctl restart capd|procd|netd)"},
        {{"mute", "1", "2"}, "mute takes 1 argument, not 2 (usage: angelctl mute FLOW_ID)"},
        {{"mute", "1 2"}, "an argument is empty or holds a blank or control character (not one word)"},
        {{"unmute", "1\nstop"}, "an argument is empty or holds a blank or control character (not one word)"},
        {{"mute", ""}, "an argument is empty or holds a blank or control character (not one word)"},
        {{"flows", "--top", "5 --limit"}, "the value of --top is empty or holds a blank or control character"},
        {{"db-init", "--json"}, "db-init takes -c FILE only (no -s, no --json)"},
        {{"db-init", "-s", "x.sock"}, "db-init takes -c FILE only (no -s, no --json)"},
        {{"stats", "--prometheus", "--json"}, "stats: --prometheus and --json exclude each other"},
    };
    for (const auto& [argv, want] : cases) {
        const Request r = parse(argv);
        EXPECT_EQ(r.error, want) << ::testing::PrintToString(argv);
        EXPECT_EQ(r.error.find('\n'), std::string::npos) << "one line";
    }
}

TEST(AngelctlCommandLine, HelpAndNothing) {
    Request r = parse({"-h"});
    EXPECT_EQ(r.error, "");
    EXPECT_TRUE(r.help);
    r = parse({"status", "--help"});
    EXPECT_TRUE(r.help);
    r = parse({});
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.command, nullptr);
    EXPECT_FALSE(r.help);
    // The usage names every command of the table once, on its own line.
    const std::string u = usage_text();
    for (const auto& c : commands()) EXPECT_NE(u.find(std::string("\n  ") + c.usage + "\n"), std::string::npos) << c.name;
}

}  // namespace
}  // namespace angel::ctl
