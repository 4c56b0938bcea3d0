#include "vsnd/device/sound_device.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <array>
#include <atomic>
#include <limits>

namespace vsnd::device {

using wire::Code;
using wire::Status;

namespace {

constexpr std::size_t kStatusBytes = wire::wire_size<wire::PcmStatus>;
constexpr std::size_t kXferBytes = wire::wire_size<wire::PcmXfer>;
constexpr std::size_t kMaxControlRequest = 64;   // largest request we understand is 24 bytes
constexpr std::size_t kMaxPendingEvents = 256;
constexpr std::uint32_t kMaxBufferBytes = 64u << 20;

bool is_ctl(Code c) { return c >= Code::CtlInfo && c <= Code::CtlTlvCommand; }

// Division rounding toward −∞ / +∞ (C++ truncates toward 0); positions may be stamped on either
// side of now, so both signs occur.
__int128 div_floor(__int128 a, __int128 b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__int128 div_ceil(__int128 a, __int128 b) { return -div_floor(-a, b); }

// The stream's rate as the backend's clock runs it, in micro-hertz: extrapolation and deadlines
// follow the backend's measured drift, not the nominal rate.
__int128 rate_micro_hz(const Position& pos, std::uint32_t nominal) {
    const double r = pos.rate_ratio;
    const double ratio = (r > 0.9 && r < 1.1) ? r : 1.0; // also NaN
    return static_cast<__int128>(std::llround(static_cast<double>(nominal) * ratio * 1e6));
}

constexpr __int128 kMicroHzSecond = __int128{kNanosPerSecond} * 1'000'000;

std::uint32_t clamp_u32(std::uint64_t v) {
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(v, std::numeric_limits<std::uint32_t>::max()));
}

} // namespace

struct SoundDevice::PendingIo {
    virtq::Chain chain;
    std::uint64_t start;   // stream byte offset of its first payload byte
    std::uint32_t payload; // tx: payload bytes; rx: capacity for captured bytes
    std::uint32_t done = 0;// tx: bytes handed to the backend; rx: bytes captured into it
};

struct SoundDevice::Stream {
    std::uint32_t id;
    StreamConfig cfg;
    PcmState state = PcmState::Initial;
    std::optional<wire::PcmSetParams> params;
    StreamFormat format;
    std::unique_ptr<BackendStream> backend;
    std::deque<PendingIo> pending;
    std::uint64_t queued = 0;  // bytes of all messages accepted since PREPARE
    std::uint64_t moved = 0;   // bytes handed to (tx) or taken from (rx) the backend
    bool opening = false;      // `backend` is still opening; its PREPARE is not answered yet
    std::uint64_t completed = 0; // tx: bytes of the messages completed since PREPARE (played, to the driver)
    // tx: STOP was answered while completed bytes were still to be heard (the lead): the backend
    // runs on, taking nothing new, until they have played (finish_stop()), at the latest then.
    std::optional<Nanos> stopping;
    // tx: when the device completed the last message the driver had queued, while started (a
    // drain may be ending: a STOP that follows times the drain lead's trip).
    std::optional<Nanos> ran_dry_at;
    // tx: when that drain's STOP was answered; the driver's next request on the stream (the
    // application back from its drain: RELEASE at close, or PREPARE) times the path after it.
    std::optional<Nanos> drain_stop_answered;
    StreamStats stats;
    std::optional<Nanos> due;  // its entry in due_: when it next has work (see reschedule())
    bool touched = false;      // listed in touched_
    bool counted_started = false, counted_needs_kicks = false; // in started_ / needs_kicks_
};

// Streams whose backend thread woke the device, one bit each (any thread sets, the device loop
// takes): the loop then services those streams only.
struct SoundDevice::WokenStreams {
    explicit WokenStreams(std::size_t streams) : words((streams + 63) / 64) {}
    void mark(std::uint32_t id) { words[id / 64].fetch_or(std::uint64_t{1} << (id % 64), std::memory_order_acq_rel); }
    std::vector<std::atomic<std::uint64_t>> words;
};

SoundDevice::SoundDevice(Topology topology, AudioBackend& backend, const Clock& clock, CompletionPolicy policy)
    : topology_(std::move(topology)), backend_(backend), clock_(clock), policy_(policy) {
    for (std::uint32_t i = 0; i < topology_.streams.size(); ++i) {
        auto s = std::make_unique<Stream>();
        s->id = i;
        s->cfg = topology_.streams[i];
        streams_.push_back(std::move(s));
    }
    woken_ = std::make_shared<WokenStreams>(streams_.size());
    touched_list_.reserve(streams_.size());
    servicing_.reserve(streams_.size());
    for (const auto& j : topology_.jacks) jack_connected_.push_back(j.connected);
    jack_remap_.assign(topology_.jacks.size(), {0, 0});
}

SoundDevice::~SoundDevice() = default;

wire::Config SoundDevice::config() const {
    return {static_cast<std::uint32_t>(topology_.jacks.size()), static_cast<std::uint32_t>(topology_.streams.size()),
            static_cast<std::uint32_t>(topology_.chmaps.size()), 0};
}

// Every line the device logs can be driven by the guest: at most kLogBurst lines, then one per
// kLogInterval, and a count of what was left out in the next line that passes.
void SoundDevice::log(const std::string& msg) const {
    if (!log_) return;
    const Nanos now = clock_.now();
    if (now > log_last_) { // a clock that stepped back refills nothing
        log_tokens_ = std::min<double>(kLogBurst, log_tokens_ + static_cast<double>(now - log_last_) / kLogInterval);
        log_last_ = now;
    }
    if (log_tokens_ < 1.0) {
        ++log_suppressed_;
        return;
    }
    log_tokens_ -= 1.0;
    if (log_suppressed_) {
        log_(fmt::format("({} lines left out: more than {} in a burst)", log_suppressed_, kLogBurst));
        log_suppressed_total_ += log_suppressed_;
        log_suppressed_ = 0;
    }
    log_(msg);
}

void SoundDevice::attach(std::array<virtq::DeviceQueue*, wire::kQueueCount> queues, Notifier notify) {
    queues_ = queues;
    notify_ = std::move(notify);
    pushed_ = {};
    unanswered_ = {};
    probe_ = {};
    // A new queue asks for kicks, whatever an earlier device start left in the ring's flags (a
    // NO_NOTIFY from a run that had them off would otherwise stay and no kick would come).
    for (unsigned q = 0; q < wire::kQueueCount; ++q) queues_[q]->set_kicks_enabled(true);
    kicks_on_ = {true, true, true, true};
}

void SoundDevice::reset() {
    deferred_.reset();
    rescan_ = {};
    due_.clear();
    touched_list_.clear();
    for (auto& w : woken_->words) w.store(0, std::memory_order_relaxed);
    started_ = {};
    needs_kicks_ = {};
    for (auto& s : streams_) {
        s->due.reset();
        s->touched = false;
        s->counted_started = s->counted_needs_kicks = false;
        s->pending.clear();
        s->backend.reset();
        s->opening = false;
        s->state = PcmState::Initial;
        s->params.reset();
        s->queued = s->moved = s->completed = 0;
        s->stopping.reset();
        s->ran_dry_at.reset();
        s->drain_stop_answered.reset();
        s->stats.state = PcmState::Initial;
    }
    events_.clear();
    queues_ = {};
    notify_ = nullptr;
    unanswered_ = {};
    // What one guest's timing taught the device does not carry over to the next driver (a guest
    // that waits before every request would hold the next one's drain lead at its bound).
    forget_trips();
}

// ---- queues ------------------------------------------------------------------------------------

void SoundDevice::push(wire::QueueIndex q, std::uint16_t head, std::uint32_t len) {
    queues_[static_cast<unsigned>(q)]->push(head, len);
    pushed_[static_cast<unsigned>(q)] = true;
}

void SoundDevice::flush_notifications() {
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        if (!pushed_[q]) continue;
        pushed_[q] = false;
        if (queues_[q]->should_notify() && notify_) {
            notify_(static_cast<wire::QueueIndex>(q));
            note_notification(q, clock_.now());
        }
    }
}

