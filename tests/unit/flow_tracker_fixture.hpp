// A FlowTracker on a FlowMap in ordinary memory, with a sink that collects what it emits:
// shared by the flow tracker's unit tests (flow_tracker_test.cpp, flow_tracker_announce_test.cpp).
#pragma once

#include <atomic>
#include <cstdlib>
#include <memory>
#include <vector>

#include "procd/flow_tracker.hpp"

namespace angel::flow_tracker_testing {

inline constexpr uint64_t kSec = 1'000'000'000ull;

struct Mem {
    explicit Mem(uint32_t capacity) : bytes(FlowMap::bytes_for(capacity)) {
        mem.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) & ~size_t{63})));
        FlowMap::format(mem.get(), capacity);
    }
    struct Free {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    size_t bytes;
    std::unique_ptr<uint8_t, Free> mem;
};

struct Collect : RecordSink {
    std::vector<Record> records;
    std::vector<Record> events;
    void emit(const Record& r) override { records.push_back(r); }
    void event(const Record& r) override { events.push_back(r); }
    void publish() override {}
};

struct Fixture {
    explicit Fixture(uint32_t capacity) : mem(capacity) {
        map = FlowMap(mem.mem.get(), FlowKeyHasher{&flow_bucket_hash, FlowIdKey{1, 2}});
        tracker = std::make_unique<FlowTracker>(map, FlowIdKey{1, 2}, FlowTimeouts{60 * kSec, 2 * kSec}, out, ctr, capacity);
    }
    Mem mem;
    FlowMap map;
    Collect out;
    std::atomic<uint64_t> ctr[kStageCounters]{};
    std::unique_ptr<FlowTracker> tracker;
    uint64_t pos = 0;
    void send(const ParsedPacket& p, uint64_t ts, uint32_t len = 100) {
        tracker->packet(p, ts, len, pos += 64);  // every packet a batch of its own
        tracker->release_ended();
    }
};

// What procd gives a successor before it repeats (FlowTracker::plan_repeat): the packets at
// these positions, in ring order, those below repeat_end() only.
inline void plan_repeat(FlowTracker& t, const std::vector<std::pair<ParsedPacket, uint64_t>>& pks) {
    std::vector<FlowTracker::Repeated> r;
    for (const auto& [p, pos] : pks) {
        if (pos >= t.repeat_end()) continue;
        FlowTracker::Lookup l;
        t.lookup(p, l);
        r.push_back({pos, l.key, l.hash});
    }
    t.plan_repeat(r);
}

}  // namespace angel::flow_tracker_testing
