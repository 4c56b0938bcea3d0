// Discards playback and captures silence, in real time: what a guest sees is realistic timing.
#pragma once

#include "vsnd/backends/paced_stream.hpp"

namespace vsnd::backends {

class NullBackend final : public device::AudioBackend {
public:
    explicit NullBackend(const Clock& clock, PacedTiming timing = {}) : clock_(clock), timing_(timing) {}
    std::string name() const override { return "null"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t,
                                                                       const device::StreamFormat& fmt) override {
        return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(clock_, fmt, timing_, nullptr, nullptr));
    }

private:
    const Clock& clock_;
    PacedTiming timing_;
};

} // namespace vsnd::backends
