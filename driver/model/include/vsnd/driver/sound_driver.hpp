// The guest-side virtio-snd driver model: probes the device (config, JACK_INFO, PCM_INFO,
// CHMAP_INFO), fills the event queue, sends control requests and waits for their answers with a
// timeout (as Linux does, 1 s by default), and dispatches tx/rx completions to its streams.
#pragma once

#include "vsnd/driver/pcm_stream.hpp"
#include "vsnd/driver/transport.hpp"

#include <deque>
#include <memory>
#include <vector>

namespace vsnd::driver {


class SoundDriver {
public:
    struct Options {
        Nanos msg_timeout = kNanosPerSecond;
        std::uint32_t split_bytes = 4096; // period data split into descriptors at page boundaries
        std::uint16_t event_buffers = 16;
    };

    SoundDriver(DriverTransport& transport, const Clock& clock) : SoundDriver(transport, clock, Options{}) {}
    SoundDriver(DriverTransport& transport, const Clock& clock, Options options);

    Result probe();

    const wire::Config& config() const { return config_; }
    const std::vector<wire::JackInfo>& jacks() const { return jacks_; }
    const std::vector<wire::ChmapInfo>& chmaps() const { return chmaps_; }
    std::size_t stream_count() const { return streams_.size(); }
    PcmStream& stream(std::uint32_t id) { return *streams_.at(id); }

    // Handles every used entry on every queue; returns how many.
    std::size_t process_interrupts();
    // Waits up to `timeout` until at least one used entry arrived, and handles it; false if none.
    bool wait(Nanos timeout);
    // Events received so far (jack and PCM notifications).
    const std::deque<wire::Event>& events() const { return events_; }
    std::uint64_t device_faults() const { return device_faults_; }

    // Sends one control request, waits for the answer; `response` receives the payload after
    // the status header. Used by PcmStream.
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
    std::vector<std::unique_ptr<PcmStream>> streams_;
    DmaBuffer control_mem_, event_mem_;
    std::uint64_t control_token_ = 0;
    bool control_done_ = false;
    std::uint32_t control_used_ = 0;
    std::deque<wire::Event> events_;
    std::uint64_t device_faults_ = 0;
};

} // namespace vsnd::driver
