// angelctl's command line: which commands exist, which options each takes, and the parse of
// argv into one request. angelctl's own options (-c, -s, --json, -h) may stand anywhere on the
// line, before or after the command and its arguments (operators write `angelctl status -c FILE`
// as readily as `angelctl -c FILE status`); a command's options (--top N, --prometheus) come
// after the command. "--" ends the options: what follows is an argument, whatever it looks like.
// A line that cannot be parsed gives a one-line error (exit EX_USAGE) before anything is sent.
#pragma once
#include <string>
#include <vector>

namespace angel::ctl {

struct CommandOption {
    const char* name;  // "--top"
    bool takes_value;
};

struct CommandSpec {
    const char* name;
    unsigned args;  // exact count of positional arguments (restart STAGE, mute FLOW_ID)
    std::vector<CommandOption> options;
    bool local;         // run here (db-init), not sent to angel-ctld
    const char* usage;  // synopsis for the usage text
};

// Every command angelctl accepts, in the order the usage lists them.
const std::vector<CommandSpec>& commands();

struct Request {
    std::string config_path;  // empty: the default
    std::string socket_path;  // empty: found from the configuration
    bool json = false;
    bool help = false;
    const CommandSpec* command = nullptr;  // null with help, or when nothing was given
    // The command's own words in the order given, values attached: "flows --top 5".
    std::vector<std::string> words;
    std::string error;  // non-empty: the line is refused, with this one-line reason
};

Request parse_command_line(const std::vector<std::string>& argv);  // argv without argv[0]

// The line sent to angel-ctld: the command's words, then "--json" when asked for.
std::string control_line(const Request& r);

// The usage text (-h, or no command at all).
std::string usage_text();

}  // namespace angel::ctl
