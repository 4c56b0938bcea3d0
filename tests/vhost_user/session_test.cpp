// One backend connection driven over a socketpair by a scripted front-end that replays, message
// by message, what QEMU 10.0.2 sends for vhost-user-snd-pci (docs/vhost-user.md §3, Phases A-D
// and a guest reset), with memfd guest memory and eventfds. Every reply is checked byte by byte;
// the "guest" side runs real split rings in the memfd.
#include "support.hpp"

#include "vsnd/backends/null_backend.hpp"
#include "vsnd/virtq/driver_queue.hpp"

#include <gtest/gtest.h>

namespace vsnd::test {
namespace {

using namespace vsnd::vhost_user;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kUser = 0x7f3a00000000; // where "QEMU" has guest RAM mapped
constexpr std::size_t kGuestBytes = 8u << 20;
constexpr const char* kMemName = "vsnd-session-guest";

// Guest RAM: one memfd, passed as QEMU does as two regions around the legacy VGA hole.
struct Guest {
    Guest() : memfd(::memfd_create(kMemName, MFD_CLOEXEC)) {
        EXPECT_EQ(::ftruncate(memfd.get(), kGuestBytes), 0);
        mem = static_cast<std::uint8_t*>(::mmap(nullptr, kGuestBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0));
    }
    ~Guest() { ::munmap(mem, kGuestBytes); }
    MemoryTable table() const {
        return {{RegionDesc{0x0, 0xa0000, kUser, 0x0}, RegionDesc{0xc0000, kGuestBytes - 0xc0000, kUser + 0xc0000, 0xc0000}}};
    }
    UniqueFd memfd;
    std::uint8_t* mem;
};

// The guest's view of the four rings it configured at one device start.
struct Rings {
    static constexpr std::uint16_t kSize = 64;
    std::uint64_t base; // gpa of queue 0's descriptor table
    std::array<std::unique_ptr<virtq::DriverQueue>, 4> q;
    std::array<UniqueFd, 4> kick, call;
    std::uint64_t desc(unsigned i) const { return base + i * 0x1000; }
    std::uint64_t avail(unsigned i) const { return desc(i) + 0x400; } // QEMU's observed layout
    std::uint64_t used(unsigned i) const { return desc(i) + 0x4c0; }

    Rings(Guest& g, std::uint64_t gpa) : base(gpa) {
        for (unsigned i = 0; i < 4; ++i) {
            const std::uint64_t ind = gpa + 0x10000 + i * virtq::indirect_area_bytes(kSize, 8);
            q[i] = std::make_unique<virtq::DriverQueue>(
                virtq::RingAddresses{g.mem + desc(i), g.mem + avail(i), g.mem + used(i)}, kSize, true,
                virtq::IndirectArea{ind, g.mem + ind, 8});
            kick[i] = make_eventfd(1); // QEMU's host notifiers start out signalled
            call[i] = make_eventfd();
        }
    }
};

// Little-endian byte strings, written out so every reply byte is visible in the test.
Bytes le32(std::uint32_t v) { return {std::uint8_t(v), std::uint8_t(v >> 8), std::uint8_t(v >> 16), std::uint8_t(v >> 24)}; }
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}
Bytes reply(std::uint32_t request, const Bytes& payload) {
    return cat({le32(request), {0x05, 0x00, 0x00, 0x00}, le32(static_cast<std::uint32_t>(payload.size())), payload});
}
const Bytes kAck0 = {0, 0, 0, 0, 0, 0, 0, 0};
const Bytes kAck1 = {1, 0, 0, 0, 0, 0, 0, 0};

class Session : public ::testing::Test {
protected:
    void SetUp() override {
        guard.emplace(io.get_executor());
        thread = std::thread([this] { io.run(); });
        // Asio creates its reactor (epoll, eventfd, timerfd) with the first I/O object.
        boost::asio::steady_timer reactor_now(io);
        baseline_fds = count_open_fds();
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        qemu = std::make_unique<RawPeer>(sv[1]);
        boost::asio::post(io, [this, fd = sv[0]] {
            conn = std::make_shared<Connection>(io, Connection::Socket(io, boost::asio::local::stream_protocol(), fd), device,
                                                log, 1);
            conn->start([this] { closed_posted = true; });
        });
    }
    void TearDown() override {
        qemu.reset();
        EXPECT_TRUE(eventually([&] { return closed_posted.load(); })) << "connection did not end at EOF";
        boost::asio::post(io, [this] { conn.reset(); guard.reset(); });
        thread.join();
        EXPECT_EQ(count_open_fds(), baseline_fds) << "fds leaked\n" << sink->dump();
        EXPECT_EQ(count_mappings(kMemName), 0) << "guest memory still mapped";
    }
    bool attached() {
        std::promise<bool> p;
        boost::asio::post(io, [&] { p.set_value(conn && conn->device_attached()); });
        return p.get_future().get();
    }

