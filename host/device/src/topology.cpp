#include "vsnd/device/topology.hpp"

#include <fmt/format.h>

namespace vsnd::device {

using wire::ChannelPosition;
using wire::PcmFormat;
using wire::PcmRate;

std::uint64_t format_bits(std::initializer_list<PcmFormat> fs) {
    std::uint64_t b = 0;
    for (auto f : fs) b |= 1ull << static_cast<unsigned>(f);
    return b;
}

std::uint64_t rate_bits(std::initializer_list<PcmRate> rs) {
    std::uint64_t b = 0;
    for (auto r : rs) b |= 1ull << static_cast<unsigned>(r);
    return b;
}

std::vector<ChannelPosition> standard_positions(unsigned channels) {
    using P = ChannelPosition;
    switch (channels) {
    case 1: return {P::Mono};
    case 2: return {P::FL, P::FR};
    case 4: return {P::FL, P::FR, P::RL, P::RR};
    case 6: return {P::FL, P::FR, P::FC, P::LFE, P::RL, P::RR};
    case 8: return {P::FL, P::FR, P::FC, P::LFE, P::RL, P::RR, P::SL, P::SR};
    default: return {};
    }
}

Topology Topology::standard(unsigned outputs, unsigned inputs) {
    Topology t;
    const auto formats = format_bits({PcmFormat::S16, PcmFormat::S24, PcmFormat::S32, PcmFormat::Float});
    // Everything from 8 kHz to 192 kHz that Linux can map (it ignores 384k, 12k, 24k).
    const auto rates = rate_bits({PcmRate::R8000, PcmRate::R11025, PcmRate::R16000, PcmRate::R22050,
                                  PcmRate::R32000, PcmRate::R44100, PcmRate::R48000, PcmRate::R64000,
                                  PcmRate::R88200, PcmRate::R96000, PcmRate::R176400, PcmRate::R192000});
    for (unsigned i = 0; i < outputs + inputs; ++i) {
        StreamConfig s;
        s.direction = i < outputs ? wire::Direction::Output : wire::Direction::Input;
        s.formats = formats;
        s.rates = rates;
        s.channels_min = 1;
        s.channels_max = 8;
        t.streams.push_back(s);
    }
    for (auto dir : {wire::Direction::Output, wire::Direction::Input}) {
        if ((dir == wire::Direction::Output ? outputs : inputs) == 0) continue;
        for (unsigned ch : {1u, 2u, 6u, 8u}) t.chmaps.push_back({0, dir, standard_positions(ch)});
    }
    return t;
}

std::string Topology::validate() const {
    for (std::size_t i = 0; i < streams.size(); ++i) {
        const auto& s = streams[i];
        if (s.channels_min < 1 || s.channels_min > s.channels_max)
            return fmt::format("stream {}: channel range {}..{} is empty", i, s.channels_min, s.channels_max);
        if (s.formats == 0 || s.formats >> wire::kPcmFormatCount)
            return fmt::format("stream {}: no or undefined formats", i);
        if (s.rates == 0 || s.rates >> wire::kPcmRateCount)
            return fmt::format("stream {}: no or undefined rates", i);
        if (s.features & (wire::bit(wire::PcmFeature::ShmemHost) | wire::bit(wire::PcmFeature::ShmemGuest)))
            return fmt::format("stream {}: shared-memory transport is not defined by the spec yet", i);
    }
    for (std::size_t i = 0; i < chmaps.size(); ++i)
        if (chmaps[i].positions.empty() || chmaps[i].positions.size() > wire::kChmapMaxSize)
            return fmt::format("chmap {}: needs 1..{} positions", i, wire::kChmapMaxSize);
    return {};
}

} // namespace vsnd::device
