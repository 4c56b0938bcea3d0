// A vhost-user front-end (the QEMU side) as a driver::DriverTransport: it connects to a backend's
// socket, negotiates like QEMU 10.0 does for vhost-user-snd-pci, puts "guest memory" in a memfd
// (guest-physical base options.guest_base, userspace_addr = where it is mapped here), lays out
// the four split rings and a DMA area in it, and hands the backend the memfd and kick/call
// eventfds. driver::SoundDriver then runs against vsnd-host from another process exactly as a
// guest does. Blocking and single-threaded, like the driver model.
#pragma once

#include "vsnd/driver/guest_layout.hpp"
#include "vsnd/event_fd.hpp"
#include "vsnd/driver/transport.hpp"
#include "vsnd/vhost_user/protocol.hpp"

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace vsnd::vhost_user {

struct FrontendOptions {
    std::uint16_t queue_size = 64;        // what QEMU uses for vhost-user-snd
    std::uint16_t indirect_entries = 32;  // per-slot indirect tables if INDIRECT_DESC is offered; 0: never
    bool event_idx = true;                // use VIRTIO_RING_F_EVENT_IDX if offered
    std::size_t dma_bytes = 16u << 20;
    std::uint64_t guest_base = 0x10'0000; // guest-physical address of the memory region
    int reply_timeout_ms = 5000;
};

class Frontend final : public driver::DriverTransport {
public:
    // Connects, negotiates, and starts the device (QEMU's realize + DRIVER_OK sequence).
    static Expected<std::unique_ptr<Frontend>, std::string> connect(const std::filesystem::path& socket,
                                                                    FrontendOptions options = {});
    // Closes the connection without a stop sequence, as if QEMU were killed.
    ~Frontend() override;
    Frontend(const Frontend&) = delete;
    Frontend& operator=(const Frontend&) = delete;

    // driver::DriverTransport. config() is a GET_CONFIG round trip each time, as for QEMU.
    std::span<const std::uint8_t> config() override;
    std::uint64_t device_features() override { return acked_features_; }
    virtq::DriverQueue& queue(unsigned index) override { return *queues_.at(index); }
    void kick(unsigned index) override;
    // The memfd behind "guest memory", for hostile tests (shrinking it under the back-end).
    int memory_fd() const { return memfd_.get(); }
    std::optional<driver::DmaBuffer> allocate(std::size_t bytes, std::size_t align = 64) override;
    void release(const driver::DmaBuffer& b) override { dma_.release(b); }
    int interrupt_fd() override { return calls_set_ ? calls_set_->fd() : -1; }
    void clear_interrupt() override;
    // Polls the call eventfds; false on timeout or when the backend has gone.
    bool wait_interrupt(Nanos timeout) override;

    // QEMU's stop sequence: SET_VRING_ENABLE 0 on every ring, then GET_VRING_BASE. Returns the
    // backend's next avail index per ring. The device is stopped afterwards.
    Expected<std::array<std::uint16_t, wire::kQueueCount>, std::string> stop();

    std::uint64_t backend_features() const { return backend_features_; }
    std::uint64_t protocol_features() const { return protocol_features_; }
    bool backend_gone() const { return backend_gone_; }
    bool device_gone() const override { return backend_gone_; }
    const std::string& last_error() const { return last_error_; }

    // ---- for a front-end playing hostile (tests/hostile): the guest's memory and raw messages ----
    // Guest memory as mapped in this process; `guest_base()` is its guest-physical address and
    // `user_address()` the address the backend was told it is mapped at.
    std::span<std::uint8_t> guest_memory() { return {mem_, mem_size_}; }
    std::uint64_t guest_base() const { return opt_.guest_base; }
    std::uint64_t user_address() const { return reinterpret_cast<std::uint64_t>(mem_); }
    const driver::GuestLayout& layout() const { return layout_; }
    int kick_fd(unsigned q) const { return kicks_.at(q).get(); }
    int call_fd(unsigned q) const { return calls_.at(q).get(); }
    // Sends any request with any fds, as is; with `reply_size`, reads a reply of that size.
    Expected<std::vector<std::uint8_t>, std::string> send_raw(Request r, std::span<const std::uint8_t> payload,
                                                             std::span<const int> fds = {},
                                                             std::optional<std::uint32_t> reply_size = std::nullopt);

private:
    explicit Frontend(FrontendOptions options);
    Expected<Done, std::string> open(const std::filesystem::path& socket);
    Expected<Done, std::string> start();
    Expected<Done, std::string> send(Request r, std::span<const std::uint8_t> payload, std::span<const int> fds = {},
                                     bool want_ack = false);
    Expected<std::vector<std::uint8_t>, std::string> request(Request r, std::span<const std::uint8_t> payload,
                                                            std::uint32_t reply_size);
    Expected<std::vector<std::uint8_t>, std::string> read_reply(Request r, std::uint32_t size);
    Expected<Done, std::string> read_exact(std::span<std::uint8_t> out);
    Expected<std::uint64_t, std::string> get_u64(Request r);

    FrontendOptions opt_;
    driver::GuestLayout layout_;
    UniqueFd socket_;
    UniqueFd memfd_;
    std::uint8_t* mem_ = nullptr;
    std::size_t mem_size_ = 0;
    std::array<UniqueFd, wire::kQueueCount> kicks_, calls_, errs_;
    std::array<std::unique_ptr<virtq::DriverQueue>, wire::kQueueCount> queues_;
    driver::DmaAllocator dma_;
    std::unique_ptr<ReadableSet> calls_set_; // the call eventfds as one interrupt fd
    std::uint64_t backend_features_ = 0, acked_features_ = 0, protocol_features_ = 0;
    std::array<std::uint8_t, 16> config_{};
    std::size_t config_len_ = 12;
    bool backend_gone_ = false;
    std::string last_error_;
};

} // namespace vsnd::vhost_user