    // Phase A: realize (vhost_dev_init). Replies checked byte by byte.
    void phase_a(std::array<UniqueFd, 4>& masked, std::array<UniqueFd, 4>& err) {
        ASSERT_TRUE(qemu->send(Request::GetFeatures, 0x1, {}));
        EXPECT_EQ(qemu->read(20), reply(1, {0x00, 0x00, 0x00, 0x70, 0x01, 0x00, 0x00, 0x00})); // 0x1_7000_0000
        ASSERT_TRUE(qemu->send(Request::GetProtocolFeatures, 0x1, {}));
        EXPECT_EQ(qemu->read(20), reply(15, {0x09, 0x02, 0, 0, 0, 0, 0, 0})); // MQ | REPLY_ACK | CONFIG
        ASSERT_TRUE(qemu->send(Request::SetProtocolFeatures, 0x1, encode_u64(0x209)));
        ASSERT_TRUE(qemu->send(Request::GetQueueNum, 0x1, {}));
        EXPECT_EQ(qemu->read(20), reply(17, {4, 0, 0, 0, 0, 0, 0, 0}));
        ASSERT_TRUE(qemu->send(Request::SetOwner, 0x1, {}));
        ASSERT_TRUE(qemu->send(Request::GetFeatures, 0x1, {}));
        EXPECT_EQ(qemu->read(20), reply(1, {0x00, 0x00, 0x00, 0x70, 0x01, 0x00, 0x00, 0x00}));
        for (std::uint32_t q = 0; q < 4; ++q) {
            masked[q] = make_eventfd();
            err[q] = make_eventfd();
            ASSERT_TRUE(qemu->send(Request::SetVringCall, 0x1, encode_u64(q), {masked[q].get()}));
            ASSERT_TRUE(qemu->send(Request::SetVringErr, 0x1, encode_u64(q), {err[q].get()}));
        }
        EXPECT_TRUE(qemu->quiet()) << "no reply expected";
    }

    // Phase B: DRIVER_OK (vhost_dev_start), then vub_start's fresh call fds.
    void phase_b(Guest& g, Rings& r, std::array<UniqueFd, 4>& unmasked) {
        ASSERT_TRUE(qemu->send(Request::SetFeatures, 0x1, encode_u64(0x170000000)));
        ASSERT_TRUE(qemu->send(Request::SetMemTable, 0x9, encode(g.table()), {g.memfd.get(), g.memfd.get()}));
        EXPECT_EQ(qemu->read(20), cat({{0x05, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0}, kAck0}));
        for (std::uint32_t q = 0; q < 4; ++q) {
            ASSERT_TRUE(qemu->send(Request::SetVringNum, 0x1, encode(VringState{q, 64})));
            ASSERT_TRUE(qemu->send(Request::SetVringBase, 0x1, encode(VringState{q, 0})));
            ASSERT_TRUE(qemu->send(Request::SetVringAddr, 0x1,
                                   encode(VringAddr{q, 0, kUser + r.desc(q), kUser + r.used(q), kUser + r.avail(q), 0x1000})));
            ASSERT_TRUE(qemu->send(Request::SetVringKick, 0x1, encode_u64(q), {r.kick[q].get()}));
            ASSERT_TRUE(qemu->send(Request::SetVringCall, 0x1, encode_u64(q), {r.call[q].get()}));
        }
        for (std::uint32_t q = 0; q < 4; ++q) {
            EXPECT_FALSE(attached()) << "started before every ring was enabled";
            ASSERT_TRUE(qemu->send(Request::SetVringEnable, 0x9, encode(VringState{q, 1})));
            EXPECT_EQ(qemu->read(20), cat({{0x12, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0}, kAck0}));
        }
        EXPECT_TRUE(attached());
        for (std::uint32_t q = 0; q < 4; ++q) {
            unmasked[q] = make_eventfd();
            ASSERT_TRUE(qemu->send(Request::SetVringCall, 0x1, encode_u64(q), {unmasked[q].get()}));
        }
    }

    void expect_config() {
        ASSERT_TRUE(qemu->send(Request::GetConfig, 0x1, encode(ConfigSpace{0, 12, 0, Bytes(12, 0)})));
        // {offset 0, size 12, flags 0} + jacks 0, streams 2, chmaps 8 (Topology::standard(1, 1)).
        EXPECT_EQ(qemu->read(36), cat({{0x18, 0, 0, 0, 0x05, 0, 0, 0, 0x18, 0, 0, 0},
                                       le32(0), le32(12), le32(0), le32(0), le32(2), le32(8)}));
    }

