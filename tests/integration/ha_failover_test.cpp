// Two meters as one unit (issue 10, docs/ha.md), with real ucarp (ha.mode vip) and real
// keepalived (m1 in ha.mode vip, m2 in ha.mode file) in network namespaces (ha_lab.hpp): one tap floods every frame to
// both meters, tcpreplay sends 20k packets/s, one angel-sink and tcpdump sit on the classifier
// link. Each phase replays the trace (12 s), triggers a failover 1.5 s in, and then checks, from
// tshark's reading of what the classifier link carried (the oracle: not our decoder):
//   - before the failover only the old master's records, after it only the new master's: the
//     exporting source changes exactly once, and the last record of the old master is at least
//     200 ms before the first of the new one (no 200 ms window holds both);
//   - nothing is lost (issue 11, ha.replay_ms at its default): after de-duplication by the rule
//     of docs/protocol.md (applied here to tshark's records), every packet sent in the phase is
//     there exactly once, and every flow's packet indexes run 0..n-1 with one flow_end counting
//     n; angel-sink's own de-duplication agrees;
//   - every flow ID the new master sends live (packet and flow_end records) was named by a
//     flow_start of the new master before it, and a flow the old master had announced keeps its
//     flow ID;
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

// The classifier's de-duplication (docs/protocol.md, "Across an HA failover"), written here
// from the rule over tshark's records, independent of angel-sink's: per flow ID the current
// life's packet indexes; a packet whose index the life has seen, a flow_start of a live life (or,
// replayed, of an ended one it does not post-date) and a second flow_end are copies; so is a
// replayed record timed before the current life's start (it belongs to an earlier life).
struct ClassifierView {
    struct Life {
        std::set<uint32_t> idx;
        bool started = false, ended = false;
        uint64_t start_ns = 0, end_packets = 0, end_ns = 0;
    };
    // True for the first copy.
    bool admit(const ExportRecord& r) {
        if (r.is_loss() || r.is_watermark()) return true;  // no flow
        auto& lives = flows[r.flow_id];
        if (lives.empty()) lives.emplace_back();
        // After a flow_end, a live packet or flow_end begins the next life (a replayed one is a
        // copy: the meters' clocks differ, so it may be timed just after the end).
        if (lives.back().ended && !r.is_flow_start() && !r.replayed)
            lives.emplace_back();
        Life& l = lives.back();
        bool first = true;
        if (r.replayed && l.started && r.time_ns < l.start_ns) {
            first = false;
            // The replaying meter's copy of this life's start, by its clock (docs/protocol.md:
            // at most 100 ms earlier and after the previous life's end): the life starts there.
            const uint64_t prev_end = lives.size() > 1 ? lives[lives.size() - 2].end_ns : 0;
            if (r.is_flow_start() && !l.ended && l.start_ns - r.time_ns <= 100'000'000 && r.time_ns > prev_end)
                l.start_ns = r.time_ns;
        } else if (r.is_packet()) {
            first = l.idx.insert(static_cast<uint32_t>(r.packet_index)).second;
        } else if (r.is_flow_start()) {
            const bool live = l.started && !l.ended;
            const bool copy_of_ended = r.replayed && l.ended && r.time_ns <= l.end_ns;
            if (live || copy_of_ended) {
                first = false;
            } else {
                // The flow's first record, or the ID used again by a new flow.
                Life& n = (!l.started && !l.ended) ? l : lives.emplace_back();
                n.started = true;
                n.start_ns = r.time_ns;
            }
        } else if (r.is_flow_end()) {
            first = !l.ended;
            if (first) {
                l.ended = true;
                l.end_packets = r.end_packets;
                l.end_ns = r.time_ns;
            }
        }
        if (!first) ++duplicates;
        return first;
    }
    std::map<uint32_t, std::vector<Life>> flows;
    uint64_t duplicates = 0;
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
        // The oracle must be complete: tcpdump says how many frames the kernel dropped for it
        // ("N packets dropped by kernel"), a replay burst included.
        const std::string td = read_file(lab_->dir / "tcpdump.err");
        const size_t at = td.find(" packets dropped by kernel");
        ASSERT_NE(at, std::string::npos) << td;
        const size_t from = td.rfind('\n', at);
        EXPECT_EQ(std::stoull(td.substr(from == std::string::npos ? 0 : from + 1, at)), 0u) << td;
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
        // The classifier's view after de-duplication: which records are first copies.
        // Watermarks over the merged stream of both meters: T never goes back, and no distinct
        // packet record after a watermark is timed before it (replay and live alike).
        ClassifierView view;
        std::vector<std::vector<bool>> first_copy(cap.frames.size());
        uint64_t unique_packets = 0, watermarks = 0, behind_watermark = 0, watermark_back = 0, last_t = 0;
        for (size_t i = 0; i < cap.frames.size(); ++i)
            for (const ExportRecord& r : cap.frames[i].records) {
                first_copy[i].push_back(view.admit(r));
                unique_packets += r.is_packet() && first_copy[i].back();
                if (r.is_watermark()) {
                    ++watermarks;
                    watermark_back += r.time_ns < last_t;
                    last_t = std::max(last_t, r.time_ns);
                } else if (r.is_packet() && first_copy[i].back() && r.time_ns < last_t) {
                    ++behind_watermark;
                }
            }
        EXPECT_GT(watermarks, 20u);
        EXPECT_EQ(watermark_back, 0u) << "watermarks that went back";
        EXPECT_EQ(behind_watermark, 0u) << "distinct packet records timed before a watermark already received";
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
            // With the replay window, nothing is lost: after de-duplication every packet sent
            // in this phase is there once.
            uint64_t received = 0, unique = 0, replayed = 0;
            for (const ExportFrame* f : in) {
                const auto& firsts = first_copy[static_cast<size_t>(f - cap.frames.data())];
                for (size_t k = 0; k < f->records.size(); ++k) {
                    replayed += f->records[k].replayed;
                    if (!f->records[k].is_packet()) continue;
                    ++received;
                    unique += firsts[k];
                }
            }
            EXPECT_EQ(unique, p.sent) << "packets sent in the phase vs distinct packet records at the classifier";
            const uint64_t lost = p.sent > unique ? p.sent - unique : 0;
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
                    } else if (!r.replayed && !r.is_loss() && !r.is_watermark() && !named.count(r.flow_id)) {
                        // (replayed records come before the announcement: the old master
                        // named their flows; loss and watermark records name none)
                        ++unnamed;
                    }
                }
            }
            EXPECT_EQ(unnamed, 0u) << "records of flows the new master never announced";
            EXPECT_EQ(changed, 0u) << "ongoing flows whose flow ID changed at the failover";
            EXPECT_GE(kept, 100u) << "the ongoing flows were not re-announced with their IDs";
            std::printf("HA %s: failover %.0f ms (last record of m%zu to first of m%zu at the classifier), "
                        "trigger to first record %.0f ms; packets sent %llu, packet records received %llu "
                        "(%llu records replayed), distinct %llu, lost %llu; %zu ongoing flows re-announced with "
                        "their IDs; angel.flows equal to its FlowMap %.0f ms after promotion (polled every 200 ms "
                        "while the rest of the trace is sent)\n",
                        p.kind.c_str(), gap * 1e3, p.from + 1, p.to + 1, (first_new - p.trigger) * 1e3,
                        static_cast<unsigned long long>(p.sent), static_cast<unsigned long long>(received),
                        static_cast<unsigned long long>(replayed), static_cast<unsigned long long>(unique),
                        static_cast<unsigned long long>(lost), kept, p.db_ms);
            (void)announced;
        }
        // Every flow (all started while both meters ran): its distinct packet indexes are
        // 0..n-1 and its one flow_end counts n; a flow still open at the end: 0..last.
        size_t lives = 0, ended = 0, bad = 0, unstarted = 0;
        std::string example;
        for (const auto& [id, ls] : view.flows)
            for (const ClassifierView::Life& l : ls) {
                if (!l.started) {  // records of a life whose flow_start never came: none expected
                    unstarted += l.idx.size() + l.ended;
                    continue;
                }
                ++lives;
                ended += l.ended;
                const uint64_t n = l.ended ? l.end_packets : (l.idx.empty() ? 0 : uint64_t(*l.idx.rbegin()) + 1);
                const bool ok = l.idx.size() == n && (n == 0 || (*l.idx.begin() == 0 && *l.idx.rbegin() == n - 1));
                if (!ok && bad++ < 5)
                    example += " flow " + std::to_string(id) + ": " + std::to_string(l.idx.size()) +
                               " distinct indexes, " + (l.idx.empty() ? "" : std::to_string(*l.idx.begin()) + ".." +
                               std::to_string(*l.idx.rbegin())) + (l.ended ? ", flow_end counts " +
                               std::to_string(l.end_packets) : ", open") + ";";
            }
        if (bad) {
            // For the next time this fails: every record of the first bad flow at the classifier
            // (exporter, kind, replayed, index, time), so the one missing can be placed.
            uint32_t bad_id = 0;
            for (const auto& [id, ls] : view.flows)
                for (const ClassifierView::Life& l : ls) {
                    const uint64_t n = l.ended ? l.end_packets : (l.idx.empty() ? 0 : uint64_t(*l.idx.rbegin()) + 1);
                    if (l.started && !(l.idx.size() == n && (n == 0 || (*l.idx.begin() == 0 && *l.idx.rbegin() == n - 1))) && !bad_id)
                        bad_id = id;
                }
            size_t shown = 0;
            for (const ExportFrame& f : cap.frames)
                for (const ExportRecord& r : f.records) {
                    if (r.flow_id != bad_id || r.is_loss() || r.is_watermark() || shown++ >= 80) continue;
                    std::fprintf(stderr, "flow %u at %.6f from %s: %s%s idx %lld time %llu%s\n", bad_id, f.time_s,
                                 f.src.c_str(), r.is_packet() ? "packet" : r.is_flow_start() ? "flow_start" : "flow_end",
                                 r.replayed ? " replayed" : "", static_cast<long long>(r.packet_index),
                                 static_cast<unsigned long long>(r.time_ns),
                                 r.is_flow_end() ? (" counts " + std::to_string(r.end_packets)).c_str() : "");
                }
        }
        EXPECT_EQ(bad, 0u) << bad << " of " << lives << " flows with missing or extra packet indexes:" << example;
        EXPECT_EQ(unstarted, 0u) << "distinct records of flow lives that never had a flow_start";
        EXPECT_GT(ended, 1000u);
        std::printf("HA: %zu flow lives checked (%zu ended): indexes 0..n-1 and one flow_end counting n in all but %zu; "
                    "%llu copies dropped by the de-duplication; %llu watermarks, %llu back, %llu distinct packets behind "
                    "one\n",
                    lives, ended, bad, static_cast<unsigned long long>(view.duplicates),
                    static_cast<unsigned long long>(watermarks), static_cast<unsigned long long>(watermark_back),
                    static_cast<unsigned long long>(behind_watermark));
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
        // Its de-duplication kept exactly the records this test's reading of the rule kept.
        EXPECT_EQ(number_after(summary, "packets          "), unique_packets) << summary;
        // "replay           R replayed records, D duplicates dropped, G index gaps (...)"
        EXPECT_EQ(number_after(summary, "replayed records, "), view.duplicates) << "D: " << summary;
        EXPECT_EQ(number_after(summary, "duplicates dropped, "), 0u) << "G: " << summary;
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
