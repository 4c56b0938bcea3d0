// ClockFallbackStream: until the inner stream fails it is the inner stream; after, a null stream
// paced by the clock from where the inner one was, so accepted audio still "plays" on time.
#include "vsnd/backends/clock_fallback_stream.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace vsnd::test {
namespace {

// Plays at the nominal rate from start() on and fails when the test says so.
class DyingStream final : public device::BackendStream {
public:
    explicit DyingStream(const Clock& clock) : clock_(clock) {}
    void start() override { running_ = true; since_ = clock_.now(); ++starts; }
    void stop() override { running_ = false; }
    std::size_t writable_bytes() override { return 4096; }
    void write(std::span<const std::uint8_t> b) override { taken += b.size(); }
    std::size_t readable_bytes() override { return captured; }
    void read(std::span<std::uint8_t> out) override {
        std::fill(out.begin(), out.end(), std::uint8_t{0x7f});
        captured -= out.size();
    }
    device::Position position() override { return {0, since_, running_}; }
    std::optional<Nanos> next_wakeup() override { return std::nullopt; }
    std::uint64_t xruns() const override { return 0; }
    bool failed() const override { return dead; }

    bool dead = false;
    std::size_t taken = 0, captured = 0;
    int starts = 0;

private:
    const Clock& clock_;
    bool running_ = false;
    Nanos since_ = 0;
};

device::StreamFormat s16(wire::Direction d) { return {d, wire::PcmFormat::S16, 48000, 2, 1920, 7680}; }

TEST(ClockFallback, PlaybackCarriesOnFromTheFailurePointAtTheNominalRate) {
    SimulatedClock clock;
    auto inner = std::make_unique<DyingStream>(clock);
    auto& d = *inner;
    backends::ClockFallbackStream s(clock, s16(wire::Direction::Output), std::move(inner));
    std::vector<std::uint8_t> buf(4800 * 4); // 100 ms
    s.write(std::span(buf).first(4096));
    s.start();
    clock.advance_to(clock.now() + 10'000'000); // 480 frames played by the inner stream
    d.dead = true;
    EXPECT_TRUE(s.failed());
    auto p = s.position();
    EXPECT_EQ(p.frames, 480u) << "the position the inner stream had reached";
    EXPECT_TRUE(p.running);
    EXPECT_TRUE(s.paced_by_clock());
    // 1024 frames were taken; 544 left, played in 11.33 ms; then it holds at what it was given.
    clock.advance_to(clock.now() + 10'000'000);
    EXPECT_EQ(s.position().frames, 960u);
    ASSERT_TRUE(s.next_wakeup().has_value());
    clock.advance_to(clock.now() + 10'000'000);
    p = s.position();
    EXPECT_EQ(p.frames, 1024u);
    EXPECT_FALSE(p.running) << "nothing left: like an underrun, it stops advancing";
    EXPECT_FALSE(s.next_wakeup().has_value());
    // Room as a card with the guest's ring: all of it, since everything was "played".
    EXPECT_EQ(s.writable_bytes(), 7680u);
    s.write(std::span(buf).first(7680));
    EXPECT_EQ(d.taken, 4096u) << "nothing reaches the dead stream";
    EXPECT_EQ(s.writable_bytes(), 0u);
    clock.advance_to(clock.now() + 5'000'000); // a stopped clock holds
    s.stop();
    const auto held = s.position().frames;
    EXPECT_EQ(held, 1024u + 240u) << "frames given after running dry play from their arrival on";
    clock.advance_to(clock.now() + 50'000'000);
    EXPECT_EQ(s.position().frames, held);
    EXPECT_FALSE(s.next_wakeup().has_value());
    s.start();
    EXPECT_EQ(d.starts, 1) << "the dead stream is not restarted";
    clock.advance_to(clock.now() + 40'000'000);
    EXPECT_EQ(s.position().frames, std::min<std::uint64_t>(held + 1920, 1024 + 1920));
}

TEST(ClockFallback, CaptureDeliversWhatWasLeftThenSilenceAtTheRate) {
    SimulatedClock clock;
    auto inner = std::make_unique<DyingStream>(clock);
    auto& d = *inner;
    backends::ClockFallbackStream s(clock, s16(wire::Direction::Input), std::move(inner));
    s.start();
    d.captured = 400; // 100 frames captured before it died
    d.dead = true;
    EXPECT_EQ(s.readable_bytes(), 400u);
    clock.advance_to(clock.now() + 10'000'000); // 480 frames of silence due
    ASSERT_EQ(s.readable_bytes(), 400u + 1920u);
    std::vector<std::uint8_t> out(2320);
    s.read(out);
    EXPECT_TRUE(std::all_of(out.begin(), out.begin() + 400, [](auto b) { return b == 0x7f; }));
    EXPECT_TRUE(std::all_of(out.begin() + 400, out.end(), [](auto b) { return b == 0; }));
    EXPECT_EQ(s.readable_bytes(), 0u);
    clock.advance_to(clock.now() + 1'000'000);
    EXPECT_EQ(s.readable_bytes(), 48u * 4);
}

TEST(ClockFallback, HealthyStreamIsPassedThrough) {
    SimulatedClock clock;
    auto inner = std::make_unique<DyingStream>(clock);
    auto& d = *inner;
    backends::ClockFallbackStream s(clock, s16(wire::Direction::Output), std::move(inner));
    std::vector<std::uint8_t> buf(100);
    s.write(buf);
    s.start();
    EXPECT_EQ(d.taken, 100u);
    EXPECT_EQ(d.starts, 1);
    EXPECT_EQ(s.writable_bytes(), 4096u);
    EXPECT_FALSE(s.paced_by_clock());
    EXPECT_FALSE(s.failed());
}

} // namespace
} // namespace vsnd::test
