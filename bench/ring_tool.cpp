// bench/ring: two processes, one shared-memory ring, as the stages use them.
//   records: RecordRing<Rec16> (16-byte records), the consumer sums a field of every record;
//   packets: PacketRing with 128-byte captured packets (caplen 128, PacketSlot header in
//            front: 144 bytes per entry), the consumer reads every payload byte (checksum).
// Each run forks a fresh producer/consumer pair over a Boost.Interprocess shared-memory object
// (the same kind of mapping as the instance segment) and times from the producer's first
// entry to the consumer's last. Prints one line per run and a table of medians.
//
// A bare batched SPSC ring (no counters, no futex) runs alongside as the reference, so the
// table says what the real ring costs under whatever load the machine has at the time.
//
//   ring_tool [--records N] [--packets N] [--runs R] [--batch B] [--spin S] [--only records|packets]
//             [--record-slots N] [--packet-bytes N] [--no-baseline] [--pin]
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "shm/packet_ring.hpp"
#include "shm/record_ring.hpp"
#include "shm/segment.hpp"

namespace bip = boost::interprocess;
using namespace angel;

namespace {

struct Rec16 {
    uint64_t seq;
    uint64_t val;
};
static_assert(sizeof(Rec16) == 16);

constexpr uint16_t kCaplen = 128;
constexpr size_t kPoolPackets = 4096;  // distinct payloads the producer cycles through

struct Options {
    uint64_t records = 200000000;
    uint64_t packets = 50000000;
    int runs = 5;
    size_t batch = 256;       // entries per publish (producer) / per commit at most (consumer)
    int spin = 0;             // extra polls of our own before calling wait_for_*: 0 is what a
                              // stage does (the ring's wait already polls briefly first)
    uint64_t record_slots = 1 << 16;          // 1 MiB of Rec16
    uint64_t packet_bytes = 4ull << 20;       // 4 MiB of packet ring
    std::string only;
    bool baseline = true;     // also run the bare ring for reference
    bool pin = false;         // producer on CPU 0, consumer on CPU 1
};

// --pin: keeps the two sides on two different CPUs, so that on a busy 2-core machine the
// scheduler cannot stack them on one core (which measures the scheduler, not the ring).
void pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) std::perror("ring_tool: sched_setaffinity");
}

// The positions of the baseline ring (see bare_producer below).
struct BareRing {
    alignas(64) std::atomic<uint64_t> head{0};
    alignas(64) std::atomic<uint64_t> tail{0};
};

// Everything both processes share: the ring controls, results, and the ring memory after it.
struct Shared {
    alignas(64) RingControl rec_ctl;
    alignas(64) RingControl pkt_ctl;
    alignas(64) std::atomic<uint32_t> consumer_ready;
    std::atomic<uint64_t> t_start;
    std::atomic<uint64_t> t_end;
    std::atomic<uint64_t> count;
    std::atomic<uint64_t> checksum;
    std::atomic<uint64_t> consumer_sleeps;
    std::atomic<uint64_t> producer_sleeps;
    BareRing bare;
};

// The bench's own polling (--spin); kept here so the tool also builds against older rings.
inline void poll_pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// ---- records -------------------------------------------------------------------------

void record_consumer(Shared* sh, Rec16* slots, const Options& o, uint64_t n) {
    RecordRing<Rec16> ring(&sh->rec_ctl, slots);
    sh->consumer_ready.store(1);
    uint64_t got = 0, sum = 0, sleeps = 0;
    int idle = 0;
    while (got < n) {
        const Rec16* p = nullptr;
        size_t k = ring.peek(&p, o.batch * 4);
        if (k == 0) {
            if (++idle < o.spin) {
                poll_pause();
                continue;
            }
            ring.commit();
            ++sleeps;
            ring.wait_for_data(100);
            idle = 0;
            continue;
        }
        idle = 0;
        for (size_t j = 0; j < k; ++j) sum += p[j].val;
        ring.advance(k);
        got += k;
        ring.commit();
    }
    sh->t_end.store(monotonic_ns());
    sh->count.store(got);
    sh->checksum.store(sum);
    sh->consumer_sleeps.store(sleeps);
}

