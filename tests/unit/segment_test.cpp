// The instance segment (shm/segment.hpp): create/attach/remove, the clear refusals (missing
// segment, other layout version, not a segment), the live-config seqlock, and ring positions and
// counters persisting across a stage detaching and attaching again.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "shm/segment.hpp"

namespace angel {
namespace {

std::string unique_instance() {
    static int n = 0;
    return "test-" + std::to_string(getpid()) + "-seg-" + std::to_string(n++);
}

SegmentSizes small_sizes() {
    SegmentSizes sz;
    sz.packet_ring_bytes = 1 << 20;
    sz.record_ring_bytes = 1 << 20;
    sz.event_ring_bytes = 1 << 18;
    sz.max_flows = 1000;
    return sz;
}

// Creates the instance's segment and removes it at the end of the test, however it ends.
struct ScopedInstance {
    ScopedInstance() : name(unique_instance()), seg(Segment::create(name, small_sizes())) {}
    ~ScopedInstance() {
        seg.reset();
        Segment::remove(name);
    }
    std::string name;
    std::unique_ptr<Segment> seg;
};

bool shm_exists(const std::string& instance) {
    return access(("/dev/shm/" + Segment::shm_name(instance)).c_str(), F_OK) == 0;
}

// Writing through a fresh attachment faults once per page; after prefault(write) it must not.
// (Attach twice: the creator's own mapping was already touched while formatting.)
long minor_faults() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

long faults_writing_packet_ring(const Segment& seg) {
    auto* base = reinterpret_cast<uint8_t*>(seg.header());
    const SegmentLayout& h = seg.layout();
    const long before = minor_faults();
    for (uint64_t off = 0; off < h.packet_ring_bytes; off += 4096) base[h.packet_ring_offset + off] = 1;
    return minor_faults() - before;
}

TEST(Segment, PrefaultMapsTheRingSoWritesTakeNoPageFault) {
    ScopedInstance inst;
    const long pages = static_cast<long>(inst.seg->layout().packet_ring_bytes / 4096);
    {
        auto cold = Segment::attach(inst.name);
        EXPECT_GE(faults_writing_packet_ring(*cold), pages / 2);  // the test can see faults
    }
    auto warm = Segment::attach(inst.name);
    warm->prefault(Segment::Ring::packet, Segment::Access::write);
    EXPECT_LE(faults_writing_packet_ring(*warm), 4);
}

// /dev/shm holds what the FlowMap uses, not flow.max_flows: create() reserves a first part of
// the entries, grow_flow_map() more, each step visible in the file's allocated blocks.
long long allocated_bytes(const std::string& instance) {
    struct stat st{};
    if (stat(("/dev/shm/" + Segment::shm_name(instance)).c_str(), &st) != 0) return -1;
    return static_cast<long long>(st.st_blocks) * 512;
}

TEST(Segment, FlowMapEntriesAreReservedAsTheyAreNeeded) {
    const std::string name = unique_instance();
    SegmentSizes sz = small_sizes();
    sz.max_flows = 1000000;
    auto seg = Segment::create(name, sz);
    FlowMap fm = seg->flow_map();
    EXPECT_EQ(fm.reserved(), kFlowReserveStep);
    const long long total = static_cast<long long>(seg->header()->total_size);
    const long long at_start = allocated_bytes(name);
    const long long unreserved = static_cast<long long>(fm.capacity() - kFlowReserveStep) * sizeof(FlowEntry);
    EXPECT_LE(at_start, total - unreserved + (1 << 20)) << "the entries beyond the first step are not allocated";
    EXPECT_EQ(seg->grow_flow_map(200000), 0);
    EXPECT_EQ(fm.reserved(), 200000u);
    const long long grown = allocated_bytes(name) - at_start;
    const long long step = static_cast<long long>(200000 - kFlowReserveStep) * sizeof(FlowEntry);
    EXPECT_GE(grown, step - 8192);
    EXPECT_LE(grown, step + 8192);
    EXPECT_EQ(seg->grow_flow_map(100), 0);  // below what is reserved: nothing to do
    EXPECT_EQ(fm.reserved(), 200000u);
    seg.reset();
    Segment::remove(name);
}

// In a /dev/shm that others filled after the meter started, the FlowMap cannot grow:
// grow_flow_map() says so (ENOSPC) and the map keeps its reserved size. Child with its own
// mount namespace and a 24 MiB tmpfs (root only).
TEST(Segment, FlowMapThatCannotGrowKeepsItsSize) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=24m") != 0)
            _exit(3);
        SegmentSizes sz = small_sizes();
        sz.max_flows = 80000;  // more entries than the first step: about 16 MiB in all
        const std::string name = unique_instance();
        int code = 0;
        try {
            auto seg = Segment::create(name, sz);
            const int filler = open("/dev/shm/filler", O_CREAT | O_WRONLY, 0600);
            struct statvfs fs{};
            if (filler < 0 || fstatvfs(filler, &fs) != 0) _exit(3);
            if (posix_fallocate(filler, 0, static_cast<off_t>(fs.f_bavail * fs.f_frsize)) != 0) _exit(3);
            const int rc = seg->grow_flow_map(80000 + kFlowMapSpare);
            if (rc != ENOSPC) code = 1;
            if (seg->flow_map().reserved() != kFlowReserveStep) code = 2;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "unexpected: %s\n", e.what());
            code = 4;
        }
        Segment::remove(name);
        _exit(code);
    }
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st)) << "child died of signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    EXPECT_EQ(WEXITSTATUS(st), 0) << "1: grew anyway, 2: reserved size changed, 3: setup, 4: other error";
}

