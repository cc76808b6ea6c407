// ctld's HA loop part (docs/ha.md): probes the role (ha.mode vip or file) when the probe's
// event descriptor fires and every ha.poll_ms, feeds the RoleTracker, and publishes the role in
// the control object, which only ctld writes: netd and the DB writer follow it. Becoming master
// goes through takeover (templates sent, export held ha.takeover_ms); at its end ctld bumps
// announce_request before it writes master, so netd, seeing master, knows which of procd's
// announce records its stream starts at.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "common/config/config.hpp"
#include "ctld/ha/role_probe.hpp"
#include "ctld/ha/role_tracker.hpp"
#include "shm/segment.hpp"

namespace angel {

struct RoleReport {
    HaRole role = HaRole::master;
    std::string mode;
    std::string detail;          // what the last probe saw
    double since_s = 0;          // seconds in the current role
    uint64_t transitions = 0;
    double master_s = 0;         // seconds on the master side (takeover + master) since ctld started
    size_t transitions_last_minute = 0;
};

class HaMonitor {
public:
    // Probes once and publishes the initial role. Throws std::runtime_error on a bad ha.vip.
    HaMonitor(const HaConfig& ha, ControlBlock& control, uint64_t now_ns);
    int event_fd() const { return probe_->event_fd(); }
    // How long ctld's loop may sleep before service() is due.
    int timeout_ms(uint64_t now_ns) const;
    // event: event_fd() was readable. Probes when due or on an event, ends a takeover hold.
    void service(bool event, uint64_t now_ns);
    // ha.vip, ha.state_file, ha.poll_ms, ha.takeover_ms changed on reload (ha.mode needs a restart).
    void reconfigure(const HaConfig& ha, uint64_t now_ns);
    RoleReport report(uint64_t now_ns) const;

private:
    void apply(const std::optional<RoleChange>& c, uint64_t now_ns);
    void publish(HaRole r);

    HaConfig ha_;
    ControlBlock& control_;
    std::unique_ptr<RoleProbe> probe_;
    RoleTracker tracker_;
    std::string detail_;
    uint64_t next_probe_ = 0;
};

}  // namespace angel
