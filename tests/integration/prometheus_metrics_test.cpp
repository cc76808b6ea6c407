// Prometheus /metrics (metrics.listen) on the live meter in a namespace pair, as a scraper and
// an attacker see it:
//
//   sender netns: tcpreplay ──veth──> meter netns: angel-ctld (capd, procd, netd)
//                                     netd serves 127.0.0.1:9464/metrics <── curl, hostile clients
//
// While traffic flows, a slow client (one byte every 300 ms, reconnecting whenever it is
// dropped) and a flooding one (1 MB of garbage per connection, again and again) stay on the
// endpoint; curl scrapes every 200 ms. Asserted:
//   - every scrape is 200, text/plain; version=0.0.4, answered within 1 s;
//   - export is not delayed: once tcpreplay has ended, within 2 s netd has sent every record
//     procd queued, and at the stop the sink holds exactly records_sent records with no sequence gap;
//   - promtool check metrics accepts the page and `angelctl stats --prometheus` (exit 0, no output);
//   - once traffic has stopped, every value of `angelctl stats --json` equals its metric exactly
//     (angel_<group>_<name>[_total], angel_ring_*{ring}, angel_ipfix_sequence), every sample on the
//     page is accounted for, the stage states, restarts, role and flows equal `angelctl status --json`,
//     and `angelctl stats --prometheus` is the same page but for the scrape counter it has just grown;
//   - scrapes served and refused are counted exactly (every curl 200 served; every hostile
//     connection, a 404 and a 405 refused).
// Then: a bad metrics.listen is refused by -t with exit 78 and one line; an address not on the
// host and a port already taken are refused at start with exit 78 and one line, nothing started.
// Everything (namespaces, processes, threads, temp dirs, segments) goes at the end, on failure too.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "meter_harness.hpp"

namespace angel::itest {
namespace {

using Clock = std::chrono::steady_clock;
using netns::NetnsLab;

// A privileged port: root (angel-ctld) binds it, unprivileged angel-netd serves it.
constexpr unsigned kMetricsPort = 80;

// A TCP connection to 127.0.0.1:port inside network namespace ns: the socket is made by a
// thread that entered ns (setns moves only the calling thread), and keeps ns once made.
int connect_in_netns(const std::string& ns, unsigned port) {
    int fd = -1;
    std::thread t([&] {
        const int nsfd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
        if (nsfd < 0) return;
        const bool in = setns(nsfd, CLONE_NEWNET) == 0;
        close(nsfd);
        if (!in) return;
        const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(port));
        if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) fd = s;
        else close(s);
    });
    t.join();
    return fd;
}

