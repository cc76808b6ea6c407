#include "capd/pcap_file_reader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace angel {

namespace {

constexpr uint32_t kMicroMagic = 0xa1b2c3d4;
constexpr uint32_t kNanoMagic = 0xa1b23c4d;

// Link types whose packets libpcap 1.10 hands out as stored and whose largest sane record is
// kMaxCaplen. Others are left to libpcap: it byte-swaps pseudo-headers in place for swapped
// files (pflog, Linux cooked capture with CAN, USB, nflog), fixes up USB lengths, and allows
// larger records for D-Bus, EBHSCR and USBPcap. Linux cooked capture is safe unswapped.
bool passed_through(int dlt, bool swapped) {
    switch (dlt) {
        case DLT_NULL:
        case DLT_EN10MB:
        case DLT_RAW:
        case DLT_LOOP:
        case DLT_IPV4:
        case DLT_IPV6:
            return true;
        case DLT_LINUX_SLL:
        case DLT_LINUX_SLL2:
            return !swapped;
        default:
            return false;
    }
}

}  // namespace

std::optional<PcapFileFormat> classic_pcap_format(pcap_t* p, const uint8_t magic[4]) {
    uint32_t m;
    std::memcpy(&m, magic, sizeof m);
    const bool swapped = pcap_is_swapped(p) == 1;
    if (swapped) m = __builtin_bswap32(m);
    if (m != kMicroMagic && m != kNanoMagic) return std::nullopt;
    if (!passed_through(pcap_datalink(p), swapped)) return std::nullopt;
    const int snapshot = pcap_snapshot(p);
    if (snapshot <= 0) return std::nullopt;
    PcapFileFormat f;
    f.swapped = swapped;
    f.nano = m == kNanoMagic;
    f.snapshot = static_cast<uint32_t>(snapshot);
    // libpcap accepts versions 2.0 to 2.4 and DG/UX's 543.0, which also stores len first.
    const int major = pcap_major_version(p), minor = pcap_minor_version(p);
    if (major == 543 || (major == 2 && minor < 3))
        f.lengths = PcapFileFormat::Lengths::len_first;
    else if (major == 2 && minor == 3)
        f.lengths = PcapFileFormat::Lengths::guess;
    return f;
}

PcapFileReader::PcapFileReader(const uint8_t* file, size_t size, const PcapFileFormat& fmt, int fd)
    : file_(file), size_(size), pos_(std::min(size, kFileHeader)), fmt_(fmt), fd_(fd) {}

bool PcapFileReader::cut_before(size_t end) const {
    struct stat st{};
    return fd_ >= 0 && fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < end;
}

bool PcapFileReader::next(PcapRecord& out) {
    const size_t left = size_ - pos_;
    // Nothing left is the end of the file; a partial header ends libpcap's reading with an error.
    if (left < kRecordHeader) return stop();
    uint32_t h[4];  // seconds, fraction, caplen, len
    std::memcpy(h, file_ + pos_, sizeof h);
    // Zero lengths (a real packet has some): the zeros of a cut file's last page, from any
    // point in this header on? One fstat tells.
    if ((h[2] | h[3]) == 0 && cut_before(pos_ + kRecordHeader)) {
        cut_ = true;
        return stop();
    }
    if (fmt_.swapped)
        for (uint32_t& v : h) v = __builtin_bswap32(v);
    uint32_t caplen = h[2], len = h[3];
    if (fmt_.lengths == PcapFileFormat::Lengths::len_first ||
        (fmt_.lengths == PcapFileFormat::Lengths::guess && caplen > len))
        std::swap(caplen, len);
    // libpcap reads the whole record even when it is longer than the snapshot length (and
    // reports only snapshot bytes), so a record must fit in the file whole.
    if (caplen > kMaxCaplen || left - kRecordHeader < caplen) return stop();
    // libpcap 1.10 takes the timestamp fields as signed 32-bit values, except in a swapped
    // file where its byte swap yields them unsigned (measured), and scales a microsecond
    // fraction up; the sum then wraps as capd's uint64 arithmetic on its header does, so
    // fields with the top bit set give the same (odd) values on both paths.
    const int64_t sec = fmt_.swapped ? int64_t{h[0]} : int64_t{static_cast<int32_t>(h[0])};
    const int64_t frac = (fmt_.swapped ? int64_t{h[1]} : int64_t{static_cast<int32_t>(h[1])}) * (fmt_.nano ? 1 : 1000);
    out.ts_ns = static_cast<uint64_t>(sec) * 1000000000ull + static_cast<uint64_t>(frac);
    out.wire_len = len;
    out.caplen = std::min(caplen, fmt_.snapshot);
    out.data = file_ + pos_ + kRecordHeader;
    pos_ += kRecordHeader + caplen;
    return true;
}

}  // namespace angel
