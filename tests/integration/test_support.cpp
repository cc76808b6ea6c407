// Implementation of tests/integration/test_support.hpp.
#include "test_support.hpp"

#include <ctime>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>

#ifndef ANGEL_SOURCE_DIR
#define ANGEL_SOURCE_DIR "."
#endif

namespace angel::itest {

using Clock = std::chrono::steady_clock;

// ---- Locations and small utilities ----------------------------------------------------------

fs::path source_dir() {
    const char* env = std::getenv("ANGEL_SOURCE_DIR");
    return fs::path(env != nullptr && *env ? env : ANGEL_SOURCE_DIR);
}

fs::path bin_dir() {
    const char* env = std::getenv("ANGEL_BIN_DIR");
    if (env != nullptr && *env) return fs::path(env);
    // The test binary is built next to the daemons (<build>/bin): the right place for whatever
    // build directory (build, build-clang, build-san) this binary came from.
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec && fs::exists(self.parent_path() / "angel-ctld", ec)) return self.parent_path();
    return source_dir() / "build" / "bin";
}

fs::path binary(const std::string& name) { return bin_dir() / name; }

fs::path shared_pcaps_dir(const std::string& sub) {
    return (source_dir() / ".." / "shared" / "pcaps" / sub).lexically_normal();
}

std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return out;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file(ec)) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

bool have_program(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::istringstream in(path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
    std::string d;
    while (std::getline(in, d, ':')) {
        const fs::path p = fs::path(d.empty() ? "." : d) / name;
        if (access(p.c_str(), X_OK) == 0) return true;
    }
    return false;
}

std::string unique_name(std::string_view prefix) {
    static std::atomic<unsigned> seq{0};
    std::string p(prefix.substr(0, 20));
    return p + "-" + std::to_string(getpid()) + "-" + std::to_string(seq.fetch_add(1));
}

std::string sanitize_test_name(std::string_view s) {
    std::string out;
    for (const char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        out += ok ? c : '_';
    }
    return out.empty() ? "_" : out;
}

uint64_t wall_clock_ns() {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + static_cast<uint64_t>(t.tv_nsec);
}

void put_pcap_header(std::ostream& out, uint32_t linktype) {
    const uint32_t h[6] = {0xa1b2c3d4u, 0x00040002u, 0, 0, 65535, linktype};
    out.write(reinterpret_cast<const char*>(h), sizeof h);
}

void put_pcap_record(std::ostream& out, uint32_t sec, uint32_t usec, const uint8_t* frame, size_t len) {
    const uint32_t h[4] = {sec, usec, static_cast<uint32_t>(len), static_cast<uint32_t>(len)};
    out.write(reinterpret_cast<const char*>(h), sizeof h);
    out.write(reinterpret_cast<const char*>(frame), static_cast<std::streamsize>(len));
}

void set_ipv4_checksum(uint8_t* ip) {
    ip[10] = ip[11] = 0;
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += (ip[i] << 8) | ip[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = static_cast<uint8_t>(~sum >> 8);
    ip[11] = static_cast<uint8_t>(~sum);
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return {};
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> read_lines(const fs::path& p) {
    std::vector<std::string> out;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
}

void write_file(const fs::path& p, const std::string& text) {
    const fs::path tmp = p.string() + ".new";
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
    std::error_code ec;
    fs::rename(tmp, p, ec);
    if (ec) throw std::runtime_error("cannot rename " + tmp.string() + " to " + p.string() + ": " + ec.message());
}

size_t count_of(const std::string& text, std::string_view what) {
    if (what.empty()) return 0;
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
    return n;
}

namespace {
// The unsigned number at text[at], after blanks; nullopt when there is none.
std::optional<uint64_t> number_at(const std::string& text, size_t at) {
    while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
    if (at >= text.size() || !std::isdigit(static_cast<unsigned char>(text[at]))) return std::nullopt;
    return std::strtoull(text.c_str() + at, nullptr, 10);
}
}  // namespace

std::optional<uint64_t> number_after(const std::string& text, std::string_view label) {
    const size_t at = text.find(label);
    if (at == std::string::npos) return std::nullopt;
    return number_at(text, at + label.size());
}

std::vector<uint64_t> numbers_after(const std::string& text, std::string_view label) {
    std::vector<uint64_t> out;
    for (size_t at = text.find(label); at != std::string::npos; at = text.find(label, at + label.size()))
        if (const auto n = number_at(text, at + label.size())) out.push_back(*n);
    return out;
}

bool wait_until(const std::function<bool()>& pred, Millis timeout, Millis step) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(step);
    }
    return pred();
}

// ---- RAII guards ------------------------------------------------------------------------------

TempDir::TempDir(std::string_view prefix) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/" +
                        std::string(prefix) + "-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr)
        throw std::runtime_error("mkdtemp " + templ + ": " + std::strerror(errno));
    path_ = templ;
}

