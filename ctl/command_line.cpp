#include "ctl/command_line.hpp"

#include <algorithm>

namespace angel::ctl {

const std::vector<CommandSpec>& commands() {
    // What angel-ctld's handle_command() answers, plus db-init, which angelctl runs itself.
    // Values (the N of --top, a stage's name, a flow ID) are checked by angel-ctld, which
    // answers ERR (exit 1) for a bad one: it alone knows the stages and the reply bounds.
    static const std::vector<CommandSpec> table = {
        {"status", 0, {}, false, "status"},
        {"stats", 0, {{"--prometheus", false}}, false, "stats [--prometheus]"},
        {"flows", 0, {{"--top", true}, {"--limit", true}}, false, "flows [--top N | --limit N]"},
        {"reload", 0, {}, false, "reload"},
        {"restart", 1, {}, false, "restart capd|procd|netd"},
        {"stop", 0, {}, false, "stop"},
        {"role", 0, {}, false, "role"},
        {"mute", 1, {}, false, "mute FLOW_ID"},
        {"unmute", 1, {}, false, "unmute FLOW_ID"},
        {"db-init", 0, {}, true, "db-init"},
    };
    return table;
}

namespace {

const CommandSpec* find_command(const std::string& name) {
    for (const auto& c : commands())
        if (name == c.name) return &c;
    return nullptr;
}

const CommandOption* find_option(const CommandSpec& c, const std::string& name) {
    for (const auto& o : c.options)
        if (name == o.name) return &o;
    return nullptr;
}

// The command whose option this is, for a clearer message when it stands before the command.
const CommandSpec* owner_of(const std::string& option) {
    for (const auto& c : commands())
        if (find_option(c, option)) return &c;
    return nullptr;
}

// A word goes into a one-line protocol split at blanks: a blank or a control character
// would change what angel-ctld reads.
bool fits_one_word(const std::string& s) {
    return !s.empty() &&
           std::none_of(s.begin(), s.end(), [](char ch) { return static_cast<unsigned char>(ch) <= ' '; });
}

}  // namespace

Request parse_command_line(const std::vector<std::string>& argv) {
    Request r;
    bool options_ended = false;
    unsigned args = 0, command_options = 0;
    for (size_t i = 0; i < argv.size() && r.error.empty(); ++i) {
        const std::string& a = argv[i];
        if (options_ended || a.size() < 2 || a[0] != '-') {
            if (!fits_one_word(a)) {
                r.error = "an argument is empty or holds a blank or control character (not one word)";
            } else if (!r.command) {
                r.command = find_command(a);
                if (!r.command) r.error = "unknown command '" + a + "' (angelctl -h lists them)";
                else r.words.push_back(a);
            } else {
                r.words.push_back(a);
                ++args;
            }
            continue;
        }
        if (a == "--") {
            options_ended = true;
            continue;
        }
        // --name=value and -Xvalue carry their value; otherwise it is the next word.
        std::string name = a, value;
        bool attached = false;
        if (a[1] == '-') {
            if (const size_t eq = a.find('='); eq != std::string::npos) {
                name = a.substr(0, eq);
                value = a.substr(eq + 1);
                attached = true;
            }
        } else if (a.size() > 2) {
            name = a.substr(0, 2);
            value = a.substr(2);
            attached = true;
        }
        const auto take_value = [&]() -> bool {
            if (attached) return true;
            if (i + 1 >= argv.size()) {
                r.error = "option " + name + " needs a value";
                return false;
            }
            value = argv[++i];
            return true;
        };
        const auto no_value = [&]() -> bool {
            if (attached) r.error = "option " + name + " takes no value";
            return !attached;
        };
        if (name == "-c" || name == "--config") {
            if (take_value()) r.config_path = value;
        } else if (name == "-s" || name == "--socket") {
            if (take_value()) r.socket_path = value;
        } else if (name == "--json") {
            if (no_value()) r.json = true;
        } else if (name == "-h" || name == "--help") {
            if (no_value()) r.help = true;
        } else if (const CommandOption* o = r.command ? find_option(*r.command, name) : nullptr) {
            if (++command_options > 1) {
                r.error = std::string(r.command->name) + " takes one option at most (usage: angelctl " +
                          r.command->usage + ")";
            } else if (o->takes_value ? take_value() : no_value()) {
                if (o->takes_value && !fits_one_word(value)) {
                    r.error = "the value of " + name + " is empty or holds a blank or control character";
                } else {
                    r.words.push_back(name);
                    if (o->takes_value) r.words.push_back(value);
                }
            }
        } else if (const CommandSpec* owner = owner_of(name); owner && !r.command) {
            r.error = name + " is an option of " + owner->name + ": write it after the command";
        } else if (r.command) {
            r.error = "unknown option '" + name + "' for " + r.command->name + " (usage: angelctl " +
                      r.command->usage + ")";
        } else {
            r.error = "unknown option '" + name + "' (angelctl -h lists the options)";
        }
    }
    if (!r.error.empty() || r.help || !r.command) return r;
    if (args != r.command->args) {
        r.error = std::string(r.command->name) + " takes " + std::to_string(r.command->args) + " argument" +
                  (r.command->args == 1 ? "" : "s") + ", not " + std::to_string(args) + " (usage: angelctl " +
                  r.command->usage + ")";
    } else if (r.command->local && (r.json || !r.socket_path.empty())) {
        // db-init talks to the database named in the configuration file, not to angel-ctld.
        r.error = std::string(r.command->name) + " takes -c FILE only (no -s, no --json)";
    } else if (r.json && std::find(r.words.begin(), r.words.end(), "--prometheus") != r.words.end()) {
        r.error = "stats: --prometheus and --json exclude each other";
    }
    return r;
}

std::string control_line(const Request& r) {
    std::string line;
    for (const auto& w : r.words) line += (line.empty() ? "" : " ") + w;
    if (r.json) line += " --json";
    return line;
}

std::string usage_text() {
    std::string u =
        "usage: angelctl [-c FILE | -s SOCKET] [--json] COMMAND [ARGS]\n"
        "  (-c, -s and --json may also follow the command; -- ends the options)\n"
        "commands:\n";
    for (const auto& c : commands()) u += std::string("  ") + c.usage + "\n";
    u += "(db-init creates or upgrades the database schema and needs no running meter; see angelctl(8))\n";
    return u;
}

}  // namespace angel::ctl
