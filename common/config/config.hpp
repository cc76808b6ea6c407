// The meter's configuration: every key of angel-flowmeter.conf(5), with its default, type and
// range, loaded from a libconfig file. Any problem is refused with "file:line: what is wrong"
// (ConfigError) so that `angel-ctld -t` and a start with a bad file both point at the line;
// the process then exits with kExitConfig (78, EX_CONFIG).
//
// Values that may come from the database (classifier.host/port, flow.timeout, capture.snaplen,
// customers.networks) can be missing from the file; ctld merges the database values and then
// asks missing_required() whether anything required is still absent.
#pragma once
#include <sysexits.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace angel {

inline constexpr int kExitConfig = EX_CONFIG;  // 78

inline constexpr const char* kDefaultConfigPath = "/usr/local/etc/angel/flowmeter.conf";

// Size limits that keep every accepted value within the fixed-size fields of the shared
// segment (shm/live_config.hpp) and within what the OS accepts.
inline constexpr std::size_t kMaxInstanceLen = 63;   // also limited to [A-Za-z0-9_.-]
inline constexpr std::size_t kMaxUserLen = 32;       // Linux and FreeBSD login names
inline constexpr std::size_t kMaxInterfaces = 8;
inline constexpr std::size_t kMaxInterfaceLen = 15;  // IFNAMSIZ - 1
inline constexpr std::size_t kMaxHostLen = 255;      // a DNS name at most
inline constexpr std::size_t kMaxPathLen = 200;      // runtime_dir: room for socket names (sun_path 108)

// One customer network. addr holds the network address (host bits zero), IPv4 in the first
// 4 bytes and the rest zero. Kept small (a list may hold millions): format_cidr() gives the
// canonical text, e.g. "192.0.2.0/24", "2001:db8::/32".
struct Cidr {
    uint8_t ip_version = 0;  // 4 or 6
    std::array<uint8_t, 16> addr{};
    uint8_t prefix_len = 0;

    bool operator==(const Cidr& o) const {
        return ip_version == o.ip_version && addr == o.addr && prefix_len == o.prefix_len;
    }
};

struct CaptureConfig {
    std::vector<std::string> interfaces;  // empty = not set (required unless --replay)
    int snaplen = 128;
    int buffer_size = 32 * 1024 * 1024;
    bool promiscuous = true;
};

struct ClassifierConfig {
    std::string host;  // empty = not set (required here or in the database)
    int port = 4739;
};

struct FlowConfig {
    int timeout = 60;
    int tcp_linger = 2;
    int max_flows = 1'000'000;
    int gc_interval = 1;
    std::string id_key;  // 32 lowercase hex digits, or empty = not set (ctld keeps a random key)
};

struct CustomersConfig {
    std::vector<Cidr> networks;  // empty = all traffic
};

// Section "export" (a C++ keyword, hence the member name export_).
struct ExportConfig {
    int mtu = 1500;
    int flush_ms = 10;
    int template_refresh = 30;
    uint32_t domain_id = 0;
    // Packet records for the first N packets of each flow only (flow_start and flow_end,
    // with full counts, always); 0: every packet.
    uint32_t packet_records_per_flow = 0;
    int watermark_ms = 1000;  // 0 = no watermark records
};

struct DatabaseConfig {
    std::string conninfo;  // empty = no database. Holds secrets: print only mask_conninfo().
    std::string meter_id;  // defaults to the instance name
    int poll_interval = 60;
    bool history = true;
    // A live stop writes the flow events left for at most this long (what is left is counted,
    // logged, and reconciled at the next start); a replay's stop waits while the writer makes
    // progress and gives up after this long without any.
    int stop_drain_ms = 5000;
};

// Section "ha": how ctld learns whether this meter is the master of a CARP/VRRP pair
// (ctld/ha/). "carp" (FreeBSD kernel CARP) is refused by this Linux build.
struct HaConfig {
    std::string mode = "none";  // none, vip, file
    std::string vip;            // mode vip: master while this address is on a local interface that is up
    std::string state_file;     // mode file: master while its first word is MASTER
    int poll_ms = 200;          // how often the address or file is checked (changes are also seen at once)
    int takeover_ms = 2000;     // a new master holds its export this long (CARP's own overlap: ucarp -b 1 measured 0.9-1.0 s)
    // A backup keeps the records of this much packet time (and from takeover on, everything)
    // and sends them again, flagged replayed, on becoming master: the old master's last
    // seconds are not lost. Covers detection before takeover: measured up to 5.1 s
    // (classifier link down under ucarp's defaults), docs/ha.md. 0 = no replay.
    int replay_ms = 6000;
};

