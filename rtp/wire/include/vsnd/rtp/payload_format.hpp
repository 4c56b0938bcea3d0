// What an RTP audio session carries: L16 (RFC 3551) or L24 (RFC 3190) at a rate and channel
// count, its payload type, and how the timestamp counts (RFC: one tick per frame; DisOrder: one
// per channel sample). Samples are handled as 32-bit integers with the audio in the top bits
// (L16 << 16, L24 << 8), so conversions to and from the wire are exact. Pure, any thread.
#pragma once

#include "vsnd/expected.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vsnd::rtp {

enum class Encoding : std::uint8_t { L16, L24 };
std::string_view name(Encoding e);
std::optional<Encoding> parse_encoding(std::string_view name); // "L16", "l24", ...

enum class TimestampUnit : std::uint8_t {
    Frames,         // RFC 3551: +1 per frame
    ChannelSamples, // DisOrder: +1 per sample of each channel
};

inline constexpr std::uint32_t kMinRate = 8000, kMaxRate = 192000;
inline constexpr unsigned kMaxChannels = 8;

struct PayloadFormat {
    Encoding encoding = Encoding::L16;
    std::uint32_t rate = 48000;
    std::uint8_t channels = 2;
    std::uint8_t payload_type = 96;
    TimestampUnit timestamp_unit = TimestampUnit::Frames;
    std::vector<std::string> channel_order; // from a=fmtp channel-order, when given

    std::uint32_t sample_bytes() const { return encoding == Encoding::L16 ? 2 : 3; }
    std::uint32_t frame_bytes() const { return sample_bytes() * channels; }
    // Timestamp ticks per frame.
    std::uint32_t ticks_per_frame() const { return timestamp_unit == TimestampUnit::Frames ? 1 : channels; }
    bool operator==(const PayloadFormat&) const = default;
};

// Checks the ranges this receiver plays (8–192 kHz, 1–8 channels, PT 0..127); the error says which.
Expected<Done, std::string> validate(const PayloadFormat& f);
// The RFC 3551 static types: 10 = L16/44100/2, 11 = L16/44100/1.
std::optional<PayloadFormat> static_payload_type(std::uint8_t pt);
// "L24/48000/2 pt 97".
std::string describe(const PayloadFormat& f);

// Payload bytes -> samples (frames × channels int32). `payload` must be whole frames.
void decode_samples(const PayloadFormat& f, std::span<const std::uint8_t> payload, std::int32_t* out);
// Samples -> payload bytes (the top 16 or 24 bits of each sample).
void encode_samples(const PayloadFormat& f, std::span<const std::int32_t> samples, std::uint8_t* out);

} // namespace vsnd::rtp
