// vsnd-guest-agent: runs inside the test guest, drives an ALSA PCM with a deterministic signal and
// logs per-period timing so the host can judge the virtio-sound device. See guest/README.md.

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "audio_format.hpp"
#include "pcm.hpp"
#include "wav.hpp"

namespace vsnd::guest {
namespace {

struct Options {
    std::string device = "hw:0,0";
    unsigned rate = 48000;
    unsigned channels = 2;
    std::string format = "S16_LE";
    snd_pcm_uframes_t period = 1024;
    unsigned periods = 4;
    std::optional<double> seconds;
    std::optional<std::uint64_t> frames;
    std::string signal = "sine";
    std::string partial = "pad";
    std::string wav_in;
    std::string wav_out;
    std::string log_path;
    std::optional<std::uint64_t> pause_at;
    unsigned pause_ms = 500;
    unsigned cycles = 0;
};

// Events are kept in memory and written at the end so that file I/O (9p in the guest) cannot
// disturb the timing being measured.
class EventLog {
public:
    EventLog() { rows_.reserve(4096); }

    // Timestamp taken right after the delay query it is paired with.
    void add(const char* event, std::int64_t index, std::uint64_t frames, std::optional<snd_pcm_sframes_t> delay) {
        rows_.push_back({event, index, frames, delay, monotonic_ns()});
    }
    void add_at(const char* event, std::int64_t index, std::uint64_t frames, std::optional<snd_pcm_sframes_t> delay,
                std::uint64_t ns) {
        rows_.push_back({event, index, frames, delay, ns});
    }
    [[nodiscard]] std::uint64_t last_ns() const { return rows_.empty() ? 0 : rows_.back().ns; }

