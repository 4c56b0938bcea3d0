// vsnd-bench-vhost-user: the real vhost-user path, driver model in this process, vsnd-host in
// another, pinned to different cores.
//  1. Kick-to-completion round trip: one period-sized tx message at a time against
//     `vsnd-host --backend null --unpaced` (the message completes the instant it is copied), so the
//     time is the path itself: avail ring, kick eventfd, vsnd-host's event loop, chain walk,
//     copy, used ring, call eventfd, back here.
//  2. Streams per core: vsnd-host with the paced null backend (real time) and N 48 kHz stereo
//     output streams with 10 ms periods all playing; its CPU use, its wake-ups (context switches)
//     and the XRUN events it sends, for N from 1 to 256: the cost per stream should stay flat.
//  3. Guests: G vsnd-host processes (one per "VM", as each VM has its own), each serving a
//     front-end with K such streams, all playing at once for a fixed time: XRUNs, CPU per stream,
//     and each daemon's RSS before and after (bounded memory).
//  4. The floor: what one sleep and wake-up of an epoll loop on a 10 ms timer costs on this
//     machine, the least a device that wakes once per period can spend.
// Prints numbers; asserts nothing about speed.
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/vhost_user/frontend.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sched.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

using namespace vsnd;

namespace {

void pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

struct Host {
    pid_t pid = -1;
    std::filesystem::path socket;
    ~Host() {
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, nullptr, 0);
        }
    }
    // CPU time the host has used so far, in seconds.
    double cpu_seconds() const {
        std::ifstream f(fmt::format("/proc/{}/stat", pid));
        std::string s((std::istreambuf_iterator<char>(f)), {});
        auto rest = s.substr(s.rfind(')') + 2);
        std::istringstream in(rest);
        std::string field;
        std::vector<std::string> v;
        while (in >> field) v.push_back(field);
        return (std::stod(v[11]) + std::stod(v[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    // A /proc/PID/status field (kB for sizes), 0 if absent.
    long status(const std::string& key) const {
        std::ifstream f(fmt::format("/proc/{}/status", pid));
        std::string line;
        while (std::getline(f, line))
            if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
        return 0;
    }
    long wakeups() const { return status("voluntary_ctxt_switches") + status("nonvoluntary_ctxt_switches"); }
};

std::unique_ptr<Host> start_host(const std::string& binary, std::vector<std::string> args, int cpu) {
    auto h = std::make_unique<Host>();
    static int instance = 0;
    h->socket = std::filesystem::temp_directory_path() / fmt::format("vsnd-bench-{}-{}.sock", getpid(), ++instance);
    std::filesystem::remove(h->socket);
    args.insert(args.begin(), {binary, "--socket", h->socket.string(), "--log-level", "warn"});
    h->pid = fork();
    if (h->pid == 0) {
        pin_to_cpu(cpu);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(binary.c_str(), argv.data());
        _exit(127);
    }
    for (int i = 0; i < 200 && !std::filesystem::exists(h->socket); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return h;
}

std::unique_ptr<vhost_user::Frontend> connect(const Host& h, std::uint16_t queue_size) {
    vhost_user::FrontendOptions o;
    o.queue_size = queue_size;
    o.dma_bytes = 64u << 20;
    for (int i = 0; i < 100; ++i) {
        auto f = vhost_user::Frontend::connect(h.socket, o);
        if (f) return std::move(f).value();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return nullptr;
}

int round_trip(const std::string& host_bin, unsigned iterations) {
    auto host = start_host(host_bin, {"--backend", "null", "--unpaced", "--streams", "out:1"}, 0);
    auto fe = connect(*host, 64);
    if (!fe) { fmt::print(stderr, "cannot connect to vsnd-host\n"); return 1; }
    MonotonicClock clock;
    driver::SoundDriver drv(*fe, clock);
    if (auto r = drv.probe(); !r) { fmt::print(stderr, "{}\n", r.error().message); return 1; }
    fmt::print("kick-to-completion round trip (vsnd-host null --unpaced on CPU 0, driver model on CPU 1):\n");
    for (std::uint32_t period : {64u, 480u, 1920u}) {
        auto& s = drv.stream(0);
        if (!s.set_params({wire::PcmFormat::S16, 48000, 2, period, 4, 0}) || !s.prepare() || !s.start()) return 1;
        std::vector<std::uint8_t> buf(s.period_bytes());
        std::vector<double> us;
        for (unsigned i = 0; i < iterations + 100; ++i) {
            const auto done = s.periods_completed();
            const Nanos t0 = clock.now();
            s.write(buf);
            while (s.periods_completed() == done)
                if (!drv.wait(kNanosPerSecond)) { fmt::print(stderr, "no completion\n"); return 1; }
            if (i >= 100) us.push_back(static_cast<double>(clock.now() - t0) / 1000.0); // after warm-up
        }
        if (!s.stop() || !s.release()) return 1;
        std::sort(us.begin(), us.end());
        fmt::print("  period {:5} frames ({:5} B): median {:6.1f} us, p90 {:6.1f} us, p99 {:6.1f} us ({} messages)\n",
                   period, s.period_bytes(), us[us.size() / 2], us[us.size() * 9 / 10], us[us.size() * 99 / 100], us.size());
    }
    return 0;
}

int streams_per_core(const std::string& host_bin, std::vector<unsigned> counts, double seconds) {
    fmt::print("streams per core (vsnd-host null, paced in real time, on CPU 0; 48 kHz S16 stereo, 10 ms periods x 4):\n");
    fmt::print("  {:>7}  {:>10}  {:>14}  {:>12}  {:>14}  {:>11}\n", "streams", "host CPU", "per stream", "wake-ups/s",
               "CPU per wake", "XRUN events");
    for (unsigned n : counts) {
        auto host = start_host(host_bin, {"--backend", "null", "--streams", fmt::format("out:{}", n)}, 0);
        auto fe = connect(*host, 2048);
        if (!fe) { fmt::print(stderr, "cannot connect to vsnd-host\n"); return 1; }
        MonotonicClock clock;
        driver::SoundDriver drv(*fe, clock, {kNanosPerSecond, 4096, 64});
        if (auto r = drv.probe(); !r) { fmt::print(stderr, "{}\n", r.error().message); return 1; }
        std::vector<std::uint8_t> buf(1920);
        for (unsigned i = 0; i < n; ++i) {
            auto& s = drv.stream(i);
            if (!s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, wire::bit(wire::PcmFeature::EvtXruns)}) ||
                !s.prepare())
                return 1;
            s.write(buf);
            s.write(buf);
            if (!s.start()) return 1;
        }
        auto feed = [&] {
            for (unsigned i = 0; i < n; ++i)
                while (drv.stream(i).writable_bytes() >= buf.size()) drv.stream(i).write(buf);
        };
        auto run_for = [&](double secs) {
            const Nanos end = clock.now() + static_cast<Nanos>(secs * 1e9);
            while (clock.now() < end) {
                feed();
                drv.wait(10'000'000);
            }
        };
        run_for(0.5); // settle
        const std::size_t xruns_before = drv.events().size();
        const double cpu0 = host->cpu_seconds();
        const long wakes0 = host->wakeups();
        const Nanos t0 = clock.now();
        run_for(seconds);
        const double wall = static_cast<double>(clock.now() - t0) / 1e9;
        const double cpu = (host->cpu_seconds() - cpu0) / wall;
        const double wakes = static_cast<double>(host->wakeups() - wakes0) / wall;
        std::size_t xruns = 0;
        for (std::size_t i = xruns_before; i < drv.events().size(); ++i)
            if (drv.events()[i].type == wire::Code::EvtPcmXrun) ++xruns;
        fmt::print("  {:>7}  {:>9.2f}%  {:>9.1f} us/s  {:>12.0f}  {:>11.1f} us  {:>11}\n", n, cpu * 100, cpu * 1e6 / n, wakes,
                   wakes > 0 ? cpu * 1e6 / wakes : 0.0, xruns);
        for (unsigned i = 0; i < n; ++i) (void)drv.stream(i).stop();
    }
    return 0;
}

// G daemons with K streams each, every front-end driven by its own thread.
int guests(const std::string& host_bin, unsigned count, unsigned streams, double seconds) {
    fmt::print("guests: {} vsnd-host processes (null, paced; on CPU 0) x {} streams (48 kHz S16 stereo, 10 ms "
               "periods x 4), {} s, front-ends on CPU 1:\n", count, streams, seconds);
    std::vector<std::unique_ptr<Host>> hosts;
    for (unsigned g = 0; g < count; ++g)
        hosts.push_back(start_host(host_bin, {"--backend", "null", "--streams", fmt::format("out:{}", streams)}, 0));
    struct Result {
        std::size_t xruns = 0;
        std::uint64_t periods = 0;
        bool ok = false;
    };
    std::vector<Result> results(count);
    std::vector<long> rss_before(count), rss_after(count);
    std::vector<double> cpu0(count), cpu1(count);
    std::atomic<unsigned> ready{0};
    std::atomic<bool> go{false}, measuring{false};
    std::vector<std::thread> threads;
    for (unsigned g = 0; g < count; ++g)
        threads.emplace_back([&, g] {
            auto fe = connect(*hosts[g], 1024);
            if (!fe) { ++ready; return; }
            MonotonicClock clock;
            driver::SoundDriver drv(*fe, clock, {kNanosPerSecond, 4096, 64});
            if (!drv.probe()) { ++ready; return; }
            std::vector<std::uint8_t> buf(1920);
            for (unsigned i = 0; i < streams; ++i) {
                auto& s = drv.stream(i);
                if (!s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, wire::bit(wire::PcmFeature::EvtXruns)}) ||
                    !s.prepare()) { ++ready; return; }
            }
            ++ready;
            while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            for (unsigned i = 0; i < streams; ++i) {
                drv.stream(i).write(buf);
                drv.stream(i).write(buf);
                if (!drv.stream(i).start()) return;
            }
            std::size_t events_at_start = 0;
            bool counted = false;
            const Nanos end = clock.now() + static_cast<Nanos>((seconds + 1.0) * 1e9);
            while (clock.now() < end) {
                if (measuring && !counted) { events_at_start = drv.events().size(); counted = true; }
                for (unsigned i = 0; i < streams; ++i)
                    while (drv.stream(i).writable_bytes() >= buf.size()) drv.stream(i).write(buf);
                drv.wait(10'000'000);
            }
            for (std::size_t i = events_at_start; i < drv.events().size(); ++i)
                if (drv.events()[i].type == wire::Code::EvtPcmXrun) ++results[g].xruns;
            for (unsigned i = 0; i < streams; ++i) results[g].periods += drv.stream(i).periods_completed();
            results[g].ok = true;
            for (unsigned i = 0; i < streams; ++i) (void)drv.stream(i).stop();
        });
    while (ready < count) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (unsigned g = 0; g < count; ++g) rss_before[g] = hosts[g]->status("VmRSS");
    go = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1000)); // settle
    for (unsigned g = 0; g < count; ++g) cpu0[g] = hosts[g]->cpu_seconds();
    measuring = true;
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (unsigned g = 0; g < count; ++g) {
        cpu1[g] = hosts[g]->cpu_seconds();
        rss_after[g] = hosts[g]->status("VmRSS");
    }
    for (auto& t : threads) t.join();
    double cpu = 0;
    std::size_t xruns = 0;
    unsigned failed = 0;
    long rss_growth = 0, rss_max = 0;
    for (unsigned g = 0; g < count; ++g) {
        cpu += (cpu1[g] - cpu0[g]) / wall;
        xruns += results[g].xruns;
        failed += results[g].ok ? 0 : 1;
        rss_growth = std::max(rss_growth, rss_after[g] - rss_before[g]);
        rss_max = std::max(rss_max, rss_after[g]);
    }
    const unsigned total = count * streams;
    fmt::print("  {} streams: host CPU {:.1f}% of a core in all, {:.1f} us/s per stream; XRUN events {}; "
               "front-ends failed {}; RSS per daemon <= {} KiB, grew <= {} KiB while playing\n",
               total, cpu * 100, cpu * 1e6 / total, xruns, failed, rss_max, rss_growth);
    return failed ? 1 : 0;
}

