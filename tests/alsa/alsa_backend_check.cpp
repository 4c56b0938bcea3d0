// vsnd-alsa-check: the ALSA backend against real ALSA drivers, run INSIDE the test guest
// (vm-images/run-vm --modules 'snd-aloop snd-dummy' -- vsnd-alsa-check). The device model with
// an AlsaBackend and the driver model talk through the in-process loopback transport (device on
// an asio thread, as vsnd-loopback-demo does); plain alsa-lib threads stand on the other side of
// snd-aloop's cable and provide the truth:
//
//   play     the driver plays the TestSignal into hw:Loopback,0,0 (pause/resume, an induced
//            underrun, a drain); a recorder captures hw:Loopback,1,0. Checked: the recording holds
//            every signal frame bit-exact and in order (gaps of silence only where paused or
//            starved); the backend's position(), the driver's playback clock and every message's
//            completion time against the capture side's timing (frames captured at htstamp).
//   formats  short bit-exact plays in S16/S24/S32/FLOAT at several rates and channel counts.
//   drop     the play scenario with use_pause=false (stop = drop and keep our copy).
//   neighbour  stream 0 plays as in 'play' (no pause, no starve) once alone and once while a second
//            stream (hw:Loopback,0,1, its own audio thread) is stopped and started 200 times; its
//            completion instants must stay as accurate as alone: no stream's ALSA calls hold the
//            device loop.
//   capture  a player plays the TestSignal into hw:Loopback,0,0; the driver captures through an
//            AlsaBackend on hw:Loopback,1,0 (pause/resume, an induced overrun). Checked: the data is
//            the signal bit-exact in runs, the capture position against the player's timing.
//   refuse   a format the PCM cannot take (aloop's capture side holds 48 kHz; we ask 44.1 kHz)
//            makes PREPARE fail with IO_ERR and a clear log line.
//   fail     playing on hw:Dummy,0,0, the dummy card is unbound: the backend fails (ENODEV),
//            logs, keeps the guest running (messages still complete), RELEASE works, nothing
//            crashes; the next PREPARE answers IO_ERR.
//
// Exit status 0 when every check passed. Numbers are printed for the report.
#include "vsnd/audio/test_signal.hpp"
#include "vsnd/backends/alsa_backend.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/transport/device_runner.hpp"

#include <alsa/asoundlib.h>
#include <boost/asio/post.hpp>
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <numeric>
#include <thread>

using namespace vsnd;

namespace {

// ---- options, checks, helpers ---------------------------------------------------------------------

struct Cli {
    double seconds = 6.0;
    std::uint32_t period = 480, periods = 8;
    int rt = 0;
    bool smooth = true;
    bool verbose = false;
    std::string dump;
    std::string play_dev = "hw:Loopback,0,0", rec_dev = "hw:Loopback,1,0", dummy_dev = "hw:Dummy,0,0";
    std::string neighbour_dev = "hw:Loopback,0,1"; // the second playback stream of 'neighbour'
    unsigned toggles = 200;
    bool waker = true;
};
Cli g_cli;
int g_failures = 0;
constexpr int kTruthPriority = 70; // the recorder/player: SCHED_FIFO, they are the measuring instrument
MonotonicClock g_clock;

template <class... A>
void check(bool ok, fmt::format_string<A...> f, A&&... a) {
    fmt::print("  {} {}\n", ok ? "ok  " : "FAIL", fmt::format(f, std::forward<A>(a)...));
    if (!ok) ++g_failures;
}

// A check whose truth the environment can destroy: a guest stalled longer than the ALSA buffer
// (a loaded TCG host) makes snd-aloop copy more than a lap at once, so the capture side holds
// replayed frames. Then a failure is reported as inconclusive, not counted.
int g_inconclusive = 0;
template <class... A>
void check_unless(bool perturbed, const std::string& why, bool ok, fmt::format_string<A...> f, A&&... a) {
    if (ok || !perturbed) return check(ok, f, std::forward<A>(a)...);
    fmt::print("  ???? {} — inconclusive: {}\n", fmt::format(f, std::forward<A>(a)...), why);
    ++g_inconclusive;
}

double ms(Nanos ns) { return static_cast<double>(ns) / 1e6; }

void sleep_ns(Nanos ns) { std::this_thread::sleep_for(std::chrono::nanoseconds(ns)); }

void make_rt(pthread_t t, int prio) {
    if (prio <= 0) return;
    sched_param sp{};
    sp.sched_priority = prio;
    pthread_setschedparam(t, SCHED_FIFO, &sp);
}

snd_pcm_format_t alsa_fmt(wire::PcmFormat f) {
    switch (f) {
    case wire::PcmFormat::S24: return SND_PCM_FORMAT_S24_LE;
    case wire::PcmFormat::S32: return SND_PCM_FORMAT_S32_LE;
    case wire::PcmFormat::Float: return SND_PCM_FORMAT_FLOAT_LE;
    default: return SND_PCM_FORMAT_S16_LE;
    }
}

struct Stats {
    std::size_t n = 0;
    double median = 0, p95 = 0, max = 0, mean = 0, min = 0;
};
Stats stats_of(std::vector<double> v, bool absolute) {
    Stats s;
    if (v.empty()) return s;
    s.n = v.size();
    s.mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    if (absolute)
        for (auto& x : v) x = std::abs(x);
    std::sort(v.begin(), v.end());
    s.min = v.front();
    s.median = v[v.size() / 2];
    s.p95 = v[std::min(v.size() - 1, v.size() * 95 / 100)];
    s.max = v.back();
    return s;
}
std::string show(const Stats& s) {
    return fmt::format("median {:.3f} ms, 95% {:.3f} ms, max {:.3f} ms (mean signed {:+.3f} ms, n={})", s.median, s.p95,
                       s.max, s.mean, s.n);
}

// ---- plain alsa-lib endpoints on the other side of the cable --------------------------------------

struct Stamp {
    std::uint64_t frames; // captured (recorder) or played (player) at ts
    Nanos ts;
};

struct Pcm {
    snd_pcm_t* pcm = nullptr;
    ~Pcm() { if (pcm) snd_pcm_close(pcm); }
};

std::string open_plain(Pcm& p, const std::string& dev, snd_pcm_stream_t dir, snd_pcm_format_t format, unsigned rate,
                       unsigned channels, snd_pcm_uframes_t period, unsigned periods) {
    if (int e = snd_pcm_open(&p.pcm, dev.c_str(), dir, SND_PCM_NONBLOCK); e < 0) {
        p.pcm = nullptr;
        return fmt::format("{}: open: {}", dev, snd_strerror(e));
    }
    snd_pcm_hw_params_t* hw;
    snd_pcm_hw_params_alloca(&hw);
    snd_pcm_hw_params_any(p.pcm, hw);
    int e = snd_pcm_hw_params_set_access(p.pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED);
    if (e >= 0) e = snd_pcm_hw_params_set_format(p.pcm, hw, format);
    if (e >= 0) e = snd_pcm_hw_params_set_channels(p.pcm, hw, channels);
    if (e >= 0) e = snd_pcm_hw_params_set_rate(p.pcm, hw, rate, 0);
    if (e >= 0) e = snd_pcm_hw_params_set_period_size_near(p.pcm, hw, &period, nullptr);
    snd_pcm_uframes_t buffer = period * periods;
    if (e >= 0) e = snd_pcm_hw_params_set_buffer_size_near(p.pcm, hw, &buffer);
    if (e >= 0) e = snd_pcm_hw_params(p.pcm, hw);
    if (e < 0) return fmt::format("{}: hw params: {}", dev, snd_strerror(e));
    snd_pcm_sw_params_t* sw;
    snd_pcm_sw_params_alloca(&sw);
    snd_pcm_sw_params_current(p.pcm, sw);
    snd_pcm_uframes_t boundary;
    snd_pcm_sw_params_get_boundary(sw, &boundary);
    snd_pcm_sw_params_set_start_threshold(p.pcm, sw, boundary);
    snd_pcm_sw_params_set_avail_min(p.pcm, sw, period);
    snd_pcm_sw_params_set_tstamp_mode(p.pcm, sw, SND_PCM_TSTAMP_ENABLE);
    snd_pcm_sw_params_set_tstamp_type(p.pcm, sw, SND_PCM_TSTAMP_TYPE_MONOTONIC);
    if (dir == SND_PCM_STREAM_PLAYBACK) {
        snd_pcm_sw_params_set_silence_threshold(p.pcm, sw, 0);
        snd_pcm_sw_params_set_silence_size(p.pcm, sw, boundary);
    }
    if (int e2 = snd_pcm_sw_params(p.pcm, sw); e2 < 0) return fmt::format("{}: sw params: {}", dev, snd_strerror(e2));
    if (int e2 = snd_pcm_prepare(p.pcm); e2 < 0) return fmt::format("{}: prepare: {}", dev, snd_strerror(e2));
    return {};
}

Nanos status_stamp(snd_pcm_status_t* st) {
    snd_htimestamp_t ts;
    snd_pcm_status_get_htstamp(st, &ts);
    return Nanos{ts.tv_sec} * kNanosPerSecond + ts.tv_nsec;
}

// Captures one side of the cable into memory, stamping every read with snd_pcm_status.
class Recorder {
public:
    Recorder(std::string dev, wire::PcmFormat f, unsigned rate, unsigned channels, double max_seconds)
        : dev_(std::move(dev)), format_(alsa_fmt(f)), rate_(rate), channels_(channels),
          fb_(wire::format_info(f)->physical_bytes * channels) {
        data.resize(static_cast<std::size_t>(max_seconds * rate) * fb_);
        stamps.reserve(static_cast<std::size_t>(max_seconds * rate / 120) + 64);
    }
    ~Recorder() { stop(); }

