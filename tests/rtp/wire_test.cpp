// RTP, RTCP, SAP and SDP parsing: every field and every refusal, with descriptions as real
// senders write them (ffmpeg, GStreamer users, PipeWire, AES67 devices).
#include "vsnd/rtp/payload_format.hpp"
#include "vsnd/rtp/rtcp.hpp"
#include "vsnd/rtp/rtp_packet.hpp"
#include "vsnd/rtp/sap.hpp"
#include "vsnd/rtp/sdp.hpp"
#include "vsnd/rtp/unwrap.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace vsnd::rtp {
namespace {

std::vector<std::uint8_t> packet(std::uint8_t b0, std::uint8_t b1, std::size_t payload, std::vector<std::uint8_t> middle = {}) {
    std::vector<std::uint8_t> d = {b0, b1, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x11, 0x22, 0x33, 0x44};
    d.insert(d.end(), middle.begin(), middle.end());
    for (std::size_t i = 0; i < payload; ++i) d.push_back(static_cast<std::uint8_t>(i));
    return d;
}

TEST(RtpPacket, ParsesTheFixedHeader) {
    auto d = packet(0x80, 0x80 | 96, 8);
    auto p = parse_rtp(d);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->marker);
    EXPECT_EQ(p->payload_type, 96);
    EXPECT_EQ(p->sequence, 0x1234);
    EXPECT_EQ(p->timestamp, 0xdeadbeefu);
    EXPECT_EQ(p->ssrc, 0x11223344u);
    EXPECT_EQ(p->payload.size(), 8u);
    EXPECT_FALSE(p->extension_profile);
}

TEST(RtpPacket, SkipsCsrcsAndTheExtensionAndStripsPadding) {
    // CC=2, X=1 with one word, P=1 with 3 bytes of padding.
    std::vector<std::uint8_t> mid = {0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 9, 9, 9, 9};
    auto d = packet(0x80 | 0x20 | 0x10 | 2, 96, 4, mid);
    d.insert(d.end(), {0, 0, 3});
    auto p = parse_rtp(d);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->csrc_count, 2);
    EXPECT_EQ(*p->extension_profile, 0xbede);
    EXPECT_EQ(p->extension.size(), 4u);
    ASSERT_EQ(p->payload.size(), 4u);
    EXPECT_EQ(p->payload[0], 0);
    EXPECT_EQ(p->payload[3], 3);
}

TEST(RtpPacket, RefusesEachMalformedShapeWithItsReason) {
    auto reason = [](std::vector<std::uint8_t> d) { auto p = parse_rtp(d); return p ? Reject::Count : p.error(); };
    EXPECT_EQ(reason({0x80, 96, 0}), Reject::TooShort);
    EXPECT_EQ(reason(packet(0x40, 96, 4)), Reject::Version);
    EXPECT_EQ(reason(packet(0x80 | 15, 96, 4)), Reject::CsrcOverrun);
    EXPECT_EQ(reason(packet(0x90, 96, 2)), Reject::ExtensionOverrun);
    EXPECT_EQ(reason(packet(0x90, 96, 0, {0, 0, 0, 9})), Reject::ExtensionOverrun);
    auto zero_pad = packet(0xa0, 96, 4);
    zero_pad.back() = 0;
    EXPECT_EQ(reason(zero_pad), Reject::BadPadding);
    auto big_pad = packet(0xa0, 96, 4);
    big_pad.back() = 200;
    EXPECT_EQ(reason(big_pad), Reject::BadPadding);
    EXPECT_EQ(reason(packet(0x80, 200, 20)), Reject::Rtcp);
    EXPECT_EQ(reason(packet(0x81, 201, 20)), Reject::Rtcp);
}

TEST(RtpPacket, HeaderWrittenIsHeaderParsed) {
    std::array<std::uint8_t, kRtpHeaderBytes> h{};
    write_rtp_header({true, 97, 65535, 4294967295u, 42}, h);
    auto p = parse_rtp(h);
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->marker);
    EXPECT_EQ(p->payload_type, 97);
    EXPECT_EQ(p->sequence, 65535);
    EXPECT_EQ(p->timestamp, 4294967295u);
    EXPECT_EQ(p->ssrc, 42u);
    EXPECT_TRUE(p->payload.empty());
}

