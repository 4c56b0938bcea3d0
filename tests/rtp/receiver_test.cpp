// RtpReceiver's RTCP side: sender reports give the NTP <-> RTP mapping of the played source,
// BYE lets a new source in at once, and the receiver report says what was lost.
#include "scenario_rig.hpp"

namespace vsnd::rtp::test {
namespace {

std::vector<std::uint8_t> sender_report(std::uint32_t ssrc, std::uint64_t ntp, std::uint32_t ts) {
    std::vector<std::uint8_t> sr(28);
    sr[0] = 0x80;
    sr[1] = 200;
    store_be16(&sr[2], 6);
    store_be32(&sr[4], ssrc);
    store_be32(&sr[8], static_cast<std::uint32_t>(ntp >> 32));
    store_be32(&sr[12], static_cast<std::uint32_t>(ntp));
    store_be32(&sr[16], ts);
    return sr;
}

struct Feed {
    GeneratorOptions g;
    ReceiverOptions ro;
    Feed() {
        g.format = PayloadFormat{Encoding::L16, 48000, 2, 96};
        g.ssrc = 0x1234;
        g.first_timestamp = 1000;
        ro.format = g.format;
        ro.drift = DriftCorrection::Off;
    }
};

TEST(Receiver, SenderReportsMapNtpToTheExtendedTimelineOfThePlayedSource) {
    Feed f;
    RtpReceiver rx(f.ro);
    StreamGenerator gen(f.g, kSec);
    for (int i = 0; i < 10; ++i) rx.on_packet(gen.next(), kSec + i * kMs);
    EXPECT_FALSE(rx.sender_clock());
    rx.on_rtcp(sender_report(0x9999, 1, 1480), 2 * kSec); // another source: ignored
    EXPECT_FALSE(rx.sender_clock());
    rx.on_rtcp(sender_report(0x1234, 0xe000000080000000ull, 1480), 2 * kSec);
    ASSERT_TRUE(rx.sender_clock());
    EXPECT_EQ(rx.sender_clock()->ntp, 0xe000000080000000ull);
    EXPECT_EQ(rx.sender_clock()->received_at, 2 * kSec);
    EXPECT_EQ(rx.counters().sender_reports, 1u);
    EXPECT_EQ(rx.counters().rtcp_packets, 2u);
    std::vector<std::uint8_t> junk = {0x80, 200, 0, 50};
    rx.on_rtcp(junk, 2 * kSec);
    EXPECT_EQ(rx.counters().rtcp_rejected, 1u);
}

TEST(Receiver, ByeLetsTheNextSourceInAtOnce) {
    Feed f;
    RtpReceiver rx(f.ro);
    StreamGenerator a(f.g, kSec);
    for (int i = 0; i < 10; ++i) rx.on_packet(a.next(), kSec + i * kMs);
    auto other = f.g;
    other.ssrc = 0x5678;
    StreamGenerator b(other, kSec);
    rx.on_packet(b.next(), kSec + 10 * kMs); // the first still plays: refused
    EXPECT_EQ(rx.counters().rejected[static_cast<std::size_t>(Reject::ForeignSsrc)], 1u);
    std::vector<std::uint8_t> bye = {0x81, 203, 0, 1, 0, 0, 0x12, 0x34};
    rx.on_rtcp(bye, kSec + 11 * kMs);
    rx.on_packet(b.next(), kSec + 12 * kMs); // 2 ms later, far below adopt_after
    EXPECT_EQ(rx.counters().ssrc_changes, 1u);
    EXPECT_EQ(*rx.status().ssrc, 0x5678u);
}

TEST(Receiver, ASourceThatSaidByeAndGoesOnKeepsItsPlace) {
    Feed f;
    RtpReceiver rx(f.ro);
    StreamGenerator a(f.g, kSec);
    rx.on_packet(a.next(), kSec);
    std::vector<std::uint8_t> bye = {0x81, 203, 0, 1, 0, 0, 0x12, 0x34};
    rx.on_rtcp(bye, kSec + kMs);
    rx.on_packet(a.next(), kSec + 2 * kMs); // still sending
    auto other = f.g;
    other.ssrc = 0x5678;
    StreamGenerator b(other, kSec);
    rx.on_packet(b.next(), kSec + 3 * kMs);
    EXPECT_EQ(rx.counters().ssrc_changes, 0u);
    EXPECT_EQ(rx.counters().rejected[static_cast<std::size_t>(Reject::ForeignSsrc)], 1u);
}

TEST(Receiver, ReceptionReportCountsWhatWasLost) {
    Feed f;
    RtpReceiver rx(f.ro);
    EXPECT_FALSE(rx.reception_report(kSec));
    StreamGenerator gen(f.g, kSec);
    for (int i = 0; i < 100; ++i) {
        auto p = gen.next();
        if (i % 10 != 3) rx.on_packet(p, kSec + i * kMs); // every tenth lost
    }
    auto r = rx.reception_report(2 * kSec);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->source_ssrc, 0x1234u);
    EXPECT_EQ(r->cumulative_lost, 10);
    EXPECT_EQ(r->fraction_lost, 10 * 256 / 100);
    EXPECT_EQ(r->extended_highest_seq, 99u);
    // The next interval lost nothing.
    for (int i = 100; i < 150; ++i) rx.on_packet(gen.next(), kSec + i * kMs);
    EXPECT_EQ(rx.reception_report(3 * kSec)->fraction_lost, 0);
}

TEST(Receiver, ArrivalSpreadShowsASenderStallAndStartsAfreshWithANewSource) {
    Feed f;
    RtpReceiver rx(f.ro);
    StreamGenerator gen(f.g, kSec);
    // 1 ms packets, each on time but for a little jitter: the spread is the jitter's range.
    for (int i = 0; i < 100; ++i) rx.on_packet(gen.next(), kSec + i * kMs + (i % 3) * 100'000);
    EXPECT_NEAR(rx.status().arrival_spread_s, 0.0002, 1e-6);
    // The sender stalls 50 ms, then sends its backlog at once and goes on.
    for (int i = 100; i < 200; ++i) rx.on_packet(gen.next(), kSec + std::max(i, 150) * kMs);
    EXPECT_NEAR(rx.status().arrival_spread_s, 0.050, 1e-6);
    // Another source after the first fell silent: its own spread.
    auto other = f.g;
    other.ssrc = 0x5678;
    StreamGenerator b(other, 3 * kSec);
    for (int i = 0; i < 10; ++i) rx.on_packet(b.next(), 3 * kSec + i * kMs);
    EXPECT_EQ(rx.counters().ssrc_changes, 1u);
    EXPECT_NEAR(rx.status().arrival_spread_s, 0.0, 1e-6);
}

} // namespace
} // namespace vsnd::rtp::test