    std::string start() {
        // Small periods for many stamps, a deep buffer (0.5 s) so a busy guest never overruns it.
        if (auto e = open_plain(pcm_, dev_, SND_PCM_STREAM_CAPTURE, format_, rate_, channels_, rate_ / 400, 200); !e.empty())
            return e;
        if (int e = snd_pcm_start(pcm_.pcm); e < 0) return fmt::format("{}: start: {}", dev_, snd_strerror(e));
        thread_ = std::thread([this] { loop(); });
        make_rt(thread_.native_handle(), kTruthPriority);
        return {};
    }
    void stop() {
        if (!thread_.joinable()) return;
        quit_ = true;
        thread_.join();
        snd_pcm_drop(pcm_.pcm);
    }
    std::uint64_t frames() const { return frames_; }

    std::vector<std::uint8_t> data;
    std::vector<Stamp> stamps;
    std::uint64_t xruns = 0, lost = 0;

private:
    void loop() {
        snd_pcm_status_t* st;
        snd_pcm_status_alloca(&st);
        std::vector<std::uint8_t> spill(std::size_t{rate_ / 50} * fb_);
        while (!quit_) {
            snd_pcm_wait(pcm_.pcm, 100);
            for (;;) {
                const std::uint64_t cap = data.size() / fb_;
                std::uint8_t* dst = frames_ < cap ? data.data() + frames_ * fb_ : spill.data();
                const snd_pcm_uframes_t want = frames_ < cap ? cap - frames_ : spill.size() / fb_;
                const snd_pcm_sframes_t n = snd_pcm_readi(pcm_.pcm, dst, want);
                if (n == -EAGAIN || n == 0) break;
                if (n < 0) {
                    ++xruns;
                    snd_pcm_prepare(pcm_.pcm);
                    snd_pcm_start(pcm_.pcm);
                    break;
                }
                if (frames_ < cap) frames_ += static_cast<std::uint64_t>(n);
                else lost += static_cast<std::uint64_t>(n);
                if (n < static_cast<snd_pcm_sframes_t>(want)) break;
            }
            if (snd_pcm_status(pcm_.pcm, st) == 0 && snd_pcm_status_get_state(st) == SND_PCM_STATE_RUNNING)
                stamps.push_back({frames_ + lost + snd_pcm_status_get_avail(st), status_stamp(st)});
        }
    }

    std::string dev_;
    snd_pcm_format_t format_;
    unsigned rate_, channels_, fb_;
    Pcm pcm_;
    std::thread thread_;
    std::atomic<bool> quit_{false};
    std::uint64_t frames_ = 0;
};

// Plays the TestSignal continuously into one side of the cable, stamping played frames.
class Player {
public:
    Player(std::string dev, wire::PcmFormat f, unsigned rate, unsigned channels, std::uint32_t seed)
        : dev_(std::move(dev)), format_(alsa_fmt(f)), rate_(rate), channels_(channels),
          fb_(wire::format_info(f)->physical_bytes * channels), signal_(f, channels, seed) {
        stamps.reserve(200000);
    }
    ~Player() { stop(); }

    std::string start() {
        if (auto e = open_plain(pcm_, dev_, SND_PCM_STREAM_PLAYBACK, format_, rate_, channels_, rate_ / 200, 20); !e.empty())
            return e;
        thread_ = std::thread([this] { loop(); });
        make_rt(thread_.native_handle(), kTruthPriority);
        return {};
    }
    void stop() {
        if (!thread_.joinable()) return;
        quit_ = true;
        thread_.join();
        snd_pcm_drop(pcm_.pcm);
    }
    std::vector<Stamp> stamps;
    std::uint64_t written = 0, xruns = 0;

private:
    void loop() {
        snd_pcm_status_t* st;
        snd_pcm_status_alloca(&st);
        std::vector<std::uint8_t> buf(std::size_t{rate_ / 200} * fb_);
        const snd_pcm_uframes_t chunk = buf.size() / fb_;
        bool started = false;
        while (!quit_) {
            if (started) snd_pcm_wait(pcm_.pcm, 100);
            for (;;) {
                const snd_pcm_sframes_t avail = snd_pcm_avail_update(pcm_.pcm);
                if (avail < 0) {
                    ++xruns;
                    snd_pcm_prepare(pcm_.pcm);
                    started = false;
                    break;
                }
                if (avail < static_cast<snd_pcm_sframes_t>(chunk)) break;
                signal_.fill(buf, written);
                const snd_pcm_sframes_t n = snd_pcm_writei(pcm_.pcm, buf.data(), chunk);
                if (n < 0) {
                    ++xruns;
                    snd_pcm_prepare(pcm_.pcm);
                    started = false;
                    break;
                }
                written += static_cast<std::uint64_t>(n);
            }
            if (!started) {
                snd_pcm_start(pcm_.pcm);
                started = true;
            }
            if (snd_pcm_status(pcm_.pcm, st) == 0 && snd_pcm_status_get_state(st) == SND_PCM_STATE_RUNNING) {
                const auto delay = static_cast<std::uint64_t>(std::max<snd_pcm_sframes_t>(0, snd_pcm_status_get_delay(st)));
                stamps.push_back({written - std::min(delay, written), status_stamp(st)});
            }
        }
    }

