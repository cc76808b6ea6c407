// procd's RecordSink: records go to the record ring (blocking while netd catches up, so no
// record is ever dropped inside the meter), events to the event ring. Events wait for room
// while ctld asks for it (ControlBlock::events_wait: a replay with a database, lossless like
// the packet ring; a live stop until database.stop_drain_ms has passed); otherwise a full ring
// drops the event and counts it, and the database is reconciled from the FlowMap later (live
// capture must never wait for PostgreSQL).
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
        while (!events_.push(r)) {
            if (!rt_.control().events_wait.load(std::memory_order_acquire)) {
                rt_.count(procd_events_dropped);
                return;
            }
            rt_.count(procd_event_waits);
            rt_.heartbeat();  // waiting on the database writer is not a hang
            events_.wait_for_space(50);  // publishes what is queued first: the writer needs it
        }
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
