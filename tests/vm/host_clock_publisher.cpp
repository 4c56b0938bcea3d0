// vsnd-host-clock: publishes the host's CLOCK_MONOTONIC into a small shared file (seqlock page,
// guest/src/host_clock_layout.hpp) every --period-us, until SIGTERM/SIGINT. QEMU maps the file
// into the test guest as an ivshmem-plain BAR (vm-images/run-vm --host-clock FILE), so the guest
// can stamp its events with host time.
//
// Cheap by design: one clock_gettime and three stores per period, absolute clock_nanosleep in
// between, timer slack 1 ns (the default 50 us slack would double the period). On exit it prints
// one line with the update count and how late the wake-ups were.

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "host_clock_layout.hpp"

#include "vsnd/timing/clock.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

std::uint64_t now_ns() { return static_cast<std::uint64_t>(vsnd::MonotonicClock{}.now()); }

[[noreturn]] void usage(const char* argv0) {
    std::fprintf(stderr, "usage: %s FILE [--period-us N (default 50)]\n", argv0);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) usage(argv[0]);
    const char* path = argv[1];
    unsigned period_us = 50;
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--period-us" && i + 1 < argc)
            period_us = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
        else
            usage(argv[0]);
    }
    if (period_us == 0 || period_us > 1'000'000) usage(argv[0]);

    const int fd = ::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(vsnd::hostclock::kPageBytes)) != 0) {
        std::fprintf(stderr, "vsnd-host-clock: %s: %s\n", path, std::strerror(errno));
        return 1;
    }
    void* mem = ::mmap(nullptr, vsnd::hostclock::kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (mem == MAP_FAILED) {
        std::fprintf(stderr, "vsnd-host-clock: mmap %s: %s\n", path, std::strerror(errno));
        return 1;
    }
    auto* page = static_cast<vsnd::hostclock::Page*>(mem);
    std::memset(page, 0, vsnd::hostclock::kPageBytes);
    const std::uint64_t period = period_us * 1000ull;
    page->period_ns = period;
    page->version = vsnd::hostclock::kVersion;
    vsnd::hostclock::begin_publish(page);
    vsnd::hostclock::end_publish(page, now_ns());
    __atomic_store_n(&page->magic, vsnd::hostclock::kMagic, __ATOMIC_RELEASE);  // the page is live

    ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);

    // Wake-up lateness statistics: max, and how many updates came > 2 periods / > 1 ms late.
    std::uint64_t updates = 0, late_2p = 0, late_1ms = 0, max_late = 0;
    std::uint64_t next = now_ns();
    const std::uint64_t t_begin = next;
    while (!g_stop) {
        next += period;
        timespec ts{};
        ts.tv_sec = static_cast<time_t>(next / 1'000'000'000u);
        ts.tv_nsec = static_cast<long>(next % 1'000'000'000u);
        if (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) continue;
        vsnd::hostclock::begin_publish(page);  // readers now wait for the value ...
        const std::uint64_t t = now_ns();        // ... read from the clock only now
        vsnd::hostclock::end_publish(page, t);
        ++updates;
        const std::uint64_t late = t > next ? t - next : 0;
        max_late = std::max(max_late, late);
        late_2p += late > 2 * period;
        late_1ms += late > 1'000'000;
        if (t > next + period) next = t;  // fell behind (host busy): resume from now, do not burst
    }
    const double secs = static_cast<double>(now_ns() - t_begin) / 1e9;
    std::fprintf(stderr,
                 "vsnd-host-clock: %llu updates in %.1f s (every %u us): %llu woke > %u us late, %llu > 1 ms late, "
                 "latest %.3f ms\n",
                 static_cast<unsigned long long>(updates), secs, period_us, static_cast<unsigned long long>(late_2p),
                 2 * period_us, static_cast<unsigned long long>(late_1ms), static_cast<double>(max_late) / 1e6);
    return 0;
}
