#include "audio_format.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numbers>

namespace vsnd::guest {

static_assert(std::endian::native == std::endian::little, "sample buffers are built in host byte order");

std::size_t StreamFormat::frame_bytes() const { return sample_bytes(format) * channels; }

std::optional<SampleFormat> parse_format(std::string_view name) {
    if (name == "S16_LE") return SampleFormat::S16_LE;
    if (name == "S24_LE") return SampleFormat::S24_LE;
    if (name == "S32_LE") return SampleFormat::S32_LE;
    if (name == "FLOAT_LE") return SampleFormat::FLOAT_LE;
    return std::nullopt;
}

const char* format_name(SampleFormat f) {
    switch (f) {
        case SampleFormat::S16_LE: return "S16_LE";
        case SampleFormat::S24_LE: return "S24_LE";
        case SampleFormat::S32_LE: return "S32_LE";
        case SampleFormat::FLOAT_LE: return "FLOAT_LE";
    }
    return "?";
}

std::size_t sample_bytes(SampleFormat f) { return f == SampleFormat::S16_LE ? 2 : 4; }

snd_pcm_format_t to_alsa(SampleFormat f) {
    switch (f) {
        case SampleFormat::S16_LE: return SND_PCM_FORMAT_S16_LE;
        case SampleFormat::S24_LE: return SND_PCM_FORMAT_S24_LE;
        case SampleFormat::S32_LE: return SND_PCM_FORMAT_S32_LE;
        case SampleFormat::FLOAT_LE: return SND_PCM_FORMAT_FLOAT_LE;
    }
    return SND_PCM_FORMAT_UNKNOWN;
}

std::optional<SignalKind> parse_signal(std::string_view name) {
    if (name == "sine") return SignalKind::Sine;
    if (name == "ramp") return SignalKind::Ramp;
    if (name == "silence") return SignalKind::Silence;
    return std::nullopt;
}

namespace {

template <typename T>
void put(std::byte* dst, T value) {
    std::memcpy(dst, &value, sizeof value);
}

// Quantise x in [-1, 1] to the format.
void put_real(std::byte* dst, SampleFormat f, double x) {
    x = std::clamp(x, -1.0, 1.0);
    switch (f) {
        case SampleFormat::S16_LE: put(dst, static_cast<std::int16_t>(std::lrint(x * 32767.0))); break;
        case SampleFormat::S24_LE: put(dst, static_cast<std::int32_t>(std::lrint(x * 8388607.0))); break;
        case SampleFormat::S32_LE: put(dst, static_cast<std::int32_t>(std::llrint(x * 2147483647.0))); break;
        case SampleFormat::FLOAT_LE: put(dst, static_cast<float>(x)); break;
    }
}

// Store a 16-bit value exactly in any of the formats.
void put_s16(std::byte* dst, SampleFormat f, std::int16_t v) {
    switch (f) {
        case SampleFormat::S16_LE: put(dst, v); break;
        case SampleFormat::S24_LE: put(dst, static_cast<std::int32_t>(v) * 256); break;
        case SampleFormat::S32_LE: put(dst, static_cast<std::int32_t>(v) * 65536); break;
        case SampleFormat::FLOAT_LE: put(dst, static_cast<float>(v) / 32768.0f); break;
    }
}

}  // namespace

std::vector<std::byte> generate_signal(SignalKind kind, const StreamFormat& fmt, std::uint64_t first_frame,
                                       std::uint64_t frames) {
    const std::size_t sb = sample_bytes(fmt.format);
    std::vector<std::byte> out(frames * fmt.frame_bytes());
    if (kind == SignalKind::Silence) return out;
    std::byte* p = out.data();
    for (std::uint64_t i = 0; i < frames; ++i) {
        const std::uint64_t n = first_frame + i;
        for (unsigned c = 0; c < fmt.channels; ++c, p += sb) {
            if (kind == SignalKind::Sine) {
                const std::uint64_t freq = 1000 + 500 * std::uint64_t{c};
                // reduce the phase in integers first so long runs keep full precision
                const std::uint64_t k = (n * freq) % fmt.rate;
                put_real(p, fmt.format, 0.5 * std::sin(2.0 * std::numbers::pi * static_cast<double>(k) / fmt.rate));
            } else {
                put_s16(p, fmt.format, static_cast<std::int16_t>(static_cast<std::uint16_t>(n + 4096u * c)));
            }
        }
    }
    return out;
}

}  // namespace vsnd::guest
