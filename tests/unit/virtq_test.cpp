// Split virtqueues, both sides: chains direct and indirect, 16-bit index wrap, event-idx and flag
// notification rules, and every malformed chain rejected without a crash.
#include "vsnd/transport/loopback.hpp"
#include "vsnd/virtq/device_queue.hpp"
#include "vsnd/virtq/driver_queue.hpp"
#include "vsnd/virtq/ring_access.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace vsnd::virtq {
namespace {

constexpr std::uint64_t kBase = 0x10000;

// Guest memory with one queue at its start, an indirect area and a data area behind it.
struct Ring {
    explicit Ring(std::uint16_t size, bool event_idx = true, std::uint16_t indirect_entries = 0, bool indirect_feature = true)
        : size(size), mem(1 << 20) {
        gm.add({kBase, mem.size(), mem.data(), 0});
        const auto b = ring_bytes(size);
        rings = {mem.data(), mem.data() + 0x4000 * 4, mem.data() + 0x8000 * 4};
        (void)b;
        std::optional<IndirectArea> ind;
        if (indirect_entries) ind = IndirectArea{gpa(0x30000), mem.data() + 0x30000, indirect_entries};
        driver.emplace(rings, size, event_idx, ind);
        device.emplace(gm, QueueConfig{size, rings, event_idx, indirect_feature});
    }
    std::uint64_t gpa(std::size_t off) const { return kBase + off; }
    std::uint8_t* data(std::size_t off) { return mem.data() + 0x80000 + off; }
    std::uint64_t data_gpa(std::size_t off) const { return gpa(0x80000 + off); }

    // Writes descriptor i of a table by hand (for malformed chains).
    void desc(std::uint8_t* table, unsigned i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags, std::uint16_t next) {
        detail::store64(table + 16 * i, addr);
        detail::store32(table + 16 * i + 8, len);
        detail::store16(table + 16 * i + 12, flags);
        detail::store16(table + 16 * i + 14, next);
    }
    void desc(unsigned i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags, std::uint16_t next = 0) {
        desc(rings.desc, i, addr, len, flags, next);
    }
    // Makes head `h` available by hand.
    void offer(std::uint16_t h) {
        const std::uint16_t idx = detail::load16(rings.avail + 2);
        detail::store16(rings.avail + 4 + 2 * (idx % size), h);
        detail::store_release16(rings.avail + 2, static_cast<std::uint16_t>(idx + 1));
    }