void SoundDevice::set_notify_tuning(const NotifyTuning& t) {
    tuning_ = t;
    forget_trips();
}

// Back to the configured lead, every timed trip dropped (the totals in notify_stats_ stay).
void SoundDevice::forget_trips() {
    lead_ = std::clamp<Nanos>(tuning_.lead, 0, tuning_.max_lead);
    notify_stats_.lead = lead_;
    trips_.clear();
    writer_trips_.clear();
    stop_trips_.clear();
    after_stop_trips_.clear();
    notify_stats_.drain_lead = drain_lead();
    probe_ = {};
}

std::string describe(const NotifyStats& ns) {
    return fmt::format("lead {:.0f} us (tx trip median: to the driver {:.0f} us, to its next message {:.0f} us; {} measured), "
                       "drain lead {:.0f} us (last completion -> STOP median {:.0f} us, {} measured; STOP reply -> next "
                       "request median {:.0f} us, {} measured), {} sent again",
                       ns.lead / 1e3, ns.trip_median / 1e3, ns.writer_trip_median / 1e3, ns.trips_measured,
                       ns.drain_lead / 1e3, ns.stop_trip_median / 1e3, ns.stop_trips_measured,
                       ns.after_stop_trip_median / 1e3, ns.after_stop_trips_measured, ns.renotified);
}

// On top of lead_, for the last message the driver has queued. A drain returns to the application
// after the STOP's trip from that completion, the reply's trip back and the driver's path from
// the reply to the application; lead_ already stands for one trip back to the guest, so the
// completion goes out earlier by the STOP trip and what the path after the reply takes beyond
// lead_ (both measured; until then the writer's trip, the same path: an interrupt, then a request).
Nanos SoundDevice::drain_lead() const {
    if (!tuning_.measure_lead || policy_ != CompletionPolicy::Played) return 0;
    if (stop_trips_.size() < kDrainSamplesNeeded) return lead_;
    Nanos beyond = 0;
    if (after_stop_trips_.size() >= kDrainSamplesNeeded)
        beyond = std::max<Nanos>(0, notify_stats_.after_stop_trip_median - lead_);
    return std::min(notify_stats_.stop_trip_median + beyond, kMaxDrainLead);
}

// One timed part of a drain into its last kDrainSamples, their median and the drain lead: a STOP
// `trip` after the last message queued completed (stop_trips_), or the driver's next request
// `trip` after a drain's STOP was answered (after_stop_trips_).
void SoundDevice::record_drain_trip(std::deque<Nanos>& into, Nanos& median, std::uint64_t& measured, Nanos trip) {
    into.push_back(std::max<Nanos>(trip, 0));
    if (into.size() > kDrainSamples) into.pop_front();
    ++measured;
    std::vector<Nanos> sorted(into.begin(), into.end());
    std::sort(sorted.begin(), sorted.end());
    median = sorted[sorted.size() / 2];
    notify_stats_.drain_lead = drain_lead();
}

// A notification just went out on queue q: watch that the driver takes it, and time its trip.
void SoundDevice::note_notification(unsigned q, Nanos now) {
    const std::uint16_t used = queues_[q]->used_index();
    if (!queues_[q]->driver_took(used)) return; // no event idx: nothing to watch
    if (tuning_.renotify_after > 0) unanswered_[q] = {true, used, now};
    if (!tuning_.measure_lead || q != static_cast<unsigned>(wire::QueueIndex::Tx) || probe_.active) return;
    // Every notification until there are enough samples, then one in four.
    if (writer_trips_.size() + trips_.size() >= kTripSamples && tx_notifications_++ % 4 != 0) return;
    probe_ = {true, false, used, queues_[q]->avail_index(), now, now, now + kTripStep};
}

void SoundDevice::record_trip(std::deque<Nanos>& into, Nanos& median, Nanos trip) {
    into.push_back(std::max<Nanos>(trip, 0));
    if (into.size() > kTripSamples) into.pop_front();
    if (&into == &trips_) ++notify_stats_.trips_measured;
    std::vector<Nanos> sorted(into.begin(), into.end());
    std::sort(sorted.begin(), sorted.end());
    median = sorted[sorted.size() / 2];
    // The writer's trip when the driver shows it, else the driver's. Too few samples say nothing
    // yet; a low quantile keeps the position from running ahead when a trip is quicker than usual.
    const std::deque<Nanos>& use = writer_trips_.size() >= 8 ? writer_trips_ : trips_;
    if (&into != &use || sorted.size() < 8) return;
    const auto at = static_cast<std::size_t>(kLeadQuantile * static_cast<double>(sorted.size() - 1));
    lead_ = std::min(sorted[at], tuning_.max_lead);
    notify_stats_.lead = lead_;
    notify_stats_.drain_lead = drain_lead();
}

