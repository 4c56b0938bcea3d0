#include "vsnd/rtp/rtp_packet.hpp"

namespace vsnd::rtp {

std::string_view name(Reject r) {
    switch (r) {
    case Reject::TooShort: return "too-short";
    case Reject::Version: return "version";
    case Reject::CsrcOverrun: return "csrc-overrun";
    case Reject::ExtensionOverrun: return "extension-overrun";
    case Reject::BadPadding: return "bad-padding";
    case Reject::Rtcp: return "rtcp";
    case Reject::PayloadType: return "payload-type";
    case Reject::PayloadSize: return "payload-size";
    case Reject::ForeignSsrc: return "foreign-ssrc";
    case Reject::Count: break;
    }
    return "?";
}

Expected<RtpPacket, Reject> parse_rtp(std::span<const std::uint8_t> d) {
    if (d.size() < kRtpHeaderBytes) return Unexpected{Reject::TooShort};
    const std::uint8_t b0 = d[0], b1 = d[1];
    if (b0 >> 6 != 2) return Unexpected{Reject::Version};
    // RTCP shares the version; its packet types 200..204 read as marker + PT 72..76 (RFC 5761 §4).
    if (b1 >= 200 && b1 <= 204) return Unexpected{Reject::Rtcp};
    RtpPacket p;
    p.marker = b1 & 0x80;
    p.payload_type = b1 & 0x7f;
    p.sequence = load_be16(&d[2]);
    p.timestamp = load_be32(&d[4]);
    p.ssrc = load_be32(&d[8]);
    p.csrc_count = b0 & 0x0f;
    std::size_t at = kRtpHeaderBytes + std::size_t{p.csrc_count} * 4;
    if (at > d.size()) return Unexpected{Reject::CsrcOverrun};
    if (b0 & 0x10) {
        if (at + 4 > d.size()) return Unexpected{Reject::ExtensionOverrun};
        p.extension_profile = load_be16(&d[at]);
        const std::size_t words = load_be16(&d[at + 2]);
        if (at + 4 + words * 4 > d.size()) return Unexpected{Reject::ExtensionOverrun};
        p.extension = d.subspan(at + 4, words * 4);
        at += 4 + words * 4;
    }
    std::size_t end = d.size();
    if (b0 & 0x20) {
        const std::size_t pad = d.back();
        if (pad == 0 || pad > end - at) return Unexpected{Reject::BadPadding};
        end -= pad;
    }
    p.payload = d.subspan(at, end - at);
    return p;
}

void write_rtp_header(const RtpHeaderFields& h, std::span<std::uint8_t, kRtpHeaderBytes> out) {
    out[0] = 0x80;
    out[1] = static_cast<std::uint8_t>((h.marker ? 0x80 : 0) | (h.payload_type & 0x7f));
    store_be16(&out[2], h.sequence);
    store_be32(&out[4], h.timestamp);
    store_be32(&out[8], h.ssrc);
}

} // namespace vsnd::rtp
