// Discards playback and captures silence. Paced (default): in real time like a sound card, so a
// guest sees realistic timing. Unpaced: everything is played the instant it arrives and capture
// is always ready — for measuring the cost of the path itself (benchmarks).
#pragma once

#include "vsnd/backends/paced_stream.hpp"
#include "vsnd/device/backend_registry.hpp"

#include <algorithm>
#include <cstring>

namespace vsnd::backends {

// The unpaced stream: an infinitely fast sound card.
class InstantStream final : public device::BackendStream {
public:
    explicit InstantStream(const device::StreamFormat& fmt)
        : frame_bytes_(fmt.frame_bytes()), window_(std::max<std::size_t>(fmt.buffer_bytes, frame_bytes_)) {}
    void start() override {}
    void stop() override {}
    std::size_t writable_bytes() override { return window_; }
    void write(std::span<const std::uint8_t> bytes) override { bytes_ += bytes.size(); }
    std::size_t readable_bytes() override { return window_; }
    void read(std::span<std::uint8_t> out) override {
        if (!out.empty()) std::memset(out.data(), 0, out.size());
        bytes_ += out.size();
    }
    // Not running: the device takes the position as it is, with nothing still to come.
    device::Position position() override { return {bytes_ / frame_bytes_, 0, false}; }
    std::optional<Nanos> next_wakeup() override { return std::nullopt; }
    std::uint64_t xruns() const override { return 0; }

private:
    std::size_t frame_bytes_, window_;
    std::uint64_t bytes_ = 0;
};

class NullBackend final : public device::AudioBackend {
public:
    explicit NullBackend(const Clock& clock, PacedTiming timing = {}, bool unpaced = false)
        : clock_(clock), timing_(timing), unpaced_(unpaced) {}
    std::string name() const override { return unpaced_ ? "null (unpaced)" : "null"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t,
                                                                       const device::StreamFormat& fmt) override {
        if (unpaced_) return std::unique_ptr<device::BackendStream>(std::make_unique<InstantStream>(fmt));
        return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(clock_, fmt, timing_, nullptr, nullptr));
    }

private:
    const Clock& clock_;
    PacedTiming timing_;
    bool unpaced_;
};

// "null" with option unpaced=1 (vsnd-backends).
void register_null_backend(device::BackendRegistry& registry);

} // namespace vsnd::backends
