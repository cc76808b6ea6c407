// Segment creation and attachment through Boost.Interprocess. Only plain structs and
// atomics live in the segment: no interprocess mutex, so a killed process leaves nothing
// locked (Boost.Interprocess cannot recover a mutex whose owner died).
#include "shm/segment.hpp"

#include <sys/mman.h>
#include <sys/statvfs.h>

#include <fcntl.h>
#include <time.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstring>
#include <new>

namespace bip = boost::interprocess;

namespace angel {

struct Segment::Impl {
    bip::shared_memory_object shm;
    bip::mapped_region region;
};

namespace {
uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) & ~(a - 1); }
std::string no_room(uint64_t bytes, const std::string& name, const std::string& why) {
    return "cannot reserve " + std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB of shared memory for /dev/shm/" +
           name + ": " + why + " (shrink shm.* or flow.max_flows, or enlarge /dev/shm)";
}
uint64_t pow2_floor(uint64_t n) {
    uint64_t p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}
}  // namespace

std::string Segment::shm_name(const std::string& instance) { return "angel." + instance; }

std::unique_ptr<Segment> Segment::create(const std::string& instance, const SegmentSizes& sz) {
    const std::string name = shm_name(instance);
    bip::shared_memory_object::remove(name.c_str());
    // Rings are powers of two so positions map to slots with a mask.
    const uint64_t pkt_bytes = pow2_floor(std::max<uint64_t>(sz.packet_ring_bytes, 1ull << 20));
    const uint64_t rec_slots = pow2_floor(std::max<uint64_t>(sz.record_ring_bytes / sizeof(Record), 1024));
    const uint64_t evt_slots = pow2_floor(std::max<uint64_t>(sz.event_ring_bytes / sizeof(Record), 1024));
    // Room beyond flow.max_flows for flows that ended in the batch procd is working on: they
    // keep their entry until that batch is published (see procd/flow_tracker.hpp), and
    // procd evicts at max_flows, so a batch never runs out of entries.
    const uint32_t flows = std::max<uint32_t>(sz.max_flows, 16) + kFlowMapSpare;

    uint64_t off = align_up(sizeof(SegmentHeader), 4096);
    const uint64_t pkt_off = off;
    off = align_up(off + pkt_bytes, 4096);
    const uint64_t rec_off = off;
    off = align_up(off + rec_slots * sizeof(Record), 4096);
    const uint64_t evt_off = off;
    off = align_up(off + evt_slots * sizeof(Record), 4096);
    const uint64_t fm_off = off;
    const uint64_t fm_bytes = FlowMap::bytes_for(flows);
    off = align_up(off + fm_bytes, 4096);

    auto seg = std::unique_ptr<Segment>(new Segment());
    seg->impl_ = std::make_unique<Impl>();
    try {
        seg->impl_->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                                    bip::permissions(0660));
        seg->impl_->shm.truncate(static_cast<bip::offset_t>(off));
        // truncate alone makes a sparse file: on a /dev/shm too small for it, a stage would
        // die of SIGBUS the first time it reaches an unbacked page. A /dev/shm that cannot
        // hold the whole segment is refused now; everything but the FlowMap entries is
        // reserved now, and the entries a first part now, the rest as procd needs them
        // (grow_flow_map), so that a large flow.max_flows costs memory only when used.
        const int fd = seg->impl_->shm.get_mapping_handle().handle;
        struct statvfs fs{};
        // (A tmpfs mounted without a size limit reports 0 blocks in all: no limit to check.)
        if (fstatvfs(fd, &fs) == 0 && fs.f_blocks != 0 && uint64_t{fs.f_bavail} * fs.f_frsize < off) {
            bip::shared_memory_object::remove(name.c_str());
            throw SegmentError(no_room(off, name, "only " + std::to_string((uint64_t{fs.f_bavail} * fs.f_frsize) >> 20) +
                                                      " MiB free"));
        }
        const uint32_t first = std::min(flows, kFlowReserveStep);
        const uint64_t reserved_end = fm_off + FlowMap::entry_offset(flows, first);
        const uint64_t entries_end = fm_off + FlowMap::entries_end(flows);
        int rc = posix_fallocate(fd, 0, static_cast<off_t>(reserved_end));
        if (rc == 0) rc = posix_fallocate(fd, static_cast<off_t>(entries_end), static_cast<off_t>(off - entries_end));
        if (rc != 0) {
            bip::shared_memory_object::remove(name.c_str());
            throw SegmentError(no_room(off, name, strerror(rc)));
        }
        seg->impl_->region = bip::mapped_region(seg->impl_->shm, bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        throw SegmentError("cannot create shared memory /dev/shm/" + name + ": " + e.what());
    }
    seg->base_ = static_cast<uint8_t*>(seg->impl_->region.get_address());
    // Fresh pages of a new shm object are zero; the header is built in place on them.
    auto* h = new (seg->base_) SegmentHeader{};
    h->layout_version = kLayoutVersion;
    h->header_size = sizeof(SegmentHeader);
    h->total_size = off;
    h->packet_ring_offset = pkt_off;
    h->packet_ring_bytes = pkt_bytes;
    h->record_ring_offset = rec_off;
    h->record_ring_slots = rec_slots;
    h->event_ring_offset = evt_off;
    h->event_ring_slots = evt_slots;
    h->flow_map_offset = fm_off;
    h->flow_map_bytes = fm_bytes;
    h->flow_map_capacity = flows;
    h->packet_ring.capacity = pkt_bytes;
    h->record_ring.capacity = rec_slots;
    h->event_ring.capacity = evt_slots;
    FlowMap::format(seg->base_ + fm_off, flows, std::min(flows, kFlowReserveStep));
    std::atomic_thread_fence(std::memory_order_release);
    h->magic = kSegmentMagic;  // last: an attacher never sees a half-built header as valid
    seg->hdr_ = h;
    return seg;
}

