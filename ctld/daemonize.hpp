// Detaching from the terminal and the pidfile that tells rc.d scripts who we are.
#pragma once
#include <string>

namespace angel {

// fork, setsid, chdir /, stdio to /dev/null. The parent waits: it exits 0 once the detached
// process calls daemon_ready() with the descriptor returned here, or with the detached
// process's own exit code if that exits first.
int daemonize();
// Tells the waiting parent that we are up (the pidfile is written); fd < 0: nothing to tell.
void daemon_ready(int fd);

// Writes our pid to path under an exclusive lock held for the life of the object (a second
// ctld for the same instance finds it held and refuses). Removes the file on destruction.
class PidFile {
public:
    explicit PidFile(std::string path);
    ~PidFile();
    bool acquired() const { return fd_ >= 0; }

private:
    std::string path_;
    int fd_ = -1;
};

}  // namespace angel
