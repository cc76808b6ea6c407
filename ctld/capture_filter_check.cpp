#include "ctld/capture_filter_check.hpp"

#include <pcap/pcap.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "ctld/live_config_builder.hpp"
#include "shm/live_config.hpp"

#ifdef __linux__
#include <linux/filter.h>
static_assert(BPF_MAXINSNS == angel::kKernelMaxFilterInsns);
#endif

namespace angel {

static_assert(sizeof(LiveConfig::bpf_filter) - 1 == kMaxFilterTextLen);

namespace {

struct PcapCloser {
    pcap_t* p;
    ~PcapCloser() {
        if (p) pcap_close(p);
    }
};

std::string on_where(const std::string& interface) { return interface.empty() ? "" : " on " + interface; }

FilterCheck refuse(FilterCheck c, FilterCheck::Problem problem, std::string error) {
    c.ok = false;
    c.problem = problem;
    c.error = std::move(error);
    return c;
}

std::string optmem_max_text() {
    std::ifstream in("/proc/sys/net/core/optmem_max");
    std::string v;
    if (!(in >> v)) return "";
    return " (now " + v + " bytes)";
}

// Attaches prog to the capture socket fd as libpcap's pcap_setfilter would: 0 or errno.
int try_in_kernel(int fd, const bpf_program& prog) {
#ifdef __linux__
    sock_fprog fp{};
    fp.len = static_cast<unsigned short>(prog.bf_len);
    fp.filter = reinterpret_cast<sock_filter*>(prog.bf_insns);
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) != 0) return errno;
#else
    // BIOCSETF on the BPF device is pcap_setfilter itself, which would fall back silently:
    // the instruction count is the check there.
    (void)fd;
    (void)prog;
#endif
    return 0;
}

// The length check, pcap_compile on p, the instruction count and, with attach_fd >= 0, the
// kernel's verdict on that socket. interface only names where it was compiled in messages.
FilterCheck compile_and_count(pcap_t* p, const std::string& text, const std::string& interface, int attach_fd) {
    FilterCheck c;
    c.text_length = text.size();
    if (text.size() > kMaxFilterTextLen)
        return refuse(c, FilterCheck::Problem::text_too_long,
                      "the capture filter is " + std::to_string(text.size()) + " characters; at most " +
                          std::to_string(kMaxFilterTextLen) + " fit its field in the shared segment");
    bpf_program prog{};
    if (pcap_compile(p, &prog, text.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        c.compiler = pcap_geterr(p);
        return refuse(c, FilterCheck::Problem::does_not_compile,
                      "the capture filter does not compile" + on_where(interface) + ": " + c.compiler);
    }
    c.instructions = prog.bf_len;
    if (c.instructions <= kKernelMaxFilterInsns && attach_fd >= 0) c.kernel_error = try_in_kernel(attach_fd, prog);
    pcap_freecode(&prog);
    if (c.instructions > kKernelMaxFilterInsns)
        return refuse(c, FilterCheck::Problem::too_many_instructions,
                      "the capture filter compiles to " + std::to_string(c.instructions) + " BPF instructions" +
                          on_where(interface) + "; the kernel accepts at most " +
                          std::to_string(kKernelMaxFilterInsns));
    if (c.kernel_error != 0) {
        std::string error = "the kernel refuses the capture filter" + on_where(interface) + " (" +
                            std::to_string(c.instructions) + " BPF instructions): " + std::strerror(c.kernel_error);
        if (c.kernel_error == ENOMEM) error += "; raise net.core.optmem_max" + optmem_max_text() + " or shorten it";
        return refuse(c, FilterCheck::Problem::kernel_refuses, error);
    }
    return c;
}

// check_capture_filter_on without the interface: the pcap_open_dead count, and a note when it
// comes near the limit or the kernel refuses a program of that size on a plain UDP socket (no
// privilege needed; as that program has other loads than the live one, only a hint).
FilterCheck counted_without(const std::string& text, const std::string& interface, const std::string& why,
                            int snaplen) {
    PcapCloser dead{pcap_open_dead(DLT_EN10MB, snaplen)};
    if (!dead.p) return check_capture_filter(text, DLT_EN10MB, snaplen);
    const int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    FilterCheck c = compile_and_count(dead.p, text, "", udp);
    if (udp >= 0) close(udp);
    std::string hint;
    if (c.problem == FilterCheck::Problem::kernel_refuses) {
        hint = "; this kernel refuses even that program on a test socket (" +
               std::string(std::strerror(c.kernel_error)) +
               (c.kernel_error == ENOMEM ? ", net.core.optmem_max" + optmem_max_text() + ")" : ")");
        c.ok = true;
        c.problem = FilterCheck::Problem::none;
        c.error.clear();
        c.kernel_error = 0;
    }
    if (c.ok && (c.instructions * 13 > kKernelMaxFilterInsns * 10 || !hint.empty()))
        c.note = "the capture filter was counted without opening " + interface + " (" + why + "): " +
                 std::to_string(c.instructions) +
                 " BPF instructions, but on a live Linux capture libpcap makes it longer (for the customer "
                 "filter by up to about 30 %)" + hint + "; run the check as root for the exact count";
    return c;
}

}  // namespace

