#include "vsnd/rtp/resampler.hpp"

#include <zita-resampler/vresampler.h>

#include <stdexcept>

namespace vsnd::rtp {

namespace { constexpr unsigned kHalfLength = 32; }

AdaptiveResampler::AdaptiveResampler(double ratio, unsigned channels)
    : vr_(std::make_unique<VResampler>()), channels_(channels) {
    if (vr_->setup(ratio, channels, kHalfLength) != 0) throw std::invalid_argument("resampler: ratio out of range");
    reset();
}

AdaptiveResampler::~AdaptiveResampler() = default;

void AdaptiveResampler::reset() {
    vr_->reset();
    // Prime with half the filter of zeros, so the first input sample emerges at the first output.
    vr_->inp_count = vr_->inpsize() / 2 - 1;
    vr_->inp_data = nullptr;
    vr_->out_count = 1 << 20;
    vr_->out_data = nullptr;
    vr_->process();
}

void AdaptiveResampler::set_speed(double speed) { vr_->set_rratio(1.0 / speed); }

AdaptiveResampler::Step AdaptiveResampler::process(std::span<const float> in, std::span<float> out) {
    const auto in_frames = static_cast<unsigned>(in.size() / channels_);
    const auto out_frames = static_cast<unsigned>(out.size() / channels_);
    vr_->inp_count = in_frames;
    vr_->inp_data = const_cast<float*>(in.data()); // read only (zita's API is not const)
    vr_->out_count = out_frames;
    vr_->out_data = out.data();
    vr_->process();
    return {in_frames - vr_->inp_count, out_frames - vr_->out_count};
}

double AdaptiveResampler::delay_frames() const { return vr_->inpsize() / 2.0 - vr_->inpdist(); }

} // namespace vsnd::rtp