    std::uint16_t size;
    std::vector<std::uint8_t> mem;
    GuestMemory gm;
    RingAddresses rings;
    std::optional<DriverQueue> driver;
    std::optional<DeviceQueue> device;
};

TEST(Virtq, ChainRoundTrip) {
    Ring r(8);
    std::memcpy(r.data(0), "0123456789", 10);
    DriverBuffer bufs[] = {{r.data_gpa(0), 10, false}, {r.data_gpa(64), 20, true}};
    ASSERT_TRUE(r.driver->add(bufs, 77));
    EXPECT_TRUE(r.driver->publish());
    auto c = r.device->pop();
    ASSERT_TRUE(c && *c);
    auto& chain = c->value();
    EXPECT_EQ(chain.readable_bytes, 10u);
    EXPECT_EQ(chain.writable_bytes, 20u);
    std::uint8_t got[10];
    ChainReader(chain).read(got);
    EXPECT_EQ(std::memcmp(got, "0123456789", 10), 0);
    ChainWriter(chain).write_at(0, std::span<const std::uint8_t>(got, 5));
    r.device->push(chain.head, 5);
    EXPECT_TRUE(r.device->should_notify());
    auto u = r.driver->reap();
    ASSERT_TRUE(u && *u);
    EXPECT_EQ((*u)->token, 77u);
    EXPECT_EQ((*u)->len, 5u);
    EXPECT_EQ(std::memcmp(r.data(64), "01234", 5), 0);
    EXPECT_FALSE(r.device->pop());
    EXPECT_EQ(r.driver->free_descriptors(), 8);
}

TEST(Virtq, IndicesWrapAt16Bits) {
    Ring r(4);
    std::uint64_t next_token = 0, expect_token = 0;
    // 70000 > 65536 messages, in varying batches so the wrap lands mid-batch.
    while (expect_token < 70000) {
        const unsigned batch = 1 + next_token % 3;
        for (unsigned i = 0; i < batch; ++i) {
            std::uint32_t v = static_cast<std::uint32_t>(next_token);
            std::memcpy(r.data(16 * (next_token % 4)), &v, 4);
            DriverBuffer b[] = {{r.data_gpa(16 * (next_token % 4)), 4, false}, {r.data_gpa(256 + 16 * (next_token % 4)), 4, true}};
            ASSERT_TRUE(r.driver->add(b, next_token));
            ++next_token;
        }
        r.driver->publish();
        while (auto c = r.device->pop()) {
            ASSERT_TRUE(*c);
            std::uint32_t v;
            ChainReader(c->value()).read(std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
            ChainWriter(c->value()).write_at(0, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
            r.device->push(c->value().head, 4);
        }
        while (auto u = r.driver->reap()) {
            ASSERT_TRUE(*u);
            ASSERT_EQ((*u)->token, expect_token);
            std::uint32_t v;
            std::memcpy(&v, r.data(256 + 16 * (expect_token % 4)), 4);
            ASSERT_EQ(v, static_cast<std::uint32_t>(expect_token));
            ++expect_token;
        }
    }
    EXPECT_GT(expect_token, 65536u);
    EXPECT_EQ(detail::load16(r.rings.used + 2), static_cast<std::uint16_t>(expect_token));
    EXPECT_FALSE(r.device->broken());
}

TEST(Virtq, IndirectChainUsesOneRingDescriptor) {
    Ring r(4, true, 32);
    std::vector<DriverBuffer> bufs;
    for (unsigned i = 0; i < 20; ++i) {
        std::memset(r.data(100 * i), static_cast<int>(i), 100);
        bufs.push_back({r.data_gpa(100 * i), 100, false});
    }
    bufs.push_back({r.data_gpa(4000), 8, true});
    ASSERT_TRUE(r.driver->add(bufs, 1));
    EXPECT_EQ(r.driver->free_descriptors(), 3);
    r.driver->publish();
    auto c = r.device->pop();
    ASSERT_TRUE(c && *c);
    EXPECT_EQ(c->value().readable.size(), 20u);
    EXPECT_EQ(c->value().readable_bytes, 2000u);
    // A payload split over many descriptors reads as one stream.
    ChainReader in(c->value());
    in.skip(150);
    std::uint8_t got[100];
    in.read(got);
    EXPECT_EQ(got[0], 1);
    EXPECT_EQ(got[49], 1);
    EXPECT_EQ(got[50], 2);
    std::size_t pieces = 0, bytes = 0;
    in.visit(1000, [&](std::span<const std::uint8_t> p) { ++pieces; bytes += p.size(); });
    EXPECT_EQ(bytes, 1000u);
    EXPECT_EQ(pieces, 11u); // starts mid-descriptor: 50 + 9 x 100 + 50
    EXPECT_EQ(in.remaining(), 750u);
}

TEST(Virtq, WriterSpansDescriptors) {
    Ring r(8);
    DriverBuffer b[] = {{r.data_gpa(0), 3, true}, {r.data_gpa(64), 3, true}, {r.data_gpa(128), 4, true}};
    ASSERT_TRUE(r.driver->add(b, 1));
    r.driver->publish();
    auto c = r.device->pop();
    ASSERT_TRUE(c && *c);
    const std::uint8_t msg[] = {1, 2, 3, 4, 5, 6, 7, 8};
    ChainWriter w(c->value());
    EXPECT_EQ(w.write_at(2, msg), 8u);
    EXPECT_EQ(r.data(2)[0], 1);
    EXPECT_EQ(r.data(64)[0], 2);
    EXPECT_EQ(r.data(128)[3], 8);
    EXPECT_EQ(w.write_at(9, msg), 1u); // clipped at the end
}

TEST(Virtq, EventIdxNotifications) {
    Ring r(8, true);
    DriverBuffer b[] = {{r.data_gpa(0), 8, true}};
    // Kicks: the device asks for one at each avail index it reached.
    ASSERT_TRUE(r.driver->add(b, 1));
    EXPECT_TRUE(r.driver->publish());
    ASSERT_TRUE(r.driver->add(b, 2));
    EXPECT_FALSE(r.driver->publish()) << "device has not consumed the first: no second kick";
    auto c1 = r.device->pop();
    auto c2 = r.device->pop();
    ASSERT_TRUE(c1 && c2);
    ASSERT_TRUE(r.driver->add(b, 3));
    EXPECT_TRUE(r.driver->publish());
    // Interrupts: the driver asks for one past what it has reaped.
    r.device->push(c1->value().head, 0);
    EXPECT_TRUE(r.device->should_notify());
    r.device->push(c2->value().head, 0);
    EXPECT_FALSE(r.device->should_notify()) << "driver has not reaped: no second interrupt";
    while (r.driver->reap()) {}
    auto c3 = r.device->pop();
    ASSERT_TRUE(c3);
    r.device->push(c3->value().head, 0);
    EXPECT_TRUE(r.device->should_notify());
    // Suppression: a driver that does not want interrupts gets none.
    r.driver->reap();
    r.driver->set_interrupts_enabled(false);
    ASSERT_TRUE(r.driver->add(b, 4));
    r.driver->publish();
    auto c4 = r.device->pop();
    r.device->push(c4->value().head, 0);
    EXPECT_FALSE(r.device->should_notify());
    // And a device that does not want kicks gets none.
    r.device->set_kicks_enabled(false);
    ASSERT_TRUE(r.driver->add(b, 5));
    EXPECT_FALSE(r.driver->publish());
    r.device->set_kicks_enabled(true);
    EXPECT_TRUE(r.device->has_available()) << "re-check after enabling";
}

TEST(Virtq, FlagNotificationsWithoutEventIdx) {
    Ring r(8, false);
    DriverBuffer b[] = {{r.data_gpa(0), 8, true}};
    ASSERT_TRUE(r.driver->add(b, 1));
    EXPECT_TRUE(r.driver->publish());
    r.device->set_kicks_enabled(false);
    ASSERT_TRUE(r.driver->add(b, 2));
    EXPECT_FALSE(r.driver->publish());
    auto c = r.device->pop();
    r.device->push(c->value().head, 0);
    EXPECT_TRUE(r.device->should_notify());
    r.driver->set_interrupts_enabled(false);
    auto c2 = r.device->pop();
    r.device->push(c2->value().head, 0);
    EXPECT_FALSE(r.device->should_notify());
}

// ---- malformed chains ----------------------------------------------------------------------

struct Malformed : ::testing::Test {
    Ring r{8, true, 0};
    ChainError pop_error(bool expect_head_valid = true) {
        auto c = r.device->pop();
        EXPECT_TRUE(c.has_value());
        if (!c) return ChainError::LengthOverflow;
        EXPECT_FALSE(c->has_value());
        if (c->has_value()) return ChainError::LengthOverflow;
        EXPECT_EQ(c->error().head_valid, expect_head_valid);
        // As the device does: a faulted chain is returned (used length 0), so its head is free.
        if (c->error().head_valid) r.device->push(c->error().head, 0);
        return c->error().error;
    }
    // After a fault the queue goes on working.
    void expect_next_chain_ok() {
        r.desc(5, r.data_gpa(0), 8, 0);
        r.offer(5);
        auto c = r.device->pop();
        ASSERT_TRUE(c && *c);
        EXPECT_EQ(c->value().readable_bytes, 8u);
    }
};

TEST_F(Malformed, Loop) {
    r.desc(0, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 1);
    r.desc(1, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 0);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::TooLong);
    expect_next_chain_ok();
}

TEST_F(Malformed, SelfLoop) {
    r.desc(3, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 3);
    r.offer(3);
    EXPECT_EQ(pop_error(), ChainError::TooLong);
}

TEST_F(Malformed, HeadOutOfRange) {
    r.offer(200);
    EXPECT_EQ(pop_error(false), ChainError::HeadOutOfRange);
    expect_next_chain_ok();
}

TEST_F(Malformed, NextOutOfRange) {
    r.desc(0, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 8);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::IndexOutOfRange);
}

TEST_F(Malformed, AddressesOutsideGuestMemory) {
    r.desc(0, 0x7000'0000'0000, 8, 0);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::AddressOutOfRange);
    r.desc(0, kBase + r.mem.size() - 4, 8, 0); // straddles the end
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::AddressOutOfRange);
    r.desc(0, ~0ull - 3, 16, 0); // address + length wraps
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::AddressOutOfRange);
    r.desc(0, kBase - 1, 2, 0); // starts before
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::AddressOutOfRange);
    expect_next_chain_ok();
}

