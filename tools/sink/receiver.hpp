// One datagram in, with the address it came from: the seam between the socket loop (main.cpp)
// and decoding. It picks the sender's exporter (tools/sink/exporters.hpp), decodes through that
// exporter's templates, hands records to the caller and counts the message in the Stats.
#pragma once
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "common/ipfix_decoder.hpp"
#include "tools/sink/exporters.hpp"
#include "tools/sink/stats.hpp"

namespace angel::sink {

class Receiver {
public:
    explicit Receiver(Stats& stats) : stats_(stats) {}

    // Records go to FN (the caller counts them: stats.on_record, and prints them).
    ipfix::MessageResult process(const uint8_t* data, size_t len, const sockaddr* src,
                                 socklen_t src_len, const ipfix::Decoder::RecordFn& fn);

    const ExporterTable& exporters() const { return exporters_; }

private:
    Stats& stats_;
    ExporterTable exporters_;
};

}  // namespace angel::sink
