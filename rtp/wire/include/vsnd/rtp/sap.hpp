// SAP (RFC 2974) announcements: the header (version 1, IPv4/IPv6 origin, announce or delete,
// authentication skipped, encrypted or compressed payloads refused) and the SDP it carries.
// From the network, so every field is checked. Pure, any thread.
#pragma once

#include "vsnd/expected.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vsnd::rtp {

inline constexpr std::uint16_t kSapPort = 9875;
inline constexpr const char* kSapGroupV4 = "239.255.255.255"; // RFC 2974 §3, the admin-scope group

struct SapMessage {
    bool deletion = false;
    std::uint16_t message_id_hash = 0;
    std::string origin;        // the originating source address, as text
    std::string_view sdp;      // points into the datagram
};

Expected<SapMessage, std::string> parse_sap(std::span<const std::uint8_t> datagram);

// One announcement (IPv4 origin): header, "application/sdp", the SDP text.
std::vector<std::uint8_t> write_sap(std::uint16_t message_id_hash, std::uint32_t origin_ipv4, std::string_view sdp,
                                    bool deletion = false);

} // namespace vsnd::rtp