    std::string dev_;
    snd_pcm_format_t format_;
    unsigned rate_, channels_, fb_;
    audio::TestSignal signal_;
    Pcm pcm_;
    std::thread thread_;
    std::atomic<bool> quit_{false};
};

// The truth about a continuously running PCM: frames(t) = (t − base(t))·rate with base(t) a line
// through the lower envelope of the stamps' implied start times (a stamp can only be late: the hw
// pointer moves in steps, the status is read after a step).
struct TruthLine {
    double b0 = 0, slope = 0, t0 = 0; // base(t) = b0 + slope·(t − t0)
    double rate = 48000;
    double spread_ms = 0, drift_ppm = 0;
    std::size_t windows = 0;
    double base(double t) const { return b0 + slope * (t - t0); }
    double frames_at(double t) const { return (t - base(t)) * rate / 1e9; }
    double time_of(double frames) const { // solve t − b0 − slope(t − t0) = frames/rate·1e9
        return (frames * 1e9 / rate + b0 - slope * t0) / (1 - slope);
    }
};

TruthLine fit_truth(const std::vector<Stamp>& stamps, double rate, Nanos skip_until = 0) {
    TruthLine L;
    L.rate = rate;
    std::vector<std::pair<double, double>> mins; // (t, min base) per 250 ms window
    double lo = 1e300, hi = -1e300;
    Nanos win_start = -1;
    std::pair<double, double> cur{0, 1e300};
    for (const auto& s : stamps) {
        if (s.frames == 0 || s.ts < skip_until) continue;
        const double b = static_cast<double>(s.ts) - static_cast<double>(s.frames) * 1e9 / rate;
        if (win_start < 0) win_start = s.ts;
        if (s.ts - win_start > 250'000'000) {
            if (cur.second < 1e300) mins.push_back(cur);
            cur = {0, 1e300};
            win_start = s.ts;
        }
        if (b < cur.second) cur = {static_cast<double>(s.ts), b};
        lo = std::min(lo, b);
        hi = std::max(hi, b);
    }
    if (cur.second < 1e300) mins.push_back(cur);
    L.windows = mins.size();
    if (mins.empty()) return L;
    L.spread_ms = (hi - lo) / 1e6;
    // Least squares through the window minima.
    double st = 0, sb = 0;
    for (auto& m : mins) { st += m.first; sb += m.second; }
    st /= mins.size();
    sb /= mins.size();
    double num = 0, den = 0;
    for (auto& m : mins) { num += (m.first - st) * (m.second - sb); den += (m.first - st) * (m.first - st); }
    L.t0 = st;
    L.slope = den > 0 ? num / den : 0;
    // The line sits on the lowest minimum (an envelope, not an average).
    double shift = 1e300;
    for (auto& m : mins) shift = std::min(shift, m.second - (sb + L.slope * (m.first - st)));
    L.b0 = sb + shift;
    L.drift_ppm = L.slope * 1e6;
    return L;
}

// ---- aligning received frames with the signal ------------------------------------------------------

struct Segment {
    std::uint64_t at;     // index in the received data
    std::uint64_t signal; // signal frame there
    std::uint64_t len;
};

struct Alignment {
    std::vector<Segment> segs;
    std::uint64_t matched = 0, zeros = 0, repeated = 0, skipped = 0;
    std::optional<std::uint64_t> bad; // first frame that is neither signal nor silence
    std::uint64_t next = 0;           // signal frames covered (the next expected)
    std::vector<std::string> events;  // rewinds and the first foreign frame, for the log

    // Signal frames received before index r (fractional).
    double signal_before(double r) const {
        const Segment* s = nullptr;
        for (const auto& g : segs) {
            if (static_cast<double>(g.at) > r) break;
            s = &g;
        }
        if (!s) return 0;
        return static_cast<double>(s->signal) + std::min(r - static_cast<double>(s->at), static_cast<double>(s->len));
    }
    // Index in the received data of signal frame k (its first occurrence: when it was first heard).
    std::optional<double> index_of(std::uint64_t k) const {
        for (const auto& g : segs)
            if (k >= g.signal && k < g.signal + g.len) return static_cast<double>(g.at + (k - g.signal));
        return std::nullopt;
    }
};

// `expected` holds signal frames [0, n). Playback: frames must come in order, silence may
// separate them, small rewinds (frames heard twice) are counted. Capture (`forward`): the data may
// jump ahead in the signal (frames not captured while paused or overrun).
Alignment align(std::span<const std::uint8_t> rec, std::span<const std::uint8_t> expected, unsigned fb, bool forward) {
    Alignment a;
    const std::uint64_t n = expected.size() / fb, frames = rec.size() / fb;
    auto sig = [&](std::uint64_t k) { return expected.data() + k * fb; };
    auto is_zero = [&](const std::uint8_t* p) { return std::all_of(p, p + fb, [](std::uint8_t b) { return b == 0; }); };
    std::uint64_t e = 0;
    bool in_seg = false;
    for (std::uint64_t r = 0; r < frames; ++r) {
        const std::uint8_t* f = rec.data() + r * fb;
        if (e < n && std::memcmp(f, sig(e), fb) == 0) {
            if (!in_seg) a.segs.push_back({r, e, 0});
            in_seg = true;
            ++a.segs.back().len;
            ++e;
            ++a.matched;
            continue;
        }
        if (is_zero(f)) {
            ++a.zeros;
            in_seg = false;
            continue;
        }
        std::optional<std::uint64_t> k;
        for (std::uint64_t back = 1; back <= std::min<std::uint64_t>(e, 8192) && !k; ++back)
            if (std::memcmp(f, sig(e - back), fb) == 0) k = e - back;
        if (k) {
            a.repeated += e - *k;
            if (a.events.size() < 12) a.events.push_back(fmt::format("frame {}: back from signal {} to {}", r, e, *k));
        }
        if (!k && forward)
            for (std::uint64_t j = e + 1; j < n && !k; ++j)
                if (std::memcmp(f, sig(j), fb) == 0) k = j;
        if (!k) {
            a.bad = r;
            std::optional<std::uint64_t> where;
            for (std::uint64_t j = 0; j < n && !where; ++j)
                if (std::memcmp(f, sig(j), fb) == 0) where = j;
            a.events.push_back(fmt::format("frame {}: expected signal {}, got {}", r, e,
                                           where ? fmt::format("signal frame {}", *where) : std::string("no signal frame")));
            break;
        }
        if (*k > e) a.skipped += *k - e;
        e = *k;
        a.segs.push_back({r, e, 1});
        in_seg = true;
        ++e;
        ++a.matched;
    }
    a.next = e;
    return a;
}

// ---- the device/driver rig ----------------------------------------------------------------------

// Wraps the ALSA backend to record every position() the device asks for (device thread).
class ProbeBackend final : public device::AudioBackend {
public:
    struct Sample {
        Nanos at;
        device::Position pos;
        std::uint32_t stream;
    };
    explicit ProbeBackend(device::AudioBackend& inner) : inner_(inner) { samples.reserve(400000); }
    std::string name() const override { return inner_.name(); }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t id,
                                                                       const device::StreamFormat& fmt) override {
        auto r = inner_.open(id, fmt);
        if (!r) return r;
        ++opens;
        return std::unique_ptr<device::BackendStream>(std::make_unique<Stream>(std::move(r).value(), *this, id));
    }
    std::vector<Sample> samples;
    std::atomic<bool> saw_failed{false};
    int opens = 0;

private:
    class Stream final : public device::BackendStream {
    public:
        Stream(std::unique_ptr<device::BackendStream> s, ProbeBackend& owner, std::uint32_t id)
            : s_(std::move(s)), owner_(owner), id_(id) {}
        void set_waker(device::Waker w) override {
            if (g_cli.waker) s_->set_waker(std::move(w)); // --no-waker: the device polls next_wakeup()
        }
        device::OpenState open_state() override { return s_->open_state(); }
        void start() override { s_->start(); }
        void stop() override { s_->stop(); }
        std::size_t writable_bytes() override { return s_->writable_bytes(); }
        void write(std::span<const std::uint8_t> b) override { s_->write(b); }
        std::size_t readable_bytes() override {
            // The device asks input streams for data, never for their position: sample it here.
            if (owner_.samples.size() < owner_.samples.capacity()) owner_.samples.push_back({g_clock.now(), s_->position(), id_});
            return s_->readable_bytes();
        }
        void read(std::span<std::uint8_t> o) override { s_->read(o); }
        device::Position position() override {
            const auto p = s_->position();
            if (owner_.samples.size() < owner_.samples.capacity()) owner_.samples.push_back({g_clock.now(), p, id_});
            return p;
        }
        std::optional<Nanos> next_wakeup() override { return s_->next_wakeup(); }
        std::uint64_t xruns() const override { return s_->xruns(); }
        bool failed() const override {
            const bool f = s_->failed();
            if (f) owner_.saw_failed = true;
            return f;
        }

