// A stream of the virtio-snd driver model as a sink: the receiver playing straight into a
// virtio-sound device (vsnd-host over vhost-user, or the device model on a simulated card in the
// deterministic rig). Its pending frames come from the stream's playback clock, fed by the
// device's completions (and latency_bytes): what the device says it has played. The caller owns
// the SoundDriver (probed) and runs its interrupts (update() handles what arrived). One thread;
// nothing blocks after open() (START goes out asynchronously).
#pragma once

#include "vsnd/rtp/playout_sink.hpp"
#include "vsnd/driver/sound_driver.hpp"

namespace vsnd::rtp {

class DriverSink final : public PlayoutSink {
public:
    // Sets the parameters and prepares stream `id` (blocking: a setup step).
    static Expected<std::unique_ptr<DriverSink>, std::string> open(driver::SoundDriver& driver, std::uint32_t id,
                                                                  const driver::PcmConfig& config);
    ~DriverSink() override;

    audio::SampleSpec spec() const override { return spec_; }
    bool update(Nanos now) override;
    std::optional<double> pending(Nanos now) const override;
    std::size_t writable() const override;
    std::size_t write(std::span<const std::int32_t> s, Nanos now) override;
    std::uint32_t period_frames() const override { return stream_.config().period_frames; }
    std::uint32_t buffer_frames() const override { return stream_.config().period_frames * stream_.config().periods; }
    Nanos next_wake(Nanos now) const override;
    int poll_fd() const override { return driver_.transport().interrupt_fd(); }
    std::uint64_t xruns() const override { return xruns_; }
    std::string error() const override { return error_; }
    std::string describe() const override;
    driver::PcmStream& stream() { return stream_; }

private:
    DriverSink(driver::SoundDriver& d, driver::PcmStream& s);
    driver::SoundDriver& driver_;
    driver::PcmStream& stream_;
    audio::SampleSpec spec_;
    bool start_sent_ = false;
    std::size_t events_seen_ = 0;
    std::uint64_t xruns_ = 0;
    std::vector<std::uint8_t> bytes_;
    std::string error_;
};

} // namespace vsnd::rtp
