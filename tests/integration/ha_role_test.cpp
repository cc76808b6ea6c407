// The role as an operator drives and reads it (issue 10, docs/ha.md), without a CARP daemon:
// ha.mode file with the state file written by tools/ha/ha-state-write (what the ucarp and
// keepalived scripts call), on a live meter in a namespace pair:
//   - `angel-ctld -t`: carp refused with exit 78 (EX_CONFIG) naming vip and file; a mode other
//     than none without flow.id_key refused with the reason; a good pair config says which
//     meter_id and id_key both meters must share;
//   - no state file: backup; MASTER: takeover at once, master after ha.takeover_ms; BACKUP,
//     FAULT, an empty or removed file: backup, each seen within a poll (inotify: at once);
//   - `angelctl role` and `status` (text and JSON) agree, with exact transition counts;
//   - reload moves ha.state_file and ha.takeover_ms live; the role follows the new file;
//   - more than 6 transitions in a minute: one warning in the log;
//   - tools/ha's ucarp-state-up/-down and keepalived-notify, called as the daemons call them.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>

#include "meter_harness.hpp"

namespace angel::itest {
namespace {

constexpr const char* kKey = "7f3a9c0e11d24b6a8e5f0c9d2b4a6e81";

fs::path state_writer() { return source_dir() / "tools" / "ha" / "ha-state-write"; }

void write_state(const fs::path& file, const std::string& words) {
    const netns::CommandResult r = netns::run({"sh", state_writer().string(), file.string(), words}, 10);
    ASSERT_TRUE(r.ok()) << r.describe();
}

std::string role_of(const fs::path& sock) { return json_field(angelctl(sock, {"role", "--json"}).out, "role"); }
uint64_t transitions_of(const fs::path& sock) {
    return std::strtoull(json_field(angelctl(sock, {"role", "--json"}).out, "transitions").c_str(), nullptr, 10);
}

// Seconds until the role is `want` (or -1 after timeout_s).
double seconds_until_role(const fs::path& sock, const std::string& want, double timeout_s) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = wait_until_s([&] { return role_of(sock) == want; }, timeout_s, 0.01);
    return ok ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() : -1;
}

TEST(HaConfigCheck, CarpRefusedAndWhatAPairNeeds) {
    ASSERT_TRUE(fs::exists(binary("angel-ctld"))) << "build angel-ctld first";
    TempDir dir("angel-ha-t");
    auto check = [&](const std::string& text) {
        write_file(dir / "m.conf", "instance = \"hacheck\";\nruntime_dir = \"" + (dir / "run").string() +
                                       "\";\nclassifier = { host = \"127.0.0.1\"; };\ncapture = { interface = \"lo\"; };\n" +
                                       text);
        return run_command({binary("angel-ctld").string(), "-t", "-c", (dir / "m.conf").string()}, Millis(10000));
    };
    const std::string key = std::string("flow = { id_key = \"") + kKey + "\"; };\n";
    CommandResult r = check(key + "ha = { mode = \"carp\"; };\n");
    EXPECT_EQ(r.status.code(), 78) << r.describe();
    EXPECT_NE(r.err.find("\"vip\""), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("\"file\""), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("configuration OK"), std::string::npos);

    r = check("ha = { mode = \"file\"; state_file = \"/run/angel/ha.state\"; };\n");
    EXPECT_EQ(r.status.code(), 78) << r.describe();
    EXPECT_NE(r.err.find("needs flow.id_key"), std::string::npos) << r.err;

    r = check(key + "ha = { mode = \"vip\"; };\n");
    EXPECT_EQ(r.status.code(), 78) << r.describe();
    EXPECT_NE(r.err.find("needs ha.vip"), std::string::npos) << r.err;

    r = check(key + "database = { meter_id = \"pop1\"; };\nha = { mode = \"vip\"; vip = \"2001:db8::50\"; };\n");
    EXPECT_EQ(r.status.code(), 0) << r.describe();
    const std::string all = r.out + r.err;
    EXPECT_NE(all.find("both meters of the pair must use database.meter_id \"pop1\" and the same flow.id_key"),
              std::string::npos)
        << all;
}

TEST(HaRole, FollowsTheStateFileAndReloads) {
    if (const std::string why = live_skip_reason({}, false); !why.empty()) GTEST_SKIP() << why;
    NetnsMeter t("har", "har");
    const fs::path state = t.dir / "carp" / "ha.state";
    const fs::path state2 = t.dir / "carp2" / "ha.state";
    fs::create_directories(state.parent_path());
    fs::create_directories(state2.parent_path());
    auto conf = [&](const fs::path& file, int takeover_ms) {
        t.write_config(t.config(47391, "127.0.0.1",
                                std::string("flow = { id_key = \"") + kKey + "\"; };\nha = { mode = \"file\"; state_file = \"" +
                                    file.string() + "\"; poll_ms = 200; takeover_ms = " + std::to_string(takeover_ms) +
                                    "; };\n"));
    };
    conf(state, 500);
    ASSERT_TRUE(t.start_meter());
    EXPECT_NE(t.log().find("HA (file): starting as backup"), std::string::npos) << t.log();
    EXPECT_EQ(role_of(t.sock), "backup");
    EXPECT_EQ(transitions_of(t.sock), 0u);

    // MASTER: takeover at once (templates), master after the 500 ms hold, not before.
    write_state(state, "MASTER INSTANCE angel 150");
    EXPECT_GE(seconds_until_role(t.sock, "takeover", 1.0), 0) << t.log();
    const double to_master = seconds_until_role(t.sock, "master", 3.0);
    EXPECT_GE(to_master, 0.3) << "the takeover hold was cut short";
    EXPECT_LE(to_master, 1.0);
    EXPECT_EQ(transitions_of(t.sock), 1u) << "takeover -> master is no transition";

    // status agrees, in text and JSON.
    const std::string text = angelctl(t.sock, {"status"}).out;
    EXPECT_NE(text.find("role master"), std::string::npos) << text;
    EXPECT_NE(text.find("ha file: master for"), std::string::npos) << text;
    const std::string json = angelctl(t.sock, {"status", "--json"}).out;
    EXPECT_EQ(json_field(json, "role"), "master") << json;
    EXPECT_EQ(json_number_in(json, "ha", "transitions"), 1u) << json;

    // Every word but MASTER, and no file at all, is backup, seen at once (inotify), well within a poll.
    for (const std::string w : {"BACKUP INSTANCE angel 150", "FAULT", "master", "MASTERFUL", ""}) {
        write_state(state, "MASTER");
        ASSERT_GE(seconds_until_role(t.sock, "master", 2.0), 0) << w;
        write_state(state, w);
        const double s = seconds_until_role(t.sock, "backup", 2.0);
        EXPECT_GE(s, 0) << "\"" << w << "\" kept the meter master";
        EXPECT_LE(s, 0.25) << "\"" << w << "\"";
    }
    write_state(state, "MASTER");
    ASSERT_GE(seconds_until_role(t.sock, "master", 2.0), 0);
    fs::remove(state);
    EXPECT_GE(seconds_until_role(t.sock, "backup", 1.0), 0) << "a removed state file is backup";
    EXPECT_EQ(transitions_of(t.sock), 12u);  // 1 + 5 x 2 + 1 up/down pairs of the loop and the removal

    // More than 6 transitions in the last minute: the log says so, once.
    EXPECT_EQ(count_of(t.log(), "HA: the role changed"), 1u) << t.log();

    // Reload: another file (MASTER already) and no hold: master without a restart of anything.
    write_state(state2, "MASTER");
    conf(state2, 0);
    const netns::CommandResult rl = angelctl(t.sock, {"reload"});
    ASSERT_TRUE(rl.ok()) << rl.describe();
    EXPECT_GE(seconds_until_role(t.sock, "master", 2.0), 0) << t.log();
    write_state(state, "MASTER");  // the old file means nothing now
    write_state(state2, "BACKUP");
    EXPECT_GE(seconds_until_role(t.sock, "backup", 1.0), 0);
    sleep_s(0.3);
    EXPECT_EQ(role_of(t.sock), "backup");

    // The shipped scripts, called as ucarp (IFACE VIP XPARAM) and keepalived (notify: the
    // script's own argument, then TYPE NAME STATE PRIORITY) call them.
    auto script = [&](const char* name, std::vector<std::string> args) {
        args.insert(args.begin(), (source_dir() / "tools" / "ha" / name).string());
        const netns::CommandResult r = netns::run(args, 10);
        EXPECT_TRUE(r.ok()) << name << ": " << r.describe();
    };
    script("ucarp-state-up", {"cl0", "10.77.0.50", state2.string()});
    EXPECT_GE(seconds_until_role(t.sock, "master", 1.0), 0) << read_file(state2);
    EXPECT_EQ(read_file(state2), "MASTER cl0 10.77.0.50\n");
    script("ucarp-state-down", {"cl0", "10.77.0.50", state2.string()});
    EXPECT_GE(seconds_until_role(t.sock, "backup", 1.0), 0) << read_file(state2);
    script("keepalived-notify", {state2.string(), "INSTANCE", "angel", "MASTER", "150"});
    EXPECT_GE(seconds_until_role(t.sock, "master", 1.0), 0) << read_file(state2);
    script("keepalived-notify", {state2.string(), "INSTANCE", "angel", "FAULT", "0"});
    EXPECT_GE(seconds_until_role(t.sock, "backup", 1.0), 0) << read_file(state2);
    // Called wrongly (no state file argument): refused with EX_USAGE, nothing written.
    const netns::CommandResult bad = netns::run({(source_dir() / "tools" / "ha" / "ucarp-state-up").string(), "cl0", "10.77.0.50"}, 10);
    EXPECT_TRUE(WIFEXITED(bad.status) && WEXITSTATUS(bad.status) == 64) << bad.describe();
    EXPECT_EQ(role_of(t.sock), "backup");
    const auto counters = t.stop_meter();
    EXPECT_FALSE(counters.empty()) << t.log();
}

}  // namespace
}  // namespace angel::itest

