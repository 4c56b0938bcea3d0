#include "vsnd/transport/loopback.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace vsnd::transport {

namespace {
// The header page holds the config space (16) + device features (8) + config size (4).
constexpr std::size_t kFeaturesAt = 16, kConfigSizeAt = 24;

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }
} // namespace

SharedMemory::SharedMemory(std::size_t bytes) : size_(bytes) {
    fd_ = memfd_create("vsnd-guest-memory", MFD_CLOEXEC);
    if (fd_ < 0) throw_errno("memfd_create");
    if (ftruncate(fd_, static_cast<off_t>(bytes)) < 0) { close(fd_); throw_errno("ftruncate"); }
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) { close(fd_); throw_errno("mmap"); }
    data_ = static_cast<std::uint8_t*>(p);
}

SharedMemory::~SharedMemory() {
    munmap(data_, size_);
    close(fd_);
}

LoopbackTransport::LoopbackTransport(LoopbackLayout layout)
    : layout_(layout), placement_(layout.queue_size, layout.indirect_entries, layout.dma_bytes, wire::kQueueCount),
      shm_(placement_.total_bytes()) {
    memory_.add({kGuestBase, shm_.size(), shm_.data(), reinterpret_cast<std::uint64_t>(shm_.data())});
}

void LoopbackTransport::publish_config(const wire::Config& config, std::uint64_t features) {
    const auto bytes = wire::encode(config);
    const std::uint32_t size = (features & wire::kFeatureCtls) ? 16 : 12;
    std::memcpy(shm_.data(), bytes.data(), size);
    std::memcpy(shm_.data() + kFeaturesAt, &features, sizeof features);
    std::memcpy(shm_.data() + kConfigSizeAt, &size, sizeof size);
}

std::span<const std::uint8_t> LoopbackTransport::config_space() const {
    std::uint32_t size;
    std::memcpy(&size, shm_.data() + kConfigSizeAt, sizeof size);
    return {shm_.data(), std::min<std::uint32_t>(size, 16)};
}

std::uint64_t LoopbackTransport::device_features() const {
    std::uint64_t f;
    std::memcpy(&f, shm_.data() + kFeaturesAt, sizeof f);
    return f;
}

virtq::QueueConfig LoopbackTransport::device_queue_config(unsigned q) const {
    const auto r = virtq::ring_bytes(layout_.queue_size);
    // Translated like any guest address: a bad layout fails here, not in a ring access.
    const auto& p = placement_.queue(q);
    auto desc = memory_.span(gpa(p.desc), r.desc);
    auto avail = memory_.span(gpa(p.avail), r.avail);
    auto used = memory_.span(gpa(p.used), r.used);
    if (!desc || !avail || !used) throw std::out_of_range("virtqueue outside guest memory");
    return {layout_.queue_size, {desc->data(), avail->data(), used->data()}, layout_.event_idx,
            layout_.indirect_entries > 0};
}

virtq::RingAddresses LoopbackTransport::driver_rings(unsigned q) const {
    const auto& p = placement_.queue(q);
    return {host(gpa(p.desc)), host(gpa(p.avail)), host(gpa(p.used))};
}

virtq::IndirectArea LoopbackTransport::indirect_area(unsigned q) const {
    const auto& p = placement_.queue(q);
    return {gpa(p.indirect), host(gpa(p.indirect)), layout_.indirect_entries};
}

LoopbackDriverEnd::LoopbackDriverEnd(LoopbackTransport& t, const Clock& clock)
    : t_(t), clock_(clock),
      dma_(LoopbackTransport::kGuestBase, t.shared_memory().data(), t.dma_base() - LoopbackTransport::kGuestBase,
           t.shared_memory().size()) {
    for (unsigned q = 0; q < wire::kQueueCount; ++q) {
        std::optional<virtq::IndirectArea> ind;
        if (t.layout().indirect_entries) ind = t.indirect_area(q);
        queues_[q] = std::make_unique<virtq::DriverQueue>(t.driver_rings(q), t.layout().queue_size, t.layout().event_idx, ind);
        calls_.add(t.call(q).fd());
    }
}

std::optional<driver::DmaBuffer> LoopbackDriverEnd::allocate(std::size_t bytes, std::size_t align) {
    return dma_.allocate(bytes, align);
}

bool LoopbackDriverEnd::consume_calls() {
    bool any = false;
    for (unsigned q = 0; q < wire::kQueueCount; ++q) any |= t_.call(q).consume();
    return any;
}

bool LoopbackDriverEnd::wait_interrupt(Nanos timeout) {
    if (consume_calls()) return true;
    pollfd fds[wire::kQueueCount];
    for (unsigned q = 0; q < wire::kQueueCount; ++q) fds[q] = {t_.call(q).fd(), POLLIN, 0};
    const int ms = static_cast<int>(std::max<Nanos>(0, (timeout + 999'999) / 1'000'000));
    if (::poll(fds, wire::kQueueCount, ms) <= 0) return false;
    return consume_calls();
}

} // namespace vsnd::transport
