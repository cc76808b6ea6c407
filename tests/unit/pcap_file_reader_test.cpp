// capd's in-place replay reader (capd/pcap_file_reader) against libpcap itself: for every
// classic pcap file in ../shared/pcaps/*/ and for synthetic files cut or damaged anywhere, the
// same packets (timestamp in ns, wire length, captured length, bytes) in the same order, ending
// where libpcap ends. Then CaptureSource, which picks the reader for such files: the same
// packets as libpcap's pcap_next_ex with capd's snaplen applied.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "capd/capture_source.hpp"
#include "capd/mapped_file.hpp"
#include "capd/pcap_file_reader.hpp"

namespace fs = std::filesystem;
using namespace angel;

namespace {

fs::path pcaps_dir() {
    const char* env = std::getenv("ANGEL_SOURCE_DIR");
    return fs::path(env != nullptr ? env : ANGEL_SOURCE_DIR) / ".." / "shared" / "pcaps";
}

std::vector<fs::path> corpus_files() {
    std::vector<fs::path> files;
    for (const auto& d : fs::directory_iterator(pcaps_dir()))
        if (d.is_directory())
            for (const auto& e : fs::directory_iterator(d.path()))
                if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    return files;
}

struct Pcap {
    pcap_t* p = nullptr;
    explicit Pcap(const fs::path& f) {
        char err[PCAP_ERRBUF_SIZE] = {};
        p = pcap_open_offline_with_tstamp_precision(f.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    }
    ~Pcap() {
        if (p) pcap_close(p);
    }
};

uint64_t ts_ns(const pcap_pkthdr* h) {
    return static_cast<uint64_t>(h->ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(h->ts.tv_usec);
}

bool read_magic(const fs::path& f, uint8_t magic[4]) {
    std::ifstream in(f, std::ios::binary);
    return static_cast<bool>(in.read(reinterpret_cast<char*>(magic), 4));
}

bool classic_magic(const uint8_t m[4]) {
    uint32_t v;
    std::memcpy(&v, m, 4);
    for (uint32_t x : {0xa1b2c3d4u, 0xa1b23c4du})
        if (v == x || v == __builtin_bswap32(x)) return true;
    return false;
}

struct Outcome {
    bool compared = false;  // the reader took the file
    uint64_t packets = 0;
    bool libpcap_error = false;  // libpcap ended on a damaged record
};

// Reads f with libpcap and with PcapFileReader side by side; every difference fails the test.
Outcome compare_reader(const fs::path& f) {
    Outcome o;
    Pcap lp(f);
    uint8_t magic[4];
    if (!lp.p || !read_magic(f, magic)) return o;
    const auto fmt = classic_pcap_format(lp.p, magic);
    if (!fmt) return o;
    const int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
    MappedFile map;
    const bool mapped = fd >= 0 && map.map(fd);
    if (fd >= 0) close(fd);
    EXPECT_TRUE(mapped) << f;
    if (!mapped) return o;
    o.compared = true;
    PcapFileReader rd(map.data(), map.size(), *fmt);
    for (;; ++o.packets) {
        pcap_pkthdr* h = nullptr;
        const u_char* d = nullptr;
        const int rc = pcap_next_ex(lp.p, &h, &d);
        PcapRecord r{};
        const bool got = rd.next(r);
        if (rc != 1) {
            o.libpcap_error = rc == PCAP_ERROR;
            EXPECT_FALSE(got) << f << ": libpcap ends (" << rc << ") before record " << o.packets;
            EXPECT_FALSE(rd.next(r)) << f << ": the end is final";
            return o;
        }
        if (!got) {
            ADD_FAILURE() << f << ": reader ended, libpcap has record " << o.packets;
            return o;
        }
        EXPECT_EQ(r.ts_ns, ts_ns(h)) << f << " record " << o.packets;
        EXPECT_EQ(r.wire_len, h->len) << f << " record " << o.packets;
        EXPECT_EQ(r.caplen, h->caplen) << f << " record " << o.packets;
        if (r.caplen == h->caplen) {
            EXPECT_EQ(std::memcmp(r.data, d, h->caplen), 0) << f << " record " << o.packets;
        }
        if (::testing::Test::HasFailure()) return o;  // one report per file is enough
    }
}

std::unique_ptr<LiveConfig> replay_config(const fs::path& f, uint32_t snaplen) {
    auto cfg = std::make_unique<LiveConfig>();  // zeroed
    std::snprintf(cfg->replay_file, sizeof cfg->replay_file, "%s", f.c_str());
    cfg->snaplen = snaplen;
    return cfg;
}

// CaptureSource against pcap_next_ex, with capd's snaplen applied to libpcap's caplen.
// Returns the packets seen, or -1 when libpcap cannot open the file.
long compare_source(const fs::path& f, uint32_t snaplen, bool* in_place = nullptr) {
    Pcap lp(f);
    if (!lp.p) return -1;
    const auto cfg = replay_config(f, snaplen);
    CaptureSource src(*cfg);
    if (in_place) *in_place = src.reads_in_place();
    for (long n = 0;; ++n) {
        pcap_pkthdr* h = nullptr;
        const u_char* d = nullptr;
        const int rc = pcap_next_ex(lp.p, &h, &d);
        CapturedPacket p{};
        const auto r = src.next(p, 0);
        if (rc != 1) {
            EXPECT_EQ(r, CaptureSource::Result::end) << f << ": libpcap ends before packet " << n;
            return n;
        }
        if (r != CaptureSource::Result::packet) {
            ADD_FAILURE() << f << ": CaptureSource ended, libpcap has packet " << n;
            return n;
        }
        const uint32_t caplen = std::min(h->caplen, snaplen);
        EXPECT_EQ(p.ts_ns, ts_ns(h)) << f << " packet " << n;
        EXPECT_EQ(p.wire_len, h->len) << f << " packet " << n;
        EXPECT_EQ(p.caplen, caplen) << f << " packet " << n;
        EXPECT_EQ(p.linktype, pcap_datalink(lp.p)) << f << " packet " << n;
        if (p.caplen == caplen) {
            EXPECT_EQ(std::memcmp(p.data, d, caplen), 0) << f << " packet " << n;
        }
        if (::testing::Test::HasFailure()) return n;
    }
}

// A synthetic classic pcap file, written in either byte order, with records as given (lengths
// are written as-is, so they may lie).
struct Rec {
    uint32_t sec, frac, caplen, len;
    uint32_t body;  // bytes of data actually written
};
struct FileSpec {
    bool big_endian = false;
    bool nano = false;
    uint16_t major = 2, minor = 4;
    uint32_t snaplen = 65535;
    uint32_t linktype = 1;
};

std::vector<uint8_t> build(const FileSpec& s, const std::vector<Rec>& recs) {
    std::vector<uint8_t> out;
    auto u32 = [&](uint32_t v) {
        for (int i = 0; i < 4; ++i) out.push_back(uint8_t(s.big_endian ? v >> (24 - 8 * i) : v >> (8 * i)));
    };
    auto u16 = [&](uint16_t v) {
        out.push_back(uint8_t(s.big_endian ? v >> 8 : v));
        out.push_back(uint8_t(s.big_endian ? v : v >> 8));
    };
    u32(s.nano ? 0xa1b23c4d : 0xa1b2c3d4);
    u16(s.major);
    u16(s.minor);
    u32(0);
    u32(0);
    u32(s.snaplen);
    u32(s.linktype);
    uint8_t fill = 0;
    for (const Rec& r : recs) {
        u32(r.sec);
        u32(r.frac);
        u32(r.caplen);
        u32(r.len);
        for (uint32_t i = 0; i < r.body; ++i) out.push_back(fill++);
    }
    return out;
}

// Ethernet + IPv4 + UDP or TCP headers.
std::vector<Rec> plain_records(int n) {
    std::vector<Rec> recs;
    for (int i = 0; i < n; ++i) {
        const uint32_t size = 60 + uint32_t(i * 37 % 200);
        recs.push_back({1700000000u + uint32_t(i), uint32_t(i * 123457 % 1000000), size, size + uint32_t(i % 3), size});
    }
    return recs;
}

struct TempFile {
    fs::path path;
    explicit TempFile(const std::vector<uint8_t>& bytes, size_t keep = SIZE_MAX) {
        char tmpl[] = "/tmp/angel-pcap-reader-XXXXXX";
        const int fd = mkstemp(tmpl);
        path = tmpl;
        const size_t n = std::min(keep, bytes.size());
        if (fd >= 0) {
            EXPECT_EQ(write(fd, bytes.data(), n), static_cast<ssize_t>(n));
            close(fd);
        }
    }
    ~TempFile() { fs::remove(path); }
};

TEST(PcapFileReader, MatchesLibpcapOnEveryClassicCorpusFile) {
    ASSERT_TRUE(fs::is_directory(pcaps_dir())) << pcaps_dir();
    std::set<std::string> compared;
    std::vector<std::string> left_to_libpcap;
    uint64_t packets = 0;
    int ended_damaged = 0;
    for (const fs::path& f : corpus_files()) {
        uint8_t magic[4];
        Pcap lp(f);
        if (!lp.p || !read_magic(f, magic) || !classic_magic(magic)) continue;
        const Outcome o = compare_reader(f);
        if (!o.compared) {
            left_to_libpcap.push_back(f.filename().string() + " (link type " + std::to_string(pcap_datalink(lp.p)) + ")");
            continue;
        }
        compared.insert(f.filename().string());
        packets += o.packets;
        ended_damaged += o.libpcap_error;
        if (HasFailure()) return;
    }
    std::printf("compared %zu classic files, %llu packets; %d end on a damaged record\n", compared.size(),
                static_cast<unsigned long long>(packets), ended_damaged);
    for (const std::string& s : left_to_libpcap) std::printf("left to libpcap: %s\n", s.c_str());
    // Big-endian (one of them version 2.1, lengths stored the old way round), nanoseconds.
    for (const char* must : {"arkime__bigendian.pcap", "sv__nfs3-01__input.pcap", "libtrace__100_packetsns.pcap",
                             "tcpdump__LINKTYPE_RAW_ipv4.pcap", "ppp__example.pcap"})
        EXPECT_TRUE(compared.count(must)) << must << " was not compared";
    EXPECT_GE(compared.size(), 150u);
    EXPECT_GT(ended_damaged, 0) << "the malformed set should end some files on a damaged record";
    EXPECT_LE(left_to_libpcap.size(), 2u);
}

// A file cut at every byte: the reader ends exactly where libpcap ends (a cut header or body
// is an error for libpcap, a cut at a record boundary is the end of the file).
TEST(PcapFileReader, CutAnywhereEndsWhereLibpcapEnds) {
    for (const bool big : {false, true}) {
        FileSpec s;
        s.big_endian = big;
        s.nano = big;
        const std::vector<uint8_t> whole = build(s, plain_records(6));
        for (size_t keep = 24; keep <= whole.size(); ++keep) {
            TempFile t(whole, keep);
            const Outcome o = compare_reader(t.path);
            ASSERT_TRUE(o.compared) << keep;
            ASSERT_FALSE(HasFailure()) << "cut at " << keep;
            ASSERT_EQ(compare_source(t.path, 65535), static_cast<long>(o.packets)) << "cut at " << keep;
        }
    }
}

// Lengths that libpcap treats specially: a record longer than the file's snapshot length (read
// whole, reported cut to the snapshot length), longer than libpcap's limit or than the rest of
// the file (the end), the old length order of versions 2.0-2.3, and negative timestamps.
TEST(PcapFileReader, DamagedLengthsAndOddHeadersMatchLibpcap) {
    struct Case {
        const char* what;
        FileSpec spec;
        std::vector<Rec> recs;
        uint64_t packets;  // what libpcap returns, checked too so the case tests what it says
    };
    FileSpec snap100;
    snap100.snaplen = 100;
    FileSpec be_nano;
    be_nano.big_endian = true;
    be_nano.nano = true;
    FileSpec v22;
    v22.minor = 2;
    FileSpec v23_be;
    v23_be.minor = 3;
    v23_be.big_endian = true;
    FileSpec snap0;
    snap0.snaplen = 0;  // libpcap then assumes its maximum
    const std::vector<Case> cases = {
        {"caplen over the file's snaplen", snap100, {{1, 2, 60, 60, 60}, {1, 3, 300, 300, 300}, {1, 4, 60, 60, 60}}, 3},
        {"caplen over the snaplen, cut short", snap100, {{1, 2, 60, 60, 60}, {1, 3, 300, 300, 150}}, 1},
        {"caplen at libpcap's limit", {}, {{1, 2, 60, 60, 60}, {1, 3, 262144, 262144, 262144}, {1, 4, 9, 9, 9}}, 3},
        {"caplen over libpcap's limit", snap0, {{1, 2, 60, 60, 60}, {1, 3, 262145, 262145, 262145}, {1, 4, 9, 9, 9}}, 1},
        {"caplen past the end of the file", {}, {{1, 2, 60, 60, 60}, {1, 3, 1000, 1000, 10}}, 1},
        {"absurd caplen", be_nano, {{1, 2, 60, 60, 60}, {1, 3, 0xfffffff0u, 60, 60}, {1, 4, 9, 9, 9}}, 1},
        {"zero caplen", be_nano, {{1, 2, 0, 60, 0}, {1, 3, 60, 60, 60}}, 2},
        {"version 2.2: len stored first", v22, {{1, 2, 80, 60, 60}, {1, 3, 200, 100, 100}}, 2},
        {"version 2.3: order guessed per record", v23_be, {{1, 2, 60, 80, 60}, {1, 3, 80, 60, 60}}, 2},
        {"top bits set in the timestamp fields", {}, {{0xF0000000u, 0xFFFFFFF0u, 9, 9, 9}, {5, 0x80000000u, 9, 9, 9}, {0x7FFFFFFF, 999999, 9, 9, 9}}, 3},
        {"top bits set, microseconds, big-endian", v23_be, {{0xF0000000u, 0xFFFFFFF0u, 9, 9, 9}, {5, 0x80000000u, 9, 9, 9}}, 2},
        {"top bits set, nanoseconds, big-endian", be_nano, {{0xF0000000u, 0xFFFFFFF0u, 9, 9, 9}, {5, 0x80000000u, 9, 9, 9}}, 2},
    };
    for (const Case& c : cases) {
        TempFile t(build(c.spec, c.recs));
        const Outcome o = compare_reader(t.path);
        ASSERT_TRUE(o.compared) << c.what;
        EXPECT_EQ(o.packets, c.packets) << c.what;
        ASSERT_FALSE(HasFailure()) << c.what;
        bool in_place = false;
        EXPECT_EQ(compare_source(t.path, 128, &in_place), static_cast<long>(c.packets)) << c.what;
        EXPECT_TRUE(in_place) << c.what;
        ASSERT_FALSE(HasFailure()) << c.what;
    }
}

// Every file libpcap opens, classic or not, through CaptureSource: classic files are read in
// place, the rest (pcapng) through libpcap, and both give pcap_next_ex's packets with capd's
// snaplen applied.
TEST(CaptureSourceReplay, MatchesLibpcapOnEveryCorpusFile) {
    int in_place_files = 0, libpcap_files = 0;
    for (const fs::path& f : corpus_files()) {
        bool in_place = false;
        if (compare_source(f, 96, &in_place) < 0) continue;
        ASSERT_FALSE(HasFailure()) << f;
        uint8_t magic[4];
        ASSERT_TRUE(read_magic(f, magic));
        if (!classic_magic(magic)) {
            EXPECT_FALSE(in_place) << f;
        }
        (in_place ? in_place_files : libpcap_files)++;
    }
    EXPECT_GE(in_place_files, 150);
    EXPECT_GT(libpcap_files, 0);  // the pcapng files
}

}  // namespace

// A replay file cut shorter while capd has it mapped: reading past the new end raises SIGBUS,
// which must become one clear line and exit EX_IOERR (ctld restarts capd, which resumes after
// what it published), not a crash. A SIGBUS elsewhere still kills as before.
TEST(MappedFile, TruncatedWhileMappedExitsCleanly) {
    char path[] = "/tmp/angel-mapped-XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    std::vector<char> zeros(1 << 20, 0);
    ASSERT_EQ(write(fd, zeros.data(), zeros.size()), static_cast<ssize_t>(zeros.size()));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        angel::MappedFile m;
        if (!m.map(fd)) _exit(3);
        m.exit_cleanly_if_truncated(path);
        if (ftruncate(fd, 4096) != 0) _exit(4);
        volatile uint8_t sink = m.data()[800000];  // past the new end: SIGBUS
        (void)sink;
        _exit(0);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    unlink(path);
    close(fd);
    ASSERT_TRUE(WIFEXITED(st)) << "died of signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    EXPECT_EQ(WEXITSTATUS(st), EX_IOERR);

    const pid_t other = fork();
    ASSERT_GE(other, 0);
    if (other == 0) {
        char p2[] = "/tmp/angel-mapped-XXXXXX";
        const int fd2 = mkstemp(p2);
        if (fd2 < 0 || write(fd2, zeros.data(), 8192) != 8192) _exit(3);
        angel::MappedFile m;
        if (!m.map(fd2)) _exit(3);
        m.exit_cleanly_if_truncated(p2);
        unlink(p2);
        raise(SIGBUS);  // not a fault in the mapping
        _exit(0);
    }
    ASSERT_EQ(waitpid(other, &st, 0), other);
    EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
}

// Cut shorter while mapped, inside the last page: the rest of that page reads as zeros, not
// as a fault. With the file descriptor the reader checks the length when a header reads as all
// zeros and ends there; without one (as before) those zeros passed for empty packets.
TEST(PcapFileReader, ZerosAfterTheNewEndOfACutFileEndTheInput) {
    const std::vector<uint8_t> whole = build(FileSpec{}, plain_records(3));
    TempFile t(whole);
    const int fd = open(t.path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    angel::MappedFile m;
    ASSERT_TRUE(m.map(fd));
    ASSERT_LT(whole.size(), 4096u);  // one page: the cut region reads as zeros, no SIGBUS
    PcapFileFormat fmt;
    fmt.snapshot = 65535;
    angel::PcapFileReader with_fd(m.data(), m.size(), fmt, fd), without_fd(m.data(), m.size(), fmt);
    PcapRecord r{};
    ASSERT_TRUE(with_fd.next(r));
    ASSERT_TRUE(without_fd.next(r));
    const size_t first_end = 24 + 16 + plain_records(3)[0].caplen;
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(first_end)), 0);
    EXPECT_FALSE(with_fd.next(r)) << "a record from the zeros past the new end";
    EXPECT_TRUE(with_fd.cut());
    EXPECT_TRUE(without_fd.next(r));  // what happened before: an empty record at time 0
    EXPECT_EQ(r.caplen, 0u);
    // A cut inside the next record's header (its time kept, its lengths zeroed) ends it too.
    for (size_t into : {4u, 8u}) {
        ASSERT_EQ(ftruncate(fd, static_cast<off_t>(whole.size())), 0);
        ASSERT_EQ(pwrite(fd, whole.data(), whole.size(), 0), static_cast<ssize_t>(whole.size()));
        angel::PcapFileReader again(m.data(), m.size(), fmt, fd);
        ASSERT_TRUE(again.next(r));
        ASSERT_EQ(ftruncate(fd, static_cast<off_t>(first_end + into)), 0);
        EXPECT_FALSE(again.next(r)) << "cut " << into << " bytes into the header";
        EXPECT_TRUE(again.cut());
    }
    close(fd);
}
