#include "common/packet/parsed_packet.hpp"

namespace angel {

// Short, stable names: they appear in `angelctl stats` and in logs.
const char* parse_status_name(ParseStatus s) {
    switch (s) {
        case ParseStatus::ok: return "ok";
        case ParseStatus::not_ip: return "not_ip";
        case ParseStatus::unsupported_link: return "unsupported_link";
        case ParseStatus::truncated: return "truncated";
        case ParseStatus::bad_version: return "bad_version";
        case ParseStatus::bad_header_length: return "bad_header_length";
        case ParseStatus::bad_total_length: return "bad_total_length";
        case ParseStatus::too_many_headers: return "too_many_headers";
        case ParseStatus::count_: break;
    }
    return "unknown";
}

}  // namespace angel