TEST(PayloadFormat, L16AndL24RoundTripExactly) {
    for (auto enc : {Encoding::L16, Encoding::L24}) {
        PayloadFormat f{enc, 48000, 2, 96};
        const std::vector<std::int32_t> s = {std::int32_t(0x80000000), 0x7fffff00, -256, 0x12345600};
        std::vector<std::uint8_t> wire(s.size() * f.sample_bytes());
        encode_samples(f, s, wire.data());
        std::vector<std::int32_t> back(s.size());
        decode_samples(f, wire, back.data());
        for (std::size_t i = 0; i < s.size(); ++i) {
            const std::int32_t mask = enc == Encoding::L16 ? std::int32_t(0xffff0000) : std::int32_t(0xffffff00);
            EXPECT_EQ(back[i], s[i] & mask) << name(enc) << " sample " << i;
        }
    }
    EXPECT_EQ(static_payload_type(10)->channels, 2);
    EXPECT_EQ(static_payload_type(11)->rate, 44100u);
    EXPECT_FALSE(static_payload_type(96));
    EXPECT_FALSE(validate(PayloadFormat{Encoding::L16, 7999, 2, 96}));
    EXPECT_FALSE(validate(PayloadFormat{Encoding::L16, 192001, 2, 96}));
    EXPECT_FALSE(validate(PayloadFormat{Encoding::L16, 48000, 9, 96}));
    EXPECT_TRUE(validate(PayloadFormat{Encoding::L24, 192000, 8, 127}));
}

TEST(Unwrap, SequenceAndTimestampExtendAcrossWrapsAndReordering) {
    Unwrapper<16> seq;
    const auto a = seq.extend(65534);
    EXPECT_EQ(seq.extend(65535), a + 1);
    EXPECT_EQ(seq.extend(1), a + 3);      // across the wrap
    EXPECT_EQ(seq.extend(0), a + 2);      // reordered across it
    EXPECT_EQ(seq.extend(65535), a + 1);  // and further back
    EXPECT_EQ(*seq.highest(), a + 3);
    Unwrapper<32> ts;
    const auto t = ts.extend(4294960000u);
    EXPECT_EQ(ts.extend(4294960000u + 7296u), t + 7296); // wraps to 0
    EXPECT_EQ(ts.extend(100), t + 7396);
}

TEST(Sdp, FfmpegStaticPayloadType) {
    auto s = parse_sdp("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n"
                       "a=tool:libavformat 59.27.100\nm=audio 5010 RTP/AVP 10\nb=AS:1411\n");
    ASSERT_TRUE(s) << s.error();
    EXPECT_EQ(s->port, 5010);
    EXPECT_EQ(*s->address, "127.0.0.1");
    EXPECT_EQ(s->format.payload_type, 10);
    EXPECT_EQ(s->format.rate, 44100u);
    EXPECT_EQ(s->format.channels, 2);
}

TEST(Sdp, Aes67WithClockAttributesAndChannelOrder) {
    auto s = parse_sdp("v=0\r\no=- 1311738121 1311738121 IN IP4 192.168.1.1\r\ns=Stage box 1\r\n"
                       "c=IN IP4 239.69.1.1/32\r\nt=0 0\r\na=ts-refclk:ptp=IEEE1588-2008:00-1D-C1-FF-FE-12-34-56:0\r\n"
                       "m=audio 5004 RTP/AVP 98\r\na=rtpmap:98 L24/48000/2\r\n"
                       "a=fmtp:98 channel-order=SMPTE2110.(ST)\r\na=ptime:1\r\na=mediaclk:direct=0\r\n"
                       "a=source-filter: incl IN IP4 239.69.1.1 192.168.1.1\r\n");
    ASSERT_TRUE(s) << s.error();
    EXPECT_EQ(s->name, "Stage box 1");
    EXPECT_EQ(*s->ttl, 32u);
    EXPECT_EQ(s->format.encoding, Encoding::L24);
    EXPECT_EQ(*s->ptime_ms, 1.0);
    EXPECT_EQ(*s->ts_refclk, "ptp=IEEE1588-2008:00-1D-C1-FF-FE-12-34-56:0");
    EXPECT_EQ(*s->mediaclk, "direct=0");
    EXPECT_EQ(*s->source, "192.168.1.1");
    auto order = parse_sdp("v=0\ns=x\nc=IN IP6 ff15::1\nm=audio 6000 RTP/AVP 96\na=rtpmap:96 L16/48000/2\n"
                           "a=fmtp:96 channel-order=DV.L,R\n");
    ASSERT_TRUE(order) << order.error();
    EXPECT_TRUE(order->ipv6);
    EXPECT_EQ(order->format.channel_order, (std::vector<std::string>{"L", "R"}));
}

