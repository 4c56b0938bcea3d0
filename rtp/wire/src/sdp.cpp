#include "vsnd/rtp/sdp.hpp"

#include <fmt/format.h>

#include <charconv>
#include <map>
#include <vector>

namespace vsnd::rtp {
namespace {

constexpr std::size_t kMaxLines = 1000;

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    while (true) {
        while (!s.empty() && s.front() == sep) s.remove_prefix(1);
        if (s.empty()) break;
        const auto at = s.find(sep);
        out.push_back(s.substr(0, at));
        if (at == std::string_view::npos) break;
        s.remove_prefix(at + 1);
    }
    return out;
}

template <class T> std::optional<T> number(std::string_view s) {
    T v{};
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

struct Connection {
    std::string address;
    bool ipv6 = false;
    std::optional<unsigned> ttl;
};

Expected<Connection, std::string> parse_connection(std::string_view v) {
    const auto f = split(v, ' ');
    if (f.size() != 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6"))
        return Unexpected{std::string("c= is not \"IN IP4|IP6 ADDRESS\"")};
    Connection c;
    c.ipv6 = f[1] == "IP6";
    const auto parts = split(f[2], '/');
    if (parts.empty()) return Unexpected{std::string("c= has no address")};
    c.address = std::string(parts[0]);
    if (!c.ipv6 && parts.size() >= 2) {
        auto ttl = number<unsigned>(parts[1]);
        if (!ttl || *ttl > 255) return Unexpected{std::string("c= TTL is not 0..255")};
        c.ttl = ttl;
    }
    return c;
}

struct Rtpmap {
    Encoding encoding;
    std::uint32_t rate;
    std::uint8_t channels;
};

} // namespace

Expected<SdpSession, std::string> parse_sdp(std::string_view text) {
    if (text.size() > kMaxSdpBytes) return Unexpected{fmt::format("SDP is {} bytes, more than {}", text.size(), kMaxSdpBytes)};
    SdpSession s;
    std::optional<Connection> session_conn, media_conn;
    bool in_audio = false, seen_audio = false, seen_version = false, in_other = false;
    std::vector<std::uint8_t> pts;
    std::map<std::uint8_t, std::optional<Rtpmap>> rtpmaps; // nullopt: an encoding we do not play
    std::map<std::uint8_t, std::vector<std::string>> orders;
    std::optional<std::string> session_refclk, session_mediaclk, media_refclk, media_mediaclk;
    std::size_t line_no = 0;
    auto fail = [&](std::string why) { return Unexpected{fmt::format("SDP line {}: {}", line_no, why)}; };

    while (!text.empty()) {
        if (++line_no > kMaxLines) return Unexpected{fmt::format("SDP has more than {} lines", kMaxLines)};
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        if (line.size() < 2 || line[1] != '=') return fail("not \"x=value\"");
        const char type = line[0];
        const std::string_view v = line.substr(2);
        if (line_no == 1 || !seen_version) {
            if (type != 'v') return fail("an SDP description starts with v=");
            if (v != "0") return fail("version is not 0");
            seen_version = true;
            continue;
        }
        switch (type) {
        case 'o': s.origin = std::string(v); break;
        case 's': if (!seen_audio && s.name.empty()) s.name = std::string(v); break;
        case 'c': {
            if (in_other || (seen_audio && !in_audio)) break; // another stream's section
            auto c = parse_connection(v);
            if (!c) return fail(c.error());
            (in_audio ? media_conn : session_conn) = *c;
            break;
        }
        case 'm': {
            if (seen_audio) { in_audio = false; break; } // only the first audio stream is read
            const auto f = split(v, ' ');
            if (f.size() < 4) return fail("m= is not \"media port proto fmt...\"");
            if (f[0] != "audio") {
                in_other = true; // its c= and a= lines are not ours
                break;
            }
            in_other = false;
            if (f[2] != "RTP/AVP" && f[2] != "RTP/AVPF") return fail(fmt::format("transport {} is not RTP/AVP", f[2]));
            const auto port_part = split(f[1], '/');
            auto port = port_part.empty() ? std::nullopt : number<std::uint16_t>(port_part[0]);
            if (!port || *port == 0) return fail("m= port is not 1..65535");
            s.port = *port;
            for (std::size_t i = 3; i < f.size(); ++i) {
                auto pt = number<unsigned>(f[i]);
                if (!pt || *pt > 127) return fail(fmt::format("payload type \"{}\" is not 0..127", f[i]));
                pts.push_back(static_cast<std::uint8_t>(*pt));
            }
            in_audio = seen_audio = true;
            break;
        }
        case 'a': {
            if (in_other || (seen_audio && !in_audio)) break;
            const auto colon = v.find(':');
            const std::string_view key = v.substr(0, colon);
            const std::string_view val = colon == std::string_view::npos ? std::string_view{} : v.substr(colon + 1);
            if (key == "ts-refclk") (in_audio ? media_refclk : session_refclk) = std::string(val);
            else if (key == "mediaclk") (in_audio ? media_mediaclk : session_mediaclk) = std::string(val);
            else if (!in_audio) break;
            else if (key == "rtpmap") {
                const auto sp = val.find(' ');
                auto pt = number<unsigned>(val.substr(0, sp));
                if (!pt || *pt > 127 || sp == std::string_view::npos) return fail("a=rtpmap is not \"PT ENCODING/RATE[/CHANNELS]\"");
                const auto enc = split(val.substr(sp + 1), '/');
                if (enc.size() < 2 || enc.size() > 3) return fail("a=rtpmap is not \"PT ENCODING/RATE[/CHANNELS]\"");
                auto e = parse_encoding(enc[0]);
                auto rate = number<std::uint32_t>(enc[1]);
                auto ch = enc.size() == 3 ? number<unsigned>(enc[2]) : std::optional<unsigned>(1);
                if (!rate || !ch || *ch == 0 || *ch > 255) return fail("a=rtpmap rate or channels is not a number");
                if (e) rtpmaps[static_cast<std::uint8_t>(*pt)] = Rtpmap{*e, *rate, static_cast<std::uint8_t>(*ch)};
                else rtpmaps[static_cast<std::uint8_t>(*pt)] = std::nullopt;
            } else if (key == "ptime") {
                auto ms = number<double>(val);
                if (!ms || !(*ms > 0) || *ms > 1000) return fail("a=ptime is not 0..1000 ms");
                s.ptime_ms = ms;
            } else if (key == "fmtp") {
                const auto sp = val.find(' ');
                auto pt = number<unsigned>(val.substr(0, sp));
                if (!pt || *pt > 127) return fail("a=fmtp has no payload type");
                if (sp == std::string_view::npos) break;
                for (auto param : split(val.substr(sp + 1), ';')) {
                    while (!param.empty() && param.front() == ' ') param.remove_prefix(1);
                    if (param.starts_with("channel-order=")) {
                        // RFC 3190: "channel-order=CONVENTION.POS1,POS2,..." (or a convention alone).
                        std::string_view order = param.substr(14);
                        const auto dot = order.find('.');
                        std::vector<std::string> names;
                        if (dot != std::string_view::npos)
                            for (auto n : split(order.substr(dot + 1), ',')) names.emplace_back(n);
                        orders[static_cast<std::uint8_t>(*pt)] = std::move(names);
                    }
                }
            } else if (key == "source-filter") {
                const auto f = split(val, ' ');
                if (f.size() >= 5 && f[0] == "incl") s.source = std::string(f[4]);
            }
            break;
        }
        default: break; // t=, b=, i=, u=, e=, p=, k=, r=, z=: nothing this receiver needs
        }
    }
    if (!seen_version) return Unexpected{std::string("SDP is empty")};
    if (!seen_audio) return Unexpected{std::string("SDP has no m=audio stream")};
    bool found = false;
    std::string why_not;
    for (auto pt : pts) {
        PayloadFormat f;
        if (auto it = rtpmaps.find(pt); it != rtpmaps.end()) {
            if (!it->second) { why_not = fmt::format("payload type {} is not L16 or L24", pt); continue; }
            f = PayloadFormat{it->second->encoding, it->second->rate, it->second->channels, pt};
        } else if (auto st = static_payload_type(pt)) {
            f = *st;
        } else {
            why_not = fmt::format("payload type {} has no a=rtpmap and is not a static L16 type", pt);
            continue;
        }
        if (auto o = orders.find(pt); o != orders.end() && o->second.size() == f.channels) f.channel_order = o->second;
        if (auto ok = validate(f); !ok) { why_not = ok.error(); continue; }
        s.format = f;
        found = true;
        break;
    }
    if (!found) return Unexpected{fmt::format("SDP offers no stream this receiver plays ({})", why_not)};
    const auto& conn = media_conn ? media_conn : session_conn;
    if (conn) {
        s.address = conn->address;
        s.ipv6 = conn->ipv6;
        s.ttl = conn->ttl;
    }
    s.ts_refclk = media_refclk ? media_refclk : session_refclk;
    s.mediaclk = media_mediaclk ? media_mediaclk : session_mediaclk;
    return s;
}

std::string write_sdp(const SdpAnnouncement& a) {
    const bool v6 = a.address.find(':') != std::string::npos;
    const bool origin_v6 = a.origin_address.find(':') != std::string::npos;
    std::string out = fmt::format("v=0\r\no=- {} {} IN {} {}\r\ns={}\r\n", a.session_id, a.version,
                                  origin_v6 ? "IP6" : "IP4", a.origin_address, a.name);
    out += fmt::format("c=IN {} {}{}\r\nt=0 0\r\n", v6 ? "IP6" : "IP4", a.address,
                       a.ttl && !v6 ? fmt::format("/{}", *a.ttl) : "");
    out += fmt::format("m=audio {} RTP/AVP {}\r\n", a.port, a.format.payload_type);
    out += fmt::format("a=rtpmap:{} {}/{}/{}\r\n", a.format.payload_type, name(a.format.encoding), a.format.rate,
                       a.format.channels);
    out += fmt::format("a=ptime:{}\r\n", a.ptime_ms);
    return out;
}

} // namespace vsnd::rtp
