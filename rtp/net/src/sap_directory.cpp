#include "vsnd/rtp/sap_directory.hpp"

#include "vsnd/rtp/sap.hpp"

#include <algorithm>

namespace vsnd::rtp {

void SapDirectory::on_datagram(std::span<const std::uint8_t> d, Nanos now) {
    auto m = parse_sap(d);
    if (!m) {
        ++counters_.refused;
        last_refusal_ = m.error();
        return;
    }
    auto same = [&](const Entry& e) { return e.origin == m->origin && e.hash == m->message_id_hash; };
    auto it = std::find_if(entries_.begin(), entries_.end(), same);
    if (m->deletion) {
        ++counters_.deletions;
        if (it != entries_.end()) entries_.erase(it);
        return;
    }
    ++counters_.announcements;
    if (it != entries_.end() && it->sdp == m->sdp) {
        it->last_seen = now;
        return;
    }
    auto s = parse_sdp(m->sdp);
    if (!s) {
        ++counters_.bad_sdp;
        last_refusal_ = s.error();
        return;
    }
    if (it == entries_.end()) {
        if (entries_.size() >= max_) {
            ++counters_.table_full;
            return;
        }
        entries_.push_back({});
        it = entries_.end() - 1;
    }
    *it = Entry{m->origin, m->message_id_hash, std::move(*s), std::string(m->sdp), now};
}

void SapDirectory::expire(Nanos now) {
    const auto before = entries_.size();
    std::erase_if(entries_, [&](const Entry& e) { return now - e.last_seen > timeout_; });
    counters_.expired += before - entries_.size();
}

const SapDirectory::Entry* SapDirectory::find(std::string_view name) const {
    const Entry* best = nullptr;
    for (const auto& e : entries_)
        if (e.session.name == name && (!best || e.last_seen > best->last_seen)) best = &e;
    return best;
}

} // namespace vsnd::rtp
