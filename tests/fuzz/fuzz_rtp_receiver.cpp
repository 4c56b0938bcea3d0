// The RTP receiver on hostile input: a sequence of datagrams (RTP and RTCP), renders and clock
// steps, all chosen by the fuzzer, against a receiver whose format and policies the fuzzer also
// picks. Checks that every datagram is accounted for (played, counted as duplicate, or rejected
// by reason) and that rendering always fills exactly what was asked.
#include "vsnd/rtp/receiver.hpp"
#include "vsnd/rtp/resampler.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace vsnd;
using namespace vsnd::rtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // zita-resampler shares its filter tables while one resampler holds them: keeping one alive
    // saves building them for every input.
    static AdaptiveResampler keep_tables(1.0, 1);
    if (size < 4) return 0;
    ReceiverOptions o;
    const std::uint8_t a = data[0], b = data[1];
    o.format.encoding = a & 1 ? Encoding::L24 : Encoding::L16;
    o.format.channels = static_cast<std::uint8_t>(1 + (a >> 1 & 7));
    o.format.rate = (a & 0x10) ? 8000 : 48000;
    o.format.payload_type = 96;
    o.format.timestamp_unit = (a & 0x20) ? TimestampUnit::ChannelSamples : TimestampUnit::Frames;
    o.drift = static_cast<DriftCorrection>(b % 3);
    o.concealment = b & 4 ? Concealment::Fade : Concealment::Silence;
    o.target_latency = (1 + (b >> 3 & 7)) * 5'000'000;
    o.jump_packets = 1 + (data[2] & 7);
    if (data[2] & 8) o.ssrc = 0x11223344;
    RtpReceiver rx(o);
    Nanos now = kNanosPerSecond;
    std::uint64_t datagrams = 0;
    std::vector<std::int32_t> out;
    std::size_t at = 3;
    while (at + 3 <= size) {
        const std::uint8_t kind = data[at];
        const std::size_t len = std::min<std::size_t>(data[at + 1] | std::size_t{data[at + 2]} << 8, size - at - 3);
        const std::uint8_t* p = data + at + 3;
        at += 3 + len;
        switch (kind % 4) {
        case 0: rx.on_packet({p, len}, now); ++datagrams; break;
        case 1: rx.on_rtcp({p, len}, now); break;
        case 2: {
            const std::size_t frames = len ? p[0] * 4 + 1 : 48;
            out.assign(frames * o.format.channels, 0x5a5a5a5a);
            const double pending = len > 1 ? p[1] * 16.0 : 0;
            rx.render(out, now, pending);
            for (auto v : out)
                if (v == 0x5a5a5a5a && o.drift != DriftCorrection::Resample) {
                    // Every sample was written (the marker value cannot come from a 16/24-bit stream).
                    std::abort();
                }
            break;
        }
        case 3: now += (len ? p[0] : 1) * 250'000; break;
        }
    }
    const auto& c = rx.counters();
    if (c.packets + c.rejected_total() != datagrams) std::abort();
    (void)rx.status();
    (void)rx.reception_report(now);
    return 0;
}
