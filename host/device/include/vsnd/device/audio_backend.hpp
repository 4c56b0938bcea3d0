// The interface between the device model and whatever makes sound. A backend stream takes
// playback bytes (or gives capture bytes) and, above all, reports where playback really is:
// which stream frame is audible (or was captured) at which instant. The device's completion
// timing and latency_bytes are derived from that position, never from buffer hand-off.
#pragma once

#include "vsnd/audio/sample_spec.hpp"
#include "vsnd/device/topology.hpp"
#include "vsnd/timing/clock.hpp"
#include "vsnd/expected.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace vsnd::device {

struct StreamFormat {
    wire::Direction direction = wire::Direction::Output;
    wire::PcmFormat format = wire::PcmFormat::S16;
    std::uint32_t rate = 48000;
    std::uint8_t channels = 2;
    std::uint32_t period_bytes = 0; // the guest's period and ring, for sizing host buffers
    std::uint32_t buffer_bytes = 0;

    audio::SampleSpec spec() const { return {format, rate, channels}; }
    std::uint32_t frame_bytes() const { return spec().frame_bytes(); }
};

// `frames` stream frames are audible (output) or captured (input) at time `when`. `when` may be
// in the future (frames already sent to a DAC with a known latency).
struct Position {
    std::uint64_t frames = 0;
    Nanos when = 0;
    bool running = false; // frames advance from `when` on, at the nominal rate × rate_ratio
    // The backend clock's rate relative to nominal (1 + drift), when the backend knows it; the
    // device extrapolates with it between reports. Values outside ±10 % are taken as 1.
    double rate_ratio = 1.0;
};

// Wakes the device loop: the device calls process() soon after. Thread-safe, never blocks.
using Waker = std::function<void()>;

// Whether a stream's open has finished. A backend whose open blocks (a device node, a file)
// returns from AudioBackend::open() at once and finishes on its own thread: the stream is Opening
// until then and calls the waker when it becomes Ready or Failed.
struct OpenState {
    enum Kind { Opening, Ready, Failed } kind = Ready;
    std::string error; // Failed: why (a log line; the guest gets IO_ERR)
};

// Every method is called on the device loop's thread and must not block (a backend with blocking
// I/O does it on its own thread). A stream fed by its own thread calls the waker given to
// set_waker() when room or data appears or its state changes, so the loop never polls it.
class BackendStream {
public:
    virtual ~BackendStream() = default; // may be Opening still: the backend finishes the open and closes

    // Right after open, before any other call. Backends paced by the device's own clock
    // (next_wakeup()) may ignore it.
    virtual void set_waker(Waker) {}
    // The device answers PREPARE once this is Ready (OK) or Failed (IO_ERR), or IO_ERR when it is
    // still Opening after SoundDevice's open timeout; until then it calls no other method but the
    // destructor. Once Ready it stays Ready (a later failure is failed()).
    virtual OpenState open_state() { return {}; }

    virtual void start() = 0;
    virtual void stop() = 0; // pause: buffered frames are kept for the next start

    // Output side. The backend takes any number of bytes up to writable_bytes().
    virtual std::size_t writable_bytes() = 0;
    virtual void write(std::span<const std::uint8_t> bytes) = 0;
    // Input side. Bytes captured and not yet read.
    virtual std::size_t readable_bytes() = 0;
    virtual void read(std::span<std::uint8_t> out) = 0;

    // Where the stream really is (see Position). Frames counted in stream frames: silence a
    // backend inserts on underrun does not count.
    virtual Position position() = 0;
    // When the backend will next have something to do for the device (room, data) by its own
    // clock, so an event loop knows when to look again; nullopt when idle or when it wakes the
    // loop itself (set_waker).
    virtual std::optional<Nanos> next_wakeup() = 0;
    // Underruns (output) or overruns (input) since open; each one is reported once.
    virtual std::uint64_t xruns() const = 0;
    // Device failed; the device answers IO_ERR from then on.
    virtual bool failed() const { return false; }
};

// Device loop thread; no method blocks. open() checks what it can at once (an error string is
// IO_ERR at PREPARE) and leaves blocking work to the stream's own thread (OpenState).
class AudioBackend {
public:
    virtual ~AudioBackend() = default;
    virtual std::string name() const = 0;
    virtual Capabilities capabilities() const { return {}; }
    // Called at PREPARE; an error string becomes IO_ERR plus a log line.
    virtual Expected<std::unique_ptr<BackendStream>, std::string> open(std::uint32_t stream_id,
                                                                       const StreamFormat& fmt) = 0;
};

} // namespace vsnd::device
