// Configuration loader: defaults, a full file, and every kind of bad input, each refused with
// the exact "file:line:" of the offending setting and a message that names the key.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/config/config.hpp"
#include "ctld/reload_plan.hpp"

namespace angel {
namespace {

class ConfigTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/angel-config-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        std::filesystem::permissions(dir_, std::filesystem::perms::owner_all, ec);
        std::filesystem::remove_all(dir_, ec);
    }

    std::string write(const std::string& name, const std::string& text) {
        const std::string path = dir_ + "/" + name;
        std::ofstream(path) << text;
        return path;
    }

    // Loads text from a file and returns the error message ("" when it loaded).
    std::string error_of(const std::string& text, std::string* path_out = nullptr) {
        const std::string path = write("bad.conf", text);
        if (path_out) *path_out = path;
        try {
            load_config(path);
        } catch (const ConfigError& e) {
            return e.what();
        }
        return "";
    }

    // Asserts that text is refused at line `line` with exactly `message`.
    void expect_refused(const std::string& text, int line, const std::string& message) {
        std::string path;
        const std::string err = error_of(text, &path);
        EXPECT_EQ(err, path + ":" + std::to_string(line) + ": " + message) << "config:\n" << text;
    }

    std::string dir_;
};

TEST_F(ConfigTest, DefaultsMatchTheDesignTable) {
    const Config c = default_config();
    EXPECT_EQ(c.instance, "default");
    EXPECT_EQ(c.user, "angel");
    EXPECT_EQ(c.runtime_dir, "/var/run/angel");
    EXPECT_TRUE(c.capture.interfaces.empty());
    EXPECT_EQ(c.capture.snaplen, 128);
    EXPECT_EQ(c.capture.buffer_size, 32 * 1024 * 1024);
    EXPECT_TRUE(c.capture.promiscuous);
    EXPECT_EQ(c.classifier.host, "");
    EXPECT_EQ(c.classifier.port, 4739);
    EXPECT_EQ(c.flow.timeout, 60);
    EXPECT_EQ(c.flow.tcp_linger, 2);
    EXPECT_EQ(c.flow.max_flows, 1000000);
    EXPECT_EQ(c.flow.gc_interval, 1);
    EXPECT_EQ(c.flow.id_key, "");
    EXPECT_TRUE(c.customers.networks.empty());
    EXPECT_EQ(c.export_.mtu, 1500);
    EXPECT_EQ(c.export_.flush_ms, 10);
    EXPECT_EQ(c.export_.template_refresh, 30);
    EXPECT_EQ(c.export_.domain_id, 0u);
    EXPECT_EQ(c.database.conninfo, "");
    EXPECT_EQ(c.database.meter_id, "default");
    EXPECT_EQ(c.database.poll_interval, 60);
    EXPECT_TRUE(c.database.history);
    EXPECT_EQ(c.database.stop_drain_ms, 5000);
    EXPECT_EQ(c.ha.mode, "none");
    EXPECT_EQ(c.ha.poll_ms, 200);
    EXPECT_EQ(c.ha.takeover_ms, 2000);
    EXPECT_EQ(c.ha.replay_ms, 6000);
    EXPECT_TRUE(c.ha.vip.empty());
    EXPECT_TRUE(c.ha.state_file.empty());
    EXPECT_EQ(c.shm.packet_ring, 64u << 20);
    EXPECT_EQ(c.shm.record_ring, 16u << 20);
    EXPECT_EQ(c.shm.event_ring, 8u << 20);
    EXPECT_EQ(c.supervisor.hang_timeout, 5);
}

TEST_F(ConfigTest, EmptyTextGivesDefaultsAndMeterIdFollowsInstance) {
    EXPECT_EQ(describe(parse_config_string("", "empty")), describe(default_config()));
    const Config c = parse_config_string("instance = \"edge-1\";", "x");
    EXPECT_EQ(c.database.meter_id, "edge-1");
    EXPECT_EQ(c.source_file, "x");
}

