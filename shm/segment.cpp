// Segment creation and attachment through Boost.Interprocess. Only plain structs and
// atomics live in the segment: no interprocess mutex, so a killed process leaves nothing
// locked (Boost.Interprocess cannot recover a mutex whose owner died).
#include "shm/segment.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <fcntl.h>
#include <linux/falloc.h>
#include <time.h>

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>
#include <new>

namespace bip = boost::interprocess;

namespace angel {

struct Segment::Impl {
    bip::shared_memory_object shm, ctl_shm;
    bip::mapped_region region, ctl_region;
    // Mappings of descriptors passed at exec (stages): plain mmap.
    void* raw_data = nullptr;
    size_t raw_data_len = 0;
    void* raw_ctl = nullptr;
    size_t raw_ctl_len = 0;
    ~Impl() {
        if (raw_data) munmap(raw_data, raw_data_len);
        if (raw_ctl) munmap(raw_ctl, raw_ctl_len);
    }
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
bool pow2(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

// The layout a stage is handed must describe the data segment it maps: every part inside
// it, rings of power-of-two sizes, the FlowMap as large as its capacity needs. ctld wrote
// it; the check turns a mismatch (another build, a damaged object) into a clear error
// rather than a fault.
std::string layout_problem(const SegmentLayout& l, uint64_t mapped) {
    const uint64_t hdr = align_up(sizeof(SegmentHeader), 4096);
    auto inside = [&](uint64_t off, uint64_t len) { return off >= hdr && off <= mapped && len <= mapped - off; };
    if (l.total_size > mapped) return "is smaller than its layout says";
    if (!pow2(l.packet_ring_bytes) || !inside(l.packet_ring_offset, l.packet_ring_bytes)) return "has a bad packet ring";
    if (!pow2(l.record_ring_slots) || l.record_ring_slots > mapped / sizeof(Record) ||
        !inside(l.record_ring_offset, l.record_ring_slots * sizeof(Record)))
        return "has a bad record ring";
    if (!pow2(l.event_ring_slots) || l.event_ring_slots > mapped / sizeof(Record) ||
        !inside(l.event_ring_offset, l.event_ring_slots * sizeof(Record)))
        return "has a bad event ring";
    if (l.flow_map_capacity == 0 || l.flow_map_bytes < FlowMap::bytes_for(l.flow_map_capacity) ||
        !inside(l.flow_map_offset, l.flow_map_bytes))
        return "has a bad FlowMap";
    return "";
}

void* map_fd(int fd, int prot, size_t* len, const char* what) {
    struct stat st{};
    if (fstat(fd, &st) != 0)
        throw SegmentError(std::string("no ") + what + " descriptor (fd " + std::to_string(fd) +
                           "): this program is started by angel-ctld");
    if (!S_ISREG(st.st_mode) || st.st_size <= 0)
        throw SegmentError(std::string("fd ") + std::to_string(fd) + " is not the " + what + " object");
    *len = static_cast<size_t>(st.st_size);
    void* p = mmap(nullptr, *len, prot, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        throw SegmentError(std::string("cannot map the ") + what + " object: " + strerror(errno));
    return p;
}

void check_control(const ControlBlock* c, size_t len, const std::string& name) {
    if (len < sizeof(ControlBlock)) throw SegmentError(name + " is too small to be an angel control object");
    if (c->magic != kControlMagic) throw SegmentError(name + " is not an angel control object (bad magic)");
    if (c->layout_version != kLayoutVersion || c->size != sizeof(ControlBlock))
        throw SegmentError(name + " has layout version " + std::to_string(c->layout_version) + ", this binary expects " +
                           std::to_string(kLayoutVersion) + ": restart the whole meter with matching binaries");
    const CustomerSetBlock& cs = c->customers;
    for (uint64_t off : cs.slot_offset)
        if (off < sizeof(ControlBlock) || off > len || cs.slot_bytes > len - off)
            throw SegmentError(name + " has a customer set slot outside it");
}

void check_data(const SegmentHeader* h, size_t len, const std::string& name) {
    if (len < sizeof(SegmentHeader)) throw SegmentError(name + " is too small to be an angel segment");
    if (h->magic != kSegmentMagic) throw SegmentError(name + " is not an angel segment (bad magic)");
    if (h->layout_version != kLayoutVersion || h->header_size != sizeof(SegmentHeader))
        throw SegmentError(name + " has layout version " + std::to_string(h->layout_version) +
                           ", this binary expects " + std::to_string(kLayoutVersion) +
                           ": restart the whole meter with matching binaries");
    if (len < h->total_size) throw SegmentError(name + " is truncated");
}
}  // namespace

std::string Segment::shm_name(const std::string& instance) { return "angel." + instance; }
std::string Segment::control_shm_name(const std::string& instance) { return "angel." + instance + ".ctl"; }

SegmentLayout Segment::plan(const SegmentSizes& sz) {
    // Rings are powers of two so positions map to slots with a mask.
    const uint64_t pkt_bytes = pow2_floor(std::max<uint64_t>(sz.packet_ring_bytes, 1ull << 20));
    const uint64_t rec_slots = pow2_floor(std::max<uint64_t>(sz.record_ring_bytes / sizeof(Record), 1024));
    const uint64_t evt_slots = pow2_floor(std::max<uint64_t>(sz.event_ring_bytes / sizeof(Record), 1024));
    // Room beyond flow.max_flows for flows that ended in the batch procd is working on: they
    // keep their entry until that batch is published (see procd/flow_tracker.hpp), and
    // procd evicts at max_flows, so a batch never runs out of entries.
    const uint32_t flows = std::max<uint32_t>(sz.max_flows, 16) + kFlowMapSpare;

    SegmentLayout l{};
    uint64_t off = align_up(sizeof(SegmentHeader), 4096);
    l.packet_ring_offset = off;
    l.packet_ring_bytes = pkt_bytes;
    off = align_up(off + pkt_bytes, 4096);
    l.record_ring_offset = off;
    l.record_ring_slots = rec_slots;
    off = align_up(off + rec_slots * sizeof(Record), 4096);
    l.event_ring_offset = off;
    l.event_ring_slots = evt_slots;
    off = align_up(off + evt_slots * sizeof(Record), 4096);
    l.flow_map_offset = off;
    l.flow_map_bytes = FlowMap::bytes_for(flows);
    l.flow_map_capacity = flows;
    l.total_size = align_up(off + l.flow_map_bytes, 4096);
    return l;
}

void Segment::create_control(const std::string& ctl_name) {
    const uint64_t ctl_slots = align_up(sizeof(ControlBlock), 4096);
    impl_->ctl_shm = bip::shared_memory_object(bip::create_only, ctl_name.c_str(), bip::read_write, bip::permissions(0600));
    // The customer set's two slots follow the ControlBlock, sparse: a set takes memory
    // only as far as it is written (customer_slot_rw reserves it first).
    impl_->ctl_shm.truncate(static_cast<bip::offset_t>(ctl_slots + 2 * kCustomerSlotBytes));
    impl_->ctl_region = bip::mapped_region(impl_->ctl_shm, bip::read_write);
    ctl_fd_ = impl_->ctl_shm.get_mapping_handle().handle;
    ctl_len_ = impl_->ctl_region.get_size();
    auto* c = new (impl_->ctl_region.get_address()) ControlBlock{};
    c->layout_version = kLayoutVersion;
    c->size = sizeof(ControlBlock);
    c->layout = layout_;
    c->customers.slot_offset[0] = ctl_slots;
    c->customers.slot_offset[1] = ctl_slots + kCustomerSlotBytes;
    c->customers.slot_bytes = kCustomerSlotBytes;
    std::atomic_thread_fence(std::memory_order_release);
    c->magic = kControlMagic;
    ctl_ = c;
}

std::unique_ptr<Segment> Segment::create(const std::string& instance, const SegmentSizes& sz) {
    const std::string name = shm_name(instance);
    const std::string ctl_name = control_shm_name(instance);
    bip::shared_memory_object::remove(name.c_str());
    bip::shared_memory_object::remove(ctl_name.c_str());
    const SegmentLayout l = plan(sz);
    const uint64_t off = l.total_size;
    const uint64_t fm_off = l.flow_map_offset;
    const uint32_t flows = l.flow_map_capacity;

    auto seg = std::unique_ptr<Segment>(new Segment());
    seg->impl_ = std::make_unique<Impl>();
    seg->layout_ = l;
    try {
        // 0600: only root opens either object by name. The stages get descriptors at exec;
        // operators get nothing (they talk to ctld's control socket).
        seg->impl_->shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write,
                                                    bip::permissions(0600));
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
        seg->create_control(ctl_name);
    } catch (const bip::interprocess_exception& e) {
        bip::shared_memory_object::remove(name.c_str());
        bip::shared_memory_object::remove(ctl_name.c_str());
        throw SegmentError("cannot create shared memory /dev/shm/" + name + ": " + e.what());
    }
    seg->data_fd_ = seg->impl_->shm.get_mapping_handle().handle;
    seg->base_ = static_cast<uint8_t*>(seg->impl_->region.get_address());
    // Fresh pages of a new shm object are zero; the headers are built in place on them.
    auto* h = new (seg->base_) SegmentHeader{};
    h->layout_version = kLayoutVersion;
    h->header_size = sizeof(SegmentHeader);
    h->total_size = off;
    h->packet_ring.capacity = l.packet_ring_bytes;
    h->record_ring.capacity = l.record_ring_slots;
    h->event_ring.capacity = l.event_ring_slots;
    FlowMap::format(seg->base_ + fm_off, flows, std::min(flows, kFlowReserveStep));
    std::atomic_thread_fence(std::memory_order_release);
    h->magic = kSegmentMagic;  // last: an attacher never sees a half-built header as valid
    seg->hdr_ = h;
    return seg;
}

std::unique_ptr<Segment> Segment::open_left(const std::string& instance, const SegmentSizes& sz) {
    const std::string name = shm_name(instance);
    const std::string ctl_name = control_shm_name(instance);
    struct stat st{};
    if (stat(("/dev/shm/" + name).c_str(), &st) != 0) return nullptr;
    auto seg = std::unique_ptr<Segment>(new Segment());
    seg->impl_ = std::make_unique<Impl>();
    seg->layout_ = plan(sz);
    const std::string what = "the segment /dev/shm/" + name + " left by a previous run";
    try {
        seg->impl_->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
        seg->impl_->region = bip::mapped_region(seg->impl_->shm, bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        throw SegmentError("cannot open " + what + ": " + e.what());
    }
    seg->base_ = static_cast<uint8_t*>(seg->impl_->region.get_address());
    const size_t mapped = seg->impl_->region.get_size();
    check_data(reinterpret_cast<SegmentHeader*>(seg->base_), mapped, what);
    seg->hdr_ = reinterpret_cast<SegmentHeader*>(seg->base_);
    // Another size is another configuration (shm.*, flow.max_flows): its rings and map do
    // not lie where this one's would.
    if (mapped != seg->layout_.total_size || seg->hdr_->total_size != seg->layout_.total_size)
        throw SegmentError(what + " has another size (" + std::to_string(mapped >> 20) + " MiB, this configuration's: " +
                           std::to_string(seg->layout_.total_size >> 20) + " MiB): shm.* or flow.max_flows changed");
    seg->data_fd_ = seg->impl_->shm.get_mapping_handle().handle;
    // The predecessor's pid, from its control object (root's alone: no stage writes it).
    try {
        bip::shared_memory_object old(bip::open_only, ctl_name.c_str(), bip::read_only);
        bip::mapped_region r(old, bip::read_only);
        const auto* c = static_cast<const ControlBlock*>(r.get_address());
        if (r.get_size() >= sizeof(ControlBlock) && c->magic == kControlMagic && c->layout_version == kLayoutVersion &&
            c->size == sizeof(ControlBlock))
            seg->left_ctld_pid_ = c->ctld_pid.load(std::memory_order_relaxed);
    } catch (const bip::interprocess_exception&) {
        // No control object: the pid is not known (0).
    }
    return seg;
}

void Segment::renew_control(const std::string& instance) {
    const std::string ctl_name = control_shm_name(instance);
    bip::shared_memory_object::remove(ctl_name.c_str());
    try {
        create_control(ctl_name);
    } catch (const bip::interprocess_exception& e) {
        throw SegmentError("cannot create shared memory /dev/shm/" + ctl_name + ": " + e.what());
    }
}

std::unique_ptr<Segment> Segment::attach(const std::string& instance) {
    const std::string name = shm_name(instance);
    const std::string ctl_name = control_shm_name(instance);
    auto seg = std::unique_ptr<Segment>(new Segment());
    seg->impl_ = std::make_unique<Impl>();
    try {
        seg->impl_->shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
        seg->impl_->region = bip::mapped_region(seg->impl_->shm, bip::read_write);
        seg->impl_->ctl_shm = bip::shared_memory_object(bip::open_only, ctl_name.c_str(), bip::read_write);
        seg->impl_->ctl_region = bip::mapped_region(seg->impl_->ctl_shm, bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        throw SegmentError("cannot attach shared memory /dev/shm/" + name + " (is angel-ctld running for instance '" +
                           instance + "'?): " + e.what());
    }
    seg->base_ = static_cast<uint8_t*>(seg->impl_->region.get_address());
    check_data(reinterpret_cast<SegmentHeader*>(seg->base_), seg->impl_->region.get_size(), "shared memory /dev/shm/" + name);
    seg->ctl_ = static_cast<ControlBlock*>(seg->impl_->ctl_region.get_address());
    check_control(seg->ctl_, seg->impl_->ctl_region.get_size(), "shared memory /dev/shm/" + ctl_name);
    seg->ctl_len_ = seg->impl_->ctl_region.get_size();
    seg->hdr_ = reinterpret_cast<SegmentHeader*>(seg->base_);
    seg->layout_ = seg->ctl_->layout;
    if (const std::string p = layout_problem(seg->layout_, seg->impl_->region.get_size()); !p.empty())
        throw SegmentError("shared memory /dev/shm/" + name + " " + p);
    seg->data_fd_ = seg->impl_->shm.get_mapping_handle().handle;
    seg->ctl_fd_ = seg->impl_->ctl_shm.get_mapping_handle().handle;
    return seg;
}

std::unique_ptr<Segment> Segment::attach_control_fd(int control_fd) {
    auto seg = std::unique_ptr<Segment>(new Segment());
    seg->impl_ = std::make_unique<Impl>();
    // PROT_READ on an O_RDONLY descriptor: the kernel refuses a writable mapping of it.
    seg->impl_->raw_ctl = map_fd(control_fd, PROT_READ, &seg->impl_->raw_ctl_len, "control");
    seg->ctl_ = static_cast<ControlBlock*>(seg->impl_->raw_ctl);
    check_control(seg->ctl_, seg->impl_->raw_ctl_len, "the control object");
    seg->ctl_len_ = seg->impl_->raw_ctl_len;
    seg->layout_ = seg->ctl_->layout;
    seg->ctl_fd_ = control_fd;
    return seg;
}

void Segment::attach_data_fd(int data_fd) {
    impl_->raw_data = map_fd(data_fd, PROT_READ | PROT_WRITE, &impl_->raw_data_len, "data segment");
    base_ = static_cast<uint8_t*>(impl_->raw_data);
    check_data(reinterpret_cast<SegmentHeader*>(base_), impl_->raw_data_len, "the data segment");
    if (const std::string p = layout_problem(layout_, impl_->raw_data_len); !p.empty())
        throw SegmentError("the data segment " + p);
    hdr_ = reinterpret_cast<SegmentHeader*>(base_);
    data_fd_ = data_fd;
}

std::unique_ptr<Segment> Segment::attach_fds(int data_fd, int control_fd) {
    auto seg = attach_control_fd(control_fd);
    seg->attach_data_fd(data_fd);
    return seg;
}

void Segment::remove(const std::string& instance) {
    bip::shared_memory_object::remove(shm_name(instance).c_str());
    bip::shared_memory_object::remove(control_shm_name(instance).c_str());
}

Segment::~Segment() = default;

PacketRing Segment::packet_ring() const {
    return PacketRing(&hdr_->packet_ring, base_ + layout_.packet_ring_offset, layout_.packet_ring_bytes);
}
RecordRing<Record> Segment::record_ring() const {
    return RecordRing<Record>(&hdr_->record_ring, reinterpret_cast<Record*>(base_ + layout_.record_ring_offset),
                              layout_.record_ring_slots);
}
RecordRing<Record> Segment::event_ring() const {
    return RecordRing<Record>(&hdr_->event_ring, reinterpret_cast<Record*>(base_ + layout_.event_ring_offset),
                              layout_.event_ring_slots);
}
FlowMap Segment::flow_map() const { return FlowMap(base_ + layout_.flow_map_offset); }

int Segment::grow_flow_map(uint32_t upto) const {
    FlowMap fm = flow_map();
    const uint32_t from = fm.reserved();
    upto = std::min(upto, fm.capacity());
    if (upto <= from) return 0;
    const uint64_t at = layout_.flow_map_offset + FlowMap::entry_offset(fm.capacity(), from);
    const uint64_t len = uint64_t{upto - from} * sizeof(FlowEntry);
    // KEEP_SIZE: the range lies inside the segment; the stage's seccomp filter allows no
    // other mode, so the segment can never be grown (or holes punched) from a stage.
    const int rc = fallocate(data_fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(at), static_cast<off_t>(len)) == 0 ? 0 : errno;
    if (rc == 0) fm.set_reserved(upto);
    return rc;
}

void Segment::prefault(Ring r, Access a) const {
#if defined(MADV_POPULATE_READ) && defined(MADV_POPULATE_WRITE)
    uint64_t off = 0, len = 0;
    switch (r) {
    case Ring::packet: off = layout_.packet_ring_offset; len = layout_.packet_ring_bytes; break;
    case Ring::record: off = layout_.record_ring_offset; len = layout_.record_ring_slots * sizeof(Record); break;
    case Ring::event: off = layout_.event_ring_offset; len = layout_.event_ring_slots * sizeof(Record); break;
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
    read_live_config(ctl_->config, c);
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

const uint8_t* Segment::customer_slot(unsigned i) const {
    return reinterpret_cast<const uint8_t*>(ctl_) + ctl_->customers.slot_offset[i & 1];
}

uint8_t* Segment::customer_slot_rw(unsigned i, uint64_t bytes, std::string* why) const {
    const uint64_t off = ctl_->customers.slot_offset[i & 1];
    if (bytes > ctl_->customers.slot_bytes) {
        *why = "the set needs " + std::to_string(bytes >> 20) + " MiB, a slot holds " +
               std::to_string(ctl_->customers.slot_bytes >> 20) + " MiB";
        return nullptr;
    }
    if (const int rc = posix_fallocate(ctl_fd_, static_cast<off_t>(off), static_cast<off_t>(bytes)); rc != 0) {
        *why = no_room(bytes, "(control object)", strerror(rc));
        return nullptr;
    }
    // What a larger set written here before left beyond this one goes back to /dev/shm.
    const uint64_t keep = align_up(bytes, 4096);
    if (keep < ctl_->customers.slot_bytes)
        fallocate(ctl_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off + keep),
                  static_cast<off_t>(ctl_->customers.slot_bytes - keep));
    return reinterpret_cast<uint8_t*>(ctl_) + off;
}

}  // namespace angel
