#include "capd/mapped_file.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdint>

namespace angel {

bool MappedFile::map(int fd) {
    struct stat st{};
    if (data_ || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) return false;
    if (static_cast<uint64_t>(st.st_size) > SIZE_MAX) return false;
    const size_t size = static_cast<size_t>(st.st_size);
    // MAP_PRIVATE + PROT_READ: nothing can write through the view, and the page cache is shared.
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return false;
    // Sequential: larger read-ahead, and pages already passed may be reclaimed early.
    madvise(p, size, MADV_SEQUENTIAL);
    data_ = static_cast<const uint8_t*>(p);
    size_ = size;
    return true;
}

MappedFile::~MappedFile() {
    if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace angel
