// What the classifier's link carried, as tshark (an independent IPFIX decoder) reads a pcap of
// it: per frame the capture time, the exporter's address and every data record decoded through
// the templates tshark saw, with the set (template) it came in. Used by the HA failover tests
// to tell which meter sent what and when.
//
// Read from `tshark -V` text (one "Flow Id:" line per data record, the tuple lines of a
// flow_start after it) rather than -T fields, whose per-field lists cannot be matched up
// record by record.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace angel::itest {

struct ExportRecord {
    unsigned set_id = 0;  // 256 packet, 257/258 flow_start, 259 flow_end (docs/protocol.md)
    uint32_t flow_id = 0;
    // packet only: angelPacketIndex (PEN 32473, element 3), which tshark shows as a generic
    // enterprise entry in hex; -1 when the record has none.
    int64_t packet_index = -1;
    // flow_start only: the tuple as tshark printed it.
    int proto = -1;
    std::string src, dst;
    int sport = -1, dport = -1;
    // angelPacketFlags (PEN 32473, element 1) bit 3 on any record: sent again by a new master.
    bool replayed = false;
    // packet: its observation time; watermark: its T; flow_start: StartTime; flow_end: EndTime (the flow's last
    // packet); ns since the epoch.
    uint64_t time_ns = 0;
    uint64_t end_packets = 0;  // flow_end: forward + reverse packetDeltaCount
    bool is_packet() const { return set_id == 256; }
    bool is_flow_start() const { return set_id == 257 || set_id == 258; }
    bool is_flow_end() const { return set_id == 259; }
    bool is_loss() const { return set_id == 260; }       // no flow ID (0)
    bool is_watermark() const { return set_id == 261; }  // no flow ID (0)
    std::string tuple() const;  // "proto src:sport>dst:dport" of a flow_start
};

struct ExportFrame {
    double time_s = 0;   // capture time, seconds since the epoch
    std::string src;     // IPv4 source address of the datagram
    unsigned template_sets = 0;
    unsigned undecoded_sets = 0;  // data sets tshark printed no record for (no template)
    std::vector<ExportRecord> records;
    bool has_data() const { return !records.empty(); }
};

struct ExportCapture {
    std::vector<ExportFrame> frames;
    std::string error;  // tshark failed
};

// tshark -n -r pcap -d udp.port==port,cflow -V, parsed.
ExportCapture read_export_capture(const fs::path& pcap, unsigned port, Millis timeout);

}  // namespace angel::itest