    // Phase D: disable, then GET_VRING_BASE with the expected next avail indices.
    void phase_d(std::array<std::uint16_t, 4> bases) {
        for (std::uint32_t q = 0; q < 4; ++q) {
            ASSERT_TRUE(qemu->send(Request::SetVringEnable, 0x9, encode(VringState{q, 0})));
            EXPECT_EQ(qemu->read(20), cat({{0x12, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0}, kAck0}));
        }
        EXPECT_FALSE(attached());
        for (std::uint32_t q = 0; q < 4; ++q) {
            ASSERT_TRUE(qemu->send(Request::GetVringBase, 0x1, encode(VringState{q, 0})));
            EXPECT_EQ(qemu->read(20), cat({{0x0b, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0}, le32(q), le32(bases[q])}));
        }
    }

    MonotonicClock clock;
    backends::NullBackend backend{clock};
    device::SoundDevice device{device::Topology::standard(1, 1), backend, clock};
    std::shared_ptr<LogCapture> sink = std::make_shared<LogCapture>();
    std::shared_ptr<spdlog::logger> log = make_logger(sink);
    boost::asio::io_context io;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
    std::thread thread;
    std::shared_ptr<Connection> conn;
    std::atomic<bool> closed_posted{false};
    std::unique_ptr<RawPeer> qemu;
    int baseline_fds = 0;
};

// The guest's PCM_INFO request (as Linux sends it: request, status and payload descriptors).
struct PcmInfoRequest {
    static constexpr std::uint64_t kReq = 0x500000, kStatus = 0x500100, kInfo = 0x500200;
    static void post(Guest& g, virtq::DriverQueue& ctl, std::uint64_t token) {
        const auto req = wire::encode(wire::QueryInfo{wire::Code::PcmInfo, 0, 2, 32});
        std::memcpy(g.mem + kReq, req.data(), req.size());
        std::memset(g.mem + kStatus, 0xee, 4);
        const virtq::DriverBuffer bufs[] = {{kReq, 16, false}, {kStatus, 4, true}, {kInfo, 64, true}};
        ASSERT_TRUE(ctl.add(bufs, token));
        ctl.publish();
    }
    static void expect_answered(Guest& g, virtq::DriverQueue& ctl, std::uint64_t token) {
        ASSERT_TRUE(eventually([&] { return ctl.has_used(); })) << "control request not answered";
        auto u = ctl.reap();
        ASSERT_TRUE(u && *u);
        EXPECT_EQ((*u)->token, token);
        EXPECT_EQ((*u)->len, 4u + 2 * 32);
        auto st = wire::decode<wire::StatusHeader>(std::span<const std::uint8_t>(g.mem + kStatus, 4));
        ASSERT_TRUE(st);
        EXPECT_EQ(st->status, wire::Status::Ok);
        auto out = wire::decode<wire::PcmInfo>(std::span<const std::uint8_t>(g.mem + kInfo, 32));
        auto in = wire::decode<wire::PcmInfo>(std::span<const std::uint8_t>(g.mem + kInfo + 32, 32));
        ASSERT_TRUE(out && in);
        EXPECT_EQ(out->direction, wire::Direction::Output);
        EXPECT_EQ(in->direction, wire::Direction::Input);
    }
};

bool signalled(const UniqueFd& fd) {
    std::uint64_t v = 0;
    return ::read(fd.get(), &v, sizeof v) == sizeof v && v > 0;
}

void fill_event_queue(Guest& g, virtq::DriverQueue& evt, unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
        const virtq::DriverBuffer b{0x510000 + i * 8u, 8, true};
        ASSERT_TRUE(evt.add(std::span(&b, 1), i));
    }
    evt.publish();
    (void)g;
}