TEST(Segment, CreateAttachRemove) {
    const std::string name = unique_instance();
    {
        auto seg = Segment::create(name, small_sizes());
        ASSERT_TRUE(shm_exists(name));
        SegmentHeader* h = seg->header();
        EXPECT_EQ(h->magic, kSegmentMagic);
        EXPECT_EQ(h->layout_version, kLayoutVersion);
        EXPECT_EQ(h->header_size, sizeof(SegmentHeader));
        // Rings are powers of two; every region lies inside the segment, 4 KiB aligned,
        // in order and without overlap.
        EXPECT_EQ(h->packet_ring.capacity, 1u << 20);
        EXPECT_EQ(h->record_ring.capacity, (1u << 20) / sizeof(Record));
        EXPECT_EQ(h->event_ring.capacity, (1u << 18) / sizeof(Record));
        const SegmentLayout& l = seg->layout();
        EXPECT_EQ(l.flow_map_capacity, 1000u + kFlowMapSpare);  // spare entries for flows ending in a batch
        EXPECT_GE(l.packet_ring_offset, sizeof(SegmentHeader));
        EXPECT_GE(l.record_ring_offset, l.packet_ring_offset + l.packet_ring_bytes);
        EXPECT_GE(l.event_ring_offset, l.record_ring_offset + l.record_ring_slots * sizeof(Record));
        EXPECT_GE(l.flow_map_offset, l.event_ring_offset + l.event_ring_slots * sizeof(Record));
        EXPECT_LE(l.flow_map_offset + l.flow_map_bytes, l.total_size);
        EXPECT_EQ(l.total_size, h->total_size);
        for (uint64_t off : {l.packet_ring_offset, l.record_ring_offset, l.event_ring_offset, l.flow_map_offset})
            EXPECT_EQ(off % 4096, 0u);
        // The layout the stages are given is ctld's: the control object holds the same.
        EXPECT_EQ(std::memcmp(&seg->control().layout, &l, sizeof l), 0);

        auto other = Segment::attach(name);
        EXPECT_NE(other->header(), seg->header());  // a mapping of its own
        EXPECT_EQ(other->header()->total_size, h->total_size);
        // The same memory: a write through one mapping is seen through the other.
        h->ipfix_sequence.store(4242);
        EXPECT_EQ(other->header()->ipfix_sequence.load(), 4242u);
        FlowMap fm = seg->flow_map();
        EXPECT_EQ(fm.capacity(), 1000u + kFlowMapSpare);
        FlowKey k;
        k.ip_version = 4;
        k.proto = 6;
        ASSERT_NE(fm.insert(k, 1, 77, 1), nullptr);
        EXPECT_TRUE(other->flow_map().id_in_use(77));
        EXPECT_EQ(other->flow_map().live(), 1u);
    }
    EXPECT_TRUE(shm_exists(name));  // detaching leaves the segment for the other stages
    Segment::remove(name);
    EXPECT_FALSE(shm_exists(name));
    EXPECT_THROW(Segment::attach(name), SegmentError);
}