namespace angel::itest {
namespace {

// A record ring too small for ha.replay_ms (docs/ha.md, sizing): the backup's window is cut
// short (netd.window_trimmed), and the meter that becomes master says so to the classifier
// first, as a loss record of cause master_gap counting the packet records it no longer has,
// before it replays what it kept (flagged replayed).
TEST(HaRole, AWindowTheRingCannotHoldIsAMasterGapLossRecord) {
    if (const std::string why = live_skip_reason({"tcpreplay"}, true); !why.empty()) GTEST_SKIP() << why;
    NetnsMeter t("harg", "harg");
    const fs::path state = t.dir / "carp" / "ha.state";
    fs::create_directories(state.parent_path());
    const unsigned port = 47392;
    // 64 KiB = 1024 records, of which netd keeps at most 768; a 60 s window never ages here.
    t.write_config(t.config(port, "127.0.0.1",
                            std::string("flow = { id_key = \"") + kKey + "\"; };\nha = { mode = \"file\"; state_file = \"" +
                                state.string() + "\"; takeover_ms = 0; replay_ms = 60000; };\n"
                                "shm = { record_ring = \"64K\"; };\n"));
    ASSERT_TRUE(t.start_sink(port));
    ASSERT_TRUE(t.start_meter());
    EXPECT_EQ(role_of(t.sock), "backup");
    t.start_traffic(2, "--pps=2000");  // about 5,500 packets
    ASSERT_TRUE(t.sender->wait(30));
    sleep_s(0.5);
    const std::string before = angelctl(t.sock, {"stats"}).out;
    const uint64_t trimmed = number_after(before, "netd.window_trimmed ").value_or(0);
    EXPECT_GT(trimmed, 3000u) << before;
    write_state(state, "MASTER");
    ASSERT_GE(seconds_until_role(t.sock, "master", 3.0), 0) << t.log();
    EXPECT_TRUE(wait_until_s([&] { return t.log().find("the replay window lost") != std::string::npos; }, 5)) << t.log();
    sleep_s(1.0);
    const std::string after = angelctl(t.sock, {"stats"}).out;
    const uint64_t replayed = number_after(after, "netd.replayed ").value_or(0);
    const auto counters = t.stop_meter();
    ASSERT_FALSE(counters.empty()) << t.log();
    // The sink's JSON: one master_gap loss record, then the replay.
    const std::string out = read_file(t.sink_out(0));
    const std::string key = "{\"type\":\"loss\",\"cause\":\"master_gap\"";
    const size_t at = out.find(key);
    ASSERT_NE(at, std::string::npos) << out.substr(0, 2000);
    EXPECT_EQ(out.find(key, at + 1), std::string::npos) << "one master_gap record per promotion";
    const std::string line = out.substr(at, out.find('\n', at) - at);
    const uint64_t lost = number_after(line, "\"packets\":").value_or(0);
    // Every record trimmed is a packet record or a flow record: the packets lost are at most
    // that, and most of it (the trace has about 2 flow records per 40 packets).
    EXPECT_GT(lost, 0u) << line;
    EXPECT_LE(lost, trimmed) << line;
    EXPECT_GE(lost * 10, trimmed * 8) << line;
    EXPECT_GT(number_after(line, "\"last_ns\":").value_or(0), number_after(line, "\"first_ns\":").value_or(UINT64_MAX)) << line;
    // The replay follows it, flagged: what the window still held (at most 768 records).
    EXPECT_GT(replayed, 0u) << after;
    EXPECT_LE(replayed, 768u) << after;
    const size_t first_replayed = out.find("\"replayed\":true");
    EXPECT_GT(first_replayed, at) << "the loss record comes before the replay";
}

}  // namespace
}  // namespace angel::itest
