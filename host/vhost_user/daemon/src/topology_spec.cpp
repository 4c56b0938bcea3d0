#include "vsnd/vhost_user/topology_spec.hpp"

#include <fmt/format.h>

#include <charconv>
#include <vector>

namespace vsnd::vhost_user {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        const auto end = s.find(sep, start);
        out.push_back(s.substr(start, end - start));
        if (end == std::string::npos) return out;
        start = end + 1;
    }
}

std::optional<std::uint32_t> number(const std::string& s) {
    std::uint32_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

// "a-b" or "a": an inclusive range.
std::optional<std::pair<std::uint32_t, std::uint32_t>> range(const std::string& s) {
    const auto dash = s.find('-');
    if (dash == std::string::npos) {
        auto v = number(s);
        if (!v) return std::nullopt;
        return std::pair{*v, *v};
    }
    auto lo = number(s.substr(0, dash)), hi = number(s.substr(dash + 1));
    if (!lo || !hi || *lo > *hi) return std::nullopt;
    return std::pair{*lo, *hi};
}

Unexpected<std::string> bad(std::string msg) { return Unexpected{std::move(msg)}; }

} // namespace

Expected<device::Topology, std::string> make_topology(const TopologySpec& spec) {
    using wire::PcmFormat;
    // Formats: those a WAV file and an ALSA device both handle exactly.
    std::uint64_t formats = 0;
    for (const auto& f : split(spec.formats, ',')) {
        if (f == "S16") formats |= device::format_bits({PcmFormat::S16});
        else if (f == "S24") formats |= device::format_bits({PcmFormat::S24});
        else if (f == "S32") formats |= device::format_bits({PcmFormat::S32});
        else if (f == "FLOAT") formats |= device::format_bits({PcmFormat::Float});
        else if (f == "U8") formats |= device::format_bits({PcmFormat::U8});
        else return bad(fmt::format("--formats: unknown format '{}' (S16, S24, S32, FLOAT, U8)", f));
    }

    // Rates: a range selects every virtio-snd rate inside it; a list names rates exactly.
    std::uint64_t rates = 0;
    if (spec.rates.find('-') != std::string::npos) {
        auto r = range(spec.rates);
        if (!r) return bad(fmt::format("--rates: '{}' is not a range like 8000-192000", spec.rates));
        for (unsigned i = 0; i < wire::kPcmRateCount; ++i) {
            const auto rate = static_cast<wire::PcmRate>(i);
            // As Topology::standard: rates Linux cannot map are only offered when listed.
            if (rate == wire::PcmRate::R384000 || rate == wire::PcmRate::R12000 || rate == wire::PcmRate::R24000) continue;
            const auto hz = wire::rate_hz(rate);
            if (hz >= r->first && hz <= r->second) rates |= 1ull << i;
        }
        if (!rates) return bad(fmt::format("--rates: no virtio-snd rate lies in {}", spec.rates));
    } else {
        for (const auto& s : split(spec.rates, ',')) {
            auto hz = number(s);
            auto rate = hz ? wire::rate_from_hz(*hz) : std::nullopt;
            if (!rate) return bad(fmt::format("--rates: {} is not a virtio-snd rate", s));
            rates |= 1ull << static_cast<unsigned>(*rate);
        }
    }

    auto ch = range(spec.channels);
    if (!ch || ch->first < 1 || ch->second > 255)
        return bad(fmt::format("--channels: '{}' is not a range like 1-8 within 1..255", spec.channels));

    // Streams in the order given: "out:2,in:1" is streams 0 and 1 output, 2 input.
    device::Topology t;
    unsigned outputs = 0, inputs = 0;
    for (const auto& item : split(spec.streams, ',')) {
        const auto colon = item.find(':');
        const std::string dir = item.substr(0, colon);
        std::uint32_t count = 1;
        if (colon != std::string::npos) {
            auto n = number(item.substr(colon + 1));
            if (!n || *n > kMaxStreams) return bad(fmt::format("--streams: bad count in '{}' (0..{})", item, kMaxStreams));
            count = *n;
        }
        wire::Direction d;
        if (dir == "out" || dir == "output" || dir == "playback") d = wire::Direction::Output;
        else if (dir == "in" || dir == "input" || dir == "capture") d = wire::Direction::Input;
        else return bad(fmt::format("--streams: '{}' is not out:N or in:N", item));
        for (std::uint32_t i = 0; i < count; ++i) {
            device::StreamConfig s;
            s.direction = d;
            s.formats = formats;
            s.rates = rates;
            s.channels_min = static_cast<std::uint8_t>(ch->first);
            s.channels_max = static_cast<std::uint8_t>(ch->second);
            t.streams.push_back(s);
        }
        (d == wire::Direction::Output ? outputs : inputs) += count;
    }
    if (t.streams.empty()) return bad("--streams: no streams");
    if (t.streams.size() > kMaxStreams) return bad(fmt::format("--streams: {} streams, at most {} in all", t.streams.size(), kMaxStreams));
    // Standard channel maps for the layouts the channel range allows.
    for (auto d : {wire::Direction::Output, wire::Direction::Input}) {
        if ((d == wire::Direction::Output ? outputs : inputs) == 0) continue;
        for (unsigned n : {1u, 2u, 6u, 8u})
            if (n >= ch->first && n <= ch->second) t.chmaps.push_back({0, d, device::standard_positions(n)});
    }
    if (auto why = t.validate(); !why.empty()) return bad(why);
    return t;
}

} // namespace vsnd::vhost_user
