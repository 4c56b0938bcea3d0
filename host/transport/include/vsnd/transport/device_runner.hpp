// Runs a device end on a Boost.Asio event loop in real time: kick eventfds wake it, a steady
// timer (CLOCK_MONOTONIC) fires at the device's next deadline.
#pragma once

#include "vsnd/transport/device_end.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <vector>

namespace vsnd::transport {

class DeviceRunner {
public:
    DeviceRunner(boost::asio::io_context& io, LoopbackDeviceEnd& end);
    void start();
    void stop();

private:
    void arm_kick(unsigned q);
    void reschedule();

    boost::asio::io_context& io_;
    LoopbackDeviceEnd& end_;
    std::vector<std::unique_ptr<boost::asio::posix::stream_descriptor>> kicks_;
    boost::asio::steady_timer timer_;
    bool stopped_ = false;
};

} // namespace vsnd::transport
