// UDP for RTP on Boost.Asio, in the receiver's one loop: a receiving socket (unicast or
// multicast, IPv4 or IPv6, bound to an interface by name, SO_REUSEADDR so several receivers
// share a group, a chosen receive buffer, kernel receive timestamps) and a sending one (TTL,
// multicast interface and loopback). A multicast source that falls silent leaves and joins its
// group again, for routers and switches whose membership has gone stale.
//
// Threads: everything runs on the io_context's thread; handlers are called there and must not
// block. A wake-up reads at most a bounded batch of datagrams, so a flood cannot starve the sink.
#pragma once

#include "vsnd/expected.hpp"
#include "vsnd/timing/clock.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <functional>
#include <optional>
#include <span>
#include <string>

namespace vsnd::rtp {

struct Endpoint {
    std::string address; // empty: any (receiving) — IPv4 or IPv6 literal
    std::uint16_t port = 0;
};
// "PORT", "ADDRESS PORT", "ADDRESS:PORT" or "[V6]:PORT".
Expected<Endpoint, std::string> parse_endpoint(std::string_view text);

struct ReceiveOptions {
    Endpoint local;               // a multicast group, a local address, or any
    std::string interface;        // joins on (and binds to) this interface
    int receive_buffer = 0;       // SO_RCVBUF bytes; 0: the system's
    bool reuse_address = true;
    Nanos rejoin_after = 10 * kNanosPerSecond; // multicast: rejoin after this long silent; 0: never
    // Wake the loop for every datagram. Off, the owner reads with poll() when it needs them (the
    // receiver: at each sink period) — the kernel timestamps keep every arrival time exact, and
    // the loop wakes per period instead of per packet (1 ms packets: 1000 wake-ups a second).
    bool wake_per_datagram = true;
};

struct ReceiveCounters {
    std::uint64_t datagrams = 0, truncated = 0, errors = 0, rejoins = 0;
};

class UdpReceiver {
public:
    // Called with each datagram and its arrival (kernel timestamp, CLOCK_MONOTONIC).
    using Handler = std::function<void(std::span<const std::uint8_t>, Nanos arrival, const boost::asio::ip::udp::endpoint& from)>;

    static Expected<std::unique_ptr<UdpReceiver>, std::string> open(boost::asio::io_context& io, ReceiveOptions o,
                                                                    Handler handler);
    ~UdpReceiver();
    bool multicast() const { return multicast_; }
    const ReceiveCounters& counters() const { return counters_; }
    std::uint16_t local_port() const;
    int effective_receive_buffer() const;
    // Called now and then (the loop's housekeeping): rejoins a silent group.
    void housekeeping(Nanos now);
    // Reads what has arrived (a bounded batch), calling the handler for each.
    void poll() { drain(); }

private:
    UdpReceiver(boost::asio::io_context& io, ReceiveOptions o, Handler h);
    Expected<Done, std::string> setup();
    Expected<Done, std::string> join(bool leave_first);
    void arm();
    void drain();

    ReceiveOptions opt_;
    Handler handler_;
    // Set up through Asio, then released from its reactor: a socket Asio holds wakes the loop
    // for every datagram even with nothing waiting on it. With wake_per_datagram a descriptor
    // waiter watches it; otherwise only poll() reads it.
    boost::asio::ip::udp::socket socket_;
    int fd_ = -1;
    std::unique_ptr<boost::asio::posix::stream_descriptor> waiter_;
    boost::asio::ip::address group_;
    bool multicast_ = false;
    unsigned ifindex_ = 0;
    Nanos last_datagram_ = 0;
    std::vector<std::uint8_t> buf_;
    ReceiveCounters counters_;
};

struct SendOptions {
    Endpoint destination;
    std::string interface;  // multicast: send on this interface
    int ttl = 1;            // multicast TTL / hop limit (and unicast TTL)
    bool multicast_loop = true;
};

// A connected sending socket (blocking sends of small datagrams; the sender has nothing else to do).
class UdpSender {
public:
    static Expected<std::unique_ptr<UdpSender>, std::string> open(boost::asio::io_context& io, SendOptions o);
    // False with the reason kept in last_error() on a failed send (counted, never fatal).
    bool send(std::span<const std::uint8_t> datagram);
    boost::asio::ip::udp::endpoint local() const { return socket_.local_endpoint(); }
    const boost::asio::ip::udp::endpoint& destination() const { return dest_; }
    std::uint64_t errors() const { return errors_; }
    const std::string& last_error() const { return last_error_; }

private:
    UdpSender(boost::asio::io_context& io) : socket_(io) {}
    boost::asio::ip::udp::socket socket_;
    boost::asio::ip::udp::endpoint dest_;
    std::uint64_t errors_ = 0;
    std::string last_error_;
};

// CLOCK_REALTIME (a kernel receive timestamp) -> CLOCK_MONOTONIC, by the offset between the two now.
Nanos realtime_minus_monotonic();
Nanos realtime_to_monotonic(Nanos realtime);

} // namespace vsnd::rtp
