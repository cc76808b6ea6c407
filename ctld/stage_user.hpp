// Who the stages run as, decided by ctld before anything starts (and by `angel-ctld -t`).
// Never root where traffic is parsed:
//   - `user` set in the file: that account must exist and must not be uid 0 or gid 0;
//   - `user` unset: "angel" when that account exists (a packaged install creates it), else
//     "nobody", with a notice;
//   - `control.group` (the operators') must exist and must not be the stages' group.
// A problem is a configuration error (exit 78) with one line naming the key.
#pragma once
#include <sys/types.h>

#include <string>

#include "common/config/config.hpp"

namespace angel {

struct StageUser {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string notice;       // non-empty: say it once (the fallback to nobody)
    bool control_group = false;
    gid_t control_gid = 0;    // valid when control_group
};

// Throws ConfigError(file, 0, message) for a refused identity.
StageUser resolve_stage_user(const Config& cfg);

}  // namespace angel
