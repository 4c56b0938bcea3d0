#include "vsnd/rtp/jitter_buffer.hpp"

#include <algorithm>
#include <cstring>

namespace vsnd::rtp {

JitterBuffer::JitterBuffer(std::uint32_t capacity_frames, unsigned channels)
    : capacity_(std::max<std::uint32_t>(capacity_frames, 1)), channels_(channels),
      samples_(std::size_t{capacity_} * channels), filled_(capacity_), last_(channels), fade_from_(channels) {}

void JitterBuffer::reset(std::int64_t read_position) {
    std::fill(filled_.begin(), filled_.end(), 0);
    read_pos_ = read_position;
    fade_left_ = 0;
}

JitterBuffer::Put JitterBuffer::put(std::int64_t first, std::span<const std::int32_t> samples) {
    const auto frames = static_cast<std::int64_t>(samples.size() / channels_);
    const std::int64_t end = first + frames;
    if (end <= read_pos_) return Put::Late;
    if (end > read_pos_ + capacity_) return Put::TooFarAhead;
    std::int64_t skip = std::max<std::int64_t>(0, read_pos_ - first);
    for (std::int64_t f = first + skip; f < end; ++f) {
        const auto s = slot(f);
        std::memcpy(&samples_[s * channels_], &samples[static_cast<std::size_t>(f - first) * channels_],
                    channels_ * sizeof(std::int32_t));
        filled_[s] = 1;
    }
    return skip ? Put::PartlyLate : Put::Stored;
}

bool JitterBuffer::holds(std::int64_t frame) const {
    return frame >= read_pos_ && frame < read_pos_ + capacity_ && filled_[slot(frame)];
}

JitterBuffer::Read JitterBuffer::read(std::span<std::int32_t> out, Concealment how, std::uint32_t fade_frames) {
    Read r;
    const std::size_t frames = out.size() / channels_;
    for (std::size_t i = 0; i < frames; ++i, ++read_pos_) {
        const auto s = slot(read_pos_);
        std::int32_t* o = &out[i * channels_];
        if (filled_[s]) {
            std::memcpy(o, &samples_[s * channels_], channels_ * sizeof(std::int32_t));
            filled_[s] = 0;
            fade_left_ = 0;
            ++r.present;
        } else {
            // A gap inside sound starts a fade from the last frame; a gap after silence is silence.
            if (how == Concealment::Fade && fade_left_ == 0 && fade_frames > 0 &&
                std::any_of(last_.begin(), last_.end(), [](std::int32_t v) { return v != 0; })) {
                fade_from_ = last_;
                fade_len_ = fade_left_ = fade_frames;
            }
            if (fade_left_ > 0) {
                const double gain = static_cast<double>(fade_left_ - 1) / fade_len_;
                for (unsigned c = 0; c < channels_; ++c)
                    o[c] = static_cast<std::int32_t>(fade_from_[c] * gain) & ~0xff; // stays a 24-bit value
                --fade_left_;
            } else {
                std::fill(o, o + channels_, 0);
            }
            ++r.concealed;
        }
        std::memcpy(last_.data(), o, channels_ * sizeof(std::int32_t));
    }
    return r;
}

void JitterBuffer::seek(std::int64_t pos) {
    if (pos >= read_pos_ + capacity_ || pos <= read_pos_ - capacity_) return reset(pos);
    // Forward: the frames passed over are dropped. Back: the slots of [pos, read_pos) hold frames
    // beyond the new reach, which are dropped.
    for (std::int64_t f = std::min(pos, read_pos_); f < std::max(pos, read_pos_); ++f) filled_[slot(f)] = 0;
    read_pos_ = pos;
}

std::optional<std::uint32_t> JitterBuffer::find_quiet(std::uint32_t frames, std::int32_t threshold) const {
    for (std::uint32_t i = 0; i < frames; ++i) {
        const auto s = slot(read_pos_ + i);
        if (!filled_[s]) return i;
        const std::int32_t* f = &samples_[s * channels_];
        if (std::all_of(f, f + channels_, [&](std::int32_t v) { return v < threshold && v > -threshold; })) return i;
    }
    return std::nullopt;
}

void JitterBuffer::skip(std::uint32_t frames) {
    for (std::uint32_t i = 0; i < frames; ++i, ++read_pos_) filled_[slot(read_pos_)] = 0;
}

} // namespace vsnd::rtp
