// A sound card simulated on a clock: its own rate error, period and output latency. It records
// every frame it played and when each became audible, so a test can hold any clock estimate
// against the truth. Capture delivers the TestSignal.
#pragma once

#include "vsnd/backends/paced_stream.hpp"

#include <map>
#include <memory>
#include <optional>

namespace vsnd::backends {

struct CardModel {
    double ppm = 0;                  // the card's rate error
    std::uint32_t period_frames = 0; // 0: the guest's period
    Nanos output_latency = 0;
    std::uint32_t fifo_frames = 0;   // 0: two periods
};

class SimulatedCard final : public device::AudioBackend {
public:
    SimulatedCard(const Clock& clock, CardModel model) : clock_(clock), model_(model) {}
    std::string name() const override { return "simulated-card"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t stream_id,
                                                                       const device::StreamFormat& fmt) override;
    // The record of the stream's latest PREPARE..RELEASE.
    std::shared_ptr<const PlaybackRecord> record(std::uint32_t stream_id) const;

private:
    const Clock& clock_;
    CardModel model_;
    std::map<std::uint32_t, std::shared_ptr<PlaybackRecord>> records_;
};

} // namespace vsnd::backends
