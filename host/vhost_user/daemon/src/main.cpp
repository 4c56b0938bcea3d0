// vsnd-host: the virtio-snd device as a vhost-user backend daemon for QEMU's
// `-device vhost-user-snd-pci`. Serves one front-end at a time on a Unix socket and the next one
// after it disconnects, until SIGINT/SIGTERM.
#include "vsnd/backends/null_backend.hpp"
#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/vhost_user/backend.hpp"
#include "vsnd/vhost_user/topology_spec.hpp"

#include "vsnd/backends/alsa_backend.hpp"

#include <alsa/asoundlib.h>

#include <CLI/CLI.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <filesystem>

using namespace vsnd;

namespace {

int fail(const std::string& msg) {
    std::fprintf(stderr, "vsnd-host: %s\n", msg.c_str());
    return 1;
}

extern "C" void quiet_alsa(const char*, int, const char*, int, const char*, ...) {}

// A missing or busy device is reported at start, not at the guest's first PREPARE.
std::string probe_alsa(const std::string& name, bool playback) {
    snd_pcm_t* pcm = nullptr;
    snd_lib_error_set_handler(quiet_alsa); // our one line says it all
    const int rc = snd_pcm_open(&pcm, name.c_str(), playback ? SND_PCM_STREAM_PLAYBACK : SND_PCM_STREAM_CAPTURE,
                                SND_PCM_NONBLOCK);
    snd_lib_error_set_handler(nullptr);
    if (rc < 0) return fmt::format("ALSA device '{}' cannot be opened for {}: {}", name, playback ? "playback" : "capture",
                                   snd_strerror(rc));
    snd_pcm_close(pcm);
    return {};
}

// --backend wav without --capture-wav: playback into WAV files, capture of silence.
class WavOutNullIn final : public device::AudioBackend {
public:
    WavOutNullIn(const Clock& clock, const std::filesystem::path& dir) : wav_(clock, dir, {}), null_(clock) {}
    std::string name() const override { return "wav"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t id,
                                                                       const device::StreamFormat& fmt) override {
        return fmt.direction == wire::Direction::Output ? wav_.open(id, fmt) : null_.open(id, fmt);
    }

private:
    backends::WavBackend wav_;
    backends::NullBackend null_;
};

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd-host: virtio-snd vhost-user backend for QEMU's vhost-user-snd-pci"};
    std::string socket_path, backend_name = "null", device_name = "default", wav_dir = ".", capture_wav,
                policy_name = "played", log_level = "info";
    vhost_user::TopologySpec spec;
    app.add_option("--socket", socket_path, "Unix socket to listen on (QEMU: -chardev socket,path=...)")->required();
    app.add_option("--backend", backend_name, "audio backend: null (discard playback, capture silence), wav, alsa")
        ->check(CLI::IsMember({"null", "wav", "alsa"}))
        ->capture_default_str();
    bool unpaced = false;
    app.add_flag("--unpaced", unpaced, "null backend: play everything the instant it arrives (benchmarks)");
    app.add_option("--streams", spec.streams, "PCM streams in order, e.g. out:1,in:1")->capture_default_str();
    app.add_option("--formats", spec.formats, "sample formats offered: S16,S24,S32,FLOAT,U8")->capture_default_str();
    app.add_option("--rates", spec.rates, "rates offered: a range (8000-192000) or a list (44100,48000)")
        ->capture_default_str();
    app.add_option("--channels", spec.channels, "channel range, e.g. 1-8 or 2")->capture_default_str();
    app.add_option("--device", device_name, "ALSA PCM (--backend alsa)")->capture_default_str();
    app.add_option("--wav-dir", wav_dir, "directory for stream-<id>.wav (--backend wav); created if missing")
        ->capture_default_str();
    app.add_option("--capture-wav", capture_wav, "WAV file capture streams read (--backend wav; default: silence)");
    app.add_option("--policy", policy_name, "complete playback messages when played or when consumed")
        ->check(CLI::IsMember({"played", "consumed"}))
        ->capture_default_str();
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
        ->capture_default_str();
    app.set_version_flag("--version", std::string("vsnd-host ") + VSND_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "vsnd-host: %s (see --help)\n", e.what());
        return 2;
    }

    auto log = spdlog::stderr_color_mt("vsnd-host");
    log->set_level(spdlog::level::from_str(log_level));
    log->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

    if (unpaced && backend_name != "null") return fail("--unpaced needs --backend null");
    auto topology = vhost_user::make_topology(spec);
    if (!topology) return fail(topology.error());
    bool outputs = false, inputs = false;
    for (const auto& s : topology->streams) (s.direction == wire::Direction::Output ? outputs : inputs) = true;

    MonotonicClock clock;
    std::unique_ptr<device::AudioBackend> backend;
    if (backend_name == "null") {
        backend = std::make_unique<backends::NullBackend>(clock, backends::PacedTiming{}, unpaced);
    } else if (backend_name == "wav") {
        std::error_code ec;
        std::filesystem::create_directories(wav_dir, ec);
        if (ec || !std::filesystem::is_directory(wav_dir))
            return fail(fmt::format("--wav-dir {}: {}", wav_dir, ec ? ec.message() : "not a directory"));
        if (!capture_wav.empty()) {
            auto r = audio::WavFileReader::open(capture_wav);
            if (!r) return fail(fmt::format("--capture-wav {}: {}", capture_wav, r.error()));
            backend = std::make_unique<backends::WavBackend>(clock, wav_dir, capture_wav);
        } else {
            if (inputs) log->info("no --capture-wav: capture streams record silence");
            backend = std::make_unique<WavOutNullIn>(clock, wav_dir);
        }
    } else {
        for (bool playback : {true, false}) {
            if (playback ? !outputs : !inputs) continue;
            if (auto why = probe_alsa(device_name, playback); !why.empty()) return fail(why);
        }
        backends::AlsaOptions opts;
        opts.log = [log](const std::string& m) { log->info("alsa: {}", m); }; // geometry, xruns, failures
        backend = std::make_unique<backends::AlsaBackend>(clock, device_name, std::move(opts));
    }

    const auto policy = policy_name == "played" ? device::CompletionPolicy::Played : device::CompletionPolicy::Consumed;
    device::SoundDevice dev(*topology, *backend, clock, policy);
    dev.set_logger([log](const std::string& m) { log->warn("device: {}", m); });

    std::signal(SIGPIPE, SIG_IGN); // a call fd may be a pipe whose reader has gone
    boost::asio::io_context io;
    vhost_user::Server server(io, dev, log);
    if (auto r = server.listen(socket_path); !r) return fail(r.error());
    log->info("vsnd-host {}: backend {}, {} streams ({} formats {}, rates {}, channels {}), completion when {}", VSND_VERSION,
              backend->name(), topology->streams.size(), spec.streams, spec.formats, spec.rates, spec.channels,
              policy_name);

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        log->info("signal {}: shutting down", sig);
        server.stop();
        io.stop();
    });
    io.run();
    server.stop();
    dev.reset(); // closes the backend's streams (WAV headers are finalised)
    log->info("stopped after {} connection(s)", server.connections_accepted());
    return 0;
}
