#include "vsnd/backends/paced_stream.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

namespace vsnd::backends {

namespace {

std::uint32_t host_period_frames(const device::StreamFormat& fmt, const PacedTiming& timing) {
    return timing.period_frames ? timing.period_frames : std::max<std::uint32_t>(1, fmt.period_bytes / fmt.frame_bytes());
}

// Playback keeps host buffering small (it is latency). Capture may hold the guest's whole ring:
// frames are only lost if the guest itself stops reading.
std::size_t fifo_capacity(const device::StreamFormat& fmt, const PacedTiming& timing) {
    std::uint32_t frames = timing.fifo_frames ? timing.fifo_frames : 2 * host_period_frames(fmt, timing);
    if (fmt.direction == wire::Direction::Input) frames = std::max<std::uint32_t>(frames, fmt.buffer_bytes / fmt.frame_bytes());
    return std::size_t{frames} * fmt.frame_bytes();
}

} // namespace

PacedStream::PacedStream(const Clock& clock, const device::StreamFormat& fmt, PacedTiming timing,
                         std::unique_ptr<FrameSink> sink, std::unique_ptr<FrameSource> source,
                         std::shared_ptr<PlaybackRecord> record)
    : clock_(clock), fmt_(fmt), timing_(timing), sink_(std::move(sink)), source_(std::move(source)),
      frame_bytes_(fmt.frame_bytes()), period_(host_period_frames(fmt, timing)), fifo_(fifo_capacity(fmt, timing)),
      record_(std::move(record)) {
    scratch_.resize(std::size_t{period_} * frame_bytes_);
}

PacedStream::~PacedStream() = default;

std::optional<double> PlaybackRecord::audible_time(std::uint64_t frame) const {
    if (frame >= frames || runs.empty()) return std::nullopt;
    auto it = std::upper_bound(runs.begin(), runs.end(), frame,
                               [](std::uint64_t f, const PlaybackRun& r) { return f < r.frames; });
    if (it == runs.begin()) return std::nullopt;
    --it;
    return static_cast<double>(it->when) + static_cast<double>(frame - it->frames) * 1e9 / (rate * rate_ratio);
}

double PlaybackRecord::frames_audible_at(Nanos t) const {
    double audible = 0;
    for (std::size_t i = 0; i < runs.size() && runs[i].when <= t; ++i) {
        const double end = i + 1 < runs.size() ? static_cast<double>(runs[i + 1].frames) : static_cast<double>(frames);
        audible = std::min(end, static_cast<double>(runs[i].frames) +
                                    static_cast<double>(t - runs[i].when) * rate * rate_ratio / 1e9);
    }
    return audible;
}

double PacedStream::frames_per_ns() const { return fmt_.rate * timing_.rate_ratio / 1e9; }

Nanos PacedStream::time_of(std::uint64_t frames) const {
    return anchor_time_ + static_cast<Nanos>(std::ceil(static_cast<double>(frames - anchor_frames_) / frames_per_ns()));
}

void PacedStream::anchor(Nanos t) {
    anchor_time_ = t;
    anchor_frames_ = done_;
    has_run_ = true;
    if (record_) record_->runs.push_back({done_, output() ? t + timing_.latency : t});
}

void PacedStream::fifo_pop_to_sink(std::size_t bytes) {
    if (record_) record_->frames += bytes / frame_bytes_;
    std::uint64_t pos = fifo_.head();
    for (std::size_t left = bytes; left > 0;) {
        const auto part = fifo_.read_region(pos, left);
        if (sink_) sink_->played(part);
        if (record_ && record_->keep_frames) record_->played.insert(record_->played.end(), part.begin(), part.end());
        pos += part.size();
        left -= part.size();
    }
    fifo_.commit_read(pos);
}

void PacedStream::advance() {
    if (!running_ || starved_) return;
    const Nanos now = clock_.now();
    // The tiny epsilon keeps time_of() and this floor exact inverses despite rounding.
    const double due = std::floor(static_cast<double>(now - anchor_time_) * frames_per_ns() + 1e-6);
    const std::uint64_t target = anchor_frames_ + static_cast<std::uint64_t>(std::max(0.0, due));
    if (target <= done_) return;
    std::uint64_t n = target - done_;
    if (output()) {
        const std::uint64_t have = fifo_.used_bytes() / frame_bytes_;
        const std::uint64_t take = std::min(n, have);
        fifo_pop_to_sink(take * frame_bytes_);
        done_ += take;
        if (take < n) { // ran dry: the card plays silence until new data arrives
            starved_ = true;
            ++xruns_;
        }
        return;
    }
    bool overrun = false;
    while (n > 0) {
        const std::size_t chunk = std::min<std::uint64_t>(n, period_);
        auto buf = std::span(scratch_).first(chunk * frame_bytes_);
        if (source_) source_->capture(buf); else std::fill(buf.begin(), buf.end(), 0);
        const std::size_t room = fifo_.free_bytes();
        if (buf.size() > room) overrun = true; // nobody read in time: newest frames are lost
        fifo_.push(buf.first(std::min(room, buf.size())));
        done_ += chunk;
        n -= chunk;
    }
    if (overrun) ++xruns_;
}

void PacedStream::start() {
    advance();
    if (running_) return;
    running_ = true;
    starved_ = output() && fifo_.used_bytes() < frame_bytes_;
    if (!starved_) anchor(clock_.now());
}

void PacedStream::stop() {
    advance();
    running_ = false;
}

std::size_t PacedStream::writable_bytes() {
    advance();
    return output() ? fifo_.free_bytes() : 0;
}

void PacedStream::write(std::span<const std::uint8_t> bytes) {
    if (record_) ++record_->handovers;
    advance();
    fifo_.push(bytes.first(std::min(bytes.size(), fifo_.free_bytes())));
    if (running_ && starved_ && fifo_.used_bytes() >= frame_bytes_) {
        starved_ = false;
        anchor(clock_.now());
    }
}

std::size_t PacedStream::readable_bytes() {
    advance();
    if (output()) return 0;
    const std::size_t period_bytes = std::size_t{period_} * frame_bytes_;
    return fifo_.used_bytes() / period_bytes * period_bytes; // whole periods, as a DMA interrupt delivers them
}

void PacedStream::read(std::span<std::uint8_t> out) {
    advance();
    fifo_.pop(out.first(std::min(out.size(), fifo_.used_bytes())));
}

device::Position PacedStream::position() {
    advance();
    if (!has_run_) return {0, clock_.now(), false};
    // Reported at the last period boundary, stamped with that boundary's time, like an interrupt.
    const std::uint64_t frames = anchor_frames_ + (done_ - anchor_frames_) / period_ * period_;
    const Nanos when = time_of(frames) + (output() ? timing_.latency : 0);
    return {frames, when, running_};
}

std::optional<Nanos> PacedStream::next_wakeup() {
    advance();
    if (!running_ || starved_) return std::nullopt;
    const std::uint64_t boundary = anchor_frames_ + ((done_ - anchor_frames_) / period_ + 1) * period_;
    return time_of(boundary);
}

} // namespace vsnd::backends