TEST(Segment, CreateReplacesAStaleSegment) {
    ScopedInstance inst;
    inst.seg->header()->ipfix_sequence.store(99);
    inst.seg.reset();
    inst.seg = Segment::create(inst.name, small_sizes());
    EXPECT_EQ(inst.seg->header()->ipfix_sequence.load(), 0u);
    EXPECT_EQ(Segment::attach(inst.name)->header()->ipfix_sequence.load(), 0u);
}

TEST(Segment, AttachToMissingSegmentNamesTheInstance) {
    const std::string name = unique_instance() + "-missing";
    try {
        Segment::attach(name);
        FAIL() << "attach to a missing segment succeeded";
    } catch (const SegmentError& e) {
        EXPECT_NE(std::string(e.what()).find("'" + name + "'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(Segment::shm_name(name)), std::string::npos) << e.what();
    }
}

TEST(Segment, OtherLayoutVersionIsRefused) {
    ScopedInstance inst;
    inst.seg->header()->layout_version = kLayoutVersion + 1;
    try {
        Segment::attach(inst.name);
        FAIL() << "attach to a segment of another layout version succeeded";
    } catch (const SegmentError& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("layout version"), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(kLayoutVersion + 1)), std::string::npos) << msg;
    }
    inst.seg->header()->layout_version = kLayoutVersion;
    EXPECT_NO_THROW(Segment::attach(inst.name));
}

TEST(Segment, NotASegmentIsRefused) {
    ScopedInstance inst;
    inst.seg->header()->magic = 0;  // e.g. a creator that died before finishing the header
    try {
        Segment::attach(inst.name);
        FAIL() << "attach to a segment without magic succeeded";
    } catch (const SegmentError& e) {
        EXPECT_NE(std::string(e.what()).find("magic"), std::string::npos) << e.what();
    }
}

LiveConfig config_pattern(uint8_t v) {
    LiveConfig c;
    std::memset(&c, v, sizeof c);
    c.instance[sizeof c.instance - 1] = 0;
    return c;
}

TEST(Segment, LiveConfigRoundTrip) {
    ScopedInstance inst;
    auto reader = Segment::attach(inst.name);
    LiveConfig in{};
    std::strcpy(in.instance, "x");
    std::strcpy(in.classifier_host, "127.0.0.1");
    in.classifier_port = 47390;
    in.flow_timeout_s = 60;
    in.id_key[0] = 0x0123456789abcdefull;
    in.id_key[1] = 0xfedcba9876543210ull;
    in.interface_count = 2;
    std::strcpy(in.interfaces[1], "em1");
    const uint32_t gen0 = inst.seg->control_rw().config.generation.load();
    write_live_config(inst.seg->control_rw().config, in);
    EXPECT_EQ(reader->control().config.generation.load(), gen0 + 1);
    EXPECT_EQ(reader->control().config.seq.load() % 2, 0u);
    LiveConfig out = reader->config();
    EXPECT_EQ(std::memcmp(&in, &out, sizeof in), 0);
    EXPECT_STREQ(out.classifier_host, "127.0.0.1");
    EXPECT_EQ(out.classifier_port, 47390u);
    EXPECT_STREQ(out.interfaces[1], "em1");
}

