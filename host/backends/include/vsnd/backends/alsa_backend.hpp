// The ALSA backend: playback and capture on a named ALSA PCM ("default", "hw:0,0", ...), in the
// exact format the guest set (no resampling, no conversion), with positions taken from
// snd_pcm_status (hw pointer, delay and the CLOCK_MONOTONIC htstamp) so the device can complete
// messages when their last frame is audible.
//
// Threads. Each open stream owns one audio thread that does all ALSA I/O. After open it never
// allocates and never waits for the device thread: the device thread (the event loop calling the
// BackendStream methods) hands bytes over through a preallocated single-producer/single-consumer
// byte ring and reads the latest position from a seqlock-published snapshot. start()/stop() post
// a command to the audio thread (an eventfd wakes it) and return at once; from a stop() on the
// position holds where the device saw it until the audio thread has paused the PCM (it plays at
// least that far first). The audio thread wakes the device loop (set_waker) whenever room, data,
// a position, an xrun, a failure or an acknowledged command appear, so the loop never polls it.
// Closing a stream only hands it to its audio thread, which carries out a pending stop, then drops
// and closes the PCM; the backend joins the thread later, once it has finished. Opening too runs on the audio thread (snd_pcm_open, hw/sw params,
// prepare; after any stream still closing has let go of its PCM): open() only checks the format,
// creates the eventfd and starts the thread, and the stream is Opening (device::OpenState) until
// the PCM is ready or has failed. The backend must outlive its streams.
//
// Sizing. The host period follows the guest's (never above it, at least AlsaOptions::min_period)
// and playback keeps at most `periods` host periods queued in ALSA plus one in the ring, together
// at most `max_buffer_fraction` of the guest's ring: with completion on playback the guest can
// only have its own ring in flight, so host buffering must leave it room. (The ALSA buffer itself
// is larger, ≥ 100 ms; only `fill_frames` of it are ever used.) Capture reads every host period
// into a ring that can hold the guest's whole ring.
//
// Position. Playback: frames written to ALSA minus snd_pcm_status's delay, stamped with its
// CLOCK_MONOTONIC htstamp (bounded below by the trigger time after a start/resume); capture:
// frames delivered plus ALSA's avail. The hw pointer's steps are smoothed away (smooth_position,
// see the .cpp). Extrapolation never passes the frames handed to ALSA. Before a pause takes
// effect the audio thread lets the hardware reach the position it already published (at most
// two host periods), so no frame the device completed as audible is left unplayed.
//
// Start. Playback pre-fills ALSA from PREPARE on (the device copies the guest's pre-fill) and
// starts the PCM on start() once the host queue is full, or once the device has brought nothing
// new for `start_grace` (the end of a short sound before a drain, a guest that pre-fills less).
// After an underrun it prepares the PCM again and restarts the same way; every underrun
// (overrun for capture) counts once in xruns(). The ALSA buffer itself is roomy (≥ 100 ms) and
// kept silent after our last frame, so a late wake-up plays silence, never stale frames.
//
// Stop = pause. With a PCM that can pause, stop() is snd_pcm_pause(1) and start() resumes it:
// nothing is lost or repeated. Otherwise (or with use_pause = false) stop() reads the position,
// drops the PCM and keeps our copy of every frame not yet played (the ring releases bytes only
// once they are audible), which is written again on start(); frames played between that last
// position and the drop (microseconds) can be heard twice.
//
// Failure. An error that prepare/resume cannot fix (-ENODEV after unplug, -EBADFD, -EIO, ...) sets
// failed() and is logged once from the device thread; open() wraps every stream in a
// ClockFallbackStream, which from then on is a clock-paced null stream (playback frames are
// discarded at the nominal rate, capture delivers silence), so pending messages still complete and
// the guest never hangs; nothing throws, nothing exits.
#pragma once

#include "vsnd/timing/clock.hpp"
#include "vsnd/device/audio_backend.hpp"
#include "vsnd/device/backend_registry.hpp"
#include "vsnd/spsc_byte_ring.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

