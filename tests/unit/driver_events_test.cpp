// The event-driven driver model: asynchronous control requests with their own buffers and
// deadlines (a late answer never reaches a later request), transactional set_params, guest memory
// reused across renegotiations, a bounded event list, and the driver model running in one event
// loop with a UDP socket while the device runs in real time.
#include "../support/sim_rig.hpp"

#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/transport/device_runner.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <thread>

namespace vsnd::test {
namespace {

// A device nobody runs: the test plays it by hand on the control queue.
struct HandRig {
    SimulatedClock clock;
    transport::LoopbackTransport t;
    std::unique_ptr<transport::LoopbackDriverEnd> end;
    std::unique_ptr<virtq::DeviceQueue> control;
    std::unique_ptr<driver::SoundDriver> drv;
    HandRig() {
        t.publish_config(wire::Config{0, 0, 0}, 0);
        end = std::make_unique<transport::LoopbackDriverEnd>(t, clock);
        control = std::make_unique<virtq::DeviceQueue>(t.guest_memory(), t.device_queue_config(0));
        drv = std::make_unique<driver::SoundDriver>(*end, clock);
    }
    // Answers the next request with `status` and payload bytes 0xAB.
    void answer(wire::Status status) {
        auto c = control->pop();
        ASSERT_TRUE(c && *c);
        virtq::ChainWriter out(c->value());
        const auto hdr = wire::encode(wire::StatusHeader{status});
        out.write_at(0, hdr);
        std::vector<std::uint8_t> payload(out.capacity() - hdr.size(), 0xAB);
        out.write_at(hdr.size(), payload);
        control->push(c->value().head, static_cast<std::uint32_t>(out.capacity()));
    }
};

// Alignment is of the guest-physical address (what the device sees), also when the region itself
// does not start aligned; released buffers are reused.
TEST(DmaAllocator, AlignsGuestPhysicalAddresses) {
    std::vector<std::uint8_t> mem(8192);
    driver::DmaAllocator a(0x10010, mem.data(), 0, mem.size());
    auto b1 = a.allocate(100, 64);
    ASSERT_TRUE(b1);
    EXPECT_EQ(b1->gpa % 64, 0u);
    EXPECT_EQ(b1->host - mem.data(), static_cast<std::ptrdiff_t>(b1->gpa - 0x10010));
    auto b2 = a.allocate(10, 4096);
    ASSERT_TRUE(b2);
    EXPECT_EQ(b2->gpa % 4096, 0u);
    a.release(*b1);
    auto b3 = a.allocate(100, 64);
    ASSERT_TRUE(b3);
    EXPECT_EQ(b3->gpa, b1->gpa) << "the released buffer is reused";
}

TEST(DriverEvents, LateAnswerNeverReachesALaterRequest) {
    HandRig rig;
    int first_calls = 0, second_calls = 0;
    bool first_timed_out = false;
    std::vector<std::uint8_t> second_payload;
    const auto req = wire::encode(wire::QueryInfo{wire::Code::PcmInfo, 0, 1, 32});
    ASSERT_TRUE(rig.drv->control_async(req, 32, [&](const driver::Result& r, std::span<const std::uint8_t>) {
        ++first_calls;
        first_timed_out = !r && r.error().message.find("no answer") != std::string::npos;
    }));
    ASSERT_TRUE(rig.drv->next_timeout().has_value());
    rig.clock.advance_by(kNanosPerSecond); // the message timeout passes unanswered
    rig.drv->expire(rig.clock.now());
    EXPECT_EQ(first_calls, 1);
    EXPECT_TRUE(first_timed_out);
    EXPECT_FALSE(rig.drv->next_timeout().has_value()) << "nothing left to time out";
    EXPECT_EQ(rig.drv->controls_pending(), 1u) << "its buffer waits for the device";

    ASSERT_TRUE(rig.drv->control_async(req, 32, [&](const driver::Result& r, std::span<const std::uint8_t> p) {
        ++second_calls;
        if (r) second_payload.assign(p.begin(), p.end());
    }));
    rig.answer(wire::Status::Ok); // the late answer to the first request
    rig.drv->process_interrupts();
    EXPECT_EQ(first_calls, 1) << "a timed-out request is not answered twice";
    EXPECT_EQ(second_calls, 0) << "the late answer is not the second request's";
    EXPECT_EQ(rig.drv->controls_pending(), 1u);
    rig.answer(wire::Status::Ok);
    rig.drv->process_interrupts();
    ASSERT_EQ(second_calls, 1);
    EXPECT_EQ(second_payload, std::vector<std::uint8_t>(32, 0xAB));
    EXPECT_EQ(rig.drv->controls_pending(), 0u);
}

TEST(DriverEvents, ControlBuffersAreReturnedAndBounded) {
    HandRig rig;
    const std::size_t free_before = rig.end->dma_free_bytes();
    const auto req = wire::encode(wire::PcmHeader{wire::Code::PcmStart, 0});
    // More requests than the control queue has slots: the excess is refused, not queued.
    int sent = 0;
    while (rig.drv->control_async(req, 0, [](const driver::Result&, std::span<const std::uint8_t>) {})) ++sent;
    EXPECT_EQ(sent, rig.t.layout().queue_size);
    for (int i = 0; i < sent; ++i) rig.answer(wire::Status::Ok);
    rig.drv->process_interrupts();
    EXPECT_EQ(rig.drv->controls_pending(), 0u);
    EXPECT_EQ(rig.end->dma_free_bytes(), free_before) << "every control buffer given back";
}

TEST(DriverEvents, SetParamsIsTransactionalAndReusesMemory) {
    SimRig rig;
    rig.probe();
    auto& s = rig.driver.stream(0);
    ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0}));
    const auto period = s.period_bytes();
    // 8 kHz mono U8 is not offered by the standard topology: NOT_SUPP, nothing changes.
    auto bad = s.set_params({wire::PcmFormat::U8, 8000, 1, 4096, 16, 0});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().status, wire::Status::NotSupp);
    EXPECT_EQ(s.period_bytes(), period);
    EXPECT_EQ(s.config().rate, 48000u);
    EXPECT_EQ(s.state(), driver::StreamState::ParamsSet);
    ASSERT_TRUE(s.prepare()) << "the earlier parameters still hold";

    // Renegotiating back and forth a thousand times neither leaks nor exhausts guest memory.
    const std::size_t free_before = rig.link.dma_free_bytes();
    for (int i = 0; i < 1000; ++i) {
        const std::uint32_t frames = i % 2 ? 4800 : 240;
        ASSERT_TRUE(s.set_params({wire::PcmFormat::S32, 48000, 8, frames, 8, 0})) << i;
        ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, 480, 4, 0})) << i;
    }
    EXPECT_GE(rig.link.dma_free_bytes() + 8 * 4 * 4800 * 8 + 4096, free_before);
    ASSERT_TRUE(s.prepare());
    EXPECT_TRUE(play_signal(rig, 0, 4800));
}