TEST_F(ConfigTest, FullValidFile) {
    const std::string path = write("full.conf", R"(# every key
instance = "pop3.a";
user = "flowmeter";
runtime_dir = "/run/angel";
capture = {
  interface = ["ix0", "ix1"];
  snaplen = 256;
  buffer_size = "64M";
  promiscuous = false;
};
classifier = { host = "classifier.example.net"; port = 4740; };
flow = {
  timeout = 120; tcp_linger = 0; max_flows = 2000000; gc_interval = 2;
  id_key = "00112233445566778899AABBCCDDEEFF";
};
customers = { networks = ( "192.0.2.0/24", "2001:db8::/32", "198.51.100.7" ); };
export = { mtu = 9000; flush_ms = 5; template_refresh = 60; domain_id = 4294967295L; };
database = { conninfo = "host=/tmp dbname=angel"; meter_id = "meter-a";
             poll_interval = 30; history = false; stop_drain_ms = 20000; };
ha = { mode = "file"; state_file = "/run/angel/carp.state"; poll_ms = 250; takeover_ms = 500; };
shm = { packet_ring = 134217728; record_ring = "32M"; event_ring = 4294967296L; };
supervisor = { hang_timeout = 10; };
)");
    const Config c = load_config(path);
    EXPECT_EQ(c.source_file, path);
    EXPECT_EQ(c.instance, "pop3.a");
    EXPECT_EQ(c.user, "flowmeter");
    EXPECT_EQ(c.runtime_dir, "/run/angel");
    EXPECT_EQ(c.capture.interfaces, (std::vector<std::string>{"ix0", "ix1"}));
    EXPECT_EQ(c.capture.snaplen, 256);
    EXPECT_EQ(c.capture.buffer_size, 64 << 20);
    EXPECT_FALSE(c.capture.promiscuous);
    EXPECT_EQ(c.classifier.host, "classifier.example.net");
    EXPECT_EQ(c.classifier.port, 4740);
    EXPECT_EQ(c.flow.timeout, 120);
    EXPECT_EQ(c.flow.tcp_linger, 0);
    EXPECT_EQ(c.flow.max_flows, 2000000);
    EXPECT_EQ(c.flow.gc_interval, 2);
    EXPECT_EQ(c.flow.id_key, "00112233445566778899aabbccddeeff");
    ASSERT_EQ(c.customers.networks.size(), 3u);
    EXPECT_EQ(format_cidr(c.customers.networks[0]), "192.0.2.0/24");
    EXPECT_EQ(c.customers.networks[0].ip_version, 4);
    EXPECT_EQ(c.customers.networks[0].prefix_len, 24);
    EXPECT_EQ(c.customers.networks[0].addr[0], 192);
    EXPECT_EQ(c.customers.networks[0].addr[4], 0);
    EXPECT_EQ(format_cidr(c.customers.networks[1]), "2001:db8::/32");
    EXPECT_EQ(c.customers.networks[1].ip_version, 6);
    EXPECT_EQ(c.customers.networks[1].addr[1], 0x01);
    EXPECT_EQ(format_cidr(c.customers.networks[2]), "198.51.100.7/32");
    EXPECT_EQ(c.export_.mtu, 9000);
    EXPECT_EQ(c.export_.flush_ms, 5);
    EXPECT_EQ(c.export_.template_refresh, 60);
    EXPECT_EQ(c.export_.domain_id, 4294967295u);
    EXPECT_EQ(c.database.conninfo, "host=/tmp dbname=angel");
    EXPECT_EQ(c.database.meter_id, "meter-a");
    EXPECT_EQ(c.database.poll_interval, 30);
    EXPECT_FALSE(c.database.history);
    EXPECT_EQ(c.database.stop_drain_ms, 20000);
    EXPECT_EQ(c.ha.mode, "file");
    EXPECT_EQ(c.ha.poll_ms, 250);
    EXPECT_EQ(c.ha.state_file, "/run/angel/carp.state");
    EXPECT_EQ(c.ha.takeover_ms, 500);
    EXPECT_EQ(c.shm.packet_ring, 128u << 20);
    EXPECT_EQ(c.shm.record_ring, 32u << 20);
    EXPECT_EQ(c.shm.event_ring, 4ull << 30);
    EXPECT_EQ(c.supervisor.hang_timeout, 10);
}

TEST_F(ConfigTest, ShippedSampleLoads) {
    Config c = load_config(std::string(ANGEL_SOURCE_DIR) + "/docs/flowmeter.conf.sample");
    EXPECT_TRUE(missing_required(c, false).empty());
    // The sample claims to show every default: keep it honest.
    c.capture.interfaces.clear();
    c.classifier.host.clear();
    EXPECT_EQ(describe(c), describe(default_config()));
}