TempDir::~TempDir() {
    if (std::getenv("ANGEL_KEEP_TEST_DIRS") != nullptr) {
        std::fprintf(stderr, "[test_support] keeping %s\n", path_.c_str());
        return;
    }
    std::error_code ec;
    fs::remove_all(path_, ec);
}

ShmGuard::ShmGuard(std::string instance) : instance_(std::move(instance)) {
    std::error_code ec;
    fs::remove(path_of(instance_), ec);
    fs::remove(path_of(instance_).string() + ".ctl", ec);
}

ShmGuard::~ShmGuard() {
    std::error_code ec;
    fs::remove(path_of(instance_), ec);
    fs::remove(path_of(instance_).string() + ".ctl", ec);
}

fs::path copy_binary_for_others(const std::string& name, const fs::path& dir) {
    const fs::path to = dir / name;
    fs::copy_file(binary(name), to, fs::copy_options::overwrite_existing);
    fs::permissions(to, fs::perms(0755));
    return to;
}

fs::path ShmGuard::path_of(const std::string& instance) { return "/dev/shm/angel." + instance; }

// ---- Processes ---------------------------------------------------------------------------------

bool ExitStatus::exited() const { return raw >= 0 && WIFEXITED(raw); }
int ExitStatus::code() const { return exited() ? WEXITSTATUS(raw) : -1; }
bool ExitStatus::signaled() const { return raw >= 0 && WIFSIGNALED(raw); }
int ExitStatus::signal() const { return signaled() ? WTERMSIG(raw) : 0; }

std::string ExitStatus::describe() const {
    if (raw < 0) return "not run";
    if (exited()) return "exit " + std::to_string(code());
    if (signaled())
        return "killed by signal " + std::to_string(signal()) + " (" + strsignal(signal()) + ")";
    return "status " + std::to_string(raw);
}

namespace {

// In the child after fork: own process group, die with the parent, default signals.
void child_common_setup() {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD, SIGHUP}) ::signal(s, SIG_DFL);
}

[[noreturn]] void child_exec(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    const std::string msg = "cannot execute " + argv[0] + ": " + std::strerror(errno) + "\n";
    ssize_t ignored = write(STDERR_FILENO, msg.data(), msg.size());
    (void)ignored;
    _exit(127);
}

int open_out(const fs::path& p) {
    if (p.empty()) return open("/dev/null", O_WRONLY | O_CLOEXEC);
    return open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

void kill_group(pid_t pid, int sig) {
    if (pid <= 0) return;
    if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

}  // namespace

Process::Process(const Options& o) {
    if (o.argv.empty()) throw std::runtime_error("Process: empty argv");
    // Opened before fork so that a failure is reported here, not lost in the child.
    const int out = open_out(o.stdout_path);
    const int err = open_out(o.stderr_path);
    const int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || err < 0 || in < 0) {
        const std::string why = std::strerror(errno);
        for (int fd : {out, err, in})
            if (fd >= 0) close(fd);
        throw std::runtime_error("Process: cannot open output files for " + o.argv[0] + ": " + why);
    }
    const pid_t pid = fork();
    if (pid < 0) {
        const std::string why = std::strerror(errno);
        close(out), close(err), close(in);
        throw std::runtime_error("fork: " + why);
    }
    if (pid == 0) {
        child_common_setup();
        dup2(in, STDIN_FILENO);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        if (!o.cwd.empty() && chdir(o.cwd.c_str()) != 0) _exit(127);
        child_exec(o.argv);
    }
    setpgid(pid, pid);  // also in the parent: no window where a kill of the group misses
    close(out), close(err), close(in);
    pid_ = pid;
}

Process::~Process() {
    if (pid_ > 0 && !status_) kill();
}

Process::Process(Process&& other) noexcept : pid_(other.pid_), status_(other.status_) {
    other.pid_ = -1;
    other.status_.reset();
}

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        if (pid_ > 0 && !status_) kill();
        pid_ = other.pid_;
        status_ = other.status_;
        other.pid_ = -1;
        other.status_.reset();
    }
    return *this;
}

bool Process::running() {
    if (pid_ <= 0 || status_) return false;
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
        status_ = ExitStatus{st};
        return false;
    }
    if (r < 0 && errno == ECHILD) {  // reaped elsewhere: nothing to wait for
        status_ = ExitStatus{};
        return false;
    }
    return true;
}

std::optional<ExitStatus> Process::wait_for(Millis timeout) {
    if (pid_ <= 0) return ExitStatus{};
    const auto deadline = Clock::now() + timeout;
    Millis step(1);
    while (running()) {
        if (Clock::now() >= deadline) return std::nullopt;
        std::this_thread::sleep_for(step);
        step = std::min(step * 2, Millis(20));
    }
    return status_;
}

void Process::signal(int sig) {
    if (pid_ > 0 && !status_) kill_group(pid_, sig);
}

ExitStatus Process::stop(int sig, Millis grace) {
    if (pid_ <= 0) return ExitStatus{};
    signal(sig);
    if (auto st = wait_for(grace)) return *st;
    return kill();
}

