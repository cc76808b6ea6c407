// Test-only LD_PRELOAD library: makes one stage of a running meter call something outside its
// seccomp allow-list, to show that the filter kills it and ctld restarts it with backoff.
// ANGEL_TEST_FORBIDDEN_CALL=<program name> (e.g. angel-procd) selects the victim; every other
// process that loads the library (ctld, the other stages) is left alone. A thread started in
// the library's constructor (before the stage sandboxes itself; clone is not on any list)
// waits 1.5 s, by which time the stage runs under its filter, then calls ptrace.
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <pthread.h>

namespace {

void* call_later(void*) {
    timespec ts{1, 500'000'000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    syscall(SYS_ptrace, 0, 0, 0, 0);
    return nullptr;
}

__attribute__((constructor)) void start() {
    const char* victim = std::getenv("ANGEL_TEST_FORBIDDEN_CALL");
    if (!victim || std::strcmp(victim, program_invocation_short_name) != 0) return;
    pthread_t t;
    if (pthread_create(&t, nullptr, call_later, nullptr) == 0) pthread_detach(t);
}

}  // namespace
