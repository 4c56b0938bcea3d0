#include "vsnd/vhost_user/frontend.hpp"
#include "vsnd/vhost_user/socket_io.hpp"

#include "vsnd/virtq/driver_queue.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <fmt/format.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace vsnd::vhost_user {
namespace {



std::string errno_text(const char* what, int err) { return fmt::format("{}: {}", what, std::strerror(err)); }

std::uint64_t to_u64(std::span<const std::uint8_t> b) {
    std::uint64_t v = 0;
    std::memcpy(&v, b.data(), std::min(b.size(), sizeof v));
    return v;
}

} // namespace

Frontend::Frontend(FrontendOptions options)
    : opt_(options), layout_(options.queue_size, options.indirect_entries, options.dma_bytes, wire::kQueueCount) {}

Frontend::~Frontend() {
    queues_ = {};
    if (mem_) ::munmap(mem_, mem_size_);
}

Expected<std::unique_ptr<Frontend>, std::string> Frontend::connect(const std::filesystem::path& socket,
                                                                   FrontendOptions options) {
    if (!virtq::valid_queue_size(options.queue_size)) return Unexpected{std::string("invalid queue size")};
    std::unique_ptr<Frontend> f(new Frontend(options));
    if (auto r = f->open(socket); !r) return Unexpected{r.error()};
    if (auto r = f->start(); !r) return Unexpected{r.error()};
    return f;
}

Expected<Done, std::string> Frontend::open(const std::filesystem::path& path) {
    sockaddr_un addr{};
    const std::string p = path.string();
    if (p.size() >= sizeof addr.sun_path) return Unexpected{fmt::format("socket path {} too long", p)};
    socket_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!socket_) return Unexpected{errno_text("socket", errno)};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
    if (::connect(socket_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
        return Unexpected{fmt::format("connect {}: {}", p, std::strerror(errno))};

    // Guest memory: header page, per queue desc/avail/used (+ indirect tables), then DMA.
    mem_size_ = layout_.total_bytes();
    memfd_.reset(::memfd_create("vsnd-frontend-memory", MFD_CLOEXEC));
    if (!memfd_) return Unexpected{errno_text("memfd_create", errno)};
    if (::ftruncate(memfd_.get(), static_cast<off_t>(mem_size_)) < 0) return Unexpected{errno_text("ftruncate", errno)};
    void* m = ::mmap(nullptr, mem_size_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
    if (m == MAP_FAILED) {
        mem_ = nullptr;
        return Unexpected{errno_text("mmap", errno)};
    }
    mem_ = static_cast<std::uint8_t*>(m);
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        kicks_[q].reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        calls_[q].reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        errs_[q].reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!kicks_[q] || !calls_[q] || !errs_[q]) return Unexpected{errno_text("eventfd", errno)};
    }
    try {
        calls_set_ = std::make_unique<ReadableSet>();
        for (auto& c : calls_) calls_set_->add(c.get());
    } catch (const std::system_error& e) {
        return Unexpected{std::string(e.what())};
    }
    return Done{};
}

