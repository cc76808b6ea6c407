// A datagram whose header is unusable creates no exporter: garbage must not evict a real one.
#include "tools/sink/receiver.hpp"

namespace angel::sink {

ipfix::MessageResult Receiver::process(const uint8_t* data, size_t len, const sockaddr* src,
                                       socklen_t src_len, const ipfix::Decoder::RecordFn& fn) {
    ipfix::MessageResult res;
    res.status = ipfix::Decoder::check_header(data, len);
    if (res.status == ipfix::DecodeStatus::ok) {
        bool added = false, evicted = false;
        ipfix::Decoder& d =
            exporters_.get(exporter_key(src, src_len, ipfix::get32(data + 12)), &added, &evicted);
        if (added) stats_.on_new_exporter(evicted);
        // One decoder per exporter: its session argument has nothing left to tell apart.
        res = d.decode(data, len, 0, fn);
    }
    stats_.on_message(res, len);
    return res;
}

}  // namespace angel::sink
