// Loading and checking the configuration file. The walk is table-driven: each section lists
// its keys with a handler, so an unknown key at any level is refused in one place, and every
// handler checks type and range against the setting it reads, so that every error carries the
// line of the offending setting.
#include <arpa/inet.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <libconfig.h++>
#include <sstream>

#include "common/config/config.hpp"
#include "common/config/config_detail.hpp"

namespace angel {

using libconfig::Setting;

ConfigError::ConfigError(const std::string& file, int line, const std::string& message)
    : std::runtime_error(line > 0 ? file + ":" + std::to_string(line) + ": " + message
                                  : file + ": " + message),
      file_(file),
      line_(line),
      message_(message) {}

namespace {

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;
constexpr int64_t kGiB = 1024 * kMiB;

const char* type_name(Setting::Type t) {
    switch (t) {
        case Setting::TypeInt:
        case Setting::TypeInt64: return "an integer";
        case Setting::TypeFloat: return "a floating-point number";
        case Setting::TypeString: return "a string";
        case Setting::TypeBoolean: return "a boolean";
        case Setting::TypeGroup: return "a group";
        case Setting::TypeArray: return "an array";
        case Setting::TypeList: return "a list";
        default: return "nothing";
    }
}

// "1048576 (1 MiB)" style, so that a range message for byte sizes is readable.
std::string bytes_text(int64_t v) {
    std::string s = std::to_string(v);
    if (v >= kGiB && v % kGiB == 0) return s + " (" + std::to_string(v / kGiB) + " GiB)";
    if (v >= kMiB && v % kMiB == 0) return s + " (" + std::to_string(v / kMiB) + " MiB)";
    if (v >= kKiB && v % kKiB == 0) return s + " (" + std::to_string(v / kKiB) + " KiB)";
    return s;
}

struct Key {
    const char* name;
    std::function<void(const Setting&)> apply;
};

// Reads typed values out of settings; every failure names the key and the setting's line.
class Reader {
public:
    Reader(std::string fallback_file, std::string include_dir)
        : fallback_file_(std::move(fallback_file)), include_dir_(std::move(include_dir)) {}

    [[noreturn]] void fail(const Setting& s, const std::string& what) const {
        const char* src = s.getSourceFile();
        std::string file = src ? std::string(src) : fallback_file_;
        if (src && file != fallback_file_) file = config_detail::join_path(include_dir_, file);
        throw ConfigError(file, static_cast<int>(s.getSourceLine()), what);
    }

    // Runs the handler of each child of a group; refuses a child no handler claims.
    void walk(const Setting& group, const std::string& prefix,
              std::initializer_list<Key> keys) const {
        for (int i = 0; i < group.getLength(); ++i) {
            const Setting& child = group[i];
            const std::string name = child.getName();
            const Key* found = nullptr;
            for (const Key& k : keys) {
                if (name == k.name) found = &k;
            }
            if (!found) fail(child, "unknown key " + prefix + name);
            found->apply(child);
        }
    }

    void expect_group(const Setting& s, const std::string& key) const {
        if (!s.isGroup()) {
            fail(s, key + " must be a group { ... }, not " + type_name(s.getType()));
        }
    }

    int64_t integer(const Setting& s, const std::string& key, int64_t lo, int64_t hi) const {
        int64_t v = 0;
        if (s.getType() == Setting::TypeInt) v = static_cast<int>(s);
        else if (s.getType() == Setting::TypeInt64) v = static_cast<long long>(s);
        else fail(s, key + " must be an integer, not " + type_name(s.getType()));
        if (v < lo || v > hi) {
            fail(s, key + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                        ", not " + std::to_string(v));
        }
        return v;
    }

    int int_in(const Setting& s, const std::string& key, int lo, int hi) const {
        return static_cast<int>(integer(s, key, lo, hi));
    }

