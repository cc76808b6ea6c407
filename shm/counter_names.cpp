// Names of each stage's counters, for angelctl stats and the logs. Must follow the enums in
// stage_status.hpp.
#include "shm/stage_status.hpp"

#include <iterator>

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
                                 "window_trimmed", "datagrams_failed", "records_lost",
                                 "metrics_scrapes", "metrics_refused"};
    switch (s) {
        case StageId::capd: return i < capd_counter_count ? capd[i] : nullptr;
        case StageId::procd: return i < procd_parse_first ? procd[i] : nullptr;
        case StageId::netd: return i < netd_counter_count ? netd[i] : nullptr;
        default: return nullptr;
    }
}

const char* counter_help(StageId s, size_t i) {
    // One line each, for the Prometheus page's HELP (ctld/metrics/meter_metrics.cpp).
    static const char* capd[] = {"Packets read from libpcap.",
                                 "Wire bytes of the packets read.",
                                 "Packets put in the packet ring.",
                                 "Packets dropped because the packet ring was full (live).",
                                 "Packets the kernel received for the capture (pcap_stats ps_recv).",
                                 "Packets the kernel dropped, its buffer full (pcap_stats ps_drop).",
                                 "Packets the interface dropped (pcap_stats ps_ifdrop).",
                                 "Packets cut to the packet ring's slot size."};
    static const char* procd[] = {"Packets taken from the packet ring.",
                                  "IP packets counted in a flow.",
                                  "Valid frames that carry no IP.",
                                  "Frames the parser refused.",
                                  "Flows started.",
                                  "Flows ended.",
                                  "Flows ended because the FlowMap was full.",
                                  "Times the record ring was full and procd waited.",
                                  "Database events lost to a full event ring (reconciled later).",
                                  "Flow expiry runs.",
                                  "Packets processed again after a killed procd.",
                                  "Records not queued (netd given up during a stop, or no FlowMap entry).",
                                  "flow_start records sent again for live flows on becoming master.",
                                  "Packet records not made: past export.packet_records_per_flow.",
                                  "Packet records not made: the flow is muted.",
                                  "Loss records queued (capture drops and gaps).",
                                  "Watermark records queued.",
                                  "Capture reports from capd refused.",
                                  "IP packets outside the customer set (customers.networks)."};
    static const char* netd[] = {"Records taken from the record ring.",
                                 "IPFIX messages sent.",
                                 "Records sent to the classifier.",
                                 "Bytes of IPFIX sent.",
                                 "Messages whose send failed (classifier down, ICMP unreachable).",
                                 "Template sets sent.",
                                 "Records released unsent while not master (older than the replay window).",
                                 "Records packed when the meter became backup, kept unsent.",
                                 "Records sent flagged replayed on becoming master.",
                                 "Records released early from the replay window (record ring too small).",
                                 "GET /metrics answered with the page (metrics.listen).",
                                 "Connections to metrics.listen refused or answered with an error."};
    switch (s) {
        case StageId::capd: return i < std::size(capd) ? capd[i] : nullptr;
        case StageId::procd: return i < std::size(procd) ? procd[i] : nullptr;
        case StageId::netd: return i < std::size(netd) ? netd[i] : nullptr;
        default: return nullptr;
    }
}

}  // namespace angel