ExitStatus Process::kill() {
    if (pid_ <= 0) return ExitStatus{};
    if (status_) return *status_;
    kill_group(pid_, SIGKILL);
    int st = 0;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
    status_ = ExitStatus{st};
    return *status_;
}

std::string command_line(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) {
        if (!s.empty()) s += ' ';
        if (!a.empty() && a.find_first_of(" \t'\"$\\*?;&|<>()") == std::string::npos) {
            s += a;
        } else {
            s += '\'';
            for (char c : a) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
            s += '\'';
        }
    }
    return s;
}

std::string CommandResult::describe() const {
    std::string s = timed_out ? "timed out (killed)" : status.describe();
    if (!err.empty()) {
        const size_t from = err.size() > 2000 ? err.size() - 2000 : 0;
        s += "; stderr: " + err.substr(from);
    }
    return s;
}

CommandResult run_command(const std::vector<std::string>& argv, Millis timeout) {
    CommandResult r;
    if (argv.empty()) return r;
    int outp[2], errp[2];
    if (pipe2(outp, O_CLOEXEC) != 0) return r;
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(outp[0]), close(outp[1]);
        return r;
    }
    const pid_t pid = fork();
    if (pid < 0) {
        for (int fd : {outp[0], outp[1], errp[0], errp[1]}) close(fd);
        return r;
    }
    if (pid == 0) {
        child_common_setup();
        const int in = open("/dev/null", O_RDONLY);
        dup2(in, STDIN_FILENO);
        dup2(outp[1], STDOUT_FILENO);
        dup2(errp[1], STDERR_FILENO);
        child_exec(argv);
    }
    setpgid(pid, pid);
    close(outp[1]), close(errp[1]);
    const auto deadline = Clock::now() + timeout;
    pollfd fds[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
    std::string* dest[2] = {&r.out, &r.err};
    int open_fds = 2;
    char buf[65536];
    while (open_fds > 0) {
        const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
        if (left <= 0) {
            r.timed_out = true;
            break;
        }
        const int n = poll(fds, 2, static_cast<int>(std::min<long long>(left, 1000)));
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            const ssize_t got = read(fds[i].fd, buf, sizeof buf);
            if (got > 0) {
                dest[i]->append(buf, static_cast<size_t>(got));
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) close(f.fd);
    int st = 0;
    if (r.timed_out) {
        kill_group(pid, SIGKILL);
        waitpid(pid, &st, 0);
    } else {
        // Output closed: the process is exiting; still bounded by the deadline.
        for (;;) {
            const pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid) break;
            if (w < 0 && errno != EINTR) break;
            if (Clock::now() >= deadline) {
                r.timed_out = true;
                kill_group(pid, SIGKILL);
                waitpid(pid, &st, 0);
                break;
            }
            std::this_thread::sleep_for(Millis(2));
        }
    }
    r.status = ExitStatus{st};
    return r;
}

// ---- Network -----------------------------------------------------------------------------------

uint16_t free_udp_port(const char* host) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, host, &a.sin_addr);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        const std::string why = std::strerror(errno);
        close(fd);
        throw std::runtime_error("free_udp_port: " + why);
    }
    close(fd);
    return ntohs(a.sin_port);
}

std::optional<size_t> count_pcap_records(const fs::path& file) {
    const std::string data = read_file(file);
    if (data.size() < 24) return std::nullopt;
    uint32_t magic;
    std::memcpy(&magic, data.data(), 4);
    bool swap;
    if (magic == 0xa1b2c3d4u || magic == 0xa1b23c4du) swap = false;
    else if (magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u) swap = true;
    else return std::nullopt;
    size_t off = 24, n = 0;
    while (off + 16 <= data.size()) {
        uint32_t caplen;
        std::memcpy(&caplen, data.data() + off + 8, 4);
        if (swap) caplen = __builtin_bswap32(caplen);
        if (off + 16 + caplen > data.size()) break;  // record still being written
        off += 16 + caplen;
        ++n;
    }
    return n;
}

LoopbackCapture::LoopbackCapture(fs::path file, const std::string& filter, fs::path log)
    : file_(std::move(file)), log_(std::move(log)) {
    // -U: every packet written as it comes; --immediate-mode: no kernel buffering delay;
    // -Z root: keep root so that the file can be written in a root-only temp directory.
    // Snap length: enough for the largest export datagram (export.mtu <= 9000), not the default
    // 256 KiB: the kernel ring is cut into frames of the snap length, and 2 MiB of 256 KiB
    // frames hold 7 packets -- a burst of export datagrams overflowed it. -B: 64 MiB ring.
    proc_ = Process({{"tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-Z", "root", "-s",
                      "9216", "-B", "65536", "-w", file_.string(), filter},
                     {},
                     log_,
                     {}});
}

