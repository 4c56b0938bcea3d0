// The drift loop: a second-order (proportional + integral) loop that turns the latency error
// (measured latency minus target, in seconds) into a playback speed: how much faster than
// nominal the receiver consumes the sender's frames. Type 2, so a constant rate difference
// leaves no standing error; wide while acquiring, narrow once settled (as zita-ajbridge does);
// the integral holds the rate estimate, so it can be frozen across a sender's pause and keeps its
// value when the bandwidth changes. Single owner, pure arithmetic.
#pragma once

#include "vsnd/timing/clock.hpp"

namespace vsnd::rtp {

class DriftLoop {
public:
    struct Options {
        double acquire_bandwidth_hz = 0.5;
        double track_bandwidth_hz = 0.05;
        double acquire_seconds = 4;    // at the wide bandwidth after a (re)start
        double max_ppm = 2000;         // speed is clamped to 1 ± max_ppm
        double error_clamp_s = 0.002;  // one update's error counts at most this much
    };
    DriftLoop() : DriftLoop(Options{}) {}
    explicit DriftLoop(Options o) : opt_(o) {}

    // Back to nominal speed, acquiring; `keep_rate` keeps the rate estimate (a resync of the
    // same sender, whose clock did not change).
    void restart(bool keep_rate);
    // One measurement at `now`; returns the speed to use until the next.
    double update(double error_s, Nanos now);
    // No measurement (the sender paused): time passes, nothing integrates.
    void freeze(Nanos now) { last_ = now; }

    double speed() const { return speed_; }
    // The rate estimate alone (the integral), in ppm: the sender's rate relative to the sink's.
    double rate_ppm() const { return integral_ * 1e6; }
    bool acquiring() const { return acquired_s_ < opt_.acquire_seconds; }
    const Options& options() const { return opt_; }

private:
    Options opt_;
    double integral_ = 0, speed_ = 1, acquired_s_ = 0;
    Nanos last_ = 0;
    bool started_ = false;
};

} // namespace vsnd::rtp
