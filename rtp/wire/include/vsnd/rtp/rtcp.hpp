// RTCP (RFC 3550 §6): sender reports (the NTP <-> RTP timestamp mapping a synchronized playout
// needs), BYE, and the receiver report + SDES CNAME a receiver sends back. Compound packets from
// the network are walked with every length checked. Pure, any thread.
#pragma once

#include "vsnd/expected.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vsnd::rtp {

struct SenderReport {
    std::uint32_t ssrc = 0;
    std::uint64_t ntp = 0;           // 32.32 fixed point seconds since 1900
    std::uint32_t rtp_timestamp = 0; // the same instant on the media clock
    std::uint32_t packets = 0, octets = 0;
};

struct RtcpCompound {
    std::vector<SenderReport> sender_reports;
    std::vector<std::uint32_t> byes; // SSRCs that said goodbye
};

// Walks a compound packet; fails on the first malformed sub-packet (nothing from it is used).
Expected<RtcpCompound, std::string> parse_rtcp(std::span<const std::uint8_t> datagram);

struct ReceptionReport {
    std::uint32_t source_ssrc = 0;
    std::uint8_t fraction_lost = 0;    // since the previous report, /256
    std::int32_t cumulative_lost = 0;  // clamped to 24 bits signed
    std::uint32_t extended_highest_seq = 0;
    std::uint32_t jitter = 0;          // timestamp units
    std::uint32_t last_sr = 0;         // middle 32 bits of the last SR's NTP time
    std::uint32_t delay_since_last_sr = 0; // 1/65536 s
};

// RR (one report block, or none before any packet) followed by SDES with a CNAME.
std::vector<std::uint8_t> write_receiver_report(std::uint32_t own_ssrc, const std::optional<ReceptionReport>& block,
                                                std::string_view cname);

} // namespace vsnd::rtp
