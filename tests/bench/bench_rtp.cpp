// vsnd-bench-rtp: the RTP receiver's numbers.
//  receive  packets per second the receive path sustains on one core (parse, sequence and jitter
//           buffer, render with the resampler or bit-exact), 48 kHz stereo L16 1 ms packets, and
//           the share of a core one real-time stream costs at that speed. Instruction counts for
//           the same work: run it under `valgrind --tool=callgrind`.
//  drift    the drift loop's settling time and residual error at +-100..1000 ppm, on the
//           deterministic rig (simulated clock, paced sink): time until the latency stays within
//           0.1 ms of the target and the rate estimate within 1 ppm of the truth.
// Prints numbers; asserts nothing.
#include "../rtp/scenario_rig.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <ctime>

using namespace vsnd;
using namespace vsnd::rtp;
using namespace vsnd::rtp::test;

namespace {

double cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void receive(double seconds, DriftCorrection drift, unsigned frames_per_packet) {
    GeneratorOptions g;
    g.format = PayloadFormat{Encoding::L16, 48000, 2, 96};
    g.frames_per_packet = frames_per_packet;
    g.signal = audio::SignalKind::Sine;
    // Pre-built packets (the sender's cost is not the receiver's).
    const std::size_t n = 20000;
    StreamGenerator gen(g, 0);
    std::vector<std::vector<std::uint8_t>> packets;
    for (std::size_t i = 0; i < n; ++i) {
        auto p = gen.next();
        packets.emplace_back(p.begin(), p.end());
    }
    ReceiverOptions ro;
    ro.format = g.format;
    ro.drift = drift;
    RtpReceiver rx(ro);
    std::vector<std::int32_t> out(frames_per_packet * 2);
    // Simulated time runs with the packets: each packet arrives, then its frames are rendered.
    const Nanos step = static_cast<Nanos>(frames_per_packet) * kNanosPerSecond / 48000;
    Nanos now = kNanosPerSecond;
    std::uint64_t done = 0;
    const double c0 = cpu_seconds();
    const auto w0 = std::chrono::steady_clock::now();
    double c = c0;
    std::uint32_t ts_base = 0;
    while ((c = cpu_seconds()) - c0 < seconds) {
        for (std::size_t i = 0; i < n; ++i) {
            auto& p = packets[i];
            // Later laps continue the sequence and timeline.
            store_be16(&p[2], static_cast<std::uint16_t>(done + i));
            store_be32(&p[4], ts_base + static_cast<std::uint32_t>(i * frames_per_packet));
            rx.on_packet(p, now);
            rx.render(out, now, 960);
            now += step;
        }
        ts_base += static_cast<std::uint32_t>(n * frames_per_packet);
        done += n;
    }
    const double cpu = c - c0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    const double pps = done / cpu;
    const double real_time_pps = 48000.0 / frames_per_packet;
    fmt::print("receive ({}, {} frames/packet): {:.0f} packets/s on one core ({:.1f} M frames/s); one real-time "
               "stream = {:.3f} % of a core; {:.2f} s CPU over {:.2f} s wall; underruns {}, concealed {}\n",
               drift == DriftCorrection::Resample ? "resample" : drift == DriftCorrection::Slip ? "slip" : "bit-exact",
               frames_per_packet, pps, pps * frames_per_packet / 1e6, 100.0 * real_time_pps / pps, cpu, wall,
               rx.counters().underruns, rx.counters().concealed_frames);
}

void drift(double ppm, bool sink_side) {
    Scenario sc;
    sc.sender.format = PayloadFormat{Encoding::L16, 48000, 2, 96};
    sc.sender.signal = audio::SignalKind::Silence;
    sc.receiver.format = sc.sender.format;
    sc.receiver.drift = DriftCorrection::Resample;
    (sink_side ? sc.sink.ppm : sc.sender.ppm) = ppm;
    sc.duration = 120 * kSec;
    auto o = run(sc);
    const double truth = sink_side ? ((1 / (1 + ppm * 1e-6)) - 1) * 1e6 : ppm;
    // Settled: from this sample on, |error| < 0.1 ms and |rate - truth| < 1 ppm.
    std::optional<double> settled;
    double worst_err = 0, worst_ppm = 0;
    for (std::size_t i = o.samples.size(); i-- > 0;) {
        const auto& s = o.samples[i].status;
        if (!s.latency_s || std::abs(s.error_s) >= 1e-4 || std::abs(s.rate_ppm - truth) >= 1) break;
        settled = static_cast<double>(o.samples[i].when - o.samples.front().when) / 1e9;
    }
    for (const auto& s : o.samples)
        if (s.when - o.samples.front().when > 60 * kSec && s.status.latency_s) {
            worst_err = std::max(worst_err, std::abs(s.status.error_s));
            worst_ppm = std::max(worst_ppm, std::abs(s.status.rate_ppm - truth));
        }
    fmt::print("drift {:+6.0f} ppm ({}): settled (0.1 ms, 1 ppm) after {} s; after 60 s worst |error| {:.4f} ms, "
               "worst |rate error| {:.3f} ppm; underruns {}, resyncs {}\n",
               ppm, sink_side ? "sink" : "sender", settled ? fmt::format("{:.1f}", *settled) : std::string("never"),
               worst_err * 1e3, worst_ppm, o.counters.underruns, o.counters.resyncs);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd-bench-rtp: the RTP receiver's throughput and drift loop figures"};
    double seconds = 2;
    app.add_option("--seconds", seconds, "CPU seconds per receive run")->capture_default_str();
    auto* rcv = app.add_subcommand("receive", "packets per second of the receive path on one core");
    auto* dr = app.add_subcommand("drift", "drift loop settling time and residual at +-100..1000 ppm");
    app.require_subcommand(0, 1);
    CLI11_PARSE(app, argc, argv);
    const bool all = !rcv->parsed() && !dr->parsed();
    if (all || rcv->parsed()) {
        for (unsigned f : {48u, 192u}) {
            receive(seconds, DriftCorrection::Resample, f);
            receive(seconds, DriftCorrection::Off, f);
        }
    }
    if (all || dr->parsed()) {
        for (double p : {100.0, -100.0, 300.0, -300.0, 1000.0, -1000.0}) drift(p, false);
        for (double p : {300.0, -300.0}) drift(p, true);
    }
    return 0;
}