    void write(const std::string& path) const {
        std::ofstream out(path, std::ios::trunc);
        if (!out) throw std::runtime_error(path + ": cannot create");
        out << "event,index,frames,delay,mono_ns\n";
        for (const Row& r : rows_) {
            out << r.event << ',' << r.index << ',' << r.frames << ',';
            if (r.delay) out << *r.delay;
            out << ',' << r.ns << '\n';
        }
        out.close();
        if (!out) throw std::runtime_error(path + ": write failed");
    }

private:
    struct Row {
        const char* event;
        std::int64_t index;
        std::uint64_t frames;
        std::optional<snd_pcm_sframes_t> delay;
        std::uint64_t ns;
    };
    std::vector<Row> rows_;
};

StreamFormat stream_format(const Options& o) {
    StreamFormat f;
    f.format = *parse_format(o.format);  // validated by CLI11
    f.rate = o.rate;
    f.channels = o.channels;
    return f;
}

PcmConfig pcm_config(const Options& o, snd_pcm_stream_t stream, const StreamFormat& fmt) {
    PcmConfig c;
    c.device = o.device;
    c.stream = stream;
    c.format = fmt;
    c.period = o.period;
    c.periods = o.periods;
    return c;
}

std::uint64_t requested_frames(const Options& o, unsigned rate) {
    if (o.frames) return *o.frames;
    return static_cast<std::uint64_t>(std::llround(o.seconds.value_or(2.0) * rate));
}

void print_setup(const char* mode, const Pcm& pcm, std::uint64_t frames) {
    const PcmConfig& c = pcm.config();
    std::printf("%s: device=%s format=%s rate=%u channels=%u period=%lu buffer=%lu frames=%" PRIu64 "\n", mode,
                c.device.c_str(), format_name(c.format.format), c.format.rate, c.format.channels,
                static_cast<unsigned long>(pcm.period()), static_cast<unsigned long>(pcm.buffer()), frames);
}

double seconds_between(std::uint64_t a_ns, std::uint64_t b_ns) {
    return static_cast<double>(static_cast<std::int64_t>(b_ns - a_ns)) / 1e9;
}

// play and pause modes
void play(const Options& o, EventLog& log, bool with_pause) {
    StreamFormat fmt;
    std::vector<std::byte> data;
    if (!o.wav_in.empty()) {
        WavData wav = read_wav(o.wav_in);
        fmt = wav.format;
        data = std::move(wav.samples);
    } else {
        fmt = stream_format(o);
        data = generate_signal(*parse_signal(o.signal), fmt, 0, requested_frames(o, fmt.rate));
    }
    const std::size_t fb = fmt.frame_bytes();
    const std::uint64_t signal_frames = data.size() / fb;

    // The Linux virtio-snd driver (>= 6.7) only sends whole periods, so a partial last period
    // would never play and drain would fail. Default: complete it with silence.
    const std::uint64_t rem = signal_frames % o.period;
    if (rem != 0 && o.partial == "pad") data.resize((signal_frames + (o.period - rem)) * fb);
    if (rem != 0 && o.partial == "trim") data.resize((signal_frames - rem) * fb);
    const std::uint64_t total = data.size() / fb;

    const char* mode = with_pause ? "pause" : "play";
    Pcm pcm(pcm_config(o, SND_PCM_STREAM_PLAYBACK, fmt));
    print_setup(mode, pcm, total);
    if (total != signal_frames)
        std::printf("%s: signal %" PRIu64 " frames, %s to %" PRIu64 " (--partial-period %s)\n", mode, signal_frames,
                    o.partial == "pad" ? "padded" : "trimmed", total, o.partial.c_str());
    if (with_pause && !pcm.can_pause()) throw AlsaError(o.device + ": device cannot pause (no SNDRV_PCM_INFO_PAUSE)");
    const std::uint64_t pause_at = o.pause_at.value_or(total / 2);
    bool paused_once = !with_pause;

    std::uint64_t written = 0;
    std::int64_t index = 0;
    bool started = false;
    std::uint64_t start_ns = 0;
    while (written < total) {
        const auto n = static_cast<snd_pcm_uframes_t>(std::min<std::uint64_t>(pcm.period(), total - written));
        pcm.write(data.data() + written * fb, n);
        written += n;
        log.add("period", index++, written, pcm.delay());
        // Pre-fill the whole buffer, then start explicitly so the start time is known.
        if (!started && (written >= pcm.buffer() || written == total)) {
            pcm.start();
            log.add("start", index, written, pcm.delay());
            start_ns = log.last_ns();
            started = true;
        }
        if (started && !paused_once && written >= pause_at) {
            pcm.pause(true);
            log.add("pause", index, written, pcm.delay());
            std::this_thread::sleep_for(std::chrono::milliseconds(o.pause_ms));
            log.add("resume_call", index, written, pcm.delay());
            pcm.pause(false);
            log.add("resume", index, written, pcm.delay());
            paused_once = true;
        }
    }
    log.add("drain_call", index, written, pcm.delay());
    pcm.drain();
    const std::uint64_t drain_ns = monotonic_ns();
    log.add_at("drain_return", index, written, std::nullopt, drain_ns);
    pcm.close();

    const double expected = static_cast<double>(total) / fmt.rate + (with_pause ? o.pause_ms / 1000.0 : 0.0);
    std::printf("%s: start->drain_return %.3f s (signal %.3f s%s)\n", mode, seconds_between(start_ns, drain_ns),
                expected, with_pause ? " incl. pause" : "");
    if (!o.wav_out.empty()) write_wav(o.wav_out, fmt, data);
}

void record(const Options& o, EventLog& log) {
    const StreamFormat fmt = stream_format(o);
    const std::size_t fb = fmt.frame_bytes();
    const std::uint64_t total = requested_frames(o, fmt.rate);
    std::vector<std::byte> data(total * fb);

    Pcm pcm(pcm_config(o, SND_PCM_STREAM_CAPTURE, fmt));
    print_setup("record", pcm, total);
    pcm.start();
    log.add("start", 0, 0, pcm.delay());
    const std::uint64_t start_ns = log.last_ns();
    std::uint64_t got = 0;
    std::int64_t index = 0;
    while (got < total) {
        const auto n = static_cast<snd_pcm_uframes_t>(std::min<std::uint64_t>(pcm.period(), total - got));
        pcm.read(data.data() + got * fb, n);
        got += n;
        log.add("period", index++, got, pcm.delay());
    }
    pcm.drop();
    const std::uint64_t stop_ns = monotonic_ns();
    log.add_at("stop", index, got, std::nullopt, stop_ns);
    pcm.close();
    std::printf("record: start->stop %.3f s (signal %.3f s)\n", seconds_between(start_ns, stop_ns),
                static_cast<double>(total) / fmt.rate);
    if (!o.wav_out.empty()) write_wav(o.wav_out, fmt, data);
}

// open / prepare / pre-fill / start / write one more period / stop / close, N times
void cycles(const Options& o, EventLog& log) {
    const StreamFormat fmt = stream_format(o);
    const std::size_t fb = fmt.frame_bytes();
    const SignalKind kind = *parse_signal(o.signal);
    std::vector<double> ms;
    ms.reserve(o.cycles);
    const std::uint64_t t_begin = monotonic_ns();
    for (unsigned i = 0; i < o.cycles; ++i) {
        const std::uint64_t t0 = monotonic_ns();
        Pcm pcm(pcm_config(o, SND_PCM_STREAM_PLAYBACK, fmt));
        if (i == 0) print_setup("cycles", pcm, pcm.buffer() + pcm.period());
        const std::uint64_t frames = pcm.buffer() + pcm.period();
        const std::vector<std::byte> data = generate_signal(kind, fmt, 0, frames);
        pcm.prepare();
        pcm.write(data.data(), pcm.buffer());
        pcm.start();
        pcm.write(data.data() + pcm.buffer() * fb, pcm.period());
        const snd_pcm_sframes_t d = pcm.delay();
        pcm.drop();
        pcm.close();
        log.add_at("cycle", i, frames, d, monotonic_ns());
        ms.push_back(seconds_between(t0, log.last_ns()) * 1e3);
    }
    std::sort(ms.begin(), ms.end());
    if (!ms.empty())
        std::printf("cycles: %u in %.3f s, per cycle min %.1f / median %.1f / max %.1f ms\n", o.cycles,
                    seconds_between(t_begin, monotonic_ns()), ms.front(), ms[ms.size() / 2], ms.back());
}

}  // namespace
}  // namespace vsnd::guest

