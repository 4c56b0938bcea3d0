#include "vsnd/rtp/playout.hpp"

#include <algorithm>

namespace vsnd::rtp {

Playout::Playout(RtpReceiver& rx, PlayoutSink& sink, std::uint32_t fill)
    : rx_(rx), sink_(sink),
      fill_(fill ? fill : std::max(sink.period_frames(), sink.buffer_frames() - sink.period_frames())),
      buf_(std::size_t{sink.period_frames()} * sink.spec().channels) {
    // Never more ahead than the target latency less a period: frames written beyond it would be
    // rendered before they can have arrived.
    const auto target = static_cast<std::uint32_t>(rx.options().target_latency * rx.output_rate() / kNanosPerSecond);
    fill_ = std::min(fill_, std::max(sink.period_frames(), target > sink.period_frames() ? target - sink.period_frames() : 0));
}

bool Playout::service(Nanos now) {
    if (!sink_.update(now)) return false;
    const std::uint32_t period = sink_.period_frames();
    // A bounded number of periods per wake: a sink that claims endless room cannot spin us.
    for (unsigned i = 0; i < 64; ++i) {
        const double pending = std::max(0.0, sink_.pending(now).value_or(0));
        if (pending + period > fill_ + 0.5 * period || sink_.writable() < period) break;
        rx_.render(buf_, now, pending);
        if (sink_.write(buf_, now) == 0) break;
    }
    return true;
}

} // namespace vsnd::rtp
