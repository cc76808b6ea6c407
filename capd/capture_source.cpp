#include "capd/capture_source.hpp"

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#ifdef __linux__
#include <linux/filter.h>
#include <sys/socket.h>
#endif

#include <stdexcept>

#include "common/log.hpp"

namespace angel {

namespace {
std::string pcap_problem(pcap_t* p, const std::string& what) {
    return what + ": " + pcap_geterr(p);
}
}  // namespace

CaptureSource::CaptureSource(const LiveConfig& cfg) : snaplen_(cfg.snaplen) {
    char err[PCAP_ERRBUF_SIZE] = {0};
    if (cfg.replay_file[0] != '\0') {
        Handle h;
        // Our own FILE with a 1 MiB buffer: libpcap's stdio default (4 KiB) costs a read(2) per
        // 4 KiB, about 50,000 system calls for a 200 MB trace.
        FILE* fp = std::fopen(cfg.replay_file, "rb");
        if (!fp) throw std::runtime_error(std::string("cannot read ") + cfg.replay_file + ": " + std::strerror(errno));
        struct stat st{};
        regular_file_ = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode);
        // glibc ignores the size unless it is given the buffer itself.
        file_buf_.reset(new char[kFileBuffer]);
        std::setvbuf(fp, file_buf_.get(), _IOFBF, kFileBuffer);
        // Nanosecond precision whatever the file holds: libpcap scales microsecond files.
        h.p = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, err);
        if (!h.p) {
            std::fclose(fp);
            throw std::runtime_error(std::string("cannot read ") + cfg.replay_file + ": " + err);
        }
        h.nano = true;
        h.linktype = pcap_datalink(h.p);
        h.name = cfg.replay_file;
        handles_.push_back(h);
        // A pipe or FIFO cannot be mapped; libpcap keeps reading those (and other formats).
        if (regular_file_) map_classic_file(fp);
        return;
    }
    live_ = true;
    if (cfg.interface_count == 0) throw std::runtime_error("no capture interface configured");
    for (uint32_t i = 0; i < cfg.interface_count; ++i) open_live(cfg, cfg.interfaces[i]);
}

void CaptureSource::open_live(const LiveConfig& cfg, const char* ifname) {
    char err[PCAP_ERRBUF_SIZE] = {0};
    Handle h;
    h.name = ifname;
    h.p = pcap_create(ifname, err);
    if (!h.p) throw std::runtime_error(std::string("cannot capture on ") + ifname + ": " + err);
    handles_.push_back(h);  // closed by the destructor whatever happens next
    Handle& H = handles_.back();
    pcap_set_snaplen(H.p, static_cast<int>(cfg.snaplen));
    pcap_set_promisc(H.p, cfg.promiscuous ? 1 : 0);
    pcap_set_buffer_size(H.p, static_cast<int>(std::max<uint32_t>(cfg.buffer_size, 512 * 1024)));
    pcap_set_timeout(H.p, 10);  // ms: batches packets without delaying a quiet link much
    H.nano = pcap_set_tstamp_precision(H.p, PCAP_TSTAMP_PRECISION_NANO) == 0;
    int rc = pcap_activate(H.p);
    if (rc < 0) throw std::runtime_error(pcap_problem(H.p, std::string("cannot capture on ") + ifname));
    if (pcap_setnonblock(H.p, 1, err) != 0)
        throw std::runtime_error(std::string("cannot make ") + ifname + " non-blocking: " + err);
    H.fd = pcap_get_selectable_fd(H.p);
    H.linktype = pcap_datalink(H.p);
}

void CaptureSource::map_classic_file(FILE* fp) {
    // The magic as stored, read without moving the stream libpcap has read the header from.
    uint8_t magic[4];
    const int fd = fileno(fp);
    if (pread(fd, magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic)) return;
    const std::optional<PcapFileFormat> fmt = classic_pcap_format(handles_.front().p, magic);
    if (!fmt || !file_map_.map(fd)) return;
    file_map_.exit_cleanly_if_truncated(handles_.front().name.c_str());
    file_reader_.emplace(file_map_.data(), file_map_.size(), *fmt, fd);
}

