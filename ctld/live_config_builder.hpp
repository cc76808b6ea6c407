// Turns the checked Config (file, later merged with the database) into the fixed-size
// LiveConfig that ctld publishes in the segment, and builds the capture filter.
#pragma once
#include <string>

#include "common/config.hpp"
#include "common/flow_key.hpp"
#include "shm/live_config.hpp"

namespace angel {

// BPF for the customer networks: traffic from or to any of them, also when VLAN-tagged.
// Empty list: empty filter (everything).
std::string customer_filter(const std::vector<Cidr>& nets);

// replay_file empty: live capture. Throws std::runtime_error when a value does not fit.
LiveConfig build_live_config(const Config& c, const std::string& replay_file, const FlowIdKey& key,
                             bool foreground);

}  // namespace angel
