// Polls `pred` until it holds, up to `ms` milliseconds: for tests that wait on another thread or
// process.
#pragma once

#include <chrono>
#include <thread>

namespace vsnd::test {

template <class Pred>
bool eventually(Pred pred, int ms = 5000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return pred();
}

} // namespace vsnd::test
