#include "vsnd/rtp/receiver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vsnd::rtp {
namespace {

constexpr std::size_t kStagingFrames = 16;   // resampler input read ahead of need
constexpr std::size_t kMaxRenderFrames = 8192; // per render() call; more is rendered as this much
constexpr Nanos kJumpBack = kNanosPerSecond; // a packet this far behind the timeline is a jump, not late
constexpr std::int32_t kSilence = 1 << 20;   // |sample| below this (about -66 dBFS) counts as silence
constexpr Nanos kMinSlipInterval = 5'000'000;

std::int64_t frames_of(Nanos t, std::uint32_t rate) { return t * static_cast<std::int64_t>(rate) / kNanosPerSecond; }

} // namespace

std::string_view name(ReceiverState s) {
    switch (s) {
    case ReceiverState::NoSource: return "waiting";
    case ReceiverState::Playing: return "playing";
    case ReceiverState::Underrun: return "underrun";
    }
    return "?";
}

std::uint64_t ReceiverCounters::rejected_total() const { return std::accumulate(rejected.begin(), rejected.end(), std::uint64_t{0}); }

Expected<Done, std::string> validate(const ReceiverOptions& o) {
    if (auto f = validate(o.format); !f) return f;
    if (o.output_rate && (o.output_rate < kMinRate || o.output_rate > kMaxRate))
        return Unexpected{fmt::format("output rate {} Hz is outside {}..{}", o.output_rate, kMinRate, kMaxRate)};
    if (o.output_rate && o.output_rate != o.format.rate && o.drift != DriftCorrection::Resample)
        return Unexpected{std::string("a different output rate needs the resampler (drift correction \"resample\")")};
    if (o.output_bits != 16 && o.output_bits != 24 && o.output_bits != 32)
        return Unexpected{fmt::format("output bits {}: 16, 24 or 32", o.output_bits)};
    if (o.target_latency < 1'000'000 || o.target_latency > 5 * kNanosPerSecond)
        return Unexpected{std::string("target latency must be 1 ms .. 5 s")};
    if (o.max_latency && o.max_latency <= o.target_latency)
        return Unexpected{std::string("the maximum latency must be above the target")};
    if (o.max_latency > 10 * kNanosPerSecond) return Unexpected{std::string("the maximum latency must be at most 10 s")};
    if (o.jump_packets < 1 || o.jump_packets > 8) return Unexpected{std::string("jump packets must be 1..8")};
    if (o.loop.max_ppm <= 0 || o.loop.max_ppm > 50'000) return Unexpected{std::string("max ppm must be in (0, 50000]")};
    return Done{};
}

namespace {
ReceiverOptions checked(ReceiverOptions o) {
    if (auto ok = validate(o); !ok) throw std::invalid_argument(ok.error());
    return o;
}
} // namespace

RtpReceiver::RtpReceiver(ReceiverOptions o)
    : opt_(checked(std::move(o))), out_rate_(opt_.output_rate ? opt_.output_rate : opt_.format.rate),
      in_per_out_(static_cast<double>(opt_.format.rate) / out_rate_),
      target_frames_(frames_of(opt_.target_latency, opt_.format.rate)),
      max_frames_(frames_of(opt_.max_latency ? opt_.max_latency : 3 * opt_.target_latency + 20'000'000, opt_.format.rate)),
      tolerance_frames_(frames_of(opt_.resync_tolerance ? opt_.resync_tolerance
                                                        : std::max<Nanos>(opt_.target_latency / 2, 5'000'000),
                                  opt_.format.rate)),
      fade_frames_(frames_of(opt_.fade, out_rate_)),
      // Room for the largest latency, a second of reach beyond it and the largest packet.
      jb_(static_cast<std::uint32_t>(max_frames_ + opt_.format.rate + 65536 / opt_.format.frame_bytes()),
          opt_.format.channels),
      loop_(opt_.loop) {
    const unsigned ch = opt_.format.channels;
    if (opt_.drift == DriftCorrection::Resample) {
        resampler_ = std::make_unique<AdaptiveResampler>(1.0 / in_per_out_, ch);
        staging_.resize(kStagingFrames * ch);
        resampled_.resize(kMaxRenderFrames * ch);
    }
    scratch_.resize((std::max(kMaxRenderFrames, max_packet_frames()) + 1) * ch);
    held_.resize(opt_.jump_packets);
    held_samples_.resize(std::size_t{opt_.jump_packets} * max_packet_frames() * ch);
    seen_.fill(-1);
}

RtpReceiver::~RtpReceiver() = default;

// The largest packet played: a quarter of the ring (the rest is beyond any sane packet time).
std::size_t RtpReceiver::max_packet_frames() const {
    return std::min<std::size_t>(jb_.capacity() / 4, 65536 / opt_.format.frame_bytes());
}

void RtpReceiver::adopt(std::uint32_t ssrc) {
    if (ssrc_) ++counters_.ssrc_changes;
    ssrc_ = ssrc;
    bye_ = false;
    seq_unwrap_.reset();
    ts_unwrap_.reset();
    lost_before_ = counters_.lost;
    seq_received_ = 0;
    rr_expected_prior_ = rr_received_prior_ = 0;
    seen_.fill(-1);
    transit_valid_ = false;
    jitter_frames_ = 0;
    transit_min_ = transit_max_ = 0;
    sender_clock_.reset();
}

// The sequence number's bookkeeping; false for a packet not to play (a duplicate, or the first of
// a sequence that restarted far from the old one: RFC 3550 A.1's probation, two in a row).
bool RtpReceiver::sequence(std::uint16_t seq) {
    constexpr std::int64_t kMaxMisorder = 100, kMaxDropout = 3000;
    if (seq_received_ > 0) {
        const std::int64_t e = seq_unwrap_.peek(seq);
        if (e < seq_highest_ - kMaxMisorder || e > seq_highest_ + kMaxDropout) {
            if (!probation_ || *probation_ != seq) {
                probation_ = static_cast<std::uint16_t>(seq + 1);
                ++counters_.late;
                return false;
            }
            // The sender restarted its sequence (same SSRC): the bookkeeping starts again.
            ++counters_.sequence_restarts;
            seq_unwrap_.reset();
            seen_.fill(-1);
            lost_before_ = counters_.lost;
            seq_received_ = 0;
            rr_expected_prior_ = rr_received_prior_ = 0;
        }
    }
    probation_.reset();
    const std::int64_t ext = seq_unwrap_.extend(seq);
    if (seq_received_ == 0) seq_base_ = seq_highest_ = ext;
    auto& slot = seen_[static_cast<std::size_t>(ext) % seen_.size()];
    if (slot == ext) {
        ++counters_.duplicates;
        return false;
    }
    slot = ext;
    if (ext < seq_highest_) ++counters_.reordered;
    if (ext < seq_base_) seq_base_ = ext;
    seq_highest_ = std::max(seq_highest_, ext);
    ++seq_received_;
    const auto expected = static_cast<std::uint64_t>(seq_highest_ - seq_base_ + 1);
    counters_.lost = lost_before_ + (expected > seq_received_ ? expected - seq_received_ : 0);
    return true;
}

void RtpReceiver::on_packet(std::span<const std::uint8_t> datagram, Nanos arrival) {
    auto parsed = parse_rtp(datagram);
    if (!parsed) {
        ++counters_.rejected[static_cast<std::size_t>(parsed.error())];
        return;
    }
    const RtpPacket& p = *parsed;
    const auto& f = opt_.format;
    auto reject = [&](Reject r) { ++counters_.rejected[static_cast<std::size_t>(r)]; };
    if (p.payload_type != f.payload_type) return reject(Reject::PayloadType);
    const std::size_t frames = p.payload.size() / f.frame_bytes();
    if (p.payload.empty() || p.payload.size() % f.frame_bytes() != 0 || frames > max_packet_frames())
        return reject(Reject::PayloadSize);

    if (!ssrc_) {
        if (opt_.ssrc && p.ssrc != *opt_.ssrc) return reject(Reject::ForeignSsrc);
        adopt(p.ssrc);
    } else if (p.ssrc != *ssrc_) {
        const bool old_silent = arrival - last_arrival_ >= opt_.adopt_after || bye_;
        if (opt_.ssrc || !old_silent) return reject(Reject::ForeignSsrc);
        adopt(p.ssrc);
        state_ = ReceiverState::NoSource; // the new source starts its own timeline below
    }
    if (p.ssrc == *ssrc_) bye_ = false; // it said BYE and went on: still the one played
    last_arrival_ = arrival;
    ++counters_.packets;
    counters_.bytes += datagram.size();
    if (!sequence(p.sequence)) return;

    const std::int64_t ts_frame = ts_unwrap_.extend(p.timestamp) / f.ticks_per_frame();

    // RFC 3550 §6.4.1 interarrival jitter, in frames.
    const double transit = static_cast<double>(arrival) * f.rate / 1e9 - static_cast<double>(ts_frame);
    if (transit_valid_) {
        jitter_frames_ += (std::abs(transit - transit_) - jitter_frames_) / 16;
        transit_min_ = std::min(transit_min_, transit);
        transit_max_ = std::max(transit_max_, transit);
    } else {
        transit_min_ = transit_max_ = transit;
    }
    transit_ = transit;
    transit_valid_ = true;

    decode_samples(f, p.payload, scratch_.data());
    const std::span<const std::int32_t> samples(scratch_.data(), frames * f.channels);

    if (state_ == ReceiverState::NoSource) {
        offset_ = 0;
        start_timeline(ts_frame, arrival);
        store(ts_frame, samples, arrival);
        return;
    }
    place(ts_frame, samples, arrival);
}

// Puts a packet (timestamp in frames) on the timeline, or holds it while deciding whether the
// sender jumped.
void RtpReceiver::place(std::int64_t ts_frame, std::span<const std::int32_t> samples, Nanos arrival) {
    const auto count = static_cast<std::int64_t>(samples.size() / opt_.format.channels);
    const std::int64_t start = ts_frame + offset_;
    // Where this packet falls against what is being played: its predicted latency, in frames.
    const double predicted = static_cast<double>(start) - audible_input(arrival);
    const std::int64_t read = jb_.read_position();
    const bool behind = start + count <= read;
    // Behind by far, or behind with nothing on the timeline for longer than the target (a sender
    // that stepped back a little, or restarted its timestamps): a jump, not a late packet.
    const bool far_behind = behind && (read - start > frames_of(kJumpBack, opt_.format.rate) ||
                                       arrival - last_on_timeline_ > opt_.target_latency);
    const bool beyond = start + count > read + static_cast<std::int64_t>(jb_.capacity());
    const bool ahead = predicted > static_cast<double>(max_frames_);
    if (state_ == ReceiverState::Underrun && !behind) {
        // The sender is back: near where it should be, it continues the timeline; elsewhere the
        // timeline moves to it (the buffer is empty, nothing is lost).
        state_ = ReceiverState::Playing;
        if (std::abs(predicted - static_cast<double>(target_frames_)) > static_cast<double>(tolerance_frames_)) {
            ++counters_.resyncs;
            offset_ += target_frames_ - static_cast<std::int64_t>(std::llround(predicted));
            held_count_ = 0;
            return store(ts_frame + 0, samples, arrival);
        }
        loop_.restart(true);
    }
    if (far_behind || beyond || ahead) {
        // Off the timeline. A few in a row mean the sender jumped (or the buffer holds far too
        // much); a stray one is dropped. They are held meanwhile, so nothing good is lost.
        hold(ts_frame, samples, arrival, ahead && !beyond && !far_behind);
        if (held_count_ < opt_.jump_packets) return;
        ++counters_.resyncs;
        // Move the held packets to the target latency: the first held one is placed where the
        // timeline stood when it arrived.
        const Held& first = held_[0];
        const double first_predicted = static_cast<double>(first.ts_frame + offset_) - audible_input(first.arrival);
        if (first.overrun) {
            // The sender is on the timeline but far ahead of the playback: skip what is too much.
            ++counters_.overruns;
            jb_.seek(jb_.read_position() + static_cast<std::int64_t>(std::llround(first_predicted)) - target_frames_);
        } else {
            // A jump. Spliced right after the newest frame held when that is near the target
            // latency (a sender that jumped without pausing: seamless); at the target otherwise.
            ++counters_.jumps;
            transit_valid_ = false; // a new timeline: the spread starts afresh
            const double splice = static_cast<double>(newest_end_) - audible_input(first.arrival);
            if (std::abs(splice - static_cast<double>(target_frames_)) <= static_cast<double>(tolerance_frames_))
                offset_ += newest_end_ - (first.ts_frame + offset_);
            else
                offset_ += target_frames_ - static_cast<std::int64_t>(std::llround(first_predicted));
        }
        const unsigned n = held_count_;
        held_count_ = 0;
        for (unsigned i = 0; i < n; ++i) {
            const Held& h = held_[i];
            store(h.ts_frame, std::span(held_samples_).subspan(h.at, h.samples), h.arrival);
        }
        return;
    }
    if (held_count_) {
        counters_.late += held_count_; // strays: dropped
        held_count_ = 0;
    }
    if (!behind) last_on_timeline_ = arrival; // a late packet is no sign the timeline still fits
    store(ts_frame, samples, arrival);
}

void RtpReceiver::hold(std::int64_t ts_frame, std::span<const std::int32_t> samples, Nanos arrival, bool overrun) {
    // Held packets decide together: of one kind, and each following the last within a second of
    // timestamps. One that does not starts the set afresh (the others were strays).
    if (held_count_) {
        const Held& last = held_[held_count_ - 1];
        const std::int64_t step = ts_frame - (last.ts_frame + static_cast<std::int64_t>(last.samples / opt_.format.channels));
        if (last.overrun != overrun || step < -frames_of(kJumpBack, opt_.format.rate) || step > frames_of(kJumpBack, opt_.format.rate)) {
            counters_.late += held_count_;
            held_count_ = 0;
        }
    }
    const std::size_t at = held_count_ ? held_[held_count_ - 1].at + held_[held_count_ - 1].samples : 0;
    if (held_count_ >= held_.size() || at + samples.size() > held_samples_.size()) return;
    std::copy(samples.begin(), samples.end(), held_samples_.begin() + static_cast<std::ptrdiff_t>(at));
    held_[held_count_++] = Held{ts_frame, arrival, at, samples.size(), overrun};
}

void RtpReceiver::store(std::int64_t ts_frame, std::span<const std::int32_t> samples, Nanos arrival) {
    const std::int64_t start = ts_frame + offset_;
    const auto count = static_cast<std::int64_t>(samples.size() / opt_.format.channels);
    switch (jb_.put(start, samples)) {
    case JitterBuffer::Put::Late: ++counters_.late; return;
    case JitterBuffer::Put::TooFarAhead: ++counters_.late; return; // only after a seek; counted as lost in time
    case JitterBuffer::Put::PartlyLate: ++counters_.late; break;
    case JitterBuffer::Put::Stored: break;
    }
    if (start >= newest_start_) {
        newest_start_ = start;
        newest_arrival_ = arrival;
    }
    newest_end_ = std::max(newest_end_, start + count);
}

void RtpReceiver::start_timeline(std::int64_t start, Nanos arrival) {
    // Provisional read position; render() places it exactly once it knows the sink's state.
    jb_.reset(start - target_frames_);
    newest_start_ = stream_start_ = start;
    newest_end_ = start;
    newest_arrival_ = arrival;
    last_on_timeline_ = arrival;
    held_count_ = 0;
    anchor_pending_ = true;
    state_ = ReceiverState::Playing;
    if (resampler_) {
        resampler_->reset();
        staged_at_ = staged_end_ = 0;
    }
    loop_.restart(counters_.packets > 1 && ssrc_.has_value());
}

void RtpReceiver::on_rtcp(std::span<const std::uint8_t> datagram, Nanos arrival) {
    auto c = parse_rtcp(datagram);
    if (!c) {
        ++counters_.rtcp_rejected;
        return;
    }
    ++counters_.rtcp_packets;
    for (const auto& sr : c->sender_reports) {
        if (!ssrc_ || sr.ssrc != *ssrc_) continue;
        ++counters_.sender_reports;
        sender_clock_ = SenderClock{sr.ntp, ts_unwrap_.peek(sr.rtp_timestamp) / opt_.format.ticks_per_frame(), arrival};
    }
    for (auto s : c->byes)
        if (ssrc_ && s == *ssrc_) bye_ = true;
}

double RtpReceiver::pending_at(Nanos t) const {
    if (!rendered_) return 0;
    return std::max(0.0, render_pending_ - static_cast<double>(t - render_time_) * out_rate_ / 1e9);
}

// The input frame audible at `t`: what was read, less what sits in the resampler and the sink.
double RtpReceiver::audible_input(Nanos t) const {
    double in_resampler = 0;
    if (resampler_) in_resampler = static_cast<double>(staged_end_ - staged_at_) + resampler_->delay_frames();
    return static_cast<double>(jb_.read_position()) - in_resampler - pending_at(t) * in_per_out_ * loop_.speed();
}

void RtpReceiver::anchor(Nanos now, double sink_pending) {
    anchor_pending_ = false;
    render_time_ = now;
    render_pending_ = sink_pending;
    rendered_ = true;
    // Place the read position so that the newest packet's first frame is heard `target` after it arrived.
    const double since_arrival = static_cast<double>(now - newest_arrival_) * opt_.format.rate / 1e9;
    const double audible = static_cast<double>(newest_start_) - static_cast<double>(target_frames_) + since_arrival;
    const double in_resampler = resampler_ ? resampler_->delay_frames() : 0;
    const auto pos = static_cast<std::int64_t>(std::llround(audible + in_resampler + sink_pending * in_per_out_));
    jb_.seek(pos);
}

void RtpReceiver::account_read(std::int64_t before, std::int64_t after, const JitterBuffer::Read& r) {
    // Concealed frames past the newest packet are underrun silence, before the stream's first
    // frame lead-in silence; the rest are holes inside the timeline.
    const std::int64_t beyond = std::max<std::int64_t>(0, after - std::max(before, newest_end_));
    const std::int64_t lead = std::max<std::int64_t>(0, std::min(after, stream_start_) - before);
    const std::int64_t holes = std::max<std::int64_t>(0, static_cast<std::int64_t>(r.concealed) - beyond - lead);
    counters_.concealed_frames += static_cast<std::uint64_t>(holes);
    if (state_ == ReceiverState::Playing || state_ == ReceiverState::Underrun)
        counters_.underrun_frames += static_cast<std::uint64_t>(beyond);
}

void RtpReceiver::render(std::span<std::int32_t> out, Nanos now, double sink_pending) {
    const unsigned ch = opt_.format.channels;
    // In steps of at most kMaxRenderFrames, each seeing the ones before it as pending.
    std::size_t done = 0;
    const std::size_t frames = out.size() / ch;
    while (done < frames) {
        const std::size_t n = std::min(frames - done, kMaxRenderFrames);
        render_step(out.subspan(done * ch, n * ch), now, sink_pending + static_cast<double>(done));
        done += n;
    }
}

void RtpReceiver::render_step(std::span<std::int32_t> out, Nanos now, double sink_pending) {
    if (state_ == ReceiverState::NoSource) {
        std::fill(out.begin(), out.end(), 0);
        return;
    }
    if (anchor_pending_) anchor(now, sink_pending);
    render_time_ = now;
    render_pending_ = sink_pending;
    rendered_ = true;

    if (state_ == ReceiverState::Playing) {
        const double since_arrival = static_cast<double>(now - newest_arrival_) / 1e9;
        latency_s_ = (static_cast<double>(newest_start_) - audible_input(now)) / opt_.format.rate + since_arrival;
        error_s_ = *latency_s_ - static_cast<double>(opt_.target_latency) / 1e9;
        if (opt_.drift == DriftCorrection::Resample) loop_.update(error_s_, now);
    } else {
        loop_.freeze(now);
    }

    if (resampler_) read_resampled(out);
    else read_direct(out, now);

    if (state_ == ReceiverState::Playing && jb_.read_position() > newest_end_) {
        ++counters_.underruns;
        state_ = ReceiverState::Underrun;
    }
}

void RtpReceiver::read_direct(std::span<std::int32_t> out, Nanos now) {
    const unsigned ch = opt_.format.channels;
    const std::size_t frames = out.size() / ch;
    // Slip: a frame dropped (+1) or repeated (-1) where the audio is quiet; anywhere once the
    // smoothed error is twice the threshold.
    int slip = 0;
    std::optional<std::uint32_t> at;
    if (opt_.drift == DriftCorrection::Slip && state_ == ReceiverState::Playing && frames > 1) {
        slip_error_s_ += (error_s_ - slip_error_s_) * std::min(1.0, static_cast<double>(frames) / out_rate_);
        const double thr = static_cast<double>(opt_.slip_threshold) / 1e9;
        if (now - last_slip_ >= kMinSlipInterval && std::abs(slip_error_s_) > thr) {
            at = jb_.find_quiet(static_cast<std::uint32_t>(frames - 1), kSilence);
            if (!at && std::abs(slip_error_s_) > 2 * thr) at = static_cast<std::uint32_t>(frames - 2);
            if (at) slip = slip_error_s_ > 0 ? 1 : -1;
        }
    }
    const std::size_t want = slip > 0 ? frames + 1 : slip < 0 ? frames - 1 : frames;
    const std::int64_t before = jb_.read_position();
    std::span<std::int32_t> got(scratch_.data(), want * ch);
    const auto r = jb_.read(got, opt_.concealment, static_cast<std::uint32_t>(fade_frames_));
    account_read(before, jb_.read_position(), r);
    if (slip == 0) {
        std::copy(got.begin(), got.end(), out.begin());
        return;
    }
    std::size_t o = 0;
    for (std::size_t i = 0; i < want; ++i) {
        if (slip > 0 && i == *at) continue;
        std::copy_n(&got[i * ch], ch, &out[o++ * ch]);
        if (slip < 0 && i == *at) std::copy_n(&got[i * ch], ch, &out[o++ * ch]);
    }
    ++(slip > 0 ? counters_.slips_dropped : counters_.slips_repeated);
    last_slip_ = now;
}

void RtpReceiver::read_resampled(std::span<std::int32_t> out) {
    const unsigned ch = opt_.format.channels;
    const std::size_t frames = out.size() / ch;
    resampler_->set_speed(loop_.speed());
    std::size_t produced = 0;
    std::int32_t in_frames[kStagingFrames * kMaxChannels];
    while (produced < frames) {
        if (staged_at_ == staged_end_) {
            const std::int64_t before = jb_.read_position();
            const auto r = jb_.read(std::span(in_frames, kStagingFrames * ch), opt_.concealment,
                                    static_cast<std::uint32_t>(fade_frames_));
            account_read(before, jb_.read_position(), r);
            for (std::size_t i = 0; i < kStagingFrames * ch; ++i) staging_[i] = static_cast<float>(in_frames[i] * 0x1p-31);
            staged_at_ = 0;
            staged_end_ = kStagingFrames;
        }
        const auto step = resampler_->process(std::span(staging_).subspan(staged_at_ * ch, (staged_end_ - staged_at_) * ch),
                                              std::span(resampled_).subspan(produced * ch, (frames - produced) * ch));
        staged_at_ += step.consumed;
        produced += step.produced;
    }
    // Round to the output's bits, clipped.
    const double scale = std::ldexp(1.0, static_cast<int>(opt_.output_bits) - 1);
    const double top = scale - 1;
    const int shift = 32 - static_cast<int>(opt_.output_bits);
    for (std::size_t i = 0; i < frames * ch; ++i) {
        const double v = std::clamp(std::nearbyint(resampled_[i] * scale), -scale, top);
        out[i] = static_cast<std::int32_t>(static_cast<std::int64_t>(v) * (std::int64_t{1} << shift));
    }
}

ReceiverStatus RtpReceiver::status() const {
    ReceiverStatus s;
    s.state = state_;
    s.ssrc = ssrc_;
    s.latency_s = latency_s_;
    s.error_s = error_s_;
    s.speed = loop_.speed();
    s.rate_ppm = loop_.rate_ppm();
    s.jitter_s = jitter_frames_ / opt_.format.rate;
    s.arrival_spread_s = (transit_max_ - transit_min_) / opt_.format.rate;
    s.acquiring = loop_.acquiring();
    return s;
}

std::optional<ReceptionReport> RtpReceiver::reception_report(Nanos now) {
    if (!ssrc_ || seq_received_ == 0) return std::nullopt;
    ReceptionReport r;
    r.source_ssrc = *ssrc_;
    const auto expected = static_cast<std::uint64_t>(seq_highest_ - seq_base_ + 1);
    const std::uint64_t exp_int = expected - rr_expected_prior_, rec_int = seq_received_ - rr_received_prior_;
    rr_expected_prior_ = expected;
    rr_received_prior_ = seq_received_;
    if (exp_int > rec_int && exp_int > 0) r.fraction_lost = static_cast<std::uint8_t>(((exp_int - rec_int) << 8) / exp_int);
    r.cumulative_lost = static_cast<std::int32_t>(std::min<std::uint64_t>(counters_.lost - lost_before_, 0x7fffff));
    r.extended_highest_seq = static_cast<std::uint32_t>(seq_highest_ - (std::int64_t{1} << 16));
    r.jitter = static_cast<std::uint32_t>(jitter_frames_ * opt_.format.ticks_per_frame());
    if (sender_clock_) {
        r.last_sr = static_cast<std::uint32_t>(sender_clock_->ntp >> 16);
        r.delay_since_last_sr = static_cast<std::uint32_t>((now - sender_clock_->received_at) * 65536 / kNanosPerSecond);
    }
    return r;
}

} // namespace vsnd::rtp
