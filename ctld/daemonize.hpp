// Detaching from the terminal and the pidfile that tells rc.d scripts who we are.
#pragma once
#include <string>

namespace angel {

// fork, setsid, chdir /, stdio to /dev/null. The parent exits 0.
void daemonize();

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
