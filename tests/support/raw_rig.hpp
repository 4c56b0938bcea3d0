// A device model driven by hand-made messages: tests build any request (well-formed or not),
// send it through the real rings and look at exactly what the device answered.
#pragma once

#include "vsnd/backends/simulated_card.hpp"
#include "vsnd/device/sound_device.hpp"
#include "vsnd/transport/simulated_link.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace vsnd::test {

struct RawReply {
    bool completed = false;
    std::uint32_t used_len = 0;
    std::vector<std::uint8_t> written; // the writable parts, concatenated
};

struct RawRig {
    explicit RawRig(device::Topology topo = device::Topology::standard(1, 1), backends::CardModel card_model = {},
                    transport::LoopbackLayout layout = {})
        : transport(layout), card(clock, card_model), device(std::move(topo), card, clock), link(transport, device, clock) {
        device.set_logger([this](const std::string& m) { log.push_back(m); });
        transport.publish_config(device.config(), device.device_features());
        mem = *link.allocate(1 << 20, 4096);
        link.device_end();
    }

    // Copies `readable` into guest memory, reserves writable buffers of the given sizes, sends the
    // chain on queue q and waits for the device to return it.
    RawReply send(unsigned q, const std::vector<std::vector<std::uint8_t>>& readable, const std::vector<std::uint32_t>& writable) {
        std::vector<virtq::DriverBuffer> bufs;
        std::size_t at = 0;
        for (const auto& r : readable) {
            std::memcpy(mem.host + at, r.data(), r.size());
            bufs.push_back({mem.gpa + at, static_cast<std::uint32_t>(r.size()), false});
            at += (r.size() + 63) / 64 * 64;
        }
        std::vector<std::pair<std::size_t, std::uint32_t>> out;
        for (auto w : writable) {
            std::memset(mem.host + at, 0xee, w);
            bufs.push_back({mem.gpa + at, w, true});
            out.push_back({at, w});
            at += (w + 63) / 64 * 64;
        }
        auto& queue = link.queue(q);
        EXPECT_TRUE(queue.add(bufs, 42));
        if (queue.publish()) link.kick(q);
        RawReply reply;
        for (int i = 0; i < 100 && !reply.completed; ++i) {
            link.wait_interrupt(10'000'000);
            if (auto u = queue.reap()) {
                EXPECT_TRUE(*u);
                reply.completed = true;
                reply.used_len = (*u)->len;
            }
        }
        for (auto [off, len] : out) reply.written.insert(reply.written.end(), mem.host + off, mem.host + off + len);
        return reply;
    }

    // A control request; returns the status and fills `payload` with what follows it.
    wire::Status control(const std::vector<std::uint8_t>& request, std::uint32_t payload_size = 0,
                         std::vector<std::uint8_t>* payload = nullptr) {
        std::vector<std::uint32_t> w{4};
        if (payload_size) w.push_back(payload_size);
        auto r = send(0, {request}, w);
        EXPECT_TRUE(r.completed);
        auto st = wire::decode<wire::StatusHeader>(std::span(r.written).first(4));
        EXPECT_TRUE(st);
        if (payload) payload->assign(r.written.begin() + 4, r.written.end());
        if (st && st->status == wire::Status::Ok) EXPECT_EQ(r.used_len, 4 + payload_size);
        else EXPECT_EQ(r.used_len, 4u);
        return st ? st->status : wire::Status::IoErr;
    }

    template <class T> static std::vector<std::uint8_t> bytes(const T& msg) {
        auto a = wire::encode(msg);
        return {a.begin(), a.end()};
    }

    SimulatedClock clock;
    transport::LoopbackTransport transport;
    backends::SimulatedCard card;
    device::SoundDevice device;
    transport::SimulatedLink link;
    driver::DmaBuffer mem;
    std::vector<std::string> log;
};

} // namespace vsnd::test