uint64_t record_producer(Shared* sh, Rec16* slots, const Options& o, uint64_t n) {
    RecordRing<Rec16> ring(&sh->rec_ctl, slots);
    uint64_t i = 0, sleeps = 0;
    int full = 0;
    sh->t_start.store(monotonic_ns());
    while (i < n) {
        size_t b = 0;
        for (; b < o.batch && i < n; ++b, ++i) {
            Rec16* s = ring.claim();
            if (!s) break;
            s->seq = i;
            s->val = i * 3 + 1;
            ring.commit_claimed();
        }
        ring.publish();
        if (b == 0) {
            if (++full < o.spin) {
                poll_pause();
                continue;
            }
            ++sleeps;
            ring.wait_for_space(100);
            full = 0;
        } else {
            full = 0;
        }
    }
    ring.publish();
    uint64_t expect = 0;  // sum of i*3+1 over 0..n-1, mod 2^64
    expect = (n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2)) * 3 + n;
    sh->producer_sleeps.store(sleeps);
    return expect;
}

// ---- packets -------------------------------------------------------------------------

uint64_t payload_sum(const uint8_t* d, size_t len) {
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        std::memcpy(&w, d + i, 8);
        s += w;
    }
    for (; i < len; ++i) s += d[i];
    return s;
}

void packet_consumer(Shared* sh, uint8_t* buf, const Options& o, uint64_t n) {
    PacketRing ring(&sh->pkt_ctl, buf);
    sh->consumer_ready.store(1);
    uint64_t got = 0, sum = 0, sleeps = 0, since_commit = 0;
    int idle = 0;
    while (got < n) {
        const uint8_t* d = nullptr;
        const PacketSlot* h = ring.next(&d);
        if (!h) {
            if (++idle < o.spin) {
                poll_pause();
                continue;
            }
            ring.commit();
            since_commit = 0;
            ++sleeps;
            ring.wait_for_data(100);
            idle = 0;
            continue;
        }
        idle = 0;
        sum += payload_sum(d, h->caplen) + h->ts_ns;
        ++got;
        if (++since_commit == o.batch) {
            ring.commit();
            since_commit = 0;
        }
    }
    ring.commit();
    sh->t_end.store(monotonic_ns());
    sh->count.store(got);
    sh->checksum.store(sum);
    sh->consumer_sleeps.store(sleeps);
}

uint64_t packet_producer(Shared* sh, uint8_t* buf, const Options& o, uint64_t n,
                         const std::vector<uint8_t>& pool) {
    PacketRing ring(&sh->pkt_ctl, buf);
    uint64_t sleeps = 0, pending = 0;
    int full = 0;
    sh->t_start.store(monotonic_ns());
    PacketSlot slot{};
    slot.caplen = kCaplen;
    slot.wire_len = 1500;
    slot.linktype = 1;
    for (uint64_t i = 0; i < n;) {
        slot.ts_ns = i;
        if (ring.push(slot, pool.data() + (i % kPoolPackets) * kCaplen)) {
            ++i;
            full = 0;
            if (++pending == o.batch) {
                ring.publish();
                pending = 0;
            }
            continue;
        }
        ring.publish();
        pending = 0;
        if (++full < o.spin) {
            poll_pause();
            continue;
        }
        ++sleeps;
        ring.wait_for_space(kCaplen, 100);
        full = 0;
    }
    ring.publish();
    sh->producer_sleeps.store(sleeps);
    // Expected checksum: every payload of the pool, cycled, plus the timestamps 0..n-1.
    std::vector<uint64_t> per(kPoolPackets);
    for (size_t k = 0; k < kPoolPackets; ++k) per[k] = payload_sum(pool.data() + k * kCaplen, kCaplen);
    uint64_t all = 0;
    for (uint64_t k : per) all += k;
    uint64_t expect = (n / kPoolPackets) * all;
    for (uint64_t k = 0; k < n % kPoolPackets; ++k) expect += per[k];
    expect += (n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2));
    return expect;
}

// ---- baseline: a bare batched SPSC ring --------------------------------------------------
// The reference the issue quotes (~300 M records/s on this machine): two positions, cached
// copies, one release store per batch, no counters, no futex (spins and yields instead). Run
// under the same conditions it tells how much the real ring costs, whatever the load.

void bare_consumer(Shared* sh, BareRing* br, Rec16* slots, const Options& o, uint64_t n) {
    const uint64_t mask = o.record_slots - 1;
    sh->consumer_ready.store(1);
    uint64_t read = 0, head = 0, sum = 0;
    while (read < n) {
        if (head == read) {
            head = br->head.load(std::memory_order_acquire);
            if (head == read) {
                sched_yield();
                continue;
            }
        }
        uint64_t end = std::min(head, (read | mask) + 1);  // contiguous part
        end = std::min<uint64_t>(end, read + o.batch * 4);
        for (uint64_t i = read; i < end; ++i) sum += slots[i & mask].val;
        read = end;
        br->tail.store(read, std::memory_order_release);
    }
    sh->t_end.store(monotonic_ns());
    sh->count.store(read);
    sh->checksum.store(sum);
    sh->consumer_sleeps.store(0);
}