// A reader never sees half of one version and half of another while the writer keeps
// publishing (the reload case: ctld applies a new config while stages read theirs).
TEST(Segment, LiveConfigReadersNeverSeeATornCopy) {
    ScopedInstance inst;
    auto reader = Segment::attach(inst.name);
    write_live_config(inst.seg->control_rw().config, config_pattern(1));  // no all-zero start
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        for (uint32_t i = 0; !stop.load(std::memory_order_relaxed); ++i)
            write_live_config(inst.seg->control_rw().config, config_pattern(uint8_t(1 + i % 2)));
    });
    const LiveConfig a = config_pattern(1), b = config_pattern(2);
    int reads = 0, torn = 0, seen_a = 0, seen_b = 0;
    const uint64_t t0 = monotonic_ns();
    while (monotonic_ns() - t0 < 200000000ull || (seen_a == 0 || seen_b == 0)) {
        LiveConfig c = reader->config();
        ++reads;
        if (std::memcmp(&c, &a, sizeof c) == 0) ++seen_a;
        else if (std::memcmp(&c, &b, sizeof c) == 0) ++seen_b;
        else if (++torn == 1) {
            const auto* x = reinterpret_cast<const uint8_t*>(&c);
            size_t i = 0;
            while (i + 1 < sizeof c && (x[i] == x[0] || i == sizeof c.instance - 1)) ++i;
            ADD_FAILURE() << "torn copy: byte 0 is " << int(x[0]) << ", byte " << i << " is "
                          << int(x[i]) << " (of " << sizeof c << ")";
        }
        if (monotonic_ns() - t0 > 5000000000ull) break;
    }
    stop = true;
    writer.join();
    EXPECT_EQ(torn, 0) << "of " << reads << " reads";
    EXPECT_GT(seen_a, 0);
    EXPECT_GT(seen_b, 0);
}

// A stage that exits and comes back finds the positions where it left them: the consumer
// resumes at its last commit, the producer at its last publish, counters keep counting.
TEST(Segment, RingPositionsPersistAcrossDetachAndAttach) {
    ScopedInstance inst;
    {
        auto producer = Segment::attach(inst.name);
        auto rr = producer->record_ring();
        for (uint32_t i = 0; i < 100; ++i) {
            Record r{};
            r.flow_id = i;
            ASSERT_TRUE(rr.push(r));
        }
        rr.publish();
        auto pr = producer->packet_ring();
        uint8_t payload[300];
        for (uint32_t i = 0; i < 10; ++i) {
            std::memset(payload, int(i), sizeof payload);
            PacketSlot s{};
            s.ts_ns = i;
            s.caplen = 300;
            s.linktype = 1;
            ASSERT_TRUE(pr.push(s, payload));
        }
        pr.publish();
        producer->stage(StageId::capd).counters[capd_queued].store(10);
    }
    {
        auto consumer = Segment::attach(inst.name);
        auto rr = consumer->record_ring();
        const Record* p = nullptr;
        ASSERT_EQ(rr.peek(&p, 40), 40u);
        rr.advance(40);
        rr.commit();
        ASSERT_EQ(rr.peek(&p, 5), 5u);
        rr.advance(5);  // taken, never committed: delivered again after the restart
        auto pr = consumer->packet_ring();
        const uint8_t* d = nullptr;
        for (int i = 0; i < 4; ++i) ASSERT_NE(pr.next(&d), nullptr);
        pr.commit();
    }
    auto again = Segment::attach(inst.name);
    SegmentHeader* h = again->header();
    EXPECT_EQ(h->record_ring.head.load(), 100u);
    EXPECT_EQ(h->record_ring.tail.load(), 40u);
    EXPECT_EQ(h->record_ring.produced.load(), 100u);
    EXPECT_EQ(h->record_ring.consumed.load(), 40u);
    EXPECT_EQ(h->packet_ring.produced.load(), 10u);
    EXPECT_EQ(h->packet_ring.consumed.load(), 4u);
    EXPECT_EQ(again->stage(StageId::capd).counters[capd_queued].load(), 10u);

    auto rr = again->record_ring();
    const Record* p = nullptr;
    ASSERT_EQ(rr.peek(&p, 1000), 60u);
    EXPECT_EQ(p[0].flow_id, 40u);
    EXPECT_EQ(p[59].flow_id, 99u);
    auto pr = again->packet_ring();
    const uint8_t* d = nullptr;
    const PacketSlot* s = pr.next(&d);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->ts_ns, 4u);
    EXPECT_EQ(d[0], 4);
    EXPECT_EQ(d[299], 4);

    // The producer resumes at the shared head too.
    Record r{};
    r.flow_id = 100;
    ASSERT_TRUE(rr.push(r));
    rr.publish();
    EXPECT_EQ(h->record_ring.head.load(), 101u);
}

}  // namespace
}  // namespace angel