    private:
        std::unique_ptr<device::BackendStream> s_;
        ProbeBackend& owner_;
        std::uint32_t id_;
    };
    device::AudioBackend& inner_;
};

struct Rig {
    explicit Rig(const std::string& dev, backends::AlsaOptions opts, unsigned outputs = 1)
        : alsa(g_clock, dev, with_log(std::move(opts))), probe(alsa),
          device(device::Topology::standard(outputs, 1), probe, g_clock, device::CompletionPolicy::Played) {
        link.publish_config(device.config(), device.device_features());
        device.set_logger([this](const std::string& m) { log("device: " + m); });
        driver_end = std::make_unique<transport::LoopbackDriverEnd>(link, g_clock);
        device_end = std::make_unique<transport::LoopbackDeviceEnd>(link, device);
        runner = std::make_unique<transport::DeviceRunner>(io, *device_end);
        runner->start();
        thread = std::thread([this] { io.run(); });
        drv = std::make_unique<driver::SoundDriver>(*driver_end, g_clock);
    }
    ~Rig() { stop_device(); }
    void stop_device() {
        if (!thread.joinable()) return;
        boost::asio::post(io, [this] { runner->stop(); io.stop(); });
        thread.join();
    }
    void log(const std::string& m) {
        std::lock_guard lock(mutex);
        logs.push_back(m);
        if (g_cli.verbose) fmt::print("    [{}] {}\n", ms(g_clock.now()) / 1000.0, m);
    }
    bool logged(const std::string& needle) {
        std::lock_guard lock(mutex);
        return std::any_of(logs.begin(), logs.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; });
    }
    void print_logs(const std::string& needle) {
        std::lock_guard lock(mutex);
        for (const auto& l : logs)
            if (l.find(needle) != std::string::npos) fmt::print("    log: {}\n", l);
    }
    backends::AlsaOptions with_log(backends::AlsaOptions o) {
        o.log = [this](const std::string& m) { log("alsa: " + m); };
        o.rt_priority = g_cli.rt;
        o.smooth_position = g_cli.smooth && o.smooth_position;
        return o;
    }

    std::mutex mutex;
    std::vector<std::string> logs;
    transport::LoopbackTransport link;
    backends::AlsaBackend alsa;
    ProbeBackend probe;
    device::SoundDevice device;
    std::unique_ptr<transport::LoopbackDriverEnd> driver_end;
    std::unique_ptr<transport::LoopbackDeviceEnd> device_end;
    boost::asio::io_context io;
    std::unique_ptr<transport::DeviceRunner> runner;
    std::thread thread;
    std::unique_ptr<driver::SoundDriver> drv;
};

void dump_csv(const std::string& name, const std::string& header, const std::vector<std::string>& rows) {
    if (g_cli.dump.empty()) return;
    std::ofstream f(g_cli.dump + "/" + name);
    f << header << "\n";
    for (const auto& r : rows) f << r << "\n";
}

// ---- playback ----------------------------------------------------------------------------------------

struct PlayConfig {
    std::string label;
    wire::PcmFormat format = wire::PcmFormat::S16;
    std::uint32_t rate = 48000;
    std::uint8_t channels = 2;
    std::uint32_t period = 480, periods = 8;
    double seconds = 6;
    bool pause = true, starve = true, timing = true;
    bool use_pause = true;
    bool neighbour = false; // a second stream is stopped and started g_cli.toggles times meanwhile
};

// Completion time − last frame audible (ms), for comparing runs.
struct PlayResult {
    Stats late;
    bool perturbed = false;
};

