// Walks the records of a classic pcap file held in memory (a mapping of the replay file),
// handing out pointers into it: no copy and no system call per packet, where libpcap's reader
// costs two fread()s and a copy out of the stdio buffer for each one.
//
// It reproduces what libpcap 1.10's own reader returns record by record, including where it
// stops on a damaged file, for the files classic_pcap_format() accepts. libpcap still opens
// and validates the file and supplies the link type and snapshot length.
#pragma once
#include <pcap/pcap.h>

#include <cstddef>
#include <cstdint>
#include <optional>

namespace angel {

struct PcapFileFormat {
    // Where a file stores the captured length and the wire length: version 2.3 changed their
    // order, and some 2.3 writers kept the old one (libpcap then guesses per record).
    enum class Lengths : uint8_t { caplen_first, len_first, guess };
    bool swapped = false;   // written in the other byte order
    bool nano = false;      // nanosecond timestamps; microseconds otherwise
    Lengths lengths = Lengths::caplen_first;
    uint32_t snapshot = 0;  // libpcap's snapshot length for the file (pcap_snapshot())
};

// How to read the classic pcap file open on p (a savefile handle) whose first four bytes are
// magic, as stored. Empty for anything our reader would not return exactly as libpcap does:
// pcapng, the Kuznetzov and other variant formats, and link types whose packets libpcap
// rewrites or allows to be larger than usual.
std::optional<PcapFileFormat> classic_pcap_format(pcap_t* p, const uint8_t magic[4]);

struct PcapRecord {
    uint64_t ts_ns;
    uint32_t wire_len;
    uint32_t caplen;  // at most the file's snapshot length, as libpcap reports it
    const uint8_t* data;
};

class PcapFileReader {
public:
    static constexpr size_t kFileHeader = 24;
    static constexpr size_t kRecordHeader = 16;
    // libpcap refuses a record longer than this (for the link types we read) as damaged.
    static constexpr uint32_t kMaxCaplen = 262144;

    // file/size: the whole file, header included; records are read from kFileHeader on.
    // fd (optional): the file itself, to check its length when a record header has zero
    // lengths -- what the tail of the last page shows when the file was cut shorter while
    // mapped -- so that such a tail ends the input (see cut()) instead of passing for empty
    // packets.
    PcapFileReader(const uint8_t* file, size_t size, const PcapFileFormat& fmt, int fd = -1);

    // The next record; false at the end of the file or at the first damaged record (a cut
    // header or body, an impossible length), where libpcap ends too. Stays false after.
    bool next(PcapRecord& out);
    // next() ended because the file had become shorter than when it was mapped.
    bool cut() const { return cut_; }

private:
    bool stop() {
        pos_ = size_;
        return false;
    }
    bool cut_before(size_t end) const;  // the file is now shorter than end bytes
    const uint8_t* file_;
    size_t size_;
    size_t pos_;
    PcapFileFormat fmt_;
    int fd_;
    bool cut_ = false;
};

}  // namespace angel