// Called at every wake-up: notifications the driver took, the trip being timed, and the ones it
// did not take in time, sent again (at most once per renotify_after and queue).
void SoundDevice::watch_notifications(Nanos now) {
    if (probe_.active && now >= probe_.next) {
        virtq::DeviceQueue& tx = *queues_[static_cast<unsigned>(wire::QueueIndex::Tx)];
        const std::optional<bool> took = tx.driver_took(probe_.used);
        // Seen between the last look that did not see it and this one: the midpoint.
        const Nanos seen = (probe_.last_unseen + now) / 2 - probe_.signalled;
        if (!probe_.taken && took && *took) {
            record_trip(trips_, notify_stats_.trip_median, seen);
            probe_.taken = true;
            probe_.driver_trip = seen;
        }
        if (probe_.taken && tx.avail_index() != probe_.avail) {
            if (seen - probe_.driver_trip <= kWriterSlack) record_trip(writer_trips_, notify_stats_.writer_trip_median, seen);
            probe_.active = false;
        } else if (!took || now - probe_.signalled >= kTripLimit ||
                   (probe_.taken && now - probe_.signalled - probe_.driver_trip > kWriterSlack)) {
            probe_.active = false;
        } else {
            probe_.last_unseen = now;
            probe_.next = now + kTripStep;
        }
    }
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        Unanswered& u = unanswered_[q];
        if (!u.active) continue;
        const std::optional<bool> took = queues_[q]->driver_took(u.used);
        if (!took || *took) {
            u.active = false;
        } else if (now - u.signalled >= tuning_.renotify_after && notify_) {
            notify_(static_cast<wire::QueueIndex>(q));
            u.signalled = now;
            ++notify_stats_.renotified;
            log(fmt::format("queue {}: the driver has not taken used entry {} {} ms after its notification: notified again",
                            static_cast<unsigned>(q), u.used, tuning_.renotify_after / 1'000'000));
        }
    }
}

void SoundDevice::refuse_chain(wire::QueueIndex q, const virtq::ChainFault& fault) {
    log(fmt::format("queue {}: malformed descriptor chain (head {}): {}", static_cast<unsigned>(q), fault.head,
                    virtq::describe(fault.error)));
    if (fault.head_valid) push(q, fault.head, 0);
}

void SoundDevice::on_kick(wire::QueueIndex q) {
    if (!attached()) return;
    if (q == wire::QueueIndex::Event)
        deliver_events();
    else
        drain_queue(q);
    process();
}

void SoundDevice::drain_queue(wire::QueueIndex q) {
    auto* queue = queues_[static_cast<unsigned>(q)];
    const bool control = q == wire::QueueIndex::Control;
    const bool was_broken = queue->broken();
    // At most one queue's worth of chains per pass: a ring the driver keeps refilling (or one
    // whose used ring aliases its avail ring) cannot keep the device loop here; the rest waits
    // for the next pass (process(), at once).
    rescan_[static_cast<unsigned>(q)] = false;
    for (unsigned n = 0; !(control && deferred_); ++n) {
        if (n == queue->size()) {
            rescan_[static_cast<unsigned>(q)] = queue->has_available();
            break;
        }
        auto r = queue->pop();
        if (!r) break;
        if (!*r) {
            refuse_chain(q, r->error());
            continue;
        }
        auto& chain = r->value();
        switch (q) {
        case wire::QueueIndex::Control: handle_control(chain); break;
        case wire::QueueIndex::Tx: handle_tx(chain); break;
        case wire::QueueIndex::Rx: handle_rx(chain); break;
        case wire::QueueIndex::Event: break;
        }
    }
    if (queue->broken() && !was_broken)
        log(fmt::format("queue {}: {}; queue stopped", static_cast<unsigned>(q), queue->broken_reason()));
}

// ---- control queue -----------------------------------------------------------------------------

void SoundDevice::handle_control(virtq::Chain& chain) {
    if (chain.writable_bytes < wire::wire_size<wire::StatusHeader>) {
        log("control: request without room for a response; returned unanswered");
        push(wire::QueueIndex::Control, chain.head, 0);
        return;
    }
    virtq::ChainWriter out(chain);
    std::size_t written = wire::wire_size<wire::StatusHeader>;
    Status status = Status::BadMsg;

    std::array<std::uint8_t, kMaxControlRequest> buf{};
    virtq::ChainReader in(chain);
    const std::size_t req_len = in.remaining();
    in.read(std::span(buf).first(std::min(req_len, buf.size())));
    auto code = wire::peek_code(std::span(buf).first(std::min(req_len, buf.size())));
    if (!code) {
        log("control: request shorter than its header");
    } else if (is_ctl(*code)) {
        status = Status::NotSupp; // VIRTIO_SND_F_CTLS is not offered
    } else if (req_len > buf.size()) {
        log(fmt::format("control: {} request of {} bytes is oversized", wire::name(*code), req_len));
    } else {
        const auto req = std::span<const std::uint8_t>(buf).first(req_len);
        switch (*code) {
        case Code::JackInfo:
        case Code::PcmInfo:
        case Code::ChmapInfo: status = query_info(req, out, written); break;
        case Code::JackRemap: status = jack_remap(req); break;
        case Code::PcmSetParams:
        case Code::PcmPrepare:
        case Code::PcmRelease:
        case Code::PcmStart:
        case Code::PcmStop: {
            bool deferred = false;
            status = pcm_command(*code, req, deferred);
            if (deferred) {
                deferred_->chain = std::move(chain);
                return;
            }
            break;
        }
        default:
            log(fmt::format("control: unknown request code {:#x}", static_cast<std::uint32_t>(*code)));
            status = Status::NotSupp;
        }
    }
    answer_control(chain, status, written);
}

void SoundDevice::answer_control(const virtq::Chain& chain, Status status, std::size_t written) {
    if (status != Status::Ok) written = wire::wire_size<wire::StatusHeader>;
    virtq::ChainWriter(chain).write_at(0, wire::encode(wire::StatusHeader{status}));
    push(wire::QueueIndex::Control, chain.head, static_cast<std::uint32_t>(written));
}

