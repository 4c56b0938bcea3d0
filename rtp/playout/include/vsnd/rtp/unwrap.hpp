// Extends a wrapping 16- or 32-bit RTP counter (sequence number, timestamp) to 64 bits: each value
// is placed nearest to the highest one seen (serial-number arithmetic), so reordering across a
// wrap extends correctly. Single owner, pure arithmetic.
#pragma once

#include <cstdint>
#include <optional>

namespace vsnd::rtp {

template <unsigned Bits>
class Unwrapper {
    static_assert(Bits == 16 || Bits == 32);
    static constexpr std::int64_t kSpan = std::int64_t{1} << Bits;

public:
    // The first value maps to itself plus 2^Bits, so extended values stay positive after a
    // backward step across zero.
    std::int64_t extend(std::uint64_t raw) {
        const auto v = static_cast<std::int64_t>(raw & (kSpan - 1));
        if (!highest_) {
            highest_ = v + kSpan;
            return *highest_;
        }
        std::int64_t delta = v - (*highest_ & (kSpan - 1));
        if (delta >= kSpan / 2) delta -= kSpan;
        else if (delta < -kSpan / 2) delta += kSpan;
        const std::int64_t ext = *highest_ + delta;
        if (ext > *highest_) highest_ = ext;
        return ext;
    }
    // Without recording it as seen.
    std::int64_t peek(std::uint64_t raw) const {
        Unwrapper copy = *this;
        return copy.extend(raw);
    }
    std::optional<std::int64_t> highest() const { return highest_; }
    void reset() { highest_.reset(); }

private:
    std::optional<std::int64_t> highest_;
};

} // namespace vsnd::rtp
