// angelctl mute FLOW_ID / unmute FLOW_ID: this meter's own in-memory mutes (see
// docs/angelctl.8 for why they are not written to angel.flow_control). Applied by procd at
// its next loop turn, within 100 ms.
#include <cerrno>
#include <cstdlib>

#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "ctld/controller.hpp"
#include "ctld/flow_control_set.hpp"

namespace angel {

namespace {
bool parse_flow_id(const std::string& s, uint32_t* out) {
    if (s.empty() || s[0] < '0' || s[0] > '9') return false;
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || v > UINT32_MAX) return false;
    *out = static_cast<uint32_t>(v);
    return true;
}
}  // namespace

ControlReply Controller::flow_control_command(const std::vector<std::string>& words, bool json) {
    const std::string& cmd = words[0];
    uint32_t id = 0;
    if (words.size() != 2 || !parse_flow_id(words[1], &id))
        return {false, "usage: " + cmd + " FLOW_ID (decimal, as angelctl flows and angel-sink print it)"};
    std::string state;
    if (cmd == "mute") {
        if (!flow_control_->mute(id, realtime_ns()))
            return {false, "cannot mute flow " + words[1] + ": " + std::to_string(kFlowControlMax) +
                               " flows are muted already"};
        log_notice("flow %u muted (angelctl)", id);
        state = "muted";
    } else {
        const bool had = flow_control_->unmute(id);
        if (had) log_notice("flow %u unmuted (angelctl)", id);
        // A row of angel.flow_control is the classifier's: angelctl does not override it.
        state = flow_control_->database_has(id) ? "controlled by angel.flow_control" : had ? "unmuted" : "not muted";
    }
    if (json) {
        JsonWriter j;
        j.begin_object();
        j.field("flow_id", uint64_t{id}).field("state", state);
        j.end_object();
        return {true, j.str() + "\n"};
    }
    return {true, "flow " + std::to_string(id) + " " + state + "\n"};
}

}  // namespace angel
