#include "vsnd/rtp/drift_loop.hpp"

#include <algorithm>
#include <cmath>

namespace vsnd::rtp {

void DriftLoop::restart(bool keep_rate) {
    if (!keep_rate) integral_ = 0;
    speed_ = 1 + integral_;
    acquired_s_ = 0;
    started_ = false;
}

double DriftLoop::update(double error_s, Nanos now) {
    if (!started_) {
        started_ = true;
        last_ = now;
        return speed_;
    }
    const double dt = std::clamp(static_cast<double>(now - last_) / 1e9, 0.0, 0.1);
    last_ = now;
    acquired_s_ += dt;
    // Natural frequency w = 2 pi B, damping 1/sqrt(2): kp = sqrt(2) w, ki = w^2. The plant is an
    // integrator (latency error changes by -(speed - 1) per second).
    const double w = 2 * M_PI * (acquiring() ? opt_.acquire_bandwidth_hz : opt_.track_bandwidth_hz);
    const double e = std::clamp(error_s, -opt_.error_clamp_s, opt_.error_clamp_s);
    const double limit = opt_.max_ppm * 1e-6;
    integral_ = std::clamp(integral_ + w * w * e * dt, -limit, limit);
    speed_ = 1 + std::clamp(integral_ + std::sqrt(2.0) * w * e, -limit, limit);
    return speed_;
}

} // namespace vsnd::rtp
