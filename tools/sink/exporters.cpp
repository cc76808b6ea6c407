// Exporter keys from socket addresses, and the bounded least-recently-seen exporter table.
#include "tools/sink/exporters.hpp"

#include <netinet/in.h>

#include <cstring>

namespace angel::sink {

ExporterKey exporter_key(const sockaddr* src, socklen_t len, uint32_t domain) {
    ExporterKey k;
    k.domain = domain;
    if (!src) return k;
    if (src->sa_family == AF_INET && len >= socklen_t(sizeof(sockaddr_in))) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(src);
        k.family = AF_INET;
        std::memcpy(k.addr.data(), &a->sin_addr, 4);
        k.port = ntohs(a->sin_port);
    } else if (src->sa_family == AF_INET6 && len >= socklen_t(sizeof(sockaddr_in6))) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(src);
        k.family = AF_INET6;
        std::memcpy(k.addr.data(), &a->sin6_addr, 16);
        k.scope = a->sin6_scope_id;
        k.port = ntohs(a->sin6_port);
    }
    return k;
}

ipfix::Decoder& ExporterTable::get(const ExporterKey& key, bool* added, bool* evicted) {
    ++clock_;
    *added = *evicted = false;
    if (last_ < entries_.size() && entries_[last_].key == key) {
        entries_[last_].last_seen = clock_;
        return entries_[last_].decoder;
    }
    for (size_t i = 0; i < entries_.size(); ++i) {
        if (entries_[i].key == key) {
            entries_[i].last_seen = clock_;
            last_ = i;
            return entries_[i].decoder;
        }
    }
    const ipfix::Decoder fresh(ipfix::Decoder::Limits{kMaxTemplatesPerExporter,
                                                      kMaxFieldsPerExporter});
    *added = true;
    if (entries_.size() < kMaxExporters) {
        entries_.push_back(Entry{key, clock_, fresh});
        last_ = entries_.size() - 1;
    } else {
        size_t oldest = 0;
        for (size_t i = 1; i < entries_.size(); ++i)
            if (entries_[i].last_seen < entries_[oldest].last_seen) oldest = i;
        entries_[oldest] = Entry{key, clock_, fresh};  // frees the old decoder's templates
        last_ = oldest;
        *evicted = true;
    }
    return entries_[last_].decoder;
}

}  // namespace angel::sink