TEST_F(Malformed, ReadableAfterWritable) {
    r.desc(0, r.data_gpa(0), 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    r.desc(1, r.data_gpa(64), 8, 0);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::ReadableAfterWritable);
}

TEST_F(Malformed, IndirectDescriptors) {
    std::uint8_t* table = r.data(0x1000);
    const std::uint64_t table_gpa = r.data_gpa(0x1000);
    // INDIRECT together with NEXT.
    r.desc(0, table_gpa, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::IndirectWithNext);
    // Length not a multiple of 16, and zero.
    r.desc(0, table_gpa, 17, VRING_DESC_F_INDIRECT);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::BadIndirectLength);
    r.desc(0, table_gpa, 0, VRING_DESC_F_INDIRECT);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::BadIndirectLength);
    // Table outside memory.
    r.desc(0, 0x7000'0000'0000, 32, VRING_DESC_F_INDIRECT);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::AddressOutOfRange);
    // An indirect entry inside a table.
    r.desc(table, 0, table_gpa, 32, VRING_DESC_F_INDIRECT, 0);
    r.desc(0, table_gpa, 32, VRING_DESC_F_INDIRECT);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::MisplacedIndirect);
    // An indirect descriptor after a direct one.
    r.desc(1, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 2);
    r.desc(2, table_gpa, 32, VRING_DESC_F_INDIRECT);
    r.offer(1);
    EXPECT_EQ(pop_error(), ChainError::MisplacedIndirect);
    // A loop inside the table.
    r.desc(table, 0, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 1);
    r.desc(table, 1, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 0);
    r.desc(0, table_gpa, 32, VRING_DESC_F_INDIRECT);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::TooLong);
    // 'next' beyond the table.
    r.desc(table, 0, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 2);
    r.offer(0);
    EXPECT_EQ(pop_error(), ChainError::IndexOutOfRange);
    // A well-formed table works.
    r.desc(table, 0, r.data_gpa(0), 8, VRING_DESC_F_NEXT, 1);
    r.desc(table, 1, r.data_gpa(64), 4, VRING_DESC_F_WRITE, 0);
    r.offer(0);
    auto c = r.device->pop();
    ASSERT_TRUE(c && *c);
    EXPECT_EQ(c->value().writable_bytes, 4u);
}

