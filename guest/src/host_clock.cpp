#include "host_clock.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pcm.hpp"  // monotonic_ns

namespace vsnd::guest {
namespace {

namespace fs = std::filesystem;

std::string read_line(const fs::path& p) {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    return s;
}

unsigned long hex_value(const fs::path& p) {
    const std::string s = read_line(p);
    try {
        return std::stoul(s, nullptr, 16);
    } catch (const std::exception&) {
        return ~0ul;
    }
}

// The first PCI function with the ivshmem vendor/device id.
fs::path find_ivshmem() {
    const fs::path root = "/sys/bus/pci/devices";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec)) {
        if (hex_value(e.path() / "vendor") == hostclock::kPciVendor &&
            hex_value(e.path() / "device") == hostclock::kPciDevice)
            return e.path();
    }
    throw std::runtime_error("host clock: no ivshmem PCI device (1af4:1110) in /sys/bus/pci/devices "
                             "(vm-images/run-vm --host-clock FILE)");
}

const hostclock::Page* map_page(const fs::path& file, bool pci) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("host clock: " + file.string() + ": " + std::strerror(errno));
    if (!pci) {
        // A plain file may still be growing to its size (publisher starting): touching a page
        // beyond its end would be SIGBUS.
        struct stat st {};
        for (int i = 0; ::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < hostclock::kPageBytes; ++i) {
            if (i == 1000) {
                ::close(fd);
                throw std::runtime_error("host clock: " + file.string() + " is smaller than a page");
            }
            ::usleep(1000);
        }
    }
    void* p = ::mmap(nullptr, hostclock::kPageBytes, PROT_READ, MAP_SHARED, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED)
        throw std::runtime_error("host clock: mmap " + file.string() + ": " + std::strerror(err) +
                                 (pci ? " (BAR 2 not assigned or memory decoding off?)" : ""));
    return static_cast<const hostclock::Page*>(p);
}

}  // namespace

HostClock HostClock::open(const std::string& spec) {
    fs::path file;
    std::string where;
    bool pci = false;
    if (spec == "auto" || fs::is_directory(spec)) {
        const fs::path dev = spec == "auto" ? find_ivshmem() : fs::path(spec);
        // Without a driver nothing may have enabled the function; memory decoding is needed to
        // reach the BAR ("enable" is pci_enable_device()).
        if (read_line(dev / "enable") == "0") {
            std::ofstream en(dev / "enable");
            en << "1\n";
        }
        file = dev / "resource2";
        where = dev.filename().string() + "/resource2";
        pci = true;
    } else {
        file = spec;
        where = spec;
    }
    const hostclock::Page* page = map_page(file, pci);
    // The publisher starts before QEMU, so the page is live; allow a moment anyway.
    const std::uint64_t t0 = monotonic_ns();
    while (__atomic_load_n(&page->magic, __ATOMIC_ACQUIRE) != hostclock::kMagic) {
        if (monotonic_ns() - t0 > 1'000'000'000u) {
            ::munmap(const_cast<hostclock::Page*>(page), hostclock::kPageBytes);
            throw std::runtime_error("host clock: " + where + " holds no published clock (magic missing)");
        }
        ::usleep(1000);
    }
    return HostClock(page, where);
}

HostClock::HostClock(HostClock&& o) noexcept : page_(o.page_), where_(std::move(o.where_)) {
    o.page_ = nullptr;
    fallbacks_.store(o.fallbacks_.load());
}

HostClock::~HostClock() {
    if (page_) ::munmap(const_cast<hostclock::Page*>(page_), hostclock::kPageBytes);
}

std::uint64_t HostClock::period_ns() const { return __atomic_load_n(&page_->period_ns, __ATOMIC_RELAXED); }

std::uint64_t HostClock::edge_timeout_ns() const {
    // The publisher shares a busy host with QEMU and can wake up milliseconds late. Waiting for
    // it costs nothing in accuracy (it publishes the time it really woke up), so wait long:
    // 50 periods, at least 10 ms.
    const std::uint64_t p = period_ns();
    return std::max<std::uint64_t>(50 * p, 10'000'000u);
}

HostClock::Pair HostClock::read_plain() const {
    const hostclock::Snapshot s = hostclock::read(page_);
    return {monotonic_ns(), s.ns, 0, 0, false};
}

