// The device model under a hostile driver (the shared message feeder) with a backend that fails
// on demand. The first bytes of each input script the backend: open refused, slow, failing or
// never finishing; failure mid-stream; no room; xruns; a rate ratio of NaN, infinity, zero or
// worse; positions that jump back, far ahead or to odd instants. Whatever it does, the device
// must answer the spec's status, keep serving and never crash or spin.
#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/simulated_link.hpp"
#include "message_feeder.hpp"

#include <cmath>
#include <limits>
#include <memory>

using namespace vsnd;

namespace {

struct Faults {
    std::uint8_t open_mode = 0;  // 0 ready, 1 refused, 2 opening then ready, 3 opening then failed, 4 opening forever
    std::uint8_t open_looks = 0; // open_state() calls before a slow open finishes
    std::uint8_t fail_after_writes = 0; // 0: never fails mid-stream
    std::uint8_t room = 0;       // 0 as the card says, 1 never any, 2 every other look
    std::uint8_t ratio = 0;      // index into kRatios
    std::uint8_t xrun_every = 0; // one more xrun every n position() calls (0: never)
    std::uint8_t position = 0;   // 0 honest, 1 frames back, 2 far ahead, 3 instant far off
};

constexpr double kRatios[] = {1.0, 1.0001, 0.9, 1.2, 0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                              std::numeric_limits<double>::infinity(), 1e300, 5e-324};

class FaultyStream final : public device::BackendStream {
public:
    FaultyStream(std::unique_ptr<device::BackendStream> inner, const Faults& f) : inner_(std::move(inner)), f_(f) {}
    void set_waker(device::Waker w) override { inner_->set_waker(std::move(w)); }
    device::OpenState open_state() override {
        if (f_.open_mode < 2) return inner_->open_state();
        if (f_.open_mode == 4 || looks_++ < f_.open_looks) return {device::OpenState::Opening, {}};
        if (f_.open_mode == 3) return {device::OpenState::Failed, "scripted open failure"};
        return inner_->open_state();
    }
    void start() override { inner_->start(); }
    void stop() override { inner_->stop(); }
    std::size_t writable_bytes() override {
        if (f_.room == 1 || (f_.room == 2 && (room_looks_++ % 2))) return 0;
        return inner_->writable_bytes();
    }
    void write(std::span<const std::uint8_t> b) override {
        ++writes_;
        inner_->write(b);
    }
    std::size_t readable_bytes() override { return inner_->readable_bytes(); }
    void read(std::span<std::uint8_t> out) override { inner_->read(out); }
    device::Position position() override {
        auto p = inner_->position();
        p.rate_ratio = kRatios[f_.ratio % std::size(kRatios)];
        if (f_.xrun_every && ++positions_ % f_.xrun_every == 0) ++xruns_;
        switch (f_.position % 4) {
        case 1: p.frames = p.frames > 1000 ? p.frames - 1000 : 0; break;
        case 2: p.frames += std::uint64_t{1} << 40; break;
        case 3: p.when = positions_ % 2 ? std::numeric_limits<Nanos>::max() / 2 : std::numeric_limits<Nanos>::min() / 2; break;
        default: break;
        }
        return p;
    }
    std::optional<Nanos> next_wakeup() override { return inner_->next_wakeup(); }
    std::uint64_t xruns() const override { return inner_->xruns() + xruns_; }
    bool failed() const override { return (f_.fail_after_writes && writes_ >= f_.fail_after_writes) || inner_->failed(); }

private:
    std::unique_ptr<device::BackendStream> inner_;
    Faults f_;
    unsigned looks_ = 0, room_looks_ = 0;
    std::uint64_t writes_ = 0, positions_ = 0, xruns_ = 0;
};

class FaultyBackend final : public device::AudioBackend {
public:
    explicit FaultyBackend(device::AudioBackend& inner) : inner_(inner) {}
    std::string name() const override { return "faulty"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t id, const device::StreamFormat& fmt) override {
        if (faults.open_mode == 1) return Unexpected{std::string("scripted: device busy")};
        auto s = inner_.open(id, fmt);
        if (!s) return Unexpected{s.error()};
        return std::unique_ptr<device::BackendStream>(std::make_unique<FaultyStream>(std::move(*s), faults));
    }
    Faults faults;

private:
    device::AudioBackend& inner_;
};

struct Rig {
    SimulatedClock clock;
    backends::SimulatedCard card{clock, backends::CardModel{}};
    FaultyBackend backend{card};
    fuzz::DeviceRig dev{clock, backend, device::Topology::standard(1, 1)};
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Rig rig;
    if (size < 7) return 0;
    rig.backend.faults = Faults{static_cast<std::uint8_t>(data[0] % 5), data[1], data[2], static_cast<std::uint8_t>(data[3] % 3),
                                data[4], data[5], data[6]};
    fuzz::feed_messages(rig.dev.link, rig.clock, rig.dev.mem, data, size, 7);
    // A PREPARE held by an open that never finishes is answered at the open timeout.
    if (rig.backend.faults.open_mode == 4) rig.dev.link.run_until(rig.clock.now() + device::SoundDevice::kOpenTimeout + 10'000'000);
    return 0;
}
