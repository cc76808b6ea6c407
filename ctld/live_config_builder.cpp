#include "ctld/live_config_builder.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

namespace angel {

namespace {
// The first address getaddrinfo gives for host (as netd would have taken it), as text; the
// name itself when it does not resolve (netd then reports it and exits EX_NOHOST).
std::string numeric_host(const std::string& host) {
    if (host.empty()) return host;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return host;
    char buf[NI_MAXHOST];
    const bool ok = getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) == 0;
    freeaddrinfo(res);
    return ok ? std::string(buf) : host;
}

void copy_field(char* dst, size_t cap, const std::string& src, const char* what) {
    if (src.size() >= cap) throw std::runtime_error(std::string(what) + " is too long");
    std::memcpy(dst, src.c_str(), src.size() + 1);
}
}  // namespace

LiveConfig build_live_config(const Config& c, const std::string& replay_file, const FlowIdKey& key,
                             bool foreground) {
    LiveConfig lc;
    std::memset(&lc, 0, sizeof lc);
    copy_field(lc.instance, sizeof lc.instance, c.instance, "instance");
    copy_field(lc.user, sizeof lc.user, c.user, "user");
    copy_field(lc.runtime_dir, sizeof lc.runtime_dir, c.runtime_dir, "runtime_dir");
    copy_field(lc.replay_file, sizeof lc.replay_file, replay_file, "replay file name");
    if (replay_file.empty()) {
        if (c.capture.interfaces.size() > 8) throw std::runtime_error("more than 8 capture interfaces");
        for (size_t i = 0; i < c.capture.interfaces.size(); ++i)
            copy_field(lc.interfaces[i], sizeof lc.interfaces[i], c.capture.interfaces[i], "capture.interface");
        lc.interface_count = static_cast<uint32_t>(c.capture.interfaces.size());
    }
    lc.foreground = foreground ? 1 : 0;
    lc.db_events = c.database.conninfo.empty() ? 0 : 1;  // procd feeds ctld's database thread
    lc.snaplen = static_cast<uint32_t>(c.capture.snaplen);
    lc.buffer_size = static_cast<uint32_t>(c.capture.buffer_size);
    lc.promiscuous = c.capture.promiscuous ? 1 : 0;
    // netd runs in an empty jail with no resolver: it gets the address, resolved here.
    copy_field(lc.classifier_host, sizeof lc.classifier_host, numeric_host(c.classifier.host), "classifier.host");
    lc.classifier_port = static_cast<uint32_t>(c.classifier.port);
    lc.flow_timeout_s = static_cast<uint32_t>(c.flow.timeout);
    lc.tcp_linger_s = static_cast<uint32_t>(c.flow.tcp_linger);
    lc.max_flows = static_cast<uint32_t>(c.flow.max_flows);
    lc.gc_interval_s = static_cast<uint32_t>(c.flow.gc_interval);
    lc.id_key[0] = key.k0;
    lc.id_key[1] = key.k1;
    lc.mtu = static_cast<uint32_t>(c.export_.mtu);
    lc.flush_ms = static_cast<uint32_t>(c.export_.flush_ms);
    lc.replay_ms = c.ha.mode == "none" ? 0 : static_cast<uint32_t>(c.ha.replay_ms);
    lc.template_refresh_s = static_cast<uint32_t>(c.export_.template_refresh);
    lc.domain_id = c.export_.domain_id;
    lc.packet_records_per_flow = c.export_.packet_records_per_flow;
    lc.watermark_ms = static_cast<uint32_t>(c.export_.watermark_ms);
    return lc;
}

}  // namespace angel