    // Byte sizes: an integer, or a string with a K, M or G suffix (powers of 1024).
    int64_t byte_size(const Setting& s, const std::string& key, int64_t lo, int64_t hi) const {
        int64_t v = 0;
        if (s.getType() == Setting::TypeString) {
            v = parse_size_suffix(s, key);
        } else if (s.getType() == Setting::TypeInt || s.getType() == Setting::TypeInt64) {
            v = integer(s, key, INT64_MIN, INT64_MAX);
        } else {
            fail(s, key + " must be a byte count (an integer or a string such as \"32M\"), not " +
                        type_name(s.getType()));
        }
        if (v < lo || v > hi) {
            fail(s, key + " must be between " + bytes_text(lo) + " and " + bytes_text(hi) +
                        " bytes, not " + std::to_string(v));
        }
        return v;
    }

    bool boolean(const Setting& s, const std::string& key) const {
        if (s.getType() != Setting::TypeBoolean) {
            fail(s, key + " must be true or false, not " + type_name(s.getType()));
        }
        return static_cast<bool>(s);
    }

    std::string string(const Setting& s, const std::string& key, size_t max_len) const {
        if (s.getType() != Setting::TypeString) {
            fail(s, key + " must be a string, not " + type_name(s.getType()));
        }
        std::string v = s.c_str();
        if (v.empty()) fail(s, key + " must not be empty");
        if (v.size() > max_len) {
            fail(s, key + " is too long (" + std::to_string(v.size()) + " characters, at most " +
                        std::to_string(max_len) + ")");
        }
        return v;
    }

    // A string, or an array/list of strings (at least one, at most max_items).
    std::vector<std::string> strings(const Setting& s, const std::string& key, size_t max_len,
                                     size_t max_items) const {
        if (s.getType() == Setting::TypeString) return {string(s, key, max_len)};
        if (!s.isArray() && !s.isList()) {
            fail(s, key + " must be a string or a list of strings, not " + type_name(s.getType()));
        }
        if (s.getLength() == 0) fail(s, key + " must list at least one value");
        if (static_cast<size_t>(s.getLength()) > max_items) {
            fail(s, key + " lists " + std::to_string(s.getLength()) + " values, at most " +
                        std::to_string(max_items) + " are supported");
        }
        std::vector<std::string> out;
        for (int i = 0; i < s.getLength(); ++i) {
            out.push_back(string(s[i], key + "[" + std::to_string(i) + "]", max_len));
        }
        return out;
    }

private:
    int64_t parse_size_suffix(const Setting& s, const std::string& key) const {
        const std::string text = s.c_str();
        size_t digits = 0;
        while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
        const std::string suffix = text.substr(digits);
        int64_t unit = 0;
        if (suffix == "K" || suffix == "KiB") unit = kKiB;
        else if (suffix == "M" || suffix == "MiB") unit = kMiB;
        else if (suffix == "G" || suffix == "GiB") unit = kGiB;
        if (digits == 0 || digits > 9 || unit == 0) {  // 9 digits: no int64 overflow even in G
            fail(s, key + " = \"" + text +
                        "\" is not a byte count (write an integer, or a number with K, M or G)");
        }
        return std::stoll(text.substr(0, digits)) * unit;
    }

