// A paced RTP sender's stream, as a function of time on a reference clock: which packet leaves
// when and what it holds. The sender's own clock may run off by a number of ppm (changing at
// given times); it may pause (the timestamp runs on, the sequence does not, the marker is set
// after; or DisOrder's way) and restart as a new source (new SSRC, sequence and timestamp).
// vsnd-rtp-send paces it on CLOCK_MONOTONIC; tests step it on a simulated clock. Single owner.
#pragma once

#include "vsnd/audio/test_signal.hpp"
#include "vsnd/rtp/payload_format.hpp"
#include "vsnd/rtp/rtp_packet.hpp"
#include "vsnd/timing/clock.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace vsnd::rtp {

struct GeneratorOptions {
    PayloadFormat format;
    std::uint32_t frames_per_packet = 48;
    audio::SignalKind signal = audio::SignalKind::Test;
    std::uint16_t first_sequence = 0;
    std::uint32_t first_timestamp = 0;
    std::uint32_t ssrc = 0x76736e64;
    bool marker_first = true;       // M=1 on the first packet (as GStreamer does)
    double ppm = 0;                 // the sender's clock error
    struct RateStep { Nanos at; double ppm; };
    std::vector<RateStep> rate_steps; // the error changes to `ppm` at `at` (from the start)
    struct Pause { Nanos at, length; };
    std::vector<Pause> pauses;      // nothing is sent; the timestamp runs on
    std::vector<Nanos> restarts;    // a new SSRC, sequence and timestamp at each
    bool restart_keeps_ssrc = false; // ... or only a new sequence and timestamp
    struct Jump { Nanos at; std::int64_t frames; };
    std::vector<Jump> timestamp_jumps; // the timestamp leaps without the time passing
};

class StreamGenerator {
public:
    StreamGenerator(GeneratorOptions options, Nanos start);

    const GeneratorOptions& options() const { return opt_; }
    // When the next packet leaves (reference clock).
    Nanos next_time() const { return next_time_; }
    // Builds the next packet and advances; the span is valid until the next call.
    std::span<const std::uint8_t> next();

    std::uint64_t packets_sent() const { return packets_; }
    // Frames of signal sent so far (the content index of the next packet's first frame).
    std::uint64_t frames_sent() const { return content_; }
    std::uint32_t ssrc() const { return ssrc_; }
    // The content frame index a timestamp carries in the current source (tests' expectation).
    std::int64_t content_of_timestamp(std::uint32_t ts) const;

private:
    double ppm_at(Nanos since_start) const;

    GeneratorOptions opt_;
    Nanos start_, next_time_;
    std::uint64_t content_ = 0; // signal frames sent
    std::uint32_t ssrc_, ts_;   // the next packet's timestamp (ticks)
    std::uint16_t seq_;
    std::int64_t ts_minus_content_; // ticks: ts = content * ticks_per_frame + this (per source)
    std::size_t next_pause_ = 0, next_restart_ = 0, next_jump_ = 0;
    bool marker_ = true;
    std::uint64_t packets_ = 0;
    std::vector<std::uint8_t> packet_, pcm_;
    std::vector<std::int32_t> samples_;
};

// Writes `frames` frames of `kind` from content frame `first` as top-aligned samples (L16: the
// S16 signal, L24: the S24 signal), the values a receiver must reproduce.
void signal_samples(audio::SignalKind kind, const PayloadFormat& f, std::uint64_t first, std::size_t frames,
                    std::vector<std::uint8_t>& scratch, std::int32_t* out);

} // namespace vsnd::rtp