Expected<Done, std::string> Frontend::start() {
    // Phase A: realize.
    auto f = get_u64(Request::GetFeatures);
    if (!f) return Unexpected{f.error()};
    backend_features_ = *f;
    if (!(backend_features_ & kFeatureVersion1)) return Unexpected{std::string("backend does not offer VIRTIO_F_VERSION_1")};
    if (!(backend_features_ & kFeatureProtocolFeatures))
        return Unexpected{std::string("backend does not offer VHOST_USER_F_PROTOCOL_FEATURES")};
    auto pf = get_u64(Request::GetProtocolFeatures);
    if (!pf) return Unexpected{pf.error()};
    if (!(*pf & kProtocolConfig)) return Unexpected{std::string("backend does not offer VHOST_USER_PROTOCOL_F_CONFIG")};
    protocol_features_ = *pf & (kProtocolMq | kProtocolReplyAck | kProtocolConfig);
    if (auto r = send(Request::SetProtocolFeatures, encode_u64(protocol_features_)); !r) return r;
    if (protocol_features_ & kProtocolMq) {
        auto n = get_u64(Request::GetQueueNum);
        if (!n) return Unexpected{n.error()};
        if (*n < wire::kQueueCount) return Unexpected{fmt::format("backend has {} queues, virtio-snd needs 4", *n)};
    }
    if (auto r = send(Request::SetOwner, {}); !r) return r;
    if (auto again = get_u64(Request::GetFeatures); !again) return Unexpected{again.error()};
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        const int call = calls_[q].get(), err = errs_[q].get();
        if (auto r = send(Request::SetVringCall, encode(VringFile{q, false}), std::span(&call, 1)); !r) return r;
        if (auto r = send(Request::SetVringErr, encode(VringFile{q, false}), std::span(&err, 1)); !r) return r;
    }

    // Phase B: DRIVER_OK.
    std::uint64_t want = kFeatureVersion1;
    if (opt_.indirect_entries) want |= kFeatureRingIndirectDesc;
    if (opt_.event_idx) want |= kFeatureRingEventIdx;
    acked_features_ = (backend_features_ & want) | kFeatureProtocolFeatures;
    if (auto r = send(Request::SetFeatures, encode_u64(acked_features_)); !r) return r;

    const std::uint64_t user = reinterpret_cast<std::uint64_t>(mem_);
    MemoryTable table{{RegionDesc{opt_.guest_base, mem_size_, user, 0}}};
    const int mfd = memfd_.get();
    if (auto r = send(Request::SetMemTable, encode(table), std::span(&mfd, 1), true); !r) return r;

    const bool event_idx = acked_features_ & kFeatureRingEventIdx;
    const bool indirect = acked_features_ & kFeatureRingIndirectDesc;
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        const auto [desc, avail, used, ind] = layout_.queue(q);
        std::optional<virtq::IndirectArea> area;
        if (indirect) area = virtq::IndirectArea{opt_.guest_base + ind, mem_ + ind, opt_.indirect_entries};
        // The rings are initialised here, before the backend may look at them (at enable).
        queues_[q] = std::make_unique<virtq::DriverQueue>(virtq::RingAddresses{mem_ + desc, mem_ + avail, mem_ + used},
                                                          opt_.queue_size, event_idx, area);
        if (auto r = send(Request::SetVringNum, encode(VringState{q, opt_.queue_size})); !r) return r;
        if (auto r = send(Request::SetVringBase, encode(VringState{q, 0})); !r) return r;
        if (auto r = send(Request::SetVringAddr, encode(VringAddr{q, 0, user + desc, user + used, user + avail, 0})); !r)
            return r;
        const int kick = kicks_[q].get(), call = calls_[q].get();
        if (auto r = send(Request::SetVringKick, encode(VringFile{q, false}), std::span(&kick, 1)); !r) return r;
        if (auto r = send(Request::SetVringCall, encode(VringFile{q, false}), std::span(&call, 1)); !r) return r;
    }
    dma_ = driver::DmaAllocator(opt_.guest_base, mem_, layout_.dma_offset(), mem_size_);
    for (unsigned q = 0; q < wire::kQueueCount; ++q)
        if (auto r = send(Request::SetVringEnable, encode(VringState{q, 1}), {}, true); !r) return r;
    return Done{};
}

// ---- messages ----------------------------------------------------------------------------------

Expected<Done, std::string> Frontend::send(Request r, std::span<const std::uint8_t> payload, std::span<const int> fds,
                                           bool want_ack) {
    const bool ack = want_ack && (protocol_features_ & kProtocolReplyAck);
    const auto bytes = encode_message(r, kVersion | (ack ? kFlagNeedReply : 0), payload);
    std::size_t done = 0;
    while (done < bytes.size()) {
        // The fds travel with the first byte of the message, as QEMU sends them.
        auto n = send_with_fds(socket_.get(), std::span(bytes).subspan(done), done == 0 ? fds : std::span<const int>{}, false);
        if (!n) {
            backend_gone_ = true;
            return Unexpected{last_error_ = fmt::format("{}: send: {}", request_name(r), std::strerror(n.error()))};
        }
        done += *n;
    }
    if (!ack) return Done{};
    auto reply = read_reply(r, 8);
    if (!reply) return Unexpected{reply.error()};
    if (const auto v = to_u64(*reply); v != 0)
        return Unexpected{last_error_ = fmt::format("{}: backend answered failure {}", request_name(r), v)};
    return Done{};
}

Expected<Done, std::string> Frontend::read_exact(std::span<std::uint8_t> out) {
    std::size_t got = 0;
    while (got < out.size()) {
        pollfd p{socket_.get(), POLLIN, 0};
        const int rc = ::poll(&p, 1, opt_.reply_timeout_ms);
        if (rc == 0) return Unexpected{std::string("no reply from the backend")};
        if (rc < 0) {
            if (errno == EINTR) continue;
            return Unexpected{errno_text("poll", errno)};
        }
        auto r = receive_with_fds(socket_.get(), out.subspan(got), true);
        if (!r) {
            if (r.error() == EAGAIN || r.error() == EINTR) continue;
            backend_gone_ = true;
            return Unexpected{errno_text("recvmsg", r.error())};
        }
        if (r->bytes == 0) {
            backend_gone_ = true;
            return Unexpected{std::string("backend closed the connection")};
        }
        got += r->bytes; // fds in a reply are not part of this protocol; theirs are closed here
    }
    return Done{};
}

