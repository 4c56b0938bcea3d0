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
    backends::SimulatedCard card{clock, backends::CardModel{}};
    fuzz::DeviceRig dev{clock, card, [] {
        auto t = device::Topology::standard(1, 1);
        t.jacks.push_back({0, 0, 0, true, true});
        return t;
    }()};
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Rig rig;
    fuzz::feed_messages(rig.dev.link, rig.clock, rig.dev.mem, data, size);
    return 0;
}
