// The virtio-snd device model: control requests, the PCM state machine, tx/rx I/O messages and
// the event queue, independent of transport (vhost-user or an in-process ring) and of the audio
// backend. Single-threaded: the owner calls on_kick() when the driver notifies a queue and
// process() whenever next_deadline() passes.
#pragma once

#include "vsnd/timing/clock.hpp"
#include "vsnd/device/audio_backend.hpp"
#include "vsnd/device/pcm_state.hpp"
#include "vsnd/device/topology.hpp"
#include "vsnd/virtq/device_queue.hpp"

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace vsnd::device {


// When a tx message is returned to the driver.
enum class CompletionPolicy {
    Played,   // when its last frame is audible; latency_bytes = what is still not audible (≈ 0)
    Consumed, // when it has been copied to the backend (and the stream runs); latency_bytes =
              // bytes of completed messages not yet audible
};

struct StreamStats {
    PcmState state = PcmState::Initial;
    std::uint64_t messages_completed = 0;
    std::uint64_t bytes_received = 0;   // tx payload accepted, or rx bytes delivered
    std::uint64_t io_errors = 0;        // messages answered IO_ERR
    std::uint64_t xruns = 0;
    std::uint32_t last_latency_bytes = 0;
};

// How completions reach the driver. The defaults change nothing; vsnd-host turns both on.
struct NotifyTuning {
    // Notify again while the driver has not taken a signalled completion this long after the
    // signal (0: never). Needs VIRTIO_RING_F_EVENT_IDX: the driver's used_event is the only sign
    // that a notification arrived. A lost interrupt then costs this much, not the stream.
    Nanos renotify_after = 0;
    // Played policy: complete a tx message this long before its last frame is audible, so that
    // the driver takes it (and its position moves) about when the frame is heard; latency_bytes
    // count what is still not audible at that later instant. A fixed figure, or measured:
    Nanos lead = 0;
    // measure the trip on the tx queue and use its kLeadQuantile over the last kTripSamples as
    // the lead, at most max_lead. The trip ends when the driver queues its next message (the
    // writer woke and wrote: the instant an application reads its position), or, for a driver
    // that does not, when its used_event shows the completion was taken.
    // Measuring also sets the drain lead: the last message queued (a drain's end, or a writer
    // about to run dry) completes earlier still, by the median trip from its signal to the
    // driver's STOP (the writer's trip until kDrainSamplesNeeded STOPs were timed) plus what the
    // median trip from the STOP's reply to the driver's next request on the stream (RELEASE when
    // the application closes after its drain, PREPARE when it plays on) takes beyond `lead`, so
    // that a drain returns when the audio ends; its latency_bytes count the frames still to play,
    // so the position the driver reports stays true (see host/README.md).
    bool measure_lead = false;
    Nanos max_lead = 2'000'000;
};

struct NotifyStats {
    std::uint64_t renotified = 0;     // notifications sent again (see NotifyTuning)
    std::uint64_t trips_measured = 0; // tx notification trips measured, in total
    Nanos trip_median = 0;            // signal -> driver took it (used_event), last kTripSamples
    Nanos writer_trip_median = 0;     // signal -> driver queued its next message, last kTripSamples
    Nanos lead = 0;                   // in use now
    std::uint64_t stop_trips_measured = 0; // last completion -> STOP, in total
    Nanos stop_trip_median = 0;       // of the last kDrainSamples
    std::uint64_t after_stop_trips_measured = 0; // that STOP's reply -> the next request, in total
    Nanos after_stop_trip_median = 0; // of the last kDrainSamples
    Nanos drain_lead = 0;             // in use now, on top of `lead` for the last message queued
};

// One line for a log: the leads in use and the trips behind them (totals since the device was made).
std::string describe(const NotifyStats& ns);

using Notifier = std::function<void(wire::QueueIndex)>;
using Logger = std::function<void(const std::string&)>;

class SoundDevice {
public:
    SoundDevice(Topology topology, AudioBackend& backend, const Clock& clock,
                CompletionPolicy policy = CompletionPolicy::Played);
    ~SoundDevice();
    SoundDevice(const SoundDevice&) = delete;
    SoundDevice& operator=(const SoundDevice&) = delete;

    const Topology& topology() const { return topology_; }
    wire::Config config() const;
    std::uint64_t device_features() const { return 0; } // no VIRTIO_SND_F_CTLS

    // The driver started the device: its four queues and how to interrupt it.
    void attach(std::array<virtq::DeviceQueue*, wire::kQueueCount> queues, Notifier notify);
    // Device reset or transport gone: streams return to their initial state. Pending messages
    // are dropped without completion (their rings no longer exist).
    void reset();
    bool attached() const { return queues_[0] != nullptr; }

    void on_kick(wire::QueueIndex q);
    // Moves audio between pending messages and the backend, completes what is due.
    void process();
    // Next instant process() has work to do, if any.
    std::optional<Nanos> next_deadline();

    void set_jack_connected(std::uint32_t jack_id, bool connected);
    StreamStats stats(std::uint32_t stream_id) const;
    // Log lines left out by the rate limit (see log()), in total.
    std::uint64_t log_lines_suppressed() const { return log_suppressed_total_ + log_suppressed_; }
    void set_logger(Logger log) { log_ = std::move(log); }
    // Before attach() or at any time on the device loop's thread.
    void set_notify_tuning(const NotifyTuning& t);
    NotifyStats notify_stats() const { return notify_stats_; }
    // How backend streams wake the loop that runs this device (handed to every stream at open).
    void set_waker(Waker wake) { waker_ = std::move(wake); }

    // A backend still opening this long after the control queue stopped moving answers PREPARE
    // with IO_ERR (below the Linux driver's 1 s control timeout, so the guest hears the answer;
    // requests queued behind a slow PREPARE share the budget, counted from the stall).
    static constexpr Nanos kOpenTimeout = 750'000'000;
    // Streams due within this much of the earliest are serviced in one wake-up, at the last of
    // their instants: a completion is then at most this late (never early), and a device with many
    // streams wakes at most once per window, whatever their phases.
    static constexpr Nanos kWakeCoalesce = 100'000;
    // Trip measurement: the driver's used_event is looked at every kTripStep after a sampled
    // notification, for at most kTripLimit (a slower trip is not counted: the lead stays low).
    static constexpr Nanos kTripStep = 100'000;
    static constexpr Nanos kTripLimit = 5'000'000;
    static constexpr std::size_t kTripSamples = 32;
    static constexpr double kLeadQuantile = 0.25;
    // A writer that queues its next message later than this after its driver took the completion
    // did not write on the wake-up (it keeps its own schedule): its trip says nothing and is not
    // counted, and the lead falls back to the driver's trip.
    static constexpr Nanos kWriterSlack = 1'000'000;
    // A STOP with completed frames still to play (the lead) stops the backend when they have
    // played; past this long after the STOP it stops whatever the backend's position says.
    static constexpr Nanos kStopPlayOutLimit = 20'000'000;
    // Drain lead (measure_lead): STOPs timed after the last message completed, kept and needed.
    static constexpr std::size_t kDrainSamples = 8;
    static constexpr std::size_t kDrainSamplesNeeded = 3;
    // A request later than this after a drain's STOP reply is the application doing something
    // else first: not counted. And the drain lead's bound, whatever was measured.
    static constexpr Nanos kAfterStopLimit = 8'000'000;
    static constexpr Nanos kMaxDrainLead = 8'000'000;

private:
    struct Stream;
    struct PendingIo;
    struct WokenStreams;
    // A control request whose reply waits, and so does every later one (they are answered in
    // order): a PREPARE whose backend stream is still opening, or a request that would close a
    // stream still playing out what the driver was told is played (see finish_stop()).
    struct DeferredRequest {
        virtq::Chain chain;
        std::uint32_t stream_id;
        Nanos deadline;
        Nanos next_look;   // without a waker the device looks every kOpenPoll
        Nanos stall_began; // when the control queue stopped moving (deadline = this + timeout)
        bool until_stopped = false; // handled again from the start once the stream has stopped
    };
    static constexpr Nanos kOpenPoll = 1'000'000;

    void handle_control(virtq::Chain& chain);
    void answer_control(const virtq::Chain& chain, wire::Status status, std::size_t written);
    void settle_deferred();
    bool finish_stop(Stream& s);
    void fail_prepare(Stream& s);
    void handle_tx(virtq::Chain& chain);
    void handle_rx(virtq::Chain& chain);
    void drain_queue(wire::QueueIndex q);
    void refuse_chain(wire::QueueIndex q, const virtq::ChainFault& fault);

    wire::Status query_info(std::span<const std::uint8_t> req, virtq::ChainWriter& out, std::size_t& written);
    wire::Status pcm_command(wire::Code code, std::span<const std::uint8_t> req, bool& deferred);
    wire::Status jack_remap(std::span<const std::uint8_t> req);

    void touch(Stream& s);
    std::optional<Nanos> stream_deadline(Stream& s);
    void reschedule(Stream& s);
    void service(Stream& s);
    void pump_output(Stream& s);
    void flush_gathered(Stream& s);
    void pump_input(Stream& s);
    void complete_io(Stream& s, wire::QueueIndex q, PendingIo& io, wire::Status status, std::uint32_t latency_bytes);
    void complete_chain(wire::QueueIndex q, const virtq::Chain& chain, wire::Status status,
                        std::uint32_t latency_bytes, std::uint32_t data_bytes);
    void flush_stream(Stream& s);
    void close_backend(Stream& s);
    std::uint64_t audible_bytes(Stream& s, Nanos at);
    void note_notification(unsigned q, Nanos now);
    void watch_notifications(Nanos now);
    void record_trip(std::deque<Nanos>& into, Nanos& median, Nanos trip);
    Nanos drain_lead() const;
    void forget_trips();
    void record_drain_trip(std::deque<Nanos>& into, Nanos& median, std::uint64_t& measured, Nanos trip);
    void queue_event(wire::Code type, std::uint32_t data);
    void deliver_events();
    void push(wire::QueueIndex q, std::uint16_t head, std::uint32_t len);
    void flush_notifications();
    void log(const std::string& msg) const;

    Topology topology_;
    AudioBackend& backend_;
    const Clock& clock_;
    CompletionPolicy policy_;
    std::array<virtq::DeviceQueue*, wire::kQueueCount> queues_{};
    std::array<bool, wire::kQueueCount> pushed_{};
    Notifier notify_;
    Logger log_;
    Waker waker_;
    std::vector<std::unique_ptr<Stream>> streams_;
    std::set<std::pair<Nanos, std::uint32_t>> due_; // (deadline, stream) of every stream that has one
    std::vector<std::uint32_t> touched_list_, servicing_;
    std::shared_ptr<WokenStreams> woken_; // shared with the wakers handed to backend streams
    // Per direction (output, input): streams started, and those of them that need the driver's
    // kicks (see reschedule()). While none does, the device wakes by itself before any of them
    // needs a new message, so kicks on that I/O queue are switched off and the ring is read at
    // each wake-up instead (a wake-up per kick would double the device's wake-ups).
    std::array<unsigned, 2> started_{}, needs_kicks_{};
    std::array<bool, wire::kQueueCount> kicks_on_{true, true, true, true};
    void update_io_kicks();
    std::vector<bool> jack_connected_;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> jack_remap_;
    std::optional<DeferredRequest> deferred_;
    std::array<bool, wire::kQueueCount> rescan_{}; // a drain pass stopped at the queue size
    static constexpr std::size_t kGatherBytes = 1024;
    std::array<std::uint8_t, 4 * kGatherBytes> gather_{};
    std::size_t gathered_ = 0;
    static constexpr double kLogBurst = 20;
    static constexpr Nanos kLogInterval = 100'000'000; // then 10 lines per second
    mutable double log_tokens_ = kLogBurst;
    mutable Nanos log_last_ = 0;
    mutable std::uint64_t log_suppressed_ = 0, log_suppressed_total_ = 0;
    std::optional<Nanos> stall_began_; // set while serving requests that waited behind a PREPARE
    std::deque<wire::Event> events_;
    std::uint64_t events_dropped_ = 0;
    NotifyTuning tuning_;
    NotifyStats notify_stats_;
    Nanos lead_ = 0; // in use: tuning_.lead, or the measured one
    // A notification sent and not yet taken by the driver (renotify_after).
    struct Unanswered {
        bool active = false;
        std::uint16_t used = 0;
        Nanos signalled = 0;
    };
    std::array<Unanswered, wire::kQueueCount> unanswered_{};
    // The tx notification being timed (measure_lead): taken between last_unseen and the next look.
    struct TripProbe {
        bool active = false;
        bool taken = false; // the driver took it; now waiting for its next message
        std::uint16_t used = 0, avail = 0;
        Nanos signalled = 0, last_unseen = 0, next = 0, driver_trip = 0;
    };
    TripProbe probe_;
    std::deque<Nanos> trips_, writer_trips_, stop_trips_, after_stop_trips_;
    std::uint64_t tx_notifications_ = 0;
};

} // namespace vsnd::device