TEST_F(ConfigTest, MinimalReplayConfigNeedsNothingElse) {
    const Config c = parse_config_string(
        "instance = \"x\"; classifier = { host = \"127.0.0.1\"; port = 47390; };", "min");
    EXPECT_TRUE(missing_required(c, true).empty());
    EXPECT_EQ(missing_required(c, false), std::vector<std::string>{"capture.interface"});
    EXPECT_EQ(missing_required(default_config(), false),
              (std::vector<std::string>{"capture.interface", "classifier.host"}));
    EXPECT_EQ(missing_required(default_config(), true), std::vector<std::string>{"classifier.host"});
}

TEST_F(ConfigTest, InterfaceAsStringListOrArray) {
    EXPECT_EQ(parse_config_string("capture = { interface = \"em0\"; };", "s").capture.interfaces,
              std::vector<std::string>{"em0"});
    EXPECT_EQ(parse_config_string("capture = { interface = [\"a\", \"b\"]; };", "s").capture.interfaces,
              (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(parse_config_string("capture = { interface = (\"a\", \"b\"); };", "s").capture.interfaces,
              (std::vector<std::string>{"a", "b"}));
    expect_refused("capture = {\n interface = [];\n};", 2, "capture.interface must list at least one value");
    expect_refused("capture = {\n interface = (\"a\",\n 5);\n};", 3,
                   "capture.interface[1] must be a string, not an integer");
    expect_refused("capture = { interface = \"\"; };", 1, "capture.interface must not be empty");
    expect_refused("capture = { interface = \"abcdefghijklmnop\"; };", 1,
                   "capture.interface is too long (16 characters, at most 15)");
    expect_refused("capture = { interface = [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]; };", 1,
                   "capture.interface lists 9 values, at most 8 are supported");
}

TEST_F(ConfigTest, UnknownKeysAtEveryLevel) {
    expect_refused("instance = \"a\";\nflow = {\n  timeout = 5;\n  timout = 5;\n};", 4,
                   "unknown key flow.timout");
    expect_refused("instnace = \"a\";", 1, "unknown key instnace");
    expect_refused("\n\nexporter = { mtu = 1500; };", 3, "unknown key exporter");
    expect_refused("shm = { packet_ring = 65536; extra = { a = 1; }; };", 1, "unknown key shm.extra");
}

TEST_F(ConfigTest, WrongTypes) {
    expect_refused("flow = {\n  timeout = \"60\";\n};", 2, "flow.timeout must be an integer, not a string");
    expect_refused("flow = { timeout = 6.5; };", 1, "flow.timeout must be an integer, not a floating-point number");
    expect_refused("classifier = { host = 5; };", 1, "classifier.host must be a string, not an integer");
    expect_refused("capture = { promiscuous = 1; };", 1, "capture.promiscuous must be true or false, not an integer");
    expect_refused("\ncapture = 5;", 2, "capture must be a group { ... }, not an integer");
    expect_refused("instance = [\"a\"];", 1, "instance must be a string, not an array");
    expect_refused("customers = { networks = \"10.0.0.0/8\"; };", 1,
                   "customers.networks must be a list of CIDR strings, not a string");
    expect_refused("customers = { networks = [1]; };", 1, "customers.networks[0] must be a string, not an integer");
    expect_refused("database = { conninfo = 5; };", 1, "database.conninfo must be a string, not an integer");
    expect_refused("shm = { event_ring = true; };", 1,
                   "shm.event_ring must be a byte count (an integer or a string such as \"32M\"), not a boolean");
    expect_refused("shm = { event_ring = \"12X\"; };", 1,
                   "shm.event_ring = \"12X\" is not a byte count (write an integer, or a number with K, M or G)");
}

TEST_F(ConfigTest, OutOfRange) {
    expect_refused("capture = { snaplen = 63; };", 1, "capture.snaplen must be between 64 and 65535, not 63");
    expect_refused("capture = { snaplen = 65536; };", 1, "capture.snaplen must be between 64 and 65535, not 65536");
    expect_refused("capture = { buffer_size = 524287; };", 1,
                   "capture.buffer_size must be between 524288 (512 KiB) and 1073741824 (1 GiB) bytes, not 524287");
    EXPECT_EQ(parse_config_string("capture = { buffer_size = \"512K\"; };", "s").capture.buffer_size, 524288);
    expect_refused("export = { mtu = 575; };", 1, "export.mtu must be between 576 and 9000, not 575");
    expect_refused("export = { mtu = 9001; };", 1, "export.mtu must be between 576 and 9000, not 9001");
    expect_refused("export = { domain_id = -1; };", 1, "export.domain_id must be between 0 and 4294967295, not -1");
    // export.watermark_ms: 0 (off) or 10..60000; default 1000.
    EXPECT_EQ(parse_config_string("", "s").export_.watermark_ms, 1000);
    EXPECT_EQ(parse_config_string("export = { watermark_ms = 0; };", "s").export_.watermark_ms, 0);
    EXPECT_EQ(parse_config_string("export = { watermark_ms = 10; };", "s").export_.watermark_ms, 10);
    EXPECT_EQ(parse_config_string("export = { watermark_ms = 60000; };", "s").export_.watermark_ms, 60000);
    expect_refused("export = { watermark_ms = 9; };", 1, "export.watermark_ms must be 0 (off) or 10 to 60000, not 9");
    expect_refused("export = { watermark_ms = 60001; };", 1,
                   "export.watermark_ms must be between 0 and 60000, not 60001");
    expect_refused("classifier = { port = 0; };", 1, "classifier.port must be between 1 and 65535, not 0");
    expect_refused("classifier = { port = 65536; };", 1, "classifier.port must be between 1 and 65535, not 65536");
    expect_refused("flow = { timeout = 0; };", 1, "flow.timeout must be between 1 and 86400, not 0");
    expect_refused("flow = { max_flows = 100000001; };", 1,
                   "flow.max_flows must be between 1 and 100000000, not 100000001");
    expect_refused("supervisor = { hang_timeout = 0; };", 1,
                   "supervisor.hang_timeout must be between 1 and 3600, not 0");
    expect_refused("ha = { mode = \"vrrp\"; };", 1, "ha.mode must be one of none, vip, file, not \"vrrp\"");
    expect_refused("ha = { poll_ms = 49; };", 1, "ha.poll_ms must be between 50 and 5000, not 49");
    expect_refused("database = { stop_drain_ms = -1; };", 1,
                   "database.stop_drain_ms must be between 0 and 600000, not -1");
    expect_refused("database = { stop_drain_ms = 600001; };", 1,
                   "database.stop_drain_ms must be between 0 and 600000, not 600001");
    expect_refused("ha = { poll_ms = 5001; };", 1, "ha.poll_ms must be between 50 and 5000, not 5001");
    expect_refused("ha = { takeover_ms = 10001; };", 1, "ha.takeover_ms must be between 0 and 10000, not 10001");
    expect_refused("ha = { replay_ms = 60001; };", 1, "ha.replay_ms must be between 0 and 60000, not 60001");
    expect_refused("ha = { replay_ms = -1; };", 1, "ha.replay_ms must be between 0 and 60000, not -1");
    expect_refused("runtime_dir = \"run/angel\";", 1, "runtime_dir must be an absolute path");
    expect_refused("instance = \"a/b\";", 1,
                   "instance may hold only letters, digits, '_', '-' and '.', not \"a/b\"");
}

// libconfig 1.5 would silently wrap these to small numbers that pass the range checks.
TEST_F(ConfigTest, IntegersBeyond32BitsAreNotWrapped) {
    expect_refused("flow = {\n max_flows = 4294967297;\n};", 2,
                   "integer 4294967297 does not fit in 32 bits; write 4294967297L for a 64-bit value");
    expect_refused("export = { domain_id = 4294967295; };", 1,
                   "integer 4294967295 does not fit in 32 bits; write 4294967295L for a 64-bit value");
    expect_refused("export = { domain_id = 0xFFFFFFFF; };", 1,
                   "integer 0xFFFFFFFF does not fit in 32 bits; write 0xFFFFFFFFL for a 64-bit value");
    expect_refused("# 99999999999 in a comment is fine\nflow = { max_flows = 99999999999999999999L; };", 2,
                   "integer 99999999999999999999L does not fit in 64 bits");
    expect_refused("flow = { max_flows = 4294967297L; };", 1,
                   "flow.max_flows must be between 1 and 100000000, not 4294967297");
    // Numbers inside strings, comments and names are not integer literals.
    EXPECT_EQ(parse_config_string("/* 99999999999 */ user = \"u99999999999\"; // 99999999999\n", "s").user,
              "u99999999999");
    // Nor are the digits of a float (which then fails the type check, as it should).
    expect_refused("export = { mtu = 1.5e10; };", 1, "export.mtu must be an integer, not a floating-point number");
}

TEST_F(ConfigTest, BadCidr) {
    expect_refused("customers = {\n networks = [\"192.0.2.0/24\",\n \"10.0.0.1/8\"];\n};", 3,
                   "customers.networks[1]: \"10.0.0.1/8\" has host bits set after the /8 prefix "
                   "(did you mean 10.0.0.0/8?)");
    expect_refused("customers = { networks = [\"10.0.0.0/33\"]; };", 1,
                   "customers.networks[0]: \"10.0.0.0/33\": the prefix length must be a number from 0 to 32");
    expect_refused("customers = { networks = [\"2001:db8::/129\"]; };", 1,
                   "customers.networks[0]: \"2001:db8::/129\": the prefix length must be a number from 0 to 128");
    expect_refused("customers = { networks = [\"300.0.0.0/8\"]; };", 1,
                   "customers.networks[0]: \"300.0.0.0/8\" is not a valid IPv4 address or network");
    expect_refused("customers = { networks = [\"2001:db8::g/32\"]; };", 1,
                   "customers.networks[0]: \"2001:db8::g/32\" is not a valid IPv6 address or network");
    expect_refused("customers = { networks = [\"fe80::1/64\"]; };", 1,
                   "customers.networks[0]: \"fe80::1/64\" has host bits set after the /64 prefix "
                   "(did you mean fe80::/64?)");
    for (const char* bad : {"10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/ 8", "10.0.0.0/8/8", "10.1/16", "", "/8"}) {
        EXPECT_FALSE(parse_cidr(bad).has_value()) << bad;
    }
    EXPECT_EQ(format_cidr(*parse_cidr("0.0.0.0/0")), "0.0.0.0/0");
    EXPECT_EQ(format_cidr(*parse_cidr("::/0")), "::/0");
    EXPECT_EQ(format_cidr(*parse_cidr("2001:DB8:0:0::/64")), "2001:db8::/64");
    EXPECT_EQ(parse_cidr("::1")->prefix_len, 128);
}

TEST_F(ConfigTest, MetricsListen) {
    EXPECT_EQ(parse_config_string("", "s").metrics.listen, "");
    EXPECT_EQ(parse_config_string("metrics = { listen = \"127.0.0.1:9464\"; };", "s").metrics.listen, "127.0.0.1:9464");
    EXPECT_EQ(parse_config_string("metrics = { listen = \"[::1]:9464\"; };", "s").metrics.listen, "[::1]:9464");
    const auto v6 = parse_listen_address("[2001:db8::7]:80", nullptr);
    ASSERT_TRUE(v6.has_value());
    EXPECT_EQ(v6->family, AF_INET6);
    EXPECT_EQ(v6->port, 80);
    EXPECT_EQ(v6->addr[0], 0x20);
    EXPECT_EQ(v6->addr[15], 7);
    const auto v4 = parse_listen_address("0.0.0.0:65535", nullptr);
    ASSERT_TRUE(v4.has_value());
    EXPECT_EQ(v4->family, AF_INET);
    EXPECT_EQ(v4->port, 65535);
    // -t -v shows it.
    EXPECT_NE(describe(parse_config_string("metrics = { listen = \"[::]:9464\"; };", "s")).find("metrics.listen = \"[::]:9464\"\n"),
              std::string::npos);
    EXPECT_NE(describe(parse_config_string("", "s")).find("metrics.listen = (not set: no /metrics endpoint)\n"),
              std::string::npos);
    expect_refused("metrics = {\n listen = \"localhost:9464\";\n};", 2,
                   "metrics.listen \"localhost:9464\": \"localhost\" is not an IPv4 address (a host name is not accepted; IPv6 goes "
                   "in brackets)");
    expect_refused("metrics = { listen = \"127.0.0.1\"; };", 1,
                   "metrics.listen \"127.0.0.1\": must be ADDR:PORT (\"127.0.0.1:9464\", \"[::1]:9464\")");
    expect_refused("metrics = { listen = \"127.0.0.1:0\"; };", 1,
                   "metrics.listen \"127.0.0.1:0\": the port must be 1 to 65535, not \"0\"");
    expect_refused("metrics = { listen = \"127.0.0.1:65536\"; };", 1,
                   "metrics.listen \"127.0.0.1:65536\": the port must be 1 to 65535, not \"65536\"");
    expect_refused("metrics = { listen = \"127.0.0.1:\"; };", 1,
                   "metrics.listen \"127.0.0.1:\": the port must be 1 to 65535");
    expect_refused("metrics = { listen = \"::1:9464\"; };", 1,
                   "metrics.listen \"::1:9464\": an IPv6 address goes in brackets: \"[::1]:9464\"");
    expect_refused("metrics = { listen = \"[::1:9464\"; };", 1,
                   "metrics.listen \"[::1:9464\": an IPv6 address needs its closing ']' (\"[::1]:9464\")");
    expect_refused("metrics = { listen = \"[127.0.0.1]:9464\"; };", 1,
                   "metrics.listen \"[127.0.0.1]:9464\": \"127.0.0.1\" in brackets is not an IPv6 address");
    expect_refused("metrics = { listen = 9464; };", 1, "metrics.listen must be a string, not an integer");
    expect_refused("metrics = { port = 9464; };", 1, "unknown key metrics.port");
}

TEST_F(ConfigTest, BadIdKey) {
    expect_refused("flow = { id_key = \"0011223344556677889900aabbccddee1\"; };", 1,
                   "flow.id_key must be exactly 32 hex digits (128 bits), not "
                   "\"0011223344556677889900aabbccddee1\"");
    expect_refused("flow = { id_key = \"0011223344556677889900aabbccdde\"; };", 1,
                   "flow.id_key must be exactly 32 hex digits (128 bits), not "
                   "\"0011223344556677889900aabbccdde\"");
    expect_refused("flow = { id_key = \"0011223344556677889900aabbccddeg\"; };", 1,
                   "flow.id_key must be exactly 32 hex digits (128 bits), not "
                   "\"0011223344556677889900aabbccddeg\"");
    expect_refused("flow = { id_key = 12; };", 1, "flow.id_key must be a string, not an integer");
}

TEST_F(ConfigTest, UnreadableFile) {
    const std::string missing = dir_ + "/nope.conf";
    try {
        load_config(missing);
        FAIL() << "loaded a missing file";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), (missing + ": cannot read: No such file or directory").c_str());
        EXPECT_EQ(e.line(), 0);
        EXPECT_EQ(e.file(), missing);
    }
    try {
        load_config(dir_);
        FAIL() << "loaded a directory";
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), (dir_ + ": cannot read: is a directory").c_str());
    }
    if (geteuid() != 0) {  // root reads anything
        const std::string locked = write("locked.conf", "instance = \"a\";");
        chmod(locked.c_str(), 0);
        try {
            load_config(locked);
            FAIL() << "loaded an unreadable file";
        } catch (const ConfigError& e) {
            EXPECT_STREQ(e.what(), (locked + ": cannot read: Permission denied").c_str());
        }
    }
}

