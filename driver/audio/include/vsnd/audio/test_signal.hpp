// A deterministic test signal: every sample of every channel differs and uses all bits of its
// format, so a single lost, repeated, swapped or truncated frame is detected by compare().
#pragma once

#include "vsnd/audio/sample_spec.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

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

// The signals tools and the guest agent play, by name: "test" (TestSignal, for bit-exact
// checks), "sine" (channel c at 1000 + 500·c Hz, half full scale, for listening) and "silence".
enum class SignalKind { Test, Sine, Silence };
std::optional<SignalKind> parse_signal(std::string_view name);
// Whether `kind` can be produced in `format` (sine: signed integer and float formats).
bool signal_supports(SignalKind kind, wire::PcmFormat format);
// Writes frames [first_frame, ...) of the signal in `spec` into `out` (whole frames).
void fill_signal(SignalKind kind, const SampleSpec& spec, std::span<std::uint8_t> out, std::uint64_t first_frame);

} // namespace vsnd::audio
