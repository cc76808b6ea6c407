// ctld's files in runtime_dir (control socket, pidfile, stage locks, .idkey, the stages'
// empty jail), made so that nobody else can steer what root writes there:
//   - runtime_dir itself is created root-owned 0750 (group: control.group, for the socket;
//     else root); an existing one that is not a directory owned by us, or that group or
//     others can write, is refused: another user could swap a file in it for a symlink;
//   - files are opened with O_NOFOLLOW and must be regular files owned by us; new ones are
//     created with O_EXCL, so a name planted between the check and the create fails.
#pragma once
#include <string>

namespace angel {

// Creates dir if missing, checks it, gives it to group gid (-1: root's group) with mode 0750.
// Returns "" when it is fit, else the reason (one line).
std::string prepare_runtime_dir(const std::string& dir, int gid);

// Where things lie in runtime_dir.
inline std::string jail_path(const std::string& runtime_dir) { return runtime_dir + "/empty"; }
inline std::string stage_lock_path(const std::string& runtime_dir, const std::string& instance, const char* stage) {
    return runtime_dir + "/" + instance + "." + stage + ".lock";
}

// The empty, root-owned directory the stages chroot into: jail_path(), created 0555.
// Returns "" when it is fit, else the reason; *path receives its path.
std::string prepare_jail(const std::string& runtime_dir, std::string* path);

// Opens path read-write (or read-only with read_only) without following a symlink; creates
// it (O_EXCL, mode) when missing. Refuses anything but a regular file owned by us with one
// link. Returns the descriptor (close-on-exec), or -1 with *err set and errno kept (ENOENT:
// read_only and no such file).
int open_runtime_file(const std::string& path, int mode, bool read_only, std::string* err);

}  // namespace angel