uint64_t bare_producer(Shared* sh, BareRing* br, Rec16* slots, const Options& o, uint64_t n) {
    const uint64_t mask = o.record_slots - 1;
    uint64_t write = 0, tail = 0;
    sh->t_start.store(monotonic_ns());
    while (write < n) {
        uint64_t room = mask + 1 - (write - tail);
        if (room < o.batch) {
            tail = br->tail.load(std::memory_order_acquire);
            room = mask + 1 - (write - tail);
            if (room == 0) {
                sched_yield();
                continue;
            }
        }
        uint64_t end = std::min({write + room, write + o.batch, n});
        for (uint64_t i = write; i < end; ++i) slots[i & mask] = Rec16{i, i * 3 + 1};
        write = end;
        br->head.store(write, std::memory_order_release);
    }
    sh->producer_sleeps.store(0);
    return (n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2)) * 3 + n;
}

// ---- harness -------------------------------------------------------------------------

struct RunResult {
    double per_sec = 0;
    bool ok = false;
    uint64_t consumer_sleeps = 0, producer_sleeps = 0;
};

// Forks the consumer, runs the producer here, checks count and checksum.
RunResult run_once(Shared* sh, const Options& o, const std::function<void()>& consumer,
                   const std::function<uint64_t()>& producer, uint64_t n) {
    sh->consumer_ready.store(0);
    sh->count.store(0);
    sh->checksum.store(0);
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(1);
    }
    if (pid == 0) {
        alarm(600);
        if (o.pin) pin_to_cpu(1);
        consumer();
        _exit(0);
    }
    while (sh->consumer_ready.load() == 0) sched_yield();
    uint64_t expect = producer();
    int status = 0;
    waitpid(pid, &status, 0);
    RunResult r;
    r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && sh->count.load() == n &&
           sh->checksum.load() == expect;
    if (!r.ok)
        std::fprintf(stderr, "ring_tool: run FAILED: count %llu of %llu, checksum %llx vs %llx\n",
                     (unsigned long long)sh->count.load(), (unsigned long long)n,
                     (unsigned long long)sh->checksum.load(), (unsigned long long)expect);
    r.per_sec = double(n) / ((sh->t_end.load() - sh->t_start.load()) / 1e9);
    r.consumer_sleeps = sh->consumer_sleeps.load();
    r.producer_sleeps = sh->producer_sleeps.load();
    return r;
}

