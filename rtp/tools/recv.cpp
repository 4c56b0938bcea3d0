// vsnd-rtp-recv: plays an RTP audio stream (L16/L24) into ALSA, a WAV file, a command, or a
// virtio-snd stream of vsnd-host, with its latency held at a target against the sink's actual
// playback position. One Boost.Asio loop runs the sockets, the sink and the statistics.
#include "vsnd/rtp/alsa_sink.hpp"
#include "vsnd/rtp/driver_sink.hpp"
#include "vsnd/rtp/file_sinks.hpp"
#include "vsnd/rtp/paced_sink.hpp"
#include "vsnd/rtp/playout.hpp"
#include "vsnd/rtp/receiver.hpp"
#include "vsnd/rtp/sap.hpp"
#include "vsnd/rtp/sap_directory.hpp"
#include "vsnd/rtp/sdp.hpp"
#include "vsnd/rtp/udp.hpp"
#include "vsnd/audio/wav_file.hpp"
#include "vsnd/vhost_user/frontend.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>

namespace asio = boost::asio;
using namespace vsnd;
using namespace vsnd::rtp;

namespace {


int fail(const std::string& why) {
    std::fprintf(stderr, "vsnd-rtp-recv: %s\n", why.c_str());
    return 1;
}

Nanos now_ns() { return MonotonicClock().now(); }

// The last seconds of what was played, for --dump (disorder-playrtp's habit).
class DumpRing {
public:
    DumpRing(std::size_t frames, unsigned channels) : cap_(std::max<std::size_t>(1, frames * channels)) {}
    void add(std::span<const std::int32_t> s) {
        for (auto v : s) {
            if (ring_.size() < cap_) ring_.push_back(v);
            else ring_[at_] = v;
            at_ = (at_ + 1) % cap_;
        }
    }
    Expected<Done, std::string> write(const std::string& path, const audio::SampleSpec& spec) const {
        auto w = audio::WavFileWriter::open(path, spec, false);
        if (!w) return Unexpected{w.error()};
        std::vector<std::int32_t> ordered;
        ordered.reserve(ring_.size());
        const std::size_t start = ring_.size() < cap_ ? 0 : at_;
        for (std::size_t i = 0; i < ring_.size(); ++i) ordered.push_back(ring_[(start + i) % ring_.size()]);
        std::vector<std::uint8_t> bytes(ordered.size() * spec.sample_bytes());
        convert_samples(ordered, spec.format, bytes.data());
        auto r = (*w)->write(bytes);
        if (r.error) return Unexpected{*r.error};
        return Done{};
    }

private:
    std::size_t cap_;
    std::vector<std::int32_t> ring_;
    std::size_t at_ = 0;
};

// Wraps a sink to copy what is written into the dump ring.
class Tee final : public PlayoutSink {
public:
    Tee(PlayoutSink& s, DumpRing& d) : s_(s), d_(d) {}
    audio::SampleSpec spec() const override { return s_.spec(); }
    bool update(Nanos now) override { return s_.update(now); }
    std::optional<double> pending(Nanos now) const override { return s_.pending(now); }
    std::size_t writable() const override { return s_.writable(); }
    std::size_t write(std::span<const std::int32_t> s, Nanos now) override {
        const std::size_t n = s_.write(s, now);
        d_.add(s.first(n * s_.spec().channels));
        return n;
    }
    std::uint32_t period_frames() const override { return s_.period_frames(); }
    std::uint32_t buffer_frames() const override { return s_.buffer_frames(); }
    Nanos next_wake(Nanos now) const override { return s_.next_wake(now); }
    int poll_fd() const override { return s_.poll_fd(); }
    std::uint64_t xruns() const override { return s_.xruns(); }
    std::string error() const override { return s_.error(); }
    std::string describe() const override { return s_.describe(); }

private:
    PlayoutSink& s_;
    DumpRing& d_;
};

nlohmann::json stats_json(const RtpReceiver& rx, const PlayoutSink& sink, const UdpReceiver& udp, Nanos now, Nanos t0) {
    const auto& c = rx.counters();
    const auto st = rx.status();
    nlohmann::json rejected = nlohmann::json::object();
    for (std::size_t i = 0; i < kRejectCount; ++i)
        if (c.rejected[i]) rejected[std::string(name(static_cast<Reject>(i)))] = c.rejected[i];
    nlohmann::json j = {
        {"t", static_cast<double>(now - t0) / 1e9},
        {"state", std::string(name(st.state))},
        {"ssrc", st.ssrc ? nlohmann::json(*st.ssrc) : nlohmann::json()},
        {"latency_ms", st.latency_s ? nlohmann::json(*st.latency_s * 1e3) : nlohmann::json()},
        {"error_ms", st.error_s * 1e3},
        {"ratio_ppm", (st.speed - 1) * 1e6},
        {"drift_ppm", st.rate_ppm},
        {"jitter_ms", st.jitter_s * 1e3},
        {"arrival_spread_ms", st.arrival_spread_s * 1e3},
        {"received", c.packets},
        {"lost", c.lost},
        {"late", c.late},
        {"duplicate", c.duplicates},
        {"reordered", c.reordered},
        {"concealed_frames", c.concealed_frames},
        {"underrun_frames", c.underrun_frames},
        {"underruns", c.underruns},
        {"overruns", c.overruns},
        {"resyncs", c.resyncs},
        {"jumps", c.jumps},
        {"ssrc_changes", c.ssrc_changes},
        {"slips", c.slips_dropped + c.slips_repeated},
        {"rejected", rejected},
        {"sink_xruns", sink.xruns()},
        {"sender_reports", c.sender_reports},
        {"socket_truncated", udp.counters().truncated},
        {"rejoins", udp.counters().rejoins},
    };
    return j;
}

const char* kCsvHeader = "t,state,latency_ms,error_ms,ratio_ppm,jitter_ms,received,lost,late,duplicate,reordered,"
                         "concealed_frames,underruns,overruns,resyncs,ssrc_changes,rejected,sink_xruns\n";
std::string stats_csv(const nlohmann::json& j, const RtpReceiver& rx) {
    auto num = [&](const char* k) { return j[k].is_null() ? std::string() : fmt::format("{}", j[k].get<double>()); };
    return fmt::format("{:.3f},{},{},{:.4f},{:.2f},{:.4f},{},{},{},{},{},{},{},{},{},{},{},{}\n", j["t"].get<double>(),
                       j["state"].get<std::string>(), num("latency_ms"), j["error_ms"].get<double>(),
                       j["ratio_ppm"].get<double>(), j["jitter_ms"].get<double>(), j["received"].get<std::uint64_t>(),
                       j["lost"].get<std::uint64_t>(), j["late"].get<std::uint64_t>(), j["duplicate"].get<std::uint64_t>(),
                       j["reordered"].get<std::uint64_t>(), j["concealed_frames"].get<std::uint64_t>(),
                       j["underruns"].get<std::uint64_t>(), j["overruns"].get<std::uint64_t>(),
                       j["resyncs"].get<std::uint64_t>(), j["ssrc_changes"].get<std::uint64_t>(),
                       rx.counters().rejected_total(), j["sink_xruns"].get<std::uint64_t>());
}

// Listens to SAP for `wait` and returns the directory.
Expected<SapDirectory, std::string> listen_sap(const Endpoint& where, const std::string& iface, Nanos wait,
                                               const std::string& wanted) {
    asio::io_context io;
    SapDirectory dir;
    ReceiveOptions ro;
    ro.local = where;
    ro.interface = iface;
    auto sock = UdpReceiver::open(io, ro, [&](std::span<const std::uint8_t> d, Nanos at, const auto&) {
        dir.on_datagram(d, at);
        if (!wanted.empty() && dir.find(wanted)) io.stop();
    });
    if (!sock) return Unexpected{fmt::format("SAP on {}:{}: {}", where.address, where.port, sock.error())};
    io.run_for(std::chrono::nanoseconds(wait));
    return dir;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd-rtp-recv [OPTIONS] [[ADDRESS] PORT | SDP-FILE | --sap [NAME]]\nPlays an RTP L16/L24 stream with its latency held against the sink's actual playback."};
    std::vector<std::string> positional;
    app.add_option("source", positional, "PORT, ADDRESS PORT (a local or multicast address) or an SDP file");
    std::string sap_name;
    bool sap_list = false;
    auto* sap_opt = app.add_option("--sap", sap_name, "join the session SAP announces under this name (s=); without a name: list the announced sessions")
                        ->expected(0, 1);
    std::string sap_address = std::string(kSapGroupV4) + ":" + std::to_string(kSapPort);
    app.add_option("--sap-address", sap_address, "where SAP announcements arrive")->capture_default_str();
    double sap_wait = 6;
    app.add_option("--sap-wait", sap_wait, "seconds to listen to SAP")->capture_default_str();

    std::string encoding = "L16";
    std::uint32_t rate = 48000;
    unsigned channels = 2, pt = 96;
    bool disorder = false;
    app.add_option("--format", encoding, "L16 or L24 (without an SDP)")->check(CLI::IsMember({"L16", "L24", "l16", "l24"}))->capture_default_str();
    app.add_option("--rate", rate, "sample rate (8000..192000)")->capture_default_str();
    app.add_option("--channels", channels, "channels (1..8)")->capture_default_str();
    app.add_option("--pt", pt, "payload type (10 and 11: RFC 3551's L16/44100)")->capture_default_str();
    app.add_flag("--disorder", disorder, "DisOrder's stream: PT 10, L16/44100/2, timestamps in channel samples");

    std::string sink_kind = "alsa", device = "default", wav_path, command, vhost_socket;
    unsigned vhost_stream = 0;
    app.add_option("--sink", sink_kind, "alsa, wav, command, vhost-user or null")
        ->check(CLI::IsMember({"alsa", "wav", "command", "vhost-user", "null"}))->capture_default_str();
    app.add_option("--device", device, "ALSA device")->capture_default_str();
    app.add_option("--wav", wav_path, "WAV file to write (implies --sink wav)");
    app.add_option("--command", command, "command whose standard input receives the audio (implies --sink command)");
    app.add_option("--vhost-user", vhost_socket, "vsnd-host socket to play into as a virtio-snd driver (implies --sink vhost-user)");
    app.add_option("--stream", vhost_stream, "the device's playback stream (vhost-user)")->capture_default_str();
    double period_ms = 5;
    unsigned periods = 4;
    std::uint32_t output_rate = 0;
    app.add_option("--period-ms", period_ms, "sink period")->capture_default_str();
    app.add_option("--periods", periods, "sink buffer in periods")->capture_default_str();
    app.add_option("--output-rate", output_rate, "sink rate (resampled); default: the stream's");

    double latency_ms = 40, max_latency_ms = 0, max_ppm = 2000, adopt_ms = 80;
    std::string drift = "resample", conceal = "fade";
    std::optional<std::uint32_t> ssrc;
    app.add_option("--latency", latency_ms, "target latency, ms: arrival to audible")->capture_default_str();
    app.add_option("--max-latency", max_latency_ms, "resync above this, ms (default 3 x target + 20)");
    app.add_option("--drift", drift, "resample, slip (drop/repeat frames in silence) or off")
        ->check(CLI::IsMember({"resample", "slip", "off"}))->capture_default_str();
    app.add_option("--max-ppm", max_ppm, "largest drift correction")->capture_default_str();
    app.add_option("--ssrc", ssrc, "play only this SSRC");
    app.add_option("--adopt-after", adopt_ms, "adopt a new SSRC once the played one is silent this long, ms")->capture_default_str();
    app.add_option("--conceal", conceal, "loss concealment: fade or silence")->check(CLI::IsMember({"fade", "silence"}))->capture_default_str();

    std::string iface;
    int rcvbuf = 0;
    double rejoin_s = 10;
    bool no_rtcp = false, wake_per_packet = false;
    app.add_option("--interface", iface, "network interface (multicast join, unicast bind)");
    app.add_option("--rcvbuf", rcvbuf, "socket receive buffer, bytes");
    app.add_option("--rejoin-after", rejoin_s, "rejoin a multicast group silent this long, s (0: never)")->capture_default_str();
    app.add_flag("--no-rtcp", no_rtcp, "do not listen for RTCP on PORT+1 nor send receiver reports");
    app.add_flag("--wake-per-packet", wake_per_packet,
                 "read each packet as it arrives (default: at each sink period; arrival times come from the kernel either way)");

    bool monitor = false;
    std::string stats_path, stats_format = "json", control_path, dump_path;
    double stats_interval = 1, dump_seconds = 20, duration = 0, until_idle = 0;
    app.add_flag("--monitor", monitor, "a one-line live status on stderr");
    app.add_option("--stats", stats_path, "statistics to this file ('-': stdout)");
    app.add_option("--stats-format", stats_format, "json (one object per line) or csv")->check(CLI::IsMember({"json", "csv"}))->capture_default_str();
    app.add_option("--stats-interval", stats_interval, "seconds between statistics lines")->capture_default_str();
    app.add_option("--control", control_path, "a Unix socket answering \"stats\" and \"stop\"");
    app.add_option("--dump", dump_path, "keep the last seconds of output and write them to this WAV at exit or SIGUSR1");
    app.add_option("--dump-seconds", dump_seconds, "seconds kept for --dump")->capture_default_str();
    app.add_option("--duration", duration, "stop after this many seconds");
    app.add_option("--until-idle", until_idle, "stop once no packet arrived for this many seconds (after the first)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "vsnd-rtp-recv: %s (see --help)\n", e.what());
        return 2;
    }
    sap_list = sap_opt->count() > 0 && sap_name.empty();
    if (!wav_path.empty()) sink_kind = "wav";
    if (!command.empty()) sink_kind = "command";
    if (!vhost_socket.empty()) sink_kind = "vhost-user";

    // ---- what to receive -------------------------------------------------------------------
    ReceiverOptions ro;
    ro.format = PayloadFormat{*parse_encoding(encoding), rate, static_cast<std::uint8_t>(std::min(channels, 255u)),
                              static_cast<std::uint8_t>(std::min(pt, 255u))};
    if (!app.get_option("--format")->count() && !app.get_option("--rate")->count() &&
        !app.get_option("--channels")->count()) {
        if (auto st = static_payload_type(ro.format.payload_type)) ro.format = *st;
    }
    if (disorder) {
        ro.format = *static_payload_type(10);
        ro.format.timestamp_unit = TimestampUnit::ChannelSamples;
    }
    Endpoint local;
    std::optional<SdpSession> sdp;
    if (sap_opt->count()) {
        auto where = parse_endpoint(sap_address);
        if (!where) return fail("--sap-address: " + where.error());
        auto dir = listen_sap(*where, iface, static_cast<Nanos>(sap_wait * 1e9), sap_name);
        if (!dir) return fail(dir.error());
        if (sap_list) {
            for (const auto& e : dir->entries())
                std::printf("%s\t%s:%u\t%s\tfrom %s\n", e.session.name.c_str(), e.session.address.value_or("?").c_str(),
                            e.session.port, describe(e.session.format).c_str(), e.origin.c_str());
            if (dir->entries().empty()) std::fprintf(stderr, "vsnd-rtp-recv: no SAP announcement in %.0f s\n", sap_wait);
            return dir->entries().empty() ? 1 : 0;
        }
        const auto* e = dir->find(sap_name);
        if (!e) return fail(fmt::format("no session \"{}\" announced in {:.0f} s ({} others seen)", sap_name, sap_wait, dir->entries().size()));
        sdp = e->session;
    } else if (positional.size() == 1 && positional[0].find_first_not_of("0123456789") != std::string::npos) {
        std::ifstream in(positional[0], std::ios::binary);
        if (!in) return fail(fmt::format("cannot read SDP file {}", positional[0]));
        std::string text((std::istreambuf_iterator<char>(in)), {});
        if (text.size() > kMaxSdpBytes) return fail(fmt::format("{}: SDP is larger than {} bytes", positional[0], kMaxSdpBytes));
        auto s = parse_sdp(text);
        if (!s) return fail(fmt::format("{}: {}", positional[0], s.error()));
        sdp = *s;
    } else if (positional.size() == 1 || positional.size() == 2) {
        auto e = parse_endpoint(positional.size() == 2 ? positional[0] + " " + positional[1] : positional[0]);
        if (!e) return fail(e.error());
        local = *e;
    } else {
        return fail("give a PORT, ADDRESS PORT, an SDP file or --sap (see --help)");
    }
    if (sdp) {
        ro.format = sdp->format;
        if (disorder) ro.format.timestamp_unit = TimestampUnit::ChannelSamples;
        local.port = sdp->port;
        // A multicast group is joined; a unicast address in the SDP is the sender's view of us: bind any.
        boost::system::error_code ec;
        if (sdp->address) {
            auto a = asio::ip::make_address(*sdp->address, ec);
            if (!ec && a.is_multicast()) local.address = *sdp->address;
            else if (!ec && a.is_v6()) local.address = "::";
        }
        std::fprintf(stderr, "vsnd-rtp-recv: session \"%s\": %s on port %u%s%s%s\n", sdp->name.c_str(),
                     describe(ro.format).c_str(), local.port, sdp->ptime_ms ? fmt::format(", ptime {} ms", *sdp->ptime_ms).c_str() : "",
                     sdp->ts_refclk ? (", ts-refclk " + *sdp->ts_refclk).c_str() : "",
                     sdp->mediaclk ? (", mediaclk " + *sdp->mediaclk).c_str() : "");
    }
    ro.target_latency = static_cast<Nanos>(latency_ms * 1e6);
    ro.max_latency = static_cast<Nanos>(max_latency_ms * 1e6);
    ro.drift = drift == "resample" ? DriftCorrection::Resample : drift == "slip" ? DriftCorrection::Slip : DriftCorrection::Off;
    ro.loop.max_ppm = max_ppm;
    ro.ssrc = ssrc;
    ro.adopt_after = static_cast<Nanos>(adopt_ms * 1e6);
    ro.concealment = conceal == "fade" ? Concealment::Fade : Concealment::Silence;
    ro.output_rate = output_rate;
    ro.output_bits = ro.format.encoding == Encoding::L16 ? 16 : 24;

    // ---- the sink ------------------------------------------------------------------------------
    const std::uint32_t sink_rate = output_rate ? output_rate : ro.format.rate;
    const audio::SampleSpec spec{ro.format.encoding == Encoding::L16 ? wire::PcmFormat::S16 : wire::PcmFormat::S32, sink_rate,
                                 ro.format.channels};
    const auto period = static_cast<std::uint32_t>(std::max(16.0, period_ms * sink_rate / 1000));
    if (periods < 2 || periods > 64) return fail("--periods must be 2..64");
    // Valid / adjusted / invalid: the target must cover what the sink holds ahead (its buffer but
    // one period) and a packet.
    const double fill_ms = (periods - 1.0) * period * 1000 / sink_rate;
    if (latency_ms < fill_ms + 1)
        return fail(fmt::format("--latency {} ms is below the sink's fill ({:.1f} ms: {} of {} periods of {:.1f} ms) plus a "
                                "packet; raise --latency or lower --period-ms or --periods", latency_ms, fill_ms, periods - 1,
                                periods, fill_ms / (periods - 1)));
    if (auto ok = validate(ro); !ok) return fail(ok.error());

    asio::io_context io;
    // Declared in this order so that the sink (which stops its stream through the driver, which
    // reads this clock) goes first.
    MonotonicClock mono;
    std::unique_ptr<vhost_user::Frontend> frontend;
    std::unique_ptr<driver::SoundDriver> drv;
    std::unique_ptr<PlayoutSink> sink;
    PacedSinkOptions po{spec, period, period * periods, 0, 0, true};
    if (sink_kind == "alsa") {
        auto s = AlsaSink::open(AlsaSinkOptions{device, spec, period, periods});
        if (!s) return fail(s.error());
        sink = std::move(*s);
    } else if (sink_kind == "wav") {
        if (wav_path.empty()) return fail("--sink wav needs --wav FILE");
        auto s = WavSink::open(wav_path, po);
        if (!s) return fail(s.error());
        sink = std::move(*s);
    } else if (sink_kind == "command") {
        if (command.empty()) return fail("--sink command needs --command CMD");
        auto s = CommandSink::open(command, po);
        if (!s) return fail(s.error());
        sink = std::move(*s);
    } else if (sink_kind == "null") {
        sink = std::make_unique<PacedSink>(po, nullptr);
    } else {
        if (vhost_socket.empty()) return fail("--sink vhost-user needs --vhost-user SOCKET");
        auto f = vhost_user::Frontend::connect(vhost_socket);
        if (!f) return fail(fmt::format("vhost-user {}: {}", vhost_socket, f.error()));
        frontend = std::move(*f);
        drv = std::make_unique<driver::SoundDriver>(*frontend, mono);
        if (auto r = drv->probe(); !r) return fail("probe: " + r.error().message);
        auto s = DriverSink::open(*drv, vhost_stream, driver::PcmConfig{spec.format, spec.rate, spec.channels, period, periods, 0});
        if (!s) return fail(s.error());
        sink = std::move(*s);
    }
    // Valid / adjusted / invalid: a sink that runs at another rate than asked (ALSA's nearest)
    // is fed through the resampler at its rate, or refused without one.
    if (sink->spec().rate != sink_rate) {
        if (ro.drift != DriftCorrection::Resample)
            return fail(fmt::format("the sink runs at {} Hz, not {} Hz: that needs --drift resample", sink->spec().rate, sink_rate));
        std::fprintf(stderr, "vsnd-rtp-recv: adjusted: the sink runs at %u Hz; resampling %u Hz to it\n", sink->spec().rate, sink_rate);
        ro.output_rate = sink->spec().rate;
        if (auto ok = validate(ro); !ok) return fail(ok.error());
    }
    std::optional<DumpRing> dump;
    std::unique_ptr<Tee> tee;
    if (!dump_path.empty()) {
        dump.emplace(static_cast<std::size_t>(dump_seconds * sink_rate), spec.channels);
        tee = std::make_unique<Tee>(*sink, *dump);
    }
    PlayoutSink& out = tee ? static_cast<PlayoutSink&>(*tee) : *sink;

    RtpReceiver rx(ro);
    Playout playout(rx, out);
    std::fprintf(stderr, "vsnd-rtp-recv: %s -> %s, target %.1f ms, drift %s\n", describe(ro.format).c_str(),
                 out.describe().c_str(), latency_ms, drift.c_str());

    // ---- sockets -----------------------------------------------------------------------------------
    const Nanos t0 = now_ns();
    Nanos first_packet = 0, last_packet = 0;
    ReceiveOptions net;
    net.local = local;
    net.interface = iface;
    net.receive_buffer = rcvbuf;
    net.rejoin_after = static_cast<Nanos>(rejoin_s * 1e9);
    net.wake_per_datagram = wake_per_packet;
    auto rtp_sock = UdpReceiver::open(io, net, [&](std::span<const std::uint8_t> d, Nanos at, const auto&) {
        if (!first_packet) first_packet = at;
        last_packet = at;
        rx.on_packet(d, at);
    });
    if (!rtp_sock) return fail(rtp_sock.error());
    std::unique_ptr<UdpReceiver> rtcp_sock;
    std::unique_ptr<UdpSender> rr_sender;
    std::optional<asio::ip::udp::endpoint> rtcp_peer;
    if (!no_rtcp && local.port < 65535) {
        ReceiveOptions rn = net;
        rn.local.port = static_cast<std::uint16_t>(local.port + 1);
        auto s = UdpReceiver::open(io, rn, [&](std::span<const std::uint8_t> d, Nanos at, const asio::ip::udp::endpoint& from) {
            const auto reports = rx.counters().sender_reports;
            rx.on_rtcp(d, at);
            // Reports go back to whoever sent the played source's latest sender report.
            if (rx.counters().sender_reports != reports && rtcp_peer != from) {
                rtcp_peer = from;
                rr_sender.reset();
            }
        });
        if (s) rtcp_sock = std::move(*s);
        else std::fprintf(stderr, "vsnd-rtp-recv: no RTCP: %s\n", s.error().c_str());
    }

    // ---- statistics ---------------------------------------------------------------------------------
    std::FILE* stats = nullptr;
    if (stats_path == "-") stats = stdout;
    else if (!stats_path.empty() && !(stats = std::fopen(stats_path.c_str(), "w"))) return fail("cannot write " + stats_path);
    if (stats && stats_format == "csv") std::fputs(kCsvHeader, stats);

    int exit_code = 0;
    auto stop = [&](int code) {
        exit_code = code;
        io.stop();
    };

    // Without --wake-per-packet the sockets are read when the sink wants audio.
    auto poll_sockets = [&] {
        if (wake_per_packet) return;
        (*rtp_sock)->poll();
        if (rtcp_sock) rtcp_sock->poll();
    };
    asio::steady_timer sink_timer(io), stats_timer(io), house_timer(io);
    std::function<void()> arm_sink = [&] {
        const Nanos now = now_ns();
        sink_timer.expires_after(std::chrono::nanoseconds(std::max<Nanos>(0, out.next_wake(now) - now)));
        sink_timer.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            poll_sockets();
            if (!playout.service(now_ns())) return stop((std::fprintf(stderr, "vsnd-rtp-recv: sink: %s\n", out.error().c_str()), 1));
            arm_sink();
        });
    };
    arm_sink();
    std::unique_ptr<asio::posix::stream_descriptor> irq;
    std::function<void()> arm_irq = [&] {
        irq->async_wait(asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& ec) {
            if (ec) return;
            drv->on_interrupt();
            poll_sockets();
            if (!playout.service(now_ns())) return stop((std::fprintf(stderr, "vsnd-rtp-recv: sink: %s\n", out.error().c_str()), 1));
            arm_irq();
        });
    };
    if (drv && out.poll_fd() >= 0) {
        irq = std::make_unique<asio::posix::stream_descriptor>(io, ::dup(out.poll_fd()));
        arm_irq();
    }
    Nanos last_rr = 0;
    std::function<void()> arm_house = [&] {
        house_timer.expires_after(std::chrono::milliseconds(100));
        house_timer.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            const Nanos now = now_ns();
            (*rtp_sock)->housekeeping(now);
            if (duration > 0 && now - t0 >= static_cast<Nanos>(duration * 1e9)) return stop(0);
            if (until_idle > 0 && first_packet && now - last_packet >= static_cast<Nanos>(until_idle * 1e9)) return stop(0);
            // RTCP receiver reports every 5 s to a sender that sends reports.
            if (rtcp_peer && now - last_rr >= 5 * kNanosPerSecond) {
                last_rr = now;
                auto rr = write_receiver_report(0x76736e72, rx.reception_report(now), "vsnd-rtp-recv");
                if (!rr_sender) {
                    SendOptions so;
                    so.destination = {rtcp_peer->address().to_string(), rtcp_peer->port()};
                    if (auto s = UdpSender::open(io, so)) rr_sender = std::move(*s);
                }
                if (rr_sender) rr_sender->send(rr);
            }
            arm_house();
        });
    };
    arm_house();
    std::function<void()> arm_stats = [&] {
        stats_timer.expires_after(std::chrono::nanoseconds(static_cast<Nanos>(stats_interval * 1e9)));
        stats_timer.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            const Nanos now = now_ns();
            auto j = stats_json(rx, out, **rtp_sock, now, t0);
            if (stats) {
                std::fputs(stats_format == "json" ? (j.dump() + "\n").c_str() : stats_csv(j, rx).c_str(), stats);
                std::fflush(stats);
            }
            if (monitor) {
                std::fprintf(stderr, "\r%-8s latency %6.2f ms (err %+6.3f) drift %+8.2f ppm jitter %5.2f ms  rx %llu lost %llu late %llu under %llu resync %llu   ",
                             j["state"].get<std::string>().c_str(), j["latency_ms"].is_null() ? 0.0 : j["latency_ms"].get<double>(),
                             j["error_ms"].get<double>(), j["drift_ppm"].get<double>(), j["jitter_ms"].get<double>(),
                             static_cast<unsigned long long>(j["received"].get<std::uint64_t>()),
                             static_cast<unsigned long long>(j["lost"].get<std::uint64_t>()),
                             static_cast<unsigned long long>(j["late"].get<std::uint64_t>()),
                             static_cast<unsigned long long>(j["underruns"].get<std::uint64_t>()),
                             static_cast<unsigned long long>(j["resyncs"].get<std::uint64_t>()));
            }
            arm_stats();
        });
    };
    if (stats || monitor) arm_stats();

    // ---- control socket -------------------------------------------------------------------------------
    std::unique_ptr<asio::local::stream_protocol::acceptor> control;
    unsigned control_clients = 0;
    std::function<void()> accept_control = [&] {
        control->async_accept([&](const boost::system::error_code& ec, asio::local::stream_protocol::socket s) {
            if (ec) return;
            if (control_clients < 4) {
                ++control_clients;
                auto sock = std::make_shared<asio::local::stream_protocol::socket>(std::move(s));
                auto buf = std::make_shared<asio::streambuf>(256); // a command is one short line
                // A client has 5 s to ask and to take its answer; then its slot is freed.
                auto deadline = std::make_shared<asio::steady_timer>(io, std::chrono::seconds(5));
                deadline->async_wait([sock](const boost::system::error_code& e) {
                    if (!e) sock->close();
                });
                asio::async_read_until(*sock, *buf, '\n', [&, sock, buf, deadline](const boost::system::error_code& ec2, std::size_t) {
                    std::string line;
                    if (!ec2) std::getline(std::istream(buf.get()) >> std::ws, line);
                    std::string reply;
                    if (line == "stats") {
                        poll_sockets(); // up to the last datagram that has arrived
                        reply = stats_json(rx, out, **rtp_sock, now_ns(), t0).dump() + "\n";
                    }
                    else if (line == "stop") reply = "stopping\n";
                    else reply = "unknown command (stats, stop)\n";
                    auto r = std::make_shared<std::string>(std::move(reply));
                    asio::async_write(*sock, asio::buffer(*r), [&, sock, r, line, deadline](const boost::system::error_code&, std::size_t) {
                        deadline->cancel();
                        --control_clients;
                        if (line == "stop") stop(0);
                    });
                });
            }
            accept_control();
        });
    };
    if (!control_path.empty()) {
        ::unlink(control_path.c_str());
        boost::system::error_code ec;
        control = std::make_unique<asio::local::stream_protocol::acceptor>(io);
        control->open(asio::local::stream_protocol(), ec);
        if (!ec) control->bind(asio::local::stream_protocol::endpoint(control_path), ec);
        if (!ec) control->listen(4, ec);
        if (ec) return fail(fmt::format("control socket {}: {}", control_path, ec.message()));
        accept_control();
    }

    asio::signal_set signals(io, SIGINT, SIGTERM, SIGUSR1);
    std::function<void()> arm_signals = [&] {
        signals.async_wait([&](const boost::system::error_code& ec, int sig) {
            if (ec) return;
            if (sig == SIGUSR1 && dump) {
                if (auto w = dump->write(dump_path, spec); !w) std::fprintf(stderr, "vsnd-rtp-recv: dump: %s\n", w.error().c_str());
                arm_signals();
                return;
            }
            stop(0);
        });
    };
    arm_signals();
    std::signal(SIGPIPE, SIG_IGN);

    io.run();
    if (monitor) std::fputc('\n', stderr);
    if (dump) {
        if (auto w = dump->write(dump_path, spec); !w) std::fprintf(stderr, "vsnd-rtp-recv: dump: %s\n", w.error().c_str());
    }
    const auto j = stats_json(rx, out, **rtp_sock, now_ns(), t0);
    if (stats) {
        std::fputs(stats_format == "json" ? (j.dump() + "\n").c_str() : stats_csv(j, rx).c_str(), stats);
        if (stats != stdout) std::fclose(stats);
    }
    std::fprintf(stderr, "vsnd-rtp-recv: %s\n", j.dump().c_str());
    if (!control_path.empty()) ::unlink(control_path.c_str());
    return exit_code;
}