// Clients that hold the endpoint until stopped (at most 90 s): each connection they made counts.
class HostileClients {
public:
    HostileClients(const std::string& ns, unsigned port) {
        slow_ = std::thread([this, ns, port] {
            const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
            const auto end = Clock::now() + std::chrono::seconds(90);
            while (!stop_ && Clock::now() < end) {
                const int fd = connect_in_netns(ns, port);
                if (fd < 0) break;
                ++connections_;
                // One byte every 300 ms: never a whole request before the server's deadline.
                for (size_t i = 0; !stop_ && i < req.size(); ++i) {
                    if (send(fd, &req[i], 1, MSG_NOSIGNAL) != 1) break;
                    for (int w = 0; w < 30 && !stop_; ++w) std::this_thread::sleep_for(std::chrono::milliseconds(10));
                }
                close(fd);
            }
        });
        flood_ = std::thread([this, ns, port] {
            const std::string junk(1 << 20, 'Z');
            for (int round = 0; !stop_ && round < 200; ++round) {
                const int fd = connect_in_netns(ns, port);
                if (fd < 0) break;
                ++connections_;
                size_t sent = 0;
                while (!stop_ && sent < junk.size()) {
                    const ssize_t n = send(fd, junk.data() + sent, junk.size() - sent, MSG_NOSIGNAL);
                    if (n <= 0) break;  // the server refused the request and reset the connection
                    sent += static_cast<size_t>(n);
                }
                flood_bytes_ += sent;
                close(fd);
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        });
    }
    ~HostileClients() { stop(); }
    void stop() {
        stop_ = true;
        if (slow_.joinable()) slow_.join();
        if (flood_.joinable()) flood_.join();
    }
    uint64_t connections() const { return connections_; }
    uint64_t flood_bytes() const { return flood_bytes_; }

private:
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> connections_{0}, flood_bytes_{0};
    std::thread slow_, flood_;
};

struct Scrape {
    int code = 0;
    double seconds = 0;
    std::string headers, body, error;
};

// curl inside the meter namespace.
Scrape curl(const NetnsMeter& m, const std::string& path, const std::string& method = "GET") {
    const fs::path hdr = m.dir / "curl.headers", body = m.dir / "curl.body";
    fs::remove(hdr);
    fs::remove(body);
    const auto r = netns::run(NetnsLab::in(m.lab.meter(), {"curl", "-sS", "-m", "5", "-X", method, "-D", hdr.string(),
                                                            "-o", body.string(), "-w", "%{http_code} %{time_total}",
                                                            "http://127.0.0.1:" + std::to_string(kMetricsPort) + path}),
                              10);
    Scrape s;
    std::istringstream in(r.out);
    in >> s.code >> s.seconds;
    s.headers = read_file(hdr);
    s.body = read_file(body);
    if (!r.ok()) s.error = r.describe() + r.err;
    return s;
}

// Every numeric leaf of a JSON document, by its dotted path ("capd.packets", "rings.packet.fill").
class JsonLeaves {
public:
    explicit JsonLeaves(const std::string& t) : t_(t) { value(""); }
    std::map<std::string, uint64_t> leaves;
    bool ok = true;

private:
    void ws() {
        while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
    }
    std::string str() {
        std::string s;
        ++i_;  // "
        while (i_ < t_.size() && t_[i_] != '"') {
            if (t_[i_] == '\\') ++i_;
            s += t_[i_++];
        }
        ++i_;
        return s;
    }
    void value(const std::string& path) {
        ws();
        if (i_ >= t_.size()) {
            ok = false;
            return;
        }
        const char c = t_[i_];
        if (c == '{') {
            ++i_;
            ws();
            if (t_[i_] == '}') {
                ++i_;
                return;
            }
            while (ok && i_ < t_.size()) {
                ws();
                const std::string k = str();
                ws();
                if (t_[i_++] != ':') ok = false;
                value(path.empty() ? k : path + "." + k);
                ws();
                if (t_[i_] == ',') ++i_;
                else if (t_[i_] == '}') {
                    ++i_;
                    return;
                } else ok = false;
            }
        } else if (c == '"') {
            str();
        } else if (c >= '0' && c <= '9') {
            size_t n = 0;
            leaves[path] = std::stoull(t_.substr(i_), &n);
            i_ += n;
            if (i_ < t_.size() && (t_[i_] == '.' || t_[i_] == 'e')) ok = false;  // stats are integers
        } else {
            while (i_ < t_.size() && std::isalpha(static_cast<unsigned char>(t_[i_]))) ++i_;  // true/false/null
        }
    }
    const std::string& t_;
    size_t i_ = 0;
};

// "name{labels}" -> value of every sample of a page; the comment lines are not samples.
std::map<std::string, std::string> samples_of(const std::string& page) {
    std::map<std::string, std::string> out;
    std::istringstream in(page);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        const size_t sp = line.rfind(' ');
        out[line.substr(0, sp)] = line.substr(sp + 1);
    }
    return out;
}

// The metric a value of angelctl stats --json is exposed as (the naming rule of docs/operations.md).
std::string metric_for(const std::string& path, const std::string& inst) {
    const std::string il = "angel_instance=\"" + inst + "\"";
    if (path == "ipfix_sequence") return "angel_ipfix_sequence{" + il + "}";
    const size_t dot = path.find('.');
    const std::string group = path.substr(0, dot), key = path.substr(dot + 1);
    if (group == "rings") {
        const size_t d2 = key.find('.');
        const std::string ring = key.substr(0, d2), k = key.substr(d2 + 1);
        const bool counter = k == "produced" || k == "consumed" || k == "dropped";
        return "angel_ring_" + k + (counter ? "_total" : "") + "{" + il + ",ring=\"" + ring + "\"}";
    }
    const bool counter = group == "capd" || group == "procd" || group == "netd" || group == "ctld";
    return "angel_" + group + "_" + key + (counter ? "_total" : "") + "{" + il + "}";
}

CommandResult promtool_check(const fs::path& file) {
    return run_command({"sh", "-c", "promtool check metrics < \"$0\"", file.string()}, Millis(30000));
}

int exit_code(const CommandResult& r) { return r.status.exited() ? r.status.code() : -1; }

