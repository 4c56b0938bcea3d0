// A sound card simulated on a clock: its own rate error, period and output latency. It records
// every frame it played and when each became audible, so a test can hold any clock estimate
// against the truth. Capture delivers the TestSignal.
#pragma once

#include "vsnd/backends/paced_stream.hpp"

#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace vsnd::backends {

struct CardModel {
    double ppm = 0;                  // the card's rate error
    std::uint32_t period_frames = 0; // 0: the guest's period
    Nanos output_latency = 0;
    std::uint32_t fifo_frames = 0;   // 0: two periods
};

// The truth about one stream's playback.
class CardRecord {
public:
    std::vector<std::uint8_t> played;  // every frame played, in order
    std::vector<PlaybackRun> runs;
    std::uint32_t rate = 0, frame_bytes = 0;
    double rate_ratio = 1.0;

    std::uint64_t frames_played() const { return frame_bytes ? played.size() / frame_bytes : 0; }
    // When frame n became audible, if it was played.
    std::optional<double> audible_time(std::uint64_t frame) const;
    // How many frames had become audible at t (fractional, for comparing clocks).
    double frames_audible_at(Nanos t) const;
};

class SimulatedCard final : public device::AudioBackend {
public:
    SimulatedCard(const Clock& clock, CardModel model) : clock_(clock), model_(model) {}
    std::string name() const override { return "simulated-card"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t stream_id,
                                                                       const device::StreamFormat& fmt) override;
    // The record of the stream's latest PREPARE..RELEASE.
    std::shared_ptr<const CardRecord> record(std::uint32_t stream_id) const;
    // Frames the card captured so far on an input stream begin at TestSignal frame 0.

private:
    const Clock& clock_;
    CardModel model_;
    std::map<std::uint32_t, std::shared_ptr<CardRecord>> records_;
};

} // namespace vsnd::backends
