// A backend stream that outlives the failure of the one it wraps: until `inner` reports failed(),
// every call goes to it; from the first call that sees the failure on, the stream is a null
// stream paced by the clock at the nominal rate, continuing from the position the inner stream had
// reached. Playback frames are taken and "played" at that rate, capture delivers what the inner
// stream still had and then silence, so messages already accepted still complete and the guest
// never hangs on a device that vanished (an unplugged card, a dead sound server). failed() stays
// true, so the device answers IO_ERR to new messages.
//
// Device thread only, like every BackendStream; never blocks.
#pragma once

#include "vsnd/device/audio_backend.hpp"
#include "vsnd/timing/clock.hpp"

#include <cstdint>
#include <memory>

namespace vsnd::backends {

class ClockFallbackStream final : public device::BackendStream {
public:
    ClockFallbackStream(const Clock& clock, const device::StreamFormat& fmt, std::unique_ptr<device::BackendStream> inner);

    void set_waker(device::Waker w) override { inner_->set_waker(std::move(w)); }
    device::OpenState open_state() override { return inner_->open_state(); }
    void start() override;
    void stop() override;
    std::size_t writable_bytes() override;
    void write(std::span<const std::uint8_t> bytes) override;
    std::size_t readable_bytes() override;
    void read(std::span<std::uint8_t> out) override;
    device::Position position() override;
    std::optional<Nanos> next_wakeup() override;
    std::uint64_t xruns() const override { return inner_->xruns(); }
    bool failed() const override { return inner_->failed(); }

    bool paced_by_clock() const { return fallen_back_; }

private:
    bool output() const { return fmt_.direction == wire::Direction::Output; }
    bool fall_back();                         // true once the inner stream has failed
    std::uint64_t elapsed(Nanos now) const;   // frames the clock has run since the failure
    std::uint64_t frames(Nanos now) const;    // the paced position

    const Clock& clock_;
    device::StreamFormat fmt_;
    std::unique_ptr<device::BackendStream> inner_;
    const std::uint32_t frame_bytes_;
    bool running_ = false;                    // start() more recent than stop()
    std::uint64_t written_ = 0;               // playback bytes handed over in total (inner and after)
    // After the failure.
    bool fallen_back_ = false;
    Nanos since_ = 0;                         // start of the current running span
    std::uint64_t frames0_ = 0;               // position at the failure
    std::uint64_t earlier_ = 0;               // frames run in the spans before the current one
    std::uint64_t silence_ = 0;               // capture: silence bytes delivered
};

} // namespace vsnd::backends
