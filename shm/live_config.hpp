// The effective configuration as ctld publishes it in the segment: plain fixed-size fields
// so every stage reads it without parsing files or talking to the database. ctld is the
// only writer; a seqlock lets stages take a consistent copy while ctld applies a reload.
#pragma once
#include <atomic>
#include <cstdint>

namespace angel {

struct LiveConfig {
    char instance[64];
    char user[64];
    char runtime_dir[256];
    uint32_t foreground;       // stages log to stderr instead of syslog
    uint32_t db_events;        // procd emits new/ended-flow events for ctld's database writer
    char replay_file[1024];    // empty: live capture
    char interfaces[8][64];
    uint32_t interface_count;
    uint32_t snaplen;
    uint32_t buffer_size;
    uint32_t promiscuous;
    char classifier_host[256];
    uint32_t classifier_port;
    uint32_t flow_timeout_s;
    uint32_t tcp_linger_s;
    uint32_t max_flows;
    uint32_t gc_interval_s;
    uint64_t id_key[2];
    uint32_t mtu;
    uint32_t flush_ms;
    uint32_t template_refresh_s;
    uint32_t domain_id;
    uint32_t replay_ms;        // ha.replay_ms: netd's replay window while not master (0 = none)
    uint32_t packet_records_per_flow;  // 0: every packet; else packet records for the first N only
    uint32_t watermark_ms;     // export.watermark_ms; 0 = no watermarks
};

struct LiveConfigBlock {
    std::atomic<uint32_t> seq{0};         // odd while ctld writes
    std::atomic<uint32_t> generation{0};  // bumped on every applied reload
    LiveConfig cfg;
};

// Stage side: a consistent copy. ctld side: publish a new version.
void read_live_config(const LiveConfigBlock& b, LiveConfig& out);
void write_live_config(LiveConfigBlock& b, const LiveConfig& in);

}  // namespace angel
