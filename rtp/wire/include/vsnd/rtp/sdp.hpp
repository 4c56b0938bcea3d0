// SDP (RFC 8866) as RTP audio senders write it: the session name, the connection address, the
// first audio stream this receiver can play (m=, a=rtpmap, a=ptime, a=fmtp channel-order) and the
// AES67 clock attributes (RFC 7273 a=ts-refclk, a=mediaclk), which are reported, not acted on.
// Descriptions come from files and from the network (SAP), so parsing is bounded and every
// refusal says which line and why. Pure, any thread.
#pragma once

#include "vsnd/rtp/payload_format.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace vsnd::rtp {

inline constexpr std::size_t kMaxSdpBytes = 64 * 1024;

struct SdpSession {
    std::string name;                       // s=
    std::string origin;                     // o= (username sess-id sess-version nettype addrtype addr)
    std::optional<std::string> address;     // c= (media level over session level), without /ttl
    bool ipv6 = false;
    std::optional<unsigned> ttl;            // c=IN IP4 239.x.y.z/TTL
    std::uint16_t port = 0;                 // m=audio PORT
    PayloadFormat format;                   // the first playable payload type of that m= line
    std::optional<double> ptime_ms;         // a=ptime
    std::optional<std::string> ts_refclk;   // a=ts-refclk (e.g. ptp=IEEE1588-2008:...)
    std::optional<std::string> mediaclk;    // a=mediaclk (e.g. direct=0)
    std::optional<std::string> source;      // a=source-filter: incl ... the source address
};

Expected<SdpSession, std::string> parse_sdp(std::string_view text);

// What a sender announces: one audio stream of `format` to `address`:`port`.
struct SdpAnnouncement {
    std::string name = "vsnd";
    std::string origin_address = "127.0.0.1";
    std::uint64_t session_id = 1, version = 1;
    std::string address = "127.0.0.1";
    std::uint16_t port = 5004;
    std::optional<unsigned> ttl; // written for IPv4 multicast
    PayloadFormat format;
    double ptime_ms = 1;
};
std::string write_sdp(const SdpAnnouncement& a);

} // namespace vsnd::rtp
