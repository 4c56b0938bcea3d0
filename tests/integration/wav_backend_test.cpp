// The WAV backend: exactly the frames played, appended across PREPAREs of one format, a new file
// per format with the old one kept, capture from a file with silence after its end.
#include "../support/sim_rig.hpp"

#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"

#include <unistd.h>

#include <fstream>

namespace vsnd::test {
namespace {

struct WavRig {
    std::filesystem::path dir = std::filesystem::temp_directory_path() / ("vsnd-wav-" + std::to_string(getpid()));
    SimulatedClock clock;
    transport::LoopbackTransport transport;
    std::unique_ptr<backends::WavBackend> backend;
    std::unique_ptr<device::SoundDevice> device;
    std::unique_ptr<transport::SimulatedLink> link;
    std::unique_ptr<driver::SoundDriver> driver;

    WavRig() {
        std::filesystem::create_directories(dir);
        backend = std::make_unique<backends::WavBackend>(clock, dir, dir / "in.wav");
        device = std::make_unique<device::SoundDevice>(device::Topology::standard(1, 1), *backend, clock);
        transport.publish_config(device->config(), 0);
        link = std::make_unique<transport::SimulatedLink>(transport, *device, clock);
        driver = std::make_unique<driver::SoundDriver>(*link, clock);
    }
    ~WavRig() { std::filesystem::remove_all(dir); }

    std::vector<std::uint8_t> read(const std::string& name, wire::PcmFormat f, std::uint32_t rate, std::uint8_t ch) {
        auto r = audio::WavFileReader::open(dir / name);
        EXPECT_TRUE(r) << name;
        if (!r) return {};
        EXPECT_EQ((*r)->rate(), rate);
        EXPECT_EQ((*r)->channels(), ch);
        return (*r)->read_all({f, rate, ch});
    }
};

// Plays `frames` of the signal from `first` on: whole periods, then STOP + RELEASE.
void play(WavRig& rig, const driver::PcmConfig& cfg, std::uint64_t first, std::uint64_t frames) {
    auto& s = rig.driver->stream(0);
    ASSERT_TRUE(s.set_params(cfg));
    ASSERT_TRUE(s.prepare());
    audio::TestSignal sig(cfg.format, cfg.channels);
    std::vector<std::uint8_t> buf(s.period_bytes());
    std::uint64_t done = 0;
    bool started = false;
    while (done < frames || s.in_flight()) {
        if (done < frames && s.writable_bytes() >= buf.size()) {
            sig.fill(buf, first + done);
            done += s.write(buf) / s.frame_bytes();
            continue;
        }
        if (!started) { ASSERT_TRUE(s.start()); started = true; }
        ASSERT_TRUE(rig.driver->wait(kNanosPerSecond));
    }
    ASSERT_TRUE(s.stop());
    ASSERT_TRUE(s.release());
}

TEST(WavBackend, ExactFramesAppendedAndOnePerFormat) {
    WavRig rig;
    ASSERT_TRUE(rig.driver->probe());
    const driver::PcmConfig s16{wire::PcmFormat::S16, 48000, 2, 480, 4, 0};
    play(rig, s16, 0, 4800);
    play(rig, s16, 4800, 9600); // same format: appended
    const driver::PcmConfig s24{wire::PcmFormat::S24, 96000, 6, 960, 4, 0};
    play(rig, s24, 0, 9600);    // new format: new file, the S16 one kept

    audio::TestSignal sig16(wire::PcmFormat::S16, 2), sig24(wire::PcmFormat::S24, 6);
    const auto first = rig.read("stream-0.1.wav", wire::PcmFormat::S16, 48000, 2);
    EXPECT_EQ(first.size(), 14400u * 4);
    EXPECT_FALSE(sig16.compare(first, 0));
    // Timing sidecars follow their WAVs: each PREPARE's runs, counted in file frames.
    std::ifstream t1(rig.dir / "stream-0.1.timing.csv");
    std::string all((std::istreambuf_iterator<char>(t1)), {});
    EXPECT_NE(all.find("# prepare: rate 48000, frames 4800\n0,"), std::string::npos) << all;
    EXPECT_NE(all.find("# prepare: rate 48000, frames 9600\n4800,"), std::string::npos) << all;
    EXPECT_TRUE(std::filesystem::exists(rig.dir / "stream-0.timing.csv"));
    const auto second = rig.read("stream-0.wav", wire::PcmFormat::S24, 96000, 6);
    EXPECT_EQ(second.size(), 9600u * 24);
    EXPECT_FALSE(sig24.compare(second, 0));
}

TEST(WavBackend, CaptureFromFileThenSilence) {
    WavRig rig;
    const device::StreamFormat sf{wire::Direction::Input, wire::PcmFormat::Float, 44100, 2, 0, 0};
    audio::TestSignal sig(wire::PcmFormat::Float, 2);
    {
        auto w = audio::WavFileWriter::open(rig.dir / "in.wav", sf.spec(), false);
        ASSERT_TRUE(w);
        std::vector<std::uint8_t> b(4410 * 8);
        sig.fill(b, 0);
        (*w)->write(b);
    }
    ASSERT_TRUE(rig.driver->probe());
    auto& in = rig.driver->stream(1);
    ASSERT_TRUE(in.set_params({wire::PcmFormat::Float, 44100, 2, 441, 4, 0}));
    ASSERT_TRUE(in.prepare());
    ASSERT_TRUE(in.start());
    std::vector<std::uint8_t> got, buf(in.period_bytes());
    while (got.size() < 8820u * 8) {
        if (!in.readable_bytes()) { ASSERT_TRUE(rig.driver->wait(kNanosPerSecond)); continue; }
        const auto n = in.read(buf);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    ASSERT_TRUE(in.stop());
    ASSERT_TRUE(in.release());
    EXPECT_FALSE(sig.compare(std::span(got).first(4410 * 8), 0));
    EXPECT_TRUE(std::all_of(got.begin() + 4410 * 8, got.end(), [](std::uint8_t b) { return b == 0; }));
}

TEST(WavBackend, MissingCaptureFileIsIoErrAtPrepare) {
    WavRig rig;
    ASSERT_TRUE(rig.driver->probe());
    auto& in = rig.driver->stream(1);
    ASSERT_TRUE(in.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    auto r = in.prepare();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, wire::Status::IoErr);
}

} // namespace
} // namespace vsnd::test
