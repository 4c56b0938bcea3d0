#include "vsnd/rtp/paced_sink.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace vsnd::rtp {

bool sink_format_supported(wire::PcmFormat f) {
    using F = wire::PcmFormat;
    return f == F::U8 || f == F::S16 || f == F::S24 || f == F::S32 || f == F::Float;
}

void convert_samples(std::span<const std::int32_t> in, wire::PcmFormat f, std::uint8_t* out) {
    using F = wire::PcmFormat;
    for (std::int32_t v : in) {
        switch (f) {
        case F::U8: *out++ = static_cast<std::uint8_t>((v >> 24) + 128); break;
        case F::S16: { const auto s = static_cast<std::int16_t>(v >> 16); std::memcpy(out, &s, 2); out += 2; break; }
        case F::S24: { const std::int32_t s = v >> 8; std::memcpy(out, &s, 4); out += 4; break; }
        case F::S32: std::memcpy(out, &v, 4); out += 4; break;
        case F::Float: { const float s = static_cast<float>(v * 0x1p-31); std::memcpy(out, &s, 4); out += 4; break; }
        default: break;
        }
    }
}

PacedSink::PacedSink(PacedSinkOptions o, Played played)
    : opt_(o), played_(std::move(played)), frame_ns_(1e9 / (o.spec.rate * (1 + o.ppm * 1e-6))),
      ring_(std::size_t{o.buffer_frames} * o.spec.channels), period_(std::size_t{o.period_frames} * o.spec.channels) {
    if (opt_.start_frames == 0) opt_.start_frames = opt_.period_frames;
}

Nanos PacedSink::boundary(std::uint64_t period) const {
    return t0_ + static_cast<Nanos>(std::llround(static_cast<double>(period * opt_.period_frames) * frame_ns_));
}

bool PacedSink::update(Nanos now) {
    if (!started_) return true;
    const unsigned ch = opt_.spec.channels;
    while (boundary(periods_) <= now) {
        if (opt_.wait_for_late_frames && buffered() < opt_.period_frames) break;
        // The hardware takes the next period; what is missing is played as silence.
        head_before_current_ = head_;
        const auto take = static_cast<std::uint32_t>(std::min<std::uint64_t>(buffered(), opt_.period_frames));
        for (std::uint32_t i = 0; i < take; ++i) {
            const std::size_t s = static_cast<std::size_t>((head_ + i) % opt_.buffer_frames) * ch;
            std::copy_n(&ring_[s], ch, &period_[std::size_t{i} * ch]);
        }
        std::fill(period_.begin() + static_cast<std::ptrdiff_t>(std::size_t{take} * ch), period_.end(), 0);
        if (take < opt_.period_frames) ++xruns_;
        head_ += take;
        current_data_ = take;
        if (played_) played_(period_, boundary(periods_), take);
        ++periods_;
    }
    return true;
}

std::optional<double> PacedSink::pending(Nanos now) const {
    if (!started_) return static_cast<double>(buffered());
    // Waiting for late frames: the nominal position runs on; pending may go below zero (late).
    if (opt_.wait_for_late_frames) return static_cast<double>(tail_) - static_cast<double>(now - t0_) / frame_ns_;
    // Frames of the period now playing that are not yet audible are still pending.
    const Nanos begin = boundary(periods_ - (periods_ ? 1 : 0));
    double in_current = periods_ ? std::clamp(static_cast<double>(now - begin) / frame_ns_, 0.0, double(current_data_)) : 0;
    return static_cast<double>(buffered()) + (current_data_ - in_current);
}

std::size_t PacedSink::writable() const { return opt_.buffer_frames - buffered(); }

std::size_t PacedSink::write(std::span<const std::int32_t> samples, Nanos now) {
    const unsigned ch = opt_.spec.channels;
    const std::size_t n = std::min(samples.size() / ch, writable());
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t s = static_cast<std::size_t>((tail_ + i) % opt_.buffer_frames) * ch;
        std::copy_n(&samples[i * ch], ch, &ring_[s]);
    }
    tail_ += n;
    if (!started_ && buffered() >= opt_.start_frames) {
        started_ = true;
        t0_ = now;
        update(now);
    }
    return n;
}

Nanos PacedSink::next_wake(Nanos now) const {
    if (!started_) return now + static_cast<Nanos>(frame_ns_ * opt_.period_frames);
    return std::max(now, boundary(periods_));
}

std::string PacedSink::describe() const {
    return fmt::format("paced {} Hz, {} ch, period {} frames, buffer {}{}", opt_.spec.rate, opt_.spec.channels,
                       opt_.period_frames, opt_.buffer_frames, opt_.ppm != 0 ? fmt::format(", {:+} ppm", opt_.ppm) : "");
}

} // namespace vsnd::rtp
