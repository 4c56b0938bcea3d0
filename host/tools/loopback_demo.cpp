// vsnd-loopback-demo: the driver model plays a test signal through real split virtqueues in
// shared memory into the device model, which runs on its own thread on a Boost.Asio loop in real
// time and writes what its WAV backend plays. Then the WAV is checked bit-exact against the
// signal, and the driver's playback clock is compared with when each frame was really played.
#include "vsnd/audio/test_signal.hpp"
#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/transport/device_runner.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <thread>

using namespace vsnd;

namespace {

std::optional<wire::PcmFormat> parse_format(const std::string& s) {
    if (s == "S16") return wire::PcmFormat::S16;
    if (s == "S24") return wire::PcmFormat::S24;
    if (s == "S32") return wire::PcmFormat::S32;
    if (s == "FLOAT") return wire::PcmFormat::Float;
    return std::nullopt;
}

int fail(const std::string& msg) {
    fmt::print(stderr, "vsnd-loopback-demo: {}\n", msg);
    return 1;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Plays a test signal from the vsnd driver model through virtqueues into the device model's WAV backend"};
    double seconds = 2.0;
    std::uint32_t rate = 48000, period_frames = 480, periods = 8;
    unsigned channels = 2;
    std::string format = "S16", policy_name = "played", out_dir = "vsnd-demo-out";
    app.add_option("--seconds", seconds, "how much audio to play")->check(CLI::Range(0.1, 600.0));
    app.add_option("--rate", rate, "sample rate (Hz)");
    app.add_option("--channels", channels, "channels")->check(CLI::Range(1, 8));
    app.add_option("--format", format, "S16, S24, S32 or FLOAT");
    app.add_option("--period", period_frames, "guest period (frames)")->check(CLI::Range(16u, 65536u));
    app.add_option("--periods", periods, "guest ring size (periods)")->check(CLI::Range(2u, 64u));
    app.add_option("--policy", policy_name, "completion policy: played or consumed");
    app.add_option("--out", out_dir, "directory for the WAV file");
    CLI11_PARSE(app, argc, argv);

    const auto fmt_code = parse_format(format);
    if (!fmt_code) return fail("unknown format " + format);
    if (policy_name != "played" && policy_name != "consumed") return fail("policy must be played or consumed");
    const auto policy = policy_name == "played" ? device::CompletionPolicy::Played : device::CompletionPolicy::Consumed;
    std::filesystem::create_directories(out_dir);

    MonotonicClock clock;
    transport::LoopbackTransport link;
    backends::WavBackend backend(clock, out_dir, {});
    std::filesystem::remove(backend.output_path(0));
    device::SoundDevice device(device::Topology::standard(1, 1), backend, clock, policy);
    link.publish_config(device.config(), device.device_features());
    device.set_logger([](const std::string& m) { fmt::print(stderr, "device: {}\n", m); });

    // Driver end first: it owns and initialises the rings the device then looks at.
    transport::LoopbackDriverEnd driver_end(link, clock);
    transport::LoopbackDeviceEnd device_end(link, device);
    boost::asio::io_context io;
    transport::DeviceRunner runner(io, device_end);
    runner.start();
    std::thread device_thread([&] { io.run(); });
    auto stop_device = [&] {
        boost::asio::post(io, [&] { runner.stop(); io.stop(); });
        device_thread.join();
    };

    driver::SoundDriver drv(driver_end, clock);
    if (auto r = drv.probe(); !r) { stop_device(); return fail(r.error().message); }
    auto& s = drv.stream(0);
    const driver::PcmConfig cfg{*fmt_code, rate, static_cast<std::uint8_t>(channels), period_frames, periods, 0};
    if (auto r = s.set_params(cfg); !r) { stop_device(); return fail(r.error().message); }
    if (auto r = s.prepare(); !r) { stop_device(); return fail(r.error().message); }

    audio::TestSignal signal(*fmt_code, channels);
    const std::uint64_t total = static_cast<std::uint64_t>(seconds * rate) / period_frames * period_frames;
    std::vector<std::uint8_t> buf(s.period_bytes());
    struct Sample { Nanos at; double estimate; };
    std::vector<Sample> samples;
    std::uint64_t written = 0, seen = 0;
    bool started = false;
    const Nanos t_start = clock.now();
    while (written < total || s.in_flight()) {
        if (written < total && s.writable_bytes() >= buf.size()) {
            signal.fill(buf, written);
            written += s.write(buf) / s.frame_bytes();
            if (!started && written >= 2ull * period_frames) {
                if (auto r = s.start(); !r) { stop_device(); return fail(r.error().message); }
                started = true;
            }
            continue;
        }
        if (!drv.wait(kNanosPerSecond)) { stop_device(); return fail("device stopped answering"); }
        if (s.periods_completed() != seen && s.clock().valid()) {
            seen = s.periods_completed();
            const Nanos now = clock.now();
            // Where the clock says playback is now and half a period from now.
            for (Nanos at : {now, now + static_cast<Nanos>(period_frames) * kNanosPerSecond / rate / 2})
                samples.push_back({at, *s.clock().frames_at(at)});
        }
    }
    const Nanos t_end = clock.now();
    const auto last_latency = s.last_latency_bytes();
    if (auto r = s.stop(); !r) { stop_device(); return fail(r.error().message); }
    if (auto r = s.release(); !r) { stop_device(); return fail(r.error().message); }
    const auto stats = device.stats(0);
    stop_device();

    // What was played, exactly?
    backend.flush();
    auto reader = audio::WavFileReader::open(backend.output_path(0));
    if (!reader) return fail(reader.error());
    device::StreamFormat sf{wire::Direction::Output, *fmt_code, rate, static_cast<std::uint8_t>(channels), 0, 0};
    const auto played = (*reader)->read_all(sf.spec());
    const auto mismatch = signal.compare(played, 0);
    const std::uint64_t played_frames = played.size() / sf.frame_bytes();

    // How far the driver's clock was from the frames' real playback times (after 0.5 s to lock).
    const auto record = backend.record(0);
    std::vector<double> err;
    for (const auto& smp : samples)
        if (smp.at > t_start + kNanosPerSecond / 2 && smp.at < t_end - 50'000'000)
            err.push_back(std::abs(smp.estimate - record->frames_audible_at(smp.at)) * 1000.0 / rate);
    std::sort(err.begin(), err.end());

    fmt::print("vsnd loopback demo: {} {} Hz {} ch, period {} frames x {}, completion policy '{}'\n", format, rate,
               channels, period_frames, periods, policy_name);
    fmt::print("  frames written by the driver : {}\n", total);
    fmt::print("  frames played into the WAV   : {}  ({})\n", played_frames, backend.output_path(0).string());
    fmt::print("  periods completed            : {}  (device: {} messages, {} xruns, {} I/O errors)\n",
               s.periods_completed(), stats.messages_completed, stats.xruns, stats.io_errors);
    fmt::print("  last latency_bytes           : {}\n", last_latency);
    fmt::print("  wall time                    : {:.3f} s for {:.3f} s of audio\n", (t_end - t_start) / 1e9,
               static_cast<double>(total) / rate);
    if (!err.empty())
        fmt::print("  playback clock error         : median {:.3f} ms, 95% {:.3f} ms, max {:.3f} ms over {} readings\n",
                   err[err.size() / 2], err[err.size() * 95 / 100], err.back(), err.size());
    if (played_frames != total || mismatch) {
        fmt::print("  RESULT: FAILED - {}\n", mismatch ? fmt::format("first wrong frame {}", *mismatch)
                                                     : fmt::format("{} frames missing", total - played_frames));
        return 1;
    }
    fmt::print("  RESULT: bit-exact\n");
    return 0;
}
