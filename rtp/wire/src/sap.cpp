#include "vsnd/rtp/sap.hpp"

#include "vsnd/rtp/rtp_packet.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace vsnd::rtp {

Expected<SapMessage, std::string> parse_sap(std::span<const std::uint8_t> d) {
    if (d.size() < 8) return Unexpected{std::string("SAP packet shorter than its header")};
    const std::uint8_t b0 = d[0];
    if (b0 >> 5 != 1) return Unexpected{std::string("SAP version is not 1")};
    const bool ipv6 = b0 & 0x10;
    if (b0 & 0x02) return Unexpected{std::string("SAP payload is encrypted")};
    if (b0 & 0x01) return Unexpected{std::string("SAP payload is compressed")};
    SapMessage m;
    m.deletion = b0 & 0x04;
    m.message_id_hash = load_be16(&d[2]);
    const std::size_t origin_bytes = ipv6 ? 16 : 4;
    std::size_t at = 4 + origin_bytes + std::size_t{d[1]} * 4;
    if (at > d.size()) return Unexpected{std::string("SAP header runs past the packet")};
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(ipv6 ? AF_INET6 : AF_INET, &d[4], text, sizeof text);
    m.origin = text;
    std::string_view rest(reinterpret_cast<const char*>(d.data() + at), d.size() - at);
    // The payload type is optional: absent when the payload starts as SDP does.
    if (!rest.starts_with("v=0")) {
        const auto nul = rest.find('\0');
        if (nul == std::string_view::npos) return Unexpected{std::string("SAP payload type is not terminated")};
        if (rest.substr(0, nul) != "application/sdp") return Unexpected{std::string("SAP payload is not application/sdp")};
        rest.remove_prefix(nul + 1);
    }
    m.sdp = rest;
    return m;
}

std::vector<std::uint8_t> write_sap(std::uint16_t hash, std::uint32_t origin_ipv4, std::string_view sdp, bool deletion) {
    static constexpr char kType[] = "application/sdp";
    std::vector<std::uint8_t> out(8 + sizeof kType + sdp.size());
    out[0] = static_cast<std::uint8_t>(0x20 | (deletion ? 0x04 : 0));
    out[1] = 0;
    store_be16(&out[2], hash);
    store_be32(&out[4], origin_ipv4);
    std::memcpy(&out[8], kType, sizeof kType); // with its NUL
    std::memcpy(&out[8 + sizeof kType], sdp.data(), sdp.size());
    return out;
}

} // namespace vsnd::rtp
