// Two meters as a CARP/VRRP pair in network namespaces, for the HA failover tests
// (ha_failover_test.cpp, docs/ha.md):
//
//   src: tcpreplay -i eth0 ─┐
//                            tap: br0 (ageing_time 0: floods every frame to every port)
//        m1: cap0 <─────────┤     (one tap, two capture ports: both meters see every packet)
//        m2: cap0 <─────────┘
//        m1: cl0 10.77.0.1 ─┐
//                            cls: br1 10.77.0.100 (multicast snooping off: CARP/VRRP adverts
//        m2: cl0 10.77.0.2 ─┘     reach both), angel-sink and tcpdump on br1
//
// Each meter runs angel-ctld -f (its own instance and runtime_dir, the same flow.id_key and
// database.meter_id, one PostgreSQL server) and ucarp or keepalived on cl0, which moves the
// virtual address (ha.mode vip) and runs the scripts in tools/ha/ (ucarp-vip-up/down; keepalived's
// notify script writes the state file of ha.mode file). Everything is stopped and removed when the lab goes away.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "meter_harness.hpp"
#include "pg_server.hpp"

namespace angel::itest {

class HaLab {
public:
    // ucarp_vip: both meters follow ucarp's address (ha.mode vip). keepalived_vip_file: m1
    // follows keepalived's virtual_ipaddress (vip), m2 its notify script (file): both ways
    // keepalived tells mastership, exercised in both directions by one pair.
    enum class Carp { ucarp_vip, keepalived_vip_file };
    static constexpr const char* kVip = "10.77.0.50";            // ucarp's
    static constexpr const char* kKeepalivedVip = "10.77.0.60";  // keepalived's
    static constexpr const char* kClassifier = "10.77.0.100";
    static constexpr unsigned kPort = 4739;
    static constexpr const char* kMeterId = "pair";

    struct Meter {
        std::string name;  // m1, m2
        std::string ns;
        std::string addr;  // on cl0
        int preference = 0;  // ucarp advskew / keepalived priority
        std::unique_ptr<MeterScratch> scratch;
        fs::path dir, conf, sock, state_file;
        std::unique_ptr<Child> ctld, carp;
        unsigned ctld_runs = 0, carp_runs = 0;
        std::string log() const;       // every ctld run's stderr, in order
        std::string carp_log() const;  // every ucarp/keepalived run's output
    };

    // Why the lab cannot run here (empty: it can).
    static std::string skip_reason(Carp carp);

    explicit HaLab(Carp carp);
    ~HaLab();
    HaLab(const HaLab&) = delete;
    HaLab& operator=(const HaLab&) = delete;

    Carp carp;
    netns::NetnsLab lab;  // first: destroyed last
    std::unique_ptr<PgServer> pg;
    std::string src_ns, tap_ns, cls_ns;
    std::array<Meter, 2> m;
    fs::path dir;  // m[0]'s scratch dir holds the lab's own files too
    fs::path trace, export_pcap;
    std::unique_ptr<Child> sink, tcpdump;

    fs::path sink_out() const { return dir / "sink.jsonl"; }
    fs::path sink_summary() const { return dir / "sink.summary"; }

    // The classifier side: angel-sink and tcpdump on br1, both ready.
    ::testing::AssertionResult start_classifier();
    // angel-ctld -f for meter i; succeeds once capd is ready.
    ::testing::AssertionResult start_meter(size_t i);
    void start_carp(size_t i);
    void stop_carp(size_t i);            // SIGTERM: ucarp's down script / keepalived's STOP notify
    void kill_host(size_t i);            // SIGKILL to ctld (its stages follow) and ucarp/keepalived
    void set_link(size_t i, bool up);    // cl0 of meter i
    bool carp_running(size_t i) { return m[i].carp && m[i].carp->running(); }

    // `angelctl role --json` of meter i: role ("" when it did not answer) and transitions.
    struct Role {
        std::string role;
        uint64_t transitions = 0;
        std::string raw;
    };
    Role role(size_t i) const;
    bool wait_role(size_t i, const std::string& role, double timeout_s) const;

    // Flow IDs of meter i's FlowMap (angelctl flows) and of angel.flows for the pair.
    std::vector<uint32_t> live_flow_ids(size_t i) const;
    std::vector<uint32_t> db_flow_ids() const;

    // tcpreplay of the trace at 20k packets/s (bounded: the trace's packets, 30 s at most).
    void start_traffic(unsigned run);
    std::unique_ptr<Child> sender;
    fs::path sender_out(unsigned run) const { return dir / ("tcpreplay" + std::to_string(run) + ".out"); }

    // Stops tcpdump (SIGINT: it flushes) and the sink (SIGTERM after 1 s of quiet).
    void stop_classifier();

private:
    std::string config_text(size_t i) const;
    void write_keepalived_conf(size_t i) const;
};

}  // namespace angel::itest