TEST(DriverEvents, EventListIsBounded) {
    RigOptions o;
    o.topology = device::Topology::standard(1, 0);
    o.topology.jacks.push_back({});
    SimRig rig(o);
    driver::SoundDriver::Options dopt;
    dopt.max_events = 8;
    driver::SoundDriver drv(rig.link, rig.clock, dopt);
    ASSERT_TRUE(drv.probe());
    for (int i = 0; i < 40; ++i) {
        rig.device.set_jack_connected(0, i % 2 == 1); // starts connected: every call is a change
        drv.wait(1'000'000);
    }
    while (drv.wait(1'000'000)) {}
    EXPECT_EQ(drv.events().size(), 8u);
    EXPECT_EQ(drv.events().size() + drv.events_dropped(), 40u);
}

// A receiver's shape: one io_context serves a UDP socket (packets of audio) and the driver
// model's interrupt fd; START goes out asynchronously once two periods are queued. The device
// runs in real time on its own thread and writes what it plays to a WAV file.
TEST(DriverEvents, DriverModelAndUdpSocketInOneLoop) {
    namespace asio = boost::asio;
    const auto dir = std::filesystem::temp_directory_path() / ("vsnd-driver-udp-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    MonotonicClock clock;
    backends::WavBackend backend(clock, dir, {});
    device::SoundDevice dev(device::Topology::standard(1, 0), backend, clock);
    transport::LoopbackTransport t;
    t.publish_config(dev.config(), 0);
    transport::LoopbackDriverEnd driver_end(t, clock);
    transport::LoopbackDeviceEnd device_end(t, dev);
    asio::io_context device_io;
    transport::DeviceRunner runner(device_io, device_end);
    runner.start();
    std::thread device_thread([&] { device_io.run(); });

    driver::SoundDriver drv(driver_end, clock);
    ASSERT_TRUE(drv.probe());
    auto& s = drv.stream(0);
    const std::uint32_t period = 240, periods = 4, packets = 100; // 5 ms periods, 0.5 s
    ASSERT_TRUE(s.set_params({wire::PcmFormat::S16, 48000, 2, period, periods, 0}));
    ASSERT_TRUE(s.prepare());

    asio::io_context io;
    asio::ip::udp::socket sock(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const auto port = sock.local_endpoint().port();
    asio::posix::stream_descriptor irq(io, ::dup(driver_end.interrupt_fd()));
    asio::steady_timer timeouts(io);
    audio::TestSignal signal(wire::PcmFormat::S16, 2);
    std::vector<std::uint8_t> packet(period * 4);
    std::uint64_t received = 0, written = 0;
    bool start_sent = false, started = false;
    std::string failure;
    std::function<void()> arm_irq, arm_udp, arm_timeouts;
    auto finished = [&] { return written == std::uint64_t{packets} * period && s.in_flight() == 0 && started; };
    auto maybe_done = [&] {
        if (finished() || !failure.empty()) io.stop();
    };
    arm_timeouts = [&] {
        if (auto t = drv.next_timeout()) {
            timeouts.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*t)));
            timeouts.async_wait([&](const boost::system::error_code& ec) {
                if (!ec) drv.expire(clock.now());
            });
        }
    };
    // Packets the ring has no room for wait here, as in a jitter buffer: a late start or a
    // scheduling stall on a loaded machine delays the audio, it never drops or fails it.
    std::deque<std::vector<std::uint8_t>> backlog;
    std::size_t max_backlog = 0;
    auto flush = [&] {
        while (!backlog.empty() && s.writable_bytes() >= backlog.front().size()) {
            written += s.write(backlog.front()) / 4;
            backlog.pop_front();
        }
    };
    arm_irq = [&] {
        irq.async_wait(asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& ec) {
            if (ec) return;
            drv.on_interrupt();
            flush();
            maybe_done();
            arm_irq();
        });
    };
    arm_udp = [&] {
        sock.async_receive(asio::buffer(packet), [&](const boost::system::error_code& ec, std::size_t n) {
            if (ec) return;
            ++received;
            backlog.emplace_back(packet.begin(), packet.begin() + static_cast<std::ptrdiff_t>(n));
            max_backlog = std::max(max_backlog, backlog.size());
            flush();
            if (!start_sent && written >= 2 * period) {
                start_sent = true;
                auto r = s.start_async([&](const driver::Result& res) {
                    started = res.has_value();
                    if (!res) failure = res.error().message;
                });
                if (!r) failure = r.error().message;
                arm_timeouts();
            }
            maybe_done();
            arm_udp();
        });
    };
    arm_irq();
    arm_udp();

    // The sender: another thread, bounded count, paced at 5 ms per packet (loopback only).
    std::thread sender([&] {
        asio::io_context sio;
        asio::ip::udp::socket out(sio, asio::ip::udp::v4());
        const asio::ip::udp::endpoint to(asio::ip::make_address("127.0.0.1"), port);
        std::vector<std::uint8_t> buf(period * 4);
        const Nanos t0 = clock.now();
        for (std::uint32_t i = 0; i < packets; ++i) {
            signal.fill(buf, std::uint64_t{i} * period);
            out.send_to(asio::buffer(buf), to);
            const Nanos next = t0 + static_cast<Nanos>(i + 1) * 5'000'000;
            std::this_thread::sleep_for(std::chrono::nanoseconds(std::max<Nanos>(0, next - clock.now())));
        }
    });
    asio::steady_timer guard(io, std::chrono::seconds(10));
    guard.async_wait([&](const boost::system::error_code& ec) {
        if (!ec) {
            failure = "no progress for 10 s";
            io.stop();
        }
    });
    io.run();
    sender.join();
    EXPECT_EQ(failure, "");
    EXPECT_EQ(received, packets);
    EXPECT_TRUE(backlog.empty());
    RecordProperty("max_backlog_packets", static_cast<int>(max_backlog));
    EXPECT_EQ(s.written_frames(), std::uint64_t{packets} * period);
    EXPECT_EQ(s.queued_frames(), 0u);
    EXPECT_TRUE(started);
    EXPECT_TRUE(s.stop());
    const auto released = s.release();
    EXPECT_TRUE(released) << released.error().message;
    boost::asio::post(device_io, [&] { runner.stop(); device_io.stop(); });
    device_thread.join();
    dev.reset();
    backend.flush();
    auto wav = audio::WavFileReader::open(backend.output_path(0));
    ASSERT_TRUE(wav) << wav.error();
    const auto played = (*wav)->read_all({wire::PcmFormat::S16, 48000, 2});
    EXPECT_EQ(played.size(), std::size_t{packets} * period * 4);
    EXPECT_FALSE(signal.compare(played, 0).has_value()) << "bit-exact through the event loop";
    std::filesystem::remove_all(dir);
}

} // namespace
} // namespace vsnd::test
