// The one event loop that runs a SoundDevice, whatever the transport: on a Boost.Asio io_context
// it waits on the four kick eventfds, on the backends' wake-up eventfd and on a steady timer
// (CLOCK_MONOTONIC) set to the device's next deadline, and calls the device's on_kick() and
// process(). vsnd-host's vhost-user connection and the loopback transport both drive their
// device through it.
//
// Threads: every method, and every handler, runs on the io_context's thread; none blocks. The
// waker handed to the device (and from there to backend streams) is the only part used from
// other threads: it signals an eventfd.
#pragma once

#include "vsnd/device/sound_device.hpp"
#include "vsnd/event_fd.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace vsnd::loop {

class DeviceLoop {
public:
    // How late the deadline timer fired (the device's process() after its deadline): the host's
    // scheduler holding vsnd-host back, which delays completions and so the guest.
    struct Lateness {
        std::uint64_t wakeups = 0;
        std::int64_t max_ns = 0;
        std::uint64_t over_10ms = 0; // a tenth of a typical 100 ms guest buffer
    };

    // A kick fd that cannot be read (not an eventfd, closed, broken): it is no longer watched.
    using KickError = std::function<void(wire::QueueIndex, const std::string& why)>;

    // Installs itself as the device's waker: streams opened from then on wake this loop (those
    // already open keep the waker they got at PREPARE, so a device changes loops only after a
    // reset, as a vhost-user connection does). The device must outlive the loop.
    DeviceLoop(boost::asio::io_context& io, device::SoundDevice& device);
    ~DeviceLoop();
    DeviceLoop(const DeviceLoop&) = delete;
    DeviceLoop& operator=(const DeviceLoop&) = delete;

    void on_kick_error(KickError handler) { kick_error_ = std::move(handler); }

    // Watches `fd` as queue q's doorbell; on success the loop owns it (closes it when replaced,
    // dropped or destroyed). An fd epoll cannot watch (a regular file) is refused and stays the
    // caller's. Kicks while the device is not attached are read and ignored: the caller scans
    // every ring when it attaches (scan_all()).
    Expected<Done, std::string> watch_kick(wire::QueueIndex q, int fd);
    void drop_kick(wire::QueueIndex q);
    // Every queue as if kicked, then reschedule(): after attach, when a ring may already hold
    // requests nobody kicked for (Linux fills the event queue before DRIVER_OK).
    void scan_all();
    // Re-arms the deadline timer from device.next_deadline(); call after anything changed the
    // device outside the loop's own handlers. Nothing happens while the device is detached.
    void reschedule();
    // Cancels every wait; the loop does nothing more until watch_kick()/reschedule(). Idempotent.
    void stop();
    const Lateness& lateness() const { return lateness_; }

private:
    struct Kick {
        std::unique_ptr<boost::asio::posix::stream_descriptor> fd;
        std::uint64_t generation = 0; // tells a stale completion from the current watcher's
    };

    void arm_kick(unsigned q);
    void on_kick(unsigned q);
    void arm_wake();
    void run_device();

    boost::asio::io_context& io_;
    device::SoundDevice& device_;
    std::array<Kick, wire::kQueueCount> kicks_;
    std::shared_ptr<EventFd> wake_; // the waker holds it weakly: it may outlive the loop in a stream
    boost::asio::posix::stream_descriptor wake_watch_;
    boost::asio::steady_timer timer_;
    KickError kick_error_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    bool stopped_ = false;
    Lateness lateness_;
};

} // namespace vsnd::loop
