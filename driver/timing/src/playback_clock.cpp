#include "vsnd/timing/playback_clock.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace vsnd::timing {

PlaybackClock::PlaybackClock(std::uint32_t rate, Options options)
    : nominal_rate_(rate), opt_(options), ns_per_frame_(1e9 / rate) {}

void PlaybackClock::reset() {
    valid_ = paused_ = false;
    ns_per_frame_ = 1e9 / nominal_rate_;
    updates_ = 0;
    since_anchor_ = 0;
}

void PlaybackClock::pause(Nanos when) {
    if (!valid_ || paused_) return;
    paused_frames_ = *frames_at(when);
    paused_ = true;
}

void PlaybackClock::anchor(double frames, Nanos when) {
    anchor_frames_ = frames;
    anchor_time_ = static_cast<double>(when);
    valid_ = true;
    paused_ = false;
    since_anchor_ = 0;
}

void PlaybackClock::update(double frames, Nanos when) {
    ++updates_;
    if (!valid_ || paused_) { anchor(frames, when); return; }
    const double dp = frames - anchor_frames_;
    if (dp <= 0) {
        // No progress (latency grew as much as we completed): nothing to learn from.
        if (dp < 0) { ++relocks_; anchor(frames, when); }
        return;
    }
    const double predicted = anchor_time_ + dp * ns_per_frame_;
    const double error = static_cast<double>(when) - predicted;
    if (std::abs(error) > static_cast<double>(opt_.relock_error)) {
        ++relocks_;
        anchor(frames, when);
        return;
    }
    // Loop gains for a critically damped 2nd-order loop, scaled to this update's interval.
    const double bw = since_anchor_ < opt_.lock_updates ? opt_.lock_bandwidth_hz : opt_.bandwidth_hz;
    const double w = std::min(1.0, 2 * std::numbers::pi * bw * dp * ns_per_frame_ * 1e-9);
    anchor_time_ = predicted + std::numbers::sqrt2 * w * error;
    anchor_frames_ = frames;
    ns_per_frame_ += w * w * error / dp;
    ++since_anchor_;
}

std::optional<double> PlaybackClock::frames_at(Nanos t) const {
    if (!valid_) return std::nullopt;
    if (paused_) return paused_frames_;
    return anchor_frames_ + (static_cast<double>(t) - anchor_time_) / ns_per_frame_;
}

std::optional<Nanos> PlaybackClock::time_of(double frame) const {
    if (!valid_ || paused_) return std::nullopt;
    return static_cast<Nanos>(std::llround(anchor_time_ + (frame - anchor_frames_) * ns_per_frame_));
}

} // namespace vsnd::timing
