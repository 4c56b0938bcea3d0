// Wire format: every structure round-trips, has the spec's size, and a short, oversized or
// out-of-range message is an error value.
#include "vsnd/wire/control_structs.hpp"
#include "vsnd/wire/virtio_snd.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace vsnd::wire {
namespace {

template <class T>
void expect_malformed_sizes_rejected(const T& msg) {
    auto b = encode(msg);
    std::vector<std::uint8_t> v(b.begin(), b.end());
    auto shorter = std::span<const std::uint8_t>(v).first(v.size() - 1);
    EXPECT_EQ(decode<T>(shorter).error(), WireError::Truncated);
    EXPECT_EQ(decode<T>(std::span<const std::uint8_t>()).error(), WireError::Truncated);
    v.push_back(0);
    EXPECT_EQ(decode<T>(v).error(), WireError::Oversized);
}

TEST(Wire, PcmSetParamsRoundTripAndLayout) {
    PcmSetParams p{3, 32768, 4096, bit(PcmFeature::EvtXruns), 6, PcmFormat::S24, PcmRate::R96000};
    auto b = encode(p);
    ASSERT_EQ(b.size(), 24u);
    EXPECT_EQ(b[0], 0x01); // code 0x0101, little-endian
    EXPECT_EQ(b[1], 0x01);
    EXPECT_EQ(b[4], 3);    // stream_id
    EXPECT_EQ(b[20], 6);   // channels
    EXPECT_EQ(b[21], 15);  // S24
    EXPECT_EQ(b[22], 10);  // 96000
    EXPECT_EQ(b[23], 0);   // padding
    auto d = decode<PcmSetParams>(b);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->stream_id, 3u);
    EXPECT_EQ(d->buffer_bytes, 32768u);
    EXPECT_EQ(d->period_bytes, 4096u);
    EXPECT_EQ(d->features, bit(PcmFeature::EvtXruns));
    EXPECT_EQ(d->format, PcmFormat::S24);
    EXPECT_EQ(d->rate, PcmRate::R96000);
    expect_malformed_sizes_rejected(p);
}

TEST(Wire, UndefinedFormatOrRateIsInvalid) {
    auto b = encode(PcmSetParams{0, 4, 4, 0, 1, PcmFormat::S16, PcmRate::R48000});
    b[21] = kPcmFormatCount;
    EXPECT_EQ(decode<PcmSetParams>(b).error(), WireError::InvalidValue);
    b[21] = 5;
    b[22] = kPcmRateCount;
    EXPECT_EQ(decode<PcmSetParams>(b).error(), WireError::InvalidValue);
}