HostClock::Pair HostClock::read_edge(std::uint64_t timeout_ns) const {
    constexpr std::uint64_t kGoodWidth = 20'000;
    std::uint32_t seen = hostclock::read(page_).seq;
    const std::uint64_t t0 = monotonic_ns();
    std::uint64_t before = t0;  // guest time just before the last look that did not see a new value
    Pair best{};
    for (;;) {
        const std::uint64_t g = monotonic_ns();
        const std::uint32_t s = hostclock::load_seq(page_);
        if (s != seen && !(s & 1u)) {
            const std::uint64_t ns = hostclock::load_ns(page_);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            const std::uint64_t after = monotonic_ns();
            if (__atomic_load_n(&page_->seq, __ATOMIC_RELAXED) == s) {
                // The previous look (after `before`) saw the old value and this look (before
                // `after`) the new one: the update became visible within (before, after).
                const std::uint64_t width = after - before;
                if (!best.edge || width < best.width_ns) best = {before + width / 2, ns, after - t0, width, true};
                if (width <= kGoodWidth) return best;
            }
            seen = s;
        }
        before = g;
        if (g - t0 > timeout_ns) break;
        // No PAUSE: under TCG it leaves the translated code (cpu_loop_exit), which costs far
        // more than the loop itself and would widen the bracket.
    }
    if (best.edge) return best;
    fallbacks_.fetch_add(1, std::memory_order_relaxed);
    Pair p = read_plain();
    p.wait_ns = p.guest_ns - t0;
    return p;
}

HostClockSampler::HostClockSampler(const HostClock& hc, std::uint64_t interval_ns) : hc_(hc), interval_ns_(interval_ns) {
    pairs_.reserve(8192);
    thread_ = std::thread([this] { run(); });
}

HostClockSampler::~HostClockSampler() { stop(); }

void HostClockSampler::stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
}

void HostClockSampler::run() {
    // Below the threads being measured: they preempt this one whenever they wake up.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 10);
    constexpr std::uint64_t kGoodWidth = 20'000;
    std::uint64_t next = monotonic_ns();
    while (!stop_.load()) {
        const HostClock::Pair p = hc_.read_edge();
        if (p.edge && p.width_ns <= kGoodWidth)
            pairs_.push_back(p);
        else
            ++dropped_;
        next += interval_ns_;
        const std::uint64_t now = monotonic_ns();
        if (next < now) next = now;
        timespec ts{static_cast<time_t>(next / 1'000'000'000u), static_cast<long>(next % 1'000'000'000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
        }
    }
}

std::optional<std::uint64_t> HostClockSampler::host_at(const std::vector<HostClock::Pair>& pairs,
                                                       std::uint64_t guest_ns) {
    if (pairs.empty()) return std::nullopt;
    constexpr std::uint64_t kWindow = 250'000'000;
    constexpr std::size_t kMin = 8;
    auto by_guest = [](const HostClock::Pair& p, std::uint64_t g) { return p.guest_ns < g; };
    const auto lo_it = std::lower_bound(pairs.begin(), pairs.end(), guest_ns > kWindow ? guest_ns - kWindow : 0, by_guest);
    const auto hi_it = std::lower_bound(pairs.begin(), pairs.end(), guest_ns + kWindow, by_guest);
    std::size_t lo = static_cast<std::size_t>(lo_it - pairs.begin()), hi = static_cast<std::size_t>(hi_it - pairs.begin());
    // Widen to the kMin nearest pairs (the run's edges, or a stretch without good pairs).
    while (hi - lo < kMin && (lo > 0 || hi < pairs.size())) {
        const bool take_lo = hi >= pairs.size() ||
                             (lo > 0 && guest_ns - pairs[lo - 1].guest_ns < pairs[hi].guest_ns - guest_ns);
        take_lo ? --lo : ++hi;
    }
    // offset = host - guest, as a straight line in (guest - guest_ns)
    std::vector<double> off;
    off.reserve(hi - lo);
    for (std::size_t i = lo; i < hi; ++i)
        off.push_back(static_cast<double>(static_cast<std::int64_t>(pairs[i].host_ns - pairs[i].guest_ns)));
    std::vector<double> sorted = off;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
    const double median = sorted[sorted.size() / 2];
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = lo; i < hi; ++i) {
        const double y = off[i - lo] - median;  // centred: the sums stay exact in a double
        if (std::fabs(y) > 50'000) continue;
        const double x = static_cast<double>(static_cast<std::int64_t>(pairs[i].guest_ns - guest_ns));
        n += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
    }
    double at = 0;
    if (n >= 2 && n * sxx - sx * sx > 0) {
        const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
        at = (sy - slope * sx) / n;  // the line's value at x = 0, i.e. at guest_ns
    } else if (n >= 1) {
        at = sy / n;
    }
    return guest_ns + static_cast<std::uint64_t>(static_cast<std::int64_t>(median) + std::llround(at));
}

}  // namespace vsnd::guest
