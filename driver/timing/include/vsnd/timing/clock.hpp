// Time as both sides of vsnd see it: nanoseconds on CLOCK_MONOTONIC, or on a clock a test
// drives by hand so timing logic is deterministic.
#pragma once

#include <cstdint>
#include <ctime>

namespace vsnd {

using Nanos = std::int64_t;
inline constexpr Nanos kNanosPerSecond = 1'000'000'000;

class Clock {
public:
    virtual ~Clock() = default;
    virtual Nanos now() const = 0;
};

class MonotonicClock final : public Clock {
public:
    Nanos now() const override {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return Nanos{ts.tv_sec} * kNanosPerSecond + ts.tv_nsec;
    }
};

class SimulatedClock final : public Clock {
public:
    explicit SimulatedClock(Nanos start = kNanosPerSecond) : now_(start) {}
    Nanos now() const override { return now_; }
    void advance_to(Nanos t) { if (t > now_) now_ = t; }
    void advance_by(Nanos d) { now_ += d; }

private:
    Nanos now_;
};

} // namespace vsnd