PlayResult run_playback(const PlayConfig& c) {
    fmt::print("\n[{}] playback {} {} Hz {} ch, guest period {} x {}, {} s, stop = {}\n", c.label,
               wire::name(c.format), c.rate, c.channels, c.period, c.periods, c.seconds,
               c.use_pause ? "pause" : "drop and keep");
    const unsigned fb = wire::format_info(c.format)->physical_bytes * c.channels;
    const std::uint64_t total = static_cast<std::uint64_t>(c.seconds * c.rate) / c.period * c.period;
    const Nanos pause_ns = 300'000'000, starve_ns = 300'000'000;

    Recorder rec(g_cli.rec_dev, c.format, c.rate, c.channels, c.seconds + 4.0);
    if (auto e = rec.start(); !e.empty()) { check(false, "recorder: {}", e); return {}; }
    sleep_ns(30'000'000);

    backends::AlsaOptions opts;
    opts.use_pause = c.use_pause;
    if (c.neighbour) opts.stream_devices[1] = g_cli.neighbour_dev;
    Rig rig(g_cli.play_dev, opts, c.neighbour ? 2 : 1);
    auto& drv = *rig.drv;
    if (auto r = drv.probe(); !r) { check(false, "probe: {}", r.error().message); return {}; }
    auto& s = drv.stream(0);
    const driver::PcmConfig cfg{c.format, c.rate, c.channels, c.period, c.periods, wire::bit(wire::PcmFeature::EvtXruns)};
    if (auto r = s.set_params(cfg); !r) { check(false, "set_params: {}", r.error().message); return {}; }
    if (auto r = s.prepare(); !r) { check(false, "prepare: {}", r.error().message); return {}; }
    // The neighbour: its ring filled once, then started and stopped at every completion of
    // stream 0 (it runs dry and underruns in between: ALSA recovery on its thread too).
    driver::PcmStream* other = c.neighbour ? &drv.stream(1) : nullptr;
    unsigned toggles = 0;
    Nanos toggle_max = 0;
    bool other_running = false;
    if (other) {
        if (auto r = other->set_params(cfg); !r) { check(false, "neighbour set_params: {}", r.error().message); return {}; }
        if (auto r = other->prepare(); !r) { check(false, "neighbour prepare: {}", r.error().message); return {}; }
        std::vector<std::uint8_t> fill(other->writable_bytes());
        other->write(fill);
    }

    audio::TestSignal signal(c.format, c.channels);
    std::vector<std::uint8_t> buf(s.period_bytes());
    struct ClockSample { Nanos at; double est; };
    struct Completion { Nanos at; std::uint64_t frames; std::uint32_t latency; };
    std::vector<ClockSample> clock_samples;
    std::vector<Completion> completions;
    std::vector<std::pair<Nanos, Nanos>> excluded; // windows where the driver clock cannot know
    std::uint64_t written = 0, seen = 0;
    bool started = false, paused_done = !c.pause, starve_done = !c.starve;
    Nanos starve_until = 0, t_pause = 0, t_paused = 0, t_resume = 0, t_starve = 0;
    const Nanos t_begin = g_clock.now();
    const Nanos deadline = t_begin + static_cast<Nanos>((c.seconds + 5) * 1e9);
    while ((written < total || s.in_flight()) && g_clock.now() < deadline) {
        const Nanos now = g_clock.now();
        if (!paused_done && written >= total * 35 / 100) {
            paused_done = true;
            t_pause = g_clock.now();
            if (auto r = s.stop(); !r) { check(false, "stop: {}", r.error().message); return {}; }
            t_paused = g_clock.now();
            sleep_ns(pause_ns);
            t_resume = g_clock.now();
            if (auto r = s.start(); !r) { check(false, "start after pause: {}", r.error().message); return {}; }
            excluded.push_back({t_pause, t_resume + 500'000'000});
            continue;
        }
        if (!starve_done && written >= total * 70 / 100) {
            starve_done = true;
            t_starve = now;
            starve_until = now + starve_ns;
        }
        const bool starving = now < starve_until;
        if (!starving && written < total && s.writable_bytes() >= buf.size()) {
            signal.fill(buf, written);
            written += s.write(buf) / fb;
            if (!started && written >= 2ull * c.period) {
                if (auto r = s.start(); !r) { check(false, "start: {}", r.error().message); return {}; }
                started = true;
            }
            continue;
        }
        Nanos timeout = kNanosPerSecond;
        if (starving) timeout = std::min(timeout, starve_until - now);
        drv.wait(timeout);
        if (s.periods_completed() != seen) {
            seen = s.periods_completed();
            if (other && toggles < g_cli.toggles) {
                const Nanos t0 = g_clock.now();
                auto r = other_running ? other->stop() : other->start();
                if (!r) { check(false, "neighbour {}: {}", other_running ? "stop" : "start", r.error().message); return {}; }
                toggle_max = std::max(toggle_max, g_clock.now() - t0);
                other_running = !other_running;
                ++toggles;
                if (other->writable_bytes() > 0) {
                    std::vector<std::uint8_t> fill(other->writable_bytes());
                    other->write(fill);
                }
            }
            const Nanos t = g_clock.now();
            completions.push_back({t, s.frames_completed(), s.last_latency_bytes()});
            if (s.clock().valid() && s.state() == driver::StreamState::Running)
                for (Nanos at : {t, t + static_cast<Nanos>(c.period) * kNanosPerSecond / c.rate / 2})
                    clock_samples.push_back({at, *s.clock().frames_at(at)});
        }
    }
    const Nanos t_drained = g_clock.now();
    if (other) {
        fmt::print("  neighbour: {} start/stop requests on stream 1, the slowest answered in {:.3f} ms\n", toggles,
                   ms(toggle_max));
        check(toggles == g_cli.toggles, "the neighbour was started and stopped {} times while stream 0 played", g_cli.toggles);
        if (other_running) (void)other->stop();
        (void)other->release();
    }
    if (t_starve) excluded.push_back({t_starve, starve_until + 500'000'000});
    const bool drained = written == total && s.in_flight() == 0;
    const auto stop_r = s.stop();
    const auto release_r = s.release();
    sleep_ns(150'000'000);
    rec.stop();
    rig.stop_device();
    const auto st = rig.device.stats(0);

    check(drained, "driver wrote {} of {} frames and every message completed (drain) in {:.3f} s", written, total,
          ms(t_drained - t_begin) / 1e3);
    check(stop_r.has_value() && release_r.has_value(), "STOP and RELEASE answered OK");
    std::size_t xrun_events = 0;
    for (const auto& ev : drv.events()) xrun_events += ev.type == wire::Code::EvtPcmXrun;
    fmt::print("  device: {} messages completed, {} xruns, {} I/O errors; driver: {} XRUN events, last latency_bytes {}\n",
               st.messages_completed, st.xruns, st.io_errors, xrun_events, s.last_latency_bytes());
    std::string timeline = "  driver timeline: start() +0";
    if (t_pause) timeline += fmt::format(", stop() +{:.3f} s, start() +{:.3f} s", ms(t_pause - t_begin) / 1e3, ms(t_resume - t_begin) / 1e3);
    if (t_starve) timeline += fmt::format(", not writing +{:.3f}..+{:.3f} s", ms(t_starve - t_begin) / 1e3, ms(starve_until - t_begin) / 1e3);
    fmt::print("{}, drained +{:.3f} s\n", timeline, ms(t_drained - t_begin) / 1e3);
    rig.print_logs("underrun");
    check(st.io_errors == 0, "no I/O errors");
    if (c.starve) {
        check(st.xruns >= 1 && xrun_events >= 1, "starving the device for {} ms gave an underrun, counted and sent as XRUN event",
              ms(starve_ns));
    }
    rig.print_logs("alsa: stream 0: hw");

    // snd-aloop moves data on the jiffies timer: if the guest stalls longer than the playback
    // buffer, it copies more than a lap in one go and the capture side sees replayed frames.
    Nanos stall = 0;
    for (std::size_t i = 1; i < rec.stamps.size(); ++i) stall = std::max(stall, rec.stamps[i].ts - rec.stamps[i - 1].ts);
    const auto plan = backends::plan_alsa_geometry(
        {wire::Direction::Output, c.format, c.rate, c.channels, c.period * fb, c.period * c.periods * fb}, {});
    const Nanos alsa_buffer_ns = static_cast<Nanos>(plan.buffer_frames) * kNanosPerSecond / c.rate;
    const bool perturbed = stall + static_cast<Nanos>(plan.period_frames) * kNanosPerSecond / c.rate >= alsa_buffer_ns;
    const std::string why = fmt::format("the guest stalled {:.0f} ms, about the ALSA buffer ({:.0f} ms)", ms(stall),
                                        ms(alsa_buffer_ns));
    fmt::print("  longest gap between recorder wake-ups (guest stall): {:.1f} ms; ALSA buffer {:.0f} ms\n", ms(stall),
               ms(alsa_buffer_ns));

    // What reached the other side of the cable?
    std::vector<std::uint8_t> expected(total * fb);
    signal.fill(expected, 0);
    const auto rec_bytes = std::span<const std::uint8_t>(rec.data).first(rec.frames() * fb);
    const Alignment al = align(rec_bytes, expected, fb, false);
    fmt::print("  recording: {} frames ({} lost to a full buffer, {} recorder xruns); signal {} / {} frames in {} runs, "
               "{} silent frames, {} frames repeated\n",
               rec.frames(), rec.lost, rec.xruns, al.next, total, al.segs.size(), al.zeros, al.repeated);
    if (al.bad) fmt::print("  first foreign frame at recording frame {}\n", *al.bad);
    for (const auto& ev : al.events) fmt::print("    alignment: {}\n", ev);
    if (rec.xruns || rec.lost)
        fmt::print("  the recorder itself overran: the guest stalled longer than its 0.5 s buffer; the recording has holes\n");
    check_unless(perturbed || rec.xruns, why, !al.bad && al.next == total && rec.lost == 0 && rec.xruns == 0,
                 "every signal frame reached the cable bit-exact and in order (nothing lost at stop)");
    if (c.use_pause) check_unless(perturbed, why, al.repeated == 0, "no frame played twice");
    else fmt::print("  drop-and-keep repeated {} frames ({:.3f} ms)\n", al.repeated, al.repeated * 1e3 / c.rate);
    for (std::size_t i = 1; i < al.segs.size(); ++i) {
        const auto& a = al.segs[i - 1];
        const auto& b = al.segs[i];
        fmt::print("  run {} ends at signal frame {}; {:.3f} ms of silence before the next run\n", i, a.signal + a.len,
                   (b.at - (a.at + a.len)) * 1e3 / c.rate);
    }
    if (!c.timing) return {};

    // Truth: the capture side's stamps (it runs continuously: one line).
    const TruthLine truth = fit_truth(rec.stamps, c.rate);
    fmt::print("  truth: {} capture stamps in {} windows; hw pointer step spread {:.3f} ms; capture clock vs "
               "CLOCK_MONOTONIC {:+.1f} ppm\n",
               rec.stamps.size(), truth.windows, truth.spread_ms, truth.drift_ppm);
    auto audible = [&](Nanos t) { return al.signal_before(truth.frames_at(static_cast<double>(t))); };
    auto truth_time = [&](std::uint64_t k) -> std::optional<double> { // when signal frame k (its start) was captured
        auto idx = al.index_of(k);
        if (!idx) return std::nullopt;
        return truth.time_of(*idx);
    };
    auto excluded_at = [&](Nanos t) {
        return std::any_of(excluded.begin(), excluded.end(), [&](auto& w) { return t >= w.first && t <= w.second; });
    };

    // 1. The backend's own position, extrapolated to when the device asked.
    std::vector<double> pos_err;
    std::vector<std::string> rows;
    for (const auto& p : rig.probe.samples) {
        if (p.stream != 0 || !p.pos.running || p.pos.frames == 0) continue;
        const double est = static_cast<double>(p.pos.frames) + static_cast<double>(p.at - p.pos.when) * c.rate / 1e9;
        const double err = (est - audible(p.at)) * 1e3 / c.rate;
        pos_err.push_back(err);
        rows.push_back(fmt::format("{},{},{},{:.3f}", p.at, p.pos.frames, p.pos.when, err));
    }
    for (const auto& p : rig.probe.samples) {
        if (p.stream != 0 || p.pos.running) continue;
        rows.push_back(fmt::format("{},{},{},stopped", p.at, p.pos.frames, p.pos.when));
    }
    dump_csv(c.label + "-position.csv", "at,frames,when,err_ms", rows);
    const Stats ps = stats_of(pos_err, true);
    fmt::print("  backend position() vs truth: {}\n", show(ps));

    // 2. The driver's playback clock (fed by completions), outside pause/starve windows and the first 0.5 s.
    std::vector<double> clk_err;
    rows.clear();
    for (const auto& cs : clock_samples) {
        if (cs.at < t_begin + 500'000'000 || excluded_at(cs.at) || cs.at > t_drained - 20'000'000) continue;
        const double err = (cs.est - audible(cs.at)) * 1e3 / c.rate;
        clk_err.push_back(err);
        rows.push_back(fmt::format("{},{:.3f},{:.3f}", cs.at, cs.est, err));
    }
    dump_csv(c.label + "-clock.csv", "at,estimate,err_ms", rows);
    const Stats cs = stats_of(clk_err, true);
    fmt::print("  driver playback clock (PcmStream::clock().frames_at) vs truth: {}\n", show(cs));

    // 3. Completion timing: each message completes when its last frame is audible.
    std::vector<double> late;
    rows.clear();
    for (const auto& cp : completions) {
        const std::uint64_t end = cp.frames; // frames completed so far = end of this message
        if (end == 0 || end > total) continue;
        auto t = truth_time(end - 1); // last frame captured (its start) ...
        if (!t) continue;
        const double heard = *t + 1e9 / c.rate; // ... and fully heard one frame later
        late.push_back((static_cast<double>(cp.at) - heard) / 1e6);
        rows.push_back(fmt::format("{},{},{:.3f}", cp.at, end, late.back()));
    }
    rows.push_back(fmt::format("# t_begin {} t_pause {} t_paused {} t_resume {} t_starve {} t_drained {}", t_begin, t_pause,
                               t_paused, t_resume, t_starve, t_drained));
    dump_csv(c.label + "-completions.csv", "at,frames,late_ms", rows);
    const Stats ls = stats_of(late, false);
    fmt::print("  completion time − last frame audible: min {:+.3f} ms, median {:+.3f} ms, 95% {:+.3f} ms, max {:+.3f} ms (n={})\n",
               ls.min, ls.median, ls.p95, ls.max, ls.n);
    if (auto t = truth_time(total - 1))
        fmt::print("  drain: last frame audible at +{:.3f} s, drain returned {:+.3f} ms later\n",
                   (*t - static_cast<double>(t_begin)) / 1e9, (static_cast<double>(t_drained) - *t - 1e9 / c.rate) / 1e6);
    if (c.pause && t_pause) {
        // Frames that became audible between the stop() call and the resume. The backend's stop
        // is asynchronous (its audio thread pauses the PCM; the device loop does not wait): the
        // PCM first plays what the device may already have completed, at most two host periods
        // (20 ms at most), then pauses.
        const double before = audible(t_pause), after = audible(t_resume);
        const double host_period_ms = std::min(2.0 * plan.period_frames * 1e3 / c.rate, 20.0);
        fmt::print("  pause: STOP answered in {:.3f} ms; {:.1f} frames ({:.2f} ms) became audible after it was sent\n",
                   ms(t_paused - t_pause), after - before, (after - before) * 1e3 / c.rate);
        check(after - before < c.rate / 1000.0 * (host_period_ms + 5),
              "the output pauses promptly (< {:.0f} ms of audio after STOP: two host periods + 5 ms)", host_period_ms + 5);
    }
    check_unless(perturbed, why, ps.n > 0 && ps.median < 1.0 && ps.p95 < 5.0, "backend position accurate (median < 1 ms, 95% < 5 ms)");
    // The driver clock also carries the device's and driver's wake-up latency (TCG guest): loose.
    check_unless(perturbed, why, cs.n > 0 && cs.median < 5.0, "driver playback clock follows (median < 5 ms)");
    check_unless(perturbed, why, ls.n > 0 && ls.min > -1.0, "no message completed before its last frame was audible (> 1 ms early)");
    return {ls, perturbed};
}

