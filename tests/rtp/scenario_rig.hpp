// The deterministic rig for the receiver scenarios: a paced sender (with its clock error, pauses,
// restarts), the network (delay, impairments), the receiver and a sink, all on one simulated
// clock. It records what the sink played, when, and the receiver's status over time, so each
// scenario is judged on the output audio, the counters and the latency.
#pragma once

#include "vsnd/rtp/impairment.hpp"
#include "vsnd/rtp/paced_sink.hpp"
#include "vsnd/rtp/playout.hpp"
#include "vsnd/rtp/receiver.hpp"
#include "vsnd/rtp/stream_generator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <vector>

namespace vsnd::rtp::test {

inline constexpr Nanos kMs = 1'000'000;
inline constexpr Nanos kSec = kNanosPerSecond;

struct Scenario {
    GeneratorOptions sender;
    std::vector<GeneratorOptions> others;  // more senders on the same port
    std::optional<ImpairmentOptions> network;
    Nanos network_delay = 500'000;
    ReceiverOptions receiver;
    PacedSinkOptions sink;
    Nanos duration = 10 * kSec;
    Nanos sender_stops = 0;                // 0: sends until the end
    // Called before each packet is delivered; may edit it or return false to drop it.
    std::function<bool(std::vector<std::uint8_t>&, Nanos)> tamper;
};

struct StatusSample {
    Nanos when;
    ReceiverStatus status;
    std::uint64_t underruns;
};

struct Outcome {
    std::vector<std::int32_t> played;    // every frame the sink played, in order
    std::vector<std::uint32_t> data;     // per period: real frames (the rest was sink xrun silence)
    Nanos sink_start = 0;
    std::vector<StatusSample> samples;   // every 100 ms
    ReceiverCounters counters;
    std::uint64_t sink_xruns = 0;
    ImpairmentCounters network;
    std::vector<Nanos> first_packet_sent; // per sender
    unsigned channels = 2;
    std::uint32_t rate = 48000;

