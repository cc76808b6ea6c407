// The Prometheus text exposition format, version 0.0.4 (what node_exporter's textfile
// collector reads and what /metrics answers): for each metric family one "# HELP" line, one
// "# TYPE" line, then its samples "name{label="value",...} value". Counters end in _total,
// gauges do not (the caller names them; family() refuses a counter without the suffix).
//
// Escaping as the format defines it: in HELP text a backslash and a line feed become "\\" and
// "\n"; in label values also the double quote ("\""). Names keep to [a-zA-Z_:][a-zA-Z0-9_:]*
// (any other character becomes '_'). Every sample carries the writer's common labels first.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace angel {

using PromLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
public:
    enum class Type { counter, gauge };
    explicit PrometheusText(PromLabels common = {}) : common_(std::move(common)) {}

    // Starts a family. False (and nothing written, samples up to the next family dropped)
    // when the name was used before or a counter's name does not end in _total: a family
    // must appear once, with all its samples together.
    bool family(std::string_view name, Type type, std::string_view help);
    // A sample of the current family (its name), with labels after the common ones.
    void sample(uint64_t value, const PromLabels& labels = {});
    const std::string& str() const { return out_; }

    static std::string metric_name(std::string_view s);  // invalid characters -> '_'
    static std::string escape_help(std::string_view s);
    static std::string escape_label_value(std::string_view s);

private:
    void begin_sample(const PromLabels& labels);
    PromLabels common_;
    std::string out_;
    std::string current_;  // the current family's name; empty: samples dropped
    std::set<std::string> seen_;
};

}  // namespace angel