CaptureSource::~CaptureSource() {
    for (Handle& h : handles_)
        if (h.p) pcap_close(h.p);
}

bool CaptureSource::fill_pending(Handle& h) {
    if (h.has_pending) return true;
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(h.p, &hdr, &data);
    if (rc != 1) return false;
    const uint64_t frac = static_cast<uint64_t>(hdr->ts.tv_usec);
    h.pending.ts_ns = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ull + (h.nano ? frac : frac * 1000);
    h.pending.wire_len = hdr->len;
    h.pending.caplen = std::min<uint32_t>(hdr->caplen, snaplen_);
    h.pending.linktype = h.linktype;
    h.pending.data = data;
    h.has_pending = true;
    return true;
}

CaptureSource::Result CaptureSource::next(CapturedPacket& out, int timeout_ms) {
    if (file_reader_) return next_from_file(out);
    if (!live_) {
        Handle& h = handles_.front();
        pcap_pkthdr* hdr = nullptr;
        const u_char* data = nullptr;
        for (;;) {
            const int rc = pcap_next_ex(h.p, &hdr, &data);
            if (rc == 1) break;
            if (rc == PCAP_ERROR_BREAK) return Result::end;
            // A damaged record ends the file for libpcap too; report it as the end.
            return Result::end;
        }
        const uint64_t frac = static_cast<uint64_t>(hdr->ts.tv_usec);
        out.ts_ns = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ull + frac;
        out.wire_len = hdr->len;
        out.caplen = std::min<uint32_t>(hdr->caplen, snaplen_);
        out.linktype = h.linktype;
        out.data = data;
        return Result::packet;
    }
    // Live: merge the interfaces in timestamp order among the packets read ahead. A passive
    // tap gives one interface per direction; each keeps one packet pending.
    for (int attempt = 0; attempt < 2; ++attempt) {
        Handle* best = nullptr;
        for (Handle& h : handles_) {
            if (fill_pending(h) && (!best || h.pending.ts_ns < best->pending.ts_ns)) best = &h;
        }
        if (best) {
            out = best->pending;
            best->has_pending = false;
            return Result::packet;
        }
        if (attempt == 1 || timeout_ms <= 0) break;
        pollfd fds[8];
        nfds_t n = 0;
        for (Handle& h : handles_)
            if (h.fd >= 0 && n < 8) fds[n++] = {h.fd, POLLIN, 0};
        poll(fds, n, timeout_ms);
    }
    return Result::none;
}

CaptureSource::Result CaptureSource::next_from_file(CapturedPacket& out) {
    PcapRecord r;
    if (!file_reader_->next(r)) {  // a damaged record ends it, as in libpcap
        if (file_reader_->cut())
            log_warn("the replay file %s became shorter while being read; the replay ends at its new end",
                     handles_.front().name.c_str());
        return Result::end;
    }
    out.ts_ns = r.ts_ns;
    out.wire_len = r.wire_len;
    out.caplen = std::min<uint32_t>(r.caplen, snaplen_);
    out.linktype = handles_.front().linktype;
    out.data = r.data;
    return Result::packet;
}

void CaptureSource::stop_accepting() {
#ifdef __linux__
    // A classic BPF program that rejects every packet, set on the socket directly: libpcap
    // keeps reading what the ring already holds, and rejected packets are not counted.
    sock_filter reject_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
    sock_fprog prog{1, reject_all};
    for (Handle& h : handles_)
        if (h.p) setsockopt(pcap_fileno(h.p), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
#endif
}

PcapCounters CaptureSource::stats() const {
    PcapCounters c;
    for (const Handle& h : handles_) {
        pcap_stat s{};
        if (live_ && pcap_stats(h.p, &s) == 0) {
            c.received += s.ps_recv;
            c.dropped += s.ps_drop;
            c.ifdropped += s.ps_ifdrop;
        }
    }
    return c;
}

}  // namespace angel
