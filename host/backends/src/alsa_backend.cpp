// The ALSA backend (see alsa_backend.hpp for the model).
//
// Position. Playback: every status the audio thread takes gives `delay` (frames queued in ALSA
// plus the driver's own delay) at `htstamp` (CLOCK_MONOTONIC; the kernel moves it only when the
// hw pointer changes, so it names the instant the pointer reached its value — except right after
// a start or resume, where the trigger time bounds it); the frames audible then are the stream
// frames written to ALSA minus that delay. Capture: frames delivered to the ring plus ALSA's
// `avail` at htstamp (standing still while frames are dropped for lack of room). Many drivers move the hw pointer
// in steps (snd-aloop: one jiffy, 4 ms at HZ=250; BATCH and USB devices: a period or a packet),
// so a status taken between steps under-reports the position by up to one step. With
// smooth_position each sample's implied start time (htstamp − frames/rate) is passed through a
// minimum filter that may rise by at most kLeak (5000 ppm: a real clock's drift): the samples
// taken right after a step, which the poll wake-ups naturally are, pin the line, and the
// published `when` is that line's time for the frames (never later than htstamp).
//
// Not used: audio_tstamp. Link timestamps (SND_PCM_AUDIO_TSTAMP_TYPE_LINK*) exist on HDA
// hardware only; neither snd-aloop nor snd-dummy provides them, so that path could not be
// tested here. Whether the PCM offers them is logged at open.
#include "vsnd/backends/alsa_backend.hpp"
#include "vsnd/audio/alsa_format.hpp"
#include "vsnd/backends/clock_fallback_stream.hpp"
#include "vsnd/device/waker_slot.hpp"
#include "vsnd/timing/playback_clock.hpp"

#include <alsa/asoundlib.h>
#include <fmt/format.h>

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

namespace vsnd::backends {

// ---- lock-free pieces ---------------------------------------------------------------------------

namespace alsa_detail {

void SeqlockPosition::store(const PositionSnapshot& s) {
    const std::uint32_t seq = seq_.load(std::memory_order_relaxed);
    seq_.store(seq + 1, std::memory_order_relaxed); // odd: update in progress
    std::atomic_thread_fence(std::memory_order_release);
    frames_.store(s.frames, std::memory_order_relaxed);
    when_.store(s.when, std::memory_order_relaxed);
    limit_.store(s.limit, std::memory_order_relaxed);
    updated_.store(s.updated, std::memory_order_relaxed);
    running_.store(s.running, std::memory_order_relaxed);
    seq_.store(seq + 2, std::memory_order_release);
}

PositionSnapshot SeqlockPosition::load() const {
    for (;;) {
        const std::uint32_t before = seq_.load(std::memory_order_acquire);
        if (before & 1) continue;
        PositionSnapshot s;
        s.frames = frames_.load(std::memory_order_relaxed);
        s.when = when_.load(std::memory_order_relaxed);
        s.limit = limit_.load(std::memory_order_relaxed);
        s.updated = updated_.load(std::memory_order_relaxed);
        s.running = running_.load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (seq_.load(std::memory_order_relaxed) == before) return s;
    }
}

} // namespace alsa_detail

namespace {

using alsa_detail::PositionSnapshot;

constexpr double kLeak = 0.005;                  // smoothing: how fast the start-time line may rise
constexpr Nanos kStampSanity = kNanosPerSecond;  // an htstamp this far from now is not MONOTONIC
constexpr unsigned kMaxPollFds = 8;
constexpr std::uint64_t kRateUpdates = 64;       // DLL updates before its rate is reported

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
              std::atomic<std::uint32_t>::is_always_lock_free);

// The audio thread's time: CLOCK_MONOTONIC, the project's one monotonic clock (ALSA's htstamps
// are on it too), whatever clock the device was given.
Nanos mono_now() { return MonotonicClock{}.now(); }

Nanos to_nanos(const snd_htimestamp_t& ts) { return Nanos{ts.tv_sec} * kNanosPerSecond + ts.tv_nsec; }


using audio::alsa_format;

std::uint32_t frames_of(Nanos ns, std::uint32_t rate) {
    return static_cast<std::uint32_t>(static_cast<__int128>(ns) * rate / kNanosPerSecond);
}

Nanos nanos_of(std::uint64_t frames, std::uint32_t rate) {
    return static_cast<Nanos>(static_cast<__int128>(frames) * kNanosPerSecond / rate);
}

// Owns what open() creates until the stream takes it over.
struct PcmHandle {
    snd_pcm_t* pcm = nullptr;
    ~PcmHandle() { if (pcm) snd_pcm_close(pcm); }
    snd_pcm_t* release() { return std::exchange(pcm, nullptr); }
};

struct HwParamsFree { void operator()(snd_pcm_hw_params_t* p) const { snd_pcm_hw_params_free(p); } };
struct SwParamsFree { void operator()(snd_pcm_sw_params_t* p) const { snd_pcm_sw_params_free(p); } };

// ---- the stream ---------------------------------------------------------------------------------

class AlsaStream final : public device::BackendStream {
public:
    struct Setup {
        std::string pcm_name;
        std::uint32_t id = 0;
        device::StreamFormat fmt;
        AlsaGeometry geo;
        bool htstamp_ok = true;
    };

    // `predecessors`: streams the device closed whose audio threads may still hold a PCM; this
    // one opens its PCM only once they have let go (a hw device opens once; names can alias).
    AlsaStream(const Clock& clock, const AlsaOptions& opts, Setup setup, int wake_fd,
               std::vector<std::shared_ptr<AlsaStream>> predecessors);
    ~AlsaStream() override;
    AlsaStream(const AlsaStream&) = delete;
    AlsaStream& operator=(const AlsaStream&) = delete;

    // Device thread, from AlsaBackend::open(): starts the audio thread, which opens the PCM.
    void launch(std::shared_ptr<AlsaStream> self);
    std::thread retire();
    bool closed() const { return closed_.load(std::memory_order_acquire); }
    const std::string& pcm_name() const { return setup_.pcm_name; }

    void set_waker(device::Waker wake) override;
    device::OpenState open_state() override;
    void start() override { command(true); }
    void stop() override { command(false); }
    std::size_t writable_bytes() override;
    void write(std::span<const std::uint8_t> bytes) override;
    std::size_t readable_bytes() override;
    void read(std::span<std::uint8_t> out) override;
    device::Position position() override;
    std::optional<Nanos> next_wakeup() override;
    std::uint64_t xruns() const override { return xruns_.load(std::memory_order_acquire); }
    bool failed() const override;

private:
    enum class Hw { Prepared, Running, Paused };

    // Device thread.
    void command(bool run);
    device::Position live_position();
    void signal_audio_thread() const;
    void log(const std::string& msg) const;
    void notice_events();
    Nanos start_grace() const { return opts_.start_grace > 0 ? opts_.start_grace : period_ns_; }

    // Audio thread.
    std::optional<std::string> open_pcm(); // the reason it failed, if it did
    void run();
    void finish();
    void wake_device();
    void apply(bool run);
    void playback_cycle(Nanos now);
    void capture_cycle();
    void start_pcm();
    void pause_pcm();
    void resume_pcm();
    void take_status();           // running: new position from snd_pcm_status
    void publish(std::uint64_t frames, Nanos stamp, bool running);
    void on_xrun(Nanos when);
    void handle_error(long err, const char* what);
    void fail(long err, const char* what);
    int poll_timeout_ms(Nanos now, bool& poll_pcm);