Expected<std::vector<std::uint8_t>, std::string> Frontend::read_reply(Request r, std::uint32_t size) {
    std::array<std::uint8_t, kHeaderSize> head{};
    if (auto rr = read_exact(head); !rr) return Unexpected{last_error_ = fmt::format("{}: {}", request_name(r), rr.error())};
    auto h = check_reply_header(head, static_cast<std::uint32_t>(r), size);
    if (!h) {
        backend_gone_ = true; // the stream can no longer be trusted
        return Unexpected{last_error_ = h.error()};
    }
    std::vector<std::uint8_t> payload(size);
    if (auto rr = read_exact(payload); !rr) return Unexpected{last_error_ = fmt::format("{}: {}", request_name(r), rr.error())};
    return payload;
}

Expected<std::vector<std::uint8_t>, std::string> Frontend::request(Request r, std::span<const std::uint8_t> payload,
                                                                  std::uint32_t reply_size) {
    if (auto s = send(r, payload); !s) return Unexpected{s.error()};
    return read_reply(r, reply_size);
}

Expected<std::vector<std::uint8_t>, std::string> Frontend::send_raw(Request r, std::span<const std::uint8_t> payload,
                                                                   std::span<const int> fds,
                                                                   std::optional<std::uint32_t> reply_size) {
    if (auto s = send(r, payload, fds); !s) return Unexpected{s.error()};
    if (!reply_size) return std::vector<std::uint8_t>{};
    return read_reply(r, *reply_size);
}

Expected<std::uint64_t, std::string> Frontend::get_u64(Request r) {
    auto reply = request(r, {}, 8);
    if (!reply) return Unexpected{reply.error()};
    return to_u64(*reply);
}

// ---- DriverTransport ---------------------------------------------------------------------------

std::span<const std::uint8_t> Frontend::config() {
    const std::uint32_t len = (acked_features_ & wire::kFeatureCtls) ? 16 : 12;
    auto reply = request(Request::GetConfig, encode(ConfigSpace{0, len, 0, std::vector<std::uint8_t>(len, 0)}),
                         static_cast<std::uint32_t>(kConfigHeaderSize + len));
    if (!reply) return {};
    std::copy_n(reply->begin() + kConfigHeaderSize, len, config_.begin());
    config_len_ = len;
    return std::span(config_).first(config_len_);
}

void Frontend::kick(unsigned index) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(kicks_.at(index).get(), &one, sizeof one);
}

std::optional<driver::DmaBuffer> Frontend::allocate(std::size_t bytes, std::size_t align) {
    return dma_.allocate(bytes, align);
}

void Frontend::clear_interrupt() {
    for (auto& c : calls_) {
        std::uint64_t v;
        [[maybe_unused]] auto n = ::read(c.get(), &v, sizeof v);
    }
}

bool Frontend::wait_interrupt(Nanos timeout) {
    auto consume = [&] {
        bool any = false;
        for (auto& c : calls_) {
            std::uint64_t v;
            any |= ::read(c.get(), &v, sizeof v) == sizeof v;
        }
        return any;
    };
    if (consume()) return true;
    if (backend_gone_) return false;
    pollfd fds[wire::kQueueCount + 1];
    for (unsigned q = 0; q < wire::kQueueCount; ++q) fds[q] = {calls_[q].get(), POLLIN, 0};
    // The backend never writes unasked; readable or hung up means it has gone.
    fds[wire::kQueueCount] = {socket_.get(), POLLIN | POLLRDHUP, 0};
    const int ms = static_cast<int>(std::max<Nanos>(0, (timeout + 999'999) / 1'000'000));
    const int rc = ::poll(fds, wire::kQueueCount + 1, ms);
    if (rc <= 0) return false;
    if (fds[wire::kQueueCount].revents) {
        backend_gone_ = true;
        last_error_ = "backend closed the connection";
    }
    return consume();
}

Expected<std::array<std::uint16_t, wire::kQueueCount>, std::string> Frontend::stop() {
    for (unsigned q = 0; q < wire::kQueueCount; ++q)
        if (auto r = send(Request::SetVringEnable, encode(VringState{q, 0}), {}, true); !r) return Unexpected{r.error()};
    std::array<std::uint16_t, wire::kQueueCount> bases{};
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        auto reply = request(Request::GetVringBase, encode(VringState{q, 0}), 8);
        if (!reply) return Unexpected{reply.error()};
        std::uint32_t index, num;
        std::memcpy(&index, reply->data(), 4);
        std::memcpy(&num, reply->data() + 4, 4);
        if (index != q) return Unexpected{last_error_ = fmt::format("GET_VRING_BASE {} answered for queue {}", q, index)};
        bases[q] = static_cast<std::uint16_t>(num);
    }
    return bases;
}

} // namespace vsnd::vhost_user
