// Two meters as one unit (issue 10, docs/ha.md), with real ucarp (ha.mode vip) and real
// keepalived (m1 in ha.mode vip, m2 in ha.mode file) in network namespaces (ha_lab.hpp): one tap floods every frame to
// both meters, tcpreplay sends 20k packets/s, one angel-sink and tcpdump sit on the classifier
// link. Each phase replays the trace (12 s), triggers a failover 1.5 s in, and then checks, from
// tshark's reading of what the classifier link carried (the oracle: not our decoder):
//   - before the failover only the old master's records, after it only the new master's: the
//     exporting source changes exactly once, and the last record of the old master is at least
//     200 ms before the first of the new one (no 200 ms window holds both);
//   - no packet record is sent twice (packet records <= packets sent), and what is lost is
//     explained by the gap (at most the gap's worth of packets at 20k/s, plus half a second);
//   - every flow ID the new master sends (packet and flow_end records) was named by a flow_start
//     of the new master before it, and a flow the old master had announced keeps its flow ID;
//   - `angelctl role` agrees, with the exact number of transitions on each meter;
//   - angel.flows holds exactly the new master's live flows once it is master (one reconcile),
//     and the demoted meter writes nothing more to it;
//   - the backup is warm: its FlowMap holds the same flows as the master's.
// It prints the failover time (last record of the old master to the first of the new one at
// the classifier) and the packet records lost per phase: the numbers of the note
// (median of 5: ANGEL_HA_REPEAT=5 ... --gtest_repeat=5).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <set>

#include "export_capture.hpp"
#include "ha_lab.hpp"

namespace angel::itest {
namespace {

constexpr double kPps = 20000;

double wall_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct Phase {
    std::string kind;
    size_t from = 0, to = 1;  // old and new master
    double t0 = 0, t1 = 0, trigger = 0;
    uint64_t sent = 0;
    double db_ms = -1;  // promotion to angel.flows == the new master's FlowMap (while traffic runs)
};

size_t meter_of(const std::string& src) {
    if (src == "10.77.0.1") return 0;
    if (src == "10.77.0.2") return 1;
    return SIZE_MAX;
}

class HaFailoverTest : public ::testing::Test {
protected:
    void start(HaLab::Carp carp) {
        if (const std::string why = HaLab::skip_reason(carp); !why.empty()) GTEST_SKIP() << why;
        lab_ = std::make_unique<HaLab>(carp);
        ASSERT_TRUE(lab_->start_classifier());
        // m1 first, so that it is the master the test starts from; m2 joins as backup.
        ASSERT_TRUE(lab_->start_meter(0));
        lab_->start_carp(0);
        ASSERT_TRUE(lab_->wait_role(0, "master", 15)) << lab_->m[0].log() << lab_->m[0].carp_log();
        ASSERT_TRUE(lab_->start_meter(1));
        lab_->start_carp(1);
        sleep_s(3.0);  // m2 has heard m1's adverts for a while and stays backup
        ASSERT_EQ(lab_->role(1).role, "backup") << lab_->m[1].log() << lab_->m[1].carp_log();
    }

    // One phase: the trace at 20k/s, `trigger` 1.5 s in, the new master awaited.
    void phase(const std::string& kind, size_t from, size_t to, const std::function<void()>& trigger,
               uint64_t from_transitions, uint64_t to_transitions, bool from_alive = true) {
        Phase p;
        p.kind = kind;
        p.from = from;
        p.to = to;
        SCOPED_TRACE(kind);
        ASSERT_EQ(lab_->role(from).role, "master") << lab_->role(from).raw;
        const unsigned run = static_cast<unsigned>(phases_.size());
        p.t0 = wall_now();
        lab_->start_traffic(run);
        sleep_s(1.5);
        const size_t reconciles = count_of(lab_->m[to].log(), "angel.flows reconciled");
        p.trigger = wall_now();
        trigger();
        EXPECT_TRUE(lab_->wait_role(to, "master", 15)) << lab_->role(to).raw << "\n" << lab_->m[to].log();
        const double promoted = wall_now();
        // What the demoted meter has written to the database: nothing more from now on.
        auto db_writes = [&](size_t i) {
            const std::string j = angelctl(lab_->m[i].sock, {"status", "--json"}).out;
            return json_number_in(j, "database", "batches") + json_number_in(j, "database", "reconciles");
        };
        uint64_t from_writes = 0;
        if (from_alive) {
            EXPECT_TRUE(lab_->wait_role(from, "backup", 5)) << lab_->role(from).raw;
            EXPECT_EQ(lab_->role(from).transitions, from_transitions) << lab_->role(from).raw;
            sleep_s(0.2);  // a batch already begun as master may finish
            from_writes = db_writes(from);
        }
        EXPECT_EQ(lab_->role(to).transitions, to_transitions) << lab_->role(to).raw;
        EXPECT_TRUE(lab_->sender->wait(40));
        p.sent = parse_tcpreplay(read_file(lab_->sender_out(run))).sent.value_or(0);
        EXPECT_GT(p.sent, 200000u) << read_file(lab_->sender_out(run));
        // angel.flows follows the new master's FlowMap: its promotion reconciled what it could
        // not write as backup (flows that started or ended during the gap).
        std::vector<uint32_t> live, db;
        const bool same = wait_until_s(
            [&] {
                live = lab_->live_flow_ids(to);
                db = lab_->db_flow_ids();
                return !live.empty() && live == db;
            },
            10, 0.2);
        p.db_ms = (wall_now() - promoted) * 1e3;
        EXPECT_EQ(count_of(lab_->m[to].log(), "angel.flows reconciled"), reconciles + 1)
            << "the promotion reconciles angel.flows from the FlowMap once";
        EXPECT_TRUE(same) << "angel.flows " << db.size() << " rows, " << lab_->m[to].name << " has " << live.size()
                          << " live flows";
        if (from_alive) {
            EXPECT_EQ(db_writes(from), from_writes) << "the backup wrote to the database";
            // The backup is warm: the same flows in its FlowMap as in the master's.
            std::vector<uint32_t> a, b;
            EXPECT_TRUE(wait_until_s(
                [&] {
                    a = lab_->live_flow_ids(from);
                    b = lab_->live_flow_ids(to);
                    return !a.empty() && a == b;
                },
                5, 0.2))
                << lab_->m[from].name << " " << a.size() << " live flows, " << lab_->m[to].name << " " << b.size();
        }
        sleep_s(0.5);  // every record flushed (export.flush_ms 10)
        p.t1 = wall_now();
        for (size_t i : {from, to})
            if (i != from || from_alive)
                std::printf("%s after \"%s\": %s", lab_->m[i].name.c_str(), kind.c_str(),
                            angelctl(lab_->m[i].sock, {"stats"}).out.c_str());
        phases_.push_back(p);
    }

