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
constexpr std::size_t kHeaderBytes = 4096; // config space (16) + features (8) + config size (4)
constexpr std::size_t kFeaturesAt = 16, kConfigSizeAt = 24;

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

std::size_t region_bytes(const LoopbackLayout& l) {
    const auto r = virtq::ring_bytes(l.queue_size);
    const std::size_t per_queue = align_up(r.desc, 64) + align_up(r.avail, 64) + align_up(r.used, 64) +
                                  virtq::indirect_area_bytes(l.queue_size, l.indirect_entries);
    return align_up(kHeaderBytes + kQueues * per_queue, 4096) + l.dma_bytes;
}
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

EventFd::EventFd() {
    fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd_ < 0) throw_errno("eventfd");
}
EventFd::~EventFd() { close(fd_); }

void EventFd::signal() const {
    const std::uint64_t one = 1;
    // EAGAIN only when the counter is saturated, which still means "signalled".
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

bool EventFd::consume() const {
    std::uint64_t v;
    return ::read(fd_, &v, sizeof v) == sizeof v;
}

LoopbackTransport::LoopbackTransport(LoopbackLayout layout) : layout_(layout), shm_(region_bytes(layout)) {
    memory_.add({kGuestBase, shm_.size(), shm_.data(), reinterpret_cast<std::uint64_t>(shm_.data())});
    const auto r = virtq::ring_bytes(layout.queue_size);
    std::uint64_t at = kGuestBase + kHeaderBytes;
    for (auto& q : queues_) {
        q.desc = at;
        at += align_up(r.desc, 64);
        q.avail = at;
        at += align_up(r.avail, 64);
        q.used = at;
        at += align_up(r.used, 64);
        q.indirect = at;
        at += virtq::indirect_area_bytes(layout.queue_size, layout.indirect_entries);
    }
    dma_gpa_ = align_up(at, 4096);
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
    auto desc = memory_.span(queues_[q].desc, r.desc);
    auto avail = memory_.span(queues_[q].avail, r.avail);
    auto used = memory_.span(queues_[q].used, r.used);
    if (!desc || !avail || !used) throw std::out_of_range("virtqueue outside guest memory");
    return {layout_.queue_size, {desc->data(), avail->data(), used->data()}, layout_.event_idx,
            layout_.indirect_entries > 0};
}

virtq::RingAddresses LoopbackTransport::driver_rings(unsigned q) const {
    return {host(queues_[q].desc), host(queues_[q].avail), host(queues_[q].used)};
}

virtq::IndirectArea LoopbackTransport::indirect_area(unsigned q) const {
    return {queues_[q].indirect, host(queues_[q].indirect), layout_.indirect_entries};
}

LoopbackDriverEnd::LoopbackDriverEnd(LoopbackTransport& t, const Clock& clock)
    : t_(t), clock_(clock), next_free_(t.dma_base()) {
    for (unsigned q = 0; q < kQueues; ++q) {
        std::optional<virtq::IndirectArea> ind;
        if (t.layout().indirect_entries) ind = t.indirect_area(q);
        queues_[q] = std::make_unique<virtq::DriverQueue>(t.driver_rings(q), t.layout().queue_size, t.layout().event_idx, ind);
    }
}

std::optional<driver::DmaBuffer> LoopbackDriverEnd::allocate(std::size_t bytes, std::size_t align) {
    const std::uint64_t gpa = align_up(next_free_, align ? align : 1);
    const std::uint64_t end = LoopbackTransport::kGuestBase + t_.shared_memory().size();
    if (gpa > end || bytes > end - gpa) return std::nullopt;
    next_free_ = gpa + bytes;
    return driver::DmaBuffer{gpa, t_.host(gpa), bytes};
}

bool LoopbackDriverEnd::consume_calls() {
    bool any = false;
    for (unsigned q = 0; q < kQueues; ++q) any |= t_.call(q).consume();
    return any;
}

bool LoopbackDriverEnd::wait_interrupt(Nanos timeout) {
    if (consume_calls()) return true;
    pollfd fds[kQueues];
    for (unsigned q = 0; q < kQueues; ++q) fds[q] = {t_.call(q).fd(), POLLIN, 0};
    const int ms = static_cast<int>(std::max<Nanos>(0, (timeout + 999'999) / 1'000'000));
    if (::poll(fds, kQueues, ms) <= 0) return false;
    return consume_calls();
}

} // namespace vsnd::transport
