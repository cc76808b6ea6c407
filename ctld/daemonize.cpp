#include "ctld/daemonize.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "ctld/runtime_files.hpp"

namespace angel {

void daemonize() {
    pid_t pid = fork();
    if (pid < 0) {
        log_err("fork: %s", strerror(errno));
        std::exit(1);
    }
    if (pid > 0) _exit(0);
    setsid();
    if (chdir("/") != 0) {
        // "/" always exists; nothing sensible to do otherwise.
    }
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2) close(fd);
    }
}

PidFile::PidFile(std::string path) : path_(std::move(path)) {
    std::string err;
    int fd = open_runtime_file(path_, 0644, false, &err);  // no symlink followed, O_EXCL when new
    if (fd < 0) {
        log_err("cannot open pidfile: %s", err.c_str());
        return;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        log_err("another angel-ctld is running for this instance (pidfile %s is locked)", path_.c_str());
        close(fd);
        return;
    }
    const std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) {
        log_err("cannot write pidfile %s: %s", path_.c_str(), strerror(errno));
        close(fd);
        return;
    }
    fd_ = fd;
}

PidFile::~PidFile() {
    if (fd_ >= 0) {
        unlink(path_.c_str());
        close(fd_);
    }
}

}  // namespace angel
