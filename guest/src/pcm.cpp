#include "pcm.hpp"

#include "vsnd/audio/alsa_format.hpp"
#include "vsnd/timing/clock.hpp"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <memory>

namespace vsnd::guest {

namespace {

std::string g_lib_message;  // last message libasound wanted to print

extern "C" __attribute__((format(printf, 5, 6))) void on_alsa_lib_error(const char* /*file*/, int /*line*/,
                                                                         const char* function, int /*err*/,
                                                                         const char* fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    g_lib_message = std::string(function ? function : "alsa-lib") + ": " + text;
}

std::string describe(const PcmConfig& cfg, const std::string& what, long err) {
    std::string msg = cfg.device + ": " + what + ": " + snd_strerror(static_cast<int>(err));
    if (err == -EPIPE) msg += cfg.stream == SND_PCM_STREAM_PLAYBACK ? " (underrun)" : " (overrun)";
    if (err == -ESTRPIPE) msg += " (suspended)";
    if (!g_lib_message.empty()) {
        msg += " [" + g_lib_message + "]";
        g_lib_message.clear();
    }
    return msg;
}

}  // namespace

void install_alsa_error_handler() { snd_lib_error_set_handler(&on_alsa_lib_error); }

std::uint64_t monotonic_ns() { return static_cast<std::uint64_t>(vsnd::MonotonicClock{}.now()); }

Pcm::Pcm(const PcmConfig& cfg) : cfg_(cfg), frame_bytes_(cfg.format.frame_bytes()) {
    g_lib_message.clear();
    check(snd_pcm_open(&pcm_, cfg_.device.c_str(), cfg_.stream, 0), "snd_pcm_open");
    try {
        configure();
    } catch (...) {
        snd_pcm_close(pcm_);
        pcm_ = nullptr;
        throw;
    }
}

void Pcm::configure() {
    snd_pcm_hw_params_t* hw_raw = nullptr;
    check(snd_pcm_hw_params_malloc(&hw_raw), "snd_pcm_hw_params_malloc");
    std::unique_ptr<snd_pcm_hw_params_t, decltype(&snd_pcm_hw_params_free)> hw(hw_raw, &snd_pcm_hw_params_free);
    const audio::SampleSpec& f = cfg_.format;
    check(snd_pcm_hw_params_any(pcm_, hw.get()), "snd_pcm_hw_params_any");
    check(snd_pcm_hw_params_set_rate_resample(pcm_, hw.get(), 0), "disable resampling");
    check(snd_pcm_hw_params_set_access(pcm_, hw.get(), SND_PCM_ACCESS_RW_INTERLEAVED), "set access RW_INTERLEAVED");
    const auto alsa = audio::alsa_format(f.format);
    if (!alsa) throw AlsaError(std::string("no ALSA format for ") + std::string(wire::name(f.format)));
    check(snd_pcm_hw_params_set_format(pcm_, hw.get(), *alsa), std::string("set format ") + snd_pcm_format_name(*alsa));
    check(snd_pcm_hw_params_set_channels(pcm_, hw.get(), f.channels), "set channels " + std::to_string(f.channels));
    check(snd_pcm_hw_params_set_rate(pcm_, hw.get(), f.rate, 0), "set rate " + std::to_string(f.rate));
    check(snd_pcm_hw_params_set_period_size(pcm_, hw.get(), cfg_.period, 0),
          "set period size " + std::to_string(cfg_.period));
    check(snd_pcm_hw_params_set_periods(pcm_, hw.get(), cfg_.periods, 0), "set periods " + std::to_string(cfg_.periods));
    check(snd_pcm_hw_params(pcm_, hw.get()), "snd_pcm_hw_params");
    check(snd_pcm_hw_params_get_period_size(hw.get(), &period_, nullptr), "get period size");
    check(snd_pcm_hw_params_get_buffer_size(hw.get(), &buffer_), "get buffer size");
    can_pause_ = snd_pcm_hw_params_can_pause(hw.get()) != 0;

    snd_pcm_sw_params_t* sw_raw = nullptr;
    check(snd_pcm_sw_params_malloc(&sw_raw), "snd_pcm_sw_params_malloc");
    std::unique_ptr<snd_pcm_sw_params_t, decltype(&snd_pcm_sw_params_free)> sw(sw_raw, &snd_pcm_sw_params_free);
    snd_pcm_uframes_t boundary = 0;
    check(snd_pcm_sw_params_current(pcm_, sw.get()), "snd_pcm_sw_params_current");
    check(snd_pcm_sw_params_get_boundary(sw.get(), &boundary), "get boundary");
    check(snd_pcm_sw_params_set_avail_min(pcm_, sw.get(), period_), "set avail_min");
    check(snd_pcm_sw_params_set_start_threshold(pcm_, sw.get(), boundary), "set start threshold");
    check(snd_pcm_sw_params_set_stop_threshold(pcm_, sw.get(), buffer_), "set stop threshold");
    // Timestamps in snd_pcm_status(): when the kernel last saw the hardware pointer move.
    check(snd_pcm_sw_params_set_tstamp_mode(pcm_, sw.get(), SND_PCM_TSTAMP_ENABLE), "set tstamp mode");
    check(snd_pcm_sw_params_set_tstamp_type(pcm_, sw.get(), SND_PCM_TSTAMP_TYPE_MONOTONIC), "set tstamp type");
    check(snd_pcm_sw_params(pcm_, sw.get()), "snd_pcm_sw_params");
}

Pcm::~Pcm() {
    if (pcm_) snd_pcm_close(pcm_);
}

void Pcm::check(long err, const std::string& what) const {
    if (err < 0) throw AlsaError(describe(cfg_, what, err));
}

void Pcm::prepare() { check(snd_pcm_prepare(pcm_), "snd_pcm_prepare"); }
void Pcm::start() { check(snd_pcm_start(pcm_), "snd_pcm_start"); }
void Pcm::pause(bool enable) { check(snd_pcm_pause(pcm_, enable ? 1 : 0), enable ? "snd_pcm_pause(1)" : "snd_pcm_pause(0)"); }
void Pcm::drain() { check(snd_pcm_drain(pcm_), "snd_pcm_drain"); }
void Pcm::drop() { check(snd_pcm_drop(pcm_), "snd_pcm_drop"); }

void Pcm::close() {
    snd_pcm_t* p = pcm_;
    pcm_ = nullptr;
    check(snd_pcm_close(p), "snd_pcm_close");
}

snd_pcm_sframes_t Pcm::delay() {
    snd_pcm_sframes_t d = 0;
    check(snd_pcm_delay(pcm_, &d), "snd_pcm_delay");
    return d;
}

PcmStatus Pcm::status() {
    snd_pcm_status_t* st = nullptr;
    snd_pcm_status_alloca(&st);
    // Default audio timestamp config (COMPAT): for a driver without get_time_info (virtio_snd)
    // the kernel reports the audio timestamp as (hw_ptr_wrap + hw_ptr) * 1e9 / rate, i.e. the
    // unwrapped hardware position, and `htstamp` is updated only when that changes.
    check(snd_pcm_status(pcm_, st), "snd_pcm_status");
    PcmStatus r{};
    r.now_ns = monotonic_ns();
    r.state = snd_pcm_status_get_state(st);
    r.delay = snd_pcm_status_get_delay(st);
    r.avail = snd_pcm_status_get_avail(st);
    snd_htimestamp_t ts{};
    snd_pcm_status_get_htstamp(st, &ts);
    r.tstamp_ns = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
    snd_htimestamp_t audio{};
    snd_pcm_status_get_audio_htstamp(st, &audio);
    const std::uint64_t audio_ns =
        static_cast<std::uint64_t>(audio.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(audio.tv_nsec);
    // audio_ns = floor(frames * 1e9 / rate), so frames = ceil(audio_ns * rate / 1e9) exactly.
    const unsigned __int128 scaled = static_cast<unsigned __int128>(audio_ns) * cfg_.format.rate;
    r.hw_frames = static_cast<std::uint64_t>((scaled + 999'999'999u) / 1'000'000'000u);
    return r;
}

void Pcm::write(const std::uint8_t* data, snd_pcm_uframes_t frames) {
    while (frames > 0) {
        const snd_pcm_sframes_t n = snd_pcm_writei(pcm_, data, frames);
        if (n == -EINTR) continue;
        check(n, "snd_pcm_writei");
        data += static_cast<std::size_t>(n) * frame_bytes_;
        frames -= static_cast<snd_pcm_uframes_t>(n);
    }
}

void Pcm::read(std::uint8_t* data, snd_pcm_uframes_t frames) {
    while (frames > 0) {
        const snd_pcm_sframes_t n = snd_pcm_readi(pcm_, data, frames);
        if (n == -EINTR) continue;
        check(n, "snd_pcm_readi");
        data += static_cast<std::size_t>(n) * frame_bytes_;
        frames -= static_cast<snd_pcm_uframes_t>(n);
    }
}

}  // namespace vsnd::guest
