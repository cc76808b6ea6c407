// Printable names for the enums that cross the segment.
#include "shm/records.hpp"
#include "shm/segment.hpp"
#include "shm/stage_status.hpp"

namespace angel {

const char* stage_name(StageId s) {
    switch (s) {
        case StageId::capd: return "capd";
        case StageId::procd: return "procd";
        case StageId::netd: return "netd";
        case StageId::ctld: return "ctld";
        case StageId::count_: break;
    }
    return "?";
}

const char* ha_role_name(HaRole r) {
    switch (r) {
        case HaRole::backup: return "backup";
        case HaRole::master: return "master";
        case HaRole::takeover: return "takeover";
    }
    return "unknown";
}

const char* end_reason_name(EndReason r) {
    switch (r) {
        case EndReason::idle: return "idle";
        case EndReason::tcp_close: return "tcp_close";
        case EndReason::end_of_input: return "end_of_input";
        case EndReason::shutdown: return "shutdown";
        case EndReason::evicted: return "evicted";
    }
    return "unknown";
}

}  // namespace angel
