// The sink's exporters: templates and sequence numbers are kept per exporter, keyed by the exact
// source address and port of the datagram and the observation domain ID (RFC 7011 §8: template
// scope is the transport session and domain). Over UDP any source can be spoofed, so every
// exporter has its own decoder with its own limits, and the number of exporters is bounded too:
// what one source sends can neither fill another's template table nor grow memory past
//   kMaxExporters x (kMaxTemplatesPerExporter templates, kMaxFieldsPerExporter fields)
// (about 64 x (256 x ~100 B + 16384 x 4 B), some 6 MB).
//
// When the table is full a new exporter takes the place of the least recently seen one (counted
// as an eviction): a meter that restarts with a new source port is decoded from its next template
// refresh on, whatever stale or spoofed sources filled the table. A source evicted while still
// sending loses its templates until its next refresh.
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/ipfix_decoder.hpp"

namespace angel::sink {

struct ExporterKey {
    std::array<uint8_t, 16> addr{};  // IPv4: first 4 bytes
    uint32_t scope = 0;              // IPv6 scope ID (link-local sources on different links)
    uint32_t domain = 0;             // observation domain ID of the message header
    uint16_t port = 0;
    uint8_t family = 0;              // AF_INET, AF_INET6, or 0 when the source is unknown
    bool operator==(const ExporterKey&) const = default;
};

// SRC may be null or of another family: all such sources share one key per domain.
ExporterKey exporter_key(const sockaddr* src, socklen_t len, uint32_t domain);

class ExporterTable {
public:
    static constexpr size_t kMaxExporters = 64;
    static constexpr size_t kMaxTemplatesPerExporter = 256;   // the meter uses 4
    static constexpr size_t kMaxFieldsPerExporter = 16384;    // 64 per template on average

    ExporterTable() { entries_.reserve(kMaxExporters); }

    // The decoder of KEY. A new one if KEY is not tracked (*added); if the table was full, the
    // least recently seen exporter was dropped to make room (*evicted).
    ipfix::Decoder& get(const ExporterKey& key, bool* added, bool* evicted);

    size_t size() const { return entries_.size(); }

private:
    struct Entry {
        ExporterKey key;
        uint64_t last_seen;  // value of clock_ at the last lookup
        ipfix::Decoder decoder;
    };
    // A linear scan: at most 64 entries, one lookup per datagram (not per record), and the
    // usual case, the same exporter as last time, is checked first.
    std::vector<Entry> entries_;
    size_t last_ = 0;
    uint64_t clock_ = 0;  // lookups so far: "seen" order without reading the time
};

}  // namespace angel::sink
