// The device model under a hostile driver: each input is a sequence of messages (control, tx,
// rx, event) with arbitrary contents and buffer shapes, sent through real rings. The device keeps
// its state across inputs, so the fuzzer also walks the PCM state machine.
#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/simulated_link.hpp"
#include "message_feeder.hpp"

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
    fuzz::feed_messages(rig.link, rig.clock, rig.mem, data, size);
    return 0;
}