TEST(Virtq, IndirectRefusedWhenNotNegotiated) {
    Ring r(8, true, 0, false);
    r.desc(0, r.data_gpa(0), 32, VRING_DESC_F_INDIRECT);
    r.offer(0);
    auto c = r.device->pop();
    ASSERT_TRUE(c && !*c);
    EXPECT_EQ(c->error().error, ChainError::IndirectNotNegotiated);
}

TEST_F(Malformed, AvailIndexJumpBreaksTheQueue) {
    detail::store_release16(r.rings.avail + 2, 9); // 9 new entries in an 8-entry ring
    EXPECT_FALSE(r.device->pop());
    EXPECT_TRUE(r.device->broken());
    EXPECT_FALSE(r.device->pop());
    EXPECT_FALSE(r.device->has_available());
}

TEST(Virtq, DriverRejectsBogusUsedEntries) {
    Ring r(8);
    DriverBuffer b[] = {{r.data_gpa(0), 8, false}, {r.data_gpa(64), 8, true}};
    ASSERT_TRUE(r.driver->add(b, 5));
    r.driver->publish();
    auto c = r.device->pop();
    ASSERT_TRUE(c && *c);
    // A hostile device's used entries, written by hand (our DeviceQueue refuses to push them).
    auto used = [&](std::uint32_t id, std::uint32_t len) {
        const std::uint16_t idx = detail::load16(r.rings.used + 2);
        detail::store32(r.rings.used + 4 + 8 * (idx % r.size), id);
        detail::store32(r.rings.used + 8 + 8 * (idx % r.size), len);
        detail::store_release16(r.rings.used + 2, static_cast<std::uint16_t>(idx + 1));
    };
    used(9, 0);                 // no such descriptor
    used(4, 0);                 // not in flight
    used(c->value().head, 100); // claims more than the 8 writable bytes
    auto u1 = r.driver->reap();
    ASSERT_TRUE(u1 && !*u1);
    EXPECT_EQ(u1->error(), UsedError::IdOutOfRange);
    auto u2 = r.driver->reap();
    ASSERT_TRUE(u2 && !*u2);
    EXPECT_EQ(u2->error(), UsedError::IdNotInFlight);
    auto u3 = r.driver->reap();
    ASSERT_TRUE(u3 && *u3);
    EXPECT_TRUE((*u3)->len_overran);
    EXPECT_EQ((*u3)->len, 8u);
    EXPECT_EQ(r.driver->free_descriptors(), 8);
}

