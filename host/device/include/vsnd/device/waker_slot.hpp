// Where a backend stream keeps the device's waker: set once on the device thread (right after
// open), called from the backend's own thread. The store and the load are sequentially
// consistent, so a backend thread that publishes a state change (seq_cst) and then wakes cannot
// miss a waker that the device set just before reading that state: one of the two sees the other.
#pragma once

#include "vsnd/device/audio_backend.hpp"

#include <atomic>

namespace vsnd::device {

class WakerSlot {
public:
    // Device thread, once; later calls are ignored (the backend thread may be calling it).
    void set(Waker wake) {
        if (slot_.load(std::memory_order_seq_cst)) return;
        storage_ = std::move(wake);
        slot_.store(&storage_, std::memory_order_seq_cst);
    }
    // Any thread; never blocks. Does nothing before set().
    void wake() const {
        if (const Waker* w = slot_.load(std::memory_order_seq_cst); w && *w) (*w)();
    }
    bool is_set() const { return slot_.load(std::memory_order_relaxed) != nullptr; }

private:
    Waker storage_;                        // written once, before slot_ is published
    std::atomic<const Waker*> slot_{nullptr};
};

} // namespace vsnd::device
