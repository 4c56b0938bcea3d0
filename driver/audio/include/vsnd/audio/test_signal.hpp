// A deterministic test signal: every sample of every channel differs and uses all bits of its
// format, so a single lost, repeated, swapped or truncated frame is detected by compare().
#pragma once

#include "vsnd/wire/virtio_snd.hpp"

#include <cstdint>
#include <optional>
#include <span>

namespace vsnd::audio {

class TestSignal {
public:
    TestSignal(wire::PcmFormat format, unsigned channels, std::uint32_t seed = 1);

    unsigned frame_bytes() const { return frame_bytes_; }
    // Writes frames [first_frame, first_frame + bytes/frame_bytes) into `out` (whole frames).
    void fill(std::span<std::uint8_t> out, std::uint64_t first_frame) const;
    // The first frame of `data` (starting at first_frame) that differs, or nullopt if all match.
    std::optional<std::uint64_t> compare(std::span<const std::uint8_t> data, std::uint64_t first_frame) const;

private:
    void sample(std::uint64_t frame, unsigned channel, std::uint8_t* out) const;

    wire::PcmFormat format_;
    unsigned channels_, sample_bytes_, frame_bytes_;
    std::uint32_t seed_;
};

} // namespace vsnd::audio
