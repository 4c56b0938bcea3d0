// What a backend stream that opens on its own thread shares with the device thread: the device's
// waker (WakerSlot: set once on the device thread right after open, called from the backend's
// thread) and the result of the open (OpenStateSlot: published once by the backend's thread, read
// by the device thread). Both are sequentially consistent, so a backend thread that publishes
// the open and then wakes cannot miss a waker that the device set just before reading the state:
// one of the two sees the other.
#pragma once

#include "vsnd/device/audio_backend.hpp"

#include <atomic>
#include <optional>
#include <string>

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

class OpenStateSlot {
public:
    // Backend thread, once: the open finished; `error` says why it failed, if it did.
    void publish(std::optional<std::string> error) {
        if (error) error_ = std::move(*error);
        kind_.store(error ? OpenState::Failed : OpenState::Ready, std::memory_order_seq_cst);
    }
    // Device thread: Opening until publish().
    OpenState load() const {
        const auto k = static_cast<OpenState::Kind>(kind_.load(std::memory_order_seq_cst));
        return {k, k == OpenState::Failed ? error_ : std::string{}};
    }

private:
    std::string error_;                       // written before kind_ says Failed
    std::atomic<int> kind_{OpenState::Opening};
};

} // namespace vsnd::device