// Stream 0 alone, then beside a neighbour that is stopped and started all the time.
void run_neighbour() {
    const PlayConfig base{.label = "alone", .period = g_cli.period, .periods = g_cli.periods, .seconds = 4, .pause = false,
                          .starve = false};
    PlayConfig busy = base;
    busy.label = "neighbour";
    busy.neighbour = true;
    const PlayResult alone = run_playback(base);
    const PlayResult beside = run_playback(busy);
    fmt::print("\n[neighbour] completion lateness median / 95%: alone {:+.3f} / {:+.3f} ms, beside a toggled stream "
               "{:+.3f} / {:+.3f} ms\n",
               alone.late.median, alone.late.p95, beside.late.median, beside.late.p95);
    const bool perturbed = alone.perturbed || beside.perturbed;
    check_unless(perturbed, "the guest stalled about the ALSA buffer",
                 alone.late.n > 0 && beside.late.n > 0 && beside.late.median <= alone.late.median + 0.5 &&
                     beside.late.p95 <= alone.late.p95 + 2.5,
                 "stream 0's completions beside the toggled stream are as accurate as alone (median +0.5 ms, 95% +2.5 ms)");
}

// ---- capture -----------------------------------------------------------------------------------------

void run_capture() {
    const wire::PcmFormat format = wire::PcmFormat::S16;
    const std::uint32_t rate = 48000, period = g_cli.period, periods = g_cli.periods;
    const std::uint8_t channels = 2;
    const unsigned fb = 4;
    const double seconds = g_cli.seconds;
    fmt::print("\n[capture] AlsaBackend capture from {} while a player plays into {}, {} s\n", g_cli.rec_dev,
               g_cli.play_dev, seconds);
    const std::uint32_t seed = 7;
    Player player(g_cli.play_dev, format, rate, channels, seed);
    if (auto e = player.start(); !e.empty()) return check(false, "player: {}", e);
    sleep_ns(50'000'000);

    backends::AlsaOptions opts;
    opts.capture_device = g_cli.rec_dev;
    Rig rig(g_cli.play_dev, opts);
    auto& drv = *rig.drv;
    if (auto r = drv.probe(); !r) return check(false, "probe: {}", r.error().message);
    auto& s = drv.stream(1);
    const driver::PcmConfig cfg{format, rate, channels, period, periods, wire::bit(wire::PcmFeature::EvtXruns)};
    if (auto r = s.set_params(cfg); !r) return check(false, "set_params: {}", r.error().message);
    if (auto r = s.prepare(); !r) return check(false, "prepare: {}", r.error().message);
    if (auto r = s.start(); !r) return check(false, "start: {}", r.error().message);

    const std::uint64_t total = static_cast<std::uint64_t>(seconds * rate);
    std::vector<std::uint8_t> data(total * fb);
    std::uint64_t got = 0;
    bool paused = false, starved = false;
    Nanos t_pause = 0, t_paused = 0, t_resume = 0, t_resumed = 0, t_starve = 0, t_starve_end = 0;
    std::uint64_t got_at_pause = 0;
    const Nanos t_begin = g_clock.now(), deadline = t_begin + static_cast<Nanos>((seconds + 6) * 1e9);
    const Nanos ring_ns = static_cast<Nanos>(periods) * period * kNanosPerSecond / rate;
    while (got < total && g_clock.now() < deadline) {
        if (!paused && got >= total * 35 / 100) {
            paused = true;
            t_pause = g_clock.now();
            if (auto r = s.stop(); !r) return check(false, "stop: {}", r.error().message);
            t_paused = g_clock.now();
            sleep_ns(300'000'000);
            t_resume = g_clock.now();
            if (auto r = s.start(); !r) return check(false, "start after pause: {}", r.error().message);
            t_resumed = g_clock.now();
            got_at_pause = got;
        }
        if (!starved && got >= total * 70 / 100) {
            starved = true; // the guest stops reading: its ring, the host ring, then an overrun
            t_starve = g_clock.now();
            t_starve_end = t_starve + 2 * ring_ns + 400'000'000;
            while (g_clock.now() < t_starve_end) drv.wait(t_starve_end - g_clock.now());
        }
        // Read first: with nothing in flight (after the starve) no interrupt would come.
        const std::size_t n = std::min<std::size_t>(s.readable_bytes(), (total - got) * fb);
        got += s.read(std::span(data).subspan(got * fb, n)) / fb;
        if (got < total) drv.wait(100'000'000);
    }
    const auto stop_r = s.stop();
    const auto release_r = s.release();
    player.stop();
    rig.stop_device();
    const auto st = rig.device.stats(1);
    std::size_t xrun_events = 0;
    for (const auto& ev : drv.events()) xrun_events += ev.type == wire::Code::EvtPcmXrun && ev.data == 1;

    check(got == total, "driver captured {} of {} frames", got, total);
    check(stop_r.has_value() && release_r.has_value(), "STOP and RELEASE answered OK");
    fmt::print("  device: {} messages, {} bytes delivered, {} xruns, {} I/O errors; driver: {} XRUN events; player "
               "xruns {}\n",
               st.messages_completed, st.bytes_received, st.xruns, st.io_errors, xrun_events, player.xruns);
    check(st.xruns >= 1 && xrun_events >= 1, "the guest not reading gave an overrun, counted and sent as XRUN event");
    rig.print_logs("alsa: stream 1: hw");

    audio::TestSignal signal(format, channels, seed);
    std::vector<std::uint8_t> expected(player.written * fb);
    signal.fill(expected, 0);
    const Alignment al = align(std::span<const std::uint8_t>(data).first(got * fb), expected, fb, true);
    fmt::print("  captured data: {} runs of the signal, {} frames matched, {} silent, {} skipped (not captured while "
               "paused/overrun), {} repeated\n",
               al.segs.size(), al.matched, al.zeros, al.skipped, al.repeated);
    for (const auto& g : al.segs) fmt::print("    run at captured frame {} = signal frame {}, {} frames\n", g.at, g.signal, g.len);
    check(!al.bad && al.repeated == 0 && al.matched + al.zeros == got, "captured frames are the signal bit-exact (runs, no foreign frame)");
    check(al.segs.size() <= 4, "at most 4 runs (start, pause, overrun{})", al.segs.size() > 4 ? ", more found" : "");

    // Capture position vs the player's timing: captured stream frame c at t is signal frame
    // seg.signal + (c − seg.at), which the player says was being played at time t.
    const TruthLine truth = fit_truth(player.stamps, rate);
    fmt::print("  truth: {} player stamps, step spread {:.3f} ms, drift {:+.1f} ppm\n", player.stamps.size(),
               truth.spread_ms, truth.drift_ppm);
    for (std::size_t i = 1; i < al.segs.size(); ++i) {
        const auto& a = al.segs[i - 1];
        const auto& b = al.segs[i];
        const bool at_pause = a.at + a.len >= got_at_pause - 8 * period && a.at + a.len <= got_at_pause + 8 * period;
        fmt::print("  signal skipped between runs {} and {}: {} frames ({:.1f} ms){}\n", i, i + 1,
                   b.signal - (a.signal + a.len), (b.signal - (a.signal + a.len)) * 1e3 / rate,
                   at_pause ? fmt::format("; the player moved {:.1f}..{:.1f} ms between stop() and start()",
                                          (truth.frames_at(t_resume) - truth.frames_at(t_paused)) * 1e3 / rate,
                                          (truth.frames_at(t_resumed) - truth.frames_at(t_pause)) * 1e3 / rate)
                            : std::string());
    }
    std::vector<double> err;
    std::vector<std::string> rows;
    for (const auto& p : rig.probe.samples) {
        if (p.stream != 1 || !p.pos.running || p.pos.frames == 0) continue;
        // Around stop/start and the overrun the data jumps in the signal; a position a few ms
        // before such a jump extrapolates into frames the (jiffy-stepped) aloop never captured.
        if (p.at >= t_pause - 10'000'000 && p.at < t_resume + 200'000'000) continue;
        if (p.at >= t_starve && p.at < t_starve_end + 200'000'000) continue; // frames dropped meanwhile
        const double c = static_cast<double>(p.pos.frames) + static_cast<double>(p.at - p.pos.when) * rate / 1e9;
        const Segment* seg = nullptr;
        for (const auto& g : al.segs) if (static_cast<double>(g.at) <= c) seg = &g;
        if (!seg || c > static_cast<double>(seg->at + seg->len)) continue; // not a frame the guest received
        const double k = static_cast<double>(seg->signal) + (c - static_cast<double>(seg->at));
        err.push_back((k - truth.frames_at(static_cast<double>(p.at))) * 1e3 / rate);
        rows.push_back(fmt::format("{},{},{},{:.3f}", p.at, p.pos.frames, p.pos.when, err.back()));
    }
    for (const auto& p : rig.probe.samples)
        if (p.stream == 1 && !p.pos.running) rows.push_back(fmt::format("{},{},{},stopped", p.at, p.pos.frames, p.pos.when));
    rows.push_back(fmt::format("# t_begin {} t_pause {} t_resume {} t_starve {} t_starve_end {}", t_begin, t_pause, t_resume,
                               t_starve, t_starve_end));
    dump_csv("capture-position.csv", "at,frames,when,err_ms", rows);
    const Stats es = stats_of(err, true);
    fmt::print("  backend capture position() vs player: {}\n", show(es));
    check(es.n > 0 && es.median < 1.0 && es.p95 < 5.0, "capture position accurate (median < 1 ms, 95% < 5 ms)");
}