TEST_F(Session, ReplaysQemu1002StartStopResetAndDisconnect) {
    Guest g;
    std::array<UniqueFd, 4> masked, err, unmasked, unmasked2;
    phase_a(masked, err);

    // The guest set its rings up and, before DRIVER_OK, filled the event queue (never kicking it)
    // and queued its first control request.
    auto r1 = std::make_unique<Rings>(g, 0x200000);
    fill_event_queue(g, *r1->q[1], 64);
    PcmInfoRequest::post(g, *r1->q[0], 1);
    phase_b(g, *r1, unmasked);
    // Phase C: the request waiting at enable is answered without any new kick.
    PcmInfoRequest::expect_answered(g, *r1->q[0], 1);
    EXPECT_TRUE(signalled(r1->call[0]) || signalled(unmasked[0])) << "no interrupt for the answer";
    expect_config();
    expect_config();
    // A kicked request: answered, and the newest call fd is the one signalled.
    PcmInfoRequest::post(g, *r1->q[0], 2);
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(r1->kick[0].get(), &one, 8), 8);
    PcmInfoRequest::expect_answered(g, *r1->q[0], 2);
    EXPECT_TRUE(eventually([&] { return signalled(unmasked[0]); }));
    EXPECT_TRUE(qemu->quiet());

    // Phase D: two control requests consumed, the event buffers are held but none was popped.
    phase_d({2, 0, 0, 0});

    // Guest reset: a complete Phase B again with new ring addresses, base 0 and new fds. The old
    // rings' memory is reused by the guest at once.
    std::memset(g.mem + 0x200000, 0xa5, 0x20000);
    auto r2 = std::make_unique<Rings>(g, 0x300000);
    fill_event_queue(g, *r2->q[1], 64);
    PcmInfoRequest::post(g, *r2->q[0], 7);
    phase_b(g, *r2, unmasked2);
    PcmInfoRequest::expect_answered(g, *r2->q[0], 7);
    expect_config();
    for (auto v : std::span(g.mem + 0x200000, 0x20000)) ASSERT_EQ(v, 0xa5) << "old rings written after stop";
    phase_d({1, 0, 0, 0});
    EXPECT_EQ(sink->errors(), 0u) << sink->dump();
    // EOF without anything else (QEMU exits): TearDown checks every fd and mapping is gone.
}

TEST_F(Session, KilledFrontEndWhileRunningReleasesEverything) {
    Guest g;
    std::array<UniqueFd, 4> masked, err, unmasked;
    phase_a(masked, err);
    auto r = std::make_unique<Rings>(g, 0x200000);
    PcmInfoRequest::post(g, *r->q[0], 1);
    phase_b(g, *r, unmasked);
    PcmInfoRequest::expect_answered(g, *r->q[0], 1);
    EXPECT_EQ(count_mappings(kMemName), 3); // ours + the backend's two regions
    // EOF without Phase D (QEMU killed); TearDown checks the device stopped and nothing leaked.
}

TEST_F(Session, MalformedHeaderClosesTheConnectionWithOneLoggedReason) {
    ASSERT_TRUE(qemu->send(Request::GetFeatures, 0x1, {}));
    EXPECT_EQ(qemu->read(20).size(), 20u);
    ASSERT_TRUE(qemu->send(Request::GetFeatures, 0x5, {})); // REPLY flag on a request
    EXPECT_TRUE(qemu->closed_by_peer());
    EXPECT_EQ(sink->errors(), 1u) << sink->dump();
    EXPECT_EQ(sink->count("malformed message: bad header flags"), 1u) << sink->dump();
}

TEST_F(Session, OversizedPayloadIsNotRead) {
    auto h = encode_message(Request::SetMemTable, 0x9, {});
    h[8] = 0x00;
    h[9] = 0x00;
    h[10] = 0x10; // 1 MiB announced
    ASSERT_TRUE(qemu->send_bytes(h));
    EXPECT_TRUE(qemu->closed_by_peer());
    EXPECT_EQ(sink->count("oversized payload", spdlog::level::err), 1u) << sink->dump();
}

TEST_F(Session, TooManyFdsCloseTheConnectionAndAreClosed) {
    std::vector<UniqueFd> fds;
    std::vector<int> numbers;
    for (int i = 0; i < 8; ++i) {
        fds.push_back(make_eventfd());
        numbers.push_back(fds.back().get());
    }
    ASSERT_TRUE(qemu->send(Request::SetFeatures, 0x1, encode_u64(0x100000000), numbers));
    EXPECT_TRUE(qemu->closed_by_peer());
    EXPECT_EQ(sink->count("wrong number of file descriptors", spdlog::level::err), 1u) << sink->dump();
}

TEST_F(Session, RingOutsideGuestMemoryClosesTheConnection) {
    Guest g;
    std::array<UniqueFd, 4> masked, err;
    phase_a(masked, err);
    ASSERT_TRUE(qemu->send(Request::SetFeatures, 0x1, encode_u64(0x140000000)));
    ASSERT_TRUE(qemu->send(Request::SetMemTable, 0x9, encode(g.table()), {g.memfd.get(), g.memfd.get()}));
    EXPECT_EQ(qemu->read(20), cat({{0x05, 0, 0, 0, 0x05, 0, 0, 0, 0x08, 0, 0, 0}, kAck0}));
    ASSERT_TRUE(qemu->send(Request::SetVringNum, 0x1, encode(VringState{0, 64})));
    // The descriptor table ends exactly at the end of guest RAM; the rings lie beyond it.
    const std::uint64_t desc = kUser + kGuestBytes - 0x400;
    ASSERT_TRUE(qemu->send(Request::SetVringAddr, 0x1, encode(VringAddr{0, 0, desc, desc + 0x4c0, desc + 0x400, 0})));
    EXPECT_TRUE(qemu->closed_by_peer());
    EXPECT_EQ(sink->errors(), 1u) << sink->dump();
    EXPECT_EQ(sink->count("is not inside one memory region"), 1u) << sink->dump();
}

