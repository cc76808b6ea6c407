// Every frame of every capture in ../shared/pcaps/*/ through the parser: no crash (and, in the
// sanitizer build, no ASan/UBSan report), every frame counted once, and sane totals per set.
// Files libpcap itself rejects (the malformed/ set has many) are counted, not failures.
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/packet/parser.hpp"

namespace fs = std::filesystem;
using angel::PacketParser;
using angel::ParsedPacket;
using angel::ParseStatus;

namespace {

struct SetTotals {
    int files = 0;
    int rejected = 0;        // libpcap could not open the file
    int stopped_early = 0;   // libpcap reported an error part-way through
    uint64_t frames = 0;
    uint64_t by_status[static_cast<size_t>(ParseStatus::count_)] = {};
    uint64_t ok() const { return by_status[static_cast<size_t>(ParseStatus::ok)]; }
};

fs::path pcaps_dir() {
    const char* env = std::getenv("ANGEL_SOURCE_DIR");
    return fs::path(env != nullptr ? env : ANGEL_SOURCE_DIR) / ".." / "shared" / "pcaps";
}

// Parses every frame of one file with a fresh parser (fragment state does not leak between
// files); adds to the set's totals.
void parse_file(const fs::path& file, SetTotals& totals) {
    ++totals.files;
    char err[PCAP_ERRBUF_SIZE] = {};
    pcap_t* p = pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    if (p == nullptr) {
        ++totals.rejected;
        return;
    }
    PacketParser parser;
    const int linktype = pcap_datalink(p);
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    int rc;
    uint64_t frames = 0;
    while ((rc = pcap_next_ex(p, &h, &data)) == 1) {
        ParsedPacket pk;
        const uint64_t ts = uint64_t(h->ts.tv_sec) * 1000000000ull + uint64_t(h->ts.tv_usec);
        const ParseStatus s = parser.parse(linktype, data, h->caplen, ts, pk);
        ++totals.by_status[static_cast<size_t>(s)];
        ++frames;
        if (s == ParseStatus::ok) {
            EXPECT_TRUE(pk.ip_version == 4 || pk.ip_version == 6) << file << " frame " << frames;
            EXPECT_LT(pk.l3_offset, h->caplen) << file << " frame " << frames;
        }
    }
    if (rc == -1) ++totals.stopped_early;
    pcap_close(p);
    totals.frames += frames;
    uint64_t counted = 0;
    for (uint64_t n : parser.counters().by_status) counted += n;
    EXPECT_EQ(counted, frames) << file << ": every frame is counted exactly once";
}

std::map<std::string, SetTotals> parse_all() {
    std::map<std::string, SetTotals> sets;
    std::vector<fs::path> dirs;
    for (const auto& e : fs::directory_iterator(pcaps_dir()))
        if (e.is_directory()) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const fs::path& dir : dirs) {
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(dir))
            if (e.is_regular_file()) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        SetTotals& t = sets[dir.filename().string()];
        for (const fs::path& f : files) parse_file(f, t);
    }
    return sets;
}

void print(const std::string& name, const SetTotals& t) {
    std::printf("%-10s files %3d rejected %3d stopped-early %2d frames %7llu:", name.c_str(),
                t.files, t.rejected, t.stopped_early, static_cast<unsigned long long>(t.frames));
    for (size_t i = 0; i < static_cast<size_t>(ParseStatus::count_); ++i)
        if (t.by_status[i] != 0)
            std::printf(" %s=%llu", angel::parse_status_name(static_cast<ParseStatus>(i)),
                        static_cast<unsigned long long>(t.by_status[i]));
    std::printf("\n");
}

double share(uint64_t part, uint64_t whole) { return whole == 0 ? 0.0 : double(part) / double(whole); }

TEST(PcapCorpus, EveryFrameOfEveryCaptureParses) {
    const fs::path dir = pcaps_dir();
    ASSERT_TRUE(fs::is_directory(dir))
        << "the shared capture folder is missing: " << dir
        << " (the tests need ../shared/pcaps next to the source tree)";
    const std::map<std::string, SetTotals> sets = parse_all();
    for (const auto& [name, t] : sets) print(name, t);

    for (const char* required : {"real", "edge", "malformed", "big", "stress"})
        ASSERT_TRUE(sets.count(required)) << "pcaps/" << required << " is missing";

    // Real traffic and valid edge cases: libpcap reads every file, and most frames are IP
    // packets we parse (real/: 95.8% today, the rest is ARP, LLDP, STP, ... -- tshark agrees
    // frame by frame, see tshark_compare_test); almost nothing there is malformed.
    // (Two edge/ pcapng files mix link types; libpcap stops at the second interface.)
    for (const char* name : {"real", "edge", "big"}) {
        const SetTotals& t = sets.at(name);
        EXPECT_GT(t.frames, 0u) << name;
        EXPECT_EQ(t.rejected, 0) << name << ": libpcap rejected a file";
        EXPECT_GE(share(t.ok(), t.frames), 0.9) << name << ": too few frames parsed ok";
        const uint64_t malformed = t.frames - t.ok() - t.by_status[size_t(ParseStatus::not_ip)];
        EXPECT_LE(share(malformed, t.frames), 0.001) << name << ": malformed frames in valid traffic";
    }
    // The malformed set: libpcap rejects some files; of the rest, some frames are malformed
    // and counted by reason, and still most frames hold a readable IP packet.
    const SetTotals& bad = sets.at("malformed");
    EXPECT_GT(bad.rejected, 0);
    EXPECT_GT(bad.frames, 0u);
    EXPECT_GT(bad.frames - bad.ok() - bad.by_status[size_t(ParseStatus::not_ip)], 0u);
    // Attack traffic (extension-header floods, fragment sprays) is still IP.
    EXPECT_GE(share(sets.at("stress").ok(), sets.at("stress").frames), 0.5);
}

}  // namespace
