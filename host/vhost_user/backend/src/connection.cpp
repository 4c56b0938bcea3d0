#include "vsnd/vhost_user/backend.hpp"
#include "memory_guard.hpp"
#include "vsnd/vhost_user/socket_io.hpp"

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace vsnd::vhost_user {

namespace {

void set_nonblocking(int fd) {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

const char* queue_name(unsigned q) {
    static constexpr const char* names[] = {"control", "event", "tx", "rx"};
    return q < wire::kQueueCount ? names[q] : "?";
}

} // namespace

Mapping::Mapping(void* base, std::size_t len) : base_(base), len_(len), guard_slot_(memory_guard::add(base, len)) {}

Mapping::~Mapping() {
    memory_guard::remove(guard_slot_);
    ::munmap(base_, len_);
}

bool Mapping::faulted() const { return memory_guard::faulted(guard_slot_); }

Connection::Connection(boost::asio::io_context& io, Socket socket, device::SoundDevice& device,
                       std::shared_ptr<spdlog::logger> log, std::uint64_t id)
    : io_(io), socket_(std::move(socket)), device_(device), log_(std::move(log)), id_(id), watchdog_(io),
      fault_watch_(io, ::dup(memory_guard::fault_fd())),
      loop_(io, device) {
    loop_.on_kick_error([this](wire::QueueIndex q, const std::string& why) {
        log_->error("connection {}: {} queue kick fd unreadable ({}); no longer watched", id_,
                    queue_name(static_cast<unsigned>(q)), why);
    });
}

Connection::~Connection() { teardown(); }

void Connection::start(std::function<void()> on_closed) {
    on_closed_ = std::move(on_closed);
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    log_->info("connection {}: front-end connected", id_);
    arm_watchdog(); // the handshake
    arm_fault_watch();
    read_some();
}

// A guarded region faulted: the front-end shrank the file behind guest memory. The access that
// faulted completed on zero pages; the connection ends here, the daemon lives on.
void Connection::arm_fault_watch() {
    fault_watch_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                            [weak = weak_from_this()](const boost::system::error_code& ec) {
                                auto self = weak.lock();
                                if (!self || self->closed_ || ec) return;
                                std::uint64_t v;
                                [[maybe_unused]] ssize_t n = ::read(self->fault_watch_.native_handle(), &v, sizeof v);
                                for (const auto& m : self->mappings_)
                                    if (m->faulted())
                                        return self->close("guest memory vanished under a mapped region (the front-end "
                                                           "shrank its file: SIGBUS); zero pages were mapped in its place",
                                                           true);
                                self->arm_fault_watch();
                            });
}

// Closes a front-end that has not sent SET_OWNER, or has stopped in the middle of a message, for
// the stall timeout.
void Connection::arm_watchdog() {
    if (stall_timeout_.count() <= 0) return; // switched off
    // A handler already queued when the timer is re-armed or cancelled still runs: the generation
    // tells it that it is stale.
    const std::uint64_t gen = ++watch_gen_;
    watchdog_.expires_after(stall_timeout_);
    watchdog_.async_wait([weak = weak_from_this(), gen](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (!self || self->closed_ || ec || gen != self->watch_gen_) return;
        if (!self->owner_)
            return self->close(fmt::format("no SET_OWNER within {} ms of connecting", self->stall_timeout_.count()), true);
        if (self->reader_.mid_message())
            return self->close(fmt::format("stopped in the middle of a message for {} ms", self->stall_timeout_.count()), true);
        self->watching_message_ = false;
    });
}

// ---- control socket ----------------------------------------------------------------------------

void Connection::arm_read() {
    socket_.async_wait(Socket::wait_read, [weak = weak_from_this()](const boost::system::error_code& ec) {
        auto self = weak.lock();
        if (!self || self->closed_ || ec == boost::asio::error::operation_aborted) return;
        if (ec) return self->close("socket error: " + ec.message(), true);
        self->read_some();
    });
}

// Reads until the socket is drained (the reactor is edge-triggered), then waits for more. While a
// reply is stuck in out_ (the peer does not read), requests are left in the socket.
void Connection::read_some() {
    while (!closed_ && out_.empty()) {
        auto r = receive_with_fds(socket_.native_handle(), reader_.buffer(), true);
        if (!r) {
            if (r.error() == EAGAIN || r.error() == EWOULDBLOCK) break;
            return close(fmt::format("recvmsg: {}", std::strerror(r.error())), true);
        }
        if (r->fds_truncated) return close("message carried more than 8 file descriptors", true);
        if (r->bytes == 0) {
            if (reader_.mid_message()) return close("end of stream in the middle of a message", true);
            return close("front-end disconnected");
        }
        auto m = reader_.commit(r->bytes, std::move(r->fds));
        if (!m) return close(fmt::format("malformed message: {}: {}", describe(m.error().error), m.error().detail), true);
        if (*m) {
            handle(std::move(**m));
            if (owner_ && watching_message_ && !reader_.mid_message()) {
                watching_message_ = false;
                ++watch_gen_;
                watchdog_.cancel();
            }
        }
    }
    if (closed_) return;
    if (owner_ && reader_.mid_message() && !watching_message_) {
        watching_message_ = true;
        arm_watchdog();
    }
    if (out_.empty()) arm_read();
}

void Connection::send_reply(std::uint32_t request, std::span<const std::uint8_t> payload) {
    const auto bytes = encode_reply(request, payload);
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    flush();
}

void Connection::flush() {
    while (!out_.empty() && !writing_ && !closed_) {
        auto n = send_with_fds(socket_.native_handle(), out_, {}, true);
        if (!n) {
            if (n.error() != EAGAIN && n.error() != EWOULDBLOCK)
                return close(fmt::format("send: {}", std::strerror(n.error())), true);
            writing_ = true;
            socket_.async_wait(Socket::wait_write, [weak = weak_from_this()](const boost::system::error_code& ec) {
                auto self = weak.lock();
                if (!self || self->closed_ || ec == boost::asio::error::operation_aborted) return;
                self->writing_ = false;
                if (ec) return self->close("socket error: " + ec.message(), true);
                self->flush();
                if (self->out_.empty()) self->read_some(); // reading paused while the reply waited
            });
            return;
        }
        out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(*n));
    }
}

