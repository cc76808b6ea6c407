// Checks the capture filter before anything starts (angel-ctld -t, and before detaching), so a
// customer list the kernel would refuse is reported instead of being filtered in user space.
//
// Why: on Linux, when the kernel refuses the classic BPF program (SO_ATTACH_FILTER: more than
// BPF_MAXINSNS = 4096 instructions -> EINVAL, or more eBPF than net.core.optmem_max allows
// -> ENOMEM), libpcap only writes a warning to stderr ("Kernel filter failed: Invalid
// argument", "Couldn't allocate kernel memory for filter"), pcap_setfilter returns 0 and every
// packet is copied to user space and filtered there (seen here with libpcap 1.10.3). BSD
// libpcap falls back the same way when BIOCSETF refuses a program (pcap-bpf.c; not tried
// here). The filter text must also fit LiveConfig::bpf_filter (char[8192]).
//
// Two kinds of count:
//  - check_capture_filter compiles on pcap_open_dead(): no privilege needed, but on a live
//    Linux capture libpcap generates longer code for "vlan" (it tests the VLAN tag the kernel
//    stripped, with indexed loads; BPF_SPECIAL_VLAN_HANDLING, set only at pcap_activate).
//    For the customer filter that program is 13-27 % longer than the pcap_open_dead one.
//  - check_capture_filter_on compiles on the activated interface, as angel-capd does, and
//    attaches the program to that socket: the running kernel's own verdict. Needs capture
//    privilege (root or CAP_NET_RAW); without it, it falls back to the dead count with a note.
//
// Measured (libpcap 1.10.3, Linux 6.18, customer_filter() of n networks; the test
// CaptureFilterCheck.MeasuredThresholds re-measures the pcap_open_dead column, the live column
// is from tcpdump -d -i lo and SO_ATTACH_FILTER on that socket):
//   networks    instructions per network   over 4096 at (dead / live)   fit 8191 characters
//   /24 IPv4             32 / 36                  ~130 / ~114              200 (10.a.b.0/24)
//   /32 IPv4             10 / 12                  ~430 / ~360              200 (10.a.b.c/32)
//   /48 IPv6             24 / 28                  ~171 / ~147              171 (2001:db8:N::/48)
//   /128 IPv6            36 / -                   ~114 / -                 171 (2001:db8::N/128)
// (Longer addresses such as 192.168.100.200/32 need 52 characters each: 157 fit.) So the
// kernel's limit binds first for /24 and (live) /48 lists, the text field for /32 lists. And with
// net.core.optmem_max at 20480 bytes (the long-standing default of older kernels such as
// Debian 12's 6.1; 131072 on this host) the kernel refuses far earlier with ENOMEM, because it
// charges the eBPF it translates the program to: measured in a network namespace set so, 20 /24
// networks (680 instructions) were accepted on a live capture, 22 (752) refused.
#pragma once
#include <pcap/dlt.h>

#include <cstddef>
#include <string>

#include "common/config.hpp"

namespace angel {

// The kernel's limit on classic BPF program length: BPF_MAXINSNS of <linux/filter.h> (4096)
// on Linux, of <net/bpf.h> (512) on the BSDs.
#ifdef __linux__
inline constexpr std::size_t kKernelMaxFilterInsns = 4096;
#else
inline constexpr std::size_t kKernelMaxFilterInsns = 512;
#endif
// sizeof(LiveConfig::bpf_filter) - 1 (checked by a static_assert in the .cpp).
inline constexpr std::size_t kMaxFilterTextLen = 8191;

struct FilterCheck {
    enum class Problem { none, text_too_long, does_not_compile, too_many_instructions, kernel_refuses };
    bool ok = true;
    Problem problem = Problem::none;
    std::size_t instructions = 0;  // bf_len of the compiled program; 0 when not compiled
    std::size_t text_length = 0;
    bool exact = false;    // compiled on the live interface as capd compiles it (and, on Linux, tried in the kernel)
    int kernel_error = 0;  // kernel_refuses: the errno of SO_ATTACH_FILTER (EINVAL, ENOMEM)
    std::string error;     // !ok: one sentence, e.g. "the capture filter compiles to 5384 BPF ..."
    std::string compiler;  // does_not_compile: libpcap's own message (pcap_geterr)
    std::string note;      // worth a warning: the count is not exact and comes near the limit
};

// Compiles filter_text on pcap_open_dead(linktype, snaplen), optimised, netmask unknown (as
// capd does). Refuses, in this order: text longer than kMaxFilterTextLen (not compiled then:
// libpcap's optimiser takes minutes on texts many times that long), a compile error, more than
// kKernelMaxFilterInsns instructions. An empty text is fine (one instruction: accept all).
FilterCheck check_capture_filter(const std::string& filter_text, int linktype = DLT_EN10MB, int snaplen = 65535);

// The same, but compiled on `interface` opened and activated the way capd opens it (not
// promiscuous, small buffer, closed again at once), and the program attached to that socket:
// refused also when the kernel refuses it (kernel_refuses: ENOMEM names net.core.optmem_max).
// When the interface cannot be activated (no privilege, no such interface), returns the
// check_capture_filter(filter_text, DLT_EN10MB, snaplen) result with exact = false, and a note
// when that count is within 30 % of the limit or the kernel refuses that program on a plain
// UDP socket (no privilege needed; only a hint, as the live program differs).
FilterCheck check_capture_filter_on(const std::string& filter_text, const std::string& interface, int snaplen);

// The customer filter of cfg (customer_filter(cfg.customers.networks), cfg.capture.snaplen),
// checked on each of cfg.capture.interfaces (pcap_open_dead EN10MB when there is none).
// Returns "" when fine, else one message that names customers.networks and how many networks
// it holds. replay: capd filters a replay file in user space by design, so only the text
// length and the syntax count. *warning (when given) receives a note worth logging even when
// the result is "" (e.g. counted without capture privilege), else "".
std::string customer_filter_problem(const Config& cfg, bool replay = false, std::string* warning = nullptr);

}  // namespace angel