// The least one sleep-and-wake of an epoll loop on a timer costs here, in CPU time.
void wake_floor() {
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    const int tf = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    itimerspec it{{0, 10'000'000}, {0, 10'000'000}};
    timerfd_settime(tf, 0, &it, nullptr);
    epoll_event ev{EPOLLIN, {}};
    epoll_ctl(ep, EPOLL_CTL_ADD, tf, &ev);
    timespec c0{}, c1{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    constexpr int kWakes = 200;
    for (int i = 0; i < kWakes; ++i) {
        std::uint64_t v;
        epoll_wait(ep, &ev, 1, -1);
        [[maybe_unused]] auto n = read(tf, &v, sizeof v);
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    const double us = ((c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec)) / 1e3 / kWakes;
    fmt::print("wake-up floor: an epoll loop on a 10 ms timer costs {:.1f} us of CPU per wake-up here "
               "({:.2f}% of a core at 100 wake-ups/s)\n", us, us * 100 / 1e4);
    close(tf);
    close(ep);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd vhost-user benchmarks (numbers only)"};
    std::string host_bin = VSND_HOST_BIN;
    unsigned iterations = 5000;
    double seconds = 3;
    std::vector<unsigned> counts{1, 2, 4, 8, 16, 32, 64, 128, 256};
    unsigned guest_count = 16, guest_streams = 16;
    app.add_option("--vsnd-host", host_bin, "vsnd-host binary")->capture_default_str();
    app.add_option("--iterations", iterations, "round trips per period size")->capture_default_str();
    app.add_option("--seconds", seconds, "measuring time per stream count, and for the guests")->capture_default_str();
    app.add_option("--streams", counts, "stream counts to try")->capture_default_str();
    app.add_option("--guests", guest_count, "vsnd-host processes in the guests run (0: skip it)")->capture_default_str();
    app.add_option("--guest-streams", guest_streams, "streams per guest")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    pin_to_cpu(1);
    wake_floor();
    if (int r = round_trip(host_bin, iterations)) return r;
    if (int r = streams_per_core(host_bin, counts, seconds)) return r;
    return guest_count ? guests(host_bin, guest_count, guest_streams, seconds) : 0;
}
