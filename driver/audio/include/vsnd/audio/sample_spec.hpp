// The shape of an interleaved PCM stream in virtio-snd's (and ALSA's) memory layout: sample
// format, rate and channels. The one format vocabulary of the project; wire::PcmFormat names the
// sample type, so what a guest sets with PCM_SET_PARAMS maps onto it without translation.
#pragma once

#include "vsnd/wire/virtio_snd.hpp"

#include <cstdint>
#include <optional>
#include <string_view>

namespace vsnd::audio {

struct SampleSpec {
    wire::PcmFormat format = wire::PcmFormat::S16;
    std::uint32_t rate = 48000;
    std::uint8_t channels = 2;

    // Bytes of one sample in memory (S24 sits in a 32-bit container), 0 for an unknown format.
    std::uint32_t sample_bytes() const;
    std::uint32_t frame_bytes() const { return sample_bytes() * channels; }
    bool operator==(const SampleSpec&) const = default;
};

// "S16", "s24", "FLOAT", ... (wire::name() spelling, case-insensitive).
std::optional<wire::PcmFormat> parse_format(std::string_view name);

} // namespace vsnd::audio
