#include "ctld/ha/role_tracker.hpp"

namespace angel {

namespace {
constexpr uint64_t kMinute = 60'000'000'000ull;
bool master_side(HaRole r) { return r != HaRole::backup; }
}  // namespace

void RoleTracker::start(bool master_seen, uint64_t now) {
    role_ = HaRole::backup;
    since_ = now;
    if (master_seen) {
        role_ = takeover_ns_ ? HaRole::takeover : HaRole::master;
        side_since_ = now;
    }
}

void RoleTracker::enter(HaRole r, uint64_t now) {
    if (master_side(r) != master_side(role_)) {
        if (master_side(r)) side_since_ = now;
        else master_ns_ += now - side_since_;
        recent_[transitions_ % recent_.size()] = now;
        ++transitions_;
    }
    role_ = r;
    since_ = now;
}

std::optional<RoleChange> RoleTracker::observe(bool master_seen, uint64_t now) {
    const HaRole from = role_;
    if (master_seen && role_ == HaRole::backup) enter(takeover_ns_ ? HaRole::takeover : HaRole::master, now);
    else if (!master_seen && role_ != HaRole::backup) enter(HaRole::backup, now);
    else return tick(now);
    return RoleChange{from, role_};
}

std::optional<RoleChange> RoleTracker::tick(uint64_t now) {
    if (role_ != HaRole::takeover || now < since_ + takeover_ns_) return std::nullopt;
    enter(HaRole::master, now);
    return RoleChange{HaRole::takeover, HaRole::master};
}

uint64_t RoleTracker::next_deadline() const {
    return role_ == HaRole::takeover ? since_ + takeover_ns_ : UINT64_MAX;
}

uint64_t RoleTracker::master_side_ns(uint64_t now) const {
    return master_ns_ + (master_side(role_) ? now - side_since_ : 0);
}

size_t RoleTracker::transitions_last_minute(uint64_t now) const {
    size_t n = 0;
    const size_t kept = transitions_ < recent_.size() ? static_cast<size_t>(transitions_) : recent_.size();
    for (size_t i = 0; i < kept; ++i)
        if (now - recent_[i] < kMinute) ++n;
    return n;
}

bool RoleTracker::flap_warning_due(uint64_t now) {
    if (transitions_last_minute(now) <= kFlapWarnPerMinute) return false;
    if (warned_ && now - last_flap_warning_ < kMinute) return false;
    warned_ = true;
    last_flap_warning_ = now;
    return true;
}

}  // namespace angel
