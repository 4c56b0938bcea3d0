// The hostile driver the device fuzzers share: the input is a sequence of messages (queue,
// readable parts with arbitrary bytes, writable parts of chosen sizes) sent through real rings of
// a simulated link, with the device answering on the simulated clock.
#pragma once

#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/simulated_link.hpp"

#include <cstring>
#include <span>
#include <vector>

namespace vsnd::fuzz {

// A device on `backend` behind a simulated link with 1 MiB of rings and 256 KiB of buffers,
// attached, its config published.
struct DeviceRig {
    DeviceRig(SimulatedClock& clock, device::AudioBackend& backend, device::Topology topology)
        : device(std::move(topology), backend, clock), link(transport, device, clock) {
        transport.publish_config(device.config(), 0);
        mem = *link.allocate(256 * 1024, 4096);
        link.device_end();
    }
    transport::LoopbackTransport transport{transport::LoopbackLayout{64, 8, true, 1 << 20}};
    device::SoundDevice device;
    transport::SimulatedLink link;
    driver::DmaBuffer mem;
};

// Sends the messages of `data` (consumed from `at`), then lets 50 ms pass so pending audio plays
// and completes; reaps everything the device returned.
inline void feed_messages(transport::SimulatedLink& link, SimulatedClock& clock, const driver::DmaBuffer& mem,
                          const std::uint8_t* data, std::size_t size, std::size_t at = 0) {
    auto take = [&](std::size_t n) {
        std::span<const std::uint8_t> s(data + at, std::min(n, size - at));
        at += s.size();
        return s;
    };
    auto reap_all = [&] {
        for (unsigned i = 0; i < 4; ++i)
            while (link.queue(i).reap()) {}
    };
    while (at + 4 <= size) {
        // [queue][#readable parts][#writable parts][length scale] then the readable bytes.
        const auto hdr = take(4);
        const unsigned q = hdr[0] % 4;
        const unsigned nr = hdr[1] % 4, nw = 1 + hdr[2] % 4;
        std::vector<virtq::DriverBuffer> bufs;
        std::size_t off = 0;
        for (unsigned i = 0; i < nr; ++i) {
            const auto part = take(1 + (hdr[3] % 64) * (i + 1));
            std::memcpy(mem.host + off, part.data(), part.size());
            bufs.push_back({mem.gpa + off, static_cast<std::uint32_t>(part.size()), false});
            off += 4096;
        }
        for (unsigned i = 0; i < nw; ++i) {
            bufs.push_back({mem.gpa + off, static_cast<std::uint32_t>(4 + hdr[3] * 8 * (i + 1)), true});
            off += 4096;
        }
        auto& queue = link.queue(q);
        if (!queue.add(bufs, 0)) break;
        if (queue.publish()) link.kick(q);
        link.wait_interrupt(2'000'000);
        reap_all();
    }
    link.run_until(clock.now() + 50'000'000);
    reap_all();
}

} // namespace vsnd::fuzz