    // Reads the classifier link's capture with tshark and checks every phase.
    void check_export() {
        lab_->stop_classifier();
        const ExportCapture cap = read_export_capture(lab_->export_pcap, HaLab::kPort, Millis(600000));
        ASSERT_TRUE(cap.error.empty()) << cap.error;
        ASSERT_FALSE(cap.frames.empty());
        size_t undecoded = 0, foreign = 0;
        for (const ExportFrame& f : cap.frames) {
            undecoded += f.undecoded_sets;
            if (meter_of(f.src) == SIZE_MAX) ++foreign;
        }
        EXPECT_EQ(undecoded, 0u) << "data sets tshark could not decode (no template before them)";
        EXPECT_EQ(foreign, 0u);
        // Flow ID by tuple, as each meter announced it.
        std::array<std::map<std::string, uint32_t>, 2> id_of;
        size_t next = 0;
        for (const Phase& p : phases_) {
            SCOPED_TRACE(p.kind);
            std::vector<const ExportFrame*> in;
            for (; next < cap.frames.size() && cap.frames[next].time_s < p.t1; ++next) {
                const ExportFrame& f = cap.frames[next];
                for (const ExportRecord& r : f.records)
                    if (r.is_flow_start() && meter_of(f.src) != SIZE_MAX) id_of[meter_of(f.src)][r.tuple()] = r.flow_id;
                if (f.time_s >= p.t0 && f.has_data()) in.push_back(&f);
            }
            ASSERT_FALSE(in.empty());
            size_t switches = 0;
            for (size_t i = 1; i < in.size(); ++i) switches += in[i]->src != in[i - 1]->src;
            EXPECT_EQ(meter_of(in.front()->src), p.from) << "the phase must start with the old master exporting";
            EXPECT_EQ(meter_of(in.back()->src), p.to) << "and end with the new one";
            EXPECT_EQ(switches, 1u) << "the exporting meter changed " << switches << " times";
            double last_old = 0, first_new = 0;
            size_t first_new_at = in.size();
            for (size_t i = 0; i < in.size(); ++i) {
                if (meter_of(in[i]->src) == p.from) last_old = in[i]->time_s;
                else if (first_new_at == in.size()) first_new_at = i, first_new = in[i]->time_s;
            }
            ASSERT_LT(first_new_at, in.size());
            const double gap = first_new - last_old;
            EXPECT_GE(gap, 0.2) << "a 200 ms window holds records of both meters";
            uint64_t received = 0;
            for (const ExportFrame* f : in)
                for (const ExportRecord& r : f->records) received += r.is_packet();
            EXPECT_LE(received, p.sent) << "packet records sent twice";
            const uint64_t lost = p.sent > received ? p.sent - received : 0;
            EXPECT_LE(static_cast<double>(lost), kPps * (gap + 0.5)) << "more lost than the gap explains";
            // The new master names every flow before it sends its records.
            std::set<uint32_t> named;
            size_t unnamed = 0, announced = 0, kept = 0, changed = 0;
            for (size_t i = first_new_at; i < in.size(); ++i) {
                for (const ExportRecord& r : in[i]->records) {
                    if (r.is_flow_start()) {
                        named.insert(r.flow_id);
                        if (auto it = id_of[p.from].find(r.tuple()); it != id_of[p.from].end()) {
                            ++announced;
                            (it->second == r.flow_id ? kept : changed) += 1;
                        }
                    } else if (!r.is_loss() && !r.is_watermark() && !named.count(r.flow_id)) {
                        ++unnamed;
                    }
                }
            }
            EXPECT_EQ(unnamed, 0u) << "records of flows the new master never announced";
            EXPECT_EQ(changed, 0u) << "ongoing flows whose flow ID changed at the failover";
            EXPECT_GE(kept, 100u) << "the ongoing flows were not re-announced with their IDs";
            std::printf("HA %s: failover %.0f ms (last record of m%zu to first of m%zu at the classifier), "
                        "trigger to first record %.0f ms; packets sent %llu, packet records received %llu, "
                        "lost %llu; %zu ongoing flows re-announced with their IDs; angel.flows equal to its FlowMap "
                        "%.0f ms after promotion (polled every 200 ms while the rest of the trace is sent)\n",
                        p.kind.c_str(), gap * 1e3, p.from + 1, p.to + 1, (first_new - p.trigger) * 1e3,
                        static_cast<unsigned long long>(p.sent), static_cast<unsigned long long>(received),
                        static_cast<unsigned long long>(lost), kept, p.db_ms);
            (void)announced;
        }
        // The classifier (angel-sink) decoded all of it: every exporter's templates came first.
        const std::string summary = read_file(lab_->sink_summary());
        EXPECT_NE(summary.find("malformed 0"), std::string::npos) << summary;
        EXPECT_EQ(summary.find("unknown template"), std::string::npos) << summary;
        // A message netd sends in the instant the classifier link goes down is lost on the dead
        // link (before ctld sees the link down), and the sink rightly counts that as one gap: at
        // most one per link-down phase; none otherwise.
        size_t link_downs = 0;
        for (const Phase& p : phases_) link_downs += p.kind.find("link down") != std::string::npos;
        EXPECT_LE(number_after(summary, "sequence         ").value_or(UINT64_MAX), link_downs) << summary;
        uint64_t tshark_packets = 0;
        for (const ExportFrame& f : cap.frames)
            for (const ExportRecord& r : f.records) tshark_packets += r.is_packet();
        EXPECT_EQ(number_after(summary, "packets          "), tshark_packets) << summary;
    }

