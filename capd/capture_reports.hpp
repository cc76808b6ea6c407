// What capd tells procd besides packets, as report slots in the packet ring (shm/records.hpp,
// CaptureReport), so that each lands in capture order among the packets:
//   - loss: packets libpcap dropped (ps_drop), the interface dropped (ps_ifdrop), or capd
//     dropped because the ring was full; procd turns them into loss records;
//   - progress: a capture time T that every packet captured before it is ahead of in the ring;
//     procd turns it into watermarks;
//   - start: a live capture was opened (procd reports the gap since the previous capd).
// A report that finds the ring full waits here, accumulated, and goes out with the next chance
// (before the next packet), so the packet counts of the loss reports add up exactly to capd's
// drop counters. No allocation; the per-packet cost is one branch.
#pragma once
#include <cstdint>

#include "capd/capture_source.hpp"
#include "shm/packet_ring.hpp"
#include "shm/records.hpp"

namespace angel {

class CaptureReports {
public:
    explicit CaptureReports(PacketRing& ring) : ring_(ring) {}

    // A live capture was opened at open_ns; the pcap counters are counted from there.
    void start(uint64_t open_ns);
    // A packet captured at ts_ns that the full ring did not take.
    void ring_drop(uint64_t ts_ns) {
        Pending& p = loss_[kRing];
        if (p.packets == 0) p.first_ns = ts_ns;
        if (ts_ns > p.last_ns || p.packets == 0) p.last_ns = ts_ns;
        ++p.packets;
        any_ = true;
    }
    // The capture's counters as read at now_ns: what grew since the last reading is a loss
    // between the two readings.
    void pcap_counters(const PcapCounters& c, uint64_t now_ns);
    // Every packet captured before t_ns has been read (queued or dropped).
    void progress(uint64_t t_ns) {
        if (t_ns <= progress_ns_) return;
        progress_ns_ = t_ns;
        any_ = true;
    }
    // Pushes what is pending (start, then losses, then progress); false when the ring had no
    // room for all of it (the rest stays pending).
    bool flush() { return any_ ? flush_slow() : true; }
    bool pending() const { return any_; }
    // Packets reported as lost so far, by cause (for the log line at the end).
    uint64_t reported(LossCause c) const;

private:
    enum Slot { kPcap = 0, kIf = 1, kRing = 2, kSlots = 3 };
    struct Pending {
        uint64_t first_ns = 0, last_ns = 0, packets = 0;
    };
    bool flush_slow();
    void add(Slot s, uint64_t delta, uint64_t first_ns, uint64_t last_ns);

    PacketRing& ring_;
    bool any_ = false;
    bool start_pending_ = false;
    uint64_t start_ns_ = 0;
    Pending loss_[kSlots];
    uint64_t reported_[kSlots] = {0, 0, 0};
    // The pcap counters last accounted for, and when they were read.
    uint64_t seen_dropped_ = 0, seen_ifdropped_ = 0, seen_ns_ = 0;
    uint64_t progress_ns_ = 0, progress_sent_ns_ = 0;
};

}  // namespace angel
