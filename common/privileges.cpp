#include "common/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace angel {

DropResult drop_privileges(const std::string& user, std::string* error) {
    if (geteuid() != 0) return DropResult::not_root;
    const passwd* pw = getpwnam(user.c_str());
    if (!pw) {
        if (error) *error = "no user named '" + user + "'";
        return DropResult::no_such_user;
    }
    const gid_t gid = pw->pw_gid;
    const uid_t uid = pw->pw_uid;
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        if (error) *error = std::string("cannot become ") + user + ": " + strerror(errno);
        return DropResult::failed;
    }
    // A process that could regain root would defeat the point: check that it cannot.
    if (setuid(0) == 0) {
        if (error) *error = "dropped to " + user + " but could regain root";
        return DropResult::failed;
    }
    return DropResult::dropped;
}

}  // namespace angel
