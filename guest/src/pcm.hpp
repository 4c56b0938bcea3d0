// Thin RAII wrapper over an ALSA PCM configured exactly as asked (no silent "near" values).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <alsa/asoundlib.h>

#include "vsnd/audio/sample_spec.hpp"

namespace vsnd::guest {

class AlsaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct PcmConfig {
    std::string device = "hw:0,0";
    snd_pcm_stream_t stream = SND_PCM_STREAM_PLAYBACK;
    audio::SampleSpec format;
    snd_pcm_uframes_t period = 1024;
    unsigned periods = 4;
};

// Route libasound's own diagnostics into our single error line instead of stderr.
void install_alsa_error_handler();

[[nodiscard]] std::uint64_t monotonic_ns();

// One snd_pcm_status() snapshot (playback view), taken under the kernel's stream lock.
struct PcmStatus {
    snd_pcm_state_t state;
    std::uint64_t hw_frames;    // frames the device has completed since the start (hw_ptr, unwrapped)
    snd_pcm_sframes_t delay;    // snd_pcm_delay(): ring occupancy + the driver's runtime delay
    snd_pcm_uframes_t avail;    // free space in the ring
    std::uint64_t tstamp_ns;    // CLOCK_MONOTONIC when the kernel last saw hw_ptr move
    std::uint64_t now_ns;       // CLOCK_MONOTONIC right after the call
    // The driver's own delay (virtio: latency_bytes of the last completion, in frames): the part
    // of `delay` that is not ring occupancy.
    [[nodiscard]] snd_pcm_sframes_t runtime_delay(snd_pcm_uframes_t buffer) const {
        return delay - static_cast<snd_pcm_sframes_t>(buffer - avail);
    }
};

class Pcm {
public:
    // Opens (blocking mode) and installs hw params (interleaved, exact format, rate, channels,
    // period size and count; leaves the PCM PREPARED) and sw params (avail_min = one period,
    // start threshold = boundary so the stream only starts on start() or drain(), timestamps on
    // CLOCK_MONOTONIC).
    explicit Pcm(const PcmConfig& cfg);
    ~Pcm();
    Pcm(const Pcm&) = delete;
    Pcm& operator=(const Pcm&) = delete;

    [[nodiscard]] snd_pcm_uframes_t period() const { return period_; }
    [[nodiscard]] snd_pcm_uframes_t buffer() const { return buffer_; }
    [[nodiscard]] bool can_pause() const { return can_pause_; }
    [[nodiscard]] const PcmConfig& config() const { return cfg_; }

    void prepare();
    void start();
    void pause(bool enable);
    void drain();
    void drop();
    void close();
    [[nodiscard]] snd_pcm_sframes_t delay();
    // Only valid while running or draining (hw_frames, delay and tstamp are 0 otherwise). Safe to
    // call from a second thread while another blocks in write() or drain(): both are ioctls on
    // the hw plugin, serialised by the kernel.
    [[nodiscard]] PcmStatus status();

    // Blocking transfers of exactly `frames` frames; xruns and every other error throw.
    void write(const std::uint8_t* data, snd_pcm_uframes_t frames);
    void read(std::uint8_t* data, snd_pcm_uframes_t frames);

private:
    void configure();
    void check(long err, const std::string& what) const;

    PcmConfig cfg_;
    snd_pcm_t* pcm_ = nullptr;
    snd_pcm_uframes_t period_ = 0;
    snd_pcm_uframes_t buffer_ = 0;
    bool can_pause_ = false;
    std::size_t frame_bytes_ = 0;
};

}  // namespace vsnd::guest
