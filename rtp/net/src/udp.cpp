#include "vsnd/rtp/udp.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>

namespace vsnd::rtp {

namespace asio = boost::asio;
using asio::ip::udp;

namespace {
constexpr std::size_t kMaxDatagram = 65536;
constexpr unsigned kBatch = 64;        // datagrams per wake-up (woken per datagram)
constexpr unsigned kPollBatch = 4096;  // per poll(): everything a sink period (or a stall) gathered

std::optional<std::uint16_t> port_of(std::string_view s) {
    unsigned v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(v);
}
} // namespace

Expected<Endpoint, std::string> parse_endpoint(std::string_view t) {
    auto bad = [&] { return Unexpected{fmt::format("\"{}\" is not PORT, ADDRESS PORT, ADDRESS:PORT or [IPV6]:PORT", t)}; };
    Endpoint e;
    std::string_view addr, port = t;
    if (auto sp = t.find(' '); sp != std::string_view::npos) {
        addr = t.substr(0, sp);
        port = t.substr(sp + 1);
    } else if (t.starts_with('[')) {
        const auto close = t.find("]:");
        if (close == std::string_view::npos) return bad();
        addr = t.substr(1, close - 1);
        port = t.substr(close + 2);
    } else if (auto c = t.find(':'); c != std::string_view::npos && t.find(':', c + 1) == std::string_view::npos) {
        addr = t.substr(0, c);
        port = t.substr(c + 1);
    }
    auto p = port_of(port);
    if (!p) return bad();
    e.port = *p;
    if (!addr.empty()) {
        boost::system::error_code ec;
        asio::ip::make_address(std::string(addr), ec);
        if (ec) return Unexpected{fmt::format("\"{}\" is not an IPv4 or IPv6 address", addr)};
        e.address = std::string(addr);
    }
    return e;
}

Nanos realtime_minus_monotonic() {
    timespec r, m;
    clock_gettime(CLOCK_REALTIME, &r);
    clock_gettime(CLOCK_MONOTONIC, &m);
    return (Nanos{r.tv_sec} - m.tv_sec) * kNanosPerSecond + (r.tv_nsec - m.tv_nsec);
}

Nanos realtime_to_monotonic(Nanos realtime) { return realtime - realtime_minus_monotonic(); }

Expected<std::unique_ptr<UdpReceiver>, std::string> UdpReceiver::open(asio::io_context& io, ReceiveOptions o, Handler h) {
    std::unique_ptr<UdpReceiver> r(new UdpReceiver(io, std::move(o), std::move(h)));
    if (auto s = r->setup(); !s) return Unexpected{s.error()};
    r->fd_ = r->socket_.release();
    if (r->opt_.wake_per_datagram) {
        r->waiter_ = std::make_unique<asio::posix::stream_descriptor>(io, r->fd_); // owns the fd now
        r->arm();
    }
    return r;
}

UdpReceiver::UdpReceiver(asio::io_context& io, ReceiveOptions o, Handler h)
    : opt_(std::move(o)), handler_(std::move(h)), socket_(io), buf_(16 * kMaxDatagram) {}

UdpReceiver::~UdpReceiver() {
    // Closing leaves the groups.
    if (waiter_) {
        boost::system::error_code ec;
        waiter_->close(ec);
    } else if (fd_ >= 0) {
        ::close(fd_);
    }
}

Expected<Done, std::string> UdpReceiver::setup() {
    boost::system::error_code ec;
    asio::ip::address local;
    if (!opt_.local.address.empty()) local = asio::ip::make_address(opt_.local.address, ec);
    if (ec) return Unexpected{fmt::format("\"{}\" is not an address", opt_.local.address)};
    multicast_ = !opt_.local.address.empty() && local.is_multicast();
    const bool v6 = !opt_.local.address.empty() && local.is_v6();
    if (!opt_.interface.empty()) {
        ifindex_ = if_nametoindex(opt_.interface.c_str());
        if (ifindex_ == 0) return Unexpected{fmt::format("no network interface \"{}\"", opt_.interface)};
    }
    socket_.open(v6 ? udp::v6() : udp::v4(), ec);
    if (ec) return Unexpected{fmt::format("socket: {}", ec.message())};
    const int fd = socket_.native_handle();
    if (opt_.reuse_address) socket_.set_option(asio::socket_base::reuse_address(true), ec);
    if (opt_.receive_buffer > 0) {
        socket_.set_option(asio::socket_base::receive_buffer_size(opt_.receive_buffer), ec);
        if (ec) return Unexpected{fmt::format("receive buffer {}: {}", opt_.receive_buffer, ec.message())};
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    if (!opt_.interface.empty() && !multicast_) {
        // Unicast on one interface only; for multicast the join names the interface.
        if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, opt_.interface.c_str(), static_cast<socklen_t>(opt_.interface.size())) != 0)
            return Unexpected{fmt::format("bind to interface {}: {}", opt_.interface, std::strerror(errno))};
    }
    // A multicast socket binds to the group (so it receives only that group), unicast to the address.
    udp::endpoint bind_to(opt_.local.address.empty() ? asio::ip::address(asio::ip::address_v4::any()) : local, opt_.local.port);
    socket_.bind(bind_to, ec);
    if (ec) return Unexpected{fmt::format("bind {} port {}: {}", opt_.local.address.empty() ? "*" : opt_.local.address,
                                          opt_.local.port, ec.message())};
    if (multicast_) {
        group_ = local;
        if (auto j = join(false); !j) return j;
    }
    socket_.non_blocking(true, ec);
    return Done{};
}

