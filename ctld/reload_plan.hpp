// What a reload may change live and what needs a restart of the meter. A reload whose new
// file changes anything of the second kind is refused whole: nothing is half-applied.
#pragma once
#include <string>
#include <vector>

#include "common/config/config.hpp"

namespace angel {

struct ReloadPlan {
    std::vector<std::string> live_changes;     // keys applied without restarting a stage
    std::vector<std::string> restart_changes;  // keys that need the meter restarted
};

ReloadPlan plan_reload(const Config& running, const Config& next);

}  // namespace angel
