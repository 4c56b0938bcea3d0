#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/audio/test_signal.hpp"

#include <algorithm>

namespace vsnd::backends {
namespace {

class RecordingSink final : public FrameSink {
public:
    explicit RecordingSink(std::shared_ptr<CardRecord> r) : record_(std::move(r)) {}
    void played(std::span<const std::uint8_t> frames) override {
        record_->played.insert(record_->played.end(), frames.begin(), frames.end());
    }
    void run_started(const PlaybackRun& run) override { record_->runs.push_back(run); }

private:
    std::shared_ptr<CardRecord> record_;
};

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

std::optional<double> CardRecord::audible_time(std::uint64_t frame) const {
    if (frame >= frames_played() || runs.empty()) return std::nullopt;
    auto it = std::upper_bound(runs.begin(), runs.end(), frame,
                               [](std::uint64_t f, const PlaybackRun& r) { return f < r.frames; });
    if (it == runs.begin()) return std::nullopt;
    --it;
    return static_cast<double>(it->when) + static_cast<double>(frame - it->frames) * 1e9 / (rate * rate_ratio);
}

double CardRecord::frames_audible_at(Nanos t) const {
    double audible = 0;
    for (std::size_t i = 0; i < runs.size() && runs[i].when <= t; ++i) {
        const double end = i + 1 < runs.size() ? static_cast<double>(runs[i + 1].frames)
                                               : static_cast<double>(frames_played());
        audible = std::min(end, static_cast<double>(runs[i].frames) +
                                    static_cast<double>(t - runs[i].when) * rate * rate_ratio / 1e9);
    }
    return audible;
}

Expected<std::unique_ptr<device::BackendStream>, std::string> SimulatedCard::open(std::uint32_t stream_id,
                                                                                  const device::StreamFormat& fmt) {
    PacedTiming timing{1.0 + model_.ppm * 1e-6, model_.period_frames, model_.output_latency, model_.fifo_frames};
    if (fmt.direction == wire::Direction::Input)
        return std::unique_ptr<device::BackendStream>(
            std::make_unique<PacedStream>(clock_, fmt, timing, nullptr, std::make_unique<SignalSource>(fmt)));
    auto rec = std::make_shared<CardRecord>();
    rec->rate = fmt.rate;
    rec->frame_bytes = fmt.frame_bytes();
    rec->rate_ratio = timing.rate_ratio;
    records_[stream_id] = rec;
    return std::unique_ptr<device::BackendStream>(
        std::make_unique<PacedStream>(clock_, fmt, timing, std::make_unique<RecordingSink>(rec), nullptr));
}

std::shared_ptr<const CardRecord> SimulatedCard::record(std::uint32_t stream_id) const {
    auto it = records_.find(stream_id);
    return it == records_.end() ? nullptr : it->second;
}

} // namespace vsnd::backends
