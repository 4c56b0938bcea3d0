#include "vsnd/audio/test_signal.hpp"

#include <cstring>
#include <endian.h>
#include <vector>

namespace vsnd::audio {
namespace {

// splitmix64: cheap, well-mixed, stateless in the frame index.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

} // namespace

TestSignal::TestSignal(wire::PcmFormat format, unsigned channels, std::uint32_t seed)
    : format_(format), channels_(channels), sample_bytes_(wire::format_info(format)->physical_bytes),
      frame_bytes_(sample_bytes_ * channels), seed_(seed) {}

void TestSignal::sample(std::uint64_t frame, unsigned channel, std::uint8_t* out) const {
    const std::uint64_t r = mix((frame * 64 + channel) ^ (std::uint64_t{seed_} << 40));
    const auto bits = static_cast<std::uint32_t>(r);
    switch (format_) {
    case wire::PcmFormat::S24: case wire::PcmFormat::U24: {
        // 24 significant bits in a 32-bit container, sign-extended as ALSA expects.
        const std::int32_t v = static_cast<std::int32_t>(bits << 8) >> 8;
        const std::uint32_t le = htole32(static_cast<std::uint32_t>(v));
        std::memcpy(out, &le, 4);
        break;
    }
    case wire::PcmFormat::Float: {
        // Exactly representable values in [-1, 1): 24-bit mantissa steps.
        const float f = static_cast<float>(static_cast<std::int32_t>(bits) >> 8) / 8388608.0f;
        std::uint32_t u;
        std::memcpy(&u, &f, 4);
        u = htole32(u);
        std::memcpy(out, &u, 4);
        break;
    }
    default: {
        const std::uint64_t le = htole64(r);
        std::memcpy(out, &le, sample_bytes_);
    }
    }
}

void TestSignal::fill(std::span<std::uint8_t> out, std::uint64_t first_frame) const {
    const std::size_t frames = out.size() / frame_bytes_;
    for (std::size_t f = 0; f < frames; ++f)
        for (unsigned c = 0; c < channels_; ++c)
            sample(first_frame + f, c, out.data() + f * frame_bytes_ + c * sample_bytes_);
}

std::optional<std::uint64_t> TestSignal::compare(std::span<const std::uint8_t> data, std::uint64_t first_frame) const {
    std::vector<std::uint8_t> expect(frame_bytes_);
    const std::size_t frames = data.size() / frame_bytes_;
    for (std::size_t f = 0; f < frames; ++f) {
        fill(expect, first_frame + f);
        if (std::memcmp(expect.data(), data.data() + f * frame_bytes_, frame_bytes_) != 0) return first_frame + f;
    }
    if (data.size() % frame_bytes_) return first_frame + frames;
    return std::nullopt;
}

} // namespace vsnd::audio
