// The device side of a split virtqueue walking whatever a hostile driver put in guest memory:
// the input is the guest memory itself (descriptor table, avail ring, indirect tables, buffers).
#include "vsnd/virtq/chain.hpp"
#include "vsnd/virtq/device_queue.hpp"

#include <cstring>
#include <vector>

using namespace vsnd::virtq;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    constexpr std::uint16_t kQueue = 16;
    // Layout: [desc 256][avail 38][pad][used 134][pad] then free-form memory up to 8 KiB.
    std::vector<std::uint8_t> mem(8192, 0);
    std::memcpy(mem.data(), data + 2, std::min(size - 2, mem.size()));
    const bool event_idx = data[0] & 1, indirect = data[0] & 2;
    const std::uint64_t base = 0x1000 * (1 + data[1] % 4);
    GuestMemory gm;
    gm.add({base, mem.size(), mem.data(), 0});
    std::vector<std::uint8_t> used(ring_bytes(kQueue).used, 0);
    DeviceQueue q(gm, QueueConfig{kQueue, {mem.data(), mem.data() + 256, used.data()}, event_idx, indirect});
    for (int i = 0; i < 64; ++i) {
        auto c = q.pop();
        if (!c) break;
        if (!*c) {
            if (c->error().head_valid) q.push(c->error().head, 0);
            continue;
        }
        const Chain& chain = c->value();
        ChainReader in(chain);
        std::uint8_t buf[64];
        while (in.remaining()) in.read(buf);
        ChainWriter out(chain);
        out.write_at(chain.writable_bytes / 2, std::span<const std::uint8_t>(buf, 8));
        q.push(chain.head, static_cast<std::uint32_t>(chain.writable_bytes));
        (void)q.should_notify();
    }
    return 0;
}