bool LoopbackCapture::wait_ready(Millis timeout) {
    return wait_until(
        [&] {
            if (!proc_.running()) return true;  // dead: report below
            return count_pcap_records(file_).has_value() &&
                   read_file(log_).find("listening on") != std::string::npos;
        },
        timeout) &&
           proc_.running();
}

size_t LoopbackCapture::frames() const { return count_pcap_records(file_).value_or(0); }

bool LoopbackCapture::wait_frames(size_t n, Millis timeout) const {
    return wait_until([&] { return frames() >= n; }, timeout);
}

ExitStatus LoopbackCapture::stop() { return proc_.stop(SIGINT, Millis(5000)); }

std::optional<uint64_t> LoopbackCapture::dropped_by_kernel() const {
    const std::string log = read_file(log_);
    const auto at = log.find(" packets dropped by kernel");
    if (at == std::string::npos) return std::nullopt;
    size_t b = at;
    while (b > 0 && std::isdigit(static_cast<unsigned char>(log[b - 1]))) --b;
    if (b == at) return std::nullopt;
    return std::strtoull(log.substr(b, at - b).c_str(), nullptr, 10);
}

// ---- Parsing -----------------------------------------------------------------------------------

namespace {

// A flat JSON object of string, number and boolean values, as the sink writes it.
bool parse_flat_json(const std::string& s, std::vector<std::pair<std::string, std::string>>* kv,
                     std::string* error) {
    size_t i = 0;
    auto ws = [&] {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    };
    auto str = [&](std::string* out) {
        if (i >= s.size() || s[i] != '"') return false;
        ++i;
        while (i < s.size() && s[i] != '"') {
            if (s[i] == '\\') {
                if (++i >= s.size()) return false;
            }
            *out += s[i++];
        }
        if (i >= s.size()) return false;
        ++i;
        return true;
    };
    ws();
    if (i >= s.size() || s[i++] != '{') return *error = "not an object", false;
    ws();
    if (i < s.size() && s[i] == '}') return ++i, true;
    for (;;) {
        ws();
        std::string key, value;
        if (!str(&key)) return *error = "bad key", false;
        ws();
        if (i >= s.size() || s[i++] != ':') return *error = "missing ':' after " + key, false;
        ws();
        if (i < s.size() && s[i] == '"') {
            if (!str(&value)) return *error = "bad string for " + key, false;
        } else {
            while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') value += s[i++];
            if (value.empty()) return *error = "empty value for " + key, false;
        }
        kv->emplace_back(std::move(key), std::move(value));
        ws();
        if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
        }
        if (i < s.size() && s[i] == '}') {
            ++i;
            break;
        }
        return *error = "expected ',' or '}'", false;
    }
    ws();
    if (i != s.size()) return *error = "trailing characters", false;
    return true;
}

bool to_u64(const std::string& s, uint64_t* v) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return false;
    errno = 0;
    *v = std::strtoull(s.c_str(), nullptr, 10);
    return errno == 0;
}

}  // namespace

std::optional<SinkRecord> parse_sink_line(const std::string& line, std::string* error) {
    std::string dummy;
    if (error == nullptr) error = &dummy;
    std::vector<std::pair<std::string, std::string>> kv;
    if (!parse_flat_json(line, &kv, error)) return std::nullopt;
    if (kv.empty() || kv[0].first != "type") return *error = "first key is not \"type\"", std::nullopt;
    static const std::map<std::string, std::vector<std::string>> kKeys = {
        {"packet", {"type", "flow_id", "idx", "ts_ns", "len", "dir", "tcp_flags", "new"}},
        {"flow_start", {"type", "flow_id", "ts_ns", "proto", "src", "sport", "dst", "dport"}},
        {"flow_end",
         {"type", "flow_id", "reason", "first_ns", "last_ns", "packets", "bytes"}},
        {"loss", {"type", "cause", "first_ns", "last_ns", "packets"}},
        {"watermark", {"type", "ts_ns"}},
    };
    const auto spec = kKeys.find(kv[0].second);
    if (spec == kKeys.end()) return *error = "unknown type " + kv[0].second, std::nullopt;
    if (kv.size() != spec->second.size()) return *error = "wrong number of keys", std::nullopt;
    SinkRecord r;
    for (size_t k = 0; k < kv.size(); ++k) {
        const auto& [key, value] = kv[k];
        if (key != spec->second[k]) return *error = "unexpected key " + key, std::nullopt;
        if (key == "type" || key == "src" || key == "dst" || key == "reason" || key == "cause") continue;
        uint64_t v = 0;
        if (key == "new") {
            if (value != "true" && value != "false") return *error = "bad new", std::nullopt;
            r.is_new = value == "true";
            continue;
        }
        if (!to_u64(value, &v)) return *error = "bad number for " + key, std::nullopt;
        if (key == "flow_id") {
            if (v > 0xffffffffu) return *error = "flow_id out of range", std::nullopt;
            r.flow_id = static_cast<uint32_t>(v);
        } else if (key == "idx") {
            if (v > 0xffffffffu) return *error = "idx out of range", std::nullopt;
            r.idx = static_cast<uint32_t>(v);
        } else if (key == "ts_ns") r.ts_ns = v;
        else if (key == "len") r.len = v;
        else if (key == "dir") {
            if (v > 1) return *error = "dir not 0 or 1", std::nullopt;
            r.dir = static_cast<int>(v);
        } else if (key == "tcp_flags") r.tcp_flags = static_cast<int>(v);
        else if (key == "proto") r.proto = static_cast<int>(v);
        else if (key == "sport" || key == "dport") {
            if (v > 65535) return *error = key + " out of range", std::nullopt;
            (key == "sport" ? r.sport : r.dport) = static_cast<uint16_t>(v);
        } else if (key == "first_ns") r.first_ns = v;
        else if (key == "last_ns") r.last_ns = v;
        else if (key == "packets") r.packets = v;
        else if (key == "bytes") r.bytes = v;
    }
    const std::string& type = kv[0].second;
    if (type == "packet") {
        r.type = SinkRecord::Type::packet;
    } else if (type == "flow_start") {
        r.type = SinkRecord::Type::flow_start;
        r.src = kv[4].second;
        r.dst = kv[6].second;
    } else if (type == "loss") {
        r.type = SinkRecord::Type::loss;
        r.reason = kv[1].second;  // the cause
    } else if (type == "watermark") {
        r.type = SinkRecord::Type::watermark;
    } else {
        r.type = SinkRecord::Type::flow_end;
        r.reason = kv[2].second;
    }
    return r;
}