std::unique_ptr<Segment> Segment::attach(const std::string& instance) {
    const std::string name = shm_name(instance);
    auto seg = std::unique_ptr<Segment>(new Segment());
    seg->impl_ = std::make_unique<Impl>();
    try {
        seg->impl_->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
        seg->impl_->region = bip::mapped_region(seg->impl_->shm, bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        throw SegmentError("cannot attach shared memory /dev/shm/" + name + " (is angel-ctld running for instance '" +
                           instance + "'?): " + e.what());
    }
    seg->base_ = static_cast<uint8_t*>(seg->impl_->region.get_address());
    if (seg->impl_->region.get_size() < sizeof(SegmentHeader))
        throw SegmentError("shared memory /dev/shm/" + name + " is too small to be an angel segment");
    auto* h = reinterpret_cast<SegmentHeader*>(seg->base_);
    if (h->magic != kSegmentMagic)
        throw SegmentError("shared memory /dev/shm/" + name + " is not an angel segment (bad magic)");
    if (h->layout_version != kLayoutVersion || h->header_size != sizeof(SegmentHeader))
        throw SegmentError("shared memory /dev/shm/" + name + " has layout version " +
                           std::to_string(h->layout_version) + ", this binary expects " +
                           std::to_string(kLayoutVersion) + ": restart the whole meter with matching binaries");
    if (seg->impl_->region.get_size() < h->total_size)
        throw SegmentError("shared memory /dev/shm/" + name + " is truncated");
    seg->hdr_ = h;
    return seg;
}

void Segment::remove(const std::string& instance) {
    bip::shared_memory_object::remove(shm_name(instance).c_str());
}

Segment::~Segment() = default;

PacketRing Segment::packet_ring() const {
    return PacketRing(&hdr_->packet_ring, base_ + hdr_->packet_ring_offset);
}
RecordRing<Record> Segment::record_ring() const {
    return RecordRing<Record>(&hdr_->record_ring,
                              reinterpret_cast<Record*>(base_ + hdr_->record_ring_offset));
}
RecordRing<Record> Segment::event_ring() const {
    return RecordRing<Record>(&hdr_->event_ring,
                              reinterpret_cast<Record*>(base_ + hdr_->event_ring_offset));
}
FlowMap Segment::flow_map() const { return FlowMap(base_ + hdr_->flow_map_offset); }

int Segment::grow_flow_map(uint32_t upto) const {
    FlowMap fm = flow_map();
    const uint32_t from = fm.reserved();
    upto = std::min(upto, fm.capacity());
    if (upto <= from) return 0;
    const uint64_t at = hdr_->flow_map_offset + FlowMap::entry_offset(fm.capacity(), from);
    const uint64_t len = uint64_t{upto - from} * sizeof(FlowEntry);
    const int rc = posix_fallocate(impl_->shm.get_mapping_handle().handle, static_cast<off_t>(at), static_cast<off_t>(len));
    if (rc == 0) fm.set_reserved(upto);
    return rc;
}

void Segment::prefault(Ring r, Access a) const {
#if defined(MADV_POPULATE_READ) && defined(MADV_POPULATE_WRITE)
    uint64_t off = 0, len = 0;
    switch (r) {
    case Ring::packet: off = hdr_->packet_ring_offset; len = hdr_->packet_ring_bytes; break;
    case Ring::record: off = hdr_->record_ring_offset; len = hdr_->record_ring_slots * sizeof(Record); break;
    case Ring::event: off = hdr_->event_ring_offset; len = hdr_->event_ring_slots * sizeof(Record); break;
    }
    // Ring offsets are page-aligned (see create()); an error only means no prefault.
    (void)madvise(base_ + off, len, a == Access::write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
#else
    (void)r;
    (void)a;
#endif
}

LiveConfig Segment::config() const {
    LiveConfig c;
    read_live_config(hdr_->config, c);
    return c;
}

uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}
uint64_t realtime_ns() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace angel
