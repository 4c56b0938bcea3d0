// The driver model under a hostile device: the input is the device. It chooses the config space,
// and for every chain the driver makes available it writes chosen bytes into the writable part
// (status, info items, latency, events), claims a chosen used length (possibly more than the
// buffer) or returns nothing at all, and now and then writes a used entry naming no chain. The
// driver probes, then runs every stream it found through its commands and I/O on a simulated
// clock; whatever the device does, it must not crash, hang or trust a length it was not given.
#include "vsnd/driver/sound_driver.hpp"
#include "vsnd/transport/loopback.hpp"
#include "vsnd/virtq/chain.hpp"

#include <atomic>
#include <cstring>
#include <memory>

using namespace vsnd;

namespace {

class Input {
public:
    Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    std::uint8_t byte() { return at_ < n_ ? d_[at_++] : 0; }
    std::uint32_t u32() {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t{byte()} << (8 * i);
        return v;
    }
    std::span<const std::uint8_t> bytes(std::size_t n) {
        n = std::min(n, n_ - at_);
        std::span<const std::uint8_t> s(d_ + at_, n);
        at_ += n;
        return s;
    }
    bool empty() const { return at_ >= n_; }

private:
    const std::uint8_t* d_;
    std::size_t n_, at_ = 0;
};

// The driver's end of a loopback transport whose device is the fuzz input.
class FuzzDevice final : public transport::LoopbackDriverEnd {
public:
    FuzzDevice(transport::LoopbackTransport& t, SimulatedClock& clock, Input& in)
        : LoopbackDriverEnd(t, clock), t_(t), sim_(clock), in_(in) {
        for (unsigned q = 0; q < wire::kQueueCount; ++q)
            queues_[q] = std::make_unique<virtq::DeviceQueue>(t.guest_memory(), t.device_queue_config(q));
    }

    // Answers what is available (as the input says), then lets the simulated time pass.
    bool wait_interrupt(Nanos timeout) override {
        bool any = false;
        for (unsigned q = 0; q < wire::kQueueCount; ++q) {
            for (int n = 0; n < 64; ++n) {
                auto c = queues_[q]->pop();
                if (!c) break;
                if (!*c) continue;
                any |= answer(q, c->value());
            }
            if (in_.byte() % 16 == 0) bogus_used(q);
        }
        for (unsigned q = 0; q < wire::kQueueCount; ++q)
            if (queues_[q]->should_notify()) any = true;
        sim_.advance_to(sim_.now() + (any ? 100'000 : timeout));
        return any && !in_.empty();
    }

private:
    bool answer(unsigned q, const virtq::Chain& chain) {
        const std::uint8_t how = in_.byte();
        if (how % 8 == 0) return false; // held for good: the driver's timeout must cope
        virtq::ChainWriter w(chain);
        const auto payload = in_.bytes(in_.byte() % 2 ? in_.byte() : in_.u32() % 4096);
        const std::size_t wrote = w.write_at(0, payload);
        std::uint32_t len = static_cast<std::uint32_t>(wrote);
        if (how % 8 == 1) len = in_.u32(); // a length it did not write
        queues_[q]->push(chain.head, len);
        return true;
    }
    // A used entry naming an id the driver never made available, or one it has already reaped.
    void bogus_used(unsigned q) {
        const auto rings = t_.driver_rings(q);
        const std::uint16_t size = t_.layout().queue_size;
        std::uint16_t idx;
        std::memcpy(&idx, rings.used + 2, 2);
        const std::uint32_t id = in_.u32() % (2u * size), len = in_.u32();
        std::memcpy(rings.used + 4 + 8u * (idx % size), &id, 4);
        std::memcpy(rings.used + 8 + 8u * (idx % size), &len, 4);
        std::atomic_thread_fence(std::memory_order_release);
        idx = static_cast<std::uint16_t>(idx + 1);
        std::memcpy(rings.used + 2, &idx, 2);
    }

    transport::LoopbackTransport& t_;
    SimulatedClock& sim_;
    Input& in_;
    std::array<std::unique_ptr<virtq::DeviceQueue>, wire::kQueueCount> queues_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in(data, size);
    SimulatedClock clock;
    transport::LoopbackTransport t(transport::LoopbackLayout{16, 8, true, 1 << 20});
    wire::Config cfg;
    cfg.jacks = in.byte() % 4 == 0 ? in.u32() : in.byte() % 4;
    cfg.streams = in.byte() % 4 == 0 ? in.u32() : in.byte() % 4;
    cfg.chmaps = in.byte() % 4 == 0 ? in.u32() : in.byte() % 4;
    t.publish_config(cfg, 0);
    FuzzDevice dev(t, clock, in);
    driver::SoundDriver::Options opt;
    opt.msg_timeout = 5'000'000;
    opt.event_buffers = 4;
    driver::SoundDriver drv(dev, clock, opt);
    if (!drv.probe()) return 0;
    for (std::uint32_t id = 0; id < drv.stream_count() && !in.empty(); ++id) {
        auto& s = drv.stream(id);
        const driver::PcmConfig pc{wire::PcmFormat::S16, 48000, 2, 64, 4, 0};
        if (!s.set_params(pc) || !s.prepare()) continue;
        std::vector<std::uint8_t> buf(s.period_bytes());
        for (int round = 0; round < 8 && !in.empty(); ++round) {
            if (s.output()) {
                if (s.writable_bytes() >= buf.size()) s.write(buf);
            } else {
                s.read(buf);
            }
            if (round == 1) (void)s.start();
            drv.wait(1'000'000);
            drv.expire(clock.now());
        }
        (void)s.stop();
        (void)s.release();
    }
    return 0;
}