std::map<std::string, uint64_t> parse_counters(const std::string& line) {
    std::map<std::string, uint64_t> out;
    std::istringstream in(line);
    std::string tok;
    while (in >> tok) {
        const auto eq = tok.find('=');
        if (eq == std::string::npos || eq == 0) continue;
        uint64_t v = 0;
        std::string value = tok.substr(eq + 1);
        while (!value.empty() && (value.back() == ',' || value.back() == ';')) value.pop_back();
        if (to_u64(value, &v)) out[tok.substr(0, eq)] = v;
    }
    return out;
}

std::optional<std::string> find_stop_line(const std::string& ctld_stderr, const std::string& instance) {
    const std::string needle = "instance " + instance + " stopped:";
    std::optional<std::string> found;
    std::istringstream in(ctld_stderr);
    std::string line;
    while (std::getline(in, line))
        if (line.find(needle) != std::string::npos) found = line;
    return found;
}

// ---- Flat JSON ---------------------------------------------------------------------------------

std::optional<std::string> json_field_opt(const std::string& text, std::string_view key) {
    const std::string k = "\"" + std::string(key) + "\":";
    const size_t at = text.find(k);
    if (at == std::string::npos) return std::nullopt;
    size_t b = at + k.size(), e = b;
    if (b < text.size() && text[b] == '"') {
        ++b;
        e = text.find('"', b);
    } else {
        e = text.find_first_of(",}]", b);
    }
    if (e == std::string::npos) e = text.size();
    return text.substr(b, e - b);
}

std::string json_field(const std::string& text, std::string_view key) {
    return json_field_opt(text, key).value_or(std::string());
}

std::vector<std::map<std::string, std::string>> json_flat_objects(const std::string& s) {
    std::vector<std::map<std::string, std::string>> out;
    size_t i = 0;
    while ((i = s.find('{', i)) != std::string::npos) {
        const size_t end = s.find('}', i);
        if (end == std::string::npos) break;
        std::map<std::string, std::string> obj;
        size_t p = i + 1;
        while (p < end) {
            const size_t k0 = s.find('"', p);
            if (k0 == std::string::npos || k0 >= end) break;
            const size_t k1 = s.find('"', k0 + 1);
            const std::string key = s.substr(k0 + 1, k1 - k0 - 1);
            size_t v = s.find(':', k1) + 1;
            std::string val;
            if (s[v] == '"') {
                const size_t v1 = s.find('"', v + 1);
                val = s.substr(v + 1, v1 - v - 1);
                p = v1 + 1;
            } else {
                size_t v1 = s.find_first_of(",}", v);
                val = s.substr(v, v1 - v);
                p = v1;
            }
            obj[key] = val;
            p = s.find_first_of(",}", p);
            if (p == std::string::npos || p >= end) break;
            ++p;
        }
        out.push_back(std::move(obj));
        i = end + 1;
    }
    return out;
}

uint64_t json_number_in(const std::string& s, const std::string& section, const std::string& name) {
    size_t a = s.find("\"" + section + "\"");
    if (a == std::string::npos) return 0;
    a = s.find("\"" + name + "\":", a);
    if (a == std::string::npos) return 0;
    return std::strtoull(s.c_str() + a + name.size() + 3, nullptr, 10);
}

// ---- Meter configuration file ------------------------------------------------------------------

