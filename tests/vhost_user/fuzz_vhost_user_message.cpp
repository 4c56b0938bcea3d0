// libFuzzer target: the vhost-user message parser and frame reassembly on arbitrary bytes with
// 0-9 attached fds. Beyond ASan/UBSan findings, it traps if any fd given to the parser survives.
#include "vsnd/vhost_user/protocol.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

using namespace vsnd::vhost_user;

namespace {

std::vector<UniqueFd> make_fds(unsigned n, std::vector<int>& numbers) {
    std::vector<UniqueFd> fds;
    for (unsigned i = 0; i < n; ++i) {
        fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
        numbers.push_back(fds.back().get());
    }
    return fds;
}

void check_closed(const std::vector<int>& numbers) {
    for (int fd : numbers)
        if (::fcntl(fd, F_GETFD) != -1) __builtin_trap(); // leaked
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const unsigned nfds = data[0] % 10;
    const std::size_t chunk = data[1] % 17 + 1; // reassembly granularity
    const std::span<const std::uint8_t> bytes(data + 2, size - 2);
    std::vector<int> numbers;

    // The whole buffer as one message.
    {
        auto m = parse(bytes, make_fds(nfds, numbers));
        if (m) {
            if (m->header.size != bytes.size() - kHeaderSize) __builtin_trap();
            if (m->known && std::holds_alternative<MemoryTable>(m->body) &&
                std::get<MemoryTable>(m->body).regions.size() != m->fds.size())
                __builtin_trap();
        }
    }
    check_closed(numbers);
    numbers.clear();

    // The buffer as a stream, in small reads; fds arrive with the first read.
    {
        FrameReader reader;
        std::vector<Message> messages;
        auto fds = make_fds(nfds, numbers);
        std::size_t at = 0;
        while (at < bytes.size()) {
            auto buf = reader.buffer();
            const std::size_t n = std::min({chunk, buf.size(), bytes.size() - at});
            std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(at), n, buf.begin());
            at += n;
            auto r = reader.commit(n, std::move(fds));
            fds.clear();
            if (!r) break;
            if (*r) messages.push_back(std::move(**r));
        }
    }
    check_closed(numbers);
    return 0;
}
