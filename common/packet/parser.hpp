// The layered packet parser: link layer -> (tags, labels, PPPoE) -> IPv4/IPv6 (+ extension
// headers, fragments) -> transport. Each layer parses its own header and names the next layer.
// No heap allocation per packet; never reads past caplen. Used by procd, the tests, the fuzzer
// and the benchmarks.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "common/packet/parsed_packet.hpp"

namespace angel {

struct ParseCounters {
    std::array<uint64_t, static_cast<size_t>(ParseStatus::count_)> by_status{};
    uint64_t frag_first = 0;        // first fragments seen (ports recorded in the cache)
    uint64_t frag_hit = 0;          // later fragments attributed through the cache
    uint64_t frag_miss = 0;         // later fragments whose first fragment was not seen: ports 0
    uint64_t frag_cache_evicted = 0;// cache entries overwritten before they were used up
};

class FragmentCache;  // common/packet/fragment_cache.hpp

class PacketParser {
public:
    // frag_cache_entries: bound of the fragment cache (rounded up to a power of two).
    explicit PacketParser(size_t frag_cache_entries = 4096);
    ~PacketParser();
    PacketParser(const PacketParser&) = delete;
    PacketParser& operator=(const PacketParser&) = delete;

    // Parses one frame of the given pcap link type (DLT_* value as libpcap reports it).
    // ts_ns is used only to age fragment-cache entries. Counts the result in counters().
    ParseStatus parse(int linktype, const uint8_t* data, uint32_t caplen, uint64_t ts_ns,
                      ParsedPacket& out);
    // The layered parser alone, without the fast path for common frames that parse() tries
    // first (common/packet/common_frame.hpp). Same results by construction; the tests and
    // the fuzzer use this to check that.
    ParseStatus parse_layered(int linktype, const uint8_t* data, uint32_t caplen, uint64_t ts_ns,
                              ParsedPacket& out);

    const ParseCounters& counters() const { return counters_; }

private:
    ParseCounters counters_;
    FragmentCache* frags_;  // allocated once in the constructor
};

}  // namespace angel