    void TearDown() override {
        if (HasFailure() && lab_) {
            for (const auto& x : lab_->m)
                std::fprintf(stderr, "---- %s ctld:\n%s\n---- %s carp:\n%s\n", x.name.c_str(), x.log().c_str(),
                             x.name.c_str(), x.carp_log().c_str());
        }
        lab_.reset();
    }

    std::unique_ptr<HaLab> lab_;
    std::vector<Phase> phases_;
};

// ha.mode vip with ucarp: stop, preempt back, link down, preempt back, host death.
TEST_F(HaFailoverTest, UcarpVipFailoverAndPreempt) {
    start(HaLab::Carp::ucarp_vip);
    if (IsSkipped() || HasFatalFailure()) return;
    HaLab& lab = *lab_;
    // 1. The master's ucarp stops: its down script takes the address away.
    phase("ucarp stopped", 0, 1, [&] { lab.stop_carp(0); }, 2, 1);
    // 2. It comes back with preempt (advskew 0 < 100): it takes over, m2 steps down.
    phase("preempt after ucarp restart", 1, 0, [&] { lab.start_carp(0); }, 2, 3);
    // 3. The master's classifier link goes down: ucarp exits (running its down script).
    phase("classifier link down", 0, 1, [&] { lab.set_link(0, false); }, 4, 3);
    EXPECT_TRUE(wait_until_s([&] { return !lab.carp_running(0); }, 5)) << "ucarp is expected to exit on link loss";
    lab.set_link(0, true);
    sleep_s(1.0);
    // 4. Link back, ucarp restarted (as an rc script or systemd would): preempt again.
    phase("preempt after link up", 1, 0, [&] { lab.start_carp(0); }, 4, 5);
    // 5. Host death: the whole meter and ucarp killed at once; no script runs.
    phase("host death", 0, 1, [&] { lab.kill_host(0); }, 0, 5, false);
    check_export();
}

// keepalived: m1 in ha.mode vip (its virtual_ipaddress), m2 in ha.mode file (its notify
// script): stop, preempt back, host death.
TEST_F(HaFailoverTest, KeepalivedVipAndFileFailoverAndPreempt) {
    start(HaLab::Carp::keepalived_vip_file);
    if (IsSkipped() || HasFatalFailure()) return;
    HaLab& lab = *lab_;
    phase("keepalived stopped", 0, 1, [&] { lab.stop_carp(0); }, 2, 1);
    phase("preempt after keepalived restart", 1, 0, [&] { lab.start_carp(0); }, 2, 3);
    phase("host death", 0, 1, [&] { lab.kill_host(0); }, 0, 3, false);
    check_export();
}

}  // namespace
}  // namespace angel::itest
