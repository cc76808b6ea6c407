// The meter's role over time, from what the probe sees (no I/O here, so the tests drive it
// with made-up clocks). backup -> takeover when the address (or MASTER) appears, takeover ->
// master once ha.takeover_ms have passed with it still there, any -> backup when it goes. A
// transition is a change of side (backup <-> takeover/master); takeover -> master is not one.
// It counts transitions, time on the master side, and says when the role flaps.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "shm/segment.hpp"

namespace angel {

struct RoleChange {
    HaRole from, to;
};

class RoleTracker {
public:
    // More transitions than this within a minute is flapping: a warning, at most once a minute.
    static constexpr size_t kFlapWarnPerMinute = 6;

    explicit RoleTracker(uint64_t takeover_ns) : takeover_ns_(takeover_ns) {}
    // The first observation at start: the role it gives is no transition.
    void start(bool master_seen, uint64_t now);
    std::optional<RoleChange> observe(bool master_seen, uint64_t now);
    // Ends the hold once it is over (and the address still there: observe() first).
    std::optional<RoleChange> tick(uint64_t now);
    // When tick() has something to do; UINT64_MAX when nothing is pending.
    uint64_t next_deadline() const;
    void set_takeover_ns(uint64_t ns) { takeover_ns_ = ns; }

    HaRole role() const { return role_; }
    uint64_t since_ns() const { return since_; }
    uint64_t transitions() const { return transitions_; }
    uint64_t master_side_ns(uint64_t now) const;  // time in takeover or master, in all
    size_t transitions_last_minute(uint64_t now) const;
    // True (once a minute at most) when more than kFlapWarnPerMinute transitions fell in the last minute.
    bool flap_warning_due(uint64_t now);

private:
    void enter(HaRole r, uint64_t now);

    uint64_t takeover_ns_;
    HaRole role_ = HaRole::backup;
    uint64_t since_ = 0;
    uint64_t side_since_ = 0;  // when the master side was entered (valid while on it)
    uint64_t master_ns_ = 0;   // completed stretches on the master side
    uint64_t transitions_ = 0;
    std::array<uint64_t, 64> recent_{};  // times of the last transitions, a ring
    uint64_t last_flap_warning_ = 0;
    bool warned_ = false;
};

}  // namespace angel
