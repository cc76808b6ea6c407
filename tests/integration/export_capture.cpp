#include "export_capture.hpp"

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>

namespace angel::itest {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
    return s;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The number inside the last "(N)" of a line: "FlowSet Id: (Data) (257)", "Protocol: TCP (6)".
long last_parenthesised(std::string_view s) {
    const size_t close = s.rfind(')');
    if (close == std::string_view::npos) return -1;
    const size_t open = s.rfind('(', close);
    if (open == std::string_view::npos) return -1;
    return std::strtol(std::string(s.substr(open + 1, close - open - 1)).c_str(), nullptr, 10);
}

// "May 31, 2024 16:08:37.000000500 UTC" (tshark's absolute time, UTC) in ns since the epoch.
uint64_t parse_utc_ns(const std::string& s) {
    tm t{};
    const char* rest = strptime(s.c_str(), "%b %d, %Y %H:%M:%S", &t);
    if (rest == nullptr) return 0;
    uint64_t ns = static_cast<uint64_t>(timegm(&t)) * 1'000'000'000ull;
    if (*rest == '.') {
        uint64_t frac = 0;
        int digits = 0;
        for (++rest; *rest >= '0' && *rest <= '9'; ++rest)
            if (digits < 9) frac = frac * 10 + uint64_t(*rest - '0'), ++digits;
        for (; digits < 9; ++digits) frac *= 10;
        ns += frac;
    }
    return ns;
}

std::string after_colon(std::string_view s) {
    const size_t c = s.find(": ");
    return c == std::string_view::npos ? std::string() : std::string(trim(s.substr(c + 2)));
}

}  // namespace

std::string ExportRecord::tuple() const {
    return std::to_string(proto) + " " + src + ":" + std::to_string(sport) + ">" + dst + ":" + std::to_string(dport);
}

ExportCapture read_export_capture(const fs::path& pcap, unsigned port, Millis timeout) {
    ExportCapture out;
    // Only the frame and IPFIX layers in detail (-O): the other layers print one summary line,
    // which is where the source address is read.
    const std::string cmd = "timeout " + std::to_string(timeout.count() / 1000 + 1) + " tshark -n -r '" +
                            pcap.string() + "' -d udp.port==" + std::to_string(port) + ",cflow -O frame,cflow -V 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) {
        out.error = "cannot run: " + cmd;
        return out;
    }
    ExportFrame* frame = nullptr;
    unsigned set_id = 0;
    size_t set_records = 0;  // records printed in the current data set
    auto end_set = [&] {
        if (frame != nullptr && set_id >= 256 && set_records == 0) ++frame->undecoded_sets;
        set_id = 0;
        set_records = 0;
    };
    char* buf = nullptr;
    size_t cap = 0;
    std::string last_error_line;
    while (getline(&buf, &cap, p) > 0) {
        const std::string_view raw(buf);
        const std::string_view s = trim(raw);
        if (starts_with(raw, "Frame ")) {
            end_set();
            frame = &out.frames.emplace_back();
            continue;
        }
        if (frame == nullptr) {
            last_error_line = std::string(s);
            continue;
        }
        if (starts_with(s, "Epoch Time: ") || starts_with(s, "Epoch Arrival Time: ")) {
            frame->time_s = std::strtod(after_colon(s).c_str(), nullptr);
        } else if (starts_with(raw, "Internet Protocol Version 4, Src: ")) {
            const std::string_view rest = raw.substr(std::strlen("Internet Protocol Version 4, Src: "));
            frame->src = std::string(rest.substr(0, rest.find(',')));
        } else if (starts_with(s, "FlowSet Id: ")) {
            end_set();
            set_id = static_cast<unsigned>(std::max(last_parenthesised(s), 0L));
            if (set_id == 2) ++frame->template_sets;
        } else if (starts_with(s, "Flow Id: ") && set_id >= 256) {
            ExportRecord& r = frame->records.emplace_back();
            r.set_id = set_id;
            r.flow_id = static_cast<uint32_t>(std::strtoul(after_colon(s).c_str(), nullptr, 10));
            ++set_records;
        } else if ((set_id == 260 || set_id == 261) && starts_with(s, "Flow ") && s.size() > 5 &&
                   std::isdigit(static_cast<unsigned char>(s[5]))) {
            // Loss and watermark records name no flow: tshark's "Flow N" line starts each.
            frame->records.emplace_back().set_id = set_id;
            ++set_records;
        } else if (!frame->records.empty() && set_records > 0 &&
                   starts_with(s, "Enterprise Private entry: (Example Enterprise Number for Documentation Use) Type ")) {
            // "Enterprise Private entry: (Example Enterprise Number for Documentation Use) Type 3:
            // Value (hex bytes): 00 00 00 2a" (tshark knows the PEN's name, not our elements).
            static constexpr std::string_view kIndex = "Documentation Use) Type 3: Value (hex bytes): ";
            static constexpr std::string_view kFlags = "Documentation Use) Type 1: Value (hex bytes): ";
            ExportRecord& r = frame->records.back();
            auto hex_after = [&](std::string_view key) -> std::string {
                const size_t at = s.find(key);
                if (at == std::string_view::npos) return {};
                std::string hex(s.substr(at + key.size()));
                std::erase(hex, ' ');
                return hex;
            };
            if (const std::string hex = hex_after(kIndex); r.is_packet() && hex.size() == 8)
                r.packet_index = std::strtoll(hex.c_str(), nullptr, 16);
            if (const std::string hex = hex_after(kFlags); hex.size() == 2)
                r.replayed = (std::strtol(hex.c_str(), nullptr, 16) & 0x08) != 0;
        } else if (!frame->records.empty() && (frame->records.back().is_packet() || frame->records.back().is_watermark()) &&
                   set_records > 0 && starts_with(s, "Observation Time Nanoseconds: ")) {
            frame->records.back().time_ns = parse_utc_ns(after_colon(s));
        } else if (!frame->records.empty() && frame->records.back().is_flow_end() && set_records > 0) {
            ExportRecord& r = frame->records.back();
            // "Packets: 1" and "Packets: 1 (Reverse Type 2 PKTS)"; "EndTime: May 31, 2024 ..."
            if (starts_with(s, "Packets: ")) r.end_packets += std::strtoull(after_colon(s).c_str(), nullptr, 10);
            else if (starts_with(s, "EndTime: ")) r.time_ns = parse_utc_ns(after_colon(s));
        } else if (!frame->records.empty() && frame->records.back().is_flow_start() && set_records > 0) {
            ExportRecord& r = frame->records.back();
            if (starts_with(s, "StartTime: ")) r.time_ns = parse_utc_ns(after_colon(s));
            else if (starts_with(s, "Protocol: ")) r.proto = static_cast<int>(last_parenthesised(s));
            else if (starts_with(s, "SrcAddr: ")) r.src = after_colon(s);
            else if (starts_with(s, "DstAddr: ")) r.dst = after_colon(s);
            else if (starts_with(s, "SrcPort: ")) r.sport = std::atoi(after_colon(s).c_str());
            else if (starts_with(s, "DstPort: ")) r.dport = std::atoi(after_colon(s).c_str());
        }
    }
    end_set();
    free(buf);
    const int st = pclose(p);
    if (st != 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        out.error = cmd + ": exit status " + std::to_string(st) + " " + last_error_line;
    return out;
}

}  // namespace angel::itest