std::string MeterConfig::text() const {
    std::string c;
    if (!instance.empty()) c += "instance = \"" + instance + "\";\n";
    if (!user.empty()) c += "user = \"" + user + "\";\n";
    if (!runtime_dir.empty()) c += "runtime_dir = \"" + runtime_dir.string() + "\";\n";
    if (!capture_interface.empty())
        c += "capture = { interface = \"" + capture_interface + "\"; " + capture_extra + (capture_extra.empty() ? "" : " ") + "};\n";
    if (!classifier_host.empty()) {
        c += "classifier = { host = \"" + classifier_host + "\"; ";
        if (classifier_port != 0) c += "port = " + std::to_string(classifier_port) + "; ";
        c += "};\n";
    }
    return c + extra + "\n";
}

// ---- angel-sink on a port of its own choosing --------------------------------------------------

size_t LocalSink::lines() const {
    const std::string s = read_file(out);
    return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

std::string start_local_sink(LocalSink& s, const fs::path& dir, const std::string& name, int idle_s) {
    s.out = dir / (name + ".jsonl");
    s.summary = dir / (name + ".stdout");
    s.err = dir / (name + ".stderr");
    s.proc = Process({{binary("angel-sink").string(), "--listen", "127.0.0.1:0", "--idle", std::to_string(idle_s),
                       "--out", s.out.string()},
                      s.summary,
                      s.err,
                      {}});
    const std::string kListening = "listening on 127.0.0.1:";
    if (!wait_until([&] { return !s.proc.running() || read_file(s.err).find(kListening) != std::string::npos; },
                    Millis(10000)) ||
        !s.proc.running()) {
        s.proc.kill();
        return "angel-sink did not start: " + read_file(s.err);
    }
    const auto port = number_after(read_file(s.err), kListening);
    if (!port || *port == 0 || *port > 65535) {
        s.proc.kill();
        return "cannot read the sink's port: " + read_file(s.err);
    }
    s.port = static_cast<uint16_t>(*port);
    return {};
}

// ---- Flows as tshark sees them -----------------------------------------------------------------

std::string FlowTuple::describe() const {
    char a[INET6_ADDRSTRLEN] = {}, b[INET6_ADDRSTRLEN] = {};
    const int af = version == 4 ? AF_INET : AF_INET6;
    inet_ntop(af, addr_a.data(), a, sizeof a);
    inet_ntop(af, addr_b.data(), b, sizeof b);
    std::ostringstream o;
    o << "proto " << proto << " ";
    if (version == 6) o << "[" << a << "]:" << port_a << " <-> [" << b << "]:" << port_b;
    else o << a << ":" << port_a << " <-> " << b << ":" << port_b;
    return o.str();
}

std::optional<FlowTuple> canonical_tuple(int proto, const std::string& src, unsigned sport,
                                         const std::string& dst, unsigned dport) {
    FlowTuple t;
    t.version = src.find(':') != std::string::npos ? 6 : 4;
    const int af = t.version == 4 ? AF_INET : AF_INET6;
    if (inet_pton(af, src.c_str(), t.addr_a.data()) != 1) return std::nullopt;
    if (inet_pton(af, dst.c_str(), t.addr_b.data()) != 1) return std::nullopt;
    if (sport > 65535 || dport > 65535) return std::nullopt;
    t.proto = proto;
    t.port_a = static_cast<uint16_t>(sport);
    t.port_b = static_cast<uint16_t>(dport);
    if (std::tie(t.addr_b, t.port_b) < std::tie(t.addr_a, t.port_a)) {
        std::swap(t.addr_a, t.addr_b);
        std::swap(t.port_a, t.port_b);
    }
    return t;
}

namespace {

// The tshark fields tshark_frames() reads.
const char* const kFields[] = {
    "frame.number",     "frame.len",        "frame.protocols",     "ip.proto",
    "ip.src",           "ip.dst",           "ip.id",               "ip.frag_offset",
    "ipv6.nxt",         "ipv6.src",         "ipv6.dst",            "ipv6.hopopts.nxt",
    "ipv6.routing.nxt", "ipv6.fraghdr.nxt", "ipv6.dstopts.nxt",    "ah.next_header",
    "ipv6.fraghdr.ident", "ipv6.fraghdr.offset", "tcp.srcport",    "tcp.dstport",
    "udp.srcport",      "udp.dstport",      "sctp.srcport",        "sctp.dstport",
};
enum Col {
    kNumber, kFrameLen, kProtocols, kIpProto, kIpSrc, kIpDst, kIpId, kIpFragOffset, kIp6Nxt,
    kIp6Src, kIp6Dst, kHopNxt, kRoutingNxt, kFragNxt, kDstoptsNxt, kAhNxt, kFragIdent,
    kFragOffset, kTcpSport, kTcpDport, kUdpSport, kUdpDport, kSctpSport, kSctpDport, kColumns
};
static_assert(std::size(kFields) == kColumns);

std::vector<std::string> split(const std::string& line, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(line);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    if (!line.empty() && line.back() == sep) out.emplace_back();
    return out;
}

long num(const std::string& s) {
    if (s.empty()) return -1;
    return std::strtol(s.c_str(), nullptr, 0);  // accepts 0x... (ip.id, fraghdr.ident)
}

// A fragmented datagram: version, src, dst, protocol, identification.
using FragId = std::tuple<int, std::string, std::string, long, long>;

}  // namespace

TsharkFrames tshark_frames(const fs::path& pcap, Millis timeout) {
    TsharkFrames out;
    std::vector<std::string> argv = {"tshark", "-n", "-r", pcap.string(), "-o",
                                     "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
                                     "-T", "fields", "-E", "occurrence=f", "-E", "separator=/t"};
    for (const char* f : kFields) {
        argv.emplace_back("-e");
        argv.emplace_back(f);
    }
    const CommandResult r = run_command(argv, timeout);
    if (!r.ok()) out.error = command_line(argv) + ": " + r.describe();
    std::map<FragId, std::pair<long, long>> firsts;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> c = split(line, '\t');
        c.resize(kColumns);
        TsharkFrame& f = out.frames.emplace_back();
        f.number = num(c[kNumber]);
        f.len = static_cast<uint64_t>(std::max(num(c[kFrameLen]), 0L));
        f.line = line;
        // The outer IP header: the first "ip"/"ipv6" layer.
        const std::vector<std::string> layers = split(c[kProtocols], ':');
        size_t i = 0;
        while (i < layers.size() && layers[i] != "ip" && layers[i] != "ipv6") ++i;
        if (i == layers.size()) continue;
        f.is_ip = true;
        f.version = layers[i] == "ip" ? 4 : 6;
        long frag_offset = 0, frag_proto = -1, frag_id = -1;
        if (f.version == 4) {
            f.proto = num(c[kIpProto]);
            f.src = c[kIpSrc];
            f.dst = c[kIpDst];
            frag_offset = num(c[kIpFragOffset]);
            frag_proto = f.proto;
            frag_id = num(c[kIpId]);
        } else {
            f.src = c[kIp6Src];
            f.dst = c[kIp6Dst];
            long nxt = num(c[kIp6Nxt]);
            for (int hops = 0; hops < 16; ++hops) {
                long following = -1;
                switch (nxt) {
                    case 0: following = num(c[kHopNxt]); break;
                    case 43: following = num(c[kRoutingNxt]); break;
                    case 44:
                        following = num(c[kFragNxt]);
                        frag_offset = num(c[kFragOffset]);
                        frag_proto = following;
                        frag_id = num(c[kFragIdent]);
                        break;
                    case 60: following = num(c[kDstoptsNxt]); break;
                    case 51: following = num(c[kAhNxt]); break;
                    default: break;
                }
                if (following < 0) break;
                nxt = following;
                if (frag_offset > 0) break;  // a later fragment: the chain stops here
            }
            f.proto = nxt;
        }
        // Ports only from the layer right after the outer IP and its extension headers.
        size_t t = i + 1;
        while (t < layers.size() && (layers[t].rfind("ipv6.", 0) == 0 || layers[t] == "ah")) ++t;
        const std::string next = t < layers.size() ? layers[t] : "";
        long sport = 0, dport = 0;
        if (next == "tcp") {
            sport = num(c[kTcpSport]), dport = num(c[kTcpDport]);
        } else if (next == "udp" || next == "udplite") {
            sport = num(c[kUdpSport]), dport = num(c[kUdpDport]);
        } else if (next == "sctp") {
            sport = num(c[kSctpSport]), dport = num(c[kSctpDport]);
        }
        sport = std::max(sport, 0L);
        dport = std::max(dport, 0L);
        // Later fragments: the ports of their first fragment (the meter's fragment cache does the
        // same); tshark without reassembly shows none on them.
        if (frag_id >= 0) {
            const FragId id{f.version, f.src, f.dst, frag_proto, frag_id};
            if (frag_offset == 0) {
                firsts[id] = {sport, dport};
            } else if (frag_offset > 0) {
                const auto it = firsts.find(id);
                if (it != firsts.end()) {
                    std::tie(sport, dport) = it->second;
                    f.ports_from_first_fragment = true;
                }
            }
        }
        f.sport = sport;
        f.dport = dport;
    }
    return out;
}