TEST(Wire, AllStructuresRoundTrip) {
    {
        PcmInfo i{7, bit(PcmFeature::EvtXruns), 0x28020, 0x1ff0, Direction::Input, 1, 8};
        auto d = decode<PcmInfo>(encode(i));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->hda_fn_nid, 7u);
        EXPECT_EQ(d->formats, 0x28020u);
        EXPECT_EQ(d->rates, 0x1ff0u);
        EXPECT_EQ(d->direction, Direction::Input);
        EXPECT_EQ(d->channels_max, 8);
        expect_malformed_sizes_rejected(i);
        auto b = encode(i);
        b[24] = 2; // direction
        EXPECT_EQ(decode<PcmInfo>(b).error(), WireError::InvalidValue);
    }
    {
        JackInfo j{1, kJackFeatureRemap, 0x01014010, 0x10, true};
        auto d = decode<JackInfo>(encode(j));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->hda_reg_defconf, 0x01014010u);
        EXPECT_TRUE(d->connected);
        expect_malformed_sizes_rejected(j);
    }
    {
        ChmapInfo c{0, Direction::Output, 2, {}};
        c.positions[0] = ChannelPosition::FL;
        c.positions[1] = ChannelPosition::FR;
        auto d = decode<ChmapInfo>(encode(c));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->channels, 2);
        EXPECT_EQ(d->positions[1], ChannelPosition::FR);
        expect_malformed_sizes_rejected(c);
        auto b = encode(c);
        b[5] = 19; // more channels than positions
        EXPECT_EQ(decode<ChmapInfo>(b).error(), WireError::InvalidValue);
        b[5] = 2;
        b[6] = kChannelPositionCount;
        EXPECT_EQ(decode<ChmapInfo>(b).error(), WireError::InvalidValue);
    }
    {
        auto d = decode<QueryInfo>(encode(QueryInfo{Code::PcmInfo, 1, 2, 32}));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->code, Code::PcmInfo);
        EXPECT_EQ(d->count, 2u);
        expect_malformed_sizes_rejected(QueryInfo{Code::PcmInfo, 1, 2, 32});
    }
    {
        auto d = decode<PcmStatus>(encode(PcmStatus{Status::IoErr, 1234}));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->status, Status::IoErr);
        EXPECT_EQ(d->latency_bytes, 1234u);
        auto b = encode(PcmStatus{Status::Ok, 0});
        b[0] = 0x04; // 0x8004 is not a status
        EXPECT_EQ(decode<PcmStatus>(b).error(), WireError::InvalidValue);
        expect_malformed_sizes_rejected(PcmStatus{Status::Ok, 0});
    }
    {
        auto d = decode<Event>(encode(Event{Code::EvtJackConnected, 3}));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->type, Code::EvtJackConnected);
        EXPECT_EQ(d->data, 3u);
        expect_malformed_sizes_rejected(Event{Code::EvtPcmXrun, 0});
    }
    {
        auto d = decode<JackRemap>(encode(JackRemap{1, 2, 3}));
        ASSERT_TRUE(d);
        EXPECT_EQ(d->sequence, 3u);
        expect_malformed_sizes_rejected(JackRemap{1, 2, 3});
        expect_malformed_sizes_rejected(PcmHeader{Code::PcmStart, 0});
        expect_malformed_sizes_rejected(JackHeader{Code::JackInfo, 0});
        expect_malformed_sizes_rejected(PcmXfer{0});
        expect_malformed_sizes_rejected(Header{Code::PcmInfo});
    }
}

TEST(Wire, ConfigIs12Or16Bytes) {
    auto b = encode(Config{1, 2, 3, 4});
    auto d12 = decode_config(std::span<const std::uint8_t>(b).first(12));
    ASSERT_TRUE(d12);
    EXPECT_EQ(d12->chmaps, 3u);
    EXPECT_EQ(d12->controls, 0u); // absent without VIRTIO_SND_F_CTLS
    EXPECT_EQ(decode_config(b)->controls, 4u);
    EXPECT_EQ(decode_config(std::span<const std::uint8_t>(b).first(8)).error(), WireError::Truncated);
    EXPECT_FALSE(decode_config(std::span<const std::uint8_t>(b).first(14)));
}

TEST(Wire, ControlStructuresMatchV13Sizes) {
    EXPECT_EQ(encode(CtlInfo{}).size(), 96u);
    EXPECT_EQ(encode(CtlHeader{Code::CtlRead, 1}).size(), 8u);
    auto ev = encode(CtlEvent{5, 1u << static_cast<unsigned>(CtlNotifyMask::Value)});
    auto d = decode<CtlEvent>(ev);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->control_id, 5);
    ev[6] = 0x08; // undefined mask bit
    EXPECT_EQ(decode<CtlEvent>(ev).error(), WireError::InvalidValue);
    CtlInfo info;
    info.name = std::string(60, 'x'); // longer than the field: cut, still 0-terminated
    auto b = encode(info);
    EXPECT_EQ(b[24 + kCtlNameSize - 1], 0);
    EXPECT_EQ(ctl_max_count(CtlType::Integer64), 64u);
}

TEST(Wire, FormatAndRateFacts) {
    EXPECT_EQ(format_info(PcmFormat::S24)->physical_bytes, 4u);
    EXPECT_EQ(format_info(PcmFormat::S24_3)->physical_bytes, 3u);
    EXPECT_EQ(format_info(PcmFormat::Float64)->physical_bytes, 8u);
    EXPECT_EQ(rate_hz(PcmRate::R12000), 12000u); // v1.4: appended out of order
    EXPECT_EQ(rate_from_hz(44100), PcmRate::R44100);
    EXPECT_FALSE(rate_from_hz(44000));
    EXPECT_EQ(peek_code(encode(PcmHeader{Code::PcmStop, 9})).value(), Code::PcmStop);
    EXPECT_FALSE(peek_code(std::span<const std::uint8_t>()));
}

} // namespace
} // namespace vsnd::wire