// The spec's rules the device enforces on a hostile driver: a head it holds made available again
// stops the queue (QEMU: "Virtqueue size exceeded"), so in-flight chains never exceed the queue
// size; a push of a head it does not hold is ignored, so the used ring never overflows.
TEST(Virtq, RepublishedHeadStopsTheQueue) {
    Ring r(8);
    r.desc(3, r.data_gpa(0), 8, 0);
    r.offer(3);
    auto c = r.device->pop();
    ASSERT_TRUE(c && *c);
    EXPECT_EQ(r.device->in_flight(), 1u);
    r.offer(3); // again, while the device holds it
    EXPECT_FALSE(r.device->pop());
    EXPECT_TRUE(r.device->broken());
    EXPECT_NE(std::string(r.device->broken_reason()).find("made available again"), std::string::npos);
    EXPECT_EQ(r.device->in_flight(), 1u);
    const std::uint16_t used_before = detail::load16(r.rings.used + 2);
    r.device->push(5, 0); // never popped
    r.device->push(3, 0);
    r.device->push(3, 0); // already returned
    EXPECT_EQ(static_cast<std::uint16_t>(detail::load16(r.rings.used + 2) - used_before), 1) << "one used entry";
    EXPECT_EQ(r.device->in_flight(), 0u);
}

TEST(Virtq, IndirectTableBeyondTheBoundIsRefused) {
    {   // exactly the bound: a table of 1024 one-byte pieces is one chain of 1024 bytes
        Ring r(8, true, 0);
        std::uint8_t* table = r.data(0x10000);
        for (unsigned i = 0; i < kMaxIndirectEntries; ++i)
            r.desc(table, i, r.data_gpa(i), 1, i + 1 < kMaxIndirectEntries ? VRING_DESC_F_NEXT : 0, static_cast<std::uint16_t>(i + 1));
        r.desc(0, r.data_gpa(0x10000), 16 * kMaxIndirectEntries, VRING_DESC_F_INDIRECT);
        r.offer(0);
        auto c = r.device->pop();
        ASSERT_TRUE(c && *c) << (c && !*c ? describe(c->error().error) : "nothing");
        EXPECT_EQ((*c)->readable_bytes, kMaxIndirectEntries);
    }
    Ring r(8, true, 0);
    r.desc(0, r.data_gpa(0), 16 * (kMaxIndirectEntries + 1), VRING_DESC_F_INDIRECT);
    r.offer(0);
    auto c = r.device->pop();
    ASSERT_TRUE(c && !*c);
    EXPECT_EQ(c->error().error, ChainError::BadIndirectLength);
}

