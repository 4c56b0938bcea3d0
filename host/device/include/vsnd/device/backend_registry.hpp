// Backends by name: each registers a factory with its options and capabilities, and the daemon
// (or a test) creates the one the user named. Options come as KEY=VALUE for every stream or
// N:KEY=VALUE for stream N only; a backend reads them with BackendOptions::get(stream, key).
// Everything here runs at start-up on the main thread.
#pragma once

#include "vsnd/device/audio_backend.hpp"
#include "vsnd/expected.hpp"
#include "vsnd/timing/clock.hpp"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vsnd::device {

class BackendOptions {
public:
    // "KEY=VALUE" or "N:KEY=VALUE"; a later setting of the same key wins.
    Expected<Done, std::string> add(std::string_view setting);
    void set(std::string key, std::string value) { all_[std::move(key)] = std::move(value); }
    // Stream `stream`'s value of `key`: its own setting, else the one for every stream.
    std::optional<std::string> get(std::uint32_t stream, const std::string& key) const;
    std::optional<std::string> get(const std::string& key) const;
    // The streams that have their own setting of `key`; every stream with a setting of its own.
    std::vector<std::uint32_t> streams_setting(const std::string& key) const;
    std::vector<std::uint32_t> streams() const;
    // Keys given for single streams.
    std::vector<std::string> stream_keys() const;
    // Every key given (for checking against what a backend knows).
    std::vector<std::string> keys() const;

private:
    std::map<std::string, std::string> all_;
    std::map<std::uint32_t, std::map<std::string, std::string>> per_stream_;
};

struct BackendOptionInfo {
    std::string key, help;
    bool per_stream = false; // may be given as N:KEY=VALUE
};

struct BackendFactory {
    std::string name;
    std::string help;
    std::vector<BackendOptionInfo> options;
    // May refuse (missing device, unreadable file...) with one line saying why.
    std::function<Expected<std::unique_ptr<AudioBackend>, std::string>(const Clock&, const BackendOptions&)> create;
};

class BackendRegistry {
public:
    void add(BackendFactory f);
    const BackendFactory* find(std::string_view name) const;
    std::vector<std::string> names() const;
    // The named backend with these options; an unknown name, an option the backend does not take
    // or a per-stream setting of an option that is not per stream is an error.
    Expected<std::unique_ptr<AudioBackend>, std::string> create(std::string_view name, const Clock& clock,
                                                                const BackendOptions& options) const;

private:
    std::vector<BackendFactory> factories_;
};

} // namespace vsnd::device
