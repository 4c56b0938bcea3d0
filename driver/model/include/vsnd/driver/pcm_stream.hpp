// One PCM stream as the guest driver model sees it: the control commands, a ring buffer of
// `periods` periods in guest memory, one I/O message per period (queued only once the period is
// complete, as Linux ≥ 6.7 does), and the playback clock fed by completions.
#pragma once

#include "vsnd/timing/playback_clock.hpp"
#include "vsnd/driver/transport.hpp"
#include "vsnd/expected.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace vsnd::driver {

class SoundDriver;

struct DriverError {
    std::string message;
    std::optional<wire::Status> status; // the device's answer, if it gave one
};
using Result = Expected<Done, DriverError>;

struct PcmConfig {
    wire::PcmFormat format = wire::PcmFormat::S16;
    std::uint32_t rate = 48000;
    std::uint8_t channels = 2;
    std::uint32_t period_frames = 1024;
    std::uint32_t periods = 4;
    std::uint32_t features = 0;
};

enum class StreamState { Idle, ParamsSet, Prepared, Running, Paused };

class PcmStream {
public:
    PcmStream(SoundDriver& driver, std::uint32_t id, wire::PcmInfo info);
    PcmStream(const PcmStream&) = delete;
    PcmStream& operator=(const PcmStream&) = delete;

    std::uint32_t id() const { return id_; }
    const wire::PcmInfo& info() const { return info_; }
    bool output() const { return info_.direction == wire::Direction::Output; }
    StreamState state() const { return state_; }
    const PcmConfig& config() const { return cfg_; }
    std::uint32_t frame_bytes() const { return frame_bytes_; }
    std::uint32_t period_bytes() const { return period_bytes_; }

    // Blocking commands (each waits for the device's answer).
    Result set_params(const PcmConfig& cfg); // transactional: nothing changes unless the device accepts
    Result prepare();
    Result start();
    Result stop();
    Result release();
    // START/STOP for an event loop: the state changes when the device's OK arrives (from
    // SoundDriver::process_interrupts), then `done` runs; a send that fails returns the error.
    Result start_async(std::function<void(const Result&)> done = {});
    Result stop_async(std::function<void(const Result&)> done = {});

    // Playback: room in the ring, and copying whole frames into it. Every completed period is
    // queued at once. Returns bytes taken (a multiple of the frame size).
    std::size_t writable_bytes() const;
    std::size_t write(std::span<const std::uint8_t> frames);
    // Capture: bytes captured and not yet read; reading hands periods back to the device.
    std::size_t readable_bytes() const;
    std::size_t read(std::span<std::uint8_t> out);

    const timing::PlaybackClock& clock() const { return clock_; }
    // Frames the application has written (playback) or read (capture) since PREPARE.
    std::uint64_t written_frames() const { return frame_bytes_ ? appl_ / frame_bytes_ : 0; }
    // Frames written that the device has not yet returned (in the ring or in flight).
    std::uint64_t queued_frames() const { return frame_bytes_ && appl_ > hw_ ? (appl_ - hw_) / frame_bytes_ : 0; }
    // Playback: frames written but not yet audible at `t`, by the playback clock (a source's
    // buffer fill); nullopt before the clock has a sample.
    std::optional<double> buffered_frames(Nanos t) const;
    std::uint64_t frames_completed() const { return hw_ / frame_bytes_; }
    std::uint64_t periods_completed() const { return periods_completed_; }
    std::uint32_t last_latency_bytes() const { return last_latency_; }
    std::uint64_t io_errors() const { return io_errors_; }
    unsigned in_flight() const { return in_flight_; }

    // Called by SoundDriver before it drops the stream (a new probe): gives the ring and headers
    // back to the transport, unless the device still holds messages in them.
    void give_back_memory();
    // Called by SoundDriver for every used tx/rx entry of this stream.
    void on_complete(std::uint32_t period, std::uint32_t used_len, Nanos when);

private:
    Result command(wire::Code code);
    bool queue_period(std::uint32_t period);
    void flush_queue();

    SoundDriver& driver_;
    std::uint32_t id_;
    wire::PcmInfo info_;
    PcmConfig cfg_;
    StreamState state_ = StreamState::Idle;
    std::uint32_t frame_bytes_ = 0, period_bytes_ = 0, buffer_bytes_ = 0;
    DmaBuffer ring_, headers_; // headers_: per period a 4-byte xfer and an 8-byte status
    std::vector<bool> busy_;
    std::uint64_t appl_ = 0, hw_ = 0, queued_ = 0; // byte counters since PREPARE
    std::uint64_t periods_completed_ = 0, io_errors_ = 0;
    std::uint32_t last_latency_ = 0;
    unsigned in_flight_ = 0;
    timing::PlaybackClock clock_;
};

} // namespace vsnd::driver