// ---- requests ----------------------------------------------------------------------------------

void Connection::handle(Message m) {
    const std::uint32_t req = m.header.request;
    log_->debug("connection {}: {} (flags {:#x}, {} bytes, {} fds)", id_, request_name(req), m.header.flags,
                m.header.size, m.fds.size());
    auto outcome = dispatch(m);
    if (closed_) return;
    if (!outcome) {
        const auto& f = outcome.error();
        if (f.fatal) return close(fmt::format("{}: {}", request_name(req), f.reason), true);
        log_->error("connection {}: {} refused: {}", id_, request_name(req), f.reason);
        if (m.header.need_reply()) send_reply(req, encode_u64(1));
        return;
    }
    if (*outcome)
        send_reply(req, **outcome);
    else if (m.header.need_reply())
        send_reply(req, encode_u64(0));
}

Connection::Outcome Connection::dispatch(Message& m) {
    auto fatal = [](std::string why) -> Outcome { return Unexpected{Failure{true, std::move(why)}}; };
    auto refuse = [](std::string why) -> Outcome { return Unexpected{Failure{false, std::move(why)}}; };
    auto reply_u64 = [](std::uint64_t v) -> Outcome { return Reply{encode_u64(v)}; };
    const Outcome ok = Reply{};

    if (!m.known)
        return refuse(fmt::format("not implemented ({} payload bytes, {} fds closed)", m.header.size, m.fds.size()));

    switch (static_cast<Request>(m.header.request)) {
    case Request::GetFeatures: return reply_u64(kOfferedFeatures);
    case Request::SetFeatures: {
        const auto v = std::get<std::uint64_t>(m.body);
        if (v & ~kOfferedFeatures) return fatal(fmt::format("{:#x} acks bits never offered ({:#x})", v, kOfferedFeatures));
        if (attached_ && v != features_) return fatal("features changed while the device runs");
        features_ = v;
        return ok;
    }
    case Request::SetOwner:
        if (!owner_) {
            owner_ = true;
            if (!watching_message_) { // the handshake is done
                ++watch_gen_;
                watchdog_.cancel();
            }
        }
        return ok;
    case Request::GetProtocolFeatures: return reply_u64(kOfferedProtocolFeatures);
    case Request::SetProtocolFeatures: {
        const auto v = std::get<std::uint64_t>(m.body);
        if (v & ~kOfferedProtocolFeatures)
            return fatal(fmt::format("{:#x} acks bits never offered ({:#x})", v, kOfferedProtocolFeatures));
        protocol_features_ = v;
        return ok;
    }
    case Request::GetQueueNum: return reply_u64(wire::kQueueCount);
    case Request::SetMemTable: return set_mem_table(m);
    case Request::SetVringNum:
    case Request::SetVringBase: {
        const auto s = std::get<VringState>(m.body);
        auto& ring = rings_[s.index];
        if (ring.queue) return fatal(fmt::format("{} queue is running", queue_name(s.index)));
        if (m.header.request == static_cast<std::uint32_t>(Request::SetVringNum))
            ring.num = s.num;
        else
            ring.base = static_cast<std::uint16_t>(s.num);
        return ok;
    }
    case Request::SetVringAddr: return set_vring_addr(std::get<VringAddr>(m.body));
    case Request::SetVringKick:
    case Request::SetVringCall:
    case Request::SetVringErr:
        return set_vring_file(static_cast<Request>(m.header.request), std::get<VringFile>(m.body), m.fds);
    case Request::SetVringEnable: {
        const auto s = std::get<VringState>(m.body);
        rings_[s.index].enabled = s.num == 1;
        if (s.num == 0) {
            detach("a queue was disabled");
            return ok;
        }
        if (auto f = maybe_attach()) return Unexpected{*f};
        return ok;
    }
    case Request::GetVringBase: {
        const auto s = std::get<VringState>(m.body);
        // Stop: never touch this ring again (after a guest reset its memory is reused at once).
        detach("a queue was stopped");
        auto& ring = rings_[s.index];
        drop_kick(s.index);
        ring.enabled = false;
        return Reply{encode(VringState{s.index, ring.base})};
    }
    case Request::GetConfig: return get_config(std::get<ConfigSpace>(m.body));
    case Request::SetConfig:
        log_->warn("connection {}: SET_CONFIG ignored (the virtio-snd config space is read-only)", id_);
        return ok;
    default: break;
    }
    return refuse("not implemented");
}

