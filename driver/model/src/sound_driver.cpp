#include "vsnd/driver/sound_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace vsnd::driver {

namespace {
// A control request's DMA buffer: the request, the status header, the response payload (Linux
// sends them as separate descriptors too).
constexpr std::size_t kRequestAt = 0, kStatusAt = 64, kPayloadAt = 128;
constexpr std::size_t kMaxResponse = 64 * 1024;

DriverError error(std::string msg, std::optional<wire::Status> st = std::nullopt) {
    return DriverError{std::move(msg), st};
}
} // namespace

SoundDriver::SoundDriver(DriverTransport& transport, const Clock& clock, Options options)
    : transport_(transport), clock_(clock), opt_(options) {}

// Nothing is given back to the transport here: it may already be gone, and the device may still
// hold buffers. A driver's memory lives as long as its transport.
SoundDriver::~SoundDriver() = default;

Result SoundDriver::control_async(std::span<const std::uint8_t> request, std::size_t response_bytes, ControlDone done) {
    const auto code = wire::peek_code(request);
    std::string what = code ? std::string(wire::name(*code)) : "request";
    if (request.size() > kStatusAt - kRequestAt || response_bytes > kMaxResponse)
        return Unexpected{error(what + ": control request or response too large")};
    auto mem = transport_.allocate(kPayloadAt + response_bytes);
    if (!mem) return Unexpected{error(what + ": out of guest memory for the control request")};
    std::memcpy(mem->host + kRequestAt, request.data(), request.size());
    std::memset(mem->host + kStatusAt, 0, 4);
    virtq::DriverBuffer bufs[3] = {
        {mem->gpa + kRequestAt, static_cast<std::uint32_t>(request.size()), false},
        {mem->gpa + kStatusAt, 4, true},
        {mem->gpa + kPayloadAt, static_cast<std::uint32_t>(response_bytes), true},
    };
    const std::uint64_t token = ++control_token_;
    if (!transport_.queue(0).add(std::span(bufs, response_bytes == 0 ? 2 : 3), token)) {
        transport_.release(*mem);
        return Unexpected{error(what + ": control queue full")};
    }
    controls_.emplace(token, PendingControl{*mem, response_bytes, clock_.now() + opt_.msg_timeout, std::move(what), std::move(done)});
    publish(wire::QueueIndex::Control);
    return Done{};
}

void SoundDriver::finish_control(std::uint64_t token, std::uint32_t used_len) {
    auto it = controls_.find(token);
    if (it == controls_.end()) { ++device_faults_; return; } // not a request of ours
    PendingControl c = std::move(it->second);
    controls_.erase(it);
    if (c.done) {
        const auto status = wire::decode<wire::StatusHeader>(std::span<const std::uint8_t>(c.mem.host + kStatusAt, 4));
        Result r = Done{};
        if (!status) r = Unexpected{error(c.what + ": undefined status code in the answer")};
        else if (status->status != wire::Status::Ok)
            r = Unexpected{error(fmt::format("{}: device answered {}", c.what, wire::name(status->status)), status->status)};
        else if (used_len < 4 + c.response_bytes)
            r = Unexpected{error(fmt::format("{}: answer of {} bytes, expected {}", c.what, used_len, 4 + c.response_bytes))};
        c.done(r, std::span<const std::uint8_t>(c.mem.host + kPayloadAt, r ? c.response_bytes : 0));
    }
    transport_.release(c.mem); // the device has returned it: reusable
}

std::optional<Nanos> SoundDriver::next_timeout() const {
    std::optional<Nanos> t;
    for (const auto& [token, c] : controls_)
        if (c.done && (!t || c.deadline < *t)) t = c.deadline;
    return t;
}

void SoundDriver::expire(Nanos now) {
    // A device that can never answer (its connection closed) fails every request at once.
    const bool gone = transport_.device_gone();
    std::vector<std::pair<ControlDone, std::string>> late;
    for (auto& [token, c] : controls_)
        if (c.done && (gone || c.deadline <= now)) {
            late.emplace_back(std::move(c.done), c.what);
            c.done = nullptr; // the entry (and its buffer) stays until the device returns it
        }
    // After the scan: a callback may queue new requests.
    const char* why = gone ? ": the device has gone" : ": no answer within the message timeout";
    for (auto& [done, what] : late) done(Result(Unexpected{error(what + why)}), {});
}

Result SoundDriver::control(std::span<const std::uint8_t> request, std::span<std::uint8_t> response) {
    std::optional<Result> outcome;
    auto sent = control_async(request, response.size(), [&](const Result& r, std::span<const std::uint8_t> payload) {
        outcome = r;
        if (r && !payload.empty()) std::memcpy(response.data(), payload.data(), payload.size());
    });
    if (!sent) return sent;
    while (!outcome) {
        process_interrupts();
        if (outcome) break;
        const auto deadline = next_timeout();
        const Nanos now = clock_.now();
        if (!deadline || *deadline <= now || transport_.device_gone()) {
            expire(now);
            continue;
        }
        transport_.wait_interrupt(*deadline - now);
    }
    return *outcome;
}

