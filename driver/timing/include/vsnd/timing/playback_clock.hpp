// A playback clock: which frame is audible when. Fed with PositionSamples from any source — the
// driver model's tx completions + latency_bytes, or ALSA's snd_pcm_status (delay + htstamp) for a
// program playing through ALSA — and smoothed by a second-order delay-locked loop, it answers
// between samples too. A device that completes on hand-off and reports latency 0 makes it run
// early by its hidden buffering; vsnd-host does not. Single-threaded: one owner feeds and reads.
#pragma once

#include "vsnd/timing/clock.hpp"
#include "vsnd/timing/position_sample.hpp"

#include <cstdint>
#include <optional>

namespace vsnd::timing {

class PlaybackClock {
public:
    struct Options {
        double bandwidth_hz = 0.5;       // tracking bandwidth once locked
        double lock_bandwidth_hz = 5.0;  // wider while acquiring lock
        unsigned lock_updates = 24;      // updates spent acquiring
        Nanos relock_error = 10'000'000; // an error this large means a discontinuity: re-anchor
    };

    explicit PlaybackClock(std::uint32_t rate) : PlaybackClock(rate, Options{}) {}
    PlaybackClock(std::uint32_t rate, Options options);

    // Forget everything (new PREPARE).
    void reset();
    // The stream stopped at `when`: the position holds until the next update re-anchors it.
    void pause(Nanos when);
    // `audible_frames` frames had been audible at `when`.
    void update(double audible_frames, Nanos when);
    void update(const PositionSample& s) { update(s.frames, s.when); }

    bool valid() const { return valid_; }
    // Frames audible at t (fractional), once the clock has had an update.
    std::optional<double> frames_at(Nanos t) const;
    // When frame `frame` is (or was) audible.
    std::optional<Nanos> time_of(double frame) const;
    // Measured rate in frames per second.
    double rate() const { return 1e9 / ns_per_frame_; }
    std::uint64_t updates() const { return updates_; }
    std::uint64_t relocks() const { return relocks_; }

private:
    void anchor(double frames, Nanos when);

    std::uint32_t nominal_rate_;
    Options opt_;
    bool valid_ = false, paused_ = false;
    double anchor_frames_ = 0, anchor_time_ = 0, ns_per_frame_;
    double paused_frames_ = 0;
    std::uint64_t updates_ = 0, relocks_ = 0;
    unsigned since_anchor_ = 0;
};

} // namespace vsnd::timing
