// Device-side cost of one period-sized tx message (descriptor chain walk, copy to the backend,
// status write and used-ring completion) next to a plain memcpy of the same bytes.
// The driver side (adding the chain, reaping) is in the loop too but costs a few stores; the
// RoundTrip/Memcpy ratio is what the device layer adds to copying the audio.
#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/device_end.hpp"

#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

using namespace vsnd;

namespace {

// A backend that takes everything at once (one memcpy into its buffer) and calls it played, so
// the benchmark measures the device, not a clock.
class SinkStream final : public device::BackendStream {
public:
    explicit SinkStream(std::size_t bytes) : buf_(bytes) {}
    void start() override {}
    void stop() override {}
    std::size_t writable_bytes() override { return buf_.size(); }
    void write(std::span<const std::uint8_t> b) override {
        if (at_ + b.size() > buf_.size()) at_ = 0;
        std::memcpy(buf_.data() + at_, b.data(), b.size());
        at_ += b.size();
        frames_ += b.size();
    }
    std::size_t readable_bytes() override { return 0; }
    void read(std::span<std::uint8_t>) override {}
    device::Position position() override { return {frames_ / 4, 0, false}; }
    std::optional<Nanos> next_wakeup() override { return std::nullopt; }
    std::uint64_t xruns() const override { return 0; }

private:
    std::vector<std::uint8_t> buf_;
    std::size_t at_ = 0;
    std::uint64_t frames_ = 0;
};

class SinkBackend final : public device::AudioBackend {
public:
    std::string name() const override { return "sink"; }
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t, const device::StreamFormat& f) override {
        return std::unique_ptr<device::BackendStream>(std::make_unique<SinkStream>(std::size_t{f.period_bytes} * 8));
    }
};

void control(transport::LoopbackDriverEnd& drv, transport::LoopbackDeviceEnd& dev, driver::DmaBuffer& mem,
             std::span<const std::uint8_t> req) {
    std::memcpy(mem.host, req.data(), req.size());
    virtq::DriverBuffer b[] = {{mem.gpa, static_cast<std::uint32_t>(req.size()), false}, {mem.gpa + 64, 4, true}};
    drv.queue(0).add(b, 0);
    drv.queue(0).publish();
    dev.device().on_kick(wire::QueueIndex::Control);
    while (drv.queue(0).reap()) {}
}

void BM_TxMessage(benchmark::State& state) {
    const auto period = static_cast<std::uint32_t>(state.range(0));
    const auto piece = static_cast<std::uint32_t>(state.range(1)); // descriptor size for the payload
    SimulatedClock clock;
    SinkBackend backend;
    device::SoundDevice dev(device::Topology::standard(1, 0), backend, clock);
    transport::LoopbackTransport t;
    t.publish_config(dev.config(), 0);
    transport::LoopbackDriverEnd drv(t, clock);
    transport::LoopbackDeviceEnd end(t, dev);
    auto mem = *drv.allocate(1 << 20, 4096);
    control(drv, end, mem, wire::encode(wire::PcmSetParams{0, period * 4, period, 0, 2, wire::PcmFormat::S16, wire::PcmRate::R48000}));
    control(drv, end, mem, wire::encode(wire::PcmHeader{wire::Code::PcmPrepare, 0}));
    control(drv, end, mem, wire::encode(wire::PcmHeader{wire::Code::PcmStart, 0}));

    const std::uint64_t data = mem.gpa + 4096;
    std::memset(mem.host + 4096, 0x5a, period);
    const auto xfer = wire::encode(wire::PcmXfer{0});
    std::memcpy(mem.host + 128, xfer.data(), 4);
    std::vector<virtq::DriverBuffer> bufs{{mem.gpa + 128, 4, false}};
    for (std::uint32_t off = 0; off < period; off += piece) bufs.push_back({data + off, std::min(piece, period - off), false});
    bufs.push_back({mem.gpa + 192, 8, true});

    for (auto _ : state) {
        drv.queue(2).add(bufs, 1);
        drv.queue(2).publish();
        dev.on_kick(wire::QueueIndex::Tx);
        auto u = drv.queue(2).reap();
        benchmark::DoNotOptimize(u);
    }
    if (dev.stats(0).messages_completed < static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("messages not completed");
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * period);
}

void BM_Memcpy(benchmark::State& state) {
    const auto period = static_cast<std::size_t>(state.range(0));
    std::vector<std::uint8_t> src(period, 0x5a), dst(period * 8);
    std::size_t at = 0;
    for (auto _ : state) {
        if (at + period > dst.size()) at = 0;
        std::memcpy(dst.data() + at, src.data(), period);
        at += period;
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(period));
}

// 10 ms of S16 stereo at 48 kHz (1920 B), 20 ms (3840 B), 80 ms (15360 B); payload in one
// descriptor or in 4 KiB pages as Linux maps it.
BENCHMARK(BM_TxMessage)->ArgNames({"period", "desc"})->Args({1920, 1920})->Args({3840, 4096})->Args({15360, 4096})->Args({15360, 15360});
BENCHMARK(BM_Memcpy)->ArgName("period")->Arg(1920)->Arg(3840)->Arg(15360);

} // namespace

BENCHMARK_MAIN();
