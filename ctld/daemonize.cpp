#include "ctld/daemonize.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.hpp"
#include "ctld/runtime_files.hpp"

namespace angel {

int daemonize() {
    // The first process stays until the detached one says it holds the pidfile (or dies), so
    // whoever started us (systemd's Type=forking, an rc script) finds the pidfile written when
    // we return, and a refusal after the fork is still our exit code.
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) {
        log_err("pipe: %s", strerror(errno));
        std::exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_err("fork: %s", strerror(errno));
        std::exit(1);
    }
    if (pid > 0) {
        close(ready[1]);
        char c = 0;
        ssize_t n;
        while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR) {
        }
        if (n == 1) _exit(0);
        // The detached process exited before it was ready: its code is ours.
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
    }
    close(ready[0]);
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
    return ready[1];
}

void daemon_ready(int fd) {
    if (fd < 0) return;
    const char c = 1;
    [[maybe_unused]] const ssize_t n = write(fd, &c, 1);
    close(fd);
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
