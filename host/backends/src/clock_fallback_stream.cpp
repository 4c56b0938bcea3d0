#include "vsnd/backends/clock_fallback_stream.hpp"

#include <algorithm>
#include <cstring>

namespace vsnd::backends {

namespace {

std::uint64_t frames_in(Nanos ns, std::uint32_t rate) {
    return ns > 0 ? static_cast<std::uint64_t>(static_cast<__int128>(ns) * rate / kNanosPerSecond) : 0;
}

} // namespace

ClockFallbackStream::ClockFallbackStream(const Clock& clock, const device::StreamFormat& fmt,
                                         std::unique_ptr<device::BackendStream> inner)
    : clock_(clock), fmt_(fmt), inner_(std::move(inner)), frame_bytes_(std::max(1u, fmt.frame_bytes())) {}

bool ClockFallbackStream::fall_back() {
    if (fallen_back_) return true;
    if (!inner_->failed()) return false;
    // Where the inner stream had got to, extrapolated to now; playback never past what it took.
    const Nanos now = clock_.now();
    const device::Position p = inner_->position();
    std::uint64_t at = p.frames + (p.running && now > p.when ? frames_in(now - p.when, fmt_.rate) : 0);
    if (output()) at = std::min(at, written_ / frame_bytes_);
    fallen_back_ = true;
    frames0_ = at;
    since_ = now;
    earlier_ = 0;
    return true;
}

std::uint64_t ClockFallbackStream::elapsed(Nanos now) const {
    return earlier_ + (running_ ? frames_in(now - since_, fmt_.rate) : 0);
}

std::uint64_t ClockFallbackStream::frames(Nanos now) const {
    const std::uint64_t paced = frames0_ + elapsed(now);
    return output() ? std::min(paced, written_ / frame_bytes_) : paced;
}

void ClockFallbackStream::start() {
    if (fall_back()) {
        if (!running_) since_ = clock_.now();
    } else {
        inner_->start();
    }
    running_ = true;
}

void ClockFallbackStream::stop() {
    if (fall_back()) {
        if (running_) earlier_ = elapsed(clock_.now()); // the paced clock holds while stopped
    } else {
        inner_->stop();
    }
    running_ = false;
}

std::size_t ClockFallbackStream::writable_bytes() {
    if (!output()) return 0;
    if (!fall_back()) return inner_->writable_bytes();
    // Room as a card with the guest's ring would have: what is not yet "played".
    const std::uint64_t pending = written_ - std::min(written_, frames(clock_.now()) * frame_bytes_);
    const std::uint64_t capacity = std::max<std::uint64_t>(fmt_.buffer_bytes, frame_bytes_);
    return static_cast<std::size_t>(capacity - std::min(pending, capacity));
}

void ClockFallbackStream::write(std::span<const std::uint8_t> bytes) {
    if (!output()) return;
    if (!fall_back()) {
        inner_->write(bytes); // the device writes at most writable_bytes()
        written_ += bytes.size();
        return;
    }
    const Nanos now = clock_.now();
    if (frames(now) >= written_ / frame_bytes_) {
        // It had run dry: like a card after an underrun, the new frames play from now on.
        frames0_ = written_ / frame_bytes_;
        earlier_ = 0;
        since_ = now;
    }
    written_ += bytes.size();
}

std::size_t ClockFallbackStream::readable_bytes() {
    if (output()) return 0;
    if (!fall_back()) return inner_->readable_bytes();
    const std::uint64_t due = elapsed(clock_.now()) * frame_bytes_;
    return inner_->readable_bytes() + static_cast<std::size_t>(due - std::min(due, silence_));
}

void ClockFallbackStream::read(std::span<std::uint8_t> out) {
    if (output()) return;
    if (!fall_back()) return inner_->read(out);
    // What the inner stream captured before it failed comes first, then silence at the rate.
    const std::size_t left = std::min(out.size(), inner_->readable_bytes());
    inner_->read(out.first(left));
    std::memset(out.data() + left, 0, out.size() - left);
    silence_ += out.size() - left;
}

device::Position ClockFallbackStream::position() {
    if (!fall_back()) return inner_->position();
    const Nanos now = clock_.now();
    const std::uint64_t f = frames(now);
    return {f, now, running_ && (!output() || f < written_ / frame_bytes_)};
}

std::optional<Nanos> ClockFallbackStream::next_wakeup() {
    if (!fall_back()) return inner_->next_wakeup();
    const Nanos now = clock_.now();
    if (!running_) return std::nullopt;
    if (output() && frames(now) >= written_ / frame_bytes_) return std::nullopt; // nothing left to "play"
    // A guest period at a time, like a card's interrupt.
    const std::uint32_t period = fmt_.period_bytes / frame_bytes_;
    return now + std::max<Nanos>(1'000'000, static_cast<Nanos>(period) * kNanosPerSecond / fmt_.rate);
}

} // namespace vsnd::backends
