#include "vsnd/rtp/rtcp.hpp"

#include "vsnd/rtp/rtp_packet.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace vsnd::rtp {

Expected<RtcpCompound, std::string> parse_rtcp(std::span<const std::uint8_t> d) {
    RtcpCompound out;
    std::size_t at = 0;
    if (d.size() < 4) return Unexpected{std::string("RTCP packet shorter than its header")};
    while (at < d.size()) {
        if (d.size() - at < 4) return Unexpected{fmt::format("RTCP: {} trailing bytes", d.size() - at)};
        const std::uint8_t b0 = d[at], pt = d[at + 1];
        if (b0 >> 6 != 2) return Unexpected{std::string("RTCP version is not 2")};
        const std::size_t bytes = (std::size_t{load_be16(&d[at + 2])} + 1) * 4;
        if (bytes > d.size() - at) return Unexpected{std::string("RTCP length runs past the packet")};
        const auto p = d.subspan(at, bytes);
        const unsigned count = b0 & 0x1f;
        if (pt == 200) {
            if (bytes < 28 + count * 24) return Unexpected{std::string("RTCP SR shorter than its report blocks")};
            SenderReport sr;
            sr.ssrc = load_be32(&p[4]);
            sr.ntp = std::uint64_t{load_be32(&p[8])} << 32 | load_be32(&p[12]);
            sr.rtp_timestamp = load_be32(&p[16]);
            sr.packets = load_be32(&p[20]);
            sr.octets = load_be32(&p[24]);
            out.sender_reports.push_back(sr);
        } else if (pt == 203) {
            if (bytes < 4 + count * 4) return Unexpected{std::string("RTCP BYE shorter than its SSRC list")};
            for (unsigned i = 0; i < count; ++i) out.byes.push_back(load_be32(&p[4 + i * 4]));
        }
        at += bytes;
    }
    return out;
}

std::vector<std::uint8_t> write_receiver_report(std::uint32_t own, const std::optional<ReceptionReport>& b,
                                                std::string_view cname) {
    std::vector<std::uint8_t> out(8 + (b ? 24 : 0));
    out[0] = static_cast<std::uint8_t>(0x80 | (b ? 1 : 0));
    out[1] = 201;
    store_be16(&out[2], static_cast<std::uint16_t>(out.size() / 4 - 1));
    store_be32(&out[4], own);
    if (b) {
        std::uint8_t* r = &out[8];
        store_be32(r, b->source_ssrc);
        const std::int32_t lost = std::clamp(b->cumulative_lost, -0x800000, 0x7fffff);
        store_be32(r + 4, std::uint32_t{b->fraction_lost} << 24 | (static_cast<std::uint32_t>(lost) & 0xffffff));
        store_be32(r + 8, b->extended_highest_seq);
        store_be32(r + 12, b->jitter);
        store_be32(r + 16, b->last_sr);
        store_be32(r + 20, b->delay_since_last_sr);
    }
    // SDES: one chunk (SSRC, CNAME item, end), padded to a word.
    const std::size_t name_len = std::min<std::size_t>(cname.size(), 255);
    const std::size_t chunk = (4 + 2 + name_len + 1 + 3) / 4 * 4;
    const std::size_t at = out.size();
    out.resize(at + 4 + chunk, 0);
    out[at] = 0x81;
    out[at + 1] = 202;
    store_be16(&out[at + 2], static_cast<std::uint16_t>((4 + chunk) / 4 - 1));
    store_be32(&out[at + 4], own);
    out[at + 8] = 1; // CNAME
    out[at + 9] = static_cast<std::uint8_t>(name_len);
    std::copy_n(cname.data(), name_len, &out[at + 10]);
    return out;
}

} // namespace vsnd::rtp
