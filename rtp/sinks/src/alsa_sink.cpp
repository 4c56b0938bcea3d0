#include "vsnd/rtp/alsa_sink.hpp"

#include "vsnd/audio/alsa_format.hpp"

#include <alsa/asoundlib.h>
#include <fmt/format.h>

#include <algorithm>

namespace vsnd::rtp {

namespace {
std::string alsa_error(const char* what, int e) { return fmt::format("ALSA {}: {}", what, snd_strerror(e)); }
} // namespace

Expected<std::unique_ptr<AlsaSink>, std::string> AlsaSink::open(AlsaSinkOptions o) {
    auto fmt_alsa = audio::alsa_format(o.spec.format);
    if (!fmt_alsa || !sink_format_supported(o.spec.format))
        return Unexpected{fmt::format("ALSA sink: format {} is not played", wire::name(o.spec.format))};
    snd_pcm_t* pcm = nullptr;
    if (int e = snd_pcm_open(&pcm, o.device.c_str(), SND_PCM_STREAM_PLAYBACK, SND_PCM_NONBLOCK); e < 0)
        return Unexpected{fmt::format("ALSA device \"{}\": {}", o.device, snd_strerror(e))};
    auto fail = [&](const char* what, int e) {
        snd_pcm_close(pcm);
        return Unexpected{fmt::format("ALSA device \"{}\": {}: {}", o.device, what, snd_strerror(e))};
    };
    snd_pcm_hw_params_t* hw;
    snd_pcm_hw_params_alloca(&hw);
    snd_pcm_hw_params_any(pcm, hw);
    if (int e = snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED); e < 0) return fail("access", e);
    if (int e = snd_pcm_hw_params_set_format(pcm, hw, *fmt_alsa); e < 0) return fail("format", e);
    if (int e = snd_pcm_hw_params_set_channels(pcm, hw, o.spec.channels); e < 0) return fail("channels", e);
    unsigned rate = o.spec.rate;
    if (int e = snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, nullptr); e < 0) return fail("rate", e);
    snd_pcm_uframes_t period = o.period_frames, buffer = std::size_t{o.period_frames} * o.periods;
    if (int e = snd_pcm_hw_params_set_period_size_near(pcm, hw, &period, nullptr); e < 0) return fail("period", e);
    if (int e = snd_pcm_hw_params_set_buffer_size_near(pcm, hw, &buffer); e < 0) return fail("buffer", e);
    if (int e = snd_pcm_hw_params(pcm, hw); e < 0) return fail("hw params", e);
    snd_pcm_hw_params_get_period_size(hw, &period, nullptr);
    snd_pcm_hw_params_get_buffer_size(hw, &buffer);
    snd_pcm_sw_params_t* sw;
    snd_pcm_sw_params_alloca(&sw);
    snd_pcm_sw_params_current(pcm, sw);
    // Started by hand after the first fill; position stamps on CLOCK_MONOTONIC.
    snd_pcm_sw_params_set_start_threshold(pcm, sw, buffer * 2);
    snd_pcm_sw_params_set_avail_min(pcm, sw, period);
    snd_pcm_sw_params_set_tstamp_mode(pcm, sw, SND_PCM_TSTAMP_ENABLE);
    snd_pcm_sw_params_set_tstamp_type(pcm, sw, SND_PCM_TSTAMP_TYPE_MONOTONIC);
    if (int e = snd_pcm_sw_params(pcm, sw); e < 0) return fail("sw params", e);
    audio::SampleSpec spec = o.spec;
    spec.rate = rate;
    return std::unique_ptr<AlsaSink>(new AlsaSink(pcm, std::move(o), spec, static_cast<std::uint32_t>(period),
                                                  static_cast<std::uint32_t>(buffer)));
}

AlsaSink::AlsaSink(snd_pcm_t* pcm, AlsaSinkOptions o, audio::SampleSpec spec, std::uint32_t period, std::uint32_t buffer)
    : pcm_(pcm), opt_(std::move(o)), spec_(spec), period_(period), buffer_(buffer), avail_(buffer), clock_(spec.rate) {
    snd_pcm_status_malloc(&status_);
}

AlsaSink::~AlsaSink() {
    if (status_) snd_pcm_status_free(status_);
    snd_pcm_close(pcm_);
}

bool AlsaSink::recover(int e, const char* what) {
    if (e == -EPIPE || e == -ESTRPIPE) {
        ++xruns_;
        running_ = false;
        written_ = 0;
        clock_.reset();
        if (int r = snd_pcm_prepare(pcm_); r < 0) { error_ = alsa_error("prepare after xrun", r); return false; }
        return true;
    }
    if (e == -EAGAIN) return true;
    error_ = alsa_error(what, e);
    return false;
}

bool AlsaSink::update(Nanos) {
    if (!error_.empty()) return false;
    const snd_pcm_sframes_t a = snd_pcm_avail_update(pcm_);
    if (a < 0) {
        if (!recover(static_cast<int>(a), "avail")) return false;
        avail_ = buffer_;
        return true;
    }
    avail_ = static_cast<std::size_t>(a);
    if (!running_) return true;
    if (int e = snd_pcm_status(pcm_, status_); e < 0) return recover(e, "status");
    if (snd_pcm_status_get_state(status_) == SND_PCM_STATE_XRUN) return recover(-EPIPE, "status");
    snd_htimestamp_t ts;
    snd_pcm_status_get_htstamp(status_, &ts);
    const Nanos when = Nanos{ts.tv_sec} * kNanosPerSecond + ts.tv_nsec;
    if (when > 0) clock_.update(timing::from_alsa_status(written_, snd_pcm_status_get_delay(status_), when));
    return true;
}

std::optional<double> AlsaSink::pending(Nanos now) const {
    if (!running_ || !clock_.valid()) return static_cast<double>(written_);
    return std::clamp(static_cast<double>(written_) - *clock_.frames_at(now), 0.0, static_cast<double>(written_));
}

std::size_t AlsaSink::write(std::span<const std::int32_t> s, Nanos) {
    const std::size_t frames = std::min(s.size() / spec_.channels, avail_);
    bytes_.resize(frames * spec_.frame_bytes());
    convert_samples(s.first(frames * spec_.channels), spec_.format, bytes_.data());
    const snd_pcm_sframes_t n = snd_pcm_writei(pcm_, bytes_.data(), frames);
    if (n < 0) {
        recover(static_cast<int>(n), "write");
        return 0;
    }
    written_ += static_cast<std::uint64_t>(n);
    avail_ -= static_cast<std::size_t>(n);
    if (!running_ && written_ >= 2 * period_) {
        if (int e = snd_pcm_start(pcm_); e < 0) recover(e, "start");
        else running_ = true;
    }
    return static_cast<std::size_t>(n);
}

Nanos AlsaSink::next_wake(Nanos now) const {
    return now + static_cast<Nanos>(period_) * kNanosPerSecond / spec_.rate / 2;
}

std::string AlsaSink::describe() const {
    return fmt::format("ALSA \"{}\" {} {} Hz {} ch, period {} frames, buffer {}", opt_.device, wire::name(spec_.format),
                       spec_.rate, spec_.channels, period_, buffer_);
}

} // namespace vsnd::rtp
