// Sample formats the guest agent handles, in ALSA's memory layout (little-endian, interleaved).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <alsa/asoundlib.h>

namespace vsnd::guest {

enum class SampleFormat { S16_LE, S24_LE, S32_LE, FLOAT_LE };

// S24_LE is ALSA's 24-bit sample right-justified in a 32-bit little-endian word.
struct StreamFormat {
    SampleFormat format = SampleFormat::S16_LE;
    unsigned rate = 48000;
    unsigned channels = 2;

    [[nodiscard]] std::size_t frame_bytes() const;
};

[[nodiscard]] std::optional<SampleFormat> parse_format(std::string_view name);
[[nodiscard]] const char* format_name(SampleFormat f);
[[nodiscard]] std::size_t sample_bytes(SampleFormat f);
[[nodiscard]] snd_pcm_format_t to_alsa(SampleFormat f);

enum class SignalKind { Sine, Ramp, Silence };

[[nodiscard]] std::optional<SignalKind> parse_signal(std::string_view name);

// Deterministic test signals, starting at frame `first_frame`:
//  sine:    channel c is a (1000 + 500·c) Hz sine at half full scale;
//  ramp:    channel c of frame n is the 16-bit value (n + 4096·c) mod 2^16 scaled exactly to the
//           format (<<8 for S24, <<16 for S32, /32768 for float), so every sample identifies its
//           frame and survives 16-bit conversion bit-exactly;
//  silence: zeros.
[[nodiscard]] std::vector<std::byte> generate_signal(SignalKind kind, const StreamFormat& fmt,
                                                     std::uint64_t first_frame, std::uint64_t frames);

}  // namespace vsnd::guest
