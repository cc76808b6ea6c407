// Builds IPFIX messages (RFC 7011) in a caller-provided buffer of fixed maximum size.
// No allocation: records are written big-endian straight into the buffer. Consecutive records of
// the same template share one data set; a record of another template opens a new set, so the
// order of records inside a message is the order they were added (flow-start before its packets).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/ipfix.hpp"

namespace angel::ipfix {

class Encoder {
public:
    // buf must stay valid and hold max_size bytes; max_size must fit the message header, the
    // template set and the largest data set (checked: std::invalid_argument otherwise).
    Encoder(uint8_t* buf, size_t max_size, uint32_t domain_id);

    // Starts an empty message (drops whatever was in the buffer).
    void reset();
    // Adds a template set with every template. False (nothing written) when it does not fit.
    bool add_templates();
    // Each adds one data record; false (nothing written) when the message is full: finish and
    // send it, reset, and add again.
    bool add(const PacketFields& r);
    bool add(const FlowStartFields& r);
    bool add(const FlowEndFields& r);
    bool add(const LossFields& r);
    bool add(const WatermarkFields& r);

    // Closes the open set and writes the message header. sequence: data records sent in this
    // domain before this message (mod 2^32). Returns the message length. The message stays in
    // the buffer until reset(); finish() may be called again (e.g. to retry with a new time).
    size_t finish(uint32_t export_time_s, uint32_t sequence);

    uint32_t records() const { return records_; }      // data records in the message
    bool has_templates() const { return templates_; }
    bool empty() const { return records_ == 0 && !templates_; }
    size_t size() const { return pos_; }
    size_t max_size() const { return max_; }
    uint32_t domain_id() const { return domain_; }
    void set_domain_id(uint32_t d) { domain_ = d; }
    const uint8_t* data() const { return buf_; }

private:
    // Space for one record of template tid (opening a set when needed); nullptr when full.
    uint8_t* reserve(uint16_t tid, size_t size);
    void close_set();

    uint8_t* buf_;
    size_t max_;
    uint32_t domain_;
    size_t pos_ = kMessageHeaderSize;
    size_t set_start_ = 0;  // offset of the open data set's header; 0 = none open
    uint16_t set_tid_ = 0;
    uint32_t records_ = 0;
    bool templates_ = false;
};

}  // namespace angel::ipfix