Connection::Outcome Connection::set_mem_table(Message& m) {
    const auto& table = std::get<MemoryTable>(m.body);
    std::vector<std::unique_ptr<Mapping>> maps;
    virtq::GuestMemory mem;
    for (std::size_t i = 0; i < table.regions.size(); ++i) {
        const auto& r = table.regions[i];
        const int fd = m.fds[i].get();
        struct stat st {};
        if (::fstat(fd, &st) < 0)
            return Unexpected{Failure{false, fmt::format("region {}: fstat: {}", i, std::strerror(errno))}};
        // Reading past the end of the file would be SIGBUS here, so the file must cover the region.
        const std::uint64_t need = r.mmap_offset + r.size;
        if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) < need)
            return Unexpected{Failure{false, fmt::format("region {}: fd is not a file of at least {} bytes", i, need)}};
        void* p = ::mmap(nullptr, need, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (p == MAP_FAILED) return Unexpected{Failure{false, fmt::format("region {}: mmap: {}", i, std::strerror(errno))}};
        maps.push_back(std::make_unique<Mapping>(p, need));
        if (!mem.add({r.guest_addr, r.size, maps.back()->data() + r.mmap_offset, r.user_addr}))
            return Unexpected{Failure{true, fmt::format("region {} overlaps another", i)}};
        log_->info("connection {}: region {}: guest {:#x}..{:#x} ({} MiB), front-end address {:#x}, offset {:#x}", id_, i,
                   r.guest_addr, r.guest_addr + r.size, r.size >> 20, r.user_addr, r.mmap_offset);
    }
    m.fds.clear(); // the mappings keep the memory; the fds are not needed any more
    // QEMU re-sends the table at every start (rings stopped). Mid-run (memory hotplug) the rings
    // keep their front-end addresses and are translated again; in-flight I/O is lost.
    const bool was_attached = attached_;
    if (was_attached) log_->warn("connection {}: memory table replaced while running: in-flight I/O is dropped", id_);
    detach("the memory table was replaced");
    memory_ = std::move(mem);
    mappings_ = std::move(maps);
    if (was_attached)
        if (auto f = maybe_attach()) return Unexpected{*f};
    return Reply{};
}

