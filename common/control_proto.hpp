// The control protocol between angelctl and angel-ctld: a unix stream socket at
// <runtime_dir>/<instance>.sock. The client sends one line "COMMAND [ARG...]\n"
// (a trailing "--json" asks for JSON); the server answers "OK\n" or "ERR <message>\n",
// then the body, then closes the connection.
#pragma once
#include <string>

namespace angel {

inline std::string control_socket_path(const std::string& runtime_dir, const std::string& instance) {
    return runtime_dir + "/" + instance + ".sock";
}

}  // namespace angel
