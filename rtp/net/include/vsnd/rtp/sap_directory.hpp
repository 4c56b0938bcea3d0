// The sessions SAP (RFC 2974) announces on the network: each announcement adds or refreshes an
// entry (keyed by origin and message id hash), a deletion or a long silence removes it. From the
// network, so the table is bounded and each refusal counted. Single owner, never blocks.
#pragma once

#include "vsnd/rtp/sdp.hpp"
#include "vsnd/timing/clock.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vsnd::rtp {

struct SapCounters {
    std::uint64_t announcements = 0, deletions = 0, refused = 0, bad_sdp = 0, table_full = 0, expired = 0;
};

class SapDirectory {
public:
    struct Entry {
        std::string origin;
        std::uint16_t hash = 0;
        SdpSession session;
        std::string sdp;
        Nanos last_seen = 0;
    };
    explicit SapDirectory(std::size_t max_entries = 256, Nanos timeout = 600 * kNanosPerSecond)
        : max_(max_entries), timeout_(timeout) {}

    void on_datagram(std::span<const std::uint8_t> datagram, Nanos now);
    void expire(Nanos now);
    // The most recently announced session named `name` (s=), if any.
    const Entry* find(std::string_view name) const;
    const std::vector<Entry>& entries() const { return entries_; }
    const SapCounters& counters() const { return counters_; }
    std::string last_refusal() const { return last_refusal_; }

private:
    std::size_t max_;
    Nanos timeout_;
    std::vector<Entry> entries_;
    SapCounters counters_;
    std::string last_refusal_;
};

} // namespace vsnd::rtp
