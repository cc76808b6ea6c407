// PacketParser: drives the link-level layers from a table until a network layer (or "not IP")
// is named, then IPv4/IPv6, the fragment cache and the transport layer.
#include "common/packet/parser.hpp"

#include <iterator>
#include <optional>

#include "common/packet/common_frame.hpp"
#include "common/packet/fragment_cache.hpp"
#include "common/packet/link_layer.hpp"
#include "common/packet/network_layer.hpp"
#include "common/packet/transport.hpp"

namespace angel {

using namespace angel::packet;

namespace {

// One row per link-level Layer, in enum order.
constexpr LinkLayerFn kLinkLayers[] = {
    parse_ethernet,   parse_vlan_tag,  parse_mpls,     parse_pppoe_session, parse_linux_sll,
    parse_linux_sll2, parse_bsd_null,  parse_bsd_loop, parse_ip_any,
};
static_assert(std::size(kLinkLayers) == static_cast<size_t>(Layer::link_count_));

// Bound on link-level headers (tags, PPPoE, ...) before IP. Real links stack two or three.
constexpr int kMaxLinkSteps = 16;

// Follows the link-level chain; on success `step` names ipv4, ipv6 or not_ip.
ParseStatus walk_link_layers(Layer first, const ByteReader& frame, LayerStep& step) {
    step = {first, 0, ParseStatus::ok};
    for (int n = 0; step.next < Layer::link_count_; ++n) {
        if (n == kMaxLinkSteps) return ParseStatus::too_many_headers;
        step = kLinkLayers[static_cast<size_t>(step.next)](frame, step.offset);
        if (step.status != ParseStatus::ok) return step.status;
    }
    return ParseStatus::ok;
}

// Transport layer, with non-first fragments attributed through the cache.
ParseStatus finish_ip(const ByteReader& frame, const NetworkResult& net, FragmentCache& cache,
                      ParseCounters& counters, uint64_t ts_ns, ParsedPacket& out) {
    out.proto = net.proto;
    if (!net.frag.is_fragment) {
        return net.has_transport
                   ? parse_transport(frame, net.l4_offset, net.l4_end, net.proto, out)
                   : ParseStatus::ok;
    }
    out.fragment = true;
    const FragmentKey key{out.src, out.dst, net.frag.id, out.ip_version, net.frag.key_proto};
    if (net.frag.first) {
        if (net.has_transport) {
            const ParseStatus s = parse_transport(frame, net.l4_offset, net.l4_end, net.proto, out);
            if (s != ParseStatus::ok) return s;
        }
        ++counters.frag_first;
        const FragmentPorts ports{out.sport, out.dport, out.proto, out.ports_known};
        if (cache.remember(key, ports, ts_ns)) ++counters.frag_cache_evicted;
        return ParseStatus::ok;
    }
    FragmentPorts ports;
    if (cache.lookup(key, net.frag.last, ts_ns, ports)) {
        ++counters.frag_hit;
        out.proto = ports.proto;  // IPv6: the transport found after the first fragment's headers
        out.sport = ports.sport;
        out.dport = ports.dport;
        out.ports_known = ports.ports_known;
    } else {
        ++counters.frag_miss;  // first fragment not seen (or aged out): ports stay 0
    }
    return ParseStatus::ok;
}

ParseStatus parse_frame(int linktype, const ByteReader& frame, FragmentCache& cache,
                        ParseCounters& counters, uint64_t ts_ns, ParsedPacket& out) {
    const std::optional<Layer> first = first_layer_for_linktype(linktype);
    if (!first) return ParseStatus::unsupported_link;
    LayerStep step;
    if (const ParseStatus s = walk_link_layers(*first, frame, step); s != ParseStatus::ok)
        return s;

    NetworkResult net;
    switch (step.next) {
        case Layer::ipv4: net = parse_ipv4(frame, step.offset, out); break;
        case Layer::ipv6: net = parse_ipv6(frame, step.offset, out); break;
        default: return ParseStatus::not_ip;
    }
    if (net.status != ParseStatus::ok) return net.status;
    return finish_ip(frame, net, cache, counters, ts_ns, out);
}

}  // namespace

PacketParser::PacketParser(size_t frag_cache_entries)
    : frags_(new FragmentCache(frag_cache_entries)) {}

PacketParser::~PacketParser() { delete frags_; }

ParseStatus PacketParser::parse(int linktype, const uint8_t* data, uint32_t caplen,
                                uint64_t ts_ns, ParsedPacket& out) {
    out = ParsedPacket{};
    if (parse_common_frame(linktype, data, caplen, out)) {
        ++counters_.by_status[static_cast<size_t>(ParseStatus::ok)];
        return ParseStatus::ok;
    }
    return parse_layered(linktype, data, caplen, ts_ns, out);
}

ParseStatus PacketParser::parse_layered(int linktype, const uint8_t* data, uint32_t caplen,
                                        uint64_t ts_ns, ParsedPacket& out) {
    out = ParsedPacket{};
    const ByteReader frame{data, data == nullptr ? 0 : caplen};
    const ParseStatus s = parse_frame(linktype, frame, *frags_, counters_, ts_ns, out);
    if (s != ParseStatus::ok) {
        // Partial fields from a frame that failed must not be mistaken for a flow.
        out = ParsedPacket{};
    }
    ++counters_.by_status[static_cast<size_t>(s)];
    return s;
}

}  // namespace angel
