// UDP side of the IPFIX export. One connected, non-blocking UDP socket: connected so that ICMP
// port-unreachable from a dead classifier is reported (as ECONNREFUSED on a later send) and can be
// counted; non-blocking so that a full socket buffer drops one message instead of stalling netd.
#include "netd/ipfix_exporter.hpp"

#include <poll.h>

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace angel {

static_assert(uint8_t(EndReason::idle) == ipfix::kReasonIdle);
static_assert(uint8_t(EndReason::tcp_close) == ipfix::kReasonTcpClose);
static_assert(uint8_t(EndReason::end_of_input) == ipfix::kReasonEndOfInput);
static_assert(uint8_t(EndReason::shutdown) == ipfix::kReasonShutdown);
static_assert(uint8_t(EndReason::evicted) == ipfix::kReasonEvicted);
static_assert(uint8_t(LossCause::pcap_drop) == ipfix::kLossPcapDrop);
static_assert(uint8_t(LossCause::if_drop) == ipfix::kLossIfDrop);
static_assert(uint8_t(LossCause::ring_drop) == ipfix::kLossRingDrop);
static_assert(uint8_t(LossCause::capd_restart) == ipfix::kLossCapdRestart);
static_assert(uint8_t(LossCause::ctld_restart) == ipfix::kLossCtldRestart);
static_assert(uint8_t(LossCause::master_gap) == ipfix::kLossMasterGap);

namespace {

constexpr size_t kBufSize = 65535;

size_t message_size(const IpfixExporterConfig& c, int family) {
    if (c.max_message_size) return c.max_message_size;
    return ipfix::max_message_size(c.mtu, family == AF_INET6);
}

uint32_t realtime_s() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return uint32_t(ts.tv_sec);
}

}  // namespace

uint64_t IpfixExporter::monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

IpfixExporter::IpfixExporter(const IpfixExporterConfig& cfg, std::atomic<uint64_t>* sequence)
    : cfg_(cfg),
      seq_(sequence),
      buf_(kBufSize),
      tpl_buf_(kBufSize),
      // Real size set once the address family is known (below).
      enc_(buf_.data(), kBufSize, cfg.domain_id),
      tpl_enc_(tpl_buf_.data(), kBufSize, cfg.domain_id) {
    if (!seq_) throw std::invalid_argument("IpfixExporter: sequence counter is null");
    std::string err;
    if (!open_destination(cfg.host, cfg.port, &err)) throw std::runtime_error(err);
    enc_ = ipfix::Encoder(buf_.data(), message_size(cfg_, family_), cfg_.domain_id);
    active_ = cfg.active;
    send_templates();
}

IpfixExporter::~IpfixExporter() {
    if (fd_ >= 0) close(fd_);
}

bool IpfixExporter::open_destination(const std::string& host, uint16_t port, std::string* err) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    addrinfo* res = nullptr;
    const std::string port_s = std::to_string(port);
    const int rc = getaddrinfo(host.c_str(), port_s.c_str(), &hints, &res);
    if (rc != 0 || !res) {
        *err = "classifier " + host + ":" + port_s + ": " + gai_strerror(rc);
        return false;
    }
    const int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        *err = "classifier " + host + ":" + port_s + ": " + std::strerror(errno);
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return false;
    }
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
    family_ = res->ai_family;
    freeaddrinfo(res);
    dest_text_ = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port_s;
    return true;
}

IpfixExporter::SendResult IpfixExporter::send_datagram(const uint8_t* p, size_t n) {
    // A full local socket buffer (EAGAIN, ENOBUFS) is transient: wait for room, bounded (1 s,
    // under the heartbeat's hang timeout), so that a burst does not become a loss; the wait holds
    // records back in the ring, which is where the meter keeps them.
    for (int waits = 0;;) {
        const ssize_t r = send(fd_, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r == ssize_t(n)) return SendResult::sent;
        const int err = r < 0 ? errno : EMSGSIZE;
        if ((err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) && waits < 10) {
            ++waits;
            pollfd pfd{fd_, POLLOUT, 0};
            ::poll(&pfd, 1, 100);
            continue;
        }
        ++counters_.send_errors;
        counters_.last_errno = err;
        templates_owed_ = true;
        return err == ECONNREFUSED ? SendResult::refused : SendResult::failed;
    }
}

void IpfixExporter::send_message(ipfix::Encoder& enc) {
    const bool data = &enc == &enc_;
    if (data && templates_owed_) send_templates();
    const uint64_t seq = seq_->load(std::memory_order_relaxed);
    const size_t n = enc.finish(realtime_s(), uint32_t(seq));
    const uint32_t records = enc.records();
    SendResult r = send_datagram(enc.data(), n);
    if (r == SendResult::refused) {
        // A connected UDP socket reports an ICMP port unreachable for an earlier datagram on
        // the next send, and that send is not performed. The classifier may be back by now:
        // templates first (a data message only), then this message once more.
        if (data) send_templates();
        r = send_datagram(enc.data(), n);
    }
    if (r == SendResult::sent) {
        ++counters_.messages_sent;
        counters_.records_sent += records;
        counters_.bytes_sent += n;
        if (enc.has_templates()) {
            ++counters_.templates_sent;
            templates_owed_ = false;
        }
    } else {
        ++counters_.datagrams_failed;
        counters_.records_lost += records;
    }
    if (records) seq_->store(seq + records, std::memory_order_release);
    enc.reset();
}

