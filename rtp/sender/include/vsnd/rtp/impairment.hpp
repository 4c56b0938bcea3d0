// What a network does to a stream, reproducibly: random and burst (Gilbert) loss, duplication,
// uniform jitter and reordering by extra delay, all from one seed. The relay tool applies it to
// real datagrams; tests apply it on a simulated clock. Bounded: at most `max_held` datagrams wait
// at once (more are dropped and counted). Single owner.
#pragma once

#include "vsnd/timing/clock.hpp"

#include <cstdint>
#include <queue>
#include <span>
#include <vector>

namespace vsnd::rtp {

struct ImpairmentOptions {
    double loss = 0;            // probability a datagram is dropped (independent)
    double burst_loss = 0;      // Gilbert model: overall loss probability in bursts ...
    double burst_length = 3;    // ... with this mean burst length (datagrams)
    double duplicate = 0;       // probability a datagram is sent twice
    Nanos jitter = 0;           // extra delay uniform in [0, jitter]
    double reorder = 0;         // probability a datagram is held back ...
    Nanos reorder_delay = 0;    // ... this much longer
    std::uint64_t seed = 1;
    std::size_t max_held = 4096;
};

struct ImpairmentCounters {
    std::uint64_t in = 0, out = 0, lost = 0, duplicated = 0, reordered = 0, overflow = 0;
};

class Impairment {
public:
    explicit Impairment(ImpairmentOptions o) : opt_(o), rng_(o.seed ? o.seed : 1) {}
    // A datagram arrives at `now`.
    void push(std::span<const std::uint8_t> datagram, Nanos now);
    // When the next datagram is due, if any is held.
    bool pending() const { return !held_.empty(); }
    Nanos next_time() const { return held_.top().due; }
    // Takes the next due datagram (call while pending() and next_time() <= now).
    std::vector<std::uint8_t> pop();
    const ImpairmentCounters& counters() const { return counters_; }

private:
    double uniform();
    void hold(std::span<const std::uint8_t> d, Nanos due);

    struct Held {
        Nanos due;
        std::uint64_t order;
        std::vector<std::uint8_t> data;
        bool operator>(const Held& o) const { return due != o.due ? due > o.due : order > o.order; }
    };
    ImpairmentOptions opt_;
    std::uint64_t rng_;
    bool in_burst_ = false;
    std::uint64_t order_ = 0;
    std::priority_queue<Held, std::vector<Held>, std::greater<>> held_;
    ImpairmentCounters counters_;
};

} // namespace vsnd::rtp
