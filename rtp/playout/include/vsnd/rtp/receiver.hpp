// The RTP receiver: from datagrams to the audio a sink plays, with the latency measured against
// the sink's actual playback position and held at a target by the drift loop.
//
// One thread (the receive/playback loop) calls everything; nothing blocks, and on_packet() and
// render() allocate nothing after construction (on_rtcp() parses into small vectors).
// on_packet() takes each RTP datagram with its arrival time; render() is called whenever the
// sink wants frames, with the frames already written to the sink and not yet audible (from the
// sink's playback clock: ALSA's delay + htstamp, the driver model's completions, a paced file's
// clock). Design notes: rtp/README.md.
#pragma once

#include "vsnd/rtp/drift_loop.hpp"
#include "vsnd/rtp/jitter_buffer.hpp"
#include "vsnd/rtp/payload_format.hpp"
#include "vsnd/rtp/resampler.hpp"
#include "vsnd/rtp/rtcp.hpp"
#include "vsnd/rtp/rtp_packet.hpp"
#include "vsnd/rtp/unwrap.hpp"

#include <array>
#include <memory>
#include <optional>

namespace vsnd::rtp {

enum class DriftCorrection : std::uint8_t {
    Resample, // adaptive resampler at the drift loop's speed (the default)
    Slip,     // drop or repeat single frames, inside silence where there is some (bit-exact otherwise)
    Off,      // none: bit-exact; resyncs when the latency leaves its bounds
};

struct ReceiverOptions {
    PayloadFormat format;
    std::uint32_t output_rate = 0;      // 0: the stream's rate (another needs Resample)
    unsigned output_bits = 16;          // resampled audio is rounded to this many bits
    Nanos target_latency = 40'000'000;  // from a packet's arrival to its first frame being audible
    Nanos max_latency = 0;              // above it, resync; 0: 3 × target + 20 ms
    DriftCorrection drift = DriftCorrection::Resample;
    DriftLoop::Options loop{};
    std::optional<std::uint32_t> ssrc; // play only this source; otherwise the first, then any that
    Nanos adopt_after = 80'000'000;    // ... sends after the played one has been silent this long
    Concealment concealment = Concealment::Fade;
    Nanos fade = 2'000'000;
    unsigned jump_packets = 3;         // consecutive packets off the timeline before a resync (1..8)
    Nanos resync_tolerance = 0;        // after an underrun, a sender this close to the timeline
                                       // continues it; 0: max(target / 2, 5 ms)
    Nanos slip_threshold = 1'000'000;  // Slip: the smoothed error that triggers a slip
};
Expected<Done, std::string> validate(const ReceiverOptions& o);

enum class ReceiverState : std::uint8_t { NoSource, Playing, Underrun };
std::string_view name(ReceiverState s);

struct ReceiverCounters {
    std::uint64_t packets = 0, bytes = 0;   // accepted RTP packets (duplicates included)
    std::uint64_t lost = 0;                 // RFC 3550: expected minus received, per source
    std::uint64_t late = 0;                 // arrived after their frames were played
    std::uint64_t duplicates = 0, reordered = 0;
    std::uint64_t concealed_frames = 0;     // holes inside the timeline, played as concealment
    std::uint64_t underrun_frames = 0;      // silence played while nothing was buffered
    std::uint64_t underruns = 0, overruns = 0, resyncs = 0, jumps = 0;
    std::uint64_t ssrc_changes = 0, sequence_restarts = 0;
    std::uint64_t slips_dropped = 0, slips_repeated = 0;
    std::uint64_t rtcp_packets = 0, sender_reports = 0, rtcp_rejected = 0;
    std::array<std::uint64_t, kRejectCount> rejected{};
    std::uint64_t rejected_total() const;
};

struct ReceiverStatus {
    ReceiverState state = ReceiverState::NoSource;
    std::optional<std::uint32_t> ssrc;
    std::optional<double> latency_s; // measured at the last render: arrival -> audible
    double error_s = 0;              // latency - target, as the loop saw it
    double speed = 1;                // consumption speed (1 + correction)
    double rate_ppm = 0;             // the loop's estimate of sender vs sink rate
    double jitter_s = 0;             // RFC 3550 interarrival jitter
    // How far the latest packet came behind the earliest, against their timestamps, since the
    // source (or its timeline) began: a sender stall longer than the target latency shows here.
    double arrival_spread_s = 0;
    bool acquiring = true;
};

// The mapping the latest sender report gave (for synchronized playout).
struct SenderClock {
    std::uint64_t ntp = 0;
    std::int64_t rtp_frame = 0; // extended, in frames
    Nanos received_at = 0;
};

class RtpReceiver {
public:
    explicit RtpReceiver(ReceiverOptions options);
    ~RtpReceiver();

