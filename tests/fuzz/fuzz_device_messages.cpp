// The device model under a hostile driver: each input is a sequence of messages (control, tx,
// rx, event) with arbitrary contents and buffer shapes, sent through real rings. The device keeps
// its state across inputs, so the fuzzer also walks the PCM state machine.
#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/simulated_link.hpp"

#include <cstring>
#include <memory>

using namespace vsnd;

namespace {

struct Rig {
    SimulatedClock clock;
    transport::LoopbackTransport transport{transport::LoopbackLayout{64, 8, true, 1 << 20}};
    backends::SimulatedCard card{clock, backends::CardModel{}};
    device::SoundDevice device{[] {
        auto t = device::Topology::standard(1, 1);
        t.jacks.push_back({0, 0, 0, true, true});
        return t;
    }(), card, clock};
    transport::SimulatedLink link{transport, device, clock};
    driver::DmaBuffer mem;
    Rig() {
        transport.publish_config(device.config(), 0);
        mem = *link.allocate(256 * 1024, 4096);
        link.device_end();
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Rig rig;
    std::size_t at = 0;
    auto take = [&](std::size_t n) {
        std::span<const std::uint8_t> s(data + at, std::min(n, size - at));
        at += s.size();
        return s;
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
            std::memcpy(rig.mem.host + off, part.data(), part.size());
            bufs.push_back({rig.mem.gpa + off, static_cast<std::uint32_t>(part.size()), false});
            off += 4096;
        }
        for (unsigned i = 0; i < nw; ++i) {
            bufs.push_back({rig.mem.gpa + off, static_cast<std::uint32_t>(4 + hdr[3] * 8 * (i + 1)), true});
            off += 4096;
        }
        auto& queue = rig.link.queue(q);
        if (!queue.add(bufs, 0)) break;
        if (queue.publish()) rig.link.kick(q);
        rig.link.wait_interrupt(2'000'000);
        for (unsigned i = 0; i < 4; ++i)
            while (rig.link.queue(i).reap()) {}
    }
    // Let time pass so pending audio is played and completed.
    rig.link.run_until(rig.clock.now() + 50'000'000);
    for (unsigned i = 0; i < 4; ++i)
        while (rig.link.queue(i).reap()) {}
    return 0;
}
