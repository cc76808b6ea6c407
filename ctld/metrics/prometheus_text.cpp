#include "ctld/metrics/prometheus_text.hpp"

namespace angel {

std::string PrometheusText::metric_name(std::string_view s) {
    std::string n(s);
    for (size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                        (i > 0 && c >= '0' && c <= '9');
        if (!ok) n[i] = '_';
    }
    return n.empty() ? "_" : n;
}

std::string PrometheusText::escape_help(std::string_view s) {
    std::string o;
    for (char c : s) {
        if (c == '\\') o += "\\\\";
        else if (c == '\n') o += "\\n";
        else o += c;
    }
    return o;
}

std::string PrometheusText::escape_label_value(std::string_view s) {
    std::string o;
    for (char c : s) {
        if (c == '\\') o += "\\\\";
        else if (c == '\n') o += "\\n";
        else if (c == '"') o += "\\\"";
        else o += c;
    }
    return o;
}

bool PrometheusText::family(std::string_view name, Type type, std::string_view help) {
    const std::string n = metric_name(name);
    const bool total = n.size() > 6 && n.compare(n.size() - 6, 6, "_total") == 0;
    if (seen_.count(n) || (type == Type::counter && !total)) {
        current_.clear();
        return false;
    }
    seen_.insert(n);
    current_ = n;
    out_ += "# HELP " + n + " " + escape_help(help) + "\n";
    out_ += "# TYPE " + n + (type == Type::counter ? " counter\n" : " gauge\n");
    return true;
}

void PrometheusText::begin_sample(const PromLabels& labels) {
    out_ += current_;
    if (!common_.empty() || !labels.empty()) {
        out_ += '{';
        bool first = true;
        for (const PromLabels* set : {static_cast<const PromLabels*>(&common_), &labels})
            for (const auto& [k, v] : *set) {
                if (!first) out_ += ',';
                first = false;
                out_ += metric_name(k) + "=\"" + escape_label_value(v) + "\"";
            }
        out_ += '}';
    }
    out_ += ' ';
}

void PrometheusText::sample(uint64_t value, const PromLabels& labels) {
    if (current_.empty()) return;
    begin_sample(labels);
    out_ += std::to_string(value) + "\n";
}

}  // namespace angel