// ---- refusal -------------------------------------------------------------------------------------------

void run_refuse() {
    fmt::print("\n[refuse] a rate the PCM cannot take without resampling\n");
    Recorder rec(g_cli.rec_dev, wire::PcmFormat::S16, 48000, 2, 2.0); // the cable is now 48 kHz S16 2 ch
    if (auto e = rec.start(); !e.empty()) return check(false, "recorder: {}", e);
    Rig rig(g_cli.play_dev, {});
    auto& drv = *rig.drv;
    if (auto r = drv.probe(); !r) return check(false, "probe: {}", r.error().message);
    auto& s = drv.stream(0);
    if (auto r = s.set_params({wire::PcmFormat::S16, 44100, 2, 441, 4, 0}); !r)
        return check(false, "set_params: {}", r.error().message);
    auto r = s.prepare();
    check(!r && r.error().status == wire::Status::IoErr, "PREPARE at 44100 Hz answered IO_ERR ({})",
          r ? "succeeded" : r.error().message);
    check(rig.logged("rate 44100 Hz not supported"), "the device logged why");
    rig.print_logs("cannot open");
    if (auto r2 = s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}); !r2)
        return check(false, "set_params: {}", r2.error().message);
    auto r3 = s.prepare();
    check(r3.has_value(), "PREPARE at 48000 Hz then works");
    check(s.release().has_value(), "RELEASE answered OK");
    rec.stop();
}

