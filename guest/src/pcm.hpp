// Thin RAII wrapper over an ALSA PCM configured exactly as asked (no silent "near" values).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <alsa/asoundlib.h>

#include "audio_format.hpp"

namespace vsnd::guest {

class AlsaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct PcmConfig {
    std::string device = "hw:0,0";
    snd_pcm_stream_t stream = SND_PCM_STREAM_PLAYBACK;
    StreamFormat format;
    snd_pcm_uframes_t period = 1024;
    unsigned periods = 4;
};

// Route libasound's own diagnostics into our single error line instead of stderr.
void install_alsa_error_handler();

[[nodiscard]] std::uint64_t monotonic_ns();

class Pcm {
public:
    // Opens (blocking mode) and installs hw params (interleaved, exact format, rate, channels,
    // period size and count; leaves the PCM PREPARED) and sw params (avail_min = one period,
    // start threshold = boundary so the stream only starts on start() or drain()).
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

    // Blocking transfers of exactly `frames` frames; xruns and every other error throw.
    void write(const std::byte* data, snd_pcm_uframes_t frames);
    void read(std::byte* data, snd_pcm_uframes_t frames);

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
