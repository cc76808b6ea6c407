// A hostile stage for tests/integration/hostile_segment_test.cpp: a forked child of the test
// that holds the shared memory of a running meter exactly as a stage is given it (the data
// segment read-write, the control object read-only, both opened by root) and then drops to
// the stages' user (setgroups, setresgid, setresuid) with no sandbox at all: whatever a
// compromised stage could do to memory, and more (it keeps every system call).
//
//  - Right after the drop it tries what must fail and reports the results (HostileFacts):
//    opening either object by name (read-write, write-only, read-only), reopening the control
//    descriptor read-write through /proc/self/fd, mapping it writable (mmap and mprotect),
//    writing to it, truncating it; and whether a private (copy-on-write) mapping's writes
//    reach the object.
//  - Then, at each round() the parent asks for, it writes random and extreme values into the
//    data segment: the header after magic/version/header_size/total_size (IPFIX sequence,
//    stop flags, every StageStatus, every RingControl), the FlowMap header and entries, the
//    event ring (slots anywhere and positions far off, or a batch of extreme records published
//    just past the tail, for ctld's database thread to read), and a little of the packet and
//    record rings. The geometry of the
//    layout comes from the control object (mapped read-only).
// Values are drawn from a PRNG seeded with (seed, round): a run repeats with the same seed.
// The destructor kills (SIGKILL) and reaps the child, whatever state the test is in.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "shm/segment.hpp"

namespace angel::itest {

// errno of an attempt that must fail; 0 means it SUCCEEDED.
struct HostileFacts {
    uint32_t complete = 0;  // 1 once the writer filled every field below
    char setup_error[160] = {};  // what failed before the drop (the rest is then meaningless)
    uint32_t ruid = 0, euid = 0, suid = 0, rgid = 0, egid = 0, sgid = 0;
    int32_t ngroups = -1;
    int32_t regained_root = 0;           // setuid(0) or seteuid(0) succeeded after the drop
    int32_t open_data_rw_errno = 0;      // open("/dev/shm/angel.<i>", O_RDWR)
    int32_t open_data_ro_errno = 0;      // open("/dev/shm/angel.<i>", O_RDONLY)
    int32_t open_ctl_rw_errno = 0;       // open("/dev/shm/angel.<i>.ctl", O_RDWR)
    int32_t open_ctl_wo_errno = 0;       // open("/dev/shm/angel.<i>.ctl", O_WRONLY)
    int32_t reopen_ctl_rw_errno = 0;     // open("/proc/self/fd/<ctl fd>", O_RDWR)
    int32_t mmap_ctl_shared_rw_errno = 0;  // mmap(ctl fd, PROT_READ|PROT_WRITE, MAP_SHARED)
    int32_t mmap_ctl_shared_w_errno = 0;   // mmap(ctl fd, PROT_WRITE, MAP_SHARED)
    int32_t mprotect_ctl_errno = 0;      // a read-only shared mapping of it made writable
    int32_t pwrite_ctl_errno = 0;        // pwrite(ctl fd)
    int32_t ftruncate_ctl_errno = 0;     // ftruncate(ctl fd)
    int32_t private_write_leaked = 0;    // a MAP_PRIVATE write changed what pread(ctl fd) reads
    int32_t mmap_data_rw_errno = -1;     // the data segment mapped read-write: 0 expected
    int32_t ctl_magic_ok = 0;            // the control object mapped read-only is angel's
    int32_t ctld_pid = 0;                // as the control object says
    SegmentLayout layout{};
};

struct HostileRound {
    uint32_t round = 0;
    uint32_t done = 0;            // 1: the writes were made
    uint32_t geometry_hostile = 0;  // FlowMap capacity/bucket_count got bad values this round
    uint64_t fields = 0;          // header, ring and FlowMap-header fields written
    uint64_t flow_entries = 0;    // FlowMap entries overwritten
    uint64_t bad_version_entries = 0;  // of which in_use=1 with an IP version other than 4/6
    uint64_t event_slots = 0;     // event-ring slots overwritten
    uint64_t event_batch_records = 0;  // of which published for the reader (head moved just past them)
    uint64_t ring_bytes = 0;      // packet/record ring bytes overwritten
};

class HostileWriter {
public:
    // Forks the writer for `instance`, which drops to uid/gid; waits (up to 10 s) for its facts.
    // Call it while the test is single-threaded (the child keeps running code after fork).
    HostileWriter(const std::string& instance, uid_t uid, gid_t gid, uint64_t seed);
    ~HostileWriter();
    HostileWriter(const HostileWriter&) = delete;
    HostileWriter& operator=(const HostileWriter&) = delete;

    bool started() const { return facts_.complete == 1; }
    const HostileFacts& facts() const { return facts_; }
    // One round of writes; false when the writer did not answer within 10 s (then `why`).
    bool round(uint32_t n, HostileRound* out, std::string* why);
    // Puts back what no stage repairs by itself (FlowMap geometry, stop flags, ring positions:
    // every ring empty at position 0), so that freshly restarted stages can stop in order.
    bool settle(std::string* why);
    // Ends the writer (closes its command pipe, SIGKILL if it lingers) and reaps it.
    void stop();
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    int cmd_fd_ = -1;    // parent -> child: round numbers
    int reply_fd_ = -1;  // child -> parent: facts, then one HostileRound per round
    HostileFacts facts_{};
};

}  // namespace angel::itest
