#include "vsnd/driver/pcm_stream.hpp"
#include "vsnd/driver/sound_driver.hpp"

#include <fmt/format.h>

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <cstring>

namespace vsnd::driver {

namespace {
constexpr std::size_t kHeaderSlot = 16; // per period: xfer (4 bytes) at 0, status (8 bytes) at 8
}

PcmStream::PcmStream(SoundDriver& driver, std::uint32_t id, wire::PcmInfo info)
    : driver_(driver), id_(id), info_(info), clock_(48000) {}

void PcmStream::give_back_memory() {
    if (in_flight_) return; // the device may still write them
    if (ring_.size) driver_.transport().release(ring_);
    if (headers_.size) driver_.transport().release(headers_);
    ring_ = headers_ = {};
}

Result PcmStream::command(wire::Code code) {
    auto r = driver_.control(wire::encode(wire::PcmHeader{code, id_}));
    if (!r) return Unexpected{DriverError{fmt::format("stream {}: {}", id_, r.error().message), r.error().status}};
    return Done{};
}

// Transactional: the new sizes and buffers take effect only once the device accepted them; on
// any failure the stream keeps its earlier parameters and memory. Buffers that no longer fit are
// given back to the transport, so renegotiation does not leak guest memory.
Result PcmStream::set_params(const PcmConfig& cfg) {
    auto fail = [&](std::string m) { return Result(Unexpected{DriverError{fmt::format("stream {}: {}", id_, m), {}}}); };
    if (in_flight_) return fail("I/O messages still pending");
    const auto rate = wire::rate_from_hz(cfg.rate);
    const auto fi = wire::format_info(cfg.format);
    if (!rate || !fi || fi->physical_bytes == 0) return fail("rate or format has no virtio code");
    if (cfg.period_frames == 0 || cfg.periods == 0 || cfg.channels == 0) return fail("empty period, ring or frame");
    const std::uint64_t frame = std::uint64_t{fi->physical_bytes} * cfg.channels;
    const std::uint64_t period = cfg.period_frames * frame, buffer = period * cfg.periods;
    if (buffer > 0xffffffffu) return fail("ring larger than 4 GiB");
    auto& transport = driver_.transport();
    DmaBuffer ring = ring_, headers = headers_;
    const bool new_ring = ring.size < buffer, new_headers = headers.size < std::size_t{cfg.periods} * kHeaderSlot;
    auto drop_new = [&] {
        if (new_ring && ring.size) transport.release(ring);
        if (new_headers && headers.size) transport.release(headers);
    };
    if (new_ring) {
        auto mem = transport.allocate(buffer, 4096);
        if (!mem) return fail("out of guest memory for the ring buffer");
        ring = *mem;
    }
    if (new_headers) {
        auto mem = transport.allocate(std::size_t{cfg.periods} * kHeaderSlot);
        if (!mem) {
            drop_new();
            return fail("out of guest memory for message headers");
        }
        headers = *mem;
    }
    wire::PcmSetParams p{id_, static_cast<std::uint32_t>(buffer), static_cast<std::uint32_t>(period), cfg.features,
                         cfg.channels, cfg.format, *rate};
    auto r = driver_.control(wire::encode(p));
    if (!r) {
        drop_new();
        return Unexpected{DriverError{fmt::format("stream {}: {}", id_, r.error().message), r.error().status}};
    }
    if (new_ring && ring_.size) transport.release(ring_);
    if (new_headers && headers_.size) transport.release(headers_);
    ring_ = ring;
    headers_ = headers;
    frame_bytes_ = static_cast<std::uint32_t>(frame);
    period_bytes_ = static_cast<std::uint32_t>(period);
    buffer_bytes_ = static_cast<std::uint32_t>(buffer);
    cfg_ = cfg;
    busy_.assign(cfg.periods, false);
    clock_ = timing::PlaybackClock(cfg.rate);
    state_ = StreamState::ParamsSet;
    return Done{};
}

Result PcmStream::prepare() {
    if (in_flight_) return Unexpected{DriverError{fmt::format("stream {}: I/O messages still pending", id_), {}}};
    auto r = command(wire::Code::PcmPrepare);
    if (!r) return r;
    appl_ = hw_ = queued_ = 0;
    periods_completed_ = 0;
    clock_.reset();
    state_ = StreamState::Prepared;
    return Done{};
}

Result PcmStream::start() {
    if (!output()) flush_queue(); // capture buffers must be there before the stream runs
    auto r = command(wire::Code::PcmStart);
    if (!r) return r;
    state_ = StreamState::Running;
    return Done{};
}

Result PcmStream::stop() {
    auto r = command(wire::Code::PcmStop);
    if (!r) return r;
    clock_.pause(driver_.clock().now());
    state_ = StreamState::Paused;
    return Done{};
}

Result PcmStream::start_async(std::function<void(const Result&)> done) {
    if (!output()) flush_queue();
    return driver_.control_async(wire::encode(wire::PcmHeader{wire::Code::PcmStart, id_}), 0,
                                 [this, done = std::move(done)](const Result& r, std::span<const std::uint8_t>) {
                                     if (r) state_ = StreamState::Running;
                                     if (done) done(r);
                                 });
}

Result PcmStream::stop_async(std::function<void(const Result&)> done) {
    return driver_.control_async(wire::encode(wire::PcmHeader{wire::Code::PcmStop, id_}), 0,
                                 [this, done = std::move(done)](const Result& r, std::span<const std::uint8_t>) {
                                     if (r) {
                                         clock_.pause(driver_.clock().now());
                                         state_ = StreamState::Paused;
                                     }
                                     if (done) done(r);
                                 });
}

std::optional<double> PcmStream::buffered_frames(Nanos t) const {
    if (!clock_.valid()) return std::nullopt;
    return static_cast<double>(written_frames()) - *clock_.frames_at(t);
}

Result PcmStream::release() {
    auto r = command(wire::Code::PcmRelease);
    if (!r) return r;
    state_ = StreamState::ParamsSet; // from here on nothing is queued again
    // The device completes every pending message before answering; collect them.
    const Nanos deadline = driver_.clock().now() + driver_.options().msg_timeout;
    while (in_flight_ && driver_.clock().now() < deadline) driver_.wait(deadline - driver_.clock().now());
    if (in_flight_) return Unexpected{DriverError{fmt::format("stream {}: failed to flush I/O queue", id_), {}}};
    return Done{};
}

bool PcmStream::queue_period(std::uint32_t period) {
    std::uint8_t* hdr = headers_.host + period * kHeaderSlot;
    const auto xfer = wire::encode(wire::PcmXfer{id_});
    std::memcpy(hdr, xfer.data(), xfer.size());
    std::memset(hdr + 8, 0, 8);

    // Period data in page-sized pieces, the way Linux maps its vmalloc'ed ring.
    boost::container::small_vector<virtq::DriverBuffer, 16> bufs;
    bufs.push_back({headers_.gpa + period * kHeaderSlot, 4, false});
    const std::uint32_t split = driver_.options().split_bytes;
    std::uint64_t gpa = ring_.gpa + std::uint64_t{period} * period_bytes_;
    std::uint32_t left = period_bytes_;
    while (left) {
        std::uint32_t piece = split ? std::min<std::uint64_t>(left, split - gpa % split) : left;
        bufs.push_back({gpa, piece, !output()});
        gpa += piece;
        left -= piece;
    }
    bufs.push_back({headers_.gpa + period * kHeaderSlot + 8, 8, true});
    if (!driver_.add_io(output() ? wire::QueueIndex::Tx : wire::QueueIndex::Rx, std::span(bufs.data(), bufs.size()), id_, period)) return false;
    busy_[period] = true;
    ++in_flight_;
    return true;
}

void PcmStream::flush_queue() {
    if (state_ == StreamState::Idle || state_ == StreamState::ParamsSet) return;
    bool added = false;
    for (;;) {
        // Playback: every period the application completed. Capture: every slot it has read.
        const bool ready = output() ? appl_ - queued_ >= period_bytes_ : queued_ + period_bytes_ <= appl_ + buffer_bytes_;
        if (!ready) break;
        const auto period = static_cast<std::uint32_t>(queued_ / period_bytes_ % cfg_.periods);
        if (busy_[period] || !queue_period(period)) break;
        queued_ += period_bytes_;
        added = true;
    }
    if (added) driver_.publish(output() ? wire::QueueIndex::Tx : wire::QueueIndex::Rx);
}

std::size_t PcmStream::writable_bytes() const {
    if (!output() || state_ == StreamState::Idle || state_ == StreamState::ParamsSet) return 0;
    return buffer_bytes_ - (appl_ - hw_);
}

std::size_t PcmStream::write(std::span<const std::uint8_t> frames) {
    std::size_t n = std::min(frames.size(), writable_bytes());
    n -= n % frame_bytes_;
    for (std::size_t done = 0; done < n;) {
        const std::size_t at = appl_ % buffer_bytes_;
        const std::size_t chunk = std::min(n - done, buffer_bytes_ - at);
        std::memcpy(ring_.host + at, frames.data() + done, chunk);
        appl_ += chunk;
        done += chunk;
    }
    flush_queue();
    return n;
}

std::size_t PcmStream::readable_bytes() const { return output() ? 0 : hw_ - appl_; }

std::size_t PcmStream::read(std::span<std::uint8_t> out) {
    std::size_t n = std::min(out.size(), readable_bytes());
    n -= n % frame_bytes_;
    for (std::size_t done = 0; done < n;) {
        const std::size_t at = appl_ % buffer_bytes_;
        const std::size_t chunk = std::min(n - done, buffer_bytes_ - at);
        std::memcpy(out.data() + done, ring_.host + at, chunk);
        appl_ += chunk;
        done += chunk;
    }
    if (state_ == StreamState::Running || state_ == StreamState::Paused) flush_queue();
    return n;
}

void PcmStream::on_complete(std::uint32_t period, std::uint32_t used_len, Nanos when) {
    if (period >= busy_.size() || !busy_[period]) return; // not ours: the device is confused
    busy_[period] = false;
    --in_flight_;
    auto status = wire::decode<wire::PcmStatus>(std::span<const std::uint8_t>(headers_.host + period * kHeaderSlot + 8, 8));
    if (!status || status->status != wire::Status::Ok) ++io_errors_;
    last_latency_ = status ? status->latency_bytes : 0;
    // Like Linux, the position advances by a whole period per completion (a BATCH device).
    (void)used_len;
    hw_ += period_bytes_;
    ++periods_completed_;
    if (state_ == StreamState::Running)
        clock_.update(timing::from_virtio_completion(hw_, last_latency_, frame_bytes_, when, output()));
    if (output()) flush_queue();
}

} // namespace vsnd::driver
