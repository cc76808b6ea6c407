#include "ctld/reload_plan.hpp"

namespace angel {

ReloadPlan plan_reload(const Config& a, const Config& b) {
    ReloadPlan p;
    auto live = [&](bool changed, const char* key) {
        if (changed) p.live_changes.push_back(key);
    };
    auto restart = [&](bool changed, const char* key) {
        if (changed) p.restart_changes.push_back(key);
    };
    // Applied live: netd re-targets or rebuilds its exporter, procd re-reads its timeouts and
    // record limit,
    // capd re-installs its filter.
    live(a.classifier.host != b.classifier.host, "classifier.host");
    live(a.classifier.port != b.classifier.port, "classifier.port");
    live(a.flow.timeout != b.flow.timeout, "flow.timeout");
    live(a.flow.tcp_linger != b.flow.tcp_linger, "flow.tcp_linger");
    live(a.flow.gc_interval != b.flow.gc_interval, "flow.gc_interval");
    live(!(a.customers.networks == b.customers.networks), "customers.networks");
    live(a.export_.flush_ms != b.export_.flush_ms, "export.flush_ms");
    live(a.export_.template_refresh != b.export_.template_refresh, "export.template_refresh");
    live(a.export_.mtu != b.export_.mtu, "export.mtu");
    live(a.export_.domain_id != b.export_.domain_id, "export.domain_id");
    // procd re-reads it with the timeouts; flows already past a raised limit resume.
    live(a.export_.packet_records_per_flow != b.export_.packet_records_per_flow, "export.packet_records_per_flow");
    live(a.export_.watermark_ms != b.export_.watermark_ms, "export.watermark_ms");
    live(a.supervisor.hang_timeout != b.supervisor.hang_timeout, "supervisor.hang_timeout");
    // ctld's own: the role probe is rebuilt (ctld/ha/ha_monitor.cpp).
    live(a.ha.vip != b.ha.vip, "ha.vip");
    live(a.ha.state_file != b.ha.state_file, "ha.state_file");
    live(a.ha.poll_ms != b.ha.poll_ms, "ha.poll_ms");
    live(a.ha.takeover_ms != b.ha.takeover_ms, "ha.takeover_ms");
    live(a.ha.replay_ms != b.ha.replay_ms, "ha.replay_ms");
    // Need a restart: they size or name what the running processes hold open.
    restart(a.instance != b.instance, "instance");
    restart(a.user != b.user || a.user_set != b.user_set, "user");
    restart(a.control.group != b.control.group, "control.group");
    restart(a.runtime_dir != b.runtime_dir, "runtime_dir");
    restart(a.capture.interfaces != b.capture.interfaces, "capture.interface");
    restart(a.capture.snaplen != b.capture.snaplen, "capture.snaplen");
    restart(a.capture.buffer_size != b.capture.buffer_size, "capture.buffer_size");
    restart(a.capture.promiscuous != b.capture.promiscuous, "capture.promiscuous");
    restart(a.flow.max_flows != b.flow.max_flows, "flow.max_flows");
    restart(a.flow.id_key != b.flow.id_key, "flow.id_key");
    restart(a.shm.packet_ring != b.shm.packet_ring, "shm.packet_ring");
    restart(a.shm.record_ring != b.shm.record_ring, "shm.record_ring");
    restart(a.shm.event_ring != b.shm.event_ring, "shm.event_ring");
    restart(a.database.conninfo != b.database.conninfo, "database.conninfo");
    restart(a.ha.mode != b.ha.mode, "ha.mode");
    // ctld binds it once, at start, before dropping nothing: netd inherits the socket.
    restart(a.metrics.listen != b.metrics.listen, "metrics.listen");
    return p;
}

}  // namespace angel