template <class Info>
Expected<std::vector<Info>, DriverError> SoundDriver::query(wire::Code code, std::uint32_t count) {
    std::vector<Info> out;
    if (count == 0) return out;
    const std::size_t size = wire::wire_size<Info>;
    if (count > kMaxResponse / size)
        return Unexpected{error(fmt::format("{}: {} items do not fit the control area", wire::name(code), count))};
    std::vector<std::uint8_t> payload(count * size);
    auto r = control(wire::encode(wire::QueryInfo{code, 0, count, static_cast<std::uint32_t>(size)}), payload);
    if (!r) return Unexpected{r.error()};
    for (std::uint32_t i = 0; i < count; ++i) {
        auto item = wire::decode<Info>(std::span<const std::uint8_t>(payload).subspan(i * size, size));
        if (!item) return Unexpected{error(fmt::format("{} item {}: {}", wire::name(code), i, wire::describe(item.error())))};
        out.push_back(*item);
    }
    return out;
}

Result SoundDriver::probe() {
    auto cfg = wire::decode_config(transport_.config());
    if (!cfg) return Unexpected{error(std::string("config space: ") + std::string(wire::describe(cfg.error())))};
    config_ = *cfg;
    // The event buffers are allocated and queued once: on a second probe the device still holds
    // the first ones.
    const bool first_probe = event_mem_.size == 0;
    if (first_probe) {
        auto ev = transport_.allocate(std::size_t{opt_.event_buffers} * wire::wire_size<wire::Event>);
        if (!ev) return Unexpected{error("out of guest memory for event buffers")};
        event_mem_ = *ev;
    }

    auto jacks = query<wire::JackInfo>(wire::Code::JackInfo, config_.jacks);
    if (!jacks) return Unexpected{jacks.error()};
    jacks_ = *jacks;
    auto streams = query<wire::PcmInfo>(wire::Code::PcmInfo, config_.streams);
    if (!streams) return Unexpected{streams.error()};
    auto chmaps = query<wire::ChmapInfo>(wire::Code::ChmapInfo, config_.chmaps);
    if (!chmaps) return Unexpected{chmaps.error()};
    chmaps_ = *chmaps;

    for (auto& st : streams_) st->give_back_memory();
    streams_.clear();
    for (std::uint32_t i = 0; i < streams->size(); ++i) {
        const auto& info = (*streams)[i];
        // The checks Linux makes before it registers a PCM.
        if (info.channels_min < 1 || info.channels_min > info.channels_max || info.formats == 0 || info.rates == 0)
            return Unexpected{error(fmt::format("stream {}: device describes an unusable stream", i))};
        streams_.push_back(std::make_unique<PcmStream>(*this, i, info));
    }
    if (first_probe) {
        for (std::uint16_t i = 0; i < opt_.event_buffers; ++i) queue_event_buffer(i);
        publish(wire::QueueIndex::Event);
    }
    return Done{};
}

void SoundDriver::queue_event_buffer(std::uint16_t slot) {
    virtq::DriverBuffer b{event_mem_.gpa + slot * wire::wire_size<wire::Event>,
                          static_cast<std::uint32_t>(wire::wire_size<wire::Event>), true};
    transport_.queue(1).add(std::span(&b, 1), slot);
}

bool SoundDriver::add_io(wire::QueueIndex q, std::span<const virtq::DriverBuffer> bufs, std::uint32_t stream, std::uint32_t period) {
    return transport_.queue(static_cast<unsigned>(q)).add(bufs, (std::uint64_t{stream} << 32) | period);
}

void SoundDriver::publish(wire::QueueIndex q) {
    const auto i = static_cast<unsigned>(q);
    if (transport_.queue(i).publish()) transport_.kick(i);
}

std::size_t SoundDriver::process_interrupts() {
    std::size_t handled = 0;
    const Nanos now = clock_.now(); // completion time of everything handled in this pass
    bool requeued_events = false;
    for (unsigned q = 0; q < 4; ++q) {
        auto& queue = transport_.queue(q);
        while (auto r = queue.reap()) {
            ++handled;
            if (!*r) { ++device_faults_; continue; }
            const auto used = r->value();
            if (used.len_overran) ++device_faults_;
            switch (static_cast<wire::QueueIndex>(q)) {
            case wire::QueueIndex::Control:
                finish_control(used.token, used.len);
                break;
            case wire::QueueIndex::Event: {
                const auto slot = static_cast<std::uint16_t>(used.token);
                auto ev = wire::decode<wire::Event>(
                    std::span<const std::uint8_t>(event_mem_.host + slot * wire::wire_size<wire::Event>, wire::wire_size<wire::Event>));
                if (used.len >= wire::wire_size<wire::Event> && ev) {
                    if (events_.size() >= opt_.max_events) {
                        events_.pop_front();
                        ++events_dropped_;
                    }
                    events_.push_back(*ev);
                }
                queue_event_buffer(slot);
                requeued_events = true;
                break;
            }
            case wire::QueueIndex::Tx:
            case wire::QueueIndex::Rx: {
                const auto stream = static_cast<std::uint32_t>(used.token >> 32);
                if (stream < streams_.size())
                    streams_[stream]->on_complete(static_cast<std::uint32_t>(used.token), used.len, now);
                else
                    ++device_faults_;
                break;
            }
            }
        }
    }
    if (requeued_events) publish(wire::QueueIndex::Event);
    expire(clock_.now());
    return handled;
}

std::size_t SoundDriver::on_interrupt() {
    transport_.clear_interrupt();
    return process_interrupts();
}

bool SoundDriver::wait(Nanos timeout) {
    if (process_interrupts() > 0) return true;
    // An interrupt may announce entries an earlier pass already handled: keep waiting.
    const Nanos deadline = clock_.now() + timeout;
    for (Nanos left = timeout; left > 0 && !transport_.device_gone(); left = deadline - clock_.now()) {
        transport_.wait_interrupt(left);
        if (process_interrupts() > 0) return true;
    }
    return false;
}

} // namespace vsnd::driver