// Device loop, from process(): answers a PREPARE whose backend has finished opening (or failed,
// or timed out), or handles again a request that waited for its stream to stop; then serves the
// control requests that waited behind it.
void SoundDevice::settle_deferred() {
    if (!deferred_) return;
    Stream& s = *streams_[deferred_->stream_id];
    if (deferred_->until_stopped) {
        if (s.stopping && !finish_stop(s)) return;
        DeferredRequest again = std::move(*deferred_);
        deferred_.reset();
        handle_control(again.chain); // may defer once more: a PREPARE whose backend opens slowly
    } else {
        const OpenState st = s.backend->open_state();
        Status status = Status::Ok;
        if (st.kind == OpenState::Opening && clock_.now() < deferred_->deadline) {
            deferred_->next_look = clock_.now() + kOpenPoll;
            return;
        }
        if (st.kind == OpenState::Ready) {
            s.state = PcmState::Prepared;
            s.stats.state = s.state;
        } else {
            log(fmt::format("stream {}: backend {} cannot open: {}", s.id, backend_.name(),
                            st.kind == OpenState::Failed ? st.error
                                                         : fmt::format("still opening after {} ms", kOpenTimeout / 1'000'000)));
            s.backend.reset();
            fail_prepare(s);
            status = Status::IoErr;
        }
        s.opening = false;
        touch(s);
        const DeferredRequest done = std::move(*deferred_);
        deferred_.reset();
        answer_control(done.chain, status, wire::wire_size<wire::StatusHeader>);
        // The requests queued behind it have waited too: a PREPARE among them gets only what is
        // left of the open timeout, counted from when the queue stalled (the guest's clock runs
        // for them).
        stall_began_ = done.stall_began;
    }
    if (deferred_) return;
    drain_queue(wire::QueueIndex::Control);
    stall_began_.reset();
}

// Device loop: stops the backend of a stream that answered STOP early, once the frames the
// driver has seen completed are audible (or the backend no longer plays, or the
// limit has passed). Says whether the stream is stopped now.
bool SoundDevice::finish_stop(Stream& s) {
    if (!s.stopping) return true;
    const Position pos = s.backend->position();
    if (pos.running && clock_.now() < *s.stopping + kStopPlayOutLimit &&
        audible_bytes(s, clock_.now()) < s.completed)
        return false;
    s.stopping.reset();
    s.backend->stop();
    return true;
}

// A PREPARE that failed leaves the stream without a backend: back to "parameters set", so that
// START (or anything but SET_PARAMS, PREPARE) is refused, as the spec's state machine wants.
void SoundDevice::fail_prepare(Stream& s) {
    if (s.state != PcmState::Initial && s.state != PcmState::Released) s.state = PcmState::ParamsSet;
    s.stats.state = s.state;
}

Status SoundDevice::query_info(std::span<const std::uint8_t> req, virtq::ChainWriter& out, std::size_t& written) {
    auto q = wire::decode<wire::QueryInfo>(req);
    if (!q) {
        log(fmt::format("control: query: {}", wire::describe(q.error())));
        return Status::BadMsg;
    }
    std::size_t total = 0, item = 0;
    switch (q->code) {
    case Code::JackInfo: total = topology_.jacks.size(); item = wire::wire_size<wire::JackInfo>; break;
    case Code::PcmInfo: total = topology_.streams.size(); item = wire::wire_size<wire::PcmInfo>; break;
    default: total = topology_.chmaps.size(); item = wire::wire_size<wire::ChmapInfo>; break;
    }
    if (q->size < item || q->start_id > total || q->count > total - q->start_id) {
        log(fmt::format("control: {} start {} count {} size {} outside 0..{} items of {} bytes", wire::name(q->code),
                        q->start_id, q->count, q->size, total, item));
        return Status::BadMsg;
    }
    const std::uint64_t need = wire::wire_size<wire::StatusHeader> + std::uint64_t{q->count} * q->size;
    if (need > out.capacity()) {
        log(fmt::format("control: {} response needs {} bytes, driver gave {}", wire::name(q->code), need, out.capacity()));
        return Status::BadMsg;
    }
    for (std::uint32_t i = 0; i < q->count; ++i) {
        const std::size_t at = wire::wire_size<wire::StatusHeader> + std::size_t{i} * q->size;
        const std::uint32_t id = q->start_id + i;
        // An item larger than ours (a newer driver) gets our structure and zeros after it: one
        // pass over the descriptors per item, however many pieces the guest cut them into.
        out.visit_at(at + item, q->size - item, [](std::span<std::uint8_t> piece) { std::fill(piece.begin(), piece.end(), 0); });
        if (q->code == Code::JackInfo) {
            const auto& j = topology_.jacks[id];
            out.write_at(at, wire::encode(wire::JackInfo{j.hda_fn_nid, j.remappable ? wire::kJackFeatureRemap : 0u,
                                                         j.hda_reg_defconf, j.hda_reg_caps, jack_connected_[id]}));
        } else if (q->code == Code::PcmInfo) {
            const auto& s = topology_.streams[id];
            out.write_at(at, wire::encode(wire::PcmInfo{s.hda_fn_nid, s.features, s.formats, s.rates, s.direction,
                                                        s.channels_min, s.channels_max}));
        } else {
            const auto& c = topology_.chmaps[id];
            wire::ChmapInfo info{c.hda_fn_nid, c.direction, static_cast<std::uint8_t>(c.positions.size()), {}};
            std::copy(c.positions.begin(), c.positions.end(), info.positions.begin());
            out.write_at(at, wire::encode(info));
        }
    }
    written = static_cast<std::size_t>(need);
    return Status::Ok;
}

Status SoundDevice::jack_remap(std::span<const std::uint8_t> req) {
    auto r = wire::decode<wire::JackRemap>(req);
    if (!r) return Status::BadMsg;
    if (r->jack_id >= topology_.jacks.size()) return Status::BadMsg;
    if (!topology_.jacks[r->jack_id].remappable) return Status::NotSupp;
    jack_remap_[r->jack_id] = {r->association, r->sequence};
    return Status::Ok;
}