TsharkFlows tshark_flows(const fs::path& pcap, Millis timeout) {
    TsharkFlows out;
    const TsharkFrames t = tshark_frames(pcap, timeout);
    if (!t.error.empty()) {
        out.error = t.error;
        return out;
    }
    for (const TsharkFrame& f : t.frames) {
        ++out.frames;
        if (!f.is_ip) continue;
        if (f.ports_from_first_fragment) ++out.later_fragments_with_first;
        const auto tuple = canonical_tuple(static_cast<int>(f.proto), f.src, static_cast<unsigned>(f.sport), f.dst,
                                           static_cast<unsigned>(f.dport));
        if (!tuple || f.proto < 0) {
            out.error = "frame " + std::to_string(f.number) + ": cannot read tshark's IP fields: " + f.line;
            return out;
        }
        Volume& v = out.flows[*tuple];
        v.packets += 1;
        v.bytes += f.len;
        ++out.ip_frames;
    }
    return out;
}

// ---- A whole replay ------------------------------------------------------------------------------

namespace {
std::string tail_line(const std::string& s) {
    std::string t = s;
    while (!t.empty() && t.back() == '\n') t.pop_back();
    const auto nl = t.rfind('\n');
    return nl == std::string::npos ? t : t.substr(nl + 1);
}
}  // namespace

