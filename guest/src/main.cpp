// vsnd-guest-agent: runs inside the test guest, drives an ALSA PCM with a deterministic signal and
// logs per-period timing so the host can judge the virtio-sound device. See guest/README.md.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <exception>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "host_clock.hpp"
#include "pcm.hpp"
#include "vsnd/audio/alsa_format.hpp"
#include "vsnd/audio/sample_spec.hpp"
#include "vsnd/audio/test_signal.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/timing/playback_clock.hpp"

namespace vsnd::guest {
namespace {

constexpr std::uint64_t kClockSampleNs = 10'000'000;  // host-clock pairs every 10 ms

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
    std::optional<std::uint64_t> underrun_at;  // stop writing here until the ring has run dry
    std::optional<std::uint64_t> restart_at;   // drain here, then prepare and start again
    unsigned gap_ms = 300;                     // silence of the underrun (after the ring ran dry) and restart
    unsigned cycles = 0;
    std::string host_clock;        // "" = none, "auto" = ivshmem device, or a path
    unsigned poll_status_us = 0;   // 0 = no status poller
    double interval_ms = 10;       // clock-check
};

// Events are kept in memory and written at the end so that file I/O (9p in the guest) cannot
// disturb the timing being measured.
class EventLog {
public:
    EventLog() { rows_.reserve(4096); }

    // Timestamp taken right after the delay query it is paired with.
    void add(const char* event, std::int64_t index, std::uint64_t frames, std::optional<snd_pcm_sframes_t> delay) {
        add_at(event, index, frames, delay, monotonic_ns());
    }
    void add_at(const char* event, std::int64_t index, std::uint64_t frames, std::optional<snd_pcm_sframes_t> delay,
                std::uint64_t ns, std::optional<std::uint64_t> tstamp = std::nullopt) {
        rows_.push_back({event, index, frames, delay, ns, std::nullopt, tstamp});
    }
    [[nodiscard]] std::uint64_t last_ns() const { return rows_.empty() ? 0 : rows_.back().ns; }
    [[nodiscard]] std::size_t size() const { return rows_.size(); }

    // Rows of another log (another thread's), merged in time order.
    void merge(const EventLog& other) {
        rows_.insert(rows_.end(), other.rows_.begin(), other.rows_.end());
        std::stable_sort(rows_.begin(), rows_.end(), [](const Row& a, const Row& b) { return a.ns < b.ns; });
    }

    // With host-clock pairs (HostClockSampler): every row gets host_ns, the host's CLOCK_MONOTONIC
    // at its mono_ns, and the pairs themselves become "clock" rows.
    void add_host_times(const std::vector<HostClock::Pair>& pairs) {
        for (Row& r : rows_) r.host = HostClockSampler::host_at(pairs, r.ns);
        for (std::size_t i = 0; i < pairs.size(); ++i)
            rows_.push_back({"clock", static_cast<std::int64_t>(i), pairs[i].width_ns, std::nullopt, pairs[i].guest_ns,
                             pairs[i].host_ns, std::nullopt});
        std::stable_sort(rows_.begin(), rows_.end(), [](const Row& a, const Row& b) { return a.ns < b.ns; });
    }