Status SoundDevice::pcm_command(Code code, std::span<const std::uint8_t> req, bool& deferred) {
    std::uint32_t stream_id = 0;
    std::optional<wire::PcmSetParams> params;
    if (code == Code::PcmSetParams) {
        auto p = wire::decode<wire::PcmSetParams>(req);
        if (!p) {
            log(fmt::format("control: SET_PARAMS: {}", wire::describe(p.error())));
            return Status::BadMsg;
        }
        params = *p;
        stream_id = p->stream_id;
    } else {
        auto h = wire::decode<wire::PcmHeader>(req);
        if (!h) {
            log(fmt::format("control: {}: {}", wire::name(code), wire::describe(h.error())));
            return Status::BadMsg;
        }
        stream_id = h->stream_id;
    }
    if (stream_id >= streams_.size()) {
        log(fmt::format("control: {} for stream {} which does not exist", wire::name(code), stream_id));
        return Status::BadMsg;
    }
    Stream& s = *streams_[stream_id];
    touch(s); // whatever the outcome, its deadline is looked at again
    if (s.drain_stop_answered) {
        // Taken once, as the request arrives (a request that waits below is not timed again).
        const Nanos after = clock_.now() - *s.drain_stop_answered;
        s.drain_stop_answered.reset();
        if (after <= kAfterStopLimit)
            record_drain_trip(after_stop_trips_, notify_stats_.after_stop_trip_median,
                              notify_stats_.after_stop_trips_measured, after);
    }
    auto next = transition(s.state, code);
    if (!next) {
        log(fmt::format("control: {} not valid for stream {} in state {}", wire::name(code), stream_id, name(s.state)));
        return Status::BadMsg;
    }
    if (s.stopping && code != Code::PcmStart) {
        // Closing the backend now would drop frames the driver was told are played: the request
        // waits until they are (at most the lead, bounded by kStopPlayOutLimit).
        if (!finish_stop(s)) {
            deferred = true;
            const Nanos now = clock_.now();
            deferred_ = DeferredRequest{{}, stream_id, *s.stopping + kStopPlayOutLimit, now + kOpenPoll,
                                        stall_began_.value_or(now), true};
            return Status::Ok;
        }
    }

    switch (code) {
    case Code::PcmSetParams: {
        const auto& p = *params;
        const auto& c = s.cfg;
        if (!(c.formats >> static_cast<unsigned>(p.format) & 1) || !(c.rates >> static_cast<unsigned>(p.rate) & 1) ||
            p.channels < c.channels_min || p.channels > c.channels_max || (p.features & ~c.features)) {
            log(fmt::format("control: SET_PARAMS stream {}: {} {} Hz {} ch features {:#x} not offered", stream_id,
                            wire::name(p.format), wire::rate_hz(p.rate), p.channels, p.features));
            return Status::NotSupp;
        }
        const std::uint32_t frame = wire::format_info(p.format)->physical_bytes * p.channels;
        if (frame == 0 || p.period_bytes == 0 || p.buffer_bytes == 0 || p.buffer_bytes % p.period_bytes ||
            p.period_bytes % frame) {
            log(fmt::format("control: SET_PARAMS stream {}: buffer {} / period {} bytes do not fit {}-byte frames",
                            stream_id, p.buffer_bytes, p.period_bytes, frame));
            return Status::BadMsg;
        }
        if (p.buffer_bytes > kMaxBufferBytes) return Status::NotSupp;
        if (s.state == PcmState::Prepared) close_backend(s);
        s.params = p;
        s.format = {c.direction, p.format, wire::rate_hz(p.rate), p.channels, p.period_bytes, p.buffer_bytes};
        break;
    }
    case Code::PcmPrepare: {
        if (s.backend) close_backend(s);
        auto opened = backend_.open(stream_id, s.format);
        if (!opened) {
            log(fmt::format("stream {}: backend {} cannot open: {}", stream_id, backend_.name(), opened.error()));
            fail_prepare(s);
            return Status::IoErr;
        }
        s.backend = std::move(opened).value();
        if (waker_) // the stream's own bit first, so the loop knows whom to look at
            s.backend->set_waker([woken = woken_, wake = waker_, id = s.id] {
                woken->mark(id);
                wake();
            });
        s.queued = s.moved = s.completed = 0;
        s.stopping.reset();
        s.ran_dry_at.reset();
        s.stats.xruns = 0;
        if (s.backend->open_state().kind != OpenState::Ready) {
            // Answered by settle_deferred(); the stream takes no I/O until then.
            s.opening = true;
            deferred = true;
            const Nanos now = clock_.now();
            const Nanos began = stall_began_.value_or(now);
            deferred_ = DeferredRequest{{}, stream_id, began + kOpenTimeout, now + kOpenPoll, began};
            return Status::Ok;
        }
        break;
    }
    case Code::PcmStart:
    case Code::PcmStop:
        if (!s.backend) return Status::IoErr; // defensive: every path that drops it leaves Prepared
        // A STOP right after the last completion, as a drain's: time its trip.
        if (code == Code::PcmStop && s.ran_dry_at && tuning_.measure_lead && clock_.now() - *s.ran_dry_at <= kTripLimit) {
            record_drain_trip(stop_trips_, notify_stats_.stop_trip_median, notify_stats_.stop_trips_measured,
                              clock_.now() - *s.ran_dry_at);
            s.drain_stop_answered = clock_.now(); // answered below, at once
        }
        s.ran_dry_at.reset();
        if (code == Code::PcmStart) {
            // A START while the last STOP's frames still play: the backend never stopped.
            if (s.stopping) s.stopping.reset();
            else s.backend->start();
        } else if (s.cfg.direction == wire::Direction::Output && policy_ == CompletionPolicy::Played &&
                   audible_bytes(s, clock_.now()) < s.completed) {
            // With a lead, completed frames may not be audible yet: they play before it stops.
            s.stopping = clock_.now();
        } else {
            s.backend->stop();
        }
        break;
    case Code::PcmRelease:
        // The spec: every pending I/O message completes before the RELEASE reply.
        if (s.backend) close_backend(s);
        break;
    default: break;
    }
    s.state = *next;
    s.stats.state = s.state;
    return Status::Ok;
}

void SoundDevice::close_backend(Stream& s) {
    s.stopping.reset();
    flush_stream(s);
    s.backend.reset();
}

