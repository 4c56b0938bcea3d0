// The host's CLOCK_MONOTONIC, read inside the guest from the page the host publishes through an
// ivshmem-plain PCI device (see host_clock_layout.hpp and tests/vm/README.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "host_clock_layout.hpp"

namespace vsnd::guest {

class HostClock {
public:
    // spec: "auto" (the ivshmem-plain device in /sys/bus/pci/devices), a sysfs PCI device
    // directory, or a plain file holding the page (for tests on the host). Throws on failure.
    static HostClock open(const std::string& spec);
    ~HostClock();
    HostClock(HostClock&& o) noexcept;
    HostClock& operator=(HostClock&&) = delete;
    HostClock(const HostClock&) = delete;
    HostClock& operator=(const HostClock&) = delete;

    // A guest CLOCK_MONOTONIC reading and a host CLOCK_MONOTONIC value that belong together.
    struct Pair {
        std::uint64_t guest_ns;
        std::uint64_t host_ns;
        std::uint64_t wait_ns;   // read_edge: how long it waited for the update
        std::uint64_t width_ns;  // read_edge: the update became visible within guest_ns -/+ width_ns/2
        bool edge;               // true: an edge-synchronised pair
    };

    // The current page value, then the guest clock: host_ns is 0..period_ns (plus publisher wake-up
    // jitter) older than the instant guest_ns names.
    [[nodiscard]] Pair read_plain() const;
    // Waits for the next update and pairs its value with the guest time at which it became
    // visible: the middle of the bracket between the last look that saw the old value and the
    // look that saw the new one. A bracket wider than 20 us (the vCPU was descheduled) is retried
    // on the next update until `timeout_ns` (default edge_timeout_ns()); then the narrowest
    // bracket seen wins, or, if no update came at all, read_plain (edge = false).
    [[nodiscard]] Pair read_edge(std::uint64_t timeout_ns) const;
    [[nodiscard]] Pair read_edge() const { return read_edge(edge_timeout_ns()); }

    [[nodiscard]] std::uint64_t period_ns() const;
    [[nodiscard]] std::uint64_t edge_timeout_ns() const;
    [[nodiscard]] const std::string& where() const { return where_; }
    [[nodiscard]] std::uint64_t edge_fallbacks() const { return fallbacks_.load(std::memory_order_relaxed); }

private:
    HostClock(const hostclock::Page* page, std::string where) : page_(page), where_(std::move(where)) {}

    const hostclock::Page* page_;
    std::string where_;
    mutable std::atomic<std::uint64_t> fallbacks_{0};
};

// Takes edge-synchronised pairs every `interval_ns` in its own thread (nice 10), so that the
// threads being measured never wait for the host clock; pairs whose bracket is wider than
// 20 us are not kept. Afterwards, host_at() turns any guest instant of the run into host time.
class HostClockSampler {
public:
    HostClockSampler(const HostClock& hc, std::uint64_t interval_ns);
    ~HostClockSampler();
    HostClockSampler(const HostClockSampler&) = delete;
    HostClockSampler& operator=(const HostClockSampler&) = delete;

    void stop();
    // Valid after stop(): the pairs kept, in time order, and how many readings were dropped.
    [[nodiscard]] const std::vector<HostClock::Pair>& pairs() const { return pairs_; }
    [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

    // Host time at guest instant `guest_ns`: a straight line through the kept pairs within
    // +-250 ms (at least the 8 nearest), after dropping those more than 50 us off their median
    // offset. Empty without pairs.
    [[nodiscard]] static std::optional<std::uint64_t> host_at(const std::vector<HostClock::Pair>& pairs,
                                                              std::uint64_t guest_ns);

private:
    void run();

    const HostClock& hc_;
    std::uint64_t interval_ns_;
    std::vector<HostClock::Pair> pairs_;
    std::uint64_t dropped_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace vsnd::guest