    std::size_t frames() const { return played.size() / channels; }
    const std::int32_t* frame(std::size_t i) const { return &played[i * channels]; }
    bool silent(std::size_t i) const {
        return std::all_of(frame(i), frame(i) + channels, [](std::int32_t v) { return v == 0; });
    }
    // The first frame from `from` on that is not silent (frames() if none).
    std::size_t first_sound(std::size_t from) const {
        while (from < frames() && silent(from)) ++from;
        return from;
    }
    // The first run of at least `min` silent frames from frame `from` on: {start, length}.
    std::pair<std::size_t, std::size_t> silent_run(std::size_t from, std::size_t min = 64) const {
        for (std::size_t i = from; i < frames(); ++i) {
            if (!silent(i)) continue;
            std::size_t n = 0;
            while (i + n < frames() && silent(i + n)) ++n;
            if (n >= min) return {i, n};
            i += n;
        }
        return {frames(), 0};
    }
    // The latency samples from `from` on.
    std::vector<double> latencies(Nanos from) const {
        std::vector<double> out;
        for (const auto& s : samples)
            if (s.when >= from && s.status.latency_s) out.push_back(*s.status.latency_s);
        return out;
    }
};

inline Outcome run(Scenario sc) {
    SimulatedClock clock(kSec);
    Outcome out;
    out.channels = sc.sink.spec.channels;
    out.rate = sc.sink.spec.rate;
    sc.receiver.output_rate = sc.sink.spec.rate;
    RtpReceiver rx(sc.receiver);
    PacedSink sink(sc.sink, [&](std::span<const std::int32_t> s, Nanos, std::uint32_t data) {
        out.played.insert(out.played.end(), s.begin(), s.end());
        out.data.push_back(data);
    });
    Playout playout(rx, sink);
    std::vector<StreamGenerator> senders;
    senders.emplace_back(sc.sender, clock.now());
    for (auto& o : sc.others) senders.emplace_back(o, clock.now());
    out.first_packet_sent.assign(senders.size(), 0);
    std::optional<Impairment> net;
    if (sc.network) net.emplace(*sc.network);
    // In-flight datagrams with a fixed delay (the impairment adds its own on top).
    std::vector<std::pair<Nanos, std::vector<std::uint8_t>>> wire;
    const Nanos end = clock.now() + sc.duration;
    const Nanos stop = sc.sender_stops ? clock.now() + sc.sender_stops : end;
    Nanos next_sample = clock.now();
    while (clock.now() < end) {
        Nanos t = std::min(end, sink.next_wake(clock.now()));
        for (auto& g : senders) if (g.next_time() < stop) t = std::min(t, g.next_time());
        if (net && net->pending()) t = std::min(t, net->next_time());
        for (auto& w : wire) t = std::min(t, w.first);
        t = std::min(t, next_sample);
        clock.advance_to(t);
        const Nanos now = clock.now();
        for (std::size_t i = 0; i < senders.size(); ++i) {
            auto& g = senders[i];
            while (g.next_time() <= now && g.next_time() < stop) {
                if (!out.first_packet_sent[i]) out.first_packet_sent[i] = g.next_time();
                auto pkt = g.next();
                wire.emplace_back(now + sc.network_delay, std::vector<std::uint8_t>(pkt.begin(), pkt.end()));
            }
        }
        std::stable_sort(wire.begin(), wire.end(), [](auto& a, auto& b) { return a.first < b.first; });
        while (!wire.empty() && wire.front().first <= now) {
            auto d = std::move(wire.front().second);
            wire.erase(wire.begin());
            if (net) net->push(d, now);
            else if (!sc.tamper || sc.tamper(d, now)) rx.on_packet(d, now);
        }
        while (net && net->pending() && net->next_time() <= now) {
            auto d = net->pop();
            if (!sc.tamper || sc.tamper(d, now)) rx.on_packet(d, now);
        }
        playout.service(now);
        if (now >= next_sample) {
            out.samples.push_back({now, rx.status(), rx.counters().underruns});
            next_sample += 100 * kMs;
        }
    }
    out.counters = rx.counters();
    out.sink_xruns = sink.xruns();
    out.sink_start = sink.start_time();
    if (net) out.network = net->counters();
    return out;
}

// The content a sender's frame `k` carries, as top-aligned samples.
inline std::vector<std::int32_t> content(const GeneratorOptions& g, std::uint64_t first, std::size_t frames) {
    std::vector<std::uint8_t> scratch;
    std::vector<std::int32_t> s(frames * g.format.channels);
    signal_samples(g.signal, g.format, first, frames, scratch, s.data());
    return s;
}

// Where in the output content frame 0 sits: the first frame that is not silence must be content
// frame `k` for some k below `search`; returns output index - k.
inline std::optional<std::int64_t> align(const Outcome& o, const GeneratorOptions& g, std::size_t search = 4800) {
    std::size_t first = 0;
    while (first < o.frames() && o.silent(first)) ++first;
    if (first == o.frames()) return std::nullopt;
    const auto ref = content(g, 0, search);
    for (std::size_t k = 0; k < search; ++k)
        if (std::equal(o.frame(first), o.frame(first) + o.channels, &ref[k * o.channels]))
            return static_cast<std::int64_t>(first) - static_cast<std::int64_t>(k);
    return std::nullopt;
}

struct Match {
    std::uint64_t exact = 0, silent = 0, other = 0; // output frames from the aligned start on
    std::optional<std::uint64_t> first_other;        // content index of the first wrong frame
};
// Output against content from `offset` on, over content frames [0, frames).
inline Match compare(const Outcome& o, const GeneratorOptions& g, std::int64_t offset, std::uint64_t frames) {
    Match m;
    const std::size_t chunk = 4800;
    for (std::uint64_t k0 = 0; k0 < frames; k0 += chunk) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, frames - k0));
        const auto ref = content(g, k0, n);
        for (std::size_t j = 0; j < n; ++j) {
            const std::int64_t i = offset + static_cast<std::int64_t>(k0 + j);
            if (i < 0 || static_cast<std::size_t>(i) >= o.frames()) continue;
            const auto* f = o.frame(static_cast<std::size_t>(i));
            if (std::equal(f, f + o.channels, &ref[j * o.channels])) ++m.exact;
            else if (o.silent(static_cast<std::size_t>(i))) ++m.silent;
            else {
                ++m.other;
                if (!m.first_other) m.first_other = k0 + j;
            }
        }
    }
    return m;
}

// The largest second difference of channel `c` over output frames [from, to), in full scale:
// a sine's is (2 pi f / rate)^2 times its amplitude; a slip, jump or drop shows far above it.
inline double max_second_difference(const Outcome& o, std::size_t from, std::size_t to, unsigned c = 0) {
    double worst = 0;
    for (std::size_t i = from + 2; i < std::min(to, o.frames()); ++i) {
        const double a = o.frame(i - 2)[c] * 0x1p-31, b = o.frame(i - 1)[c] * 0x1p-31, x = o.frame(i)[c] * 0x1p-31;
        worst = std::max(worst, std::abs(x - 2 * b + a));
    }
    return worst;
}

inline double median(std::vector<double> v) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace vsnd::rtp::test
