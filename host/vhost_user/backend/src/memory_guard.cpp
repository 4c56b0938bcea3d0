#include "memory_guard.hpp"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace vsnd::vhost_user::memory_guard {
namespace {

struct Slot {
    std::atomic<std::uintptr_t> base{0};
    std::atomic<std::size_t> len{0};
    std::atomic<bool> faulted{false};
};

std::array<Slot, kSlots> g_slots;
std::atomic<int> g_fault_fd{-1};
struct sigaction g_previous {};

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
    const int saved_errno = errno;
    const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (auto& s : g_slots) {
        const std::uintptr_t base = s.base.load(std::memory_order_acquire);
        const std::size_t len = s.len.load(std::memory_order_acquire);
        if (base <= 1 || addr < base || addr - base >= len) continue; // 1: being claimed
        // mmap and write are plain system calls: safe here. The access is restarted and succeeds.
        // NORESERVE like the original mapping: a large region must not fail on commit accounting.
        if (::mmap(reinterpret_cast<void*>(base), len, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED)
            break;
        s.faulted.store(true, std::memory_order_release);
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(g_fault_fd.load(std::memory_order_relaxed), &one, sizeof one);
        errno = saved_errno;
        return;
    }
    errno = saved_errno;
    // Not guest memory: the handler before ours (a sanitizer's, say), or the default action: with
    // SIG_DFL restored, returning re-runs the faulting access and the core shows where it was.
    const bool previous_is_function = g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN;
    if (previous_is_function && (g_previous.sa_flags & SA_SIGINFO)) return g_previous.sa_sigaction(sig, info, ctx);
    if (previous_is_function) return g_previous.sa_handler(sig);
    ::signal(SIGBUS, SIG_DFL);
}

void install_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        g_fault_fd.store(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), std::memory_order_relaxed);
        struct sigaction sa {};
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGBUS, &sa, &g_previous);
    });
}

} // namespace

// Installed when the program starts, so that the eventfd exists before anyone counts fds and the
// handler sits above whatever a sanitizer installed at its own start.
[[maybe_unused]] const bool g_installed = (install_once(), true);

int add(void* base, std::size_t len) {
    install_once();
    for (int i = 0; i < kSlots; ++i) {
        auto& s = g_slots[static_cast<std::size_t>(i)];
        // Claimed with a marker first (never a valid address), then filled, then published.
        std::uintptr_t expected = 0;
        if (!s.base.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
        s.faulted.store(false, std::memory_order_relaxed);
        s.len.store(len, std::memory_order_release);
        s.base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
        return i;
    }
    return -1;
}

void remove(int slot) {
    if (slot < 0 || slot >= kSlots) return;
    g_slots[static_cast<std::size_t>(slot)].base.store(0, std::memory_order_release);
}

bool faulted(int slot) {
    return slot >= 0 && slot < kSlots && g_slots[static_cast<std::size_t>(slot)].faulted.load(std::memory_order_acquire);
}

int fault_fd() {
    install_once();
    return g_fault_fd.load(std::memory_order_relaxed);
}

} // namespace vsnd::vhost_user::memory_guard