int main(int argc, char** argv) {
    using namespace vsnd::guest;
    Options o;
    CLI::App app{"vsnd guest test agent: plays/records deterministic signals through ALSA and logs per-period "
                 "timing (CSV: event,index,frames,delay,mono_ns)."};
    app.require_subcommand(1);

    auto stream_options = [&o](CLI::App* sc) {
        sc->add_option("-D,--device", o.device, "ALSA PCM")->capture_default_str();
        sc->add_option("--rate", o.rate, "frames per second")->capture_default_str()->check(CLI::Range(1u, 768000u));
        sc->add_option("--channels", o.channels, "channels")->capture_default_str()->check(CLI::Range(1u, 64u));
        sc->add_option("--format", o.format, "sample format")
            ->capture_default_str()
            ->check(CLI::IsMember(std::vector<std::string>{"S16_LE", "S24_LE", "S32_LE", "FLOAT_LE"}));
        sc->add_option("--period", o.period, "period size in frames")->capture_default_str()->check(CLI::PositiveNumber);
        sc->add_option("--periods", o.periods, "periods per buffer")->capture_default_str()->check(CLI::Range(2u, 1024u));
        sc->add_option("--log", o.log_path, "write the CSV event log to this file");
        sc->add_option("--signal", o.signal, "test signal: sine (1000+500*ch Hz, -6 dBFS), ramp (frame counter), silence")
            ->capture_default_str()
            ->check(CLI::IsMember(std::vector<std::string>{"sine", "ramp", "silence"}));
    };
    auto length_options = [&o](CLI::App* sc) {
        auto* s = sc->add_option("--seconds", o.seconds, "length in seconds (default 2)")->check(CLI::PositiveNumber);
        auto* f = sc->add_option("--frames", o.frames, "length in frames")->check(CLI::PositiveNumber);
        s->excludes(f);
    };
    auto playback_options = [&o](CLI::App* sc) {
        sc->add_option("--wav", o.wav_in, "play this WAV file instead of a generated signal (its format wins)")
            ->check(CLI::ExistingFile);
        sc->add_option("--out-wav", o.wav_out, "write exactly what was played (incl. padding) to this WAV file");
        sc->add_option("--partial-period", o.partial,
                       "last period shorter than --period: pad it with silence, trim it, or keep it "
                       "(keep: the Linux driver never sends it and drain fails)")
            ->capture_default_str()
            ->check(CLI::IsMember(std::vector<std::string>{"pad", "trim", "keep"}));
    };

    auto* play_cmd = app.add_subcommand("play", "play a signal, then snd_pcm_drain");
    stream_options(play_cmd);
    length_options(play_cmd);
    playback_options(play_cmd);

    auto* pause_cmd = app.add_subcommand("pause", "like play, with snd_pcm_pause(1) ... pause(0) in the middle");
    stream_options(pause_cmd);
    length_options(pause_cmd);
    playback_options(pause_cmd);
    pause_cmd->add_option("--pause-at", o.pause_at, "pause after this many frames were written (default: half)");
    pause_cmd->add_option("--pause-ms", o.pause_ms, "pause duration")->capture_default_str();

    auto* record_cmd = app.add_subcommand("record", "record frames into a WAV file");
    stream_options(record_cmd);
    length_options(record_cmd);
    record_cmd->add_option("--out-wav", o.wav_out, "WAV file to write");

    auto* cycles_cmd = app.add_subcommand("cycles", "open/prepare/start/write/stop/close N times");
    stream_options(cycles_cmd);
    cycles_cmd->add_option("count", o.cycles, "number of cycles")->required()->check(CLI::PositiveNumber);

    CLI11_PARSE(app, argc, argv);

    install_alsa_error_handler();
    EventLog log;
    int rc = 0;
    try {
        if (*play_cmd) play(o, log, false);
        if (*pause_cmd) play(o, log, true);
        if (*record_cmd) record(o, log);
        if (*cycles_cmd) cycles(o, log);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "vsnd-guest-agent: error: %s\n", e.what());
        rc = 1;
    }
    // The log is written even after an error: the rows up to the failure are the interesting part.
    if (!o.log_path.empty()) {
        try {
            log.write(o.log_path);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "vsnd-guest-agent: error: %s\n", e.what());
            rc = 1;
        }
    }
    return rc;
}
