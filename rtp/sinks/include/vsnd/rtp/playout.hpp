// The receiver's half of the loop: whenever the sink wakes (its period, its fd), bring it up to
// date and write what keeps it filled to `fill` frames ahead of the audible point, rendered by the
// receiver against the sink's own report of what is still pending. By default the sink's ring is
// kept full but for one period (as ALSA applications do): a device that holds its messages until
// they are audible, or has output latency of its own, never starves; the latency stays the
// receiver's target whatever the fill, which must only stay below it. Same thread as the receiver.
#pragma once

#include "vsnd/rtp/playout_sink.hpp"
#include "vsnd/rtp/receiver.hpp"

#include <vector>

namespace vsnd::rtp {

class Playout {
public:
    // `fill_frames`: 0 means the sink's buffer less one period (at least one period).
    Playout(RtpReceiver& receiver, PlayoutSink& sink, std::uint32_t fill_frames = 0);
    // False once the sink has failed (sink.error()).
    bool service(Nanos now);
    std::uint32_t fill_frames() const { return fill_; }

private:
    RtpReceiver& rx_;
    PlayoutSink& sink_;
    std::uint32_t fill_;
    std::vector<std::int32_t> buf_;
};

} // namespace vsnd::rtp