TEST(Virtq, RingLayoutAlignedAndDisjoint) {
    alignas(16) static std::uint8_t m[0x10000];
    const std::uint16_t n = 64;
    EXPECT_EQ(ring_layout_error({m, m + 0x2000, m + 0x4000}, n), nullptr);
    EXPECT_NE(ring_layout_error({m + 8, m + 0x2000, m + 0x4000}, n), nullptr) << "descriptors need 16";
    EXPECT_NE(ring_layout_error({m, m + 0x2001, m + 0x4000}, n), nullptr) << "avail needs 2";
    EXPECT_NE(ring_layout_error({m, m + 0x2000, m + 0x4002}, n), nullptr) << "used needs 4";
    EXPECT_NE(ring_layout_error({m, m + 0x2000, m + 0x2000}, n), nullptr) << "used over avail";
    EXPECT_NE(ring_layout_error({m, m + 0x3f0, m + 0x4000}, n), nullptr) << "avail inside the table";
    EXPECT_NE(ring_layout_error({m + 0x4000 + 0x200, m + 0x2000, m + 0x4000}, n), nullptr) << "table over used";
    // Across queues: a used ring over any part of another queue's ring.
    const RingAddresses tx{m, m + 0x2000, m + 0x4000};
    EXPECT_EQ(used_ring_overlap(tx, n, {m + 0x6000, m + 0x7000, m + 0x8000}, n), nullptr);
    EXPECT_STREQ(used_ring_overlap(tx, n, {m + 0x6000, m + 0x4000 + 0x204, m + 0x8000}, n), "available ring");
    EXPECT_STREQ(used_ring_overlap(tx, n, {m + 0x3f00, m + 0x7000, m + 0x8000}, n), "descriptor table");
    EXPECT_STREQ(used_ring_overlap(tx, n, {m + 0x6000, m + 0x7000, m + 0x4000}, n), "used ring");
    EXPECT_EQ(used_ring_overlap(tx, n, {m + 0x4000 + 0x208, m + 0x7000, m + 0x8000}, n), nullptr) << "just after it";
}

TEST(Virtq, DriverRefusesReadableAfterWritableAndFullRing) {
    Ring r(2);
    DriverBuffer wrong[] = {{r.data_gpa(0), 8, true}, {r.data_gpa(64), 8, false}};
    EXPECT_FALSE(r.driver->add(wrong, 1));
    DriverBuffer three[] = {{r.data_gpa(0), 8, false}, {r.data_gpa(0), 8, false}, {r.data_gpa(0), 8, false}};
    EXPECT_FALSE(r.driver->add(three, 1)) << "needs 3 descriptors, ring has 2";
}

// Two processes share the ring memory: every message arrives intact and in order, which needs
// the release/acquire pairs on both indices.
TEST(Virtq, TwoProcessesShareOneRing) {
    transport::SharedMemory shm(1 << 20);
    constexpr std::uint16_t kSize = 64;
    RingAddresses rings{shm.data(), shm.data() + 0x4000, shm.data() + 0x8000};
    DriverQueue drv(rings, kSize, true);
    GuestMemory gm;
    gm.add({kBase, shm.size(), shm.data(), 0});
    constexpr std::uint32_t kMessages = 200000;
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        DeviceQueue dev(gm, QueueConfig{kSize, rings, true, true});
        std::uint32_t handled = 0;
        while (handled < kMessages) {
            auto c = dev.pop();
            if (!c) continue;
            if (!*c) _exit(2);
            std::uint64_t v;
            if (ChainReader(c->value()).read(std::span(reinterpret_cast<std::uint8_t*>(&v), 8)) != 8) _exit(3);
            v = ~v;
            ChainWriter(c->value()).write_at(0, std::span(reinterpret_cast<std::uint8_t*>(&v), 8));
            dev.push(c->value().head, 8);
            ++handled;
        }
        _exit(0);
    }
    std::uint32_t sent = 0, received = 0;
    bool ok = true;
    while (received < kMessages && ok) {
        while (sent < kMessages && drv.free_descriptors() >= 2) {
            const std::size_t slot = 0x10000 + 16 * (sent % kSize);
            std::uint64_t v = sent * 0x9e3779b97f4a7c15ull;
            std::memcpy(shm.data() + slot, &v, 8);
            DriverBuffer b[] = {{kBase + slot, 8, false}, {kBase + slot + 8, 8, true}};
            if (!drv.add(b, sent)) break;
            ++sent;
        }
        drv.publish();
        while (auto u = drv.reap()) {
            if (!*u || (*u)->token != received) { ok = false; break; }
            std::uint64_t v;
            std::memcpy(&v, shm.data() + 0x10000 + 16 * (received % kSize) + 8, 8);
            if (v != ~(received * 0x9e3779b97f4a7c15ull)) { ok = false; break; }
            ++received;
        }
    }
    int status = 0;
    if (!ok) kill(child, SIGKILL);
    waitpid(child, &status, 0);
    EXPECT_TRUE(ok) << "message " << received << " corrupted or out of order";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_EQ(received, kMessages);
}

} // namespace
} // namespace vsnd::virtq
