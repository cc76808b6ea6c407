// ctld's adoption of a segment a dead run left (ctld/segment_adoption.hpp), fed what a stage
// of that run could have written: each impossible value means no adoption and the segment
// removed; a sound one is adopted with its flows, ring positions and sequence as they were,
// and a new control object. The oracle is what the test wrote, never the view's own reading.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "ctld/runtime_files.hpp"
#include "ctld/segment_adoption.hpp"
#include "shm/segment.hpp"
#include "small_segment_sizes.hpp"
#include "unit_temp_dir.hpp"

using namespace angel;

namespace {

using unit_testing::small_segment_sizes;

// A segment as a dead run leaves it: three flows, records queued, a sequence, a stop flag.
struct LeftSegment {
    std::string instance = "adopt-" + std::to_string(getpid()) + "-" + std::to_string(counter()++);
    unit_testing::TempDir dir{"angel-adopt"};
    AdoptionRequest req;
    explicit LeftSegment(uint32_t max_flows = 1000) {
        auto seg = Segment::create(instance, small_segment_sizes(max_flows));
        seg->control_rw().ctld_pid.store(999999999);  // no such process
        FlowMap fm = seg->flow_map();
        for (uint32_t i = 0; i < 3; ++i) {
            FlowKey k{};
            k.ip_version = 4;
            k.proto = 6;
            k.addr_lo[0] = 10;
            k.addr_hi[0] = 192;
            k.port_lo = static_cast<uint16_t>(1000 + i);
            k.port_hi = 80;
            FlowEntry* e = fm.insert(k, 7 * i + 1, 100 + i, 1'000'000'000ull * (i + 1));
            e->packets[0] = 5 + i;
        }
        SegmentHeader& h = *seg->header();
        h.record_ring.head.store(40);
        h.record_ring.tail.store(30);
        h.ipfix_sequence.store(12345);
        h.stop.procd_finished.store(1);
        h.progress.covered_ns.store(5'000'000'000ull);
        req.instance = instance;
        req.runtime_dir = dir.path;
        req.sizes = small_segment_sizes(max_flows);
        req.lock_wait_ms = 100;
    }
    ~LeftSegment() { Segment::remove(instance); }
    static int& counter() {
        static int n = 0;
        return n;
    }
    bool exists() const {
        struct stat st{};
        return stat(("/dev/shm/" + Segment::shm_name(instance)).c_str(), &st) == 0;
    }
    // The segment as root tools see it, to write what a stage could have.
    std::unique_ptr<Segment> raw() const { return Segment::attach(instance); }
};

FlowMapHeader& fm_header(const Segment& s) {
    return *reinterpret_cast<FlowMapHeader*>(s.base() + s.layout().flow_map_offset);
}

}  // namespace

TEST(SegmentAdoption, SoundSegmentIsAdoptedAsItWas) {
    LeftSegment left;
    Recovery rec;
    auto seg = adopt_left_segment(left.req, &rec);
    ASSERT_TRUE(seg);
    EXPECT_EQ(rec.previous_pid, 999999999);
    EXPECT_EQ(rec.adopted_flows, 3u);
    EXPECT_EQ(rec.last_capture_ns, 5'000'000'000ull);
    const SegmentHeader& h = *seg->header();
    EXPECT_EQ(h.record_ring.head.load(), 40u);
    EXPECT_EQ(h.record_ring.tail.load(), 30u);
    EXPECT_EQ(h.ipfix_sequence.load(), 12345u);
    EXPECT_EQ(h.stop.procd_finished.load(), 0u) << "the dead run's stop answer was kept";
    // A new control object: the dead run's pid is gone from it, the layout is ctld's plan.
    EXPECT_EQ(seg->control().ctld_pid.load(), 0);
    EXPECT_EQ(seg->control().magic, kControlMagic);
    EXPECT_EQ(seg->control().layout.total_size, Segment::plan(left.req.sizes).total_size);
    FlowMap fm = seg->flow_map();
    fm.recover({});
    EXPECT_EQ(fm.live(), 3u);
    for (uint32_t i = 0; i < 3; ++i) {
        const FlowEntry* e = fm.find_id(100 + i);
        ASSERT_NE(e, nullptr) << i;
        EXPECT_EQ(e->packets[0], 5u + i);
    }
    EXPECT_TRUE(left.exists());
}

TEST(SegmentAdoption, NoSegmentLeftAdoptsNothing) {
    LeftSegment left;
    Segment::remove(left.instance);
    Recovery rec;
    EXPECT_FALSE(adopt_left_segment(left.req, &rec));
    EXPECT_EQ(rec.previous_pid, 0);
}

// Each of these a stage could have written; none may be adopted, and the segment goes.
TEST(SegmentAdoption, ImpossibleValuesRemoveTheSegment) {
    struct Case {
        const char* name;
        void (*spoil)(Segment&);
    };
    const Case cases[] = {
        {"record ring head behind its tail", [](Segment& s) { s.header()->record_ring.head.store(20); }},
        {"packet ring more than a ring ahead",
         [](Segment& s) { s.header()->packet_ring.head.store(s.layout().packet_ring_bytes + 1); }},
        {"event ring capacity changed", [](Segment& s) { s.header()->event_ring.capacity = 7; }},
        {"FlowMap magic", [](Segment& s) { fm_header(s).magic = 1; }},
        {"FlowMap capacity", [](Segment& s) { fm_header(s).capacity = 5; }},
        {"FlowMap high_water beyond capacity", [](Segment& s) { fm_header(s).high_water.store(0xFFFFFFF0u); }},
        {"entry in_use 7", [](Segment& s) { const_cast<FlowEntry&>(s.flow_map().entry(1)).in_use = 7; }},
        {"entry IP version 5", [](Segment& s) { const_cast<FlowEntry&>(s.flow_map().entry(0)).key.ip_version = 5; }},
        {"entry ending with reason 99",
         [](Segment& s) {
             auto& e = const_cast<FlowEntry&>(s.flow_map().entry(2));
             e.ending = 99;  // an EndReason there
         }},
        {"header magic", [](Segment& s) { s.header()->magic = 0; }},
        {"header layout version", [](Segment& s) { s.header()->layout_version = kLayoutVersion + 1; }},
    };
    for (const Case& c : cases) {
        LeftSegment left;
        c.spoil(*left.raw());
        Recovery rec;
        EXPECT_FALSE(adopt_left_segment(left.req, &rec)) << c.name;
        EXPECT_FALSE(left.exists()) << c.name << ": the segment was left in place";
    }
}

TEST(SegmentAdoption, OtherSizesOrAReplayOrAStageStillRunningRemoveIt) {
    {
        LeftSegment left;
        left.req.sizes.max_flows = 2000;  // flow.max_flows changed: the map lies elsewhere
        Recovery rec;
        EXPECT_FALSE(adopt_left_segment(left.req, &rec));
        EXPECT_FALSE(left.exists());
    }
    {
        LeftSegment left;
        left.req.replay = true;
        Recovery rec;
        EXPECT_FALSE(adopt_left_segment(left.req, &rec));
        EXPECT_FALSE(left.exists());
    }
    {
        // A stage of the dead run still holds its lock (it has not exited yet).
        LeftSegment left;
        std::string err;
        const int fd = open_runtime_file(stage_lock_path(left.dir.path, left.instance, "procd"), 0600, false, &err);
        ASSERT_GE(fd, 0) << err;
        ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
        Recovery rec;
        EXPECT_FALSE(adopt_left_segment(left.req, &rec));
        EXPECT_FALSE(left.exists());
        close(fd);
    }
    {
        // Its lock free again: adopted.
        LeftSegment left;
        std::string err;
        const int fd = open_runtime_file(stage_lock_path(left.dir.path, left.instance, "netd"), 0600, false, &err);
        ASSERT_GE(fd, 0) << err;
        close(fd);
        Recovery rec;
        EXPECT_TRUE(adopt_left_segment(left.req, &rec));
    }
}