TEST(Sdp, AnotherMediaSectionBeforeTheAudioKeepsItsLinesToItself) {
    auto s = parse_sdp("v=0\ns=x\nc=IN IP4 239.1.1.1/8\na=mediaclk:direct=0\nm=video 6000 RTP/AVP 96\nc=IN IP4 239.9.9.9/8\n"
                       "a=mediaclk:sender\na=rtpmap:96 L16/8000/1\nm=audio 5004 RTP/AVP 97\na=rtpmap:97 L24/48000/2\n");
    ASSERT_TRUE(s) << s.error();
    EXPECT_EQ(*s->address, "239.1.1.1");
    EXPECT_EQ(*s->mediaclk, "direct=0");
    EXPECT_EQ(s->format.payload_type, 97);
    EXPECT_EQ(s->port, 5004);
}

TEST(Sdp, PicksTheFirstPlayablePayloadType) {
    auto s = parse_sdp("v=0\ns=x\nm=audio 5004 RTP/AVP 111 97\na=rtpmap:111 opus/48000/2\na=rtpmap:97 L16/32000/1\n");
    ASSERT_TRUE(s) << s.error();
    EXPECT_EQ(s->format.payload_type, 97);
    EXPECT_EQ(s->format.rate, 32000u);
    EXPECT_EQ(s->format.channels, 1);
}

TEST(Sdp, EveryRefusalNamesItsLine) {
    auto err = [](std::string_view t) { auto s = parse_sdp(t); return s ? std::string("accepted") : s.error(); };
    EXPECT_EQ(err(""), "SDP is empty");
    EXPECT_NE(err("s=x\n").find("line 1"), std::string::npos);
    EXPECT_NE(err("v=0\ns=x\n").find("no m=audio"), std::string::npos);
    EXPECT_NE(err("v=0\nm=audio 0 RTP/AVP 96\n").find("line 2: m= port"), std::string::npos);
    EXPECT_NE(err("v=0\nm=audio 5004 RTP/SAVP 96\n").find("RTP/AVP"), std::string::npos);
    EXPECT_NE(err("v=0\nm=audio 5004 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n").find("not L16 or L24"), std::string::npos);
    EXPECT_NE(err("v=0\nm=audio 5004 RTP/AVP 96\n").find("no a=rtpmap"), std::string::npos);
    EXPECT_NE(err("v=0\nm=audio 5004 RTP/AVP 96\na=rtpmap:96 L16/400000/2\n").find("outside"), std::string::npos);
    EXPECT_NE(err("v=0\nm=audio 5004 RTP/AVP 96\na=rtpmap:96 L16/48000/12\n").find("channels"), std::string::npos);
    EXPECT_NE(err("v=0\nc=IN IP4 1.2.3.4/999\nm=audio 5004 RTP/AVP 10\n").find("TTL"), std::string::npos);
    EXPECT_NE(err("v=0\nnonsense\n").find("line 2"), std::string::npos);
    EXPECT_NE(err(std::string(kMaxSdpBytes + 1, 'a')).find("bytes"), std::string::npos);
    std::string many = "v=0\n";
    for (int i = 0; i < 1001; ++i) many += "a=x\n";
    EXPECT_NE(err(many).find("lines"), std::string::npos);
}

