#include "ctld/stage_user.hpp"

#include <grp.h>
#include <pwd.h>

namespace angel {

StageUser resolve_stage_user(const Config& cfg) {
    const std::string file = cfg.source_file.empty() ? "configuration" : cfg.source_file;
    StageUser u;
    const passwd* pw = nullptr;
    if (cfg.user_set) {
        pw = getpwnam(cfg.user.c_str());
        if (!pw)
            throw ConfigError(file, 0, "user: no account named '" + cfg.user +
                                           "' (the stages would otherwise run as root); create it or set another user");
    } else {
        pw = getpwnam("angel");
        if (!pw) {
            pw = getpwnam("nobody");
            if (!pw) throw ConfigError(file, 0, "user: not set, and neither an 'angel' nor a 'nobody' account exists");
            u.notice = "user not set and no 'angel' account: the stages run as nobody (a packaged install creates angel)";
        }
    }
    if (pw->pw_uid == 0 || pw->pw_gid == 0)
        throw ConfigError(file, 0, "user '" + std::string(pw->pw_name) +
                                       "' has uid or gid 0: the stages parse hostile traffic and never run as root");
    u.name = pw->pw_name;
    u.uid = pw->pw_uid;
    u.gid = pw->pw_gid;
    if (!cfg.control.group.empty()) {
        const group* gr = getgrnam(cfg.control.group.c_str());
        if (!gr) throw ConfigError(file, 0, "control.group: no group named '" + cfg.control.group + "'");
        if (gr->gr_gid == u.gid)
            throw ConfigError(file, 0, "control.group '" + cfg.control.group + "' is the group of the stages' user '" +
                                           u.name + "': operators and stages must be apart");
        if (gr->gr_gid == 0) throw ConfigError(file, 0, "control.group must not be gid 0");
        u.control_group = true;
        u.control_gid = gr->gr_gid;
    }
    return u;
}

}  // namespace angel