    const Clock& clock_;
    AlsaOptions opts_;
    const bool output_;
    const std::uint32_t fb_, rate_;
    const int wake_fd_;
    std::thread thread_;
    std::vector<std::shared_ptr<AlsaStream>> predecessors_; // audio thread: waits, then drops them

    // Written by the audio thread while opening, read by the device thread only once open_state_
    // says Ready (release/acquire).
    Setup setup_;
    Nanos period_ns_ = 0;
    snd_pcm_t* pcm_ = nullptr;
    snd_pcm_status_t* status_ = nullptr;
    std::array<pollfd, kMaxPollFds> pfds_{};
    unsigned npfds_ = 0;
    std::unique_ptr<alsa_detail::SpscByteRing> ring_;
    std::vector<std::uint8_t> scratch_; // capture: frames read and dropped when the ring is full

    // Shared between the threads.
    device::OpenStateSlot open_state_;
    std::atomic<std::uint32_t> cmd_seq_{0}, ack_seq_{0};
    std::atomic<bool> want_running_{false}, quit_{false}, closed_{false};
    std::atomic<std::uint64_t> stop_target_{0}; // published before cmd_seq_ (release)
    std::atomic<bool> need_data_{false};
    std::atomic<std::uint64_t> xruns_{0};
    std::atomic<bool> failed_{false};
    std::array<char, 256> fail_msg_{}; // written before failed_ is released
    alsa_detail::SeqlockPosition pos_;
    std::atomic<double> rate_ratio_{1.0};             // a hint: relaxed is enough
    device::WakerSlot waker_;

    // Audio thread only.
    Hw hw_ = Hw::Prepared;
    bool active_ = false;
    std::uint32_t handled_seq_ = 0;
    std::uint64_t alsa_frames_ = 0; // playback: stream frames written to ALSA; capture: frames delivered
    std::uint64_t played_ = 0;      // playback: frames audible (released from the ring)
    std::uint64_t alsa_fill_ = 0;   // playback: frames queued in ALSA at the last look
    std::uint64_t seen_tail_ = 0;   // playback: ring tail at the last look ...
    Nanos last_arrival_ = 0;        // ... and when it last grew (start grace counts from there)
    PositionSnapshot last_;         // the last published position
    timing::PlaybackClock rate_dll_;
    bool overflow_ = false;         // capture: dropping frames for lack of room
    bool have_base_ = false;
    double base_ = 0;               // smoothing: start time of the current run's line (ns)
    Nanos base_at_ = 0;
    unsigned idle_wakeups_ = 0;
    std::uint64_t woken_at_ = 0;    // ring head (playback) or tail (capture) the device last heard of
    std::uint64_t woken_xruns_ = 0;
    bool woken_failed_ = false;
    PositionSnapshot woken_pos_;

