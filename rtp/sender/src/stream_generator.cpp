#include "vsnd/rtp/stream_generator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace vsnd::rtp {

void signal_samples(audio::SignalKind kind, const PayloadFormat& f, std::uint64_t first, std::size_t frames,
                    std::vector<std::uint8_t>& scratch, std::int32_t* out) {
    const bool l16 = f.encoding == Encoding::L16;
    const audio::SampleSpec spec{l16 ? wire::PcmFormat::S16 : wire::PcmFormat::S24, f.rate, f.channels};
    scratch.resize(frames * spec.frame_bytes());
    audio::fill_signal(kind, spec, scratch, first);
    const std::size_t n = frames * f.channels;
    for (std::size_t i = 0; i < n; ++i) {
        if (l16) {
            std::int16_t v;
            std::memcpy(&v, &scratch[i * 2], 2);
            out[i] = static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(v)) << 16);
        } else {
            std::uint32_t v;
            std::memcpy(&v, &scratch[i * 4], 4);
            out[i] = static_cast<std::int32_t>(v << 8); // the low 24 bits, sign from bit 23
        }
    }
}

StreamGenerator::StreamGenerator(GeneratorOptions o, Nanos start)
    : opt_(std::move(o)), start_(start), next_time_(start), ssrc_(opt_.ssrc), ts_(opt_.first_timestamp),
      seq_(opt_.first_sequence), ts_minus_content_(opt_.first_timestamp), marker_(opt_.marker_first) {
    std::sort(opt_.pauses.begin(), opt_.pauses.end(), [](auto& a, auto& b) { return a.at < b.at; });
    std::sort(opt_.restarts.begin(), opt_.restarts.end());
    std::sort(opt_.rate_steps.begin(), opt_.rate_steps.end(), [](auto& a, auto& b) { return a.at < b.at; });
    std::sort(opt_.timestamp_jumps.begin(), opt_.timestamp_jumps.end(), [](auto& a, auto& b) { return a.at < b.at; });
    packet_.resize(kRtpHeaderBytes + std::size_t{opt_.frames_per_packet} * opt_.format.frame_bytes());
    samples_.resize(std::size_t{opt_.frames_per_packet} * opt_.format.channels);
}

double StreamGenerator::ppm_at(Nanos since) const {
    double ppm = opt_.ppm;
    for (const auto& s : opt_.rate_steps)
        if (s.at <= since) ppm = s.ppm;
    return ppm;
}

std::int64_t StreamGenerator::content_of_timestamp(std::uint32_t ts) const {
    const auto span = std::int64_t{1} << 32;
    std::int64_t d = (static_cast<std::int64_t>(ts) - ts_minus_content_) % span;
    if (d < 0) d += span;
    return d / opt_.format.ticks_per_frame();
}

std::span<const std::uint8_t> StreamGenerator::next() {
    const Nanos since = next_time_ - start_;
    if (next_restart_ < opt_.restarts.size() && since >= opt_.restarts[next_restart_]) {
        ++next_restart_;
        // A restarted sender: everything new, derived so a test run repeats exactly.
        if (!opt_.restart_keeps_ssrc) ssrc_ = ssrc_ * 2654435761u + 0x9e3779b9u;
        seq_ = static_cast<std::uint16_t>(seq_ * 31 + 7919);
        ts_ = ts_ * 2246822519u + 3266489917u;
        ts_minus_content_ = static_cast<std::int64_t>(ts_) - static_cast<std::int64_t>(content_ * opt_.format.ticks_per_frame());
        marker_ = opt_.marker_first;
    }
    if (next_jump_ < opt_.timestamp_jumps.size() && since >= opt_.timestamp_jumps[next_jump_].at) {
        const auto ticks = opt_.timestamp_jumps[next_jump_++].frames * opt_.format.ticks_per_frame();
        ts_ = static_cast<std::uint32_t>(static_cast<std::int64_t>(ts_) + ticks);
        ts_minus_content_ += ticks;
    }
    const auto& f = opt_.format;
    RtpHeaderFields h{marker_, f.payload_type, seq_, ts_, ssrc_};
    write_rtp_header(h, std::span<std::uint8_t, kRtpHeaderBytes>(packet_.data(), kRtpHeaderBytes));
    signal_samples(opt_.signal, f, content_, opt_.frames_per_packet, pcm_, samples_.data());
    encode_samples(f, samples_, packet_.data() + kRtpHeaderBytes);
    marker_ = false;
    ++seq_;
    ts_ += opt_.frames_per_packet * f.ticks_per_frame();
    content_ += opt_.frames_per_packet;
    ++packets_;
    // The next packet leaves when the sender's clock has counted its frames.
    const double ppm = ppm_at(since);
    next_time_ += static_cast<Nanos>(std::llround(opt_.frames_per_packet * 1e9 / (f.rate * (1 + ppm * 1e-6))));
    const Nanos now_since = next_time_ - start_;
    if (next_pause_ < opt_.pauses.size() && now_since >= opt_.pauses[next_pause_].at) {
        const auto p = opt_.pauses[next_pause_++];
        const auto frames = static_cast<std::int64_t>(std::llround(static_cast<double>(p.length) * f.rate / 1e9));
        next_time_ += p.length;
        const auto ticks = frames * f.ticks_per_frame();
        ts_ = static_cast<std::uint32_t>(static_cast<std::int64_t>(ts_) + ticks);
        ts_minus_content_ += ticks;
        marker_ = true;
    }
    return packet_;
}

} // namespace vsnd::rtp
