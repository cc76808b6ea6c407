// metrics.listen: "ADDR:PORT" with a literal IPv4 address, or "[IPv6]:PORT".
#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

#include "common/config/config.hpp"

namespace angel {

std::optional<ListenAddress> parse_listen_address(std::string_view text, std::string* error) {
    auto fail = [&](const std::string& why) -> std::optional<ListenAddress> {
        if (error) *error = why;
        return std::nullopt;
    };
    std::string host;
    std::string_view port;
    if (!text.empty() && text[0] == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos) return fail("an IPv6 address needs its closing ']' (\"[::1]:9464\")");
        host = std::string(text.substr(1, close - 1));
        if (close + 1 >= text.size() || text[close + 1] != ':') return fail("a port must follow \"]:\" (\"[::1]:9464\")");
        port = text.substr(close + 2);
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) return fail("must be ADDR:PORT (\"127.0.0.1:9464\", \"[::1]:9464\")");
        host = std::string(text.substr(0, colon));
        if (host.find(':') != std::string::npos)
            return fail("an IPv6 address goes in brackets: \"[" + host + "]:" + std::string(text.substr(colon + 1)) + "\"");
        port = text.substr(colon + 1);
    }
    if (port.empty() || port.size() > 5) return fail("the port must be 1 to 65535");
    unsigned long p = 0;
    for (char c : port) {
        if (c < '0' || c > '9') return fail("the port must be 1 to 65535, not \"" + std::string(port) + "\"");
        p = p * 10 + static_cast<unsigned long>(c - '0');
    }
    if (p < 1 || p > 65535) return fail("the port must be 1 to 65535, not \"" + std::string(port) + "\"");
    ListenAddress a;
    a.port = static_cast<uint16_t>(p);
    // In brackets an IPv6 address, without them an IPv4 one: one way to write each.
    const bool bracketed = text[0] == '[';
    if (bracketed && inet_pton(AF_INET6, host.c_str(), a.addr.data()) == 1) a.family = AF_INET6;
    else if (!bracketed && inet_pton(AF_INET, host.c_str(), a.addr.data()) == 1) a.family = AF_INET;
    else if (bracketed) return fail("\"" + host + "\" in brackets is not an IPv6 address");
    else return fail("\"" + host + "\" is not an IPv4 address (a host name is not accepted; IPv6 goes in brackets)");
    return a;
}

}  // namespace angel
