// Dropping root for the stages that do not need it (procd, netd at exec; capd once its
// capture is open). Used by ctld (children) and capd.
#pragma once
#include <string>

namespace angel {

enum class DropResult { dropped, not_root, no_such_user, failed };

// setgroups/setgid/setuid to user and its primary group. Irreversible on success.
DropResult drop_privileges(const std::string& user, std::string* error);

}  // namespace angel