Connection::Outcome Connection::set_vring_addr(const VringAddr& a) {
    auto& ring = rings_[a.index];
    auto fatal = [](std::string why) -> Outcome { return Unexpected{Failure{true, std::move(why)}}; };
    if (ring.queue) return fatal(fmt::format("{} queue is running", queue_name(a.index)));
    if (memory_.regions().empty()) return fatal("no memory table yet");
    if (ring.num == 0) return fatal(fmt::format("{} queue has no size yet (SET_VRING_NUM)", queue_name(a.index)));
    const auto sizes = virtq::ring_bytes(static_cast<std::uint16_t>(ring.num));
    const struct { const char* what; std::uint64_t addr; std::size_t len; } parts[] = {
        {"descriptor table", a.desc, sizes.desc}, {"available ring", a.avail, sizes.avail}, {"used ring", a.used, sizes.used}};
    for (const auto& p : parts)
        if (!memory_.user_span(p.addr, p.len))
            return fatal(fmt::format("{} queue: {} {:#x}+{} is not inside one memory region", queue_name(a.index), p.what,
                                     p.addr, p.len));
    ring.addr = a;
    ring.addr_set = true;
    return Reply{};
}

Connection::Outcome Connection::set_vring_file(Request r, const VringFile& f, std::vector<UniqueFd>& fds) {
    auto& ring = rings_[f.index];
    UniqueFd fd = f.no_fd ? UniqueFd{} : std::move(fds[0]);
    switch (r) {
    case Request::SetVringKick: {
        if (f.no_fd) return Unexpected{Failure{true, "polling mode (no kick fd) is not supported"}};
        drop_kick(f.index);
        if (auto w = loop_.watch_kick(static_cast<wire::QueueIndex>(f.index), fd.get()); !w)
            return Unexpected{Failure{true, fmt::format("{} queue kick fd cannot be polled: {}", queue_name(f.index), w.error())}};
        fd.release();
        ring.kick = true;
        // Without VHOST_USER_F_PROTOCOL_FEATURES a ring starts enabled.
        if (!(features_ & kFeatureProtocolFeatures)) ring.enabled = true;
        if (auto fail = maybe_attach()) return Unexpected{*fail};
        return Reply{};
    }
    case Request::SetVringCall:
        if (fd) set_nonblocking(fd.get()); // a full pipe must never block the loop
        ring.call = std::move(fd);
        return Reply{};
    default:
        ring.err = std::move(fd);
        return Reply{};
    }
}

Connection::Outcome Connection::get_config(const ConfigSpace& c) {
    const auto space = wire::encode(device_.config());
    // 12 bytes; the 16th-byte `controls` field exists only with VIRTIO_SND_F_CTLS (never offered).
    const std::size_t len = (features_ & wire::kFeatureCtls) ? 16 : 12;
    ConfigSpace out{c.offset, c.size, c.flags, std::vector<std::uint8_t>(c.size, 0)};
    for (std::uint32_t i = 0; i < c.size; ++i)
        if (c.offset + i < len) out.data[i] = space[c.offset + i];
    if (c.offset + c.size > len)
        log_->debug("connection {}: GET_CONFIG {}+{} reaches past the {}-byte config space; zeros", id_, c.offset, c.size, len);
    return Reply{encode(out)};
}

// ---- rings -------------------------------------------------------------------------------------