TEST_F(Session, RingInTheHoleBetweenRegionsClosesTheConnection) {
    Guest g;
    ASSERT_TRUE(qemu->send(Request::SetMemTable, 0x9, encode(g.table()), {g.memfd.get(), g.memfd.get()}));
    EXPECT_EQ(qemu->read(20).size(), 20u);
    ASSERT_TRUE(qemu->send(Request::SetVringNum, 0x1, encode(VringState{1, 64})));
    const std::uint64_t desc = kUser + 0xa0000; // VGA hole: not guest RAM
    ASSERT_TRUE(qemu->send(Request::SetVringAddr, 0x1, encode(VringAddr{1, 0, desc, desc + 0x4c0, desc + 0x400, 0})));
    EXPECT_TRUE(qemu->closed_by_peer());
    EXPECT_EQ(sink->count("descriptor table"), 1u) << sink->dump();
}

TEST_F(Session, UnknownRequestsAreRefusedAndTheSessionContinues) {
    ASSERT_TRUE(qemu->send(Request::ResetOwner, 0x9, {}));
    EXPECT_EQ(qemu->read(20), reply(4, kAck1));
    auto fd = make_eventfd();
    ASSERT_TRUE(qemu->send(Request::AddMemReg, 0x9, Bytes(40, 0), {fd.get()}));
    EXPECT_EQ(qemu->read(20), reply(37, kAck1));
    ASSERT_TRUE(qemu->send(Request::ResetDevice, 0x1, {})); // no NEED_REPLY: no reply
    ASSERT_TRUE(qemu->send(Request::GetQueueNum, 0x1, {}));
    EXPECT_EQ(qemu->read(20), reply(17, {4, 0, 0, 0, 0, 0, 0, 0}));
    EXPECT_EQ(sink->count("RESET_OWNER refused", spdlog::level::err), 1u) << sink->dump();
    EXPECT_EQ(sink->count("ADD_MEM_REG refused", spdlog::level::err), 1u);
    EXPECT_EQ(sink->count("RESET_DEVICE refused", spdlog::level::err), 1u);
    // SET_CONFIG is acknowledged and ignored.
    ASSERT_TRUE(qemu->send(Request::SetConfig, 0x9, encode(ConfigSpace{0, 4, 0, {9, 9, 9, 9}})));
    EXPECT_EQ(qemu->read(20), reply(25, kAck0));
}

TEST_F(Session, FeaturesNeverOfferedCloseTheConnection) {
    ASSERT_TRUE(qemu->send(Request::SetFeatures, 0x1, encode_u64(0x140000000 | (1ull << 34)))); // RING_PACKED
    EXPECT_TRUE(qemu->closed_by_peer());
    EXPECT_EQ(sink->count("never offered", spdlog::level::err), 1u) << sink->dump();
}

TEST_F(Session, MemoryFdSmallerThanItsRegionIsRefused) {
    UniqueFd small(::memfd_create("vsnd-small", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(small.get(), 4096), 0);
    MemoryTable t{{RegionDesc{0, 1u << 20, kUser, 0}}};
    ASSERT_TRUE(qemu->send(Request::SetMemTable, 0x9, encode(t), {small.get()}));
    EXPECT_EQ(qemu->read(20), reply(5, kAck1)); // reading beyond the file would be SIGBUS
    ASSERT_TRUE(qemu->send(Request::GetQueueNum, 0x1, {}));
    EXPECT_EQ(qemu->read(20), reply(17, {4, 0, 0, 0, 0, 0, 0, 0}));
}

TEST_F(Session, EndOfStreamInsideAMessageIsLogged) {
    const auto m = encode_message(Request::SetFeatures, 0x1, encode_u64(0x100000000));
    ASSERT_TRUE(qemu->send_bytes(std::span(m).first(15)));
    qemu->close();
    EXPECT_TRUE(eventually([&] { return sink->count("end of stream in the middle of a message") == 1; })) << sink->dump();
}

} // namespace
} // namespace vsnd::test
