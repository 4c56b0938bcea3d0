// The page through which the host publishes its CLOCK_MONOTONIC to the test guest.
//
// Host side: tests/vm/host_clock_publisher.cpp writes it into a small shared file every
// `period_ns`; QEMU maps that file into the guest as BAR 2 of an ivshmem-plain PCI device
// (vendor 0x1af4, device 0x1110). Guest side: host_clock.cpp mmaps the BAR via sysfs.
//
// Seqlock: the writer makes `seq` odd, stores `ns`, makes `seq` even again (release order);
// a reader accepts `ns` only when it saw the same even `seq` before and after reading it.
// Header-only and dependency-free: it is shared by the guest agent and the host tools.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vsnd::hostclock {

inline constexpr std::uint32_t kMagic = 0x4b434856;  // "VHCK" little-endian
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint64_t kPageBytes = 4096;
inline constexpr std::uint16_t kPciVendor = 0x1af4;  // Red Hat / Qumranet
inline constexpr std::uint16_t kPciDevice = 0x1110;  // ivshmem

struct Page {
    std::uint32_t seq;        // odd while `ns` is being written
    std::uint32_t magic;      // kMagic once the publisher is running
    std::uint64_t ns;         // host CLOCK_MONOTONIC at the last update
    std::uint64_t period_ns;  // the publisher's update interval
    std::uint32_t version;    // kVersion
    std::uint32_t pad;
    std::uint64_t updates;    // number of updates so far (diagnostics only)
};
static_assert(sizeof(Page) <= kPageBytes);
static_assert(offsetof(Page, ns) == 8, "the 64-bit value must be naturally aligned");

// Both sides access the shared page only through these (the other side is another process or a
// guest vCPU, so every access must be a real, ordered memory access).
inline std::uint32_t load_seq(const Page* p) { return __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE); }
inline std::uint64_t load_ns(const Page* p) { return __atomic_load_n(&p->ns, __ATOMIC_RELAXED); }

// One consistent read: {ns, seq}; retries while the writer is active.
struct Snapshot {
    std::uint64_t ns;
    std::uint32_t seq;
};
inline Snapshot read(const Page* p) {
    for (;;) {
        const std::uint32_t s1 = load_seq(p);
        if (s1 & 1u) continue;
        const std::uint64_t ns = load_ns(p);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&p->seq, __ATOMIC_RELAXED) == s1) return {ns, s1};
    }
}

// Writer side, in two halves so that the clock is read while `seq` is odd: a reader that sees
// the new even `seq` then knows the value was read from the clock only a few stores earlier
// (the writer cannot be preempted between clock read and publication without readers noticing).
inline void begin_publish(Page* p) {
    const std::uint32_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&p->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
inline void end_publish(Page* p, std::uint64_t ns) {
    __atomic_store_n(&p->ns, ns, __ATOMIC_RELAXED);
    __atomic_store_n(&p->updates, __atomic_load_n(&p->updates, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p->seq, __atomic_load_n(&p->seq, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}

}  // namespace vsnd::hostclock
