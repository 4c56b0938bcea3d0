// RFC 3550 RTP data packets: the fixed header, the CSRC list, the header extension and padding,
// each validated. A packet that fails is rejected with the reason, so a receiver can count every
// rejection by cause. Pure functions, any thread; a parsed packet's spans point into the datagram.
#pragma once

#include "vsnd/expected.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace vsnd::rtp {

inline constexpr std::size_t kRtpHeaderBytes = 12;

// Why a datagram was not taken as audio. The receiver's counters are indexed by this.
enum class Reject : std::uint8_t {
    TooShort,         // below the 12-byte header
    Version,          // V != 2
    CsrcOverrun,      // the CSRC list runs past the datagram
    ExtensionOverrun, // the header extension runs past the datagram
    BadPadding,       // P=1 with a count of 0 or beyond the payload
    Rtcp,             // an RTCP packet (PT 200..204 seen with the marker bit) on the RTP port
    PayloadType,      // not the session's payload type
    PayloadSize,      // empty, or not a whole number of frames
    ForeignSsrc,      // another source than the one played (SSRC policy)
    Count
};
inline constexpr std::size_t kRejectCount = static_cast<std::size_t>(Reject::Count);
std::string_view name(Reject r);

struct RtpPacket {
    bool marker = false;
    std::uint8_t payload_type = 0;
    std::uint16_t sequence = 0;
    std::uint32_t timestamp = 0;
    std::uint32_t ssrc = 0;
    std::uint8_t csrc_count = 0;
    std::optional<std::uint16_t> extension_profile; // present when X=1
    std::span<const std::uint8_t> extension;         // the extension's data words
    std::span<const std::uint8_t> payload;           // padding removed
};

// Parses and validates one datagram. The payload type is not checked here (the session does).
Expected<RtpPacket, Reject> parse_rtp(std::span<const std::uint8_t> datagram);

// Writes a header (no CSRC, no extension) for a sender: 12 bytes.
struct RtpHeaderFields {
    bool marker = false;
    std::uint8_t payload_type = 96;
    std::uint16_t sequence = 0;
    std::uint32_t timestamp = 0;
    std::uint32_t ssrc = 0;
};
void write_rtp_header(const RtpHeaderFields& h, std::span<std::uint8_t, kRtpHeaderBytes> out);

// Big-endian helpers shared by the RTP, RTCP and SAP code.
inline std::uint16_t load_be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
inline std::uint32_t load_be32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
inline void store_be16(std::uint8_t* p, std::uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
inline void store_be32(std::uint8_t* p, std::uint32_t v) {
    p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff;
}

} // namespace vsnd::rtp
