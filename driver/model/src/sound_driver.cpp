#include "vsnd/driver/sound_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace vsnd::driver {

namespace {
constexpr std::size_t kControlArea = 64 * 1024;
constexpr std::size_t kRequestAt = 0, kStatusAt = 64, kPayloadAt = 128;

DriverError error(std::string msg, std::optional<wire::Status> st = std::nullopt) {
    return DriverError{std::move(msg), st};
}
} // namespace

SoundDriver::SoundDriver(DriverTransport& transport, const Clock& clock, Options options)
    : transport_(transport), clock_(clock), opt_(options) {}

Result SoundDriver::control(std::span<const std::uint8_t> request, std::span<std::uint8_t> response) {
    if (request.size() > kStatusAt - kRequestAt || response.size() > kControlArea - kPayloadAt)
        return Unexpected{error("control request or response too large for the control area")};
    std::memcpy(control_mem_.host + kRequestAt, request.data(), request.size());
    std::memset(control_mem_.host + kStatusAt, 0, 4);
    // Status and payload in separate descriptors, as Linux sends them.
    virtq::DriverBuffer bufs[3] = {
        {control_mem_.gpa + kRequestAt, static_cast<std::uint32_t>(request.size()), false},
        {control_mem_.gpa + kStatusAt, 4, true},
        {control_mem_.gpa + kPayloadAt, static_cast<std::uint32_t>(response.size()), true},
    };
    const auto code = wire::peek_code(request);
    const std::string what = code ? std::string(wire::name(*code)) : "request";
    control_done_ = false;
    if (!transport_.queue(0).add(std::span(bufs, response.empty() ? 2 : 3), ++control_token_))
        return Unexpected{error(what + ": control queue full")};
    publish(wire::QueueIndex::Control);

    const Nanos deadline = clock_.now() + opt_.msg_timeout;
    for (;;) {
        process_interrupts();
        if (control_done_) break;
        const Nanos now = clock_.now();
        if (now >= deadline) return Unexpected{error(what + ": no answer within the message timeout")};
        transport_.wait_interrupt(deadline - now);
    }
    const auto status = wire::decode<wire::StatusHeader>(std::span<const std::uint8_t>(control_mem_.host + kStatusAt, 4));
    if (!status) return Unexpected{error(what + ": undefined status code in the answer")};
    if (status->status != wire::Status::Ok)
        return Unexpected{error(fmt::format("{}: device answered {}", what, wire::name(status->status)), status->status)};
    if (control_used_ < 4 + response.size())
        return Unexpected{error(fmt::format("{}: answer of {} bytes, expected {}", what, control_used_, 4 + response.size()))};
    if (!response.empty()) std::memcpy(response.data(), control_mem_.host + kPayloadAt, response.size());
    return Done{};
}

template <class Info>
Expected<std::vector<Info>, DriverError> SoundDriver::query(wire::Code code, std::uint32_t count) {
    std::vector<Info> out;
    if (count == 0) return out;
    const std::size_t size = wire::wire_size<Info>;
    if (count > (kControlArea - kPayloadAt) / size)
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
    auto ctl = transport_.allocate(kControlArea);
    auto ev = transport_.allocate(std::size_t{opt_.event_buffers} * wire::wire_size<wire::Event>);
    if (!ctl || !ev) return Unexpected{error("out of guest memory for control and event buffers")};
    control_mem_ = *ctl;
    event_mem_ = *ev;

    auto jacks = query<wire::JackInfo>(wire::Code::JackInfo, config_.jacks);
    if (!jacks) return Unexpected{jacks.error()};
    jacks_ = *jacks;
    auto streams = query<wire::PcmInfo>(wire::Code::PcmInfo, config_.streams);
    if (!streams) return Unexpected{streams.error()};
    auto chmaps = query<wire::ChmapInfo>(wire::Code::ChmapInfo, config_.chmaps);
    if (!chmaps) return Unexpected{chmaps.error()};
    chmaps_ = *chmaps;

    streams_.clear();
    for (std::uint32_t i = 0; i < streams->size(); ++i) {
        const auto& info = (*streams)[i];
        // The checks Linux makes before it registers a PCM.
        if (info.channels_min < 1 || info.channels_min > info.channels_max || info.formats == 0 || info.rates == 0)
            return Unexpected{error(fmt::format("stream {}: device describes an unusable stream", i))};
        streams_.push_back(std::make_unique<PcmStream>(*this, i, info));
    }
    for (std::uint16_t i = 0; i < opt_.event_buffers; ++i) queue_event_buffer(i);
    publish(wire::QueueIndex::Event);
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
    const Nanos now = clock_.now();
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
                if (used.token == control_token_) { control_done_ = true; control_used_ = used.len; }
                break;
            case wire::QueueIndex::Event: {
                const auto slot = static_cast<std::uint16_t>(used.token);
                auto ev = wire::decode<wire::Event>(
                    std::span<const std::uint8_t>(event_mem_.host + slot * wire::wire_size<wire::Event>, wire::wire_size<wire::Event>));
                if (used.len >= wire::wire_size<wire::Event> && ev) events_.push_back(*ev);
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
    return handled;
}

bool SoundDriver::wait(Nanos timeout) {
    if (process_interrupts() > 0) return true;
    // An interrupt may announce entries an earlier pass already handled: keep waiting.
    const Nanos deadline = clock_.now() + timeout;
    for (Nanos left = timeout; left > 0; left = deadline - clock_.now()) {
        transport_.wait_interrupt(left);
        if (process_interrupts() > 0) return true;
    }
    return false;
}

} // namespace vsnd::driver
