// What the machine says about mastership, for ha.mode vip and file (docs/ha.md). ucarp and
// keepalived decide; a probe only reads their decision:
//   vip:  master while ha.vip is assigned to a local interface that is up and running (a VIP
//         on a dead link serves nobody);
//   file: master while the first word of ha.state_file is MASTER; anything else, a missing,
//         unreadable or non-regular file: backup.
// Each probe also offers a descriptor that becomes readable when the answer may have changed
// (rtnetlink address/link events, inotify on the state file's folder), so a change is seen at
// once; ctld still probes every ha.poll_ms in case an event was missed.
#pragma once
#include <memory>
#include <string>

#include "common/config/config.hpp"

namespace angel {

struct RoleObservation {
    bool master = false;
    std::string detail;  // for the log: "10.77.0.50 on eth1", "state file says BACKUP", ...
};

class RoleProbe {
public:
    virtual ~RoleProbe() = default;
    virtual RoleObservation probe() const = 0;
    // Readable when something changed; -1 when the probe has no event source.
    virtual int event_fd() const { return -1; }
    // Reads what made event_fd() readable (the probe looks afresh, so contents do not matter).
    virtual void drain_events() {}
};

// ha.mode none: always master. Throws std::runtime_error when vip does not parse.
std::unique_ptr<RoleProbe> make_role_probe(const HaConfig& ha);

// The parts, for the tests.
RoleObservation probe_vip(const std::string& vip);
RoleObservation probe_state_file(const std::string& path);
// "MASTER" as the first whitespace-separated word of text.
bool state_text_says_master(const char* text, size_t len);

}  // namespace angel
