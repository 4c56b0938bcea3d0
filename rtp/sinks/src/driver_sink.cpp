#include "vsnd/rtp/driver_sink.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vsnd::rtp {

Expected<std::unique_ptr<DriverSink>, std::string> DriverSink::open(driver::SoundDriver& d, std::uint32_t id,
                                                                   const driver::PcmConfig& cfg) {
    if (id >= d.stream_count()) return Unexpected{fmt::format("the device has no stream {}", id)};
    auto& s = d.stream(id);
    if (!s.output()) return Unexpected{fmt::format("stream {} is not a playback stream", id)};
    if (!sink_format_supported(cfg.format)) return Unexpected{fmt::format("format {} is not played", wire::name(cfg.format))};
    if (auto r = s.set_params(cfg); !r) return Unexpected{fmt::format("stream {}: set params: {}", id, r.error().message)};
    if (auto r = s.prepare(); !r) return Unexpected{fmt::format("stream {}: prepare: {}", id, r.error().message)};
    return std::unique_ptr<DriverSink>(new DriverSink(d, s));
}

DriverSink::DriverSink(driver::SoundDriver& d, driver::PcmStream& s)
    : driver_(d), stream_(s), spec_{s.config().format, s.config().rate, s.config().channels},
      events_seen_(d.events().size()) {}

DriverSink::~DriverSink() {
    // Best effort: stop and release so the device closes its backend stream.
    if (stream_.state() == driver::StreamState::Running) (void)stream_.stop();
    if (stream_.state() != driver::StreamState::Idle) (void)stream_.release();
}

bool DriverSink::update(Nanos now) {
    driver_.process_interrupts();
    driver_.expire(now);
    // PCM XRUN notifications from the device.
    const auto& ev = driver_.events();
    for (std::size_t i = std::min(events_seen_, ev.size()); i < ev.size(); ++i)
        if (ev[i].type == wire::Code::EvtPcmXrun && ev[i].data == stream_.id()) ++xruns_;
    events_seen_ = ev.size();
    if (driver_.transport().device_gone()) error_ = "the device went away";
    if (stream_.io_errors()) error_ = fmt::format("the device failed {} I/O requests", stream_.io_errors());
    return error_.empty();
}

std::optional<double> DriverSink::pending(Nanos now) const {
    if (auto b = stream_.buffered_frames(now)) return std::max(0.0, *b);
    return static_cast<double>(stream_.queued_frames());
}

std::size_t DriverSink::writable() const { return stream_.writable_bytes() / stream_.frame_bytes(); }

std::size_t DriverSink::write(std::span<const std::int32_t> s, Nanos) {
    const std::size_t frames = std::min(s.size() / spec_.channels, writable());
    bytes_.resize(frames * spec_.frame_bytes());
    convert_samples(s.first(frames * spec_.channels), spec_.format, bytes_.data());
    const std::size_t taken = stream_.write(bytes_) / stream_.frame_bytes();
    if (!start_sent_ && stream_.written_frames() >= 2 * stream_.config().period_frames) {
        start_sent_ = true;
        if (auto r = stream_.start_async([this](const driver::Result& r) {
                if (!r) error_ = fmt::format("START: {}", r.error().message);
            });
            !r)
            error_ = fmt::format("START: {}", r.error().message);
    }
    return taken;
}

Nanos DriverSink::next_wake(Nanos now) const {
    Nanos t = now + static_cast<Nanos>(stream_.config().period_frames) * kNanosPerSecond / spec_.rate / 2;
    if (auto c = driver_.next_timeout()) t = std::min(t, *c);
    return t;
}

std::string DriverSink::describe() const {
    const auto& c = stream_.config();
    return fmt::format("virtio-snd stream {} {} {} Hz {} ch, {} periods of {} frames", stream_.id(), wire::name(c.format),
                       c.rate, c.channels, c.periods, c.period_frames);
}

} // namespace vsnd::rtp
