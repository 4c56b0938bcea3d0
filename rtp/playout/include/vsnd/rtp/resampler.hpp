// The adaptive resampler: zita-resampler's VResampler (a polyphase filter whose ratio may change
// at every call and is smoothed inside), wrapped for interleaved float frames. Why this library:
// rtp/README.md. Single owner, never blocks, no allocation after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

class VResampler;

namespace vsnd::rtp {

class AdaptiveResampler {
public:
    // `ratio` = output rate / input rate (1 for the same rate); quality: filter half-length 32.
    AdaptiveResampler(double ratio, unsigned channels);
    ~AdaptiveResampler();

    // Consumes input `speed` times faster than `ratio` alone says (1.001: 1000 ppm faster).
    void set_speed(double speed);
    // Produces into `out` from `in`, until either is used up. Returns {frames consumed, produced}.
    struct Step { std::uint32_t consumed, produced; };
    Step process(std::span<const float> in, std::span<float> out);
    // Input frames inside the filter that have not yet emerged (its delay, in input frames).
    double delay_frames() const;
    unsigned channels() const { return channels_; }
    void reset();

private:
    std::unique_ptr<VResampler> vr_;
    unsigned channels_;
};

} // namespace vsnd::rtp
