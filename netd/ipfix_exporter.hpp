// Sends records to the classifier as IPFIX over UDP (RFC 7011 §10.3): packs them into messages
// no larger than the path MTU allows, sends a message when it is full or export.flush_ms after its
// first record, sends templates at start, on request, on a destination change and every
// export.template_refresh seconds, and again before the next data once sending works after an
// error (a classifier that was down has lost them). Send errors are counted, never thrown: the
// classifier being down must not stop the meter.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/ipfix_encoder.hpp"
#include "shm/records.hpp"

namespace angel {

struct IpfixExporterConfig {
    std::string host;                 // classifier.host (name, IPv4 or IPv6 literal)
    uint16_t port = 4739;             // classifier.port
    size_t mtu = 1500;                // export.mtu: message <= mtu - IP header (20/40) - UDP (8)
    size_t max_message_size = 0;      // if non-zero: use this instead of deriving it from mtu
    uint32_t domain_id = 0;           // export.domain_id
    uint32_t flush_ms = 10;           // export.flush_ms
    uint32_t template_refresh_s = 30; // export.template_refresh; 0 = only at start/on request
    bool active = true;               // false: a backup's exporter, silent until set_active(true)
};

struct IpfixExporterCounters {
    uint64_t messages_sent = 0;   // handed to the kernel successfully (templates included)
    uint64_t records_sent = 0;    // data records in those messages
    uint64_t bytes_sent = 0;      // IPFIX bytes (without IP/UDP headers)
    uint64_t templates_sent = 0;  // template messages sent
    uint64_t send_errors = 0;     // errors the kernel reported on send() (incl. ICMP errors reported late)
    uint64_t datagrams_failed = 0;  // messages the kernel did not send (after the retries below)
    uint64_t records_lost = 0;    // data records in those messages (and records given while inactive)
    int last_errno = 0;           // errno of the last failed send, 0 if none
};

class IpfixExporter {
public:
    // Resolves cfg.host (getaddrinfo, first result, IPv4 or IPv6), opens a non-blocking UDP socket
    // and sends the templates. sequence lives in shared memory: the message sequence number
    // continues from its value (so it survives a netd restart) and advances by the data records of
    // each message handed to the socket, sent or not (a failed send shows up as a gap at the
    // collector, which is the truth). Throws std::runtime_error if the host does not resolve or
    // no socket can be opened.
    IpfixExporter(const IpfixExporterConfig& cfg, std::atomic<uint64_t>* sequence);
    ~IpfixExporter();
    IpfixExporter(const IpfixExporter&) = delete;
    IpfixExporter& operator=(const IpfixExporter&) = delete;

    // Adds one record; sends the message first when the record does not fit.
    void add(const Record& r);
    // A loss record made by netd itself, in stream order with what was added before: for HA,
    // a meter that becomes master after a gap its replay window does not cover reports it
    // (LossCause::master_gap, packets 0 when not known; docs/protocol.md).
    void add_loss(LossCause cause, uint64_t first_ns, uint64_t last_ns, uint64_t packets);
    // now_ns: CLOCK_MONOTONIC nanoseconds (see monotonic_ns()). Sends the pending message when
    // flush_ms have passed since its first record, and the templates when the refresh is due.
    void poll(uint64_t now_ns);
    // Sends the pending message now (no-op when empty).
    void flush();
    // Sends a template-only message now (start, becoming master, refresh). Nothing while inactive.
    void send_templates();
    // A backup's exporter sends nothing at all, templates included (docs/ha.md). Becoming
    // active sends the templates at once.
    void set_active(bool on);
    bool active() const { return active_; }
    // Drops the records packed for the next message without sending them (the meter has just
    // become backup: they are no longer this meter's to send). Returns how many.
    uint32_t discard_pending();
    // Live change on reload: flushes pending records to the old destination, switches, and sends
    // the templates to the new one before anything else. False (old destination kept) if host
    // does not resolve or the socket cannot be opened.
    bool set_destination(const std::string& host, uint16_t port);

    const IpfixExporterCounters& counters() const { return counters_; }
    const std::string& destination() const { return dest_text_; }  // "host:port" for logs
    size_t max_message_size() const { return enc_.max_size(); }
    bool pending() const { return !enc_.empty(); }
    uint32_t pending_records() const { return enc_.records(); }

    static uint64_t monotonic_ns();

private:
    bool open_destination(const std::string& host, uint16_t port, std::string* err);
    enum class SendResult { sent, refused, failed };
    void send_message(ipfix::Encoder& enc);
    SendResult send_datagram(const uint8_t* p, size_t n);

    IpfixExporterConfig cfg_;
    std::atomic<uint64_t>* seq_;
    int fd_ = -1;
    int family_ = 0;
    std::string dest_text_;
    std::vector<uint8_t> buf_;      // data message, allocated once
    std::vector<uint8_t> tpl_buf_;  // template-only message: templates can go out ahead of data
    ipfix::Encoder enc_;
    ipfix::Encoder tpl_enc_;
    uint64_t first_record_ns_ = 0;  // monotonic time of the first record in enc_; 0 = none
    uint64_t last_templates_ns_ = 0;
    IpfixExporterCounters counters_;
    bool active_ = true;
    // Set by every send error, cleared by a template message the kernel took: the next data
    // message goes after the templates. A classifier that restarted has forgotten them, and
    // without them it can decode nothing until the refresh (export.template_refresh, 30 s).
    bool templates_owed_ = false;
};

}  // namespace angel