// ---- tx / rx -----------------------------------------------------------------------------------

void SoundDevice::complete_chain(wire::QueueIndex q, const virtq::Chain& chain, Status status, std::uint32_t latency_bytes,
                                 std::uint32_t data_bytes) {
    virtq::ChainWriter out(chain);
    out.write_at(chain.writable_bytes - kStatusBytes, wire::encode(wire::PcmStatus{status, latency_bytes}));
    push(q, chain.head, static_cast<std::uint32_t>(data_bytes + kStatusBytes));
}

void SoundDevice::complete_io(Stream& s, wire::QueueIndex q, PendingIo& io, Status status, std::uint32_t latency_bytes) {
    const bool rx = q == wire::QueueIndex::Rx;
    complete_chain(q, io.chain, status, latency_bytes, rx ? io.done : 0);
    ++s.stats.messages_completed;
    s.stats.last_latency_bytes = latency_bytes;
    if (rx) s.stats.bytes_received += io.done;
}

void SoundDevice::flush_stream(Stream& s) {
    const wire::QueueIndex q = s.cfg.direction == wire::Direction::Output ? wire::QueueIndex::Tx : wire::QueueIndex::Rx;
    for (auto& io : s.pending) complete_io(s, q, io, Status::Ok, 0);
    s.pending.clear();
}

void SoundDevice::handle_tx(virtq::Chain& chain) {
    if (chain.writable_bytes < kStatusBytes) {
        log("tx: message without room for its status; returned unanswered");
        push(wire::QueueIndex::Tx, chain.head, 0);
        return;
    }
    std::array<std::uint8_t, kXferBytes> hdr{};
    virtq::ChainReader in(chain);
    const bool has_hdr = in.read(hdr) == hdr.size();
    const std::uint32_t id = has_hdr ? wire::decode<wire::PcmXfer>(hdr)->stream_id : 0;
    Stream* s = has_hdr && id < streams_.size() ? streams_[id].get() : nullptr;
    const std::size_t payload = chain.readable_bytes - std::min(chain.readable_bytes, kXferBytes);

    const char* why = nullptr;
    if (!s) why = "unknown stream";
    else if (s->cfg.direction != wire::Direction::Output) why = "not an output stream";
    else if (!accepts_io(s->state) || !s->backend || s->opening) why = "stream not prepared";
    else if (s->backend->failed()) why = "audio device failed";
    else if (payload == 0 || payload % s->format.frame_bytes()) why = "payload not whole frames";
    if (why) {
        log(fmt::format("tx: stream {}: {}; IO_ERR", id, why));
        if (s) ++s->stats.io_errors;
        complete_chain(wire::QueueIndex::Tx, chain, Status::IoErr, 0, 0);
        return;
    }
    s->pending.push_back({std::move(chain), s->queued, static_cast<std::uint32_t>(payload), 0});
    s->queued += payload;
    s->ran_dry_at.reset();
    s->stats.bytes_received += payload;
    touch(*s);
}

void SoundDevice::handle_rx(virtq::Chain& chain) {
    if (chain.writable_bytes < kStatusBytes) {
        log("rx: message without room for its status; returned unanswered");
        push(wire::QueueIndex::Rx, chain.head, 0);
        return;
    }
    std::array<std::uint8_t, kXferBytes> hdr{};
    virtq::ChainReader in(chain);
    const bool has_hdr = chain.readable_bytes == kXferBytes && in.read(hdr) == hdr.size();
    const std::uint32_t id = has_hdr ? wire::decode<wire::PcmXfer>(hdr)->stream_id : 0;
    Stream* s = has_hdr && id < streams_.size() ? streams_[id].get() : nullptr;

    const char* why = nullptr;
    std::size_t capacity = 0;
    if (!has_hdr) why = "header is not exactly one xfer structure";
    else if (!s) why = "unknown stream";
    else if (s->cfg.direction != wire::Direction::Input) why = "not an input stream";
    else if (!accepts_io(s->state) || !s->backend || s->opening) why = "stream not prepared";
    else if (s->backend->failed()) why = "audio device failed";
    else {
        const std::size_t frame = s->format.frame_bytes();
        capacity = (chain.writable_bytes - kStatusBytes) / frame * frame;
        if (capacity == 0) why = "buffer smaller than one frame";
    }
    if (why) {
        log(fmt::format("rx: stream {}: {}; IO_ERR", id, why));
        if (s) ++s->stats.io_errors;
        complete_chain(wire::QueueIndex::Rx, chain, Status::IoErr, 0, 0);
        return;
    }
    s->pending.push_back({std::move(chain), s->queued, static_cast<std::uint32_t>(capacity), 0});
    s->queued += capacity;
    touch(*s);
}

// Bytes audible at `at` (now, or now + the notification lead), by the backend's position.
std::uint64_t SoundDevice::audible_bytes(Stream& s, Nanos at) {
    const Position pos = s.backend->position();
    __int128 frames = pos.frames;
    if (pos.running) {
        // Extrapolate at the backend's rate, flooring also for a position stamped in the future.
        frames += div_floor(static_cast<__int128>(at - pos.when) * rate_micro_hz(pos, s.format.rate),
                            kMicroHzSecond);
    }
    const __int128 bytes = std::max<__int128>(frames, 0) * s.format.frame_bytes();
    return static_cast<std::uint64_t>(std::min<__int128>(bytes, s.moved));
}

void SoundDevice::flush_gathered(Stream& s) {
    if (gathered_ == 0) return;
    s.backend->write(std::span<const std::uint8_t>(gather_.data(), gathered_));
    gathered_ = 0;
}