TEST_F(ConfigTest, SyntaxError) {
    expect_refused("instance = \"a\";\nflow = {\n  timeout = ;\n};", 3, "syntax error");
    expect_refused("flow = { timeout = 1; };\nflow = { timeout = 2; };", 2, "duplicate setting name");
    try {
        parse_config_string("a = ", "<built-in>");
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()).rfind("<built-in>:1: ", 0), 0u) << e.what();
    }
}

TEST_F(ConfigTest, ErrorsInIncludedFilesNameThatFile) {
    const std::string inc = write("part.conf", "flow = {\n  timout = 3;\n};\n");
    const std::string main = write("main.conf", "instance = \"a\";\n@include \"part.conf\"\n");
    try {
        load_config(main);
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), (inc + ":2: unknown key flow.timout").c_str());
    }
    write("part.conf", "flow = {\n  max_flows = 4294967297;\n};\n");
    try {
        load_config(main);
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()).rfind(inc + ":2: integer 4294967297", 0), 0u) << e.what();
    }
}

TEST_F(ConfigTest, DescribeNeverShowsThePassword) {
    const Config c = parse_config_string(
        "database = { conninfo = \"host=db user=angel password=s3cret dbname=flows\"; };"
        "flow = { id_key = \"00112233445566778899aabbccddeeff\"; };",
        "s");
    const std::string text = describe(c);
    EXPECT_EQ(text.find("s3cret"), std::string::npos) << text;
    EXPECT_NE(text.find("database.conninfo = \"host=db user=angel password=**** dbname=flows\"\n"),
              std::string::npos)
        << text;
    EXPECT_EQ(text.find("00112233445566778899aabbccddeeff"), std::string::npos) << text;
    EXPECT_NE(text.find("flow.timeout = 60\n"), std::string::npos);
    EXPECT_NE(text.find("export.mtu = 1500\n"), std::string::npos);
    EXPECT_NE(text.find("classifier.host = (not set)\n"), std::string::npos);
}