    std::string fallback_file_;
    std::string include_dir_;
};

// Names of instances become parts of file and segment names: keep them to a safe alphabet.
bool is_safe_name(const std::string& s) {
    for (char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
        if (!ok) return false;
    }
    return s != "." && s != "..";
}

bool is_hex(const std::string& s) {
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

std::string lowercase(std::string s) {
    for (char& c : s) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return s;
}

void read_capture(const Reader& r, const Setting& g, CaptureConfig& c) {
    r.expect_group(g, "capture");
    r.walk(g, "capture.", {
        {"interface", [&](const Setting& s) {
             c.interfaces = r.strings(s, "capture.interface", kMaxInterfaceLen, kMaxInterfaces);
         }},
        {"snaplen", [&](const Setting& s) { c.snaplen = r.int_in(s, "capture.snaplen", 64, 65535); }},
        {"buffer_size", [&](const Setting& s) {
             c.buffer_size = static_cast<int>(r.byte_size(s, "capture.buffer_size", 512 * kKiB, kGiB));
         }},
        {"promiscuous", [&](const Setting& s) { c.promiscuous = r.boolean(s, "capture.promiscuous"); }},
    });
}

void read_classifier(const Reader& r, const Setting& g, ClassifierConfig& c) {
    r.expect_group(g, "classifier");
    r.walk(g, "classifier.", {
        {"host", [&](const Setting& s) { c.host = r.string(s, "classifier.host", kMaxHostLen); }},
        {"port", [&](const Setting& s) { c.port = r.int_in(s, "classifier.port", 1, 65535); }},
    });
}

void read_flow(const Reader& r, const Setting& g, FlowConfig& c) {
    r.expect_group(g, "flow");
    r.walk(g, "flow.", {
        {"timeout", [&](const Setting& s) { c.timeout = r.int_in(s, "flow.timeout", 1, 86400); }},
        {"tcp_linger", [&](const Setting& s) { c.tcp_linger = r.int_in(s, "flow.tcp_linger", 0, 3600); }},
        {"max_flows", [&](const Setting& s) {
             c.max_flows = r.int_in(s, "flow.max_flows", 1, 100'000'000);
         }},
        {"gc_interval", [&](const Setting& s) { c.gc_interval = r.int_in(s, "flow.gc_interval", 1, 60); }},
        {"id_key", [&](const Setting& s) {
             const std::string v = r.string(s, "flow.id_key", 64);
             if (v.size() != 32 || !is_hex(v)) {
                 r.fail(s, "flow.id_key must be exactly 32 hex digits (128 bits), not \"" + v + "\"");
             }
             c.id_key = lowercase(v);
         }},
    });
}

void read_customers(const Reader& r, const Setting& g, CustomersConfig& c) {
    r.expect_group(g, "customers");
    r.walk(g, "customers.", {
        {"networks", [&](const Setting& s) {
             if (!s.isArray() && !s.isList()) {
                 r.fail(s, std::string("customers.networks must be a list of CIDR strings, not ") +
                               type_name(s.getType()));
             }
             c.networks.clear();
             for (int i = 0; i < s.getLength(); ++i) {
                 const std::string key = "customers.networks[" + std::to_string(i) + "]";
                 std::string why;
                 auto net = parse_cidr(r.string(s[i], key, 64), &why);
                 if (!net) r.fail(s[i], key + ": " + why);
                 c.networks.push_back(*net);
             }
         }},
    });
}

void read_export(const Reader& r, const Setting& g, ExportConfig& c) {
    r.expect_group(g, "export");
    r.walk(g, "export.", {
        {"mtu", [&](const Setting& s) { c.mtu = r.int_in(s, "export.mtu", 576, 9000); }},
        {"flush_ms", [&](const Setting& s) { c.flush_ms = r.int_in(s, "export.flush_ms", 1, 10000); }},
        {"template_refresh", [&](const Setting& s) {
             c.template_refresh = r.int_in(s, "export.template_refresh", 1, 86400);
         }},
        {"domain_id", [&](const Setting& s) {
             c.domain_id = static_cast<uint32_t>(r.integer(s, "export.domain_id", 0, UINT32_MAX));
         }},
        {"packet_records_per_flow", [&](const Setting& s) {
             c.packet_records_per_flow =
                 static_cast<uint32_t>(r.integer(s, "export.packet_records_per_flow", 0, UINT32_MAX));
         }},
        {"watermark_ms", [&](const Setting& s) {
             // Below 10 ms a watermark would cost more records than it saves a receiver waiting.
             const int v = r.int_in(s, "export.watermark_ms", 0, 60000);
             if (v != 0 && v < 10)
                 r.fail(s, "export.watermark_ms must be 0 (off) or 10 to 60000, not " + std::to_string(v));
             c.watermark_ms = v;
         }},
    });
}

void read_database(const Reader& r, const Setting& g, DatabaseConfig& c) {
    r.expect_group(g, "database");
    r.walk(g, "database.", {
        {"conninfo", [&](const Setting& s) {
             // Checked by hand, not with Reader::string: an error must not echo the password.
             if (s.getType() != Setting::TypeString) {
                 r.fail(s, std::string("database.conninfo must be a string, not ") +
                               type_name(s.getType()));
             }
             c.conninfo = s.c_str();
         }},
        {"meter_id", [&](const Setting& s) { c.meter_id = r.string(s, "database.meter_id", 64); }},
        {"poll_interval", [&](const Setting& s) {
             c.poll_interval = r.int_in(s, "database.poll_interval", 1, 86400);
         }},
        {"history", [&](const Setting& s) { c.history = r.boolean(s, "database.history"); }},
        {"stop_drain_ms", [&](const Setting& s) {
             c.stop_drain_ms = r.int_in(s, "database.stop_drain_ms", 0, 600000);
         }},
    });
}

void read_ha(const Reader& r, const Setting& g, HaConfig& c) {
    r.expect_group(g, "ha");
    r.walk(g, "ha.", {
        {"mode", [&](const Setting& s) {
             const std::string v = r.string(s, "ha.mode", 16);
             if (v == "carp") {
                 r.fail(s, "ha.mode \"carp\" (FreeBSD kernel CARP) is not built into this Linux build; use "
                           "\"vip\" (the virtual address of ucarp or keepalived) or \"file\" (a state file their "
                           "scripts write)");
             }
             if (v != "none" && v != "vip" && v != "file") {
                 r.fail(s, "ha.mode must be one of none, vip, file, not \"" + v + "\"");
             }
             c.mode = v;
         }},
        {"vip", [&](const Setting& s) {
             const std::string v = r.string(s, "ha.vip", 64);
             in6_addr a6{};
             in_addr a4{};
             if (inet_pton(AF_INET, v.c_str(), &a4) != 1 && inet_pton(AF_INET6, v.c_str(), &a6) != 1)
                 r.fail(s, "ha.vip must be an IPv4 or IPv6 address (no prefix length), not \"" + v + "\"");
             c.vip = v;
         }},
        {"state_file", [&](const Setting& s) {
             c.state_file = r.string(s, "ha.state_file", kMaxPathLen);
             if (c.state_file[0] != '/') r.fail(s, "ha.state_file must be an absolute path");
         }},
        {"poll_ms", [&](const Setting& s) { c.poll_ms = r.int_in(s, "ha.poll_ms", 50, 5000); }},
        {"takeover_ms", [&](const Setting& s) { c.takeover_ms = r.int_in(s, "ha.takeover_ms", 0, 10000); }},
        {"replay_ms", [&](const Setting& s) { c.replay_ms = r.int_in(s, "ha.replay_ms", 0, 60000); }},
    });
}

// What one ha key needs of the others, checked once the whole file is read.
void check_ha(const Reader& r, const Setting& root, const Config& c) {
    if (!root.exists("ha")) return;
    const Setting& g = root["ha"];
    const Setting& at = g.exists("mode") ? g["mode"] : g;
    if (c.ha.mode == "vip" && c.ha.vip.empty()) r.fail(at, "ha.mode \"vip\" needs ha.vip (the address CARP/VRRP moves)");
    if (c.ha.mode == "file" && c.ha.state_file.empty())
        r.fail(at, "ha.mode \"file\" needs ha.state_file (the file the CARP/VRRP scripts write)");
    if (c.ha.mode != "none" && c.flow.id_key.empty())
        r.fail(at, "ha.mode \"" + c.ha.mode + "\" needs flow.id_key: both meters of a pair must compute the same "
                   "flow IDs, so set the same 32 hex digits on both");
}

void read_shm(const Reader& r, const Setting& g, ShmConfig& c) {
    r.expect_group(g, "shm");
    auto ring = [&](const char* key, uint64_t& out) {
        return Key{key, [&r, &out, key](const Setting& s) {
                       out = static_cast<uint64_t>(
                           r.byte_size(s, std::string("shm.") + key, 64 * kKiB, 16 * kGiB));
                   }};
    };
    r.walk(g, "shm.", {ring("packet_ring", c.packet_ring), ring("record_ring", c.record_ring),
                       ring("event_ring", c.event_ring)});
}

void read_supervisor(const Reader& r, const Setting& g, SupervisorConfig& c) {
    r.expect_group(g, "supervisor");
    r.walk(g, "supervisor.", {
        {"hang_timeout", [&](const Setting& s) {
             c.hang_timeout = r.int_in(s, "supervisor.hang_timeout", 1, 3600);
         }},
    });
}

void read_control(const Reader& r, const Setting& g, ControlConfig& c) {
    r.expect_group(g, "control");
    r.walk(g, "control.", {
        {"group", [&](const Setting& s) { c.group = r.string(s, "control.group", kMaxUserLen); }},
    });
}

void read_metrics(const Reader& r, const Setting& g, MetricsConfig& c) {
    r.expect_group(g, "metrics");
    r.walk(g, "metrics.", {
        {"listen", [&](const Setting& s) {
             const std::string v = r.string(s, "metrics.listen", 64);
             std::string why;
             if (!parse_listen_address(v, &why)) r.fail(s, "metrics.listen \"" + v + "\": " + why);
             c.listen = v;
         }},
    });
}

void read_root(const Reader& r, const Setting& root, Config& c) {
    bool meter_id_set = false;
    r.walk(root, "", {
        {"instance", [&](const Setting& s) {
             c.instance = r.string(s, "instance", kMaxInstanceLen);
             if (!is_safe_name(c.instance)) {
                 r.fail(s, "instance may hold only letters, digits, '_', '-' and '.', not \"" +
                               c.instance + "\"");
             }
         }},
        {"user", [&](const Setting& s) {
             c.user = r.string(s, "user", kMaxUserLen);
             c.user_set = true;
             // The stages parse hostile traffic: never as root (checked again against the
             // account database where the meter starts, see ctld/stage_user.cpp).
             if (c.user == "root") r.fail(s, "user must not be root: the stages parse hostile traffic");
         }},
        {"runtime_dir", [&](const Setting& s) {
             c.runtime_dir = r.string(s, "runtime_dir", kMaxPathLen);
             if (c.runtime_dir[0] != '/') r.fail(s, "runtime_dir must be an absolute path");
         }},
        {"capture", [&](const Setting& s) { read_capture(r, s, c.capture); }},
        {"classifier", [&](const Setting& s) { read_classifier(r, s, c.classifier); }},
        {"flow", [&](const Setting& s) { read_flow(r, s, c.flow); }},
        {"customers", [&](const Setting& s) { read_customers(r, s, c.customers); }},
        {"export", [&](const Setting& s) { read_export(r, s, c.export_); }},
        {"database", [&](const Setting& s) {
             read_database(r, s, c.database);
             // The default "default" is already there: only an explicit key counts as set.
             meter_id_set = s.exists("meter_id");
         }},
        {"ha", [&](const Setting& s) { read_ha(r, s, c.ha); }},
        {"shm", [&](const Setting& s) { read_shm(r, s, c.shm); }},
        {"supervisor", [&](const Setting& s) { read_supervisor(r, s, c.supervisor); }},
        {"control", [&](const Setting& s) { read_control(r, s, c.control); }},
        {"metrics", [&](const Setting& s) { read_metrics(r, s, c.metrics); }},
    });
    if (!meter_id_set) c.database.meter_id = c.instance;
    check_ha(r, root, c);
}

// Parses text with libconfig, then the integer check, then the walk.
Config parse(const std::string& text, const std::string& file, const std::string& include_dir) {
    libconfig::Config lc;
    if (!include_dir.empty()) lc.setIncludeDir(include_dir.c_str());
    try {
        lc.readString(text);
    } catch (const libconfig::ParseException& e) {
        // Copied while lc lives: getFile() points into it. Null means the top-level text.
        std::string where = e.getFile() ? config_detail::join_path(include_dir, e.getFile()) : file;
        throw ConfigError(where, e.getLine(), e.getError());
    }
    config_detail::check_integer_literals(text, file, include_dir);
    Config c = default_config();
    c.source_file = file;
    read_root(Reader(file, include_dir), lc.getRoot(), c);
    return c;
}

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) return "";
    return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Config default_config() {
    Config c;
    c.database.meter_id = c.instance;
    return c;
}

Config parse_config_string(const std::string& text, const std::string& name_for_errors) {
    return parse(text, name_for_errors, "");
}

Config load_config(const std::string& path) {
    // Read it ourselves rather than through libconfig's readFile, whose FileIOException
    // does not say why the file could not be read.
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        throw ConfigError(path, 0, std::string("cannot read: ") + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) throw ConfigError(path, 0, "cannot read: is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(path, 0, std::string("cannot read: ") + std::strerror(errno));
    std::stringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw ConfigError(path, 0, "cannot read: I/O error");
    return parse(ss.str(), path, dir_of(path));
}

}  // namespace angel
