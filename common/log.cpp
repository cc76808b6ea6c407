// See log.hpp. State is a few plain globals set once at start (log_init runs before a stage
// starts threads); the level is atomic so it may change at run time (reload).
#include "common/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace angel {
namespace {

constexpr size_t kNameMax = 64;
constexpr size_t kLineMax = 2048;  // longer messages are cut and end with "..."

char g_stage[kNameMax] = "angel";  // also openlog's ident, which syslog keeps a pointer to
bool g_foreground = true;
bool g_syslog_open = false;
std::atomic<int> g_level{LOG_INFO};

void write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;  // nowhere left to report a failing stderr
        p += w;
        n -= static_cast<size_t>(w);
    }
}

}  // namespace

void log_init(const char* stage_name, bool foreground) {
    std::snprintf(g_stage, sizeof g_stage, "%s", stage_name ? stage_name : "angel");
    g_foreground = foreground;
    if (g_syslog_open) {
        closelog();
        g_syslog_open = false;
    }
    if (!foreground) {
        // LOG_NDELAY opens the socket now, before a stage drops privileges or chroots.
        openlog(g_stage, LOG_PID | LOG_NDELAY, LOG_DAEMON);
        g_syslog_open = true;
    }
}

void log_set_level(int priority) { g_level.store(priority, std::memory_order_relaxed); }
int log_level() { return g_level.load(std::memory_order_relaxed); }
bool log_foreground() { return g_foreground; }

void log_vmessage(int priority, const char* fmt, va_list ap) {
    if (priority > g_level.load(std::memory_order_relaxed)) return;
    const int saved_errno = errno;
    char line[kLineMax];
    size_t used = 0;
    if (g_foreground) {
        const int n = std::snprintf(line, sizeof line, "%s: ", g_stage);
        used = n > 0 ? static_cast<size_t>(n) : 0;
    }
    errno = saved_errno;  // for %m
    const int n = std::vsnprintf(line + used, sizeof line - used, fmt, ap);
    if (n > 0) used += static_cast<size_t>(n);
    if (used >= sizeof line - 1) {  // truncated: mark it, leaving room for the newline
        used = sizeof line - 2;
        std::memcpy(line + used - 3, "...", 3);
    }
    while (used > 0 && line[used - 1] == '\n') --used;
    if (g_foreground) {
        line[used++] = '\n';
        write_all(STDERR_FILENO, line, used);
    } else {
        line[used] = '\0';
        syslog(priority, "%s", line);
    }
    errno = saved_errno;
}

void log_message(int priority, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmessage(priority, fmt, ap);
    va_end(ap);
}

#define ANGEL_LOG_AT(name, priority)         \
    void name(const char* fmt, ...) {        \
        va_list ap;                          \
        va_start(ap, fmt);                   \
        log_vmessage(priority, fmt, ap);     \
        va_end(ap);                          \
    }

ANGEL_LOG_AT(log_err, LOG_ERR)
ANGEL_LOG_AT(log_warn, LOG_WARNING)
ANGEL_LOG_AT(log_notice, LOG_NOTICE)
ANGEL_LOG_AT(log_info, LOG_INFO)
ANGEL_LOG_AT(log_debug, LOG_DEBUG)

#undef ANGEL_LOG_AT

}  // namespace angel