TEST_F(ConfigTest, MaskConninfoForms) {
    EXPECT_EQ(mask_conninfo("password = 'a b\\'c' host=x"), "password = **** host=x");
    EXPECT_EQ(mask_conninfo("host=x password=abc"), "host=x password=****");
    EXPECT_EQ(mask_conninfo("host=x passfile=/etc/pgpass"), "host=x passfile=/etc/pgpass");
    EXPECT_EQ(mask_conninfo("postgresql://angel:se/cr@t@db:5432/flows?sslmode=require"),
              "postgresql://angel:****@db:5432/flows?sslmode=require");
    EXPECT_EQ(mask_conninfo("postgres://angel@db/flows?password=x&sslmode=require"),
              "postgres://angel@db/flows?password=****&sslmode=require");
    EXPECT_EQ(mask_conninfo("postgresql:///flows"), "postgresql:///flows");
    EXPECT_EQ(mask_conninfo("host=x password='unterminated"), "**** (unparseable, hidden)");
    EXPECT_TRUE(conninfo_has_password("host=x password=abc"));
    EXPECT_TRUE(conninfo_has_password("postgresql://u:p@h/d"));
    EXPECT_FALSE(conninfo_has_password("postgresql://u@h/d"));
    EXPECT_FALSE(conninfo_has_password("host=x passfile=/p"));
}