Expected<Done, std::string> UdpReceiver::join(bool leave_first) {
    const int fd = fd_ >= 0 ? fd_ : socket_.native_handle();
    if (group_.is_v4()) {
        ip_mreqn m{};
        const auto b = group_.to_v4().to_bytes();
        std::memcpy(&m.imr_multiaddr, b.data(), 4);
        m.imr_ifindex = static_cast<int>(ifindex_);
        if (leave_first) setsockopt(fd, IPPROTO_IP, IP_DROP_MEMBERSHIP, &m, sizeof m);
        if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) != 0)
            return Unexpected{fmt::format("join {}: {}", group_.to_string(), std::strerror(errno))};
    } else {
        ipv6_mreq m{};
        const auto b = group_.to_v6().to_bytes();
        std::memcpy(&m.ipv6mr_multiaddr, b.data(), 16);
        m.ipv6mr_interface = ifindex_;
        if (leave_first) setsockopt(fd, IPPROTO_IPV6, IPV6_LEAVE_GROUP, &m, sizeof m);
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) != 0)
            return Unexpected{fmt::format("join {}: {}", group_.to_string(), std::strerror(errno))};
    }
    return Done{};
}

void UdpReceiver::arm() {
    waiter_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
        if (ec) return; // closed
        drain();
        arm();
    });
}

void UdpReceiver::drain() {
    // recvmmsg: up to kBatch datagrams per system call, each with its kernel timestamp.
    constexpr unsigned kVec = 16;
    struct Slot {
        sockaddr_storage from;
        iovec iov;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    };
    Slot slots[kVec];
    mmsghdr msgs[kVec];
    const unsigned batch = waiter_ ? kBatch : kPollBatch;
    for (unsigned got_total = 0; got_total < batch;) {
        for (unsigned i = 0; i < kVec; ++i) {
            slots[i].iov = {buf_.data() + std::size_t{i} * kMaxDatagram, kMaxDatagram};
            msghdr& m = msgs[i].msg_hdr;
            m = msghdr{};
            m.msg_name = &slots[i].from;
            m.msg_namelen = sizeof slots[i].from;
            m.msg_iov = &slots[i].iov;
            m.msg_iovlen = 1;
            m.msg_control = slots[i].control;
            m.msg_controllen = sizeof slots[i].control;
        }
        const int n = recvmmsg(fd_, msgs, kVec, MSG_DONTWAIT, nullptr);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++counters_.errors;
            return;
        }
        // The clocks' offset once per batch, not per datagram.
        const Nanos fallback = MonotonicClock().now(), offset = realtime_minus_monotonic();
        for (int i = 0; i < n; ++i) {
            const msghdr& msg = msgs[i].msg_hdr;
            ++counters_.datagrams;
            if (msg.msg_flags & MSG_TRUNC) {
                ++counters_.truncated;
                continue;
            }
            Nanos arrival = 0;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS) {
                    timespec ts;
                    std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    arrival = Nanos{ts.tv_sec} * kNanosPerSecond + ts.tv_nsec - offset;
                }
            if (arrival == 0) arrival = fallback;
            last_datagram_ = arrival;
            udp::endpoint ep;
            const auto& from = slots[i].from;
            if (from.ss_family == AF_INET) {
                const auto* a = reinterpret_cast<const sockaddr_in*>(&from);
                asio::ip::address_v4::bytes_type b;
                std::memcpy(b.data(), &a->sin_addr, 4);
                ep = udp::endpoint(asio::ip::address_v4(b), ntohs(a->sin_port));
            } else if (from.ss_family == AF_INET6) {
                const auto* a = reinterpret_cast<const sockaddr_in6*>(&from);
                asio::ip::address_v6::bytes_type b;
                std::memcpy(b.data(), &a->sin6_addr, 16);
                ep = udp::endpoint(asio::ip::address_v6(b), ntohs(a->sin6_port));
            }
            handler_(std::span<const std::uint8_t>(buf_.data() + std::size_t{static_cast<unsigned>(i)} * kMaxDatagram, msgs[i].msg_len),
                     arrival, ep);
        }
        got_total += static_cast<unsigned>(n);
        if (static_cast<unsigned>(n) < kVec) return;
    }
}

