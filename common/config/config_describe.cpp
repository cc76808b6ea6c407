// Printing a configuration (angel-ctld -t -v) without its secrets, and the required-keys check.
#include <sstream>

#include "common/config/config.hpp"

namespace angel {
namespace {

constexpr const char* kMask = "****";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// Half-open ranges of the conninfo text that hold a password.
using Spans = std::vector<std::pair<size_t, size_t>>;

// postgresql://user:secret@host/db?password=secret
bool uri_password_spans(const std::string& s, Spans& out) {
    size_t start = 0;
    if (s.rfind("postgresql://", 0) == 0) start = 13;
    else if (s.rfind("postgres://", 0) == 0) start = 11;
    else return false;
    const size_t query = s.find('?', start);
    const size_t authority_end = query == std::string::npos ? s.size() : query;
    // The last '@' before the query ends the user info, even if the password holds a raw '/'.
    const size_t at = s.rfind('@', authority_end == 0 ? 0 : authority_end - 1);
    if (at != std::string::npos && at >= start) {
        const size_t colon = s.find(':', start);
        if (colon != std::string::npos && colon < at) out.emplace_back(colon + 1, at);
    }
    if (query == std::string::npos) return true;
    size_t p = query + 1;
    while (p < s.size()) {
        size_t end = s.find_first_of("&#", p);
        if (end == std::string::npos) end = s.size();
        const size_t eq = s.find('=', p);
        if (eq != std::string::npos && eq < end && iequals(std::string_view(s).substr(p, eq - p), "password")) {
            out.emplace_back(eq + 1, end);
        }
        if (end < s.size() && s[end] == '#') break;
        p = end + 1;
    }
    return true;
}

// host=db user=angel password='it''s' dbname=x ; false when the text is not parseable.
bool keyword_password_spans(const std::string& s, Spans& out) {
    size_t i = 0;
    while (true) {
        while (i < s.size() && is_space(s[i])) ++i;
        if (i >= s.size()) return true;
        const size_t kw = i;
        while (i < s.size() && s[i] != '=' && !is_space(s[i])) ++i;
        const std::string_view keyword = std::string_view(s).substr(kw, i - kw);
        while (i < s.size() && is_space(s[i])) ++i;
        if (i >= s.size() || s[i] != '=') return false;
        ++i;
        while (i < s.size() && is_space(s[i])) ++i;
        const size_t value = i;
        if (i < s.size() && s[i] == '\'') {
            ++i;
            while (i < s.size() && s[i] != '\'') i += (s[i] == '\\') ? 2 : 1;
            if (i >= s.size()) return false;  // unterminated quote
            ++i;
        } else {
            while (i < s.size() && !is_space(s[i])) i += (s[i] == '\\') ? 2 : 1;
            if (i > s.size()) i = s.size();
        }
        if (iequals(keyword, "password")) out.emplace_back(value, i);
    }
}

bool mentions_password(const std::string& s) {
    for (size_t i = 0; i + 8 <= s.size(); ++i) {
        if (iequals(std::string_view(s).substr(i, 8), "password")) return true;
    }
    return false;
}

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

std::string quoted_or_unset(const std::string& s) { return s.empty() ? "(not set)" : quoted(s); }

std::string bool_text(bool b) { return b ? "true" : "false"; }

}  // namespace

std::string mask_conninfo(const std::string& conninfo) {
    Spans spans;
    const bool parsed = uri_password_spans(conninfo, spans) || keyword_password_spans(conninfo, spans);
    if (!parsed) {
        // Cannot tell where a password would be: hide everything rather than risk it.
        return mentions_password(conninfo) ? std::string(kMask) + " (unparseable, hidden)" : conninfo;
    }
    std::string out = conninfo;
    for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        out.replace(it->first, it->second - it->first, kMask);
    }
    return out;
}

bool conninfo_has_password(const std::string& conninfo) {
    Spans spans;
    const bool parsed = uri_password_spans(conninfo, spans) || keyword_password_spans(conninfo, spans);
    if (!parsed) return mentions_password(conninfo);
    for (auto& [b, e] : spans) {
        if (e > b) return true;
    }
    return false;
}

std::vector<std::string> missing_required(const Config& cfg, bool replay) {
    std::vector<std::string> missing;
    if (!replay && cfg.capture.interfaces.empty()) missing.push_back("capture.interface");
    if (cfg.classifier.host.empty()) missing.push_back("classifier.host");
    return missing;
}