TEST_F(ConfigTest, WrongTypeOfConninfoDoesNotEchoIt) {
    std::string path;
    const std::string err = error_of("database = { conninfo = [\"password=s3cret\"]; };", &path);
    EXPECT_EQ(err, path + ":1: database.conninfo must be a string, not an array");
}

// ha: the pair's keys and what each mode needs of the others (issue 10).
TEST_F(ConfigTest, HaModesAndWhatTheyNeed) {
    const std::string key = "flow = { id_key = \"00112233445566778899AABBCCDDEEFF\"; };\n";
    // This Linux build has no kernel CARP: refused, naming what works instead.
    expect_refused(key + "ha = { mode = \"carp\"; };", 2,
                   "ha.mode \"carp\" (FreeBSD kernel CARP) is not built into this Linux build; use \"vip\" (the "
                   "virtual address of ucarp or keepalived) or \"file\" (a state file their scripts write)");
    expect_refused(key + "ha = {\n mode = \"vip\";\n};", 3, "ha.mode \"vip\" needs ha.vip (the address CARP/VRRP moves)");
    expect_refused(key + "ha = { mode = \"file\"; };", 2,
                   "ha.mode \"file\" needs ha.state_file (the file the CARP/VRRP scripts write)");
    expect_refused("ha = { mode = \"vip\"; vip = \"10.0.0.5\"; };", 1,
                   "ha.mode \"vip\" needs flow.id_key: both meters of a pair must compute the same flow IDs, so set "
                   "the same 32 hex digits on both");
    expect_refused(key + "ha = { mode = \"vip\"; vip = \"10.0.0.5/24\"; };", 2,
                   "ha.vip must be an IPv4 or IPv6 address (no prefix length), not \"10.0.0.5/24\"");
    expect_refused(key + "ha = { mode = \"vip\"; vip = \"vip.example\"; };", 2,
                   "ha.vip must be an IPv4 or IPv6 address (no prefix length), not \"vip.example\"");
    expect_refused(key + "ha = { mode = \"file\"; state_file = \"carp.state\"; };", 2,
                   "ha.state_file must be an absolute path");

    const Config v4 = parse_config_string(key + "ha = { mode = \"vip\"; vip = \"10.0.0.5\"; };", "v4");
    EXPECT_EQ(v4.ha.mode, "vip");
    EXPECT_EQ(v4.ha.vip, "10.0.0.5");
    const Config v6 = parse_config_string(key + "ha = { mode = \"vip\"; vip = \"2001:db8::5\"; };", "v6");
    EXPECT_EQ(v6.ha.vip, "2001:db8::5");
    const Config f = parse_config_string(key + "ha = { mode = \"file\"; state_file = \"/run/k.state\"; };", "f");
    EXPECT_EQ(f.ha.state_file, "/run/k.state");
    // mode none needs nothing: a vip written down for later is kept, not required.
    EXPECT_EQ(parse_config_string("ha = { vip = \"10.0.0.5\"; };", "n").ha.mode, "none");
}

