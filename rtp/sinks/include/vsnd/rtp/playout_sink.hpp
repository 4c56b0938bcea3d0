// Where the receiver's audio goes, and the one thing the receiver needs back from it: how many
// frames written are not yet audible, from the sink's own playback clock (ALSA's delay and
// htstamp, the driver model's completions, a paced file's clock) rather than from hand-off.
//
// Every method is called from the receiver's loop thread and never blocks; a sink that must do
// blocking work (a file, a pipe) does it in bounded steps or on its own thread.
#pragma once

#include "vsnd/audio/sample_spec.hpp"
#include "vsnd/timing/clock.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace vsnd::rtp {

class PlayoutSink {
public:
    virtual ~PlayoutSink() = default;
    // The format played; the receiver renders at its rate and channel count.
    virtual audio::SampleSpec spec() const = 0;
    // Brings the sink up to `now` (a paced sink plays what has become due). False once the sink
    // has failed for good; error() says why.
    virtual bool update(Nanos now) = 0;
    // Frames written and not yet audible at `now`; nullopt while the sink cannot tell.
    virtual std::optional<double> pending(Nanos now) const = 0;
    // Frames write() takes now.
    virtual std::size_t writable() const = 0;
    // Top-aligned 32-bit samples, whole frames, converted to spec().format; returns frames taken.
    virtual std::size_t write(std::span<const std::int32_t> samples, Nanos now) = 0;
    // Frames the sink prefers per write (its period); the receiver writes in these steps.
    virtual std::uint32_t period_frames() const = 0;
    // Frames the sink holds at most (its ring).
    virtual std::uint32_t buffer_frames() const = 0;
    // The latest time update() must be called again.
    virtual Nanos next_wake(Nanos now) const = 0;
    // A file descriptor that becomes readable when the sink wants attention, or -1.
    virtual int poll_fd() const { return -1; }
    // Times the sink ran out of audio.
    virtual std::uint64_t xruns() const = 0;
    virtual std::string error() const { return {}; }
    virtual std::string describe() const = 0;
};

// Top-aligned int32 -> the bytes of `format` (U8, S16, S24 in 32 bits, S32, FLOAT), whole frames.
void convert_samples(std::span<const std::int32_t> in, wire::PcmFormat format, std::uint8_t* out);
// Whether convert_samples() writes this format.
bool sink_format_supported(wire::PcmFormat format);

} // namespace vsnd::rtp