ReplayHarness::ReplayHarness(std::string_view name_prefix)
    : prefix_(name_prefix), dir_(std::string("angel-") + std::string(name_prefix)) {}

ReplayResult ReplayHarness::run(const ReplayOptions& o) {
    ReplayResult res;
    const std::string tag = "run" + std::to_string(runs_++);
    const fs::path d = dir_.path() / tag;
    fs::create_directories(d / "run");
    res.instance = unique_name(prefix_);
    ShmGuard shm(res.instance);
    res.config = d / "meter.conf";
    res.ctld_log = d / "ctld.stderr";
    res.sink_jsonl = d / "sink.jsonl";
    res.sink_stdout = d / "sink.stdout";
    res.sink_stderr = d / "sink.stderr";
    res.export_pcap = d / "export.pcap";

    // --idle is only a safety net: the harness stops the sink once it has every record.
    LocalSink local;
    if (std::string why = start_local_sink(local, d, "sink", 60); !why.empty()) {
        res.problems.push_back(why);
        return res;
    }
    Process& sink = local.proc;
    res.port = local.port;
    MeterConfig conf;
    conf.instance = res.instance;
    conf.runtime_dir = d / "run";
    conf.classifier_host = "127.0.0.1";
    conf.classifier_port = res.port;
    conf.extra = o.extra_config;
    write_file(res.config, conf.text());

    std::optional<LoopbackCapture> cap;
    if (o.capture_export) {
        cap.emplace(res.export_pcap, "udp port " + std::to_string(res.port), d / "tcpdump.stderr");
        if (!cap->wait_ready(Millis(10000))) {
            res.problems.push_back("tcpdump did not start capturing within 10 s: " + cap->log());
            return res;
        }
    }

    Process ctld({{binary("angel-ctld").string(), "-f", "-c", res.config.string(), "--replay",
                   o.pcap.string()},
                  {},
                  res.ctld_log,
                  {}});
    if (auto st = ctld.wait_for(o.ctld_timeout)) {
        res.ctld_status = *st;
    } else {
        res.ctld_timed_out = true;
        res.ctld_status = ctld.kill();
        res.problems.push_back("angel-ctld did not finish within " +
                               std::to_string(o.ctld_timeout.count()) + " ms (killed with its stages)");
    }
    res.ctld_stderr = read_file(res.ctld_log);
    res.stop_line = find_stop_line(res.ctld_stderr, res.instance);
    if (res.stop_line) res.counters = parse_counters(*res.stop_line);

    // Everything netd sent is on its way through loopback: wait (bounded) until the sink has
    // written every record and the capture holds every message, then stop both.
    if (res.stop_line) {
        const uint64_t records = res.counter("records_sent");
        const uint64_t messages = res.counter("messages");
        auto lines_written = [&] {
            const std::string s = read_file(res.sink_jsonl);
            return static_cast<uint64_t>(std::count(s.begin(), s.end(), '\n'));
        };
        if (!wait_until([&] { return lines_written() >= records || !sink.running(); }, Millis(10000)))
            res.problems.push_back("the sink wrote " + std::to_string(lines_written()) + " of " +
                                   std::to_string(records) + " records within 10 s");
        if (cap && !cap->wait_frames(messages, Millis(5000)))
            res.problems.push_back("the capture holds " + std::to_string(cap->frames()) + " of " +
                                   std::to_string(messages) + " messages after 5 s");
    }
    res.sink_status = sink.stop(SIGTERM, Millis(5000));
    if (cap) {
        cap->stop();
        res.export_frames = cap->frames();
        const auto dropped = cap->dropped_by_kernel();
        if (!dropped || *dropped != 0)
            res.problems.push_back("tcpdump lost packets (" + tail_line(cap->log()) + ")");
    }
    res.sink_lines = read_lines(res.sink_jsonl);
    res.sink_out = read_file(res.sink_stdout);
    res.sink_err = read_file(res.sink_stderr);
    if (fs::exists(ShmGuard::path_of(res.instance)))
        res.problems.push_back("ctld left its segment " + ShmGuard::path_of(res.instance).string());
    if (fs::exists(ShmGuard::path_of(res.instance).string() + ".ctl"))
        res.problems.push_back("ctld left its control object " + ShmGuard::path_of(res.instance).string() + ".ctl");
    return res;
}

}  // namespace angel::itest