TEST_F(ConfigTest, PacketRecordsPerFlow) {
    EXPECT_EQ(parse_config_string("", "s").export_.packet_records_per_flow, 0u);
    const Config c = parse_config_string("export = { packet_records_per_flow = 32; };", "s");
    EXPECT_EQ(c.export_.packet_records_per_flow, 32u);
    EXPECT_NE(describe(c).find("export.packet_records_per_flow = 32\n"), std::string::npos) << describe(c);
    EXPECT_NE(describe(parse_config_string("", "s")).find("export.packet_records_per_flow = 0 (every packet)\n"),
              std::string::npos);
    expect_refused("export = { packet_records_per_flow = -1; };", 1,
                   "export.packet_records_per_flow must be between 0 and 4294967295, not -1");
    // Applied live on reload: procd re-reads it with the timeouts.
    const ReloadPlan p = plan_reload(parse_config_string("", "s"), c);
    EXPECT_EQ(p.live_changes, (std::vector<std::string>{"export.packet_records_per_flow"}));
    EXPECT_TRUE(p.restart_changes.empty());
}

}  // namespace
}  // namespace angel

namespace angel {
namespace {

std::string override_error(const std::string& key, const std::string& value) {
    Config c = default_config();
    try {
        apply_override(c, key, value, "database");
    } catch (const ConfigError& e) {
        EXPECT_EQ(describe(c), describe(default_config())) << "changed despite the error";
        return e.what();
    }
    return "";
}

TEST(ConfigOverride, DatabaseValuesPassTheSameChecks) {
    Config c = default_config();
    apply_override(c, "classifier.host", "203.0.113.5", "database");
    apply_override(c, "classifier.port", "47390", "database");
    apply_override(c, "flow.timeout", "30", "database");
    apply_override(c, "capture.snaplen", "96", "database");
    apply_override(c, "customers.networks", "192.0.2.0/24, 2001:db8::/32", "database");
    EXPECT_EQ(c.classifier.host, "203.0.113.5");
    EXPECT_EQ(c.classifier.port, 47390);
    EXPECT_EQ(c.flow.timeout, 30);
    EXPECT_EQ(c.capture.snaplen, 96);
    ASSERT_EQ(c.customers.networks.size(), 2u);
    EXPECT_EQ(format_cidr(c.customers.networks[1]), "2001:db8::/32");
    EXPECT_TRUE(missing_required(c, true).empty());
    apply_override(c, "customers.networks", "", "database");
    EXPECT_TRUE(c.customers.networks.empty());

    EXPECT_EQ(override_error("classifier.port", "70000"),
              "database: classifier.port must be between 1 and 65535, not 70000");
    EXPECT_EQ(override_error("flow.timeout", "1; x = 2"), "database: flow.timeout must be an integer, not \"1; x = 2\"");
    EXPECT_EQ(override_error("classifier.host", ""), "database: classifier.host must not be empty");
    EXPECT_EQ(override_error("classifier.host", "a\"; b = \""), "");  // quoted, not injected
    EXPECT_EQ(override_error("customers.networks", "10.0.0.1/8"),
              "database: customers.networks[0]: \"10.0.0.1/8\" has host bits set after the /8 prefix "
              "(did you mean 10.0.0.0/8?)");
    EXPECT_EQ(override_error("flow.max_flows", "5"),
              "database: unknown key flow.max_flows (not settable from the database)");
}

}  // namespace
}  // namespace angel

