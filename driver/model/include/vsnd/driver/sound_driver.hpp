// The guest-side virtio-snd driver model: probes the device (config, JACK_INFO, PCM_INFO,
// CHMAP_INFO), fills the event queue, sends control requests with a timeout (as Linux does, 1 s
// by default) and dispatches tx/rx completions to its streams.
//
// Event-driven use: watch transport().interrupt_fd() and the timer at next_timeout() in your own
// loop (with a UDP socket, say); on the fd call on_interrupt(), on the timer expire(now). Control
// requests are asynchronous (control_async, PcmStream::start_async/stop_async), each in its own
// DMA buffer with its own deadline. The blocking calls (probe, control, PcmStream's commands,
// wait) are a thin layer over that for tools and tests. One thread owns a SoundDriver and its
// streams; nothing here is thread-safe, and only the blocking calls block.
#pragma once

#include "vsnd/driver/pcm_stream.hpp"
#include "vsnd/driver/transport.hpp"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace vsnd::driver {


class SoundDriver {
public:
    struct Options {
        Nanos msg_timeout = kNanosPerSecond;
        std::uint32_t split_bytes = 4096; // period data split into descriptors at page boundaries
        std::uint16_t event_buffers = 16;
        std::size_t max_events = 256; // events kept for events(); older ones are dropped first
    };
    // The answer to an asynchronous control request: its status, and the payload after the
    // status header (valid only during the call).
    using ControlDone = std::function<void(const Result&, std::span<const std::uint8_t> payload)>;

    SoundDriver(DriverTransport& transport, const Clock& clock) : SoundDriver(transport, clock, Options{}) {}
    SoundDriver(DriverTransport& transport, const Clock& clock, Options options);
    ~SoundDriver();
    SoundDriver(const SoundDriver&) = delete;
    SoundDriver& operator=(const SoundDriver&) = delete;

    Result probe();

    const wire::Config& config() const { return config_; }
    const std::vector<wire::JackInfo>& jacks() const { return jacks_; }
    const std::vector<wire::ChmapInfo>& chmaps() const { return chmaps_; }
    std::size_t stream_count() const { return streams_.size(); }
    PcmStream& stream(std::uint32_t id) { return *streams_.at(id); }

    // Handles every used entry on every queue (and expired control requests); returns how many.
    std::size_t process_interrupts();
    // The interrupt fd was readable: clears it and handles what arrived.
    std::size_t on_interrupt();
    // Waits up to `timeout` until at least one used entry arrived, and handles it; false if none.
    bool wait(Nanos timeout);
    // The latest events (jack and PCM notifications), at most Options::max_events, and how many
    // older ones were dropped to keep it so.
    const std::deque<wire::Event>& events() const { return events_; }
    std::uint64_t events_dropped() const { return events_dropped_; }
    std::uint64_t device_faults() const { return device_faults_; }

    // Queues one control request; `done` runs later, from process_interrupts() with the answer or
    // from expire() once the message timeout has passed. Fails at once when the request is too
    // large, guest memory or the control queue is full. A request that timed out keeps its buffer
    // until the device returns it, so a late answer never lands in a later request.
    Result control_async(std::span<const std::uint8_t> request, std::size_t response_bytes, ControlDone done);
    // The earliest deadline of a pending control request.
    std::optional<Nanos> next_timeout() const;
    // Fails (with a timeout) every pending request whose deadline is not after `now`, and every
    // pending request once the transport reports device_gone().
    void expire(Nanos now);
    std::size_t controls_pending() const { return controls_.size(); }
    // Blocking: sends one control request and waits for the answer; `response` receives the
    // payload after the status header.
    Result control(std::span<const std::uint8_t> request, std::span<std::uint8_t> response = {});

    // Internal to PcmStream.
    DriverTransport& transport() { return transport_; }
    const Clock& clock() const { return clock_; }
    const Options& options() const { return opt_; }
    bool add_io(wire::QueueIndex q, std::span<const virtq::DriverBuffer> bufs, std::uint32_t stream, std::uint32_t period);
    void publish(wire::QueueIndex q);

private:
    template <class Info> Expected<std::vector<Info>, DriverError> query(wire::Code code, std::uint32_t count);
    void queue_event_buffer(std::uint16_t slot);

    DriverTransport& transport_;
    const Clock& clock_;
    Options opt_;
    wire::Config config_;
    std::vector<wire::JackInfo> jacks_;
    std::vector<wire::ChmapInfo> chmaps_;
    struct PendingControl {
        DmaBuffer mem;              // request | status | payload
        std::size_t response_bytes;
        Nanos deadline;
        std::string what;
        ControlDone done;           // empty once timed out: the buffer waits for the device
    };
    void finish_control(std::uint64_t token, std::uint32_t used_len);

    std::vector<std::unique_ptr<PcmStream>> streams_;
    DmaBuffer event_mem_;
    std::uint64_t control_token_ = 0;
    std::map<std::uint64_t, PendingControl> controls_;
    std::deque<wire::Event> events_;
    std::uint64_t events_dropped_ = 0;
    std::uint64_t device_faults_ = 0;
};

} // namespace vsnd::driver