    // Device thread only.
    bool want_ = false;
    std::uint32_t stop_seq_ = 0;    // a stop the audio thread has not acknowledged yet ...
    device::Position frozen_;       // ... and the position the device saw when it asked for it
    std::uint64_t seen_xruns_ = 0;
    mutable std::atomic<bool> fail_logged_{false};
};

AlsaStream::AlsaStream(const Clock& clock, const AlsaOptions& opts, Setup setup, int wake_fd,
                       std::vector<std::shared_ptr<AlsaStream>> predecessors)
    : clock_(clock), opts_(opts), output_(setup.fmt.direction == wire::Direction::Output),
      fb_(setup.fmt.frame_bytes()), rate_(setup.fmt.rate), wake_fd_(wake_fd), predecessors_(std::move(predecessors)),
      setup_(std::move(setup)), rate_dll_(std::max(1u, rate_)) {}

void AlsaStream::launch(std::shared_ptr<AlsaStream> self) {
    // The thread keeps the stream alive: after the device has let go of it, the thread still
    // finishes opening, pauses, drops and closes the PCM, then ends (finish()).
    thread_ = std::thread([self = std::move(self)] {
        // Polled, so that a stream retired while it waits (its PREPARE timed out) gives up.
        for (const auto& p : self->predecessors_)
            while (!p->closed() && !self->quit_.load(std::memory_order_acquire)) {
                const timespec nap{0, 1'000'000};
                nanosleep(&nap, nullptr);
            }
        self->predecessors_.clear();
        if (self->quit_.load(std::memory_order_acquire)) {
            self->open_state_.publish("closed before it opened");
            self->finish();
            return;
        }
        auto error = self->open_pcm();
        const bool opened = !error;
        self->open_state_.publish(std::move(error));
        // seq_cst with the waker slot and the device's open_state() load: either the device sees
        // the new state right after setting the waker, or this wake-up reaches it.
        self->waker_.wake();
        if (opened) self->run();
        self->finish();
    });
    const std::string tname = fmt::format("vsnd-alsa-{}", setup_.id).substr(0, 15);
    pthread_setname_np(thread_.native_handle(), tname.c_str());
    if (opts_.rt_priority > 0) {
        sched_param sp{};
        sp.sched_priority = opts_.rt_priority;
        if (int e = pthread_setschedparam(thread_.native_handle(), SCHED_FIFO, &sp); e != 0)
            log(fmt::format("stream {}: cannot make the audio thread SCHED_FIFO {}: {}", setup_.id, opts_.rt_priority,
                            std::strerror(e)));
    }
}

// Whoever drops the last reference (the backend, after joining the thread; or open() when the
// thread could not start). The eventfd lives as long as the stream: the device may still signal it.
AlsaStream::~AlsaStream() { ::close(wake_fd_); }

// Device thread: the device has closed the stream. Returns at once; the audio thread carries out
// a STOP still pending (or finishes opening), then quits and closes the PCM (finish()). Returns the thread for the
// backend to join once it has finished.
std::thread AlsaStream::retire() {
    quit_.store(true, std::memory_order_release);
    signal_audio_thread();
    return std::move(thread_);
}

// Audio thread, after its loop ended (or its open failed): lets go of everything, then tells the
// backend (and a stream waiting to open the same PCM) that it has.
void AlsaStream::finish() {
    if (pcm_) {
        snd_pcm_drop(pcm_);
        snd_pcm_close(pcm_);
        notice_events(); // a failure nobody asked about still gets its log line
    }
    if (status_) snd_pcm_status_free(status_);
    closed_.store(true, std::memory_order_release);
    closed_.notify_all();
}

device::OpenState AlsaStream::open_state() { return open_state_.load(); }

// ---- device thread ------------------------------------------------------------------------------

void AlsaStream::log(const std::string& msg) const {
    if (opts_.log) opts_.log(msg);
    else fmt::print(stderr, "vsnd alsa: {}\n", msg);
}

void AlsaStream::signal_audio_thread() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

void AlsaStream::set_waker(device::Waker wake) { waker_.set(std::move(wake)); }

// Posts the command and returns: the audio thread applies it (ALSA calls may take milliseconds)
// and wakes the device when done. Until a stop is acknowledged the position holds where the
// device last saw it; the audio thread lets the hardware play at least that far before pausing,
// so nothing the device has completed as audible is cut.
void AlsaStream::command(bool run) {
    if (!run && want_) {
        frozen_ = live_position();
        if (frozen_.running) {
            const Nanos now = clock_.now();
            if (now > frozen_.when) frozen_.frames += frames_of(now - frozen_.when, rate_);
            frozen_.when = std::max(frozen_.when, now);
            frozen_.running = false;
        }
    }
    // The frames the device saw as audible when it asked: the audio thread plays at least this far.
    if (!run) stop_target_.store(want_ ? frozen_.frames : 0, std::memory_order_relaxed);
    want_ = run;
    want_running_.store(run, std::memory_order_release);
    const std::uint32_t seq = cmd_seq_.fetch_add(1, std::memory_order_acq_rel) + 1;
    stop_seq_ = run ? 0 : seq;
    signal_audio_thread();
    notice_events();
}

bool AlsaStream::failed() const {
    if (!failed_.load(std::memory_order_acquire)) return false;
    if (!fail_logged_.exchange(true)) log(fmt::format("stream {}: {}", setup_.id, fail_msg_.data()));
    return true;
}

void AlsaStream::notice_events() {
    (void)failed();
    const std::uint64_t x = xruns_.load(std::memory_order_acquire);
    if (x != seen_xruns_) {
        const PositionSnapshot s = pos_.load();
        log(fmt::format("stream {}: {} on {} ({} so far) at frame {}, {:.1f} ms ago; recovered", setup_.id,
                        output_ ? "underrun" : "overrun", setup_.pcm_name, x, s.frames,
                        static_cast<double>(clock_.now() - s.when) / 1e6));
        seen_xruns_ = x;
    }
}

std::size_t AlsaStream::writable_bytes() { return output_ ? ring_->free_bytes() : 0; }

void AlsaStream::write(std::span<const std::uint8_t> bytes) {
    if (!output_) return;
    ring_->push(bytes.first(std::min(bytes.size(), ring_->free_bytes())));
    // Dekker with the audio thread's need_data_ store / tail load.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (need_data_.load(std::memory_order_relaxed) && need_data_.exchange(false)) signal_audio_thread();
}

std::size_t AlsaStream::readable_bytes() {
    return output_ ? 0 : ring_->used_bytes();
}

void AlsaStream::read(std::span<std::uint8_t> out) {
    if (output_) return;
    ring_->pop(out.first(std::min(out.size(), ring_->used_bytes())));
}

device::Position AlsaStream::position() {
    if (stop_seq_) {
        if (static_cast<std::int32_t>(ack_seq_.load(std::memory_order_acquire) - stop_seq_) < 0) return frozen_;
        stop_seq_ = 0;
    }
    return live_position();
}

device::Position AlsaStream::live_position() {
    const PositionSnapshot s = pos_.load();
    if (s.running && output_) {
        // Never extrapolate past what ALSA has: the stream is about to underrun.
        const Nanos to_limit = nanos_of(s.limit - std::min(s.limit, s.frames), rate_);
        if (clock_.now() - s.when > to_limit) return {std::max(s.limit, s.frames), s.when + to_limit, false};
    }
    return {s.frames, s.when, s.running, rate_ratio_.load(std::memory_order_relaxed)};
}

std::optional<Nanos> AlsaStream::next_wakeup() {
    notice_events();
    const Nanos now = clock_.now();
    if (!want_) return std::nullopt;
    // The audio thread wakes the device whenever room or data appears (set_waker).
    if (waker_.is_set()) return std::nullopt;
    // Without a waker: it refreshes room/data about once a host period; look just after that.
    const PositionSnapshot s = pos_.load();
    const Nanos margin = std::min<Nanos>(period_ns_ / 4, 1'000'000);
    Nanos t = s.updated + period_ns_ + margin;
    if (t <= now) t = now + std::max<Nanos>(period_ns_ / 4, 250'000);
    return t;
}

// ---- audio thread -------------------------------------------------------------------------------

void AlsaStream::publish(std::uint64_t frames, Nanos stamp, bool running) {
    Nanos when = stamp;
    if (running && opts_.smooth_position) {
        const double b = static_cast<double>(stamp) - static_cast<double>(frames) * 1e9 / rate_;
        const double leaked = base_ + kLeak * static_cast<double>(stamp - base_at_);
        // A sample later than the line by more than a granularity could explain is a new line.
        const double max_lag = 2.0 * static_cast<double>(period_ns_) + 10e6;
        if (!have_base_ || b <= leaked || b - leaked > max_lag) base_ = b;
        else base_ = leaked;
        have_base_ = true;
        base_at_ = stamp;
        when = static_cast<Nanos>(std::llround(base_ + static_cast<double>(frames) * 1e9 / rate_));
        when = std::min(when, stamp);
    }
    last_ = {frames, when, output_ ? alsa_frames_ : frames, mono_now(), running};
    pos_.store(last_);
    // The card's rate against CLOCK_MONOTONIC, from the raw samples through a slow DLL; reported
    // once locked and only while plausible for a crystal (±1000 ppm), else nominal.
    if (running) rate_dll_.update(static_cast<double>(frames), stamp);
    else if (rate_dll_.valid()) rate_dll_.pause(stamp);
    const double r = rate_dll_.rate() / rate_;
    const bool plausible = rate_dll_.updates() >= kRateUpdates && std::abs(r - 1.0) < 1e-3;
    rate_ratio_.store(plausible ? r : 1.0, std::memory_order_relaxed);
}

void AlsaStream::fail(long err, const char* what) {
    std::snprintf(fail_msg_.data(), fail_msg_.size(), "%s: %s failed: %s; stream disabled", setup_.pcm_name.c_str(),
                  what, snd_strerror(static_cast<int>(err)));
    snd_pcm_drop(pcm_);
    publish(output_ ? played_ : alsa_frames_, mono_now(), false);
    failed_.store(true, std::memory_order_release);
}

void AlsaStream::on_xrun(Nanos when) {
    xruns_.fetch_add(1, std::memory_order_acq_rel);
    if (output_) {
        // Everything written was played (the silence fill covers whatever the hardware read past it).
        played_ = alsa_frames_;
        ring_->commit_read(played_ * fb_);
    }
    publish(output_ ? played_ : alsa_frames_, when, false);
    have_base_ = false;
    alsa_fill_ = 0;
    hw_ = Hw::Prepared;
    if (int e = snd_pcm_prepare(pcm_); e < 0) return fail(e, "snd_pcm_prepare after xrun");
    if (!output_ && active_) start_pcm(); // capture restarts at once; playback once refilled
}

void AlsaStream::handle_error(long err, const char* what) {
    switch (err) {
    case -EAGAIN:
    case -EINTR: return;
    case -EPIPE: {
        Nanos when = mono_now();
        if (snd_pcm_status(pcm_, status_) == 0 && snd_pcm_status_get_state(status_) == SND_PCM_STATE_XRUN) {
            snd_htimestamp_t ts;
            snd_pcm_status_get_trigger_htstamp(status_, &ts);
            const Nanos t = to_nanos(ts);
            if (setup_.htstamp_ok && std::llabs(t - when) < kStampSanity) when = t;
        }
        return on_xrun(when);
    }
    case -ESTRPIPE: {
        const int r = snd_pcm_resume(pcm_);
        if (r == -EAGAIN) return; // try again at the next wake-up
        if (r == 0) return;       // resumed where it was
        return on_xrun(mono_now()); // no resume support: prepare and restart
    }
    default: return fail(err, what);
    }
}

void AlsaStream::take_status() {
    if (int e = snd_pcm_status(pcm_, status_); e < 0) return handle_error(e, "snd_pcm_status");
    const snd_pcm_state_t st = snd_pcm_status_get_state(status_);
    const Nanos now = mono_now();
    switch (st) {
    case SND_PCM_STATE_RUNNING:
    case SND_PCM_STATE_DRAINING: break;
    case SND_PCM_STATE_XRUN: return handle_error(-EPIPE, "status");
    case SND_PCM_STATE_SUSPENDED: return handle_error(-ESTRPIPE, "status");
    case SND_PCM_STATE_DISCONNECTED: return fail(-ENODEV, "snd_pcm_status");
    case SND_PCM_STATE_PREPARED: // stopped behind our back (resumed without RESUME support): restart
        return on_xrun(now);
    default: return fail(-EBADFD, "snd_pcm_status (unexpected PCM state)");
    }
    // htstamp is when the hw pointer last *changed* (the kernel refreshes it only then), which is
    // exactly right while running, but right after a start or resume it still names an instant
    // before the run began (e.g. before the pause): the run cannot have been there earlier than
    // its trigger, so the trigger time bounds it.
    snd_htimestamp_t ts, trig;
    snd_pcm_status_get_htstamp(status_, &ts);
    snd_pcm_status_get_trigger_htstamp(status_, &trig);
    Nanos stamp = to_nanos(ts);
    if (!setup_.htstamp_ok || stamp == 0 || std::llabs(stamp - now) > kStampSanity) stamp = now;
    else if (const Nanos t = to_nanos(trig); t > stamp && t <= now) stamp = t;
    const snd_pcm_sframes_t delay = snd_pcm_status_get_delay(status_);
    if (output_) {
        const std::uint64_t queued = static_cast<std::uint64_t>(std::max<snd_pcm_sframes_t>(delay, 0));
        const std::uint64_t played = alsa_frames_ - std::min(queued, alsa_frames_);
        if (played > played_) {
            played_ = played;
            ring_->commit_read(played_ * fb_);
        }
        publish(played_, stamp, true);
    } else if (overflow_) {
        // Frames are being dropped for lack of room: the stream does not advance.
        have_base_ = false;
        publish(alsa_frames_, stamp, false);
    } else {
        const snd_pcm_uframes_t avail = snd_pcm_status_get_avail(status_);
        publish(alsa_frames_ + avail, stamp, true);
    }
}

void AlsaStream::start_pcm() {
    if (int e = snd_pcm_start(pcm_); e < 0) return handle_error(e, "snd_pcm_start");
    hw_ = Hw::Running;
    have_base_ = false;
    take_status();
}

void AlsaStream::pause_pcm() {
    // The last look at the PCM may be a while ago: an underrun since then leaves nothing to pause.
    take_status();
    if (failed_.load(std::memory_order_relaxed) || hw_ != Hw::Running) return;
    if (output_) {
        // The device may already have completed frames our (smoothed, extrapolated) position
        // called audible when it asked for the stop, but the hardware pointer has not passed yet
        // (it moves in steps). Let the hardware get there before stopping, or those frames would
        // never be heard: a drain followed by STOP and RELEASE would cut them. Bounded by two host
        // periods (the most a position can lead the pointer by) and 20 ms.
        const Nanos now = mono_now();
        const std::uint64_t claimed = std::min<std::uint64_t>(alsa_frames_, stop_target_.load(std::memory_order_relaxed));
        const Nanos until = now + std::min<Nanos>(2 * period_ns_, 20'000'000);
        while (played_ < claimed && hw_ == Hw::Running && !failed_.load(std::memory_order_relaxed) && mono_now() < until) {
            const timespec nap{0, 250'000};
            nanosleep(&nap, nullptr);
            take_status();
        }
        if (failed_.load(std::memory_order_relaxed) || hw_ != Hw::Running) return;
    }
    if (!output_) capture_cycle(); // deliver what was captured up to now
    if (failed_.load(std::memory_order_relaxed) || hw_ != Hw::Running) return;
    const bool can_pause = setup_.geo.pause;
    if (can_pause) {
        if (int e = snd_pcm_pause(pcm_, 1); e < 0) {
            // -EBADFD: the PCM left RUNNING between the status and the pause (an underrun).
            if (e == -EBADFD && snd_pcm_state(pcm_) == SND_PCM_STATE_XRUN) return handle_error(-EPIPE, "snd_pcm_pause(1)");
            return handle_error(e, "snd_pcm_pause(1)");
        }
        hw_ = Hw::Paused;
        Nanos when = mono_now();
        if (snd_pcm_status(pcm_, status_) == 0) {
            snd_htimestamp_t ts;
            snd_pcm_status_get_trigger_htstamp(status_, &ts); // the pause instant
            const Nanos t = to_nanos(ts);
            if (setup_.htstamp_ok && std::llabs(t - when) < kStampSanity) when = t;
            const snd_pcm_uframes_t avail = snd_pcm_status_get_avail(status_);
            if (output_) {
                const std::uint64_t buffer = setup_.geo.buffer_frames;
                const std::uint64_t queued = buffer - std::min<std::uint64_t>(avail, buffer);
                const std::uint64_t played = alsa_frames_ - std::min(queued, alsa_frames_);
                if (played > played_) {
                    played_ = played;
                    ring_->commit_read(played_ * fb_);
                }
                publish(played_, when, false);
            } else {
                publish(alsa_frames_ + avail, when, false);
            }
        }
        have_base_ = false;
        return;
    }
    // Drop and keep: our ring still holds every frame not yet played.
    take_status();
    if (failed_.load(std::memory_order_relaxed) || hw_ != Hw::Running) return;
    const Nanos when = mono_now();
    snd_pcm_drop(pcm_);
    if (output_) {
        alsa_frames_ = played_; // the unplayed rest is written again on start()
        alsa_fill_ = 0;
    }
    publish(output_ ? played_ : alsa_frames_, when, false);
    have_base_ = false;
    hw_ = Hw::Prepared;
    if (int e = snd_pcm_prepare(pcm_); e < 0) fail(e, "snd_pcm_prepare after drop");
}

void AlsaStream::resume_pcm() {
    if (int e = snd_pcm_pause(pcm_, 0); e < 0) return handle_error(e, "snd_pcm_pause(0)");
    hw_ = Hw::Running;
    have_base_ = false;
    take_status();
}

void AlsaStream::apply(bool run) {
    if (run == active_) return;
    active_ = run;
    if (run) {
        if (hw_ == Hw::Paused) resume_pcm();
        else if (hw_ == Hw::Prepared) {
            if (output_) playback_cycle(mono_now()); // starts at once if pre-filled
            else start_pcm();
        }
        return;
    }
    if (hw_ == Hw::Running) pause_pcm();
}

void AlsaStream::playback_cycle(Nanos now) {
    if (hw_ == Hw::Paused) return;
    if (const std::uint64_t tail = ring_->tail_acquire(); tail != seen_tail_) {
        seen_tail_ = tail;
        last_arrival_ = now;
    }
    if (hw_ == Hw::Running) take_status(); // fresh position and room first (may find an xrun)
    // Ring -> ALSA, up to the fill level (measured by ALSA's own avail).
    for (int guard = 0; guard < 8 && !failed_.load(std::memory_order_relaxed); ++guard) {
        const snd_pcm_sframes_t avail = snd_pcm_avail_update(pcm_);
        if (avail < 0) {
            handle_error(avail, "snd_pcm_avail_update");
            continue;
        }
        const std::uint64_t buffer = setup_.geo.buffer_frames;
        alsa_fill_ = buffer - std::min<std::uint64_t>(static_cast<std::uint64_t>(avail), buffer);
        const std::uint64_t unsent = ring_->tail_acquire() / fb_ - alsa_frames_;
        const std::uint64_t room = setup_.geo.fill_frames > alsa_fill_ ? setup_.geo.fill_frames - alsa_fill_ : 0;
        const std::uint64_t n = std::min(unsent, room);
        if (n == 0) break;
        const auto region = ring_->read_region(alsa_frames_ * fb_, static_cast<std::size_t>(n) * fb_);
        const snd_pcm_sframes_t w =
            snd_pcm_writei(pcm_, region.data(), static_cast<snd_pcm_uframes_t>(region.size() / fb_));
        if (w == -EAGAIN || w == 0) break;
        if (w < 0) {
            handle_error(w, "snd_pcm_writei");
            continue;
        }
        alsa_frames_ += static_cast<std::uint64_t>(w);
        alsa_fill_ += static_cast<std::uint64_t>(w);
        guard = 0;
    }
    if (failed_.load(std::memory_order_relaxed)) return;
    if (hw_ == Hw::Running) {
        last_.limit = alsa_frames_; // same position, more frames behind it
        pos_.store(last_);
        return;
    }
    // Prepared: start once the host buffer is full, or once the device has brought nothing new
    // for the grace time (the end of a stream, a guest that pre-fills less): counted by what we
    // wrote since the last played position, nothing plays before the start.
    const std::uint64_t queued = alsa_frames_ - played_;
    if (!active_ || queued == 0) return;
    if (queued >= setup_.geo.start_frames || now - last_arrival_ >= start_grace()) start_pcm();
}

void AlsaStream::capture_cycle() {
    if (hw_ != Hw::Running) return;
    // At most one ALSA buffer per cycle: a source faster than its clock must not hold this thread.
    for (std::uint64_t taken = 0; taken < setup_.geo.buffer_frames;) {
        const snd_pcm_sframes_t avail = snd_pcm_avail_update(pcm_);
        if (avail < 0) return handle_error(avail, "snd_pcm_avail_update");
        if (avail == 0) break;
        const std::uint64_t tail = ring_->tail();
        const std::size_t room = ring_->free_bytes() / fb_;
        if (room == 0) { // the guest is not reading: keep ALSA running, lose the newest frames
            const auto n = std::min<snd_pcm_uframes_t>(static_cast<snd_pcm_uframes_t>(avail), scratch_.size() / fb_);
            const snd_pcm_sframes_t r = snd_pcm_readi(pcm_, scratch_.data(), n);
            if (r == -EAGAIN || r == 0) break;
            if (r < 0) return handle_error(r, "snd_pcm_readi");
            taken += static_cast<std::uint64_t>(r);
            if (!overflow_) {
                overflow_ = true; // from here until there is room again the stream stands still
                xruns_.fetch_add(1, std::memory_order_acq_rel);
            }
            continue;
        }
        overflow_ = false;
        const auto region = ring_->write_region(tail, std::min<std::size_t>(room, static_cast<std::size_t>(avail)) * fb_);
        const snd_pcm_sframes_t r =
            snd_pcm_readi(pcm_, region.data(), static_cast<snd_pcm_uframes_t>(region.size() / fb_));
        if (r == -EAGAIN || r == 0) break;
        if (r < 0) return handle_error(r, "snd_pcm_readi");
        ring_->commit_write(tail + static_cast<std::uint64_t>(r) * fb_);
        alsa_frames_ += static_cast<std::uint64_t>(r);
        taken += static_cast<std::uint64_t>(r);
    }
    if (!failed_.load(std::memory_order_relaxed) && hw_ == Hw::Running) take_status();
}

int AlsaStream::poll_timeout_ms(Nanos now, bool& poll_pcm) {
    poll_pcm = false;
    auto ms = [](Nanos ns) { return static_cast<int>(std::max<Nanos>(1, (ns + 999'999) / 1'000'000)); };
    if (failed_.load(std::memory_order_relaxed)) return -1;
    if (!output_) {
        if (hw_ != Hw::Running) return -1;
        poll_pcm = true;
        return ms(2 * period_ns_);
    }
    if (hw_ == Hw::Paused) return -1;
    // Playback: with frames waiting for room, wake when ALSA has a period of it; without, when
    // the device brings some (need_data_), and once a period to refresh the position.
    need_data_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const bool unsent = ring_->tail_acquire() / fb_ > alsa_frames_;
    if (unsent) need_data_.store(false, std::memory_order_relaxed);
    if (hw_ == Hw::Running) {
        poll_pcm = unsent;
        return ms(unsent ? 2 * period_ns_ : period_ns_);
    }
    // Prepared: waiting for data, for start(), or for the start grace time.
    if (unsent && alsa_fill_ < setup_.geo.fill_frames) return 0;
    if (active_ && alsa_frames_ > played_) return ms(std::max<Nanos>(0, last_arrival_ + start_grace() - now));
    return -1;
}

// After each cycle: if the device can now do something it could not (room in the ring, captured
// data, a new position, an xrun, a failure, an acknowledged command), wake its loop.
void AlsaStream::wake_device() {
    if (!waker_.is_set()) return;
    const std::uint64_t at = output_ ? ring_->head() : ring_->tail();
    const std::uint64_t x = xruns_.load(std::memory_order_relaxed);
    const bool failed = failed_.load(std::memory_order_relaxed);
    // The published position too: frames handed to ALSA (`limit`) grow without the ring head
    // moving, and a device that saw the position stop at the old limit waits for exactly that.
    const bool same_position = last_.frames == woken_pos_.frames && last_.limit == woken_pos_.limit &&
                               last_.running == woken_pos_.running;
    if (at == woken_at_ && x == woken_xruns_ && failed == woken_failed_ && same_position) return;
    woken_at_ = at;
    woken_xruns_ = x;
    woken_failed_ = failed;
    woken_pos_ = last_;
    waker_.wake();
}

void AlsaStream::run() {
    std::array<pollfd, kMaxPollFds + 1> fds{};
    for (;;) {
        std::uint64_t drained;
        while (::read(wake_fd_, &drained, sizeof drained) > 0) {}
        // A command posted before the close is carried out first: a STOP right before RELEASE
        // must still let the hardware play what the device already completed as audible.
        const std::uint32_t seq = cmd_seq_.load(std::memory_order_acquire);
        if (seq != handled_seq_) {
            if (!failed_.load(std::memory_order_relaxed)) apply(want_running_.load(std::memory_order_acquire));
            else active_ = want_running_.load(std::memory_order_acquire);
            handled_seq_ = seq;
            ack_seq_.store(seq, std::memory_order_release);
            woken_at_ = ~std::uint64_t{0}; // the device hears of the new state below
        }
        if (quit_.load(std::memory_order_acquire)) {
            // quit_ is set after the last command: seeing it, we also see that command.
            if (cmd_seq_.load(std::memory_order_acquire) != handled_seq_) continue;
            break;
        }
        const Nanos now = mono_now();
        if (!failed_.load(std::memory_order_relaxed)) {
            if (output_) playback_cycle(now);
            else capture_cycle();
        }
        wake_device();
        bool poll_pcm = false;
        int timeout = poll_timeout_ms(mono_now(), poll_pcm);
        if (timeout == 0) continue;
        // A PCM that reports ready but lets nothing move would spin this thread: back off.
        if (poll_pcm && idle_wakeups_ >= 3) {
            poll_pcm = false;
            timeout = 1;
        }
        fds[0] = {wake_fd_, POLLIN, 0};
        unsigned n = 1;
        if (poll_pcm) {
            std::copy(pfds_.begin(), pfds_.begin() + npfds_, fds.begin() + 1);
            n += npfds_;
        }
        const Nanos before = mono_now();
        const int r = ::poll(fds.data(), n, timeout);
        if (r > 0 && poll_pcm) {
            unsigned short revents = 0;
            snd_pcm_poll_descriptors_revents(pcm_, fds.data() + 1, npfds_, &revents);
            const bool immediate = mono_now() - before < 50'000 && !(fds[0].revents & POLLIN);
            idle_wakeups_ = immediate ? idle_wakeups_ + 1 : 0;
        } else {
            idle_wakeups_ = 0;
        }
    }
}

} // namespace

// Streams the device has closed whose audio thread still pauses, drops and closes the PCM. Only
// the device thread (and the backend's destructor) touch it.
struct AlsaBackend::RetiredStreams {
    std::vector<std::pair<std::thread, std::shared_ptr<AlsaStream>>> list;

    // Joins the threads that have finished (never waits).
    void prune() {
        for (auto it = list.begin(); it != list.end();) {
            if (it->second->closed()) {
                it->first.join();
                it = list.erase(it);
            } else {
                ++it;
            }
        }
    }
    // At most this many closed streams may still be closing when a new one opens: more means the
    // device (or an ALSA plugin) hangs in open or close, and every new open would only add a thread.
    static constexpr std::size_t kMaxClosing = 4;
    std::size_t closing() const {
        std::size_t n = 0;
        for (const auto& [t, s] : list) n += !s->closed();
        return n;
    }
    // The backend is going: joins what finishes within 2 s; a thread stuck in an ALSA call is left
    // to the process's exit (it owns its stream; nothing it touches goes away before then).
    ~RetiredStreams() {
        const Nanos give_up = mono_now() + 2 * kNanosPerSecond;
        for (auto& [t, s] : list) {
            while (!s->closed() && mono_now() < give_up) {
                const timespec nap{0, 1'000'000};
                nanosleep(&nap, nullptr);
            }
            if (s->closed()) t.join();
            else t.detach();
        }
    }
};

namespace {

// What the device owns: closing it hands the stream to its audio thread and the thread to the
// backend, without waiting.
class AlsaStreamHandle final : public device::BackendStream {
public:
    AlsaStreamHandle(std::shared_ptr<AlsaStream> s, AlsaBackend::RetiredStreams& retired)
        : s_(std::move(s)), retired_(retired) {}
    ~AlsaStreamHandle() override {
        retired_.list.emplace_back(s_->retire(), s_);
        retired_.prune();
    }
    void set_waker(device::Waker w) override { s_->set_waker(std::move(w)); }
    device::OpenState open_state() override { return s_->open_state(); }
    void start() override { s_->start(); }
    void stop() override { s_->stop(); }
    std::size_t writable_bytes() override { return s_->writable_bytes(); }
    void write(std::span<const std::uint8_t> b) override { s_->write(b); }
    std::size_t readable_bytes() override { return s_->readable_bytes(); }
    void read(std::span<std::uint8_t> out) override { s_->read(out); }
    device::Position position() override { return s_->position(); }
    std::optional<Nanos> next_wakeup() override { return s_->next_wakeup(); }
    std::uint64_t xruns() const override { return s_->xruns(); }
    bool failed() const override { return s_->failed(); }

private:
    std::shared_ptr<AlsaStream> s_;
    AlsaBackend::RetiredStreams& retired_;
};

} // namespace

// ---- backend ------------------------------------------------------------------------------------

AlsaGeometry plan_alsa_geometry(const device::StreamFormat& fmt, const AlsaOptions& opts) {
    AlsaGeometry g;
    const std::uint32_t fb = fmt.frame_bytes();
    if (fb == 0 || fmt.rate == 0) return g;
    const std::uint32_t guest_period = fmt.period_bytes / fb ? fmt.period_bytes / fb : std::max(1u, fmt.rate / 100);
    const std::uint32_t guest_buffer = fmt.buffer_bytes / fb ? fmt.buffer_bytes / fb : 4 * guest_period;
    const std::uint32_t min_period = std::max(1u, frames_of(opts.min_period, fmt.rate));
    const std::uint32_t periods = std::max(2u, opts.periods);
    // The ALSA buffer is only where frames can be; how many we keep queued (the latency) is
    // fill_frames. A roomy buffer costs nothing and makes a late wake-up harmless: the hardware
    // then plays silence (see the silence fill) instead of running into the previous lap, and
    // capture does not overrun. At least 100 ms and 4 fills.
    const std::uint32_t roomy = std::max(1u, frames_of(100'000'000, fmt.rate));
    if (fmt.direction == wire::Direction::Output) {
        const auto budget = static_cast<std::uint32_t>(guest_buffer * std::clamp(opts.max_buffer_fraction, 0.05, 1.0));
        g.period_frames = std::max(min_period, std::min(guest_period, budget / (periods + 1)));
        g.fill_frames = periods * g.period_frames;
        g.buffer_frames = std::max(4 * g.fill_frames, roomy);
        g.ring_frames = g.fill_frames + g.period_frames;
        g.start_frames = g.fill_frames;
    } else {
        g.period_frames = std::max(min_period, std::min(guest_period, std::max(1u, guest_buffer / 2)));
        g.buffer_frames = std::max(std::max(4u, periods) * g.period_frames, roomy);
        g.ring_frames = std::max(guest_buffer, 4 * g.period_frames) + g.period_frames;
    }
    return g;
}

AlsaBackend::AlsaBackend(const Clock& clock, std::string device_name, AlsaOptions opts)
    : clock_(clock), device_(std::move(device_name)), opts_(std::move(opts)), retired_(std::make_unique<RetiredStreams>()) {}

AlsaBackend::~AlsaBackend() = default;

namespace {

extern "C" void quiet_alsa(const char*, int, const char*, int, const char*, ...) {}

device::DirectionCapabilities probe_pcm(const std::string& name, bool playback) {
    device::DirectionCapabilities c;
    c.formats = c.rates = 0;
    auto unavailable = [&](const std::string& why) {
        c.available = false;
        c.why_not = why;
        return c;
    };
    PcmHandle h;
    snd_lib_error_set_handler(quiet_alsa); // the caller's one line says it all
    const int rc = snd_pcm_open(&h.pcm, name.c_str(), playback ? SND_PCM_STREAM_PLAYBACK : SND_PCM_STREAM_CAPTURE,
                                SND_PCM_NONBLOCK);
    snd_lib_error_set_handler(nullptr);
    if (rc < 0) {
        h.pcm = nullptr;
        return unavailable(fmt::format("ALSA device '{}' cannot be opened for {}: {}", name,
                                       playback ? "playback" : "capture", snd_strerror(rc)));
    }
    snd_pcm_hw_params_t* raw = nullptr;
    if (snd_pcm_hw_params_malloc(&raw) < 0) return unavailable("out of memory");
    std::unique_ptr<snd_pcm_hw_params_t, HwParamsFree> hw(raw);
    if (snd_pcm_hw_params_any(h.pcm, hw.get()) < 0 || snd_pcm_hw_params_set_rate_resample(h.pcm, hw.get(), 0) < 0 ||
        snd_pcm_hw_params_set_access(h.pcm, hw.get(), SND_PCM_ACCESS_RW_INTERLEAVED) < 0)
        return unavailable(fmt::format("ALSA device '{}' offers no interleaved configuration", name));
    for (unsigned raw_f = 0; raw_f < wire::kPcmFormatCount; ++raw_f)
        if (auto af = alsa_format(static_cast<wire::PcmFormat>(raw_f)); af && snd_pcm_hw_params_test_format(h.pcm, hw.get(), *af) == 0)
            c.formats |= std::uint64_t{1} << raw_f;
    for (unsigned raw_r = 0; raw_r < wire::kPcmRateCount; ++raw_r)
        if (snd_pcm_hw_params_test_rate(h.pcm, hw.get(), wire::rate_hz(static_cast<wire::PcmRate>(raw_r)), 0) == 0)
            c.rates |= std::uint64_t{1} << raw_r;
    unsigned lo = 1, hi = 255;
    snd_pcm_hw_params_get_channels_min(hw.get(), &lo);
    snd_pcm_hw_params_get_channels_max(hw.get(), &hi);
    c.channels_min = static_cast<std::uint8_t>(std::clamp(lo, 1u, 255u));
    c.channels_max = static_cast<std::uint8_t>(std::clamp(hi, 1u, 255u));
    return c;
}

} // namespace

device::Capabilities AlsaBackend::capabilities() const {
    return {probe_pcm(device_, true), probe_pcm(opts_.capture_device.empty() ? device_ : opts_.capture_device, false)};
}

void register_alsa_backend(device::BackendRegistry& registry, std::function<void(const std::string&)> log) {
    registry.add({"alsa",
                  "an ALSA PCM in the guest's exact format, positions from snd_pcm_status",
                  {{"device", "ALSA PCM (default \"default\"); N:device= for stream N only", true},
                   {"capture-device", "capture PCM if different from device"}},
                  [log](const Clock& clock, const device::BackendOptions& o)
                      -> Expected<std::unique_ptr<device::AudioBackend>, std::string> {
                      AlsaOptions opts;
                      opts.log = log;
                      opts.capture_device = o.get("capture-device").value_or("");
                      const std::string global = o.get("device").value_or("default");
                      for (std::uint32_t id : o.streams_setting("device")) opts.stream_devices[id] = *o.get(id, "device");
                      return std::unique_ptr<device::AudioBackend>(std::make_unique<AlsaBackend>(clock, global, std::move(opts)));
                  }});
}

Expected<std::unique_ptr<device::BackendStream>, std::string> AlsaBackend::open(std::uint32_t stream_id,
                                                                                const device::StreamFormat& fmt) {
    using R = Expected<std::unique_ptr<device::BackendStream>, std::string>;
    const bool output = fmt.direction == wire::Direction::Output;
    const auto own = opts_.stream_devices.find(stream_id);
    const std::string pcm_name = own != opts_.stream_devices.end()              ? own->second
                                 : output || opts_.capture_device.empty() ? device_
                                                                           : opts_.capture_device;
    if (!alsa_format(fmt.format) || fmt.frame_bytes() == 0)
        return R(Unexpected{fmt::format("{}: format {} has no ALSA equivalent", pcm_name, wire::name(fmt.format))});
    if (fmt.rate == 0 || fmt.channels == 0) return R(Unexpected{fmt::format("{}: empty rate or channel count", pcm_name)});

    // Everything that blocks (snd_pcm_open, params, prepare) happens on the stream's own thread;
    // the device answers PREPARE when it reports Ready or Failed (open_state()).
    retired_->prune();
    if (const std::size_t n = retired_->closing(); n >= RetiredStreams::kMaxClosing)
        return R(Unexpected{fmt::format("{}: {} earlier streams are still closing (a hung device?)", pcm_name, n)});
    std::vector<std::shared_ptr<AlsaStream>> predecessors;
    for (const auto& [thread, retired] : retired_->list)
        if (!retired->closed()) predecessors.push_back(retired);
    const int wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) return R(Unexpected{fmt::format("{}: eventfd: {}", pcm_name, std::strerror(errno))});
    auto stream = std::make_shared<AlsaStream>(clock_, opts_, AlsaStream::Setup{pcm_name, stream_id, fmt, {}, true}, wake,
                                               std::move(predecessors));
    try {
        stream->launch(stream);
    } catch (const std::system_error& e) { // no thread: the stream never opened anything
        return R(Unexpected{fmt::format("{}: cannot start the audio thread: {}", pcm_name, e.what())});
    }
    // A PCM that fails later (unplugged, -EBADFD, ...) leaves a clock-paced null stream behind.
    return R(std::unique_ptr<device::BackendStream>(std::make_unique<ClockFallbackStream>(
        clock_, fmt, std::make_unique<AlsaStreamHandle>(std::move(stream), *retired_))));
}

// Audio thread, first thing: opens and configures the PCM, sizes the host buffers. Nothing it
// sets is read by the device thread before open_state_ says Ready.
std::optional<std::string> AlsaStream::open_pcm() {
    const std::string& pcm_name = setup_.pcm_name;
    const device::StreamFormat& fmt = setup_.fmt;
    const std::uint32_t stream_id = setup_.id;
    const bool output = output_;
    const std::uint32_t fb = fb_;
    const auto afmt = alsa_format(fmt.format);
    const char* fname = snd_pcm_format_name(*afmt);
    PcmHandle h;
    if (int e = snd_pcm_open(&h.pcm, pcm_name.c_str(), output ? SND_PCM_STREAM_PLAYBACK : SND_PCM_STREAM_CAPTURE,
                             SND_PCM_NONBLOCK);
        e < 0) {
        h.pcm = nullptr;
        return std::optional<std::string>{fmt::format("{}: cannot open for {}: {}", pcm_name, output ? "playback" : "capture", snd_strerror(e))};
    }
    auto err = [&](const std::string& what, int e) {
        return std::optional<std::string>{fmt::format("{}: {}: {}", pcm_name, what, snd_strerror(e))};
    };

    snd_pcm_hw_params_t* hw_raw = nullptr;
    if (int e = snd_pcm_hw_params_malloc(&hw_raw); e < 0) return err("snd_pcm_hw_params_malloc", e);
    std::unique_ptr<snd_pcm_hw_params_t, HwParamsFree> hw(hw_raw);
    if (int e = snd_pcm_hw_params_any(h.pcm, hw.get()); e < 0) return err("no hardware configuration", e);
    if (int e = snd_pcm_hw_params_set_rate_resample(h.pcm, hw.get(), 0); e < 0) return err("cannot disable resampling", e);
    if (int e = snd_pcm_hw_params_set_access(h.pcm, hw.get(), SND_PCM_ACCESS_RW_INTERLEAVED); e < 0)
        return err("interleaved read/write access not supported", e);
    if (int e = snd_pcm_hw_params_set_format(h.pcm, hw.get(), *afmt); e < 0)
        return err(fmt::format("sample format {} not supported", fname), e);
    if (int e = snd_pcm_hw_params_set_channels(h.pcm, hw.get(), fmt.channels); e < 0) {
        unsigned lo = 0, hi = 0;
        snd_pcm_hw_params_get_channels_min(hw.get(), &lo);
        snd_pcm_hw_params_get_channels_max(hw.get(), &hi);
        return err(fmt::format("{} channels not supported (device: {}..{})", fmt.channels, lo, hi), e);
    }
    if (int e = snd_pcm_hw_params_set_rate(h.pcm, hw.get(), fmt.rate, 0); e < 0) {
        unsigned lo = 0, hi = 0;
        snd_pcm_hw_params_get_rate_min(hw.get(), &lo, nullptr);
        snd_pcm_hw_params_get_rate_max(hw.get(), &hi, nullptr);
        return err(fmt::format("rate {} Hz not supported without resampling (device: {}..{} Hz)", fmt.rate, lo, hi), e);
    }
    AlsaGeometry geo = plan_alsa_geometry(fmt, opts_);
    snd_pcm_uframes_t period = geo.period_frames, buffer = geo.buffer_frames;
    int dir = 0;
    if (int e = snd_pcm_hw_params_set_period_size_near(h.pcm, hw.get(), &period, &dir); e < 0)
        return err(fmt::format("cannot set a period near {} frames", geo.period_frames), e);
    buffer = std::max<snd_pcm_uframes_t>(buffer, 2 * period);
    if (int e = snd_pcm_hw_params_set_buffer_size_near(h.pcm, hw.get(), &buffer); e < 0)
        return err(fmt::format("cannot set a buffer near {} frames", buffer), e);
    if (int e = snd_pcm_hw_params(h.pcm, hw.get()); e < 0) return err("snd_pcm_hw_params", e);
    snd_pcm_hw_params_get_period_size(hw.get(), &period, &dir);
    snd_pcm_hw_params_get_buffer_size(hw.get(), &buffer);
    const bool can_pause = snd_pcm_hw_params_can_pause(hw.get()) != 0;
    const bool link_tstamp = snd_pcm_hw_params_supports_audio_ts_type(hw.get(), SND_PCM_AUDIO_TSTAMP_TYPE_LINK) ||
                             snd_pcm_hw_params_supports_audio_ts_type(hw.get(), SND_PCM_AUDIO_TSTAMP_TYPE_LINK_ABSOLUTE);

    // What the device granted decides the final levels.
    const auto p = static_cast<std::uint32_t>(period), b = static_cast<std::uint32_t>(buffer);
    const AlsaGeometry planned = geo;
    geo.period_frames = p;
    geo.buffer_frames = b;
    geo.pause = can_pause && opts_.use_pause;
    std::uint32_t avail_min = p;
    if (output) {
        geo.fill_frames = std::clamp(std::min(planned.fill_frames, std::max(2u, opts_.periods) * p), std::min(p, b), b);
        const std::uint32_t step = std::min(p, geo.fill_frames);
        geo.ring_frames = geo.fill_frames + step;
        geo.start_frames = geo.fill_frames;
        avail_min = b - geo.fill_frames + step;
    } else {
        geo.ring_frames = std::max(planned.ring_frames, 4 * p + p);
    }

    snd_pcm_sw_params_t* sw_raw = nullptr;
    if (int e = snd_pcm_sw_params_malloc(&sw_raw); e < 0) return err("snd_pcm_sw_params_malloc", e);
    std::unique_ptr<snd_pcm_sw_params_t, SwParamsFree> sw(sw_raw);
    snd_pcm_uframes_t boundary = 0;
    bool silence_ok = !output;
    if (int e = snd_pcm_sw_params_current(h.pcm, sw.get()); e < 0) return err("snd_pcm_sw_params_current", e);
    snd_pcm_sw_params_get_boundary(sw.get(), &boundary);
    if (int e = snd_pcm_sw_params_set_avail_min(h.pcm, sw.get(), avail_min); e < 0) return err("set avail_min", e);
    if (int e = snd_pcm_sw_params_set_start_threshold(h.pcm, sw.get(), boundary); e < 0) // we start explicitly
        return err("set start threshold", e);
    if (int e = snd_pcm_sw_params_set_stop_threshold(h.pcm, sw.get(), buffer); e < 0) return err("set stop threshold", e);
    if (output) {
        // Keep everything after our last frame silent ("top-up" with threshold = size = buffer):
        // a hardware pointer that runs past it before the underrun is noticed (snd-aloop copies
        // up to a period more) plays silence, never the stale frames of the previous lap.
        // (silence_size = boundary, the "fill the played area" mode meant for free-running
        // dmix-style PCMs, does not do this: aloop replayed a buffer-old lap after underruns.)
        // alsa-lib wants threshold < buffer, the kernel size ≤ threshold: one frame short of it.
        silence_ok = snd_pcm_sw_params_set_silence_threshold(h.pcm, sw.get(), buffer - 1) == 0 &&
                     snd_pcm_sw_params_set_silence_size(h.pcm, sw.get(), buffer - 1) == 0;
        if (!silence_ok) snd_pcm_sw_params_set_silence_size(h.pcm, sw.get(), 0);
    }
    snd_pcm_sw_params_set_period_event(h.pcm, sw.get(), 0);
    bool htstamp_ok = snd_pcm_sw_params_set_tstamp_mode(h.pcm, sw.get(), SND_PCM_TSTAMP_ENABLE) == 0;
    htstamp_ok = snd_pcm_sw_params_set_tstamp_type(h.pcm, sw.get(), SND_PCM_TSTAMP_TYPE_MONOTONIC) == 0 && htstamp_ok;
    if (int e = snd_pcm_sw_params(h.pcm, sw.get()); e < 0) return err("snd_pcm_sw_params", e);
    if (int e = snd_pcm_prepare(h.pcm); e < 0) return err("snd_pcm_prepare", e);

    const int npfds = snd_pcm_poll_descriptors_count(h.pcm);
    if (npfds <= 0 || npfds > static_cast<int>(kMaxPollFds))
        return std::optional<std::string>{fmt::format("{}: {} poll descriptors (1..{} supported)", pcm_name, npfds, kMaxPollFds)};
    std::array<pollfd, kMaxPollFds> pfds{};
    if (int e = snd_pcm_poll_descriptors(h.pcm, pfds.data(), static_cast<unsigned>(npfds)); e < 0)
        return err("snd_pcm_poll_descriptors", e);

    const std::string info = fmt::format(
        "stream {}: {} {} {} {} Hz {} ch: host period {} frames ({:.1f} ms), ALSA buffer {}, queue ≤ {}, ring {}, "
        "guest period {} / ring {} frames; stop = {}; htstamp {}; link audio tstamp {}{}",
        stream_id, pcm_name, output ? "playback" : "capture", fname, fmt.rate, fmt.channels, p, p * 1e3 / fmt.rate, b,
        output ? geo.fill_frames : b, geo.ring_frames, fmt.period_bytes / fb, fmt.buffer_bytes / fb,
        geo.pause ? "snd_pcm_pause" : "drop and keep", htstamp_ok ? "MONOTONIC" : "unavailable (using now)",
        link_tstamp ? "offered (unused)" : "no", silence_ok ? "" : "; no silence fill (underruns may replay stale frames)");

    snd_pcm_status_t* status = nullptr;
    if (int e = snd_pcm_status_malloc(&status); e < 0) return err("snd_pcm_status_malloc", e);
    if (opts_.log) opts_.log(info);
    else fmt::print(stderr, "vsnd alsa: {}\n", info);

    setup_.geo = geo;
    setup_.htstamp_ok = htstamp_ok;
    period_ns_ = nanos_of(geo.period_frames, fmt.rate);
    pcm_ = h.release();
    status_ = status;
    npfds_ = static_cast<unsigned>(npfds);
    std::copy(pfds.begin(), pfds.begin() + npfds, pfds_.begin());
    ring_ = std::make_unique<alsa_detail::SpscByteRing>(std::size_t{geo.ring_frames} * fb);
    if (!output_) scratch_.resize(std::size_t{geo.period_frames} * fb_);
    const Nanos now = mono_now();
    last_ = {0, now, 0, now, false};
    pos_.store(last_);
    return std::nullopt;
}

} // namespace vsnd::backends