void IpfixExporter::set_active(bool on) {
    if (on == active_) return;
    active_ = on;
    if (on) send_templates();
}

uint32_t IpfixExporter::discard_pending() {
    const uint32_t n = enc_.records();
    enc_.reset();
    first_record_ns_ = 0;
    return n;
}

void IpfixExporter::send_templates() {
    if (!active_) return;
    tpl_enc_.reset();
    tpl_enc_.add_templates();  // always fits: the encoder checked max size at construction
    send_message(tpl_enc_);
    last_templates_ns_ = monotonic_ns();
}

void IpfixExporter::flush() {
    if (enc_.records() == 0) return;
    send_message(enc_);
    first_record_ns_ = 0;
}

void IpfixExporter::add(const Record& r) {
    // A backup sends nothing, so a record handed to an inactive exporter is never packed
    // (netd does not do this; the guard keeps the promise whatever the caller does). It counts
    // as lost so that records_sent + records_lost still covers every record given.
    if (!active_) {
        ++counters_.records_lost;
        return;
    }
    bool ok = false;
    for (int attempt = 0; attempt < 2 && !ok; ++attempt) {
        if (attempt) flush();
        switch (RecordType(r.type)) {
        case RecordType::packet: {
            ipfix::PacketFields f;
            f.flow_id = r.flow_id;
            f.ts_ns = r.ts_ns;
            f.wire_len = r.packet.wire_len;
            f.dir = r.packet.dir;
            f.tcp_flags = r.packet.tcp_flags;
            f.new_flow = r.packet.new_flow != 0;
            f.index = r.packet.index;
            f.replayed = (r.flags & kRecordReplayed) != 0;
            ok = enc_.add(f);
            break;
        }
        case RecordType::flow_start: {
            ipfix::FlowStartFields f;
            f.flow_id = r.flow_id;
            f.ts_ns = r.ts_ns;
            f.ip_version = r.start.ip_version;
            f.proto = r.start.proto;
            f.sport = r.start.sport;
            f.dport = r.start.dport;
            f.src = r.start.src;
            f.dst = r.start.dst;
            f.replayed = (r.flags & kRecordReplayed) != 0;
            ok = enc_.add(f);
            break;
        }
        case RecordType::flow_end: {
            ipfix::FlowEndFields f;
            f.flow_id = r.flow_id;
            f.first_ns = r.end.first_ns;
            f.last_ns = r.ts_ns;
            f.packets[0] = r.end.packets[0];
            f.packets[1] = r.end.packets[1];
            f.bytes[0] = r.end.bytes[0];
            f.bytes[1] = r.end.bytes[1];
            f.reason = r.end.reason;
            f.replayed = (r.flags & kRecordReplayed) != 0;
            ok = enc_.add(f);
            break;
        }
        case RecordType::loss: {
            ipfix::LossFields f;
            f.cause = r.loss.cause;
            f.first_ns = r.loss.first_ns;
            f.last_ns = r.ts_ns;
            f.packets = r.loss.packets;
            ok = enc_.add(f);
            break;
        }
        case RecordType::watermark:
            ok = enc_.add(ipfix::WatermarkFields{r.ts_ns});
            break;
        default:
            return;  // not an exported record type: ignored
        }
    }
    if (ok && first_record_ns_ == 0 && enc_.records() == 1) first_record_ns_ = monotonic_ns();
}

void IpfixExporter::add_loss(LossCause cause, uint64_t first_ns, uint64_t last_ns, uint64_t packets) {
    Record r{};
    r.type = static_cast<uint8_t>(RecordType::loss);
    r.ts_ns = last_ns;
    r.loss.first_ns = first_ns;
    r.loss.packets = packets;
    r.loss.cause = static_cast<uint8_t>(cause);
    add(r);
}

void IpfixExporter::poll(uint64_t now_ns) {
    // Compared as "now >= start + interval": a now_ns read before the record arrived is early,
    // not 2^64 ns late.
    if (first_record_ns_ && now_ns >= first_record_ns_ + uint64_t(cfg_.flush_ms) * 1000000ull)
        flush();
    if (active_ && cfg_.template_refresh_s &&
        now_ns >= last_templates_ns_ + uint64_t(cfg_.template_refresh_s) * 1000000000ull)
        send_templates();
}

bool IpfixExporter::set_destination(const std::string& host, uint16_t port) {
    flush();
    std::string err;
    const int old_family = family_;
    if (!open_destination(host, port, &err)) return false;
    cfg_.host = host;
    cfg_.port = port;
    if (family_ != old_family)
        enc_ = ipfix::Encoder(buf_.data(), message_size(cfg_, family_), cfg_.domain_id);
    send_templates();
    return true;
}

}  // namespace angel
