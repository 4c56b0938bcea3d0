#include "vsnd/rtp/payload_format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace vsnd::rtp {

std::string_view name(Encoding e) { return e == Encoding::L16 ? "L16" : "L24"; }

std::optional<Encoding> parse_encoding(std::string_view n) {
    std::string up(n);
    std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return std::toupper(c); });
    if (up == "L16") return Encoding::L16;
    if (up == "L24") return Encoding::L24;
    return std::nullopt;
}

Expected<Done, std::string> validate(const PayloadFormat& f) {
    if (f.rate < kMinRate || f.rate > kMaxRate)
        return Unexpected{fmt::format("rate {} Hz is outside {}..{}", f.rate, kMinRate, kMaxRate)};
    if (f.channels < 1 || f.channels > kMaxChannels)
        return Unexpected{fmt::format("{} channels: 1..{} are played", f.channels, kMaxChannels)};
    if (f.payload_type > 127) return Unexpected{fmt::format("payload type {} is not 0..127", f.payload_type)};
    if (!f.channel_order.empty() && f.channel_order.size() != f.channels)
        return Unexpected{fmt::format("channel order names {} channels, the format has {}", f.channel_order.size(), f.channels)};
    return Done{};
}

std::optional<PayloadFormat> static_payload_type(std::uint8_t pt) {
    if (pt == 10) return PayloadFormat{Encoding::L16, 44100, 2, 10};
    if (pt == 11) return PayloadFormat{Encoding::L16, 44100, 1, 11};
    return std::nullopt;
}

std::string describe(const PayloadFormat& f) {
    return fmt::format("{}/{}/{} pt {}{}", name(f.encoding), f.rate, f.channels, f.payload_type,
                       f.timestamp_unit == TimestampUnit::ChannelSamples ? " (timestamps per channel sample)" : "");
}

void decode_samples(const PayloadFormat& f, std::span<const std::uint8_t> p, std::int32_t* out) {
    const std::uint8_t* in = p.data();
    if (f.encoding == Encoding::L16) {
        for (std::size_t i = 0, n = p.size() / 2; i < n; ++i, in += 2)
            out[i] = static_cast<std::int32_t>(std::uint32_t{in[0]} << 24 | std::uint32_t{in[1]} << 16);
    } else {
        for (std::size_t i = 0, n = p.size() / 3; i < n; ++i, in += 3)
            out[i] = static_cast<std::int32_t>(std::uint32_t{in[0]} << 24 | std::uint32_t{in[1]} << 16 |
                                               std::uint32_t{in[2]} << 8);
    }
}

void encode_samples(const PayloadFormat& f, std::span<const std::int32_t> s, std::uint8_t* out) {
    for (std::int32_t v : s) {
        const auto u = static_cast<std::uint32_t>(v);
        *out++ = u >> 24;
        *out++ = (u >> 16) & 0xff;
        if (f.encoding == Encoding::L24) *out++ = (u >> 8) & 0xff;
    }
}

} // namespace vsnd::rtp