TEST(PrometheusMetrics, LiveScrapesMatchStatsAndSurviveHostileClients) {
    if (const std::string why = live_skip_reason({"tcpreplay", "promtool", "curl"}, true); !why.empty()) GTEST_SKIP() << why;
    NetnsMeter m("pm", "prom");
    // No watermarks and a GC once a minute: once traffic stops nothing moves a counter.
    m.write_config(m.config(4739, "127.0.0.1",
                            "metrics = { listen = \"127.0.0.1:" + std::to_string(kMetricsPort) + "\"; };\n"
                            "export = { watermark_ms = 0; };\nflow = { gc_interval = 60; };\n"));
    ASSERT_TRUE(m.start_sink(4739));
    ASSERT_TRUE(m.start_meter());
    ASSERT_TRUE(wait_until_s([&] { return curl(m, "/metrics").code == 200; }, 10)) << m.log();
    uint64_t served = 1;

    // Traffic with the hostile clients on the endpoint and a scrape every 200 ms.
    HostileClients hostile(m.lab.meter(), kMetricsPort);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    m.start_traffic(40, "--pps=20000");  // 111,720 frames, about 5.6 s
    double slowest = 0;
    unsigned scrapes_during = 0;
    while (m.sender->running() && scrapes_during < 100) {
        const Scrape s = curl(m, "/metrics");
        ASSERT_EQ(s.code, 200) << s.error << s.headers;
        ++served;
        ++scrapes_during;
        slowest = std::max(slowest, s.seconds);
        EXPECT_NE(s.headers.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos) << s.headers;
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ASSERT_TRUE(m.sender->wait(60)) << "tcpreplay did not finish";
    const auto traffic_end = Clock::now();
    // Export is not held up: everything procd queued has left the record ring (netd releases a
    // record once the message that carries it is sent) within 2 s.
    bool drained = false;
    while (!drained && Clock::now() < traffic_end + std::chrono::seconds(2)) {
        const JsonLeaves j(m.angelctl({"stats", "--json"}).out);
        drained = j.ok && j.leaves.at("rings.record.consumed") == j.leaves.at("rings.record.produced");
        if (!drained) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double drain_s = std::chrono::duration<double>(Clock::now() - traffic_end).count();
    EXPECT_TRUE(drained) << "netd had not sent what procd queued 2 s after the traffic ended";
    hostile.stop();
    std::printf("[ prom    ] %u scrapes during traffic, slowest %.3f s; hostile connections %llu (%.1f MB of garbage); "
                "export drained %.3f s after the traffic\n",
                scrapes_during, slowest, static_cast<unsigned long long>(hostile.connections()),
                double(hostile.flood_bytes()) / 1e6, drain_s);
    EXPECT_GT(scrapes_during, 5u);
    EXPECT_LT(slowest, 1.0) << "a scrape waited behind the hostile clients";
    EXPECT_GT(hostile.connections(), 4u);

    // A 404 and a 405, counted as refused.
    EXPECT_EQ(curl(m, "/other").code, 404);
    EXPECT_EQ(curl(m, "/metrics", "POST").code, 405);
    const uint64_t refused = hostile.connections() + 2;
    ASSERT_TRUE(wait_until_s(
        [&] {
            const JsonLeaves j(m.angelctl({"stats", "--json"}).out);
            return j.leaves.count("netd.metrics_refused") && j.leaves.at("netd.metrics_refused") == refused;
        },
        15))
        << "netd.metrics_refused never reached " << refused << ": " << m.angelctl({"stats"}).out;

    // Exact: the page rendered after a stats reading holds its values, while nothing moves.
    bool compared = false;
    for (int attempt = 0; attempt < 5 && !compared; ++attempt) {
        const std::string j1 = m.angelctl({"stats", "--json"}).out;
        const std::string st = m.angelctl({"status", "--json"}).out;
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // ctld renders every second
        const Scrape s = curl(m, "/metrics");
        ASSERT_EQ(s.code, 200) << s.error;
        ++served;
        const CommandResult prom = m.angelctl({"stats", "--prometheus"});
        ASSERT_TRUE(prom.ok()) << prom.describe();
        const std::string j2 = m.angelctl({"stats", "--json"}).out;
        JsonLeaves a(j1), b(j2);
        ASSERT_TRUE(a.ok && b.ok) << j1 << j2;
        // Nothing moved but the scrape counter, by this one scrape.
        auto b_less_one = b.leaves;
        b_less_one["netd.metrics_scrapes"] -= 1;
        if (a.leaves != b_less_one) continue;
        compared = true;
        EXPECT_EQ(a.leaves.at("netd.metrics_scrapes"), served - 1);
        EXPECT_EQ(a.leaves.at("netd.metrics_refused"), refused);

        const auto page = samples_of(s.body);
        std::set<std::string> accounted;
        for (const auto& [path, v] : a.leaves) {
            const std::string metric = metric_for(path, m.scratch.instance);
            const auto it = page.find(metric);
            ASSERT_NE(it, page.end()) << path << " has no metric " << metric;
            EXPECT_EQ(it->second, std::to_string(v)) << metric;
            accounted.insert(metric);
        }
        // What status shows: stage states and restarts, role, flows, generation.
        const std::string il = "angel_instance=\"" + m.scratch.instance + "\"";
        const StatusView sv = parse_status_json(st);
        ASSERT_EQ(sv.stages.size(), 3u) << st;
        for (const auto& [stage, view] : sv.stages) {
            for (const char* state : {"stopped", "starting", "running", "backoff", "finished", "crash-looping"}) {
                const std::string k = "angel_stage_state{" + il + ",stage=\"" + stage + "\",state=\"" + state + "\"}";
                EXPECT_EQ(page.count(k) ? page.at(k) : "absent", view.state == state ? "1" : "0") << k;
                accounted.insert(k);
            }
            const std::string r = "angel_stage_restarts_total{" + il + ",stage=\"" + stage + "\"}";
            EXPECT_EQ(page.count(r) ? page.at(r) : "absent", std::to_string(view.restarts)) << r;
            accounted.insert(r);
            const std::string cf = "angel_stage_consecutive_failures{" + il + ",stage=\"" + stage + "\"}";
            EXPECT_EQ(page.count(cf) ? page.at(cf) : "absent", json_field(st.substr(st.find("\"stage\":\"" + stage + "\"")),
                                                                           "consecutive_failures"))
                << cf;
            accounted.insert(cf);
        }
        const std::string role = json_field(st, "role");
        for (const char* r : {"backup", "master", "takeover"}) {
            const std::string k = "angel_ha_role{" + il + ",role=\"" + r + "\"}";
            EXPECT_EQ(page.count(k) ? page.at(k) : "absent", role == r ? "1" : "0") << k;
            accounted.insert(k);
        }
        const std::pair<const char*, std::string> single[] = {
            {"angel_ha_transitions_total", std::to_string(json_number_in(st, "ha", "transitions"))},
            {"angel_flows_live", std::to_string(json_number_in(st, "flows", "live"))},
            {"angel_flows_capacity", std::to_string(json_number_in(st, "flows", "capacity"))},
            {"angel_config_generation", json_field(st, "config_generation")},
            {"angel_stopping", "0"}};
        for (const auto& [name, want] : single) {
            const std::string k = std::string(name) + "{" + il + "}";
            EXPECT_EQ(page.count(k) ? page.at(k) : "absent", want) << k;
            accounted.insert(k);
        }
        for (const auto& [k, v] : page) EXPECT_TRUE(accounted.count(k)) << "a sample nothing accounts for: " << k << " " << v;
        EXPECT_EQ(accounted.size(), page.size());

        // angelctl stats --prometheus: the same page, its scrape counter one further.
        const std::string line = "angel_netd_metrics_scrapes_total{" + il + "} ";
        std::string expected = s.body;
        const size_t at = expected.find(line);
        ASSERT_NE(at, std::string::npos);
        const size_t nl = expected.find('\n', at);
        expected.replace(at + line.size(), nl - at - line.size(), std::to_string(served));
        EXPECT_EQ(prom.out, expected);

        // promtool on both.
        write_file(m.dir / "scrape.prom", s.body);
        write_file(m.dir / "angelctl.prom", prom.out);
        for (const char* f : {"scrape.prom", "angelctl.prom"}) {
            const CommandResult pt = promtool_check(m.dir / f);
            EXPECT_EQ(exit_code(pt), 0) << f << ": " << pt.out << pt.err;
            EXPECT_EQ(pt.out + pt.err, "") << f << ": promtool had something to say";
        }
        std::printf("[ prom    ] page: %zu bytes, %zu samples, all equal to angelctl stats/status; promtool: no remark\n",
                    s.body.size(), page.size());
    }
    EXPECT_TRUE(compared) << "the counters kept moving after the traffic stopped";

    // The stop, and the sink's account: nothing lost to the scrapers.
    auto C = m.stop_meter();
    ASSERT_FALSE(C.empty()) << m.log();
    EXPECT_EQ(C["send_errors"], 0u);
    EXPECT_EQ(read_lines(m.sink_out(0)).size(), C["records_sent"]);
    EXPECT_EQ(sink_sequence_gaps(read_file(m.sink_summary(0))), 0u);
}

TEST(PrometheusMetrics, BadListenAddressesExit78WithOneLine) {
    if (!fs::exists(binary("angel-ctld"))) GTEST_SKIP() << "no angel-ctld in " << bin_dir();
    TempDir tmp("angel-prom-conf");
    fs::permissions(tmp.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                    fs::perms::others_read | fs::perms::others_exec);
    const std::string inst = sanitize_test_name(unique_name("pm78"));
    ShmGuard shm(inst);
    const fs::path pcap = tmp / "empty.pcap";
    {
        std::ofstream out(pcap, std::ios::binary);
        put_pcap_header(out);
    }
    auto conf = [&](const std::string& listen) {
        const fs::path p = tmp / "m.conf";
        write_file(p, "instance = \"" + inst + "\";\nuser = \"nobody\";\nruntime_dir = \"" + (tmp / "run").string() +
                          "\";\ncapture = { interface = \"lo\"; };\nclassifier = { host = \"127.0.0.1\"; port = 4739; };\nmetrics = { listen = \"" + listen +
                          "\"; };\n");
        return p.string();
    };
    auto one_line = [](const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; };
    // -t: the syntax.
    CommandResult r = run_command({binary("angel-ctld").string(), "-t", "-c", conf("127.0.0.1:99999")}, Millis(10000));
    EXPECT_EQ(exit_code(r), 78) << r.out << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("metrics.listen \"127.0.0.1:99999\": the port must be 1 to 65535"), std::string::npos) << r.err;
    r = run_command({binary("angel-ctld").string(), "-t", "-v", "-c", conf("[::1]:9464")}, Millis(10000));
    EXPECT_EQ(exit_code(r), 0) << r.err;
    EXPECT_NE(r.out.find("metrics.listen = \"[::1]:9464\"\n"), std::string::npos) << r.out;
    // At start: an address this host does not have (TEST-NET-1, nothing is sent), and a port taken.
    r = run_command({binary("angel-ctld").string(), "-f", "-c", conf("192.0.2.1:9464"), "--replay", pcap.string()},
                    Millis(20000));
    EXPECT_EQ(exit_code(r), 78) << r.out << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("metrics.listen 192.0.2.1:9464: cannot listen: Cannot assign requested address (no such address on this host)"),
              std::string::npos)
        << r.err;
    const int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(busy, 1), 0);
    socklen_t len = sizeof a;
    getsockname(busy, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string taken = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    r = run_command({binary("angel-ctld").string(), "-f", "-c", conf(taken), "--replay", pcap.string()}, Millis(20000));
    close(busy);
    EXPECT_EQ(exit_code(r), 78) << r.out << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("metrics.listen " + taken + ": cannot listen: Address already in use"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(ShmGuard::path_of(inst))) << "a segment was made before the refusal";
}

// The scrape configuration docs/operations.md shows is one Prometheus accepts.
TEST(PrometheusMetrics, ScrapeConfigOfTheDocsIsValid) {
    if (!have_program("promtool")) GTEST_SKIP() << "promtool is not installed (package prometheus)";
    const std::string doc = read_file(source_dir() / "docs/operations.md");
    const size_t at = doc.find("```\nscrape_configs:");
    ASSERT_NE(at, std::string::npos) << "no scrape configuration in docs/operations.md";
    const size_t end = doc.find("```", at + 4);
    ASSERT_NE(end, std::string::npos);
    TempDir tmp("angel-prom-yml");
    write_file(tmp / "prometheus.yml", doc.substr(at + 4, end - at - 4));
    const CommandResult r = run_command({"promtool", "check", "config", (tmp / "prometheus.yml").string()}, Millis(30000));
    EXPECT_EQ(exit_code(r), 0) << r.out << r.err;
    EXPECT_NE(r.out.find("SUCCESS"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace angel::itest