void UdpReceiver::housekeeping(Nanos now) {
    if (!multicast_ || opt_.rejoin_after <= 0) return;
    if (last_datagram_ == 0) last_datagram_ = now;
    if (now - last_datagram_ < opt_.rejoin_after) return;
    if (join(true)) ++counters_.rejoins;
    last_datagram_ = now; // once per silent period
}

std::uint16_t UdpReceiver::local_port() const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
    return ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&a)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

int UdpReceiver::effective_receive_buffer() const {
    int v = 0;
    socklen_t len = sizeof v;
    getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &v, &len);
    return v;
}

Expected<std::unique_ptr<UdpSender>, std::string> UdpSender::open(asio::io_context& io, SendOptions o) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(o.destination.address, ec);
    if (ec) return Unexpected{fmt::format("\"{}\" is not an address", o.destination.address)};
    std::unique_ptr<UdpSender> s(new UdpSender(io));
    s->dest_ = udp::endpoint(addr, o.destination.port);
    s->socket_.open(addr.is_v6() ? udp::v6() : udp::v4(), ec);
    if (ec) return Unexpected{fmt::format("socket: {}", ec.message())};
    const int fd = s->socket_.native_handle();
    unsigned ifindex = 0;
    if (!o.interface.empty()) {
        ifindex = if_nametoindex(o.interface.c_str());
        if (!ifindex) return Unexpected{fmt::format("no network interface \"{}\"", o.interface)};
    }
    const int loop = o.multicast_loop ? 1 : 0;
    if (addr.is_v4()) {
        setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &o.ttl, sizeof o.ttl);
        setsockopt(fd, IPPROTO_IP, IP_TTL, &o.ttl, sizeof o.ttl);
        setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
        if (ifindex) {
            ip_mreqn m{};
            m.imr_ifindex = static_cast<int>(ifindex);
            if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) != 0)
                return Unexpected{fmt::format("multicast interface {}: {}", o.interface, std::strerror(errno))};
        }
    } else {
        setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &o.ttl, sizeof o.ttl);
        setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof loop);
        if (ifindex && setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) != 0)
            return Unexpected{fmt::format("multicast interface {}: {}", o.interface, std::strerror(errno))};
    }
    s->socket_.connect(s->dest_, ec);
    if (ec) return Unexpected{fmt::format("connect {}:{}: {}", o.destination.address, o.destination.port, ec.message())};
    return s;
}

bool UdpSender::send(std::span<const std::uint8_t> d) {
    boost::system::error_code ec;
    socket_.send(asio::buffer(d.data(), d.size()), 0, ec);
    if (ec) {
        ++errors_;
        last_error_ = ec.message();
        return false;
    }
    return true;
}

} // namespace vsnd::rtp