// ---- device failure ------------------------------------------------------------------------------------

void run_fail() {
    fmt::print("\n[fail] {} disappears while playing (snd_dummy unbound)\n", g_cli.dummy_dev);
    Rig rig(g_cli.dummy_dev, {});
    auto& drv = *rig.drv;
    if (auto r = drv.probe(); !r) return check(false, "probe: {}", r.error().message);
    auto& s = drv.stream(0);
    const std::uint32_t rate = 48000, period = 480;
    if (auto r = s.set_params({wire::PcmFormat::S16, rate, 2, period, 8, 0}); !r)
        return check(false, "set_params: {}", r.error().message);
    if (auto r = s.prepare(); !r) return check(false, "prepare: {}", r.error().message);
    audio::TestSignal signal(wire::PcmFormat::S16, 2);
    std::vector<std::uint8_t> buf(s.period_bytes());
    const std::uint64_t total = 3 * rate;
    std::uint64_t written = 0;
    bool started = false;
    std::atomic<bool> unbound{false};
    std::thread unbinder;
    const Nanos t_begin = g_clock.now(), deadline = t_begin + 15 * kNanosPerSecond;
    Nanos t_unbind = 0;
    while ((written < total || s.in_flight()) && g_clock.now() < deadline) {
        if (!unbinder.joinable() && written >= rate) {
            t_unbind = g_clock.now();
            // Blocks until every file of the card is closed, i.e. until our RELEASE.
            unbinder = std::thread([&] {
                std::ofstream("/sys/bus/platform/drivers/snd_dummy/unbind") << "snd_dummy.0" << std::flush;
                unbound = true;
            });
        }
        if (written < total && s.writable_bytes() >= buf.size()) {
            signal.fill(buf, written);
            written += s.write(buf) / s.frame_bytes();
            if (!started && written >= 2 * period) {
                if (auto r = s.start(); !r) return check(false, "start: {}", r.error().message);
                started = true;
            }
            continue;
        }
        drv.wait(kNanosPerSecond);
    }
    const Nanos t_done = g_clock.now();
    check(written == total && s.in_flight() == 0, "every message still completed after the failure ({:.3f} s for {:.3f} s of audio)",
          ms(t_done - t_begin) / 1e3, static_cast<double>(total) / rate);
    check(s.stop().has_value() && s.release().has_value(), "STOP and RELEASE answered OK after the failure");
    check(rig.probe.saw_failed.load() || rig.logged("stream disabled"), "backend reported failed()");
    rig.print_logs("disabled");
    for (int i = 0; i < 50 && !unbound; ++i) sleep_ns(40'000'000);
    check(unbound.load(), "the card could go away once the stream was released");
    if (unbinder.joinable()) {
        if (unbound) unbinder.join();
        else unbinder.detach();
    }
    auto r = s.prepare();
    check(!r && r.error().status == wire::Status::IoErr, "PREPARE on the vanished card answers IO_ERR");
    rig.print_logs("cannot open");
    (void)t_unbind;
}

wire::PcmFormat parse_format(const std::string& f) {
    if (f == "S24") return wire::PcmFormat::S24;
    if (f == "S32") return wire::PcmFormat::S32;
    if (f == "FLOAT") return wire::PcmFormat::Float;
    return wire::PcmFormat::S16;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Checks the vsnd ALSA backend against snd-aloop / snd-dummy (run inside the test guest)"};
    std::vector<std::string> scenarios{"play", "formats", "drop", "neighbour", "capture", "refuse", "fail"};
    app.add_option("scenarios", scenarios, "play formats drop neighbour capture refuse fail raw one");
    app.add_option("--toggles", g_cli.toggles, "scenario 'neighbour': start/stop requests on the second stream");
    app.add_flag("--no-waker", [](std::int64_t) { g_cli.waker = false; }, "do not let the backend wake the device (it polls)");
    app.add_option("--seconds", g_cli.seconds, "length of the play and capture scenarios");
    app.add_option("--period", g_cli.period, "guest period (frames at 48 kHz)");
    app.add_option("--periods", g_cli.periods, "guest ring (periods)");
    app.add_option("--rt", g_cli.rt, "SCHED_FIFO priority for the audio threads (0: none)");
    app.add_flag("--no-smooth", [](std::int64_t) { g_cli.smooth = false; }, "publish raw hw pointer positions");
    app.add_option("--dump", g_cli.dump, "directory for CSV files");
    std::string one_format = "S16";
    std::uint32_t one_rate = 48000;
    unsigned one_channels = 2;
    app.add_option("--format", one_format, "scenario 'one': S16, S24, S32 or FLOAT");
    app.add_option("--rate", one_rate, "scenario 'one': rate");
    app.add_option("--channels", one_channels, "scenario 'one': channels");
    app.add_flag("-v,--verbose", g_cli.verbose, "print every log line as it happens");
    CLI11_PARSE(app, argc, argv);

    fmt::print("vsnd-alsa-check: {} CPUs, rt priority {}, smoothing {}\n", std::thread::hardware_concurrency(), g_cli.rt,
               g_cli.smooth ? "on" : "off");
    for (const auto& sc : scenarios) {
        if (sc == "play") run_playback({.label = "play", .period = g_cli.period, .periods = g_cli.periods, .seconds = g_cli.seconds});
        else if (sc == "raw") {
            const bool keep = g_cli.smooth;
            g_cli.smooth = false;
            run_playback({.label = "play-raw", .period = g_cli.period, .periods = g_cli.periods, .seconds = g_cli.seconds,
                          .pause = false, .starve = false});
            g_cli.smooth = keep;
        } else if (sc == "drop")
            run_playback({.label = "drop", .period = g_cli.period, .periods = g_cli.periods, .seconds = 3, .starve = false,
                          .use_pause = false});
        else if (sc == "formats") {
            run_playback({.label = "S24", .format = wire::PcmFormat::S24, .rate = 44100, .channels = 2, .period = 441,
                          .periods = 4, .seconds = 1.5, .pause = false, .starve = false});
            run_playback({.label = "S32", .format = wire::PcmFormat::S32, .rate = 96000, .channels = 1, .period = 960,
                          .periods = 6, .seconds = 1.5, .pause = false, .starve = false});
            run_playback({.label = "FLOAT", .format = wire::PcmFormat::Float, .rate = 48000, .channels = 6, .period = 1024,
                          .periods = 4, .seconds = 1.5, .pause = false, .starve = false});
            run_playback({.label = "S16-16k", .format = wire::PcmFormat::S16, .rate = 16000, .channels = 1, .period = 160,
                          .periods = 16, .seconds = 1.5, .pause = false, .starve = false});
        } else if (sc == "one")
            run_playback({.label = "one", .format = parse_format(one_format), .rate = one_rate, .channels = static_cast<std::uint8_t>(one_channels),
                          .period = g_cli.period, .periods = g_cli.periods, .seconds = g_cli.seconds, .pause = false,
                          .starve = false});
        else if (sc == "neighbour") run_neighbour();
        else if (sc == "capture") run_capture();
        else if (sc == "refuse") run_refuse();
        else if (sc == "fail") run_fail();
        else {
            fmt::print("unknown scenario {}\n", sc);
            ++g_failures;
        }
    }
    fmt::print("\nvsnd-alsa-check: {}{}\n", g_failures ? fmt::format("{} check(s) FAILED", g_failures) : "all checks passed",
               g_inconclusive ? fmt::format(", {} inconclusive (guest stalls)", g_inconclusive) : "");
    return g_failures ? 1 : 0;
}
