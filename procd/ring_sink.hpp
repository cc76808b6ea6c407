// procd's RecordSink: records go to the record ring (blocking while netd catches up, so no
// record is ever dropped inside the meter), events to the event ring (dropped and counted
// when the database writer is behind: the database is reconciled from the FlowMap later).
#pragma once
#include "procd/flow_tracker.hpp"
#include "shm/stage_runtime.hpp"

namespace angel {

class RingSink : public RecordSink {
public:
    RingSink(StageRuntime& rt, RecordRing<Record>& records, RecordRing<Record>& events, bool events_on)
        : rt_(rt), records_(records), events_(events), events_on_(events_on) {}

    void emit(const Record& r) override {
        while (!records_.push(r)) {
            if (rt_.control().netd_gone.load(std::memory_order_acquire)) {
                // Stopping without a netd (it crash-loops and was given up): nobody will
                // read this ring again, so count the record as lost instead of waiting forever.
                rt_.count(procd_records_lost);
                return;
            }
            rt_.count(procd_record_waits);
            rt_.heartbeat();  // waiting on netd is not a hang
            records_.wait_for_space(50);
        }
        if (records_.unpublished() >= 1024) records_.publish();
    }
    void event(const Record& r) override {
        if (!events_on_) return;
        if (!events_.push(r)) rt_.count(procd_events_dropped);
    }
    void publish() override {
        records_.publish();
        if (events_on_) events_.publish();
    }

private:
    StageRuntime& rt_;
    RecordRing<Record>& records_;
    RecordRing<Record>& events_;
    bool events_on_;
};

}  // namespace angel
