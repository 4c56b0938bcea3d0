// vsnd-bench-vhost-user: the real vhost-user path, driver model in this process, vsnd-host in
// another, pinned to different cores.
//  1. Kick-to-completion round trip: one period-sized tx message at a time against
//     `vsnd-host --backend null --unpaced` (the message completes the instant it is copied), so the
//     time is the path itself: avail ring, kick eventfd, vsnd-host's event loop, chain walk,
//     copy, used ring, call eventfd, back here.
//  2. Streams per core: vsnd-host with the paced null backend (real time) and N 48 kHz stereo
//     output streams with 10 ms periods all playing; its CPU use and the XRUN events it sends.
// Prints numbers; asserts nothing about speed.
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/vhost_user/frontend.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
};

std::unique_ptr<Host> start_host(const std::string& binary, std::vector<std::string> args, int cpu) {
    auto h = std::make_unique<Host>();
    h->socket = std::filesystem::temp_directory_path() / fmt::format("vsnd-bench-{}.sock", getpid());
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
    fmt::print("  {:>7}  {:>12}  {:>16}  {:>12}\n", "streams", "host CPU", "per stream", "XRUN events");
    for (unsigned n : counts) {
        auto host = start_host(host_bin, {"--backend", "null", "--streams", fmt::format("out:{}", n)}, 0);
        auto fe = connect(*host, 1024);
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
        const Nanos t0 = clock.now();
        run_for(seconds);
        const double wall = static_cast<double>(clock.now() - t0) / 1e9;
        const double cpu = (host->cpu_seconds() - cpu0) / wall;
        std::size_t xruns = 0;
        for (std::size_t i = xruns_before; i < drv.events().size(); ++i)
            if (drv.events()[i].type == wire::Code::EvtPcmXrun) ++xruns;
        fmt::print("  {:>7}  {:>11.1f}%  {:>13.1f} us/s  {:>12}\n", n, cpu * 100, cpu * 1e6 / n, xruns);
        for (unsigned i = 0; i < n; ++i) (void)drv.stream(i).stop();
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd vhost-user benchmarks (numbers only)"};
    std::string host_bin = VSND_HOST_BIN;
    unsigned iterations = 5000;
    double seconds = 3;
    std::vector<unsigned> counts{1, 8, 32, 64, 128};
    app.add_option("--vsnd-host", host_bin, "vsnd-host binary")->capture_default_str();
    app.add_option("--iterations", iterations, "round trips per period size")->capture_default_str();
    app.add_option("--seconds", seconds, "measuring time per stream count")->capture_default_str();
    app.add_option("--streams", counts, "stream counts to try")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    pin_to_cpu(1);
    if (int r = round_trip(host_bin, iterations)) return r;
    return streams_per_core(host_bin, counts, seconds);
}
