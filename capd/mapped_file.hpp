// A read-only view of a whole regular file in memory, so that a replay reads packets in place
// instead of copying them through stdio with a read(2) every buffer.
#pragma once
#include <cstddef>
#include <cstdint>

namespace angel {

class MappedFile {
public:
    MappedFile() = default;
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    // Maps the regular file open on fd (the descriptor may be closed afterwards) and tells the
    // kernel it will be read front to back. False, with nothing mapped, when that fails.
    bool map(int fd);
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

    // A file truncated while mapped turns reads past its new end into SIGBUS. After this call,
    // a SIGBUS inside this mapping prints one line naming the file and exits EX_IOERR (a
    // restarted replay capd resumes after what it had published and reads what is left);
    // any other SIGBUS still kills the process as usual. One mapping per process may report.
    void exit_cleanly_if_truncated(const char* name) const;

private:
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace angel
