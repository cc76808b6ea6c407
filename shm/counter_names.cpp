// Names of each stage's counters, for angelctl stats and the logs. Must follow the enums in
// stage_status.hpp.
#include "shm/stage_status.hpp"

namespace angel {

const char* counter_name(StageId s, size_t i) {
    static const char* capd[] = {"packets", "bytes", "queued", "ring_dropped", "pcap_received",
                                 "pcap_dropped", "pcap_ifdropped", "truncated_slot"};
    static const char* procd[] = {"packets", "ip_packets", "not_ip", "malformed", "flows_started",
                                  "flows_ended", "flows_evicted", "record_waits", "events_dropped",
                                  "gc_runs", "repeated", "records_lost", "flows_announced",
                                  "records_over_limit", "records_muted",
                                  "loss_records", "watermarks", "bad_capture_reports", "filtered",
                                  "event_waits"};
    static const char* netd[] = {"records", "messages", "records_sent", "bytes", "send_errors",
                                 "templates", "not_master", "unsent_at_demotion", "replayed",
                                 "window_trimmed", "datagrams_failed", "records_lost"};
    switch (s) {
        case StageId::capd: return i < capd_counter_count ? capd[i] : nullptr;
        case StageId::procd: return i < procd_parse_first ? procd[i] : nullptr;
        case StageId::netd: return i < netd_counter_count ? netd[i] : nullptr;
        default: return nullptr;
    }
}

}  // namespace angel
