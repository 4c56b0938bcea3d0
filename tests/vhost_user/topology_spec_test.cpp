// vsnd-host's --streams/--formats/--rates/--channels parsing.
#include "vsnd/vhost_user/topology_spec.hpp"

#include <gtest/gtest.h>

namespace vsnd::test {
namespace {

using vhost_user::make_topology;
using vhost_user::TopologySpec;

TEST(TopologySpec, DefaultIsOneOutputOneInputWithEverything) {
    auto t = make_topology({});
    ASSERT_TRUE(t) << t.error();
    ASSERT_EQ(t->streams.size(), 2u);
    EXPECT_EQ(t->streams[0].direction, wire::Direction::Output);
    EXPECT_EQ(t->streams[1].direction, wire::Direction::Input);
    EXPECT_EQ(t->streams[0].rates, device::Topology::standard(1, 1).streams[0].rates);
    EXPECT_EQ(t->streams[0].formats, device::Topology::standard(1, 1).streams[0].formats);
    EXPECT_EQ(t->chmaps.size(), 8u);
}

TEST(TopologySpec, ListsRangesAndOrder) {
    auto t = make_topology({"out:2,in:1,out", "S16", "44100,48000", "2"});
    ASSERT_TRUE(t) << t.error();
    ASSERT_EQ(t->streams.size(), 4u);
    EXPECT_EQ(t->streams[2].direction, wire::Direction::Input);
    EXPECT_EQ(t->streams[3].direction, wire::Direction::Output);
    EXPECT_EQ(t->streams[0].rates, device::rate_bits({wire::PcmRate::R44100, wire::PcmRate::R48000}));
    EXPECT_EQ(t->streams[0].formats, device::format_bits({wire::PcmFormat::S16}));
    EXPECT_EQ(t->streams[0].channels_min, 2);
    EXPECT_EQ(t->streams[0].channels_max, 2);
    EXPECT_EQ(t->chmaps.size(), 2u); // stereo, per direction

    auto r = make_topology({"out:1", "S16", "16000-48000", "1-2"});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->streams[0].rates, device::rate_bits({wire::PcmRate::R16000, wire::PcmRate::R22050,
                                                       wire::PcmRate::R32000, wire::PcmRate::R44100, wire::PcmRate::R48000}));
}

TEST(TopologySpec, UpTo256Streams) {
    auto t = make_topology({"out:200,in:56", "S16", "48000", "2"});
    ASSERT_TRUE(t) << t.error();
    EXPECT_EQ(t->streams.size(), 256u);
}

TEST(TopologySpec, RejectsNonsense) {
    for (const TopologySpec& s : {TopologySpec{"", "S16", "48000", "2"}, TopologySpec{"out:x", "S16", "48000", "2"},
                                  TopologySpec{"left:1", "S16", "48000", "2"}, TopologySpec{"out:1", "S17", "48000", "2"},
                                  TopologySpec{"out:1", "S16", "47999", "2"}, TopologySpec{"out:1", "S16", "1-2", "2"},
                                  TopologySpec{"out:1", "S16", "48000", "0"}, TopologySpec{"out:1", "S16", "48000", "3-1"},
                                  TopologySpec{"out:0", "S16", "48000", "2"}, TopologySpec{"out:257", "S16", "48000", "2"},
                                  TopologySpec{"out:200,in:57", "S16", "48000", "2"}}) {
        auto t = make_topology(s);
        EXPECT_FALSE(t) << s.streams << " " << s.formats << " " << s.rates << " " << s.channels;
        if (!t) {
            EXPECT_FALSE(t.error().empty());
        }
    }
}

} // namespace
} // namespace vsnd::test