namespace vsnd::backends {

struct AlsaOptions {
    unsigned periods = 3;                 // host periods queued in ALSA (playback)
    Nanos min_period = 2'000'000;         // the host period never goes below this
    double max_buffer_fraction = 0.5;     // playback host buffering ≤ this share of the guest ring
    Nanos start_grace = 0;                // no new data for this long: start anyway; 0 = one host period
    bool use_pause = true;                // snd_pcm_pause when the PCM can; false: drop and keep
    bool smooth_position = true;          // undo hw pointer granularity (see alsa_backend.cpp)
    int rt_priority = 0;                  // > 0: SCHED_FIFO priority of the audio threads
    std::string capture_device;           // capture PCM if different from the playback one
    std::map<std::uint32_t, std::string> stream_devices; // PCM of one stream, overriding both
    // Default: stderr. Called from the device thread and from audio threads (the geometry line at
    // open; a failure or xrun nobody asked about yet at close): must be thread-safe.
    std::function<void(const std::string&)> log;
};

// Host buffer geometry chosen at open (exposed for tests and logs).
struct AlsaGeometry {
    std::uint32_t period_frames = 0;      // host period
    std::uint32_t buffer_frames = 0;      // ALSA buffer
    std::uint32_t fill_frames = 0;        // playback: frames kept queued in ALSA at most
    std::uint32_t ring_frames = 0;        // SPSC ring between device and audio thread
    std::uint32_t start_frames = 0;       // playback start threshold
    bool pause = false;                   // stop() uses snd_pcm_pause
};

class AlsaBackend final : public device::AudioBackend {
public:
    // `clock` must be CLOCK_MONOTONIC time (MonotonicClock): ALSA timestamps are compared to it.
    AlsaBackend(const Clock& clock, std::string device_name = "default", AlsaOptions opts = {});
    ~AlsaBackend() override;

    std::string name() const override { return "alsa"; }
    // What the PCMs accept without resampling (formats, rates, channels per direction), probed
    // with snd_pcm_hw_params_test_*; a PCM that cannot be opened makes its direction unavailable.
    // Per-stream devices are not probed: they answer at PREPARE. Start-up thread; opens the PCMs.
    device::Capabilities capabilities() const override;
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t stream_id,
                                                                       const device::StreamFormat& fmt) override;
    const std::string& device_name() const { return device_; }

    // Closed streams whose audio thread is still pausing, dropping and closing the PCM (joined as
    // they finish, before their PCM opens again, and at the latest when the backend goes).
    struct RetiredStreams;

private:
    const Clock& clock_;
    std::string device_;
    AlsaOptions opts_;
    std::unique_ptr<RetiredStreams> retired_;
};

// "alsa" with options device= (per stream too: 1:device=hw:1) and capture-device=
// (vsnd-backend-alsa). `log` receives geometry, xrun and failure lines.
void register_alsa_backend(device::BackendRegistry& registry, std::function<void(const std::string&)> log = {});

// The geometry open() would choose for a guest format, given what the PCM accepts (pure
// arithmetic, no ALSA calls; open() then asks ALSA for the nearest sizes).
AlsaGeometry plan_alsa_geometry(const device::StreamFormat& fmt, const AlsaOptions& opts);

namespace alsa_detail {

using SpscByteRing = vsnd::SpscByteRing; // the project's one byte ring (vsnd-base)


// A single-writer snapshot of a stream position, read without locks (seqlock): the reader
// retries while the writer is in the middle of an update.
struct PositionSnapshot {
    std::uint64_t frames = 0;  // stream frames audible (played) / captured at `when`
    Nanos when = 0;
    std::uint64_t limit = 0;   // playback: frames handed to ALSA; extrapolation stops there
    Nanos updated = 0;         // when the audio thread took this status
    bool running = false;
};

class SeqlockPosition {
public:
    void store(const PositionSnapshot& s); // one writer only
    PositionSnapshot load() const;

private:
    std::atomic<std::uint32_t> seq_{0};
    std::atomic<std::uint64_t> frames_{0}, limit_{0};
    std::atomic<Nanos> when_{0}, updated_{0};
    std::atomic<bool> running_{false};
};

} // namespace alsa_detail
} // namespace vsnd::backends
