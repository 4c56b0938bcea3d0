// vsnd-rtp-impair: a UDP relay that does to datagrams what networks do — random and burst loss,
// duplication, jitter, reordering — reproducibly from a seed, for a bounded time. netem is not
// available everywhere (not on this project's machines); this is.
#include "vsnd/rtp/impairment.hpp"
#include "vsnd/rtp/udp.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <cstdio>

using namespace vsnd;
using namespace vsnd::rtp;

int main(int argc, char** argv) {
    CLI::App app{"vsnd-rtp-impair: a UDP relay with seeded loss, burst loss, duplication, jitter and reordering"};
    std::string listen, to;
    ImpairmentOptions o;
    double jitter_ms = 0, reorder_ms = 0, duration = 60;
    app.add_option("--listen", listen, "[ADDRESS:]PORT to receive on")->required();
    app.add_option("--to", to, "ADDRESS:PORT to forward to")->required();
    app.add_option("--loss", o.loss, "independent loss probability")->check(CLI::Range(0.0, 1.0));
    app.add_option("--burst-loss", o.burst_loss, "loss probability in bursts (Gilbert model)")->check(CLI::Range(0.0, 0.9));
    app.add_option("--burst-length", o.burst_length, "mean burst length, datagrams")->check(CLI::Range(1.0, 1000.0))->capture_default_str();
    app.add_option("--dup", o.duplicate, "duplication probability")->check(CLI::Range(0.0, 1.0));
    app.add_option("--jitter-ms", jitter_ms, "extra delay uniform in [0, J] ms")->check(CLI::Range(0.0, 10000.0));
    app.add_option("--reorder", o.reorder, "probability a datagram is held back")->check(CLI::Range(0.0, 1.0));
    app.add_option("--reorder-ms", reorder_ms, "how much longer it is held, ms")->check(CLI::Range(0.0, 10000.0));
    app.add_option("--seed", o.seed, "random seed")->capture_default_str();
    app.add_option("--duration", duration, "stop after this many seconds (at most 3600)")->check(CLI::Range(0.001, 3600.0))->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "vsnd-rtp-impair: %s (see --help)\n", e.what());
        return 2;
    }
    auto in = parse_endpoint(listen);
    if (!in) return std::fprintf(stderr, "vsnd-rtp-impair: --listen: %s\n", in.error().c_str()), 1;
    auto out = parse_endpoint(to);
    if (!out || out->address.empty()) return std::fprintf(stderr, "vsnd-rtp-impair: --to needs ADDRESS:PORT\n"), 1;
    o.jitter = static_cast<Nanos>(jitter_ms * 1e6);
    o.reorder_delay = static_cast<Nanos>(reorder_ms * 1e6);

    boost::asio::io_context io;
    Impairment imp(o);
    MonotonicClock clock;
    auto sender = UdpSender::open(io, SendOptions{*out, "", 1, true});
    if (!sender) return std::fprintf(stderr, "vsnd-rtp-impair: %s\n", sender.error().c_str()), 1;
    boost::asio::steady_timer release(io), stop(io);
    std::function<void()> arm = [&] {
        if (!imp.pending()) return;
        release.expires_after(std::chrono::nanoseconds(std::max<Nanos>(0, imp.next_time() - clock.now())));
        release.async_wait([&](const boost::system::error_code& ec) {
            if (ec) return;
            while (imp.pending() && imp.next_time() <= clock.now()) (*sender)->send(imp.pop());
            arm();
        });
    };
    ReceiveOptions ro;
    ro.local = *in;
    auto rx = UdpReceiver::open(io, ro, [&](std::span<const std::uint8_t> d, Nanos at, const auto&) {
        imp.push(d, at);
        arm();
    });
    if (!rx) return std::fprintf(stderr, "vsnd-rtp-impair: %s\n", rx.error().c_str()), 1;
    stop.expires_after(std::chrono::nanoseconds(static_cast<Nanos>(duration * 1e9)));
    stop.async_wait([&](const boost::system::error_code&) { io.stop(); });
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { io.stop(); });
    io.run();
    const auto& c = imp.counters();
    std::fprintf(stderr, "vsnd-rtp-impair: in %llu out %llu lost %llu duplicated %llu reordered %llu overflow %llu\n",
                 (unsigned long long)c.in, (unsigned long long)c.out, (unsigned long long)c.lost,
                 (unsigned long long)c.duplicated, (unsigned long long)c.reordered, (unsigned long long)c.overflow);
    return 0;
}
