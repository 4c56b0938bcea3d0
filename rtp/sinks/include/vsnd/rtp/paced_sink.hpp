// A sound card made of a clock: it takes one period from its buffer at every period boundary
// and plays it during that period, at its rate off by `ppm`, as hardware does. Played periods go
// to a consumer (a WAV file, a pipe, a test's record) with the instant they became audible. When
// its buffer lacks a period it plays silence for the missing part (an xrun, counted), so the
// timeline it delivers never shrinks. On CLOCK_MONOTONIC for files and pipes, on a simulated
// clock in tests (sink drift, deterministic). Single owner; never blocks (the consumer must not).
// Files and pipes may instead wait for late frames (PacedSinkOptions::wait_for_late_frames).
#pragma once

#include "vsnd/rtp/playout_sink.hpp"

#include <functional>
#include <vector>

namespace vsnd::rtp {

struct PacedSinkOptions {
    audio::SampleSpec spec{wire::PcmFormat::S16, 48000, 2};
    std::uint32_t period_frames = 48;
    std::uint32_t buffer_frames = 480;
    double ppm = 0;                // the card's rate error
    std::uint32_t start_frames = 0; // starts once this much is written (0: one period)
    // A file or a pipe, which nobody hears as it is written: a period whose frames are late is
    // taken when they come, still stamped with its place on the timeline, instead of becoming
    // silence. A loop that wakes late (a loaded machine) then costs nothing; the file's timing
    // stays exact. A card (and a test of one) plays silence: false.
    bool wait_for_late_frames = false;
};

class PacedSink : public PlayoutSink {
public:
    // `played` receives each period as played: top-aligned samples, the instant its first frame
    // became audible, and how many of its frames were real audio (the rest: xrun silence).
    using Played = std::function<void(std::span<const std::int32_t> samples, Nanos audible_at, std::uint32_t data_frames)>;
    PacedSink(PacedSinkOptions o, Played played);

    audio::SampleSpec spec() const override { return opt_.spec; }
    bool update(Nanos now) override;
    std::optional<double> pending(Nanos now) const override;
    std::size_t writable() const override;
    std::size_t write(std::span<const std::int32_t> samples, Nanos now) override;
    std::uint32_t period_frames() const override { return opt_.period_frames; }
    std::uint32_t buffer_frames() const override { return opt_.buffer_frames; }
    Nanos next_wake(Nanos now) const override;
    std::uint64_t xruns() const override { return xruns_; }
    std::string describe() const override;

    bool started() const { return started_; }
    Nanos start_time() const { return t0_; }
    std::uint64_t periods_played() const { return periods_; }

private:
    Nanos boundary(std::uint64_t period) const;
    std::size_t buffered() const { return (tail_ - head_); }

    PacedSinkOptions opt_;
    Played played_;
    double frame_ns_;
    std::vector<std::int32_t> ring_, period_;
    std::uint64_t head_ = 0, tail_ = 0; // frames taken / written
    bool started_ = false;
    Nanos t0_ = 0;
    std::uint64_t periods_ = 0, xruns_ = 0;
    std::uint32_t current_data_ = 0;     // real frames in the period playing now
    std::uint64_t head_before_current_ = 0;
};

} // namespace vsnd::rtp
