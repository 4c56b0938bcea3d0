#include "vsnd/device/backend_registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>

namespace vsnd::device {

Expected<Done, std::string> BackendOptions::add(std::string_view setting) {
    const auto eq = setting.find('=');
    if (eq == std::string_view::npos || eq == 0)
        return Unexpected{fmt::format("backend option '{}': expected KEY=VALUE or STREAM:KEY=VALUE", setting)};
    std::string_view key = setting.substr(0, eq);
    const std::string value(setting.substr(eq + 1));
    const auto colon = key.find(':');
    if (colon == std::string_view::npos) {
        all_[std::string(key)] = value;
        return Done{};
    }
    std::uint32_t stream = 0;
    const auto digits = key.substr(0, colon);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), stream);
    if (ec != std::errc{} || end != digits.data() + digits.size() || digits.empty() || colon + 1 == key.size())
        return Unexpected{fmt::format("backend option '{}': STREAM must be a stream number", setting)};
    per_stream_[stream][std::string(key.substr(colon + 1))] = value;
    return Done{};
}

std::optional<std::string> BackendOptions::get(std::uint32_t stream, const std::string& key) const {
    if (auto s = per_stream_.find(stream); s != per_stream_.end())
        if (auto v = s->second.find(key); v != s->second.end()) return v->second;
    return get(key);
}

std::optional<std::string> BackendOptions::get(const std::string& key) const {
    if (auto v = all_.find(key); v != all_.end()) return v->second;
    return std::nullopt;
}

std::vector<std::uint32_t> BackendOptions::streams_setting(const std::string& key) const {
    std::vector<std::uint32_t> out;
    for (const auto& [stream, m] : per_stream_)
        if (m.count(key)) out.push_back(stream);
    return out;
}

std::vector<std::uint32_t> BackendOptions::streams() const {
    std::vector<std::uint32_t> out;
    for (const auto& [stream, m] : per_stream_) out.push_back(stream);
    return out;
}

std::vector<std::string> BackendOptions::stream_keys() const {
    std::vector<std::string> out;
    for (const auto& [s, m] : per_stream_)
        for (const auto& [k, v] : m)
            if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
    return out;
}

std::vector<std::string> BackendOptions::keys() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : all_) out.push_back(k);
    for (const auto& [s, m] : per_stream_)
        for (const auto& [k, v] : m)
            if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
    return out;
}

void BackendRegistry::add(BackendFactory f) {
    auto same = [&](const BackendFactory& g) { return g.name == f.name; };
    factories_.erase(std::remove_if(factories_.begin(), factories_.end(), same), factories_.end());
    factories_.push_back(std::move(f));
}

const BackendFactory* BackendRegistry::find(std::string_view name) const {
    for (const auto& f : factories_)
        if (f.name == name) return &f;
    return nullptr;
}

std::vector<std::string> BackendRegistry::names() const {
    std::vector<std::string> out;
    for (const auto& f : factories_) out.push_back(f.name);
    return out;
}

Expected<std::unique_ptr<AudioBackend>, std::string> BackendRegistry::create(std::string_view name, const Clock& clock,
                                                                             const BackendOptions& options) const {
    const BackendFactory* f = find(name);
    if (!f) return Unexpected{fmt::format("unknown backend '{}' (have: {})", name, fmt::join(names(), ", "))};
    for (const auto& key : options.keys()) {
        auto known = [&](const BackendOptionInfo& o) { return o.key == key; };
        if (std::none_of(f->options.begin(), f->options.end(), known))
            return Unexpected{fmt::format("backend {} has no option '{}'", f->name, key)};
    }
    for (const auto& key : options.stream_keys()) {
        auto per_stream = [&](const BackendOptionInfo& o) { return o.key == key && o.per_stream; };
        if (std::none_of(f->options.begin(), f->options.end(), per_stream))
            return Unexpected{fmt::format("backend {} option '{}' is for all streams, not per stream", f->name, key)};
    }
    return f->create(clock, options);
}

} // namespace vsnd::device