FilterCheck check_capture_filter(const std::string& filter_text, int linktype, int snaplen) {
    PcapCloser dead{pcap_open_dead(linktype, snaplen)};
    if (!dead.p) {
        FilterCheck c;
        c.text_length = filter_text.size();
        return refuse(c, FilterCheck::Problem::does_not_compile,
                      "cannot compile the capture filter: pcap_open_dead(" + std::to_string(linktype) + ", " +
                          std::to_string(snaplen) + ") failed");
    }
    return compile_and_count(dead.p, filter_text, "", -1);
}

FilterCheck check_capture_filter_on(const std::string& filter_text, const std::string& interface, int snaplen) {
    if (filter_text.size() > kMaxFilterTextLen) return check_capture_filter(filter_text, DLT_EN10MB, snaplen);
    char err[PCAP_ERRBUF_SIZE] = {0};
    PcapCloser live{pcap_create(interface.c_str(), err)};
    std::string why = err;
    int rc = PCAP_ERROR;
    if (live.p) {
        // As capd opens it (capture_source.cpp), but not promiscuous: the socket lives a moment.
        pcap_set_snaplen(live.p, snaplen);
        pcap_set_promisc(live.p, 0);
        pcap_set_buffer_size(live.p, 512 * 1024);
        pcap_set_timeout(live.p, 10);
        rc = pcap_activate(live.p);
        if (rc < 0) why = pcap_geterr(live.p)[0] ? pcap_geterr(live.p) : pcap_statustostr(rc);
    }
    if (rc < 0) return counted_without(filter_text, interface, why, snaplen);
    FilterCheck c = compile_and_count(live.p, filter_text, interface, pcap_fileno(live.p));
    c.exact = true;
    return c;
}

std::string customer_filter_problem(const Config& cfg, bool replay, std::string* warning) {
    if (warning) warning->clear();
    const auto& nets = cfg.customers.networks;
    if (nets.empty()) return "";
    const std::string text = customer_filter(nets);
    const std::string entries = "customers.networks has " + std::to_string(nets.size()) +
                                (nets.size() == 1 ? " entry" : " entries");
    const std::string remedy = ": shorten the list or aggregate prefixes";

    std::vector<std::string> where;  // "" = pcap_open_dead, EN10MB
    if (replay || cfg.capture.interfaces.empty())
        where.push_back("");
    else
        where = cfg.capture.interfaces;
    for (const std::string& ifname : where) {
        const FilterCheck c = ifname.empty() ? check_capture_filter(text, DLT_EN10MB, cfg.capture.snaplen)
                                             : check_capture_filter_on(text, ifname, cfg.capture.snaplen);
        if (warning && !c.note.empty() && warning->empty()) *warning = "customers.networks: " + c.note;
        using P = FilterCheck::Problem;
        switch (c.problem) {
            case P::none:
                break;
            case P::text_too_long:
                return "the customer filter is " + std::to_string(c.text_length) + " characters; at most " +
                       std::to_string(kMaxFilterTextLen) + " fit its field in the shared segment (" + entries + ")" +
                       remedy;
            case P::does_not_compile:
                return "the customer filter does not compile" + on_where(ifname) + " (" + entries + "): " + c.compiler;
            case P::too_many_instructions:
                if (replay) break;  // replay files are filtered in user space anyway
                return "the customer filter compiles to " + std::to_string(c.instructions) + " BPF instructions" +
                       on_where(ifname) + "; the kernel accepts at most " + std::to_string(kKernelMaxFilterInsns) +
                       " (" + entries + ")" + remedy;
            case P::kernel_refuses:
                return "the kernel refuses the customer filter" + on_where(ifname) + " (" +
                       std::to_string(c.instructions) + " BPF instructions, " + entries +
                       "): " + std::strerror(c.kernel_error) +
                       (c.kernel_error == ENOMEM ? "; raise net.core.optmem_max" + optmem_max_text() + "," : ";") +
                       " shorten the list or aggregate prefixes";
        }
    }
    return "";
}

}  // namespace angel
