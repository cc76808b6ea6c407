// Logging for every process: "stage: message" lines on stderr in the foreground, syslog
// (facility daemon, ident = stage name, with the pid) when detached. One line is formatted in a
// stack buffer and written with a single write(2), so lines of several stages sharing a
// terminal do not interleave, and logging does not allocate.
#pragma once
#include <syslog.h>

#include <cstdarg>

namespace angel {

// stage_name: e.g. "angel-procd" (copied; at most 63 characters are kept).
// Until log_init is called, messages go to stderr under the name "angel".
void log_init(const char* stage_name, bool foreground);

// Messages less urgent than this syslog priority are dropped (default LOG_INFO;
// LOG_DEBUG shows everything, LOG_ERR only errors).
void log_set_level(int priority);
int log_level();

// True when logging to stderr.
bool log_foreground();

// printf-style; errno is preserved, so "%m" works after a failing call. A trailing newline in
// fmt is not needed (one is added on stderr; syslog adds none).
void log_err(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_notice(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// With an explicit syslog priority (LOG_ERR ... LOG_DEBUG).
void log_message(int priority, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmessage(int priority, const char* fmt, va_list ap) __attribute__((format(printf, 2, 0)));

}  // namespace angel