void reset_ring(RingControl* ctl, uint64_t capacity) {
    ctl->~RingControl();
    new (ctl) RingControl{};
    ctl->capacity = capacity;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

uint64_t parse_count(const char* s) {
    char* end = nullptr;
    double v = std::strtod(s, &end);
    if (end && (*end == 'M' || *end == 'm')) v *= 1e6;
    else if (end && (*end == 'k' || *end == 'K')) v *= 1e3;
    return static_cast<uint64_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "ring_tool: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--records") o.records = parse_count(val());
        else if (a == "--packets") o.packets = parse_count(val());
        else if (a == "--runs") o.runs = std::max(1, std::atoi(val()));
        else if (a == "--batch") o.batch = std::max<size_t>(1, parse_count(val()));
        else if (a == "--spin") o.spin = std::atoi(val());
        else if (a == "--record-slots") o.record_slots = parse_count(val());
        else if (a == "--packet-bytes") o.packet_bytes = parse_count(val());
        else if (a == "--only") o.only = val();
        else if (a == "--no-baseline") o.baseline = false;
        else if (a == "--pin") o.pin = true;
        else {
            std::fprintf(stderr,
                         "usage: ring_tool [--records N] [--packets N] [--runs R] [--batch B] "
                         "[--spin S] [--record-slots N] [--packet-bytes N] [--only records|packets] "
                         "[--no-baseline] [--pin]\n");
            return 2;
        }
    }
    if ((o.record_slots & (o.record_slots - 1)) || (o.packet_bytes & (o.packet_bytes - 1))) {
        std::fprintf(stderr, "ring_tool: ring sizes must be powers of two\n");
        return 2;
    }

    // One shared-memory object for both rings, unlinked right after mapping: the mapping
    // lives on in both processes and nothing is left in /dev/shm whatever happens.
    const std::string name = "angel.bench-ring-" + std::to_string(getpid());
    const uint64_t rec_off = 4096, rec_bytes = o.record_slots * sizeof(Rec16);
    const uint64_t pkt_off = (rec_off + rec_bytes + 4095) & ~uint64_t{4095};
    const uint64_t total = pkt_off + o.packet_bytes;
    bip::mapped_region region;
    try {
        bip::shared_memory_object::remove(name.c_str());
        bip::shared_memory_object shm(bip::create_only, name.c_str(), bip::read_write);
        shm.truncate(static_cast<bip::offset_t>(total));
        region = bip::mapped_region(shm, bip::read_write);
        bip::shared_memory_object::remove(name.c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ring_tool: shared memory: %s\n", e.what());
        return 1;
    }
    auto* base = static_cast<uint8_t*>(region.get_address());
    std::memset(base, 0, total);  // fault every page in before timing
    auto* sh = new (base) Shared{};
    auto* rec_slots = reinterpret_cast<Rec16*>(base + rec_off);
    uint8_t* pkt_buf = base + pkt_off;

    std::vector<uint8_t> pool(kPoolPackets * kCaplen);
    uint64_t x = 0x243F6A8885A308D3ull;
    for (auto& b : pool) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b = static_cast<uint8_t>(x >> 56);
    }

    if (o.pin) pin_to_cpu(0);  // the producer; the consumer pins itself after fork
    std::printf("ring_tool: %d runs, batch %zu, spin %d%s, record ring %llu slots, packet ring %llu KiB\n",
                o.runs, o.batch, o.spin, o.pin ? ", pinned" : "", (unsigned long long)o.record_slots,
                (unsigned long long)(o.packet_bytes >> 10));
    bool all_ok = true;
    std::vector<double> rec_rates, pkt_rates, bare_rates;
    for (int r = 0; r < o.runs; ++r) {
        if (o.only != "packets" && o.records > 0) {
            reset_ring(&sh->rec_ctl, o.record_slots);
            RunResult res = run_once(
                sh, o, [&] { record_consumer(sh, rec_slots, o, o.records); },
                [&] { return record_producer(sh, rec_slots, o, o.records); }, o.records);
            all_ok &= res.ok;
            rec_rates.push_back(res.per_sec);
            std::printf("  run %d  records  %8.1f M/s  (consumer slept %llu, producer slept %llu)%s\n",
                        r + 1, res.per_sec / 1e6, (unsigned long long)res.consumer_sleeps,
                        (unsigned long long)res.producer_sleeps, res.ok ? "" : "  FAILED");
        }
        if (o.only != "packets" && o.records > 0 && o.baseline) {
            sh->bare.head.store(0);
            sh->bare.tail.store(0);
            RunResult res = run_once(
                sh, o, [&] { bare_consumer(sh, &sh->bare, rec_slots, o, o.records); },
                [&] { return bare_producer(sh, &sh->bare, rec_slots, o, o.records); }, o.records);
            all_ok &= res.ok;
            bare_rates.push_back(res.per_sec);
            std::printf("  run %d  bare     %8.1f M/s  (reference ring, spins)%s\n", r + 1,
                        res.per_sec / 1e6, res.ok ? "" : "  FAILED");
        }
        if (o.only != "records" && o.packets > 0) {
            reset_ring(&sh->pkt_ctl, o.packet_bytes);
            RunResult res = run_once(
                sh, o, [&] { packet_consumer(sh, pkt_buf, o, o.packets); },
                [&] { return packet_producer(sh, pkt_buf, o, o.packets, pool); }, o.packets);
            all_ok &= res.ok;
            pkt_rates.push_back(res.per_sec);
            std::printf("  run %d  packets  %8.2f M/s  (consumer slept %llu, producer slept %llu)%s\n",
                        r + 1, res.per_sec / 1e6, (unsigned long long)res.consumer_sleeps,
                        (unsigned long long)res.producer_sleeps, res.ok ? "" : "  FAILED");
        }
        std::fflush(stdout);
    }

    std::printf("\n| ring | entry | per run | median of %d | target | checksums |\n", o.runs);
    std::printf("|---|---|---|---|---|---|\n");
    if (!rec_rates.empty())
        std::printf("| RecordRing<Rec16> | 16 B record | %llu | %.1f M records/s | >= 100 M/s | %s |\n",
                    (unsigned long long)o.records, median(rec_rates) / 1e6, all_ok ? "equal" : "DIFFER");
    if (!bare_rates.empty())
        std::printf("| bare batched SPSC (reference) | 16 B record | %llu | %.1f M records/s | (~300 M/s idle box) | %s |\n",
                    (unsigned long long)o.records, median(bare_rates) / 1e6, all_ok ? "equal" : "DIFFER");
    if (!pkt_rates.empty())
        std::printf("| PacketRing | 128 B caplen (+16 B slot header) | %llu | %.1f M packets/s | >= 20 M/s | %s |\n",
                    (unsigned long long)o.packets, median(pkt_rates) / 1e6, all_ok ? "equal" : "DIFFER");
    return all_ok ? 0 : 1;
}
