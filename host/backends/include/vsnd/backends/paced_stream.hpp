// A backend stream whose hardware is a clock: it plays (or captures) frames continuously at the
// stream rate times a rate ratio, from a small host FIFO, and reports its position at period
// boundaries the way a sound card's interrupt would. The null, WAV and simulated-card backends
// are this stream with different ends: where played frames go, where captured frames come from.
#pragma once

#include "vsnd/timing/clock.hpp"
#include "vsnd/device/audio_backend.hpp"
#include "vsnd/spsc_byte_ring.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace vsnd::backends {

struct PacedTiming {
    double rate_ratio = 1.0;          // true rate / nominal rate (1 + ppm·1e-6)
    std::uint32_t period_frames = 0;  // position granularity; 0 = the guest's period
    Nanos latency = 0;                // output: DAC delay after the FIFO; input: ADC delay
    std::uint32_t fifo_frames = 0;    // host buffering; 0 = two periods (capture: at least the guest ring)
};

// Receives played frames (whole frames, in order). Device thread; never blocks (a sink that
// writes to a disk hands the frames to its own thread). A sink that opens something slow does it
// on its own thread too and reports it through open_state(), like a BackendStream.
class FrameSink {
public:
    virtual ~FrameSink() = default;
    virtual void played(std::span<const std::uint8_t> frames) = 0;
    virtual device::OpenState open_state() { return {}; }
    virtual void set_waker(device::Waker) {}
};

// Supplies captured frames (whole frames, in order).
class FrameSource {
public:
    virtual ~FrameSource() = default;
    virtual void capture(std::span<std::uint8_t> frames) = 0;
};

// One contiguous run of real playback: frame `frames` was audible at `when`, the following ones
// at the true rate. A new run starts at every start and after every underrun.
struct PlaybackRun {
    std::uint64_t frames;
    Nanos when;
};

// The truth about one output stream's playback: which frame was audible when (and, if asked
// for, every frame played), for comparing any clock estimate against.
class PlaybackRecord {
public:
    PlaybackRecord(std::uint32_t rate, std::uint32_t frame_bytes, double rate_ratio, bool keep_frames)
        : rate(rate), frame_bytes(frame_bytes), rate_ratio(rate_ratio), keep_frames(keep_frames) {}

    const std::uint32_t rate, frame_bytes;
    const double rate_ratio;
    const bool keep_frames;
    std::vector<PlaybackRun> runs;
    std::vector<std::uint8_t> played; // only with keep_frames
    std::uint64_t frames = 0;         // frames played
    std::uint64_t handovers = 0;      // write() calls the device made (how finely it cut the audio)

    std::uint64_t frames_played() const { return frames; }
    // When frame n became audible, if it was played.
    std::optional<double> audible_time(std::uint64_t frame) const;
    // How many frames had become audible at t (fractional).
    double frames_audible_at(Nanos t) const;
};

class PacedStream final : public device::BackendStream {
public:
    // `record` (optional, output only) is kept up to date with every run and frame played.
    PacedStream(const Clock& clock, const device::StreamFormat& fmt, PacedTiming timing,
                std::unique_ptr<FrameSink> sink, std::unique_ptr<FrameSource> source,
                std::shared_ptr<PlaybackRecord> record = nullptr);
    ~PacedStream() override;

    // The sink's (a paced clock itself opens at once and never needs waking: next_wakeup()).
    void set_waker(device::Waker w) override {
        if (sink_) sink_->set_waker(std::move(w));
    }
    device::OpenState open_state() override { return sink_ ? sink_->open_state() : device::OpenState{}; }
    void start() override;
    void stop() override;
    std::size_t writable_bytes() override;
    void write(std::span<const std::uint8_t> bytes) override;
    std::size_t readable_bytes() override;
    void read(std::span<std::uint8_t> out) override;
    device::Position position() override;
    std::optional<Nanos> next_wakeup() override;
    std::uint64_t xruns() const override { return xruns_; }

    std::uint64_t frames_done() const { return done_; }
    std::uint32_t period_frames() const { return period_; }

private:
    bool output() const { return fmt_.direction == wire::Direction::Output; }
    double frames_per_ns() const;
    void advance();              // brings the hardware up to clock_.now()
    void anchor(Nanos t);        // a new run starts at t with done_ frames behind it
    Nanos time_of(std::uint64_t frames) const; // when the run reaches `frames` (before latency)
    void fifo_pop_to_sink(std::size_t bytes);

    const Clock& clock_;
    device::StreamFormat fmt_;
    PacedTiming timing_;
    std::unique_ptr<FrameSink> sink_;
    std::unique_ptr<FrameSource> source_;
    std::uint32_t frame_bytes_, period_;
    SpscByteRing fifo_;                // sized at open: no allocation while running
    std::vector<std::uint8_t> scratch_;
    bool running_ = false, starved_ = false;
    Nanos anchor_time_ = 0;
    std::uint64_t anchor_frames_ = 0;
    std::uint64_t done_ = 0;           // frames played (output) or captured (input)
    std::uint64_t xruns_ = 0;
    bool has_run_ = false;
    std::shared_ptr<PlaybackRecord> record_;
};

} // namespace vsnd::backends
