#include "vsnd/transport/device_runner.hpp"

#include <unistd.h>

#include <stdexcept>

namespace vsnd::transport {

DeviceRunner::DeviceRunner(boost::asio::io_context& io, LoopbackDeviceEnd& end) : end_(end), loop_(io, end.device()) {}

void DeviceRunner::start() {
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        // The eventfd stays owned by the transport; the loop watches a duplicate.
        const int fd = ::dup(end_.kick_fd(q));
        if (fd < 0) throw std::runtime_error("device runner: cannot duplicate a kick fd");
        if (auto w = loop_.watch_kick(static_cast<wire::QueueIndex>(q), fd); !w) {
            ::close(fd);
            throw std::runtime_error("device runner: kick fd: " + w.error());
        }
    }
    loop_.scan_all();
}

void DeviceRunner::stop() { loop_.stop(); }

} // namespace vsnd::transport
