#include "vsnd/audio/sample_spec.hpp"

#include <cctype>

namespace vsnd::audio {

std::uint32_t SampleSpec::sample_bytes() const {
    auto info = wire::format_info(format);
    return info ? info->physical_bytes : 0;
}

std::optional<wire::PcmFormat> parse_format(std::string_view name) {
    for (unsigned raw = 0; raw < wire::kPcmFormatCount; ++raw) {
        auto f = wire::to_format(static_cast<std::uint8_t>(raw));
        if (!f) continue;
        const auto known = wire::name(*f);
        if (known.size() != name.size()) continue;
        bool same = true;
        for (std::size_t i = 0; i < name.size() && same; ++i)
            same = std::toupper(static_cast<unsigned char>(name[i])) == std::toupper(static_cast<unsigned char>(known[i]));
        if (same) return f;
    }
    return std::nullopt;
}

} // namespace vsnd::audio