// A database section without meter_id: the meter ID is the instance name, not "default".
TEST(ConfigMeterId, DefaultsToInstanceInsideADatabaseSection) {
    const angel::Config c = angel::parse_config_string(
        "instance = \"edge7\"; database = { conninfo = \"host=/tmp\"; };", "t.conf");
    EXPECT_EQ(c.database.meter_id, "edge7");
    const angel::Config d = angel::parse_config_string(
        "instance = \"edge7\"; database = { conninfo = \"host=/tmp\"; meter_id = \"m1\"; };", "t.conf");
    EXPECT_EQ(d.database.meter_id, "m1");
}

TEST(Config, UserRootIsRefusedAndAnExplicitUserIsMarked) {
    try {
        angel::parse_config_string("instance = \"a\";\nuser = \"root\";\n", "u.conf");
        ADD_FAILURE() << "user = root accepted";
    } catch (const angel::ConfigError& e) {
        EXPECT_EQ(e.line(), 2);
        EXPECT_NE(e.message().find("must not be root"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(angel::parse_config_string("instance = \"a\";\n", "u.conf").user_set);
    const angel::Config c = angel::parse_config_string("user = \"angel\";\ncontrol = { group = \"ops\"; };\n", "u.conf");
    EXPECT_TRUE(c.user_set);
    EXPECT_EQ(c.control.group, "ops");
    EXPECT_THROW(angel::parse_config_string("control = { grp = \"ops\"; };\n", "u.conf"), angel::ConfigError);  // unknown key
}