std::optional<Connection::Failure> Connection::maybe_attach() {
    if (attached_) return std::nullopt;
    for (const auto& r : rings_)
        if (!r.num || !r.addr_set || !r.kick || !r.enabled) return std::nullopt;
    const bool event_idx = features_ & kFeatureRingEventIdx, indirect = features_ & kFeatureRingIndirectDesc;
    std::array<virtq::DeviceQueue*, wire::kQueueCount> queues{};
    // The device does not start: no queue is kept, and the connection closes with the reason.
    auto refuse = [this](std::string why) {
        for (auto& x : rings_) x.queue.reset();
        return Failure{true, std::move(why)};
    };
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        auto& r = rings_[q];
        const auto sizes = virtq::ring_bytes(static_cast<std::uint16_t>(r.num));
        auto desc = memory_.user_span(r.addr.desc, sizes.desc);
        auto avail = memory_.user_span(r.addr.avail, sizes.avail);
        auto used = memory_.user_span(r.addr.used, sizes.used);
        if (!desc || !avail || !used) // the size grew after SET_VRING_ADDR
            return refuse(fmt::format("{} queue of {} entries does not fit its ring addresses", queue_name(q), r.num));
        if (const char* bad = virtq::ring_layout_error({desc->data(), avail->data(), used->data()}, static_cast<std::uint16_t>(r.num)))
            return refuse(fmt::format("{} queue: {}", queue_name(q), bad));
        r.queue = std::make_unique<virtq::DeviceQueue>(
            memory_, virtq::QueueConfig{static_cast<std::uint16_t>(r.num), {desc->data(), avail->data(), used->data()}, event_idx, indirect},
            r.base);
        queues[q] = r.queue.get();
    }
    for (unsigned q = 0; q < wire::kQueueCount; ++q)
        for (unsigned o = 0; o < wire::kQueueCount; ++o) {
            if (o == q) continue;
            const auto& a = rings_[q].queue->config();
            const auto& b = rings_[o].queue->config();
            if (const char* part = virtq::used_ring_overlap(a.rings, a.size, b.rings, b.size))
                return refuse(fmt::format("{} queue: used ring overlaps the {} queue's {}", queue_name(q), queue_name(o), part));
        }
    attached_ = true;
    device_.attach(queues, [this](wire::QueueIndex q) { signal_call(static_cast<unsigned>(q)); });
    log_->info("connection {}: device started: {} entries per queue, avail from {}/{}/{}/{}, event_idx {}, indirect {}", id_,
               rings_[0].num, rings_[0].base, rings_[1].base, rings_[2].base, rings_[3].base, event_idx ? "on" : "off",
               indirect ? "on" : "off");
    // Rings are scanned at start, not only on kicks: Linux fills the event queue before DRIVER_OK
    // and never kicks it, and a control request may already be waiting.
    loop_.scan_all();
    return std::nullopt;
}

void Connection::detach(const char* why) {
    if (!attached_) return;
    // What this driver's timing taught the device, before the reset forgets it.
    log_->info("connection {}: notifications: {}", id_, device::describe(device_.notify_stats()));
    device_.reset();
    for (auto& r : rings_)
        if (r.queue) {
            r.base = r.queue->next_avail();
            r.queue.reset();
        }
    attached_ = false;
    loop_.reschedule(); // the device is detached: cancels the deadline timer
    const loop::DeviceLoop::Lateness& late = loop_.lateness();
    log_->info("connection {}: device stopped ({}); next avail {}/{}/{}/{}; deadline timer late by max {:.1f} ms, "
               "{} of {} wake-ups > 10 ms", id_, why, rings_[0].base, rings_[1].base, rings_[2].base, rings_[3].base,
               late.max_ns / 1e6, late.over_10ms, late.wakeups);
}

void Connection::drop_kick(unsigned q) {
    rings_[q].kick = false;
    loop_.drop_kick(static_cast<wire::QueueIndex>(q)); // cancels its wait and closes the fd
}

void Connection::signal_call(unsigned q) {
    const int fd = rings_[q].call.get();
    if (fd < 0) return; // NOFD: the guest has no interrupt for this queue
    const std::uint64_t one = 1;
    if (::write(fd, &one, sizeof one) < 0 && errno != EAGAIN && call_errors_++ == 0)
        log_->error("connection {}: {} queue call fd: {}", id_, queue_name(q), std::strerror(errno));
}

// ---- end ---------------------------------------------------------------------------------------

void Connection::close(const std::string& reason, bool error) {
    if (closed_) return;
    closed_ = true;
    if (error)
        log_->error("connection {}: closed: {}", id_, reason);
    else
        log_->info("connection {}: closed: {}", id_, reason);
    teardown();
    if (on_closed_) boost::asio::post(io_, std::move(on_closed_));
    on_closed_ = nullptr;
}

void Connection::teardown() {
    detach("connection closed");
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        drop_kick(q);
        rings_[q].call.reset();
        rings_[q].err.reset();
    }
    boost::system::error_code ec;
    watchdog_.cancel();
    fault_watch_.cancel(ec);
    loop_.stop();
    socket_.close(ec);
    memory_.clear();
    mappings_.clear();
    out_.clear();
}

} // namespace vsnd::vhost_user
