#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/audio/test_signal.hpp"


namespace vsnd::backends {
namespace {

class SignalSource final : public FrameSource {
public:
    explicit SignalSource(const device::StreamFormat& fmt) : signal_(fmt.format, fmt.channels) {}
    void capture(std::span<std::uint8_t> out) override {
        signal_.fill(out, next_);
        next_ += out.size() / signal_.frame_bytes();
    }

private:
    audio::TestSignal signal_;
    std::uint64_t next_ = 0;
};

} // namespace

Expected<std::unique_ptr<device::BackendStream>, std::string> SimulatedCard::open(std::uint32_t stream_id,
                                                                                  const device::StreamFormat& fmt) {
    PacedTiming timing{1.0 + model_.ppm * 1e-6, model_.period_frames, model_.output_latency, model_.fifo_frames};
    if (fmt.direction == wire::Direction::Input)
        return std::unique_ptr<device::BackendStream>(
            std::make_unique<PacedStream>(clock_, fmt, timing, nullptr, std::make_unique<SignalSource>(fmt)));
    auto rec = std::make_shared<PlaybackRecord>(fmt.rate, fmt.frame_bytes(), timing.rate_ratio, true);
    records_[stream_id] = rec;
    return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(clock_, fmt, timing, nullptr, nullptr, rec));
}

std::shared_ptr<const PlaybackRecord> SimulatedCard::record(std::uint32_t stream_id) const {
    auto it = records_.find(stream_id);
    return it == records_.end() ? nullptr : it->second;
}

} // namespace vsnd::backends