    const ReceiverOptions& options() const { return opt_; }
    std::uint32_t output_rate() const { return out_rate_; }
    unsigned channels() const { return opt_.format.channels; }

    void on_packet(std::span<const std::uint8_t> datagram, Nanos arrival);
    void on_rtcp(std::span<const std::uint8_t> datagram, Nanos arrival);
    // Fills `out` (frames × channels, top-aligned int32 at the output rate). `sink_pending` output
    // frames were written to the sink and are not yet audible at `now`.
    void render(std::span<std::int32_t> out, Nanos now, double sink_pending);

    const ReceiverCounters& counters() const { return counters_; }
    ReceiverStatus status() const;
    std::optional<SenderClock> sender_clock() const { return sender_clock_; }
    // The report block for an RTCP RR about the played source (nullopt before any packet);
    // updates the "fraction lost since the last report".
    std::optional<ReceptionReport> reception_report(Nanos now);

private:
    void adopt(std::uint32_t ssrc);
    void start_timeline(std::int64_t start, Nanos arrival); // a new source's first packet
    void place(std::int64_t ts_frame, std::span<const std::int32_t> samples, Nanos arrival);
    void hold(std::int64_t ts_frame, std::span<const std::int32_t> samples, Nanos arrival, bool overrun);
    void store(std::int64_t ts_frame, std::span<const std::int32_t> samples, Nanos arrival);
    void anchor(Nanos now, double sink_pending);
    double audible_input(Nanos t) const;
    double pending_at(Nanos t) const;
    void account_read(std::int64_t before, std::int64_t after, const JitterBuffer::Read& r);
    void read_direct(std::span<std::int32_t> out, Nanos now);
    void read_resampled(std::span<std::int32_t> out);
    bool sequence(std::uint16_t seq);
    std::size_t max_packet_frames() const;
    void render_step(std::span<std::int32_t> out, Nanos now, double sink_pending);

    ReceiverOptions opt_;
    std::uint32_t out_rate_;
    double in_per_out_;
    std::int64_t target_frames_, max_frames_, tolerance_frames_, fade_frames_;
    JitterBuffer jb_;
    std::unique_ptr<AdaptiveResampler> resampler_;
    std::vector<float> staging_, resampled_;
    std::vector<std::int32_t> scratch_;
    std::size_t staged_at_ = 0, staged_end_ = 0; // frames of staging_ not yet consumed
    DriftLoop loop_;

    ReceiverState state_ = ReceiverState::NoSource;
    std::optional<std::uint32_t> ssrc_;
    bool bye_ = false;
    Nanos last_arrival_ = 0;
    Unwrapper<16> seq_unwrap_;
    Unwrapper<32> ts_unwrap_;
    std::int64_t seq_base_ = 0, seq_highest_ = 0;
    std::uint64_t seq_received_ = 0, lost_before_ = 0;
    std::array<std::int64_t, 1024> seen_{}; // ext seq by slot: duplicate detection
    std::optional<std::uint16_t> probation_; // the sequence number that confirms a restart
    std::uint64_t rr_expected_prior_ = 0, rr_received_prior_ = 0;

    bool anchor_pending_ = false;
    std::int64_t newest_start_ = 0, newest_end_ = 0, stream_start_ = 0;
    Nanos newest_arrival_ = 0, last_on_timeline_ = 0;
    std::int64_t offset_ = 0; // timeline frame = timestamp frame + offset (moved by jumps)
    struct Held {
        std::int64_t ts_frame;
        Nanos arrival;
        std::size_t at, samples;
        bool overrun; // ahead of the playback, on the timeline (else: a jump)
    };
    std::vector<Held> held_;                  // packets off the timeline, up to jump_packets
    std::vector<std::int32_t> held_samples_;
    unsigned held_count_ = 0;

    bool rendered_ = false;
    Nanos render_time_ = 0;
    double render_pending_ = 0;
    std::optional<double> latency_s_;
    double error_s_ = 0, slip_error_s_ = 0;
    Nanos last_slip_ = 0;

    bool transit_valid_ = false;
    double transit_ = 0, jitter_frames_ = 0;
    double transit_min_ = 0, transit_max_ = 0; // for arrival_spread_s

    std::optional<SenderClock> sender_clock_;
    ReceiverCounters counters_;
};

} // namespace vsnd::rtp
