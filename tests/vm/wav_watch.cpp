// vsnd-wav-watch: records how a growing file (an audio backend's WAV output) grows over host
// CLOCK_MONOTONIC, until SIGTERM/SIGINT; then writes the CSV.
//
//   vsnd-wav-watch FILE OUT.csv [--interval-us N (default 1000)]
//
// It wakes on every inotify event in FILE's directory (IN_MODIFY follows each write(), so a
// size change is seen a few microseconds after the write) and in any case every --interval-us,
// stats FILE, and keeps a row whenever the size changed:
//   prev_ns,ns,size,how
// The change happened in (prev_ns, ns]; `how` is "inotify" or "timer" (what woke us). Prints
// "ready" on stdout once the watch is in place, and a one-line summary on stderr at the end.

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vsnd/timing/clock.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

std::uint64_t now_ns() { return static_cast<std::uint64_t>(vsnd::MonotonicClock{}.now()); }

struct Row {
    std::uint64_t prev_ns, ns;
    long long size;  // -1: the file does not exist
    bool inotify;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s FILE OUT.csv [--interval-us N]\n", argv[0]);
        return 2;
    }
    const std::filesystem::path file = std::filesystem::absolute(argv[1]);
    const std::string out_path = argv[2];
    unsigned interval_us = 1000;
    for (int i = 3; i < argc; ++i) {
        if (std::string(argv[i]) == "--interval-us" && i + 1 < argc) {
            interval_us = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
        } else {
            std::fprintf(stderr, "vsnd-wav-watch: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (interval_us == 0) interval_us = 1000;

    // Signals are blocked except inside ppoll, so a stop request cannot be lost between checks.
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaction(s, &sa, nullptr);

    const int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ifd < 0 || inotify_add_watch(ifd, file.parent_path().c_str(),
                                     IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE) < 0) {
        std::fprintf(stderr, "vsnd-wav-watch: inotify on %s: %s\n", file.parent_path().c_str(), std::strerror(errno));
        return 1;
    }
    std::vector<Row> rows;
    rows.reserve(1 << 16);
    long long last = -2;
    std::uint64_t prev = now_ns();
    std::uint64_t wakes = 0, events = 0;
    std::printf("ready\n");
    std::fflush(stdout);

    const timespec tick{static_cast<time_t>(interval_us / 1'000'000), static_cast<long>(interval_us % 1'000'000) * 1000};
    alignas(inotify_event) char buf[4096];
    for (;;) {
        const bool last_round = g_stop;  // after a stop request: one more look, then exit
        pollfd pfd{ifd, POLLIN, 0};
        const int r = last_round ? 0 : ppoll(&pfd, 1, &tick, &waitmask);
        bool by_inotify = false;
        if (r > 0) {
            for (;;) {
                const ssize_t n = ::read(ifd, buf, sizeof buf);
                if (n <= 0) break;
                for (ssize_t off = 0; off < n;) {
                    const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
                    if (ev->len && file.filename() == ev->name) by_inotify = true, ++events;
                    off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
                }
            }
        }
        ++wakes;
        struct stat st {};
        const long long size = ::stat(file.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : -1;
        const std::uint64_t t = now_ns();
        if (size != last) {
            rows.push_back({prev, t, size, by_inotify});
            last = size;
        }
        prev = t;
        if (last_round) break;
    }

    std::FILE* out = std::fopen(out_path.c_str(), "w");
    if (!out) {
        std::fprintf(stderr, "vsnd-wav-watch: %s: %s\n", out_path.c_str(), std::strerror(errno));
        return 1;
    }
    std::fprintf(out, "# vsnd-wav-watch %s interval_us %u\nprev_ns,ns,size,how\n", file.c_str(), interval_us);
    for (const Row& r : rows)
        std::fprintf(out, "%llu,%llu,%lld,%s\n", static_cast<unsigned long long>(r.prev_ns),
                     static_cast<unsigned long long>(r.ns), r.size, r.inotify ? "inotify" : "timer");
    const bool ok = std::fclose(out) == 0;
    std::fprintf(stderr, "vsnd-wav-watch: %zu size changes, %llu wake-ups, %llu inotify events for %s\n", rows.size(),
                 static_cast<unsigned long long>(wakes), static_cast<unsigned long long>(events),
                 file.filename().c_str());
    return ok ? 0 : 1;
}
