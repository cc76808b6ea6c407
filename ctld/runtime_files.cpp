#include "ctld/runtime_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/sandbox/sandbox.hpp"

namespace angel {

namespace {
std::string owner_word() { return geteuid() == 0 ? "root" : "the user angel-ctld runs as"; }
}  // namespace

std::string prepare_runtime_dir(const std::string& dir, int gid) {
    if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
        return "cannot create runtime_dir " + dir + ": " + strerror(errno);
    // Everything below on one descriptor of the directory itself (no symlink followed), so
    // that the checks and the chown/chmod are about the same directory.
    const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) {
            struct stat ls{};
            if (lstat(dir.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode))
                return "runtime_dir " + dir + " is a symbolic link: refused (point runtime_dir at the real directory)";
            return "runtime_dir " + dir + " is not a directory";
        }
        return "runtime_dir " + dir + ": " + strerror(errno);
    }
    struct Closer {
        int fd;
        ~Closer() { close(fd); }
    } closer{fd};
    struct stat st{};
    if (fstat(fd, &st) != 0) return "runtime_dir " + dir + ": " + strerror(errno);
    if (st.st_uid != geteuid())
        return "runtime_dir " + dir + " is owned by uid " + std::to_string(st.st_uid) + ", not " + owner_word() +
               ": refused (another user could replace the pidfile or the socket)";
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        char mode[8];
        snprintf(mode, sizeof mode, "%03o", st.st_mode & 0777);
        return "runtime_dir " + dir + " is writable by group or others (mode " + mode + "): refused; chmod 750 it";
    }
    const gid_t g = gid >= 0 ? static_cast<gid_t>(gid) : getegid();
    if (st.st_gid != g && fchown(fd, static_cast<uid_t>(-1), g) != 0)
        return "cannot give runtime_dir " + dir + " to group " + std::to_string(g) + ": " + strerror(errno);
    if ((st.st_mode & 07777) != 0750 && fchmod(fd, 0750) != 0)
        return "cannot chmod 750 runtime_dir " + dir + ": " + strerror(errno);
    return "";
}

std::string prepare_jail(const std::string& runtime_dir, std::string* path) {
    *path = jail_path(runtime_dir);
    if (mkdir(path->c_str(), 0555) != 0 && errno != EEXIST) return "cannot create " + *path + ": " + strerror(errno);
    return jail_problem(*path);
}

int open_runtime_file(const std::string& path, int mode, bool read_only, std::string* err) {
    const int rw = read_only ? O_RDONLY : O_RDWR;
    int fd = open(path.c_str(), rw | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && !read_only) fd = open(path.c_str(), rw | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        const int e = errno;
        *err = e == ELOOP ? path + " is a symbolic link: refused" : path + ": " + strerror(e);
        errno = e;
        return -1;
    }
    struct stat st{};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
        *err = path + " is not a regular file of " + owner_word() + " with a single link: refused";
        close(fd);
        return -1;
    }
    return fd;
}

}  // namespace angel