void SoundDevice::pump_output(Stream& s) {
    // Hand over as much as the backend takes, oldest message first. Copying happens as late as
    // the backend allows: pre-6.7 Linux guests queue periods before filling them.
    std::size_t room = s.backend->writable_bytes();
    for (auto& io : s.pending) {
        if (room == 0) break;
        if (io.done == io.payload) continue;
        const std::size_t n = std::min<std::size_t>(room, io.payload - io.done);
        virtq::ChainReader in(io.chain);
        in.skip(kXferBytes + io.done);
        // Small pieces (a guest may cut a period into 1-byte descriptors) are gathered, so the
        // backend sees few large writes (each may cost a fence or a system call).
        in.visit(n, [&](std::span<const std::uint8_t> piece) {
            if (piece.size() >= kGatherBytes) {
                flush_gathered(s);
                s.backend->write(piece);
                return;
            }
            if (gathered_ + piece.size() > gather_.size()) flush_gathered(s);
            std::memcpy(gather_.data() + gathered_, piece.data(), piece.size());
            gathered_ += piece.size();
        });
        flush_gathered(s);
        io.done += static_cast<std::uint32_t>(n);
        s.moved += n;
        room -= n;
    }
    if (s.pending.empty() || s.pending.front().done != s.pending.front().payload) return;

    // As the driver will see it: lead_ after the completion is signalled (0 unless tuned).
    const Nanos now = clock_.now();
    const std::uint64_t audible = audible_bytes(s, now + lead_);
    while (!s.pending.empty() && s.pending.front().done == s.pending.front().payload) {
        auto& io = s.pending.front();
        const std::uint64_t end = io.start + io.payload;
        // The last message queued goes out earlier by the drain lead; latency_bytes still say
        // what is not audible when the driver sees it.
        if (policy_ == CompletionPolicy::Played && end > audible &&
            (end != s.queued || end > audible_bytes(s, now + lead_ + drain_lead())))
            break;
        // On hand-off, complete only while running: Linux ignores latency_bytes until START and
        // while paused, so a pre-fill completion would move its position ahead of the audio.
        if (policy_ == CompletionPolicy::Consumed && s.state != PcmState::Started) break;
        // latency_bytes: completed bytes not yet audible. Linux sets runtime->delay to it and adds
        // the bytes it has not seen completed, so later messages must not be counted here.
        complete_io(s, wire::QueueIndex::Tx, io, Status::Ok, clamp_u32(end - std::min(end, audible)));
        s.completed = end;
        s.pending.pop_front();
        if (s.pending.empty() && s.state == PcmState::Started) s.ran_dry_at = now;
    }
}

void SoundDevice::pump_input(Stream& s) {
    std::size_t avail = s.backend->readable_bytes();
    while (!s.pending.empty() && avail > 0) {
        auto& io = s.pending.front();
        const std::size_t n = std::min<std::size_t>(avail, io.payload - io.done);
        virtq::ChainWriter out(io.chain);
        out.visit_at(io.done, n, [&](std::span<std::uint8_t> piece) { s.backend->read(piece); });
        io.done += static_cast<std::uint32_t>(n);
        s.moved += n;
        avail -= n;
        if (io.done < io.payload) break;
        // latency_bytes: captured after this message's last frame and still waiting here.
        complete_io(s, wire::QueueIndex::Rx, io, Status::Ok, clamp_u32(s.backend->readable_bytes()));
        s.pending.pop_front();
    }
}

// ---- which streams have work ------------------------------------------------------------------
//
// A wake-up services only the streams with something to do: those whose deadline has come (due_,
// ordered by time), those a request or a command has touched, and those whose backend thread woke
// the device. So its cost follows the work, not the number of streams.

void SoundDevice::touch(Stream& s) {
    if (s.touched) return;
    s.touched = true;
    touched_list_.push_back(s.id);
}

// When stream `s` next has work, by its backend's clock, or nullopt while it has none.
std::optional<Nanos> SoundDevice::stream_deadline(Stream& s) {
    if (!s.backend || s.opening) return std::nullopt;
    std::optional<Nanos> next = s.backend->next_wakeup();
    auto consider = [&](Nanos t) {
        if (!next || t < *next) next = t;
    };
    // An audible-at instant, from the backend's position (which may lie on either side of it).
    auto when_audible = [&](const Position& pos, std::uint64_t bytes) {
        const std::uint64_t frames = bytes / s.format.frame_bytes();
        const __int128 ahead = static_cast<__int128>(frames) - static_cast<__int128>(pos.frames);
        return pos.when + static_cast<Nanos>(div_ceil(ahead * kMicroHzSecond, rate_micro_hz(pos, s.format.rate)));
    };
    if (s.stopping) {
        const Position pos = s.backend->position();
        consider(pos.running ? std::min(when_audible(pos, s.completed), *s.stopping + kStopPlayOutLimit) : clock_.now());
        return next;
    }
    // Asking the backend may itself have moved it on (a late wake-up finds the FIFO dry): if
    // data can move right now, the device must not sleep. A paced card frees room
    // continuously, so only room for a period (or all that is left) is worth waking for.
    if (!s.pending.empty()) {
        if (s.cfg.direction == wire::Direction::Output) {
            const std::uint64_t uncopied = s.queued - s.moved;
            if (uncopied && s.backend->writable_bytes() >= std::min<std::uint64_t>(uncopied, s.format.period_bytes))
                consider(clock_.now());
        } else if (s.backend->readable_bytes() > 0) {
            consider(clock_.now());
        }
    }
    if (policy_ != CompletionPolicy::Played || s.cfg.direction != wire::Direction::Output || s.pending.empty()) return next;
    const auto& io = s.pending.front();
    if (io.done != io.payload) return next;
    const Position pos = s.backend->position();
    if (!pos.running) return next;
    // The instant the message's last frame becomes audible, less the lead (and the drain lead
    // for the last message queued).
    const bool last = io.start + io.payload == s.queued;
    consider(when_audible(pos, io.start + io.payload) - lead_ - (last ? drain_lead() : 0));
    return next;
}

void SoundDevice::reschedule(Stream& s) {
    if (s.due) due_.erase({*s.due, s.id});
    s.due = stream_deadline(s);
    if (s.due) due_.insert({*s.due, s.id});
    const bool output = s.cfg.direction == wire::Direction::Output;
    const unsigned d = output ? 0 : 1;
    const bool started = s.state == PcmState::Started && s.backend && !s.opening;
    // It needs the driver's kicks unless the device will wake for it while it still has work in
    // hand: a deadline, and data not yet copied to the backend (output; otherwise its next
    // deadline may be the instant the backend runs dry, too late to fetch the next message) or a
    // second buffer to fill (input).
    const bool in_hand = output ? s.queued > s.moved : s.pending.size() >= 2;
    const bool needs_kicks = started && !(s.due && in_hand);
    started_[d] += static_cast<unsigned>(started) - static_cast<unsigned>(s.counted_started);
    needs_kicks_[d] += static_cast<unsigned>(needs_kicks) - static_cast<unsigned>(s.counted_needs_kicks);
    s.counted_started = started;
    s.counted_needs_kicks = needs_kicks;
}

