// What the device offers: streams, jacks and channel maps, as the guest will see them in
// PCM_INFO, JACK_INFO and CHMAP_INFO.
#pragma once

#include "vsnd/expected.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace vsnd::device {

struct StreamConfig {
    wire::Direction direction = wire::Direction::Output;
    std::uint64_t formats = 0; // bit per wire::PcmFormat
    std::uint64_t rates = 0;   // bit per wire::PcmRate
    std::uint8_t channels_min = 1, channels_max = 2;
    std::uint32_t hda_fn_nid = 0;
    std::uint32_t features = wire::bit(wire::PcmFeature::EvtXruns);
};

struct JackConfig {
    std::uint32_t hda_fn_nid = 0;
    std::uint32_t hda_reg_defconf = 0;
    std::uint32_t hda_reg_caps = 0;
    bool connected = true;
    bool remappable = false;
};

struct ChmapConfig {
    std::uint32_t hda_fn_nid = 0;
    wire::Direction direction = wire::Direction::Output;
    std::vector<wire::ChannelPosition> positions;
};

struct Topology {
    std::vector<JackConfig> jacks;
    std::vector<StreamConfig> streams;
    std::vector<ChmapConfig> chmaps;

    // `outputs` playback and `inputs` capture streams, each with S16/S24/S32/FLOAT,
    // 8–192 kHz, 1–8 channels, plus the standard chmaps for 1, 2, 6 and 8 channels.
    static Topology standard(unsigned outputs = 1, unsigned inputs = 1);
    // Why the topology cannot be offered (a guest would reject it), or empty.
    std::string validate() const;
};

// What a backend can play or record. The topology offered to the guest is what the user asked
// for intersected with this (device::fit_topology), so an impossible request fails at start-up.
struct DirectionCapabilities {
    bool available = true;
    std::string why_not;                        // when not available, one line
    std::uint64_t formats = ~std::uint64_t{0}; // bit per wire::PcmFormat
    std::uint64_t rates = ~std::uint64_t{0};   // bit per wire::PcmRate
    std::uint8_t channels_min = 1, channels_max = 255;
};
struct Capabilities {
    DirectionCapabilities output, input;
    const DirectionCapabilities& of(wire::Direction d) const { return d == wire::Direction::Output ? output : input; }
};

// libcamera's answer to a configuration: as asked, adjusted to what can be done, or impossible.
enum class Fit { Valid, Adjusted, Invalid };
struct FitResult {
    Fit status = Fit::Valid;
    std::vector<std::string> notes; // one line per adjustment or per reason it is impossible
};
// Narrows every stream of `t` to what `caps` can do: formats and rates intersected, the channel
// range clamped. Invalid when a stream is left with no format, rate or channel count, or when the
// backend cannot do its direction.
FitResult fit_topology(Topology& t, const Capabilities& caps);

std::uint64_t format_bits(std::initializer_list<wire::PcmFormat> fs);
std::uint64_t rate_bits(std::initializer_list<wire::PcmRate> rs);
// The standard layout for n channels (1, 2, 4, 6, 8), FL/FR first.
std::vector<wire::ChannelPosition> standard_positions(unsigned channels);

} // namespace vsnd::device
