// Implementation of tests/integration/hostile_writer.hpp.
#include "hostile_writer.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

namespace angel::itest {

namespace {

constexpr uint64_t kFlowMapMagicValue = 0x50414d574f4c4641ull;  // "AFLOWMAP" (shm/flow_map.cpp)
constexpr uint32_t kSettleRound = 0xFFFFFFFFu;  // round(): put sane geometry and positions back

// ---- I/O on the two pipes --------------------------------------------------------------------

bool write_all(int fd, const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    while (n > 0) {
        const ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        b += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

// Reads exactly n bytes within timeout_ms (<0: no limit); false on EOF, error or timeout.
bool read_all(int fd, void* p, size_t n, int timeout_ms) {
    auto* b = static_cast<uint8_t*>(p);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (n > 0) {
        int wait = -1;
        if (timeout_ms >= 0) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                                     std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            wait = static_cast<int>(left.count());
        }
        pollfd pf{fd, POLLIN, 0};
        const int pr = poll(&pf, 1, wait);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return false;
        const ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        b += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

// ---- values ------------------------------------------------------------------------------------

struct Gen {
    std::mt19937_64 r;
    uint64_t u() { return r(); }
    bool chance(unsigned pct) { return r() % 100 < pct; }
    // Random and extreme 64-bit values, some just above the capacity `cap` they are checked against.
    uint64_t x64(uint64_t cap) {
        static constexpr uint64_t fixed[] = {0,
                                             1,
                                             2,
                                             0x7FFFFFFFFFFFFFFFull,
                                             0xFFFFFFFFFFFFFFFFull,
                                             1ull << 40,
                                             1ull << 63,
                                             (1ull << 63) + 1,
                                             0xFFFFFFFFull,
                                             0x100000000ull,
                                             0xFFFFFFFFFFFFFFFEull};
        const unsigned k = static_cast<unsigned>(r() % 16);
        if (k < std::size(fixed)) return fixed[k];
        switch (k) {
            case 11: return cap + 1;
            case 12: return cap * 2 + 1;
            case 13: return cap - 1;
            case 14: return (cap + 1) << 20;
            default: return r();
        }
    }
    uint32_t x32(uint32_t cap) {
        static constexpr uint32_t fixed[] = {0, 1, 2, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu, 0xFFFFFFFEu, 1u << 24};
        const unsigned k = static_cast<unsigned>(r() % 14);
        if (k < std::size(fixed)) return fixed[k];
        switch (k) {
            case 8: return cap + 1;
            case 9: return cap;
            case 10: return cap + kFlowMapSpare + 1;
            case 11: return cap * 2 + 1;
            case 12: return cap - 1;
            default: return static_cast<uint32_t>(r());
        }
    }
    void bytes(void* p, size_t n) {
        auto* b = static_cast<uint8_t*>(p);
        for (size_t i = 0; i < n; i += 8) {
            const uint64_t v = r();
            std::memcpy(b + i, &v, std::min<size_t>(8, n - i));
        }
    }
};

uint32_t pow2_at_least(uint32_t n) {
    uint32_t b = 1;
    while (b < n && b < (1u << 31)) b <<= 1;
    return b;
}

// ---- the child -----------------------------------------------------------------------------------

struct Mapped {
    uint8_t* base = nullptr;
    size_t len = 0;
    const ControlBlock* ctl = nullptr;
    SegmentLayout layout{};
    int32_t ctld_pid = 0;
};

void write_ring(Gen& g, RingControl& c, uint64_t cap, HostileRound& rep, bool positions) {
    if (positions) {
        const uint64_t tail = c.tail.load(std::memory_order_relaxed);
        const uint64_t head = c.head.load(std::memory_order_relaxed);
        uint64_t h = head, t = tail;
        switch (g.u() % 8) {
            case 0: h = t + cap + 1; break;              // just more than the ring holds
            case 1: h = t + 2 * cap + 1; break;
            case 2: t = h + 1 + g.u() % 1000; break;     // tail ahead of head
            case 3: h = UINT64_MAX; t = 0; break;
            case 4: h = head + (1ull << 40); break;      // head far ahead
            case 5: h = 0; t = UINT64_MAX; break;
            case 6: h = g.x64(cap); t = g.x64(cap); break;
            default: h = g.u(); t = g.u(); break;
        }
        c.head.store(h, std::memory_order_release);
        c.tail.store(t, std::memory_order_release);
        rep.fields += 2;
    }
    c.dropped.store(g.x64(cap), std::memory_order_relaxed);
    c.produced.store(g.x64(cap), std::memory_order_relaxed);
    c.consumed.store(g.x64(cap), std::memory_order_relaxed);
    c.data_seq.store(g.x32(static_cast<uint32_t>(cap)), std::memory_order_relaxed);
    c.space_seq.store(g.x32(static_cast<uint32_t>(cap)), std::memory_order_relaxed);
    c.consumer_sleeping.store(g.chance(50) ? 0 : g.x32(1), std::memory_order_relaxed);
    c.producer_sleeping.store(g.chance(50) ? 0 : g.x32(1), std::memory_order_relaxed);
    c.capacity = g.x64(cap);
    for (auto& r : c.reserved_) r = g.u();
    rep.fields += 8 + std::size(c.reserved_);
}

void write_stage(Gen& g, StageStatus& s, int32_t ctld_pid, HostileRound& rep) {
    static constexpr int32_t pids[] = {0, 1, -1, 0x7FFFFFFF, INT32_MIN, 2};
    const unsigned k = static_cast<unsigned>(g.u() % 9);
    int32_t pid = 0;
    if (k < std::size(pids)) pid = pids[k];
    else if (k == 6) pid = ctld_pid;
    else if (k == 7) pid = static_cast<int32_t>(getpid());
    else pid = static_cast<int32_t>(g.u());
    s.pid.store(pid, std::memory_order_relaxed);
    static constexpr uint32_t states[] = {0, 1, 2, 3, 4, 7, 0xFFFFFFFFu, 0x80000000u};
    const unsigned ks = static_cast<unsigned>(g.u() % 9);
    s.state.store(ks < std::size(states) ? states[ks] : static_cast<uint32_t>(g.u()), std::memory_order_release);
    s.heartbeat_ns.store(g.x64(monotonic_ns()), std::memory_order_relaxed);
    s.started_ns.store(g.x64(monotonic_ns()), std::memory_order_relaxed);
    for (auto& c : s.counters) c.store(g.x64(1ull << 32), std::memory_order_relaxed);
    rep.fields += 4 + kStageCounters;
}

void write_flow_map(Gen& g, const Mapped& m, HostileRound& rep, bool geometry) {
    const SegmentLayout& l = m.layout;
    auto* fh = reinterpret_cast<FlowMapHeader*>(m.base + l.flow_map_offset);
    const uint32_t cap = l.flow_map_capacity;
    if (geometry) {
        fh->magic = g.chance(50) ? g.u() : 0;
        fh->capacity = g.x32(cap);
        fh->bucket_count = g.x32(pow2_at_least(cap));
        rep.geometry_hostile = 1;
    } else {
        fh->magic = kFlowMapMagicValue;
        fh->capacity = cap;
        fh->bucket_count = pow2_at_least(cap);
    }
    fh->live.store(g.x32(cap), std::memory_order_relaxed);
    fh->free_head = g.x32(cap);
    fh->lru_newest = g.x32(cap);
    fh->lru_oldest = g.x32(cap);
    fh->retired = g.x32(cap);
    fh->high_water.store(g.x32(cap), std::memory_order_release);
    fh->generation.store(g.x64(cap), std::memory_order_relaxed);
    fh->reserved.store(g.x32(cap), std::memory_order_release);
    rep.fields += 11;

    // Entries: the first ones, those around the first chunk boundary of ctld's scan (1024),
    // and the last ones of the map (only seen when high_water reaches the capacity).
    auto entry = [&](uint32_t i) -> FlowEntry& {
        return *reinterpret_cast<FlowEntry*>(m.base + l.flow_map_offset + FlowMap::entry_offset(cap, i));
    };
    auto hostile_entry = [&](uint32_t i) {
        FlowEntry e;
        g.bytes(&e, sizeof e);
        const unsigned kind = static_cast<unsigned>(g.u() % 4);
        if (kind != 0) {  // in use, not ending: what ctld shows
            e.in_use = 1;
            e.ending = 0;
            static constexpr uint8_t versions[] = {0, 1, 5, 7, 255, 4, 6, 4, 6};
            e.key.ip_version = versions[g.u() % std::size(versions)];
            static constexpr uint8_t rev[] = {0, 1, 2, 255};
            e.first_reversed = rev[g.u() % std::size(rev)];
            if (kind == 3) {  // extreme counts
                e.packets[0] = UINT64_MAX;
                e.packets[1] = g.x64(1);
                e.bytes[0] = UINT64_MAX;
                e.bytes[1] = 1ull << 63;
                e.flow_id = g.x32(cap);
            }
            if (e.key.ip_version != 4 && e.key.ip_version != 6) ++rep.bad_version_entries;
        }
        std::memcpy(&entry(i), &e, sizeof e);
        ++rep.flow_entries;
    };
    for (uint32_t i = 0; i < std::min<uint32_t>(cap, 256); ++i) hostile_entry(i);
    for (uint32_t i = 1016; i < std::min<uint32_t>(cap, 1032); ++i) hostile_entry(i);
    for (uint32_t i = cap > 8 ? cap - 8 : 0; i < cap; ++i) hostile_entry(i);
}

void write_event_slots(Gen& g, const Mapped& m, HostileRound& rep) {
    const SegmentLayout& l = m.layout;
    auto* slots = reinterpret_cast<Record*>(m.base + l.event_ring_offset);
    const uint64_t mask = l.event_ring_slots - 1;
    const uint64_t head = reinterpret_cast<SegmentHeader*>(m.base)->event_ring.head.load();
    auto slot = [&](uint64_t pos) {
        Record r;
        g.bytes(&r, sizeof r);
        static constexpr uint8_t types[] = {0, 1, 2, 3, 4, 255, 2, 3};
        r.type = types[g.u() % std::size(types)];
        if (r.type == 2 && g.chance(50)) r.start.ip_version = g.chance(50) ? 4 : 6;
        if (r.type == 3 && g.chance(50)) r.end.reason = static_cast<uint8_t>(1 + g.u() % 5);
        std::memcpy(&slots[pos & mask], &r, sizeof r);
        ++rep.event_slots;
    };
    for (uint64_t i = 0; i < 64; ++i) slot(i);
    for (uint64_t i = 0; i < 64; ++i) slot(head + i);
    for (uint64_t i = 1; i <= 16; ++i) slot(mask + 1 - i);
}

// A batch the database thread will read: records right after the ring's tail (where ctld's
// reader committed last), then the head just after them. Mostly the two types ctld accepts,
// with extreme fields (counts near 2^64, times far off, bad versions and reasons), some of
// other types.
void write_event_batch(Gen& g, const Mapped& m, HostileRound& rep) {
    const SegmentLayout& l = m.layout;
    auto* h = reinterpret_cast<SegmentHeader*>(m.base);
    auto* slots = reinterpret_cast<Record*>(m.base + l.event_ring_offset);
    const uint64_t mask = l.event_ring_slots - 1;
    const uint64_t tail = h->event_ring.tail.load(std::memory_order_acquire);
    constexpr uint64_t kBatch = 64;
    for (uint64_t i = 0; i < kBatch; ++i) {
        Record r;
        g.bytes(&r, sizeof r);
        static constexpr uint8_t types[] = {2, 3, 2, 3, 2, 3, 0, 1, 4, 255};
        r.type = types[g.u() % std::size(types)];
        r.flow_id = g.x32(l.flow_map_capacity);
        r.ts_ns = g.x64(realtime_ns());
        if (r.type == 2) {
            static constexpr uint8_t versions[] = {4, 6, 4, 6, 0, 5, 255};
            r.start.ip_version = versions[g.u() % std::size(versions)];
        } else if (r.type == 3) {
            static constexpr uint8_t reasons[] = {1, 2, 3, 4, 5, 0, 6, 255};
            r.end.reason = reasons[g.u() % std::size(reasons)];
            r.end.first_ns = g.x64(realtime_ns());
            for (auto& v : r.end.packets) v = g.x64(1ull << 32);
            for (auto& v : r.end.bytes) v = g.x64(1ull << 40);
        }
        std::memcpy(&slots[(tail + i) & mask], &r, sizeof r);
        ++rep.event_slots;
        ++rep.event_batch_records;
    }
    h->event_ring.head.store(tail + kBatch, std::memory_order_release);
    rep.fields += 1;
}

void write_ring_contents(Gen& g, const Mapped& m, HostileRound& rep) {
    const SegmentLayout& l = m.layout;
    const auto* h = reinterpret_cast<SegmentHeader*>(m.base);
    // Packet ring: slot headers with extreme lengths and link types, random payload, where
    // procd reads next.
    const uint64_t pmask = l.packet_ring_bytes - 1;
    uint64_t at = h->packet_ring.tail.load() & pmask & ~uint64_t{15};
    for (int k = 0; k < 16 && at + 4096 <= l.packet_ring_bytes; ++k) {
        uint8_t* p = m.base + l.packet_ring_offset + at;
        g.bytes(p, 256);
        PacketSlot s{};
        s.ts_ns = g.x64(realtime_ns());
        s.wire_len = g.x32(65535);
        s.caplen = static_cast<uint16_t>(g.chance(50) ? 0xFFFF : g.u());
        s.linktype = static_cast<uint16_t>(g.chance(30) ? 0xFFFF : g.u() % 300);
        std::memcpy(p, &s, sizeof s);
        rep.ring_bytes += 256;
        at += 256;
    }
    // Record ring: random records where netd reads next.
    auto* rec = reinterpret_cast<Record*>(m.base + l.record_ring_offset);
    const uint64_t rmask = l.record_ring_slots - 1;
    const uint64_t rt = h->record_ring.tail.load();
    for (uint64_t i = 0; i < 64; ++i) {
        g.bytes(&rec[(rt + i) & rmask], sizeof(Record));
        rep.ring_bytes += sizeof(Record);
    }
}

void hostile_round(uint64_t seed, uint32_t n, const Mapped& m, HostileRound& rep) {
    Gen g{std::mt19937_64(seed ^ (uint64_t{n} * 0x9E3779B97F4A7C15ull))};
    auto* h = reinterpret_cast<SegmentHeader*>(m.base);
    const SegmentLayout& l = m.layout;
    rep.round = n;
    // Header: everything after magic, layout_version, header_size and total_size.
    h->ipfix_sequence.store(g.x64(0), std::memory_order_relaxed);
    // Stop flags: hostile in about a third of the rounds, cleared in the others (a set
    // capd_finished makes procd finish, which takes it out of the pipeline until a restart).
    const bool stop_hostile = g.chance(33);
    auto flag32 = [&] { return stop_hostile ? g.x32(1) : 0u; };
    h->stop.capd_finished.store(flag32());
    h->stop.input_ended.store(flag32());
    h->stop.procd_finished.store(flag32());
    h->stop.netd_finished.store(flag32());
    h->stop.replay_published.store(g.x64(0));
    h->stop.replay_pending.store(g.x64(0));
    h->stop.replay_pending_head.store(g.x64(l.packet_ring_bytes));
    rep.fields += 8;
    for (auto& s : h->stages) write_stage(g, s, m.ctld_pid, rep);
    write_ring(g, h->packet_ring, l.packet_ring_bytes, rep, g.chance(60));
    write_ring(g, h->record_ring, l.record_ring_slots, rep, g.chance(60));
    // The event ring: positions and slots anywhere in half of the rounds, a batch the reader
    // takes in the other half.
    const bool event_batch = g.chance(50);
    write_ring(g, h->event_ring, l.event_ring_slots, rep, !event_batch);
    write_flow_map(g, m, rep, g.chance(40));
    if (event_batch) write_event_batch(g, m, rep);
    else write_event_slots(g, m, rep);
    write_ring_contents(g, m, rep);
    rep.done = 1;
}

// Puts back what the stages cannot repair themselves: sane FlowMap geometry, cleared stop
// flags, every ring empty at a consistent position. For the end of the test: freshly
// restarted stages can then drain and stop in order, so that the stop measures ctld.
void settle(const Mapped& m, HostileRound& rep) {
    auto* h = reinterpret_cast<SegmentHeader*>(m.base);
    const SegmentLayout& l = m.layout;
    h->stop.capd_finished.store(0);
    h->stop.input_ended.store(0);
    h->stop.procd_finished.store(0);
    h->stop.netd_finished.store(0);
    h->stop.replay_pending.store(0);
    for (RingControl* c : {&h->packet_ring, &h->record_ring, &h->event_ring}) {
        c->head.store(0);
        c->tail.store(0);
        c->consumer_sleeping.store(0);
        c->producer_sleeping.store(0);
    }
    h->packet_ring.capacity = l.packet_ring_bytes;
    h->record_ring.capacity = l.record_ring_slots;
    h->event_ring.capacity = l.event_ring_slots;
    auto* fh = reinterpret_cast<FlowMapHeader*>(m.base + l.flow_map_offset);
    const uint32_t cap = l.flow_map_capacity;
    fh->magic = kFlowMapMagicValue;
    fh->capacity = cap;
    fh->bucket_count = pow2_at_least(cap);
    fh->reserved.store(std::min(cap, kFlowReserveStep));
    fh->high_water.store(std::min(cap, kFlowReserveStep));
    rep.round = kSettleRound;
    rep.done = 1;
}

int errno_of(int rc) { return rc == 0 ? 0 : errno; }

int try_open(const std::string& path, int flags) {
    const int fd = open(path.c_str(), flags | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    return errno;
}

int try_mmap(int fd, size_t len, int prot, int flags) {
    void* p = mmap(nullptr, len, prot, flags, fd, 0);
    if (p == MAP_FAILED) return errno;
    munmap(p, len);
    return 0;
}

[[noreturn]] void child_main(const std::string& instance, uid_t uid, gid_t gid, uint64_t seed, int cmd_fd,
                             int reply_fd) {
    HostileFacts f{};
    auto fail = [&](const char* what) {
        std::snprintf(f.setup_error, sizeof f.setup_error, "%s: %s", what, std::strerror(errno));
        write_all(reply_fd, &f, sizeof f);
        _exit(2);
    };
    const std::string data_path = "/dev/shm/" + Segment::shm_name(instance);
    const std::string ctl_path = "/dev/shm/" + Segment::control_shm_name(instance);
    // As root, as ctld hands them to a stage: the data segment read-write, the control object
    // read-only.
    const int data_fd = open(data_path.c_str(), O_RDWR | O_CLOEXEC);
    if (data_fd < 0) fail("open the data segment as root");
    const int ctl_fd = open(ctl_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ctl_fd < 0) fail("open the control object read-only as root");
    // The stage's user, as common/sandbox does it (without chroot and seccomp: this writer
    // may do more than a stage could).
    if (setgroups(0, nullptr) != 0) fail("setgroups");
    if (setresgid(gid, gid, gid) != 0) fail("setresgid");
    if (setresuid(uid, uid, uid) != 0) fail("setresuid");
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // the change of user cleared it
    uid_t r, e, s;
    gid_t rg, eg, sg;
    getresuid(&r, &e, &s);
    getresgid(&rg, &eg, &sg);
    f.ruid = r, f.euid = e, f.suid = s, f.rgid = rg, f.egid = eg, f.sgid = sg;
    f.ngroups = getgroups(0, nullptr);
    f.regained_root = setuid(0) == 0 || seteuid(0) == 0;

    // What must fail.
    f.open_data_rw_errno = try_open(data_path, O_RDWR);
    f.open_data_ro_errno = try_open(data_path, O_RDONLY);
    f.open_ctl_rw_errno = try_open(ctl_path, O_RDWR);
    f.open_ctl_wo_errno = try_open(ctl_path, O_WRONLY);
    f.reopen_ctl_rw_errno = try_open("/proc/self/fd/" + std::to_string(ctl_fd), O_RDWR);
    struct stat st{};
    if (fstat(ctl_fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(ControlBlock))) fail("fstat the control object");
    const size_t ctl_len = static_cast<size_t>(st.st_size);
    f.mmap_ctl_shared_rw_errno = try_mmap(ctl_fd, ctl_len, PROT_READ | PROT_WRITE, MAP_SHARED);
    f.mmap_ctl_shared_w_errno = try_mmap(ctl_fd, ctl_len, PROT_WRITE, MAP_SHARED);
    void* ro = mmap(nullptr, ctl_len, PROT_READ, MAP_SHARED, ctl_fd, 0);
    if (ro == MAP_FAILED) fail("map the control object read-only");
    f.mprotect_ctl_errno = errno_of(mprotect(ro, ctl_len, PROT_READ | PROT_WRITE));
    const uint8_t one = 0xA5;
    f.pwrite_ctl_errno = pwrite(ctl_fd, &one, 1, 0) >= 0 ? 0 : errno;
    f.ftruncate_ctl_errno = errno_of(ftruncate(ctl_fd, 0));
    // Copy-on-write: allowed, but nothing written there may reach the object.
    void* priv = mmap(nullptr, ctl_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, ctl_fd, 0);
    if (priv != MAP_FAILED) {
        uint8_t before = 0, after = 0;
        if (pread(ctl_fd, &before, 1, 0) == 1) {
            static_cast<uint8_t*>(priv)[0] = static_cast<uint8_t>(~before);
            f.private_write_leaked = pread(ctl_fd, &after, 1, 0) == 1 && after != before;
        }
        munmap(priv, ctl_len);
    }
    Mapped m;
    m.ctl = static_cast<const ControlBlock*>(ro);
    f.ctl_magic_ok = m.ctl->magic == kControlMagic && m.ctl->layout_version == kLayoutVersion;
    m.layout = m.ctl->layout;
    m.ctld_pid = m.ctl->ctld_pid.load();
    f.layout = m.layout;
    f.ctld_pid = m.ctld_pid;

    // What a stage may do: map the data segment read-write.
    if (fstat(data_fd, &st) != 0) fail("fstat the data segment");
    m.len = static_cast<size_t>(st.st_size);
    void* data = mmap(nullptr, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, data_fd, 0);
    f.mmap_data_rw_errno = data == MAP_FAILED ? errno : 0;
    const bool usable = data != MAP_FAILED && f.ctl_magic_ok && m.layout.total_size <= m.len &&
                        m.layout.flow_map_offset + m.layout.flow_map_bytes <= m.len &&
                        m.layout.event_ring_offset + m.layout.event_ring_slots * sizeof(Record) <= m.len &&
                        m.layout.record_ring_offset + m.layout.record_ring_slots * sizeof(Record) <= m.len &&
                        m.layout.packet_ring_offset + m.layout.packet_ring_bytes <= m.len;
    if (!usable) {
        std::snprintf(f.setup_error, sizeof f.setup_error, "the data segment (%zu bytes) does not match the layout",
                      m.len);
        write_all(reply_fd, &f, sizeof f);
        _exit(3);
    }
    m.base = static_cast<uint8_t*>(data);
    f.complete = 1;
    if (!write_all(reply_fd, &f, sizeof f)) _exit(4);

    for (;;) {
        uint32_t n = 0;
        if (!read_all(cmd_fd, &n, sizeof n, -1)) _exit(0);  // the parent is done
        HostileRound rep{};
        if (n == kSettleRound) settle(m, rep);
        else hostile_round(seed, n, m, rep);
        if (!write_all(reply_fd, &rep, sizeof rep)) _exit(5);
    }
}

}  // namespace

HostileWriter::HostileWriter(const std::string& instance, uid_t uid, gid_t gid, uint64_t seed) {
    int cmd[2], reply[2];
    if (pipe2(cmd, O_CLOEXEC) != 0) return;
    if (pipe2(reply, O_CLOEXEC) != 0) {
        close(cmd[0]);
        close(cmd[1]);
        return;
    }
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        close(cmd[1]);
        close(reply[0]);
        child_main(instance, uid, gid, seed, cmd[0], reply[1]);
    }
    close(cmd[0]);
    close(reply[1]);
    if (pid_ < 0) {
        close(cmd[1]);
        close(reply[0]);
        return;
    }
    cmd_fd_ = cmd[1];
    reply_fd_ = reply[0];
    if (!read_all(reply_fd_, &facts_, sizeof facts_, 10000)) facts_.complete = 0;
}

HostileWriter::~HostileWriter() { stop(); }

bool HostileWriter::round(uint32_t n, HostileRound* out, std::string* why) {
    if (pid_ <= 0 || cmd_fd_ < 0) {
        *why = "the writer is not running";
        return false;
    }
    if (!write_all(cmd_fd_, &n, sizeof n)) {
        *why = std::string("cannot send the round: ") + std::strerror(errno);
        return false;
    }
    if (!read_all(reply_fd_, out, sizeof *out, 10000)) {
        *why = "no answer from the writer within 10 s (it died?)";
        return false;
    }
    return true;
}

bool HostileWriter::settle(std::string* why) {
    HostileRound rep{};
    return round(kSettleRound, &rep, why) && rep.done == 1;
}

void HostileWriter::stop() {
    if (cmd_fd_ >= 0) close(cmd_fd_);
    cmd_fd_ = -1;
    if (pid_ > 0) {
        // EOF on its command pipe ends it; SIGKILL if it has not gone within 2 s.
        int st = 0;
        bool reaped = false;
        for (int i = 0; i < 200 && !reaped; ++i) {
            if (waitpid(pid_, &st, WNOHANG) == pid_) reaped = true;
            else std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (!reaped) {
            kill(pid_, SIGKILL);
            waitpid(pid_, &st, 0);
        }
        pid_ = -1;
    }
    if (reply_fd_ >= 0) close(reply_fd_);
    reply_fd_ = -1;
}

}  // namespace angel::itest