TEST(Sdp, WrittenIsParsed) {
    SdpAnnouncement a;
    a.name = "vsnd test";
    a.address = "239.255.12.42";
    a.ttl = 1;
    a.port = 5006;
    a.format = PayloadFormat{Encoding::L24, 96000, 6, 101};
    a.ptime_ms = 4;
    auto s = parse_sdp(write_sdp(a));
    ASSERT_TRUE(s) << s.error();
    EXPECT_EQ(s->name, "vsnd test");
    EXPECT_EQ(*s->address, "239.255.12.42");
    EXPECT_EQ(s->port, 5006);
    EXPECT_EQ(s->format, a.format);
    EXPECT_EQ(*s->ptime_ms, 4.0);
}

TEST(Sap, AnnouncementRoundTripsAndBadHeadersAreRefused) {
    const std::string sdp = "v=0\ns=x\nm=audio 5004 RTP/AVP 10\n";
    auto d = write_sap(0xabcd, 0x7f000001, sdp);
    auto m = parse_sap(d);
    ASSERT_TRUE(m) << m.error();
    EXPECT_FALSE(m->deletion);
    EXPECT_EQ(m->message_id_hash, 0xabcd);
    EXPECT_EQ(m->origin, "127.0.0.1");
    EXPECT_EQ(m->sdp, sdp);
    auto del = write_sap(1, 0x7f000001, sdp, true);
    EXPECT_TRUE(parse_sap(del)->deletion);
    auto enc = d;
    enc[0] |= 0x02;
    EXPECT_FALSE(parse_sap(enc));
    auto v2 = d;
    v2[0] = 0x40;
    EXPECT_FALSE(parse_sap(v2));
    auto auth = d;
    auth[1] = 255; // authentication data past the packet
    EXPECT_FALSE(parse_sap(auth));
    EXPECT_FALSE(parse_sap(std::span(d).first(6)));
    std::vector<std::uint8_t> other(d.begin(), d.begin() + 8);
    for (char c : std::string_view("text/plain")) other.push_back(static_cast<std::uint8_t>(c));
    other.push_back(0);
    EXPECT_FALSE(parse_sap(other));
}

TEST(Rtcp, SenderReportAndByeAreReadAndBadLengthsRefused) {
    std::vector<std::uint8_t> sr(28);
    sr[0] = 0x80;
    sr[1] = 200;
    store_be16(&sr[2], 6);
    store_be32(&sr[4], 0x11223344);
    store_be32(&sr[8], 0xe0000000);
    store_be32(&sr[12], 0x80000000);
    store_be32(&sr[16], 123456);
    store_be32(&sr[20], 10);
    store_be32(&sr[24], 2000);
    std::vector<std::uint8_t> bye = {0x81, 203, 0, 1, 0x11, 0x22, 0x33, 0x44};
    auto compound = sr;
    compound.insert(compound.end(), bye.begin(), bye.end());
    auto c = parse_rtcp(compound);
    ASSERT_TRUE(c) << c.error();
    ASSERT_EQ(c->sender_reports.size(), 1u);
    EXPECT_EQ(c->sender_reports[0].ssrc, 0x11223344u);
    EXPECT_EQ(c->sender_reports[0].ntp, 0xe000000080000000ull);
    EXPECT_EQ(c->sender_reports[0].rtp_timestamp, 123456u);
    ASSERT_EQ(c->byes.size(), 1u);
    auto cut = compound;
    cut.pop_back();
    EXPECT_FALSE(parse_rtcp(cut));
    auto lying = sr;
    lying[0] = 0x81; // claims a report block it does not have
    EXPECT_FALSE(parse_rtcp(lying));
    auto rr = write_receiver_report(7, ReceptionReport{0x11223344, 12, 5, 70000, 3, 4, 5}, "vsnd@host");
    auto back = parse_rtcp(rr);
    ASSERT_TRUE(back) << back.error();
    EXPECT_EQ(rr.size() % 4, 0u);
    EXPECT_EQ(rr[1], 201);
    EXPECT_EQ(load_be32(&rr[8]), 0x11223344u);
    EXPECT_EQ(rr[12], 12);
}

} // namespace
} // namespace vsnd::rtp
