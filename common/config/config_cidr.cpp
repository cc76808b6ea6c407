// CIDR strings of customers.networks (and of the database's customer_networks rows).
#include <arpa/inet.h>

#include <cstring>

#include "common/config/config.hpp"

namespace angel {
namespace {

bool set_error(std::string* error, std::string text) {
    if (error) *error = std::move(text);
    return false;
}

// Strict decimal: digits only (no sign, no spaces), at most 3 of them.
bool parse_prefix(std::string_view s, int* out) {
    if (s.empty() || s.size() > 3) return false;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *out = v;
    return true;
}

// Bits after prefix_len, which a network address must have at zero.
bool host_bits_zero(const Cidr& c, int addr_bytes) {
    for (int bit = c.prefix_len; bit < addr_bytes * 8; ++bit) {
        if (c.addr[bit / 8] & (0x80 >> (bit % 8))) return false;
    }
    return true;
}

void clear_host_bits(Cidr& c, int addr_bytes) {
    for (int bit = c.prefix_len; bit < addr_bytes * 8; ++bit) {
        c.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    }
}

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view text, std::string* error) {
    const std::string quoted = "\"" + std::string(text) + "\"";
    const size_t slash = text.find('/');
    const std::string addr_text(text.substr(0, slash));
    Cidr c;
    int addr_bytes = 0;
    if (addr_text.find(':') != std::string::npos) {
        if (inet_pton(AF_INET6, addr_text.c_str(), c.addr.data()) != 1) {
            set_error(error, quoted + " is not a valid IPv6 address or network");
            return std::nullopt;
        }
        c.ip_version = 6;
        addr_bytes = 16;
    } else {
        // inet_pton(AF_INET) takes only the dotted quad, not "10.1" or octal forms.
        if (inet_pton(AF_INET, addr_text.c_str(), c.addr.data()) != 1) {
            set_error(error, quoted + " is not a valid IPv4 address or network");
            return std::nullopt;
        }
        c.ip_version = 4;
        addr_bytes = 4;
    }
    int prefix = addr_bytes * 8;
    if (slash != std::string_view::npos) {
        if (!parse_prefix(text.substr(slash + 1), &prefix) || prefix > addr_bytes * 8) {
            set_error(error, quoted + ": the prefix length must be a number from 0 to " +
                                 std::to_string(addr_bytes * 8));
            return std::nullopt;
        }
    }
    c.prefix_len = static_cast<uint8_t>(prefix);
    if (!host_bits_zero(c, addr_bytes)) {
        // A typo such as 10.0.0.1/8 would silently widen or shift the filter: refuse it and
        // name the network the operator probably meant.
        Cidr fixed = c;
        clear_host_bits(fixed, addr_bytes);
        set_error(error, quoted + " has host bits set after the /" + std::to_string(prefix) +
                             " prefix (did you mean " + format_cidr(fixed) + "?)");
        return std::nullopt;
    }
    return c;
}

std::string format_cidr(const Cidr& c) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(c.ip_version == 4 ? AF_INET : AF_INET6, c.addr.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(c.prefix_len);
}

}  // namespace angel
