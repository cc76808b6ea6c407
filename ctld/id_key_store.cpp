#include "ctld/id_key_store.hpp"
#include "ctld/runtime_files.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace angel {

FlowIdKey resolve_id_key(const std::string& configured_hex, const std::string& runtime_dir,
                         const std::string& instance) {
    if (!configured_hex.empty()) {
        auto k = parse_flow_id_key(configured_hex);
        if (!k) throw std::runtime_error("flow.id_key is not 32 hex digits");
        return *k;
    }
    const std::string path = runtime_dir + "/" + instance + ".idkey";
    std::string hex;
    // Never through a symlink, and only a regular file of ours.
    std::string err;
    if (const int fd = open_runtime_file(path, 0600, true, &err); fd >= 0) {
        char buf[80] = {};
        const ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            hex.assign(buf, static_cast<size_t>(n));
            while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) hex.pop_back();
            if (auto k = parse_flow_id_key(hex)) return *k;
        }
        throw std::runtime_error(path + ": not a flow-ID key (32 hex digits); remove it to make a new one");
    } else if (errno != ENOENT) {
        throw std::runtime_error("cannot read " + err);
    }
    uint8_t raw[16];
    if (getrandom(raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw))
        throw std::runtime_error(std::string("getrandom: ") + strerror(errno));
    static const char* digits = "0123456789abcdef";
    hex.clear();
    for (uint8_t b : raw) {
        hex += digits[b >> 4];
        hex += digits[b & 15];
    }
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + strerror(errno));
    const std::string line = hex + "\n";
    const bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    close(fd);
    if (!ok) throw std::runtime_error("cannot write " + path);
    return *parse_flow_id_key(hex);
}

}  // namespace angel
