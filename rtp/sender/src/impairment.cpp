#include "vsnd/rtp/impairment.hpp"

namespace vsnd::rtp {

double Impairment::uniform() {
    // xorshift64*: small, fast and the same everywhere.
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return static_cast<double>((rng_ * 2685821657736338717ull) >> 11) * 0x1p-53;
}

void Impairment::hold(std::span<const std::uint8_t> d, Nanos due) {
    if (held_.size() >= opt_.max_held) {
        ++counters_.overflow;
        return;
    }
    held_.push(Held{due, order_++, std::vector<std::uint8_t>(d.begin(), d.end())});
}

void Impairment::push(std::span<const std::uint8_t> d, Nanos now) {
    ++counters_.in;
    if (opt_.burst_loss > 0) {
        // Two states: leave a burst with probability 1/length; enter one so that the overall
        // loss is burst_loss: p_enter = p_leave * loss / (1 - loss).
        const double leave = 1.0 / std::max(1.0, opt_.burst_length);
        const double enter = leave * opt_.burst_loss / (1 - opt_.burst_loss);
        in_burst_ = in_burst_ ? uniform() >= leave : uniform() < enter;
        if (in_burst_) {
            ++counters_.lost;
            return;
        }
    }
    if (opt_.loss > 0 && uniform() < opt_.loss) {
        ++counters_.lost;
        return;
    }
    Nanos due = now;
    if (opt_.jitter > 0) due += static_cast<Nanos>(uniform() * static_cast<double>(opt_.jitter));
    if (opt_.reorder > 0 && uniform() < opt_.reorder) {
        due += opt_.reorder_delay;
        ++counters_.reordered;
    }
    hold(d, due);
    if (opt_.duplicate > 0 && uniform() < opt_.duplicate) {
        ++counters_.duplicated;
        hold(d, due);
    }
}

std::vector<std::uint8_t> Impairment::pop() {
    auto data = std::move(const_cast<Held&>(held_.top()).data);
    held_.pop();
    ++counters_.out;
    return data;
}

} // namespace vsnd::rtp
