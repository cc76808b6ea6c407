// The flow-ID key: flow.id_key from the config, or else a random key kept in runtime_dir so
// that a restarted meter keeps computing the same flow IDs.
#pragma once
#include <string>

#include "common/flow_key.hpp"

namespace angel {

// Throws std::runtime_error with a one-line message when the stored key cannot be read or made.
FlowIdKey resolve_id_key(const std::string& configured_hex, const std::string& runtime_dir,
                         const std::string& instance);

}  // namespace angel