struct ShmConfig {
    uint64_t packet_ring = 64ull << 20;
    uint64_t record_ring = 16ull << 20;
    uint64_t event_ring = 8ull << 20;
};

struct SupervisorConfig {
    int hang_timeout = 5;
};

// Section "control": who may use angelctl.
struct ControlConfig {
    std::string group;  // operators' group for the control socket; empty = root only
};

// Section "metrics": the Prometheus /metrics endpoint (docs/operations.md). ctld binds the
// address (a privileged port is fine) and netd, unprivileged, serves it.
struct MetricsConfig {
    std::string listen;  // "ADDR:PORT", "[IPv6]:PORT"; empty = off
};

// A numeric listening address: metrics.listen once parsed.
struct ListenAddress {
    int family = 0;                 // AF_INET or AF_INET6
    std::array<uint8_t, 16> addr{};  // IPv4 in the first 4 bytes
    uint16_t port = 0;
};
// "192.0.2.1:9464", "0.0.0.0:9464", "[::1]:9464", "[::]:9464": a literal address (no host
// name: ctld binds it before anything resolves) and a port 1..65535. nullopt with *error
// (one line, naming neither the key nor the file) when it is not one.
std::optional<ListenAddress> parse_listen_address(std::string_view text, std::string* error);

struct Config {
    std::string source_file;  // the file it was read from; empty for default_config()
    std::string instance = "default";
    std::string user = "angel";
    bool user_set = false;    // "user" was in the file: it must exist (no fallback to nobody)
    std::string runtime_dir = "/var/run/angel";
    CaptureConfig capture;
    ClassifierConfig classifier;
    FlowConfig flow;
    CustomersConfig customers;
    ExportConfig export_;
    DatabaseConfig database;
    HaConfig ha;
    ShmConfig shm;
    SupervisorConfig supervisor;
    ControlConfig control;
    MetricsConfig metrics;
};

// what() is "file:line: message", or "file: message" when no line applies (unreadable file).
class ConfigError : public std::runtime_error {
public:
    ConfigError(const std::string& file, int line, const std::string& message);
    const std::string& file() const { return file_; }
    int line() const { return line_; }  // 0 when no line applies
    const std::string& message() const { return message_; }

private:
    std::string file_;
    int line_;
    std::string message_;
};

// Every key at its default; database.meter_id = instance.
Config default_config();

// Reads and checks a file. Relative @include paths resolve against the file's folder.
Config load_config(const std::string& path);

// Same checks on text in memory; errors name name_for_errors as the file.
// source_file of the result is name_for_errors.
Config parse_config_string(const std::string& text, const std::string& name_for_errors);

// Applies one value that comes from elsewhere than the file (the database's meter_config and
// customer_networks rows), with exactly the file's type and range checks. key is one of
// "classifier.host", "classifier.port", "flow.timeout", "capture.snaplen" (value as text, e.g.
// "30") or "customers.networks" (CIDRs separated by commas or white space; "" = all traffic).
// Throws ConfigError(origin, 0, message naming the key); cfg is unchanged then.
void apply_override(Config& cfg, const std::string& key, const std::string& value,
                    const std::string& origin);

// Names of required keys set nowhere: "classifier.host" always, "capture.interface" unless
// replaying a file. Call after merging the database values.
std::vector<std::string> missing_required(const Config& cfg, bool replay);

// "key = value" lines for every key (angel-ctld -t -v). The password in database.conninfo is
// masked.
std::string describe(const Config& cfg);

// conninfo with any password replaced by "****", in both the keyword=value and the URI form
// of libpq. Safe to log.
std::string mask_conninfo(const std::string& conninfo);

// True when conninfo carries a password (ctld warns when such a file is group/world readable).
bool conninfo_has_password(const std::string& conninfo);

// "192.0.2.0/24", "2001:db8::/32", or a bare address (a single host: /32 or /128).
// Refuses host bits set, a prefix out of range and anything inet_pton refuses; *error (when
// given) says why. Exposed for the database path, which reads customer networks as text.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* error = nullptr);
// The canonical text of a network: "192.0.2.0/24", "2001:db8::/32".
std::string format_cidr(const Cidr& c);

}  // namespace angel
