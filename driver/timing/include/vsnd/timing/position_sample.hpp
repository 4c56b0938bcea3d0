// What feeds a PlaybackClock: (position, time) observations from whichever source knows when
// audio is heard. Each source's arithmetic lives here, so every user derives the same position
// from the same reading. Pure functions, any thread.
#pragma once

#include "vsnd/timing/clock.hpp"

#include <cstdint>

namespace vsnd::timing {

// `frames` stream frames had become audible at `when` (CLOCK_MONOTONIC, or a simulated clock).
struct PositionSample {
    double frames = 0;
    Nanos when = 0;
};

// A virtio-snd I/O completion, stamped when it was seen. Playback: `completed_bytes` of the stream
// have been returned, `latency_bytes` of them not yet audible. Capture: the device holds
// `latency_bytes` captured beyond the `completed_bytes` it returned.
inline PositionSample from_virtio_completion(std::uint64_t completed_bytes, std::uint32_t latency_bytes,
                                             std::uint32_t frame_bytes, Nanos completed_at, bool playback = true) {
    const double completed = static_cast<double>(completed_bytes), latency = static_cast<double>(latency_bytes);
    return {(playback ? completed - latency : completed + latency) / frame_bytes, completed_at};
}

// ALSA's snd_pcm_status(): the application has written `appl_frames` and the stream is
// `delay_frames` behind that (ring occupancy plus the driver's own delay), as of the status
// htstamp (CLOCK_MONOTONIC when the PCM's timestamp type is monotonic, as alsa-lib sets it).
inline PositionSample from_alsa_status(std::uint64_t appl_frames, std::int64_t delay_frames, Nanos htstamp) {
    return {static_cast<double>(appl_frames) - static_cast<double>(delay_frames), htstamp};
}

} // namespace vsnd::timing
