// Runs a loopback device end in real time on the project's one device loop (loop::DeviceLoop):
// the loopback transport's kick eventfds feed it. io_context thread only; nothing blocks.
#pragma once

#include "vsnd/loop/device_loop.hpp"
#include "vsnd/transport/device_end.hpp"

#include <boost/asio/io_context.hpp>

namespace vsnd::transport {

class DeviceRunner {
public:
    DeviceRunner(boost::asio::io_context& io, LoopbackDeviceEnd& end);
    // Watches the kicks and scans every queue once (the driver may have queued before).
    void start();
    void stop();

private:
    LoopbackDeviceEnd& end_;
    loop::DeviceLoop loop_;
};

} // namespace vsnd::transport
