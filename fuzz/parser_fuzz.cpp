// libFuzzer target for the packet parser (and for the agreement of its fast path with the
// layered parser). Input: the first byte picks the link type (index
// into kLinktypes, modulo its size), the rest is the captured frame. One parser lives across
// inputs so the fragment cache is exercised too. fuzz/run.sh seeds it from ../shared/pcaps
// using the same index order (keep the two lists in sync).
#include <cstddef>
#include <cstdint>

#include "common/packet/parser.hpp"

namespace {
// Every link type we decode, plus one we do not (147, DLT_USER0).
constexpr int kLinktypes[] = {0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147};
constexpr size_t kCount = sizeof kLinktypes / sizeof kLinktypes[0];
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static angel::PacketParser parser(64);  // small: evictions get exercised
    static uint64_t clock_ns = 0;
    if (size == 0) return 0;
    const int linktype = kLinktypes[data[0] % kCount];
    angel::ParsedPacket out;
    clock_ns += 1000000000ull;  // one second per input, so cache entries also age out
    const angel::ParseStatus s =
        parser.parse(linktype, size > 1 ? data + 1 : nullptr, static_cast<uint32_t>(size - 1),
                     clock_ns, out);
    // Invariants: a parsed packet is IPv4 or IPv6 with its header inside the frame;
    // a failed one leaves no fields behind; ports only with ports_known.
    if (s == angel::ParseStatus::ok) {
        if (out.ip_version != 4 && out.ip_version != 6) __builtin_trap();
        if (out.l3_offset >= size - 1) __builtin_trap();
    } else if (out.ip_version != 0 || out.sport != 0 || out.dport != 0) {
        __builtin_trap();
    }
    if (!out.ports_known && (out.sport != 0 || out.dport != 0)) __builtin_trap();
    if (static_cast<size_t>(s) >= static_cast<size_t>(angel::ParseStatus::count_)) __builtin_trap();
    // The fast path for common frames must agree with the layered parser on every input. A
    // second parser sees the same inputs through the layered path alone, so the two
    // fragment caches stay alike.
    static angel::PacketParser layered(64);
    angel::ParsedPacket ref;
    const angel::ParseStatus rs =
        layered.parse_layered(linktype, size > 1 ? data + 1 : nullptr, static_cast<uint32_t>(size - 1),
                              clock_ns, ref);
    if (rs != s || ref.ip_version != out.ip_version || ref.proto != out.proto ||
        ref.tcp_flags != out.tcp_flags || ref.fragment != out.fragment || ref.ports_known != out.ports_known ||
        ref.sport != out.sport || ref.dport != out.dport || ref.src != out.src || ref.dst != out.dst ||
        ref.l3_offset != out.l3_offset)
        __builtin_trap();
    return 0;
}