// Kicks on the tx (rx) queue only while some started output (input) stream would not wake the
// device by itself, or none is started.
void SoundDevice::update_io_kicks() {
    for (unsigned d = 0; d < 2; ++d) {
        const unsigned q = d == 0 ? static_cast<unsigned>(wire::QueueIndex::Tx) : static_cast<unsigned>(wire::QueueIndex::Rx);
        const bool want = started_[d] == 0 || needs_kicks_[d] > 0;
        if (want == kicks_on_[q]) continue;
        kicks_on_[q] = want;
        queues_[q]->set_kicks_enabled(want);
        // A message may have come while kicks were off: look again.
        if (want && queues_[q]->has_available()) rescan_[q] = true;
    }
}

void SoundDevice::service(Stream& s) {
    if (s.backend && !s.opening && s.stopping) {
        finish_stop(s); // until then it takes nothing new: it is stopped, to the driver
    } else if (s.backend && !s.opening) {
        if (s.cfg.direction == wire::Direction::Output)
            pump_output(s);
        else
            pump_input(s);
        const std::uint64_t x = s.backend->xruns();
        if (x > s.stats.xruns) {
            s.stats.xruns = x;
            if (s.params && (s.params->features & wire::bit(wire::PcmFeature::EvtXruns)))
                queue_event(Code::EvtPcmXrun, s.id);
        }
    }
    reschedule(s);
}

void SoundDevice::process() {
    if (!attached()) return;
    watch_notifications(clock_.now());
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        if (!rescan_[q] && kicks_on_[q]) continue; // a queue without kicks is read at every wake-up
        if (q == static_cast<unsigned>(wire::QueueIndex::Event)) deliver_events();
        else drain_queue(static_cast<wire::QueueIndex>(q));
    }
    settle_deferred();
    const Nanos now = clock_.now();
    while (!due_.empty() && due_.begin()->first <= now) {
        Stream& s = *streams_[due_.begin()->second];
        due_.erase(due_.begin());
        s.due.reset();
        touch(s);
    }
    for (std::size_t w = 0; w < woken_->words.size(); ++w)
        for (std::uint64_t bits = woken_->words[w].exchange(0, std::memory_order_acq_rel); bits; bits &= bits - 1)
            touch(*streams_[w * 64 + static_cast<unsigned>(__builtin_ctzll(bits))]);
    servicing_.swap(touched_list_);
    for (std::uint32_t id : servicing_) {
        Stream& s = *streams_[id];
        s.touched = false;
        service(s);
    }
    servicing_.clear();
    update_io_kicks();
    deliver_events();
    flush_notifications();
}

std::optional<Nanos> SoundDevice::next_deadline() {
    std::optional<Nanos> next;
    auto consider = [&](std::optional<Nanos> t) {
        if (t && (!next || *t < *next)) next = t;
    };
    for (bool more : rescan_)
        if (more) consider(clock_.now()); // a capped pass left chains behind
    if (!touched_list_.empty()) consider(clock_.now());
    if (probe_.active) consider(probe_.next);
    for (const Unanswered& u : unanswered_)
        if (u.active) consider(u.signalled + tuning_.renotify_after);
    if (deferred_) {
        // The backend wakes the loop when its open finishes; without a waker, look every ms. A
        // request waiting for a stop is looked at when its stream has stopped.
        if (deferred_->until_stopped && !streams_[deferred_->stream_id]->stopping) consider(clock_.now());
        consider(deferred_->deadline);
        if (!waker_) consider(deferred_->next_look);
    }
    if (!due_.empty()) {
        // The last deadline within kWakeCoalesce of the earliest: one wake-up for all of them.
        // (Not for work that is due already: that is done now.)
        const Nanos first = due_.begin()->first;
        Nanos last = first;
        if (first > clock_.now())
            for (auto it = due_.begin(); it != due_.end() && it->first <= first + kWakeCoalesce; ++it) last = it->first;
        consider(last);
    }
    return next;
}

// ---- events ------------------------------------------------------------------------------------

void SoundDevice::queue_event(Code type, std::uint32_t data) {
    if (events_.size() >= kMaxPendingEvents) {
        events_.pop_front();
        ++events_dropped_;
    }
    events_.push_back({type, data});
    if (attached()) {
        deliver_events();
        flush_notifications();
    }
}

void SoundDevice::deliver_events() {
    auto* q = queues_[static_cast<unsigned>(wire::QueueIndex::Event)];
    auto& more = rescan_[static_cast<unsigned>(wire::QueueIndex::Event)];
    more = false;
    // At most a queue's worth of buffers per pass, like drain_queue: a guest republishing bad
    // event buffers while an event waits cannot hold the loop.
    for (unsigned n = 0; !events_.empty(); ++n) {
        if (n == q->size()) {
            more = q->has_available();
            break;
        }
        auto r = q->pop();
        if (!r) break;
        if (!*r) {
            refuse_chain(wire::QueueIndex::Event, r->error());
            continue;
        }
        const auto& chain = r->value();
        if (chain.readable_bytes != 0 || chain.writable_bytes < wire::wire_size<wire::Event>) {
            log("event: buffer must be device-writable and hold 8 bytes; returned unused");
            push(wire::QueueIndex::Event, chain.head, 0);
            continue;
        }
        virtq::ChainWriter(chain).write_at(0, wire::encode(events_.front()));
        push(wire::QueueIndex::Event, chain.head, wire::wire_size<wire::Event>);
        events_.pop_front();
    }
}

void SoundDevice::set_jack_connected(std::uint32_t jack_id, bool connected) {
    if (jack_id >= jack_connected_.size() || jack_connected_[jack_id] == connected) return;
    jack_connected_[jack_id] = connected;
    queue_event(connected ? Code::EvtJackConnected : Code::EvtJackDisconnected, jack_id);
}

StreamStats SoundDevice::stats(std::uint32_t stream_id) const {
    return stream_id < streams_.size() ? streams_[stream_id]->stats : StreamStats{};
}

} // namespace vsnd::device
