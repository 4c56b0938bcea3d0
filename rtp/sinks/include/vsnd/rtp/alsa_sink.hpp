// An ALSA playback device as a sink: non-blocking, its playback position from snd_pcm_status
// (the application pointer minus `delay`, as of `htstamp` on CLOCK_MONOTONIC) through a
// timing::PlaybackClock, so the receiver measures against what the device has really played. The
// same code runs on a host card and inside a guest on the Linux virtio_snd driver. One thread;
// nothing blocks (the PCM is opened SND_PCM_NONBLOCK).
#pragma once

#include "vsnd/rtp/playout_sink.hpp"
#include "vsnd/expected.hpp"
#include "vsnd/timing/playback_clock.hpp"

#include <memory>
#include <vector>

typedef struct _snd_pcm snd_pcm_t;
typedef struct _snd_pcm_status snd_pcm_status_t;

namespace vsnd::rtp {

struct AlsaSinkOptions {
    std::string device = "default";
    audio::SampleSpec spec{wire::PcmFormat::S16, 48000, 2};
    std::uint32_t period_frames = 240;
    std::uint32_t periods = 4;
};

class AlsaSink final : public PlayoutSink {
public:
    // Opens and configures the device; the answer says what ALSA gave when it differs (rate,
    // period) or why it failed.
    static Expected<std::unique_ptr<AlsaSink>, std::string> open(AlsaSinkOptions o);
    ~AlsaSink() override;

    audio::SampleSpec spec() const override { return spec_; }
    bool update(Nanos now) override;
    std::optional<double> pending(Nanos now) const override;
    std::size_t writable() const override { return avail_; }
    std::size_t write(std::span<const std::int32_t> s, Nanos now) override;
    std::uint32_t period_frames() const override { return period_; }
    std::uint32_t buffer_frames() const override { return buffer_; }
    Nanos next_wake(Nanos now) const override;
    std::uint64_t xruns() const override { return xruns_; }
    std::string error() const override { return error_; }
    std::string describe() const override;

private:
    AlsaSink(snd_pcm_t* pcm, AlsaSinkOptions o, audio::SampleSpec spec, std::uint32_t period, std::uint32_t buffer);
    bool recover(int err, const char* what);

    snd_pcm_t* pcm_;
    snd_pcm_status_t* status_ = nullptr;
    AlsaSinkOptions opt_;
    audio::SampleSpec spec_;
    std::uint32_t period_, buffer_;
    std::size_t avail_ = 0;
    std::uint64_t written_ = 0; // frames since the last (re)start
    bool running_ = false;
    timing::PlaybackClock clock_;
    std::vector<std::uint8_t> bytes_;
    std::uint64_t xruns_ = 0;
    std::string error_;
};

} // namespace vsnd::rtp
