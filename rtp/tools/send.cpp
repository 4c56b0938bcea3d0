// vsnd-rtp-send: a paced RTP sender (a WAV file or a test signal, L16/L24) with the faults a
// receiver must survive on demand: a sender clock off by some ppm (also changing over time),
// pauses, restarts with a new SSRC, timestamp jumps, chosen start values for the wraps; an SDP
// file and SAP announcements describe it; RTCP sender reports give the NTP <-> RTP mapping.
#include "vsnd/rtp/rtcp.hpp"
#include "vsnd/rtp/sap.hpp"
#include "vsnd/rtp/sdp.hpp"
#include "vsnd/rtp/stream_generator.hpp"
#include "vsnd/rtp/udp.hpp"
#include "vsnd/audio/wav_file.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fstream>

using namespace vsnd;
using namespace vsnd::rtp;

namespace {

int fail(const std::string& why) {
    std::fprintf(stderr, "vsnd-rtp-send: %s\n", why.c_str());
    return 1;
}

volatile std::sig_atomic_t g_stop = 0;

// "T:VALUE" with T in seconds.
template <class V> std::optional<std::pair<double, V>> at_value(const std::string& s) {
    const auto c = s.find(':');
    if (c == std::string::npos) return std::nullopt;
    try {
        std::size_t used = 0;
        const double t = std::stod(s.substr(0, c), &used);
        if (used != c || t < 0) return std::nullopt;
        const std::string rest = s.substr(c + 1);
        V v = static_cast<V>(std::stod(rest, &used));
        if (used != rest.size()) return std::nullopt;
        return std::make_pair(t, v);
    } catch (...) {
        return std::nullopt;
    }
}

void sleep_until(Nanos t) {
    timespec ts{static_cast<time_t>(t / kNanosPerSecond), static_cast<long>(t % kNanosPerSecond)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR && !g_stop) {}
}

std::uint64_t ntp_now() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const std::uint64_t sec = static_cast<std::uint64_t>(ts.tv_sec) + 2208988800ull;
    return sec << 32 | static_cast<std::uint64_t>((static_cast<double>(ts.tv_nsec) / 1e9) * 4294967296.0);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd-rtp-send [OPTIONS] ADDRESS PORT\nA paced RTP L16/L24 sender with controllable faults."};
    std::string address;
    std::uint16_t port = 0;
    app.add_option("address", address, "destination (unicast or multicast, IPv4 or IPv6)")->required();
    app.add_option("port", port, "destination port")->required();
    std::string wav, signal = "sine", encoding = "L16", iface, sdp_path, sap_address = std::string(kSapGroupV4) + ":" + std::to_string(kSapPort);
    std::uint32_t rate = 48000, ssrc = 0x76736e64, first_ts = 0;
    unsigned channels = 2, pt = 96, ttl = 1;
    std::uint16_t first_seq = 0;
    double ptime_ms = 1, duration = 10, ppm = 0, sap_interval = 5, rtcp_interval = 0;
    bool disorder = false, sap = false, loop = false;
    std::vector<std::string> ppm_steps, pauses, restarts, jumps;
    std::string name = "vsnd-rtp-send";
    app.add_option("--wav", wav, "send this WAV file (16- or 24-bit integer); default: a signal");
    app.add_option("--signal", signal, "test (every sample distinct), sine or silence")->check(CLI::IsMember({"test", "sine", "silence"}))->capture_default_str();
    app.add_flag("--loop", loop, "repeat the WAV file until --duration");
    app.add_option("--format", encoding, "L16 or L24")->check(CLI::IsMember({"L16", "L24", "l16", "l24"}))->capture_default_str();
    app.add_option("--rate", rate, "sample rate")->capture_default_str();
    app.add_option("--channels", channels, "channels")->capture_default_str();
    app.add_option("--pt", pt, "payload type")->capture_default_str();
    app.add_option("--ptime", ptime_ms, "packet duration, ms")->capture_default_str();
    app.add_option("--duration", duration, "seconds to send")->capture_default_str();
    app.add_option("--ppm", ppm, "sender clock error")->capture_default_str();
    app.add_option("--ppm-step", ppm_steps, "T:PPM — the clock error becomes PPM at T seconds (repeatable)");
    app.add_option("--pause", pauses, "T:LEN — stop sending at T for LEN seconds, timestamps running on, M=1 after (repeatable)");
    app.add_option("--restart", restarts, "T — restart as a new source (new SSRC, sequence, timestamp) at T (repeatable)");
    app.add_option("--jump", jumps, "T:FRAMES — the timestamp leaps by FRAMES at T (repeatable)");
    app.add_option("--seq", first_seq, "first sequence number")->capture_default_str();
    app.add_option("--ts", first_ts, "first timestamp")->capture_default_str();
    app.add_option("--ssrc", ssrc, "SSRC")->capture_default_str();
    app.add_flag("--disorder", disorder, "DisOrder's way: PT 10, L16/44100/2, timestamps per channel sample");
    app.add_option("--ttl", ttl, "multicast TTL / hop limit")->capture_default_str();
    app.add_option("--interface", iface, "multicast interface");
    app.add_option("--sdp", sdp_path, "write the session's SDP to this file");
    app.add_option("--name", name, "session name (SDP s=)")->capture_default_str();
    app.add_flag("--sap", sap, "announce the session with SAP");
    app.add_option("--sap-address", sap_address, "where SAP announcements go")->capture_default_str();
    app.add_option("--sap-interval", sap_interval, "seconds between announcements")->capture_default_str();
    app.add_option("--rtcp-interval", rtcp_interval, "send RTCP sender reports to PORT+1 this often, s (0: none)")->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "vsnd-rtp-send: %s (see --help)\n", e.what());
        return 2;
    }
    if (duration <= 0 || duration > 24 * 3600) return fail("--duration must be in (0, 86400] seconds");

    GeneratorOptions g;
    g.format = PayloadFormat{*parse_encoding(encoding), rate, static_cast<std::uint8_t>(std::min(channels, 255u)),
                             static_cast<std::uint8_t>(std::min(pt, 255u))};
    if (disorder) g.format = PayloadFormat{Encoding::L16, 44100, 2, 10, TimestampUnit::ChannelSamples};
    // A WAV file is read whole as top-aligned 32-bit samples (libsndfile scales 16 and 24 bits up
    // exactly), so L16 and L24 carry its top bits.
    std::vector<std::int32_t> wav_samples;
    if (!wav.empty()) {
        auto r = audio::WavFileReader::open(wav);
        if (!r) return fail(fmt::format("{}: {}", wav, r.error()));
        auto& reader = **r;
        if (reader.frames() > (1u << 27)) return fail(fmt::format("{}: {} frames; at most {} are sent", wav, reader.frames(), 1u << 27));
        if (reader.channels() < 1 || reader.channels() > kMaxChannels) return fail(fmt::format("{}: {} channels", wav, reader.channels()));
        g.format.rate = reader.rate();
        g.format.channels = static_cast<std::uint8_t>(reader.channels());
        const audio::SampleSpec s32{wire::PcmFormat::S32, reader.rate(), static_cast<std::uint8_t>(reader.channels())};
        auto bytes = reader.read_all(s32);
        wav_samples.resize(bytes.size() / 4);
        std::memcpy(wav_samples.data(), bytes.data(), wav_samples.size() * 4);
        if (wav_samples.empty()) return fail(wav + ": no audio");
    }
    if (auto ok = validate(g.format); !ok) return fail(ok.error());
    g.frames_per_packet = static_cast<std::uint32_t>(std::llround(ptime_ms * g.format.rate / 1000));
    if (g.frames_per_packet < 1 || g.frames_per_packet * g.format.frame_bytes() > 65000)
        return fail(fmt::format("--ptime {} ms gives {} frames per packet: 1 frame up to a 65000-byte payload", ptime_ms, g.frames_per_packet));
    g.signal = *audio::parse_signal(signal);
    g.first_sequence = first_seq;
    g.first_timestamp = first_ts;
    g.ssrc = ssrc;
    g.ppm = ppm;
    for (const auto& s : ppm_steps) {
        auto v = at_value<double>(s);
        if (!v) return fail(fmt::format("--ppm-step \"{}\" is not T:PPM", s));
        g.rate_steps.push_back({static_cast<Nanos>(v->first * 1e9), v->second});
    }
    for (const auto& s : pauses) {
        auto v = at_value<double>(s);
        if (!v || v->second <= 0) return fail(fmt::format("--pause \"{}\" is not T:SECONDS", s));
        g.pauses.push_back({static_cast<Nanos>(v->first * 1e9), static_cast<Nanos>(v->second * 1e9)});
    }
    for (const auto& s : restarts) {
        try {
            g.restarts.push_back(static_cast<Nanos>(std::stod(s) * 1e9));
        } catch (...) {
            return fail(fmt::format("--restart \"{}\" is not seconds", s));
        }
    }
    for (const auto& s : jumps) {
        auto v = at_value<std::int64_t>(s);
        if (!v) return fail(fmt::format("--jump \"{}\" is not T:FRAMES", s));
        g.timestamp_jumps.push_back({static_cast<Nanos>(v->first * 1e9), v->second});
    }

    boost::asio::io_context io;
    SendOptions so;
    so.destination = {address, port};
    so.interface = iface;
    so.ttl = static_cast<int>(ttl);
    auto rtp = UdpSender::open(io, so);
    if (!rtp) return fail(rtp.error());

    SdpAnnouncement ann;
    ann.name = name;
    ann.address = address;
    ann.port = port;
    ann.format = g.format;
    ann.ptime_ms = g.frames_per_packet * 1000.0 / g.format.rate;
    ann.session_id = ssrc;
    try {
        auto a = boost::asio::ip::make_address(address);
        if (a.is_multicast() && a.is_v4()) ann.ttl = ttl;
    } catch (...) {}
    const std::string sdp = write_sdp(ann);
    if (!sdp_path.empty()) {
        std::ofstream f(sdp_path, std::ios::binary);
        f << sdp;
        if (!f) return fail("cannot write " + sdp_path);
    }
    std::unique_ptr<UdpSender> sap_sock, rtcp_sock;
    if (sap) {
        auto where = parse_endpoint(sap_address);
        if (!where) return fail("--sap-address: " + where.error());
        SendOptions s2 = so;
        s2.destination = *where;
        auto s = UdpSender::open(io, s2);
        if (!s) return fail("SAP: " + s.error());
        sap_sock = std::move(*s);
    }
    if (rtcp_interval > 0) {
        SendOptions s3 = so;
        s3.destination.port = static_cast<std::uint16_t>(port + 1);
        auto s = UdpSender::open(io, s3);
        if (!s) return fail("RTCP: " + s.error());
        rtcp_sock = std::move(*s);
    }

    std::signal(SIGINT, [](int) { g_stop = 1; });
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    const Nanos start = MonotonicClock().now() + 1'000'000;
    StreamGenerator gen(g, start);
    const Nanos end = start + static_cast<Nanos>(duration * 1e9);
    std::vector<std::uint8_t> packet;
    std::size_t wav_at = 0;
    std::vector<std::int32_t> samples(std::size_t{g.frames_per_packet} * g.format.channels);
    Nanos next_sap = start, next_rtcp = start + static_cast<Nanos>(rtcp_interval * 1e9);
    std::uint64_t octets = 0;
    Nanos first_sent = 0;
    std::uint32_t origin = 0x7f000001;
    const std::uint16_t hash = static_cast<std::uint16_t>(ssrc ^ (ssrc >> 16));
    while (!g_stop && gen.next_time() < end) {
        sleep_until(gen.next_time());
        if (g_stop) break;
        auto p = gen.next();
        packet.assign(p.begin(), p.end());
        if (!wav_samples.empty()) {
            // The file's next frames instead of the signal (looped on request, silence after its end).
            const std::size_t ch = g.format.channels, total = wav_samples.size() / ch;
            if (!loop && wav_at >= total) break;
            for (std::size_t f = 0; f < g.frames_per_packet; ++f, ++wav_at) {
                if (loop && wav_at >= total) wav_at = 0;
                for (std::size_t c = 0; c < ch; ++c) samples[f * ch + c] = wav_at < total ? wav_samples[wav_at * ch + c] : 0;
            }
            encode_samples(g.format, samples, packet.data() + kRtpHeaderBytes);
        }
        rtp->get()->send(packet);
        if (!first_sent) first_sent = MonotonicClock().now();
        octets += packet.size() - kRtpHeaderBytes;
        const Nanos now = MonotonicClock().now();
        if (sap_sock && now >= next_sap) {
            sap_sock->send(write_sap(hash, origin, sdp));
            next_sap = now + static_cast<Nanos>(sap_interval * 1e9);
        }
        if (rtcp_sock && now >= next_rtcp) {
            // SR: the NTP time now and the RTP timestamp of the same instant.
            std::vector<std::uint8_t> sr(28);
            sr[0] = 0x80;
            sr[1] = 200;
            store_be16(&sr[2], 6);
            store_be32(&sr[4], gen.ssrc());
            const auto ntp = ntp_now();
            store_be32(&sr[8], static_cast<std::uint32_t>(ntp >> 32));
            store_be32(&sr[12], static_cast<std::uint32_t>(ntp));
            store_be32(&sr[16], load_be32(&packet[4]));
            store_be32(&sr[20], static_cast<std::uint32_t>(gen.packets_sent()));
            store_be32(&sr[24], static_cast<std::uint32_t>(octets));
            rtcp_sock->send(sr);
            next_rtcp = now + static_cast<Nanos>(rtcp_interval * 1e9);
        }
    }
    if (sap_sock) sap_sock->send(write_sap(hash, origin, sdp, true));
    std::fprintf(stderr, "vsnd-rtp-send: %llu packets (%s, %u frames each) to %s port %u, first at %lld ns "
                 "(CLOCK_MONOTONIC), %llu send errors%s%s\n",
                 static_cast<unsigned long long>(gen.packets_sent()), describe(g.format).c_str(), g.frames_per_packet,
                 address.c_str(), port, static_cast<long long>(first_sent), static_cast<unsigned long long>(rtp->get()->errors()),
                 rtp->get()->errors() ? ": " : "", rtp->get()->last_error().c_str());
    return 0;
}
