// Values from the database, checked by the same code as the file: the value is written as a
// one-setting libconfig text and parsed, so a database row cannot get past a range the file
// would refuse.
#include "common/config/config.hpp"

namespace angel {
namespace {

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

bool is_integer_text(const std::string& s) {
    size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
    if (i >= s.size() || s.size() > 12) return false;
    for (; i < s.size(); ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
    }
    return true;
}

std::string cidr_list(const std::string& value) {
    std::string out = "[";
    size_t i = 0;
    while (i < value.size()) {
        const size_t end = value.find_first_of(", \t\n", i);
        const std::string item = value.substr(i, end == std::string::npos ? std::string::npos : end - i);
        if (!item.empty()) out += (out.size() > 1 ? ", " : "") + quoted(item);
        if (end == std::string::npos) break;
        i = end + 1;
    }
    return out + "]";
}

}  // namespace

void apply_override(Config& cfg, const std::string& key, const std::string& value,
                    const std::string& origin) {
    const bool is_int = key == "classifier.port" || key == "flow.timeout" || key == "capture.snaplen";
    std::string literal;
    if (is_int) {
        if (!is_integer_text(value)) {
            throw ConfigError(origin, 0, key + " must be an integer, not \"" + value + "\"");
        }
        literal = value;
    } else if (key == "classifier.host") {
        literal = quoted(value);
    } else if (key == "customers.networks") {
        literal = cidr_list(value);
    } else {
        throw ConfigError(origin, 0, "unknown key " + key + " (not settable from the database)");
    }
    const size_t dot = key.find('.');
    const std::string text =
        key.substr(0, dot) + " = { " + key.substr(dot + 1) + " = " + literal + "; };";
    Config parsed;
    try {
        parsed = parse_config_string(text, origin);
    } catch (const ConfigError& e) {
        throw ConfigError(origin, 0, e.message());  // line 1 of our own text means nothing
    }
    if (key == "classifier.host") cfg.classifier.host = parsed.classifier.host;
    else if (key == "classifier.port") cfg.classifier.port = parsed.classifier.port;
    else if (key == "flow.timeout") cfg.flow.timeout = parsed.flow.timeout;
    else if (key == "capture.snaplen") cfg.capture.snaplen = parsed.capture.snaplen;
    else cfg.customers.networks = parsed.customers.networks;
}

}  // namespace angel
