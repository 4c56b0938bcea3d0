#include "vsnd/audio/test_signal.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <bit>
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

std::optional<SignalKind> parse_signal(std::string_view name) {
    if (name == "test") return SignalKind::Test;
    if (name == "sine") return SignalKind::Sine;
    if (name == "silence") return SignalKind::Silence;
    return std::nullopt;
}

bool signal_supports(SignalKind kind, wire::PcmFormat format) {
    using F = wire::PcmFormat;
    if (!wire::format_info(format)) return false;
    if (kind != SignalKind::Sine) return true;
    return format == F::S8 || format == F::S16 || format == F::S24 || format == F::S32 || format == F::Float ||
           format == F::Float64;
}

namespace {

// x in [-1, 1] quantised to a signed or float sample, little-endian.
void put_real(std::uint8_t* out, wire::PcmFormat f, double x) {
    x = std::clamp(x, -1.0, 1.0);
    auto put = [&](auto v) {
        static_assert(std::endian::native == std::endian::little);
        std::memcpy(out, &v, sizeof v);
    };
    switch (f) {
    case wire::PcmFormat::S8: put(static_cast<std::int8_t>(std::lrint(x * 127.0))); break;
    case wire::PcmFormat::S16: put(static_cast<std::int16_t>(std::lrint(x * 32767.0))); break;
    case wire::PcmFormat::S24: put(static_cast<std::int32_t>(std::lrint(x * 8388607.0))); break;
    case wire::PcmFormat::S32: put(static_cast<std::int32_t>(std::llrint(x * 2147483647.0))); break;
    case wire::PcmFormat::Float: put(static_cast<float>(x)); break;
    case wire::PcmFormat::Float64: put(x); break;
    default: break;
    }
}

} // namespace

void fill_signal(SignalKind kind, const SampleSpec& spec, std::span<std::uint8_t> out, std::uint64_t first_frame) {
    const std::size_t fb = spec.frame_bytes(), sb = spec.sample_bytes();
    if (fb == 0) return;
    const std::size_t frames = out.size() / fb;
    switch (kind) {
    case SignalKind::Test: TestSignal(spec.format, spec.channels).fill(out.first(frames * fb), first_frame); break;
    case SignalKind::Silence: std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(frames * fb), 0); break;
    case SignalKind::Sine:
        for (std::size_t i = 0; i < frames; ++i)
            for (unsigned c = 0; c < spec.channels; ++c) {
                const std::uint64_t freq = 1000 + 500 * std::uint64_t{c};
                // The phase reduced in integers first, so long runs keep full precision.
                const std::uint64_t k = ((first_frame + i) % spec.rate) * freq % spec.rate;
                put_real(out.data() + i * fb + c * sb, spec.format,
                         0.5 * std::sin(2.0 * std::numbers::pi * static_cast<double>(k) / spec.rate));
            }
        break;
    }
}

} // namespace vsnd::audio