std::string describe(const Config& c) {
    std::ostringstream o;
    auto line = [&o](const char* key, const std::string& value) { o << key << " = " << value << '\n'; };
    std::string interfaces = "(not set)";
    if (!c.capture.interfaces.empty()) {
        interfaces = "[";
        for (size_t i = 0; i < c.capture.interfaces.size(); ++i) {
            interfaces += (i ? ", " : "") + quoted(c.capture.interfaces[i]);
        }
        interfaces += "]";
    }
    // A list may hold millions: the first few, then how many more.
    constexpr size_t kShown = 8;
    const auto& nets = c.customers.networks;
    std::string networks = "[";
    for (size_t i = 0; i < nets.size() && i < kShown; ++i) networks += (i ? ", " : "") + quoted(format_cidr(nets[i]));
    networks += nets.empty() ? "]  # all traffic" : "]";
    if (nets.size() > kShown) networks += "  # and " + std::to_string(nets.size() - kShown) + " more";

    line("instance", quoted(c.instance));
    line("user", quoted(c.user));
    line("runtime_dir", quoted(c.runtime_dir));
    line("capture.interface", interfaces);
    line("capture.snaplen", std::to_string(c.capture.snaplen));
    line("capture.buffer_size", std::to_string(c.capture.buffer_size));
    line("capture.promiscuous", bool_text(c.capture.promiscuous));
    line("classifier.host", quoted_or_unset(c.classifier.host));
    line("classifier.port", std::to_string(c.classifier.port));
    line("flow.timeout", std::to_string(c.flow.timeout));
    line("flow.tcp_linger", std::to_string(c.flow.tcp_linger));
    line("flow.max_flows", std::to_string(c.flow.max_flows));
    line("flow.gc_interval", std::to_string(c.flow.gc_interval));
    // The flow ID key is kept out of logs and terminals like a password: with it, anyone can
    // compute (and aim collisions at) the meter's flow IDs.
    line("flow.id_key", c.flow.id_key.empty() ? "(not set: random key kept in runtime_dir)"
                                              : "(set, hidden)");
    line("customers.networks", networks);
    line("export.mtu", std::to_string(c.export_.mtu));
    line("export.flush_ms", std::to_string(c.export_.flush_ms));
    line("export.template_refresh", std::to_string(c.export_.template_refresh));
    line("export.domain_id", std::to_string(c.export_.domain_id));
    line("export.packet_records_per_flow", c.export_.packet_records_per_flow == 0
                                               ? std::string("0 (every packet)")
                                               : std::to_string(c.export_.packet_records_per_flow));
    line("export.watermark_ms", c.export_.watermark_ms ? std::to_string(c.export_.watermark_ms) : "0 (off)");
    line("database.conninfo",
         c.database.conninfo.empty() ? "(not set: no database)" : quoted(mask_conninfo(c.database.conninfo)));
    line("database.meter_id", quoted(c.database.meter_id));
    line("database.poll_interval", std::to_string(c.database.poll_interval));
    line("database.history", bool_text(c.database.history));
    line("database.stop_drain_ms", std::to_string(c.database.stop_drain_ms));
    line("ha.mode", quoted(c.ha.mode));
    line("ha.vip", c.ha.vip.empty() ? "(not set)" : quoted(c.ha.vip));
    line("ha.state_file", c.ha.state_file.empty() ? "(not set)" : quoted(c.ha.state_file));
    line("ha.poll_ms", std::to_string(c.ha.poll_ms));
    line("ha.takeover_ms", std::to_string(c.ha.takeover_ms));
    line("ha.replay_ms", std::to_string(c.ha.replay_ms));
    line("shm.packet_ring", std::to_string(c.shm.packet_ring));
    line("shm.record_ring", std::to_string(c.shm.record_ring));
    line("shm.event_ring", std::to_string(c.shm.event_ring));
    line("supervisor.hang_timeout", std::to_string(c.supervisor.hang_timeout));
    line("control.group", c.control.group.empty() ? "(not set: only root uses angelctl)" : quoted(c.control.group));
    line("metrics.listen", c.metrics.listen.empty() ? "(not set: no /metrics endpoint)" : quoted(c.metrics.listen));
    return o.str();
}

}  // namespace angel
