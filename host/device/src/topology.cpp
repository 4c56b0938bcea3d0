#include "vsnd/device/topology.hpp"

#include <fmt/format.h>

#include <algorithm>

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

namespace {

std::string list_formats(std::uint64_t bits) {
    std::string out;
    for (unsigned i = 0; i < wire::kPcmFormatCount; ++i)
        if (bits >> i & 1) {
            if (!out.empty()) out += ',';
            out += wire::name(*wire::to_format(static_cast<std::uint8_t>(i)));
        }
    return out;
}

std::string list_rates(std::uint64_t bits) {
    std::string out;
    for (unsigned i = 0; i < wire::kPcmRateCount; ++i)
        if (bits >> i & 1) {
            if (!out.empty()) out += ',';
            out += std::to_string(wire::rate_hz(*wire::to_rate(static_cast<std::uint8_t>(i))));
        }
    return out;
}

} // namespace

FitResult fit_topology(Topology& t, const Capabilities& all) {
    FitResult r;
    auto adjusted = [&](std::string note) {
        if (r.status == Fit::Valid) r.status = Fit::Adjusted;
        r.notes.push_back(std::move(note));
    };
    auto invalid = [&](std::string note) {
        r.status = Fit::Invalid;
        r.notes.push_back(std::move(note));
    };
    for (std::size_t i = 0; i < t.streams.size(); ++i) {
        auto& s = t.streams[i];
        const auto& caps = all.of(s.direction);
        const char* dir = s.direction == wire::Direction::Output ? "playback" : "capture";
        if (!caps.available) {
            invalid(fmt::format("stream {}: the backend cannot do {}{}{}", i, dir, caps.why_not.empty() ? "" : ": ",
                                caps.why_not));
            continue;
        }
        if (const auto f = s.formats & caps.formats; f != s.formats) {
            if (f == 0) invalid(fmt::format("stream {} ({}): the backend can do none of the formats {} (it has {})", i,
                                            dir, list_formats(s.formats), list_formats(caps.formats)));
            else adjusted(fmt::format("stream {} ({}): formats {} dropped, the backend cannot do them", i, dir,
                                      list_formats(s.formats & ~caps.formats)));
            s.formats = f;
        }
        if (const auto rt = s.rates & caps.rates; rt != s.rates) {
            if (rt == 0) invalid(fmt::format("stream {} ({}): the backend can do none of the rates {} (it has {})", i,
                                             dir, list_rates(s.rates), list_rates(caps.rates)));
            else adjusted(fmt::format("stream {} ({}): rates {} dropped, the backend cannot do them", i, dir,
                                      list_rates(s.rates & ~caps.rates)));
            s.rates = rt;
        }
        const auto lo = std::max(s.channels_min, caps.channels_min), hi = std::min(s.channels_max, caps.channels_max);
        if (lo > hi) {
            invalid(fmt::format("stream {} ({}): {}..{} channels asked, the backend can do {}..{}", i, dir,
                                s.channels_min, s.channels_max, caps.channels_min, caps.channels_max));
        } else if (lo != s.channels_min || hi != s.channels_max) {
            adjusted(fmt::format("stream {} ({}): channels {}..{} narrowed to {}..{}", i, dir, s.channels_min,
                                 s.channels_max, lo, hi));
            s.channels_min = lo;
            s.channels_max = hi;
        }
    }
    // A channel map no stream of its direction can use any more is not offered.
    auto usable = [&](const ChmapConfig& m) {
        return std::any_of(t.streams.begin(), t.streams.end(), [&](const StreamConfig& s) {
            return s.direction == m.direction && m.positions.size() >= s.channels_min && m.positions.size() <= s.channels_max;
        });
    };
    const auto before = t.chmaps.size();
    t.chmaps.erase(std::remove_if(t.chmaps.begin(), t.chmaps.end(), [&](const ChmapConfig& m) { return !usable(m); }),
                   t.chmaps.end());
    if (t.chmaps.size() != before && r.status != Fit::Invalid)
        adjusted(fmt::format("{} channel map(s) dropped: no stream can use them", before - t.chmaps.size()));
    return r;
}

} // namespace vsnd::device