    void write(const std::string& path) const {
        std::ofstream out(path, std::ios::trunc);
        if (!out) throw std::runtime_error(path + ": cannot create");
        out << "event,index,frames,delay,mono_ns,host_ns,tstamp_ns\n";
        for (const Row& r : rows_) {
            out << r.event << ',' << r.index << ',' << r.frames << ',';
            if (r.delay) out << *r.delay;
            out << ',' << r.ns << ',';
            if (r.host) out << *r.host;
            out << ',';
            if (r.tstamp) out << *r.tstamp;
            out << '\n';
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
        std::optional<std::uint64_t> host;
        std::optional<std::uint64_t> tstamp;
    };
    std::vector<Row> rows_;
};

void sleep_until_ns(std::uint64_t t) {
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(t / 1'000'000'000u);
    ts.tv_nsec = static_cast<long>(t % 1'000'000'000u);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
}

// Polls snd_pcm_status() from its own thread while the main thread blocks in writes and in the
// drain, and logs an "hw" row whenever the hardware position moved: the completion instants.
// Row: frames = hw position, delay = the driver's runtime delay (so frames - delay is the played
// position the guest reports, as for the other rows), mono_ns = time of the poll, tstamp_ns =
// the kernel's timestamp of the hw_ptr update (the completion instant as the guest saw it).
class StatusPoller {
public:
    StatusPoller(Pcm& pcm, unsigned interval_us)
        : pcm_(pcm), interval_ns_(interval_us * 1000ull), clock_(pcm.config().format.rate) {
        thread_ = std::thread([this] { run(); });
    }
    ~StatusPoller() { stop(); }
    StatusPoller(const StatusPoller&) = delete;
    StatusPoller& operator=(const StatusPoller&) = delete;

    void stop() {
        stop_.store(true);
        if (thread_.joinable()) thread_.join();
    }
    [[nodiscard]] const EventLog& log() const { return log_; }
    [[nodiscard]] const std::string& error() const { return error_; }
    [[nodiscard]] std::uint64_t polls() const { return polls_; }
    [[nodiscard]] std::uint64_t max_gap_ns() const { return max_gap_ns_; }
    // After stop(): the rate the ALSA-fed playback clock measured, and its discontinuities.
    [[nodiscard]] const vsnd::timing::PlaybackClock& clock() const { return clock_; }

private:
    void run() {
        std::uint64_t last_hw = 0;
        std::int64_t index = 0;
        std::int64_t& clock_index = clock_index_;
        std::uint64_t next = monotonic_ns();
        std::uint64_t prev = 0;
        try {
            while (!stop_.load()) {
                const PcmStatus st = pcm_.status();
                if (prev) max_gap_ns_ = std::max(max_gap_ns_, st.now_ns - prev);
                prev = st.now_ns;
                ++polls_;
                const bool running = st.state == SND_PCM_STATE_RUNNING || st.state == SND_PCM_STATE_DRAINING;
                if (running && st.hw_frames != last_hw) {
                    log_.add_at("hw", index++, st.hw_frames, st.runtime_delay(pcm_.buffer()), st.now_ns, st.tstamp_ns);
                    last_hw = st.hw_frames;
                    // The project's playback clock, fed from ALSA's status: frames written minus
                    // delay, at the htstamp of the hw_ptr move.
                    const std::uint64_t appl = st.hw_frames + (pcm_.buffer() - st.avail);
                    clock_.update(vsnd::timing::from_alsa_status(appl, st.delay, static_cast<vsnd::Nanos>(st.tstamp_ns)));
                    // One row per position change, like "hw": the poll loop is the instrument.
                    log_.add_at("alsa_clock", clock_index++,
                                static_cast<std::uint64_t>(std::llround(*clock_.frames_at(static_cast<vsnd::Nanos>(st.now_ns)))),
                                std::nullopt, st.now_ns);
                }
                if (!running) clock_.pause(static_cast<vsnd::Nanos>(st.now_ns));
                next += interval_ns_;
                const std::uint64_t now = monotonic_ns();
                if (next < now) next = now;  // fell behind: do not burst
                sleep_until_ns(next);
            }
        } catch (const std::exception& e) {
            error_ = e.what();
        }
    }

    Pcm& pcm_;
    std::uint64_t interval_ns_;
    EventLog log_;
    std::atomic<bool> stop_{false};
    std::string error_;
    std::uint64_t polls_ = 0;
    std::uint64_t max_gap_ns_ = 0;
    vsnd::timing::PlaybackClock clock_;
    std::int64_t clock_index_ = 0;
    std::thread thread_;
};

// The project's format names ("S16", "FLOAT", case-insensitive), also spelled as ALSA does for
// little-endian ("S16_LE", "FLOAT_LE").
std::optional<wire::PcmFormat> parse_sample_format(std::string name) {
    if (name.size() > 3 && (name.ends_with("_LE") || name.ends_with("_le"))) name.resize(name.size() - 3);
    return audio::parse_format(name);
}

audio::SampleSpec stream_format(const Options& o) {
    return {*parse_sample_format(o.format), o.rate, static_cast<std::uint8_t>(o.channels)}; // validated by CLI11
}

std::vector<std::uint8_t> make_signal(const Options& o, const audio::SampleSpec& fmt, std::uint64_t frames) {
    const audio::SignalKind kind = *audio::parse_signal(o.signal); // validated by CLI11
    if (!audio::signal_supports(kind, fmt.format))
        throw std::runtime_error(o.signal + " cannot be made in " + std::string(wire::name(fmt.format)));
    std::vector<std::uint8_t> data(frames * fmt.frame_bytes());
    audio::fill_signal(kind, fmt, data, 0);
    return data;
}

// Throws std::runtime_error: the agent's one error line.
void write_wav(const std::string& path, const audio::SampleSpec& fmt, std::span<const std::uint8_t> data) {
    auto w = audio::WavFileWriter::open(path, fmt, false);
    if (!w) throw std::runtime_error(w.error());
    (*w)->write(data);
}

PcmConfig pcm_config(const Options& o, snd_pcm_stream_t stream, const audio::SampleSpec& fmt) {
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
                c.device.c_str(), std::string(wire::name(c.format.format)).c_str(), c.format.rate, c.format.channels,
                static_cast<unsigned long>(pcm.period()), static_cast<unsigned long>(pcm.buffer()), frames);
}

double seconds_between(std::uint64_t a_ns, std::uint64_t b_ns) {
    return static_cast<double>(static_cast<std::int64_t>(b_ns - a_ns)) / 1e9;
}

// play and pause modes
void play(const Options& o, EventLog& log, bool with_pause) {
    audio::SampleSpec fmt;
    std::vector<std::uint8_t> data;
    if (!o.wav_in.empty()) {
        auto wav = audio::WavFileReader::open(o.wav_in);
        if (!wav) throw std::runtime_error(wav.error());
        if (!(*wav)->format()) throw std::runtime_error(o.wav_in + ": sample type not U8, S16, 24-bit, S32 or float");
        fmt = {*(*wav)->format(), (*wav)->rate(), static_cast<std::uint8_t>((*wav)->channels())};
        data = (*wav)->read_all(fmt);
    } else {
        fmt = stream_format(o);
        data = make_signal(o, fmt, requested_frames(o, fmt.rate));
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
    std::unique_ptr<StatusPoller> poller;
    // However play() ends, the poller stops before the PCM is closed and its rows are kept.
    struct PollerGuard {
        std::unique_ptr<StatusPoller>& p;
        EventLog& log;
        ~PollerGuard() { finish(); }
        void finish() {
            if (!p) return;
            p->stop();
            log.merge(p->log());
            p.reset();
        }
    } guard{poller, log};
    std::uint64_t filled_from = 0;  // written when the stream was last prepared
    bool underrun_done = !o.underrun_at, restart_done = !o.restart_at;
    std::uint64_t gaps_ms = 0;      // time the stream stood still on purpose
    while (written < total) {
        const auto n = static_cast<snd_pcm_uframes_t>(std::min<std::uint64_t>(pcm.period(), total - written));
        pcm.write(data.data() + written * fb, n);
        written += n;
        log.add("period", index++, written, pcm.delay());
        // Pre-fill the whole buffer, then start explicitly so the start time is known.
        if (!started && (written - filled_from >= pcm.buffer() || written == total)) {
            pcm.start();
            log.add("start", index, written, pcm.delay());
            if (start_ns == 0) start_ns = log.last_ns();
            started = true;
            if (o.poll_status_us && !poller) poller = std::make_unique<StatusPoller>(pcm, o.poll_status_us);
        }
        if (started && !paused_once && written >= pause_at) {
            pcm.pause(true);
            log.add("pause", index, written, pcm.delay());
            std::this_thread::sleep_for(std::chrono::milliseconds(o.pause_ms));
            log.add("resume_call", index, written, pcm.delay());
            pcm.pause(false);
            log.add("resume", index, written, pcm.delay());
            paused_once = true;
            gaps_ms += o.pause_ms;
        }
        if (started && !underrun_done && written >= *o.underrun_at && written < total) {
            // A writer that falls behind: the ring runs dry (XRUN), then it recovers as
            // applications do, with snd_pcm_prepare, a refill and a start.
            underrun_done = true;
            const std::uint64_t dry_ms = pcm.buffer() * 1000 / fmt.rate + 1;
            std::this_thread::sleep_for(std::chrono::milliseconds(dry_ms + o.gap_ms));
            const PcmStatus st = pcm.status();
            if (st.state != SND_PCM_STATE_XRUN)
                throw AlsaError(o.device + ": no underrun after " + std::to_string(dry_ms + o.gap_ms) + " ms without writing");
            log.add("underrun", index, written, std::nullopt);
            pcm.prepare();
            started = false;
            filled_from = written;
            gaps_ms += o.gap_ms;
        }
        if (started && !restart_done && written >= *o.restart_at && written < total) {
            // Stop and start: drain what is queued, stand still, prepare and start again.
            restart_done = true;
            pcm.drain();
            log.add("restart_drained", index, written, std::nullopt);
            std::this_thread::sleep_for(std::chrono::milliseconds(o.gap_ms));
            pcm.prepare();
            log.add("restart", index, written, pcm.delay());
            started = false;
            filled_from = written;
            gaps_ms += o.gap_ms;
        }
    }
    log.add("drain_call", index, written, pcm.delay());
    pcm.drain();
    const std::uint64_t drain_ns = monotonic_ns();
    log.add_at("drain_return", index, written, std::nullopt, drain_ns);
    std::string poll_note;
    if (poller) {
        poller->stop();  // before reading its counters
        const std::uint64_t polls = poller->polls(), max_gap = poller->max_gap_ns();
        const vsnd::timing::PlaybackClock clock = poller->clock();
        const std::string err = poller->error();
        guard.finish();
        if (!err.empty()) throw AlsaError("status poller: " + err);
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "%s: status poller: %" PRIu64 " polls, %" PRIu64 " hw position changes, longest gap %.2f ms; "
                      "ALSA playback clock %.2f Hz (%+.1f ppm), %" PRIu64 " re-anchors\n",
                      mode, polls, clock.updates(), static_cast<double>(max_gap) / 1e6, clock.rate(),
                      (clock.rate() / fmt.rate - 1) * 1e6, clock.relocks());
        poll_note = buf;
    }
    pcm.close();

    const double expected = static_cast<double>(total) / fmt.rate + static_cast<double>(gaps_ms) / 1000.0;
    std::printf("%s: start->drain_return %.3f s (signal %.3f s%s)\n", mode, seconds_between(start_ns, drain_ns),
                expected, gaps_ms ? " incl. pauses and gaps" : "");
    std::fputs(poll_note.c_str(), stdout);
    if (!o.wav_out.empty()) write_wav(o.wav_out, fmt, data);
}

void record(const Options& o, EventLog& log) {
    const audio::SampleSpec fmt = stream_format(o);
    const std::size_t fb = fmt.frame_bytes();
    const std::uint64_t total = requested_frames(o, fmt.rate);
    std::vector<std::uint8_t> data(total * fb);

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
    const audio::SampleSpec fmt = stream_format(o);
    const std::size_t fb = fmt.frame_bytes();
    std::vector<double> ms;
    ms.reserve(o.cycles);
    const std::uint64_t t_begin = monotonic_ns();
    for (unsigned i = 0; i < o.cycles; ++i) {
        const std::uint64_t t0 = monotonic_ns();
        Pcm pcm(pcm_config(o, SND_PCM_STREAM_PLAYBACK, fmt));
        if (i == 0) print_setup("cycles", pcm, pcm.buffer() + pcm.period());
        const std::uint64_t frames = pcm.buffer() + pcm.period();
        const std::vector<std::uint8_t> data = make_signal(o, fmt, frames);
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

// How well the guest can read the host's clock: pairs of (guest, host) time every interval.
void clock_check(const Options& o) {
    const HostClock hc = HostClock::open(o.host_clock.empty() ? "auto" : o.host_clock);
    const double seconds = o.seconds.value_or(10.0);
    const auto interval = static_cast<std::uint64_t>(o.interval_ms * 1e6);
    const auto n = static_cast<std::size_t>(seconds * 1e9 / static_cast<double>(interval)) + 1;
    std::printf("clock-check: host clock at %s, published every %.1f us; %zu samples over %.1f s\n", hc.where().c_str(),
                static_cast<double>(hc.period_ns()) / 1e3, n, seconds);
    struct Sample {
        HostClock::Pair a, b, e;
    };
    std::vector<Sample> v;
    v.reserve(n);
    std::uint64_t cost = monotonic_ns();
    for (int i = 0; i < 1000; ++i) (void)monotonic_ns();
    cost = (monotonic_ns() - cost) / 1001;
    std::printf("clock-check: one guest clock_gettime(CLOCK_MONOTONIC) takes %.2f us\n", static_cast<double>(cost) / 1e3);
    const std::uint64_t t0 = monotonic_ns();
    for (std::size_t i = 0; i < n; ++i) {
        sleep_until_ns(t0 + i * interval);
        Sample smp{};
        smp.a = hc.read_plain();
        smp.b = hc.read_plain();
        smp.e = hc.read_edge();
        v.push_back(smp);
    }
    if (!o.log_path.empty()) {
        std::ofstream out(o.log_path, std::ios::trunc);
        out << "index,guest_plain,host_plain,guest_plain2,host_plain2,guest_edge,host_edge,edge_wait_ns,edge_width_ns,edge\n";
        for (std::size_t i = 0; i < v.size(); ++i) {
            const Sample& x = v[i];
            out << i << ',' << x.a.guest_ns << ',' << x.a.host_ns << ',' << x.b.guest_ns << ',' << x.b.host_ns << ','
                << x.e.guest_ns << ',' << x.e.host_ns << ',' << x.e.wait_ns << ',' << x.e.width_ns << ','
                << (x.e.edge ? 1 : 0) << '\n';
        }
        if (!out) throw std::runtime_error(o.log_path + ": write failed");
    }
    // Least-squares line host = a + b * guest through the edge pairs (centred to keep precision).
    std::vector<const Sample*> edges;
    for (const Sample& x : v)
        if (x.e.edge) edges.push_back(&x);
    if (edges.size() < 3) throw std::runtime_error("clock-check: too few edge-synchronised readings");
    const double g0 = static_cast<double>(edges.front()->e.guest_ns), h0 = static_cast<double>(edges.front()->e.host_ns);
    double sg = 0, sh = 0, sgg = 0, sgh = 0;
    for (const Sample* x : edges) {
        const double g = static_cast<double>(x->e.guest_ns) - g0, h = static_cast<double>(x->e.host_ns) - h0;
        sg += g, sh += h, sgg += g * g, sgh += g * h;
    }
    const double m = static_cast<double>(edges.size());
    const double slope = (m * sgh - sg * sh) / (m * sgg - sg * sg);
    const double icpt = (sh - slope * sg) / m;
    auto predict = [&](std::uint64_t guest) { return h0 + icpt + slope * (static_cast<double>(guest) - g0); };
    auto quant = [](std::vector<double> x, double q) {
        std::sort(x.begin(), x.end());
        return x.empty() ? 0.0 : x[static_cast<std::size_t>(q * static_cast<double>(x.size() - 1))];
    };
    std::vector<double> resid, stale, wait, twice, width;
    for (const Sample* x : edges) {
        resid.push_back(std::fabs(static_cast<double>(x->e.host_ns) - predict(x->e.guest_ns)) / 1e3);
        width.push_back(static_cast<double>(x->e.width_ns) / 1e3);
    }
    for (const Sample& x : v) {
        stale.push_back((predict(x.a.guest_ns) - static_cast<double>(x.a.host_ns)) / 1e3);
        twice.push_back(static_cast<double>(x.b.host_ns - x.a.host_ns) / 1e3);
        wait.push_back(static_cast<double>(x.e.wait_ns) / 1e3);
    }
    const std::size_t same = static_cast<std::size_t>(std::count(twice.begin(), twice.end(), 0.0));
    const double offset_ms = (h0 - g0) / 1e6;
    std::printf("clock-check: host - guest offset %.3f ms; rate host/guest - 1 = %+.1f ppm (%+.3f ms over %.1f s)\n",
                offset_ms, (slope - 1) * 1e6, (slope - 1) * seconds * 1e3, seconds);
    std::printf("clock-check: edge pairs vs the fitted line: median %.2f us, p99 %.2f us, max %.2f us "
                "(%zu of %zu waited out); bracket width median %.2f / max %.2f us\n",
                quant(resid, 0.5), quant(resid, 0.99), quant(resid, 1.0), v.size() - edges.size(), v.size(),
                quant(width, 0.5), quant(width, 1.0));
    std::printf("clock-check: plain reads are older than the line by median %.1f us, p99 %.1f us, max %.1f us\n",
                quant(stale, 0.5), quant(stale, 0.99), quant(stale, 1.0));
    std::printf("clock-check: two plain reads in a row: same value %zu of %zu, step median %.1f / max %.1f us; "
                "edge wait median %.1f / max %.1f us\n",
                same, v.size(), quant(twice, 0.5), quant(twice, 1.0), quant(wait, 0.5), quant(wait, 1.0));
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
        sc->add_option("--format", o.format, "sample format: S16, S24 (24 bits in 32), S32, FLOAT, ... (also S16_LE, ...)")
            ->capture_default_str()
            ->check([](const std::string& v) -> std::string {
                const auto f = parse_sample_format(v);
                if (!f) return "unknown sample format " + v;
                if (!vsnd::audio::alsa_format(*f)) return v + " has no ALSA equivalent";
                return {};
            });
        sc->add_option("--period", o.period, "period size in frames")->capture_default_str()->check(CLI::PositiveNumber);
        sc->add_option("--periods", o.periods, "periods per buffer")->capture_default_str()->check(CLI::Range(2u, 1024u));
        sc->add_option("--log", o.log_path, "write the CSV event log to this file");
        sc->add_option("--signal", o.signal,
                       "signal: test (the project's bit-exact test signal), sine (1000+500*ch Hz, -6 dBFS), silence")
            ->capture_default_str()
            ->check(CLI::IsMember(std::vector<std::string>{"test", "sine", "silence"}));
        sc->add_option("--host-clock", o.host_clock,
                       "log the host's CLOCK_MONOTONIC next to every row (host_ns): 'auto' = the ivshmem-plain "
                       "device of run-vm --host-clock, or a sysfs PCI device dir / a file holding the page");
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
    for (auto* sc : {play_cmd, pause_cmd}) {
        sc->add_option("--underrun-at", o.underrun_at,
                       "after this many frames were written, stop writing until the ring has run dry and --gap-ms "
                       "more, then snd_pcm_prepare, refill and start (it checks the stream did reach XRUN)");
        sc->add_option("--restart-at", o.restart_at,
                       "after this many frames were written, snd_pcm_drain, wait --gap-ms, prepare, refill and start");
        sc->add_option("--gap-ms", o.gap_ms, "silence of --underrun-at and --restart-at")->capture_default_str();
    }
    for (auto* sc : {play_cmd, pause_cmd})
        sc->add_option("--poll-status-us", o.poll_status_us,
                       "from the start to the drain's return, poll snd_pcm_status every N us in a second thread "
                       "and log an 'hw' row at every hardware position change (0 = off)")
            ->capture_default_str();

    auto* record_cmd = app.add_subcommand("record", "record frames into a WAV file");
    stream_options(record_cmd);
    length_options(record_cmd);
    record_cmd->add_option("--out-wav", o.wav_out, "WAV file to write");

    auto* cycles_cmd = app.add_subcommand("cycles", "open/prepare/start/write/stop/close N times");
    stream_options(cycles_cmd);
    cycles_cmd->add_option("count", o.cycles, "number of cycles")->required()->check(CLI::PositiveNumber);

    auto* clock_cmd = app.add_subcommand("clock-check", "measure how well the guest reads the host's clock");
    clock_cmd->add_option("--host-clock", o.host_clock, "'auto' (default) or a sysfs PCI device dir / page file");
    clock_cmd->add_option("--seconds", o.seconds, "duration (default 10)")->check(CLI::PositiveNumber);
    clock_cmd->add_option("--interval-ms", o.interval_ms, "sampling interval")->capture_default_str()->check(CLI::PositiveNumber);
    clock_cmd->add_option("--log", o.log_path, "CSV of every sample");

    CLI11_PARSE(app, argc, argv);

    install_alsa_error_handler();
    EventLog log;
    int rc = 0;
    std::optional<HostClock> host_clock;
    std::optional<HostClockSampler> sampler;
    try {
        if (*clock_cmd) {
            clock_check(o);
            return 0;
        }
        if (!o.host_clock.empty()) {
            host_clock.emplace(HostClock::open(o.host_clock));
            sampler.emplace(*host_clock, kClockSampleNs);
            // a few pairs before the first event, so no row needs extrapolation at the start
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (*play_cmd) play(o, log, false);
        if (*pause_cmd) play(o, log, true);
        if (*record_cmd) record(o, log);
        if (*cycles_cmd) cycles(o, log);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "vsnd-guest-agent: error: %s\n", e.what());
        rc = 1;
    }
    if (sampler) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pairs after the last event too
        sampler->stop();
        log.add_host_times(sampler->pairs());
        std::printf("host clock: %zu (guest, host) pairs from %s, %" PRIu64 " readings dropped\n",
                    sampler->pairs().size(), host_clock->where().c_str(), sampler->dropped());
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
