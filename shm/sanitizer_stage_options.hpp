// Included once by each stage's main.cpp. In a sanitizer build, LeakSanitizer's exit-time
// check stops the process's threads with ptrace and reads /proc: neither exists in a stage's
// jail under its seccomp filter, so the check would kill the stage (SIGSYS) at every exit.
// Stages leave leak checking to the unit tests, which run the same code unsandboxed.
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ANGEL_STAGE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ANGEL_STAGE_ASAN 1
#endif

#ifdef ANGEL_STAGE_ASAN
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif
