// capd's packet sources: a replay file or one or more live interfaces, behind one interface
// so the capture loop does not care which. All libpcap use lives here.
#pragma once
#include <pcap/pcap.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "capd/mapped_file.hpp"
#include "capd/pcap_file_reader.hpp"
#include "shm/live_config.hpp"

namespace angel {

struct CapturedPacket {
    uint64_t ts_ns;
    uint32_t wire_len;
    uint32_t caplen;
    int linktype;
    const uint8_t* data;
};

struct PcapCounters {
    uint64_t received = 0, dropped = 0, ifdropped = 0;
};

class CaptureSource {
public:
    // Opens the replay file or the live interfaces of cfg. No capture filter: the customer
    // set is applied by procd, after every encapsulation (shm/customer_set.hpp).
    // Throws std::runtime_error with a one-line message on failure.
    explicit CaptureSource(const LiveConfig& cfg);
    ~CaptureSource();
    CaptureSource(const CaptureSource&) = delete;
    CaptureSource& operator=(const CaptureSource&) = delete;

    enum class Result { packet, none, end };
    // Live: waits up to timeout_ms for a packet (Result::none when there is none).
    // Replay: Result::end at the end of the file.
    Result next(CapturedPacket& out, int timeout_ms);
    // Live only: sums pcap_stats over the interfaces.
    PcapCounters stats() const;
    // Live only, at an orderly stop: the kernel stops queueing new packets to the capture
    // (and counting them as received); what it already queued can still be read with next().
    void stop_accepting();
    bool live() const { return live_; }
    // Replay from a regular file: reads never wait for data (unlike a pipe or FIFO).
    bool regular_file() const { return regular_file_; }
    // Replay reads the file's records in place from a mapping instead of through libpcap.
    bool reads_in_place() const { return file_reader_.has_value(); }

private:
    struct Handle {
        pcap_t* p = nullptr;
        int fd = -1;
        int linktype = 0;
        bool nano = false;
        std::string name;
        // The packet read ahead on this handle, for merging in timestamp order.
        bool has_pending = false;
        CapturedPacket pending{};
    };
    bool fill_pending(Handle& h);
    void open_live(const LiveConfig& cfg, const char* ifname);
    void map_classic_file(FILE* fp);
    Result next_from_file(CapturedPacket& out);

    static constexpr size_t kFileBuffer = 1 << 20;
    std::unique_ptr<char[]> file_buf_;  // replay file's stdio buffer; outlives the pcap handle
    std::vector<Handle> handles_;
    // Replay of a regular classic pcap file: records are read in place from a mapping.
    MappedFile file_map_;
    std::optional<PcapFileReader> file_reader_;
    bool live_ = false;
    bool regular_file_ = false;
    uint32_t snaplen_ = 128;
};

}  // namespace angel
