// Turns the checked Config (file, later merged with the database) into the fixed-size
// LiveConfig that ctld publishes in the control object. (customers.networks goes to procd
// as the customer set: ctld/customers/customer_set_publisher.hpp.)
#pragma once
#include <string>

#include "common/config/config.hpp"
#include "common/flow_key.hpp"
#include "shm/live_config.hpp"

namespace angel {

// replay_file empty: live capture. Throws std::runtime_error when a value does not fit.
LiveConfig build_live_config(const Config& c, const std::string& replay_file, const FlowIdKey& key,
                             bool foreground);

}  // namespace angel
