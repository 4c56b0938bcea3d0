// vsnd-host: the virtio-snd device as a vhost-user backend daemon for QEMU's
// `-device vhost-user-snd-pci`. Serves one front-end at a time on a Unix socket and the next one
// after it disconnects, until SIGINT/SIGTERM.
#include "vsnd/backends/alsa_backend.hpp"
#include "vsnd/backends/null_backend.hpp"
#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/device/backend_registry.hpp"
#include "vsnd/vhost_user/backend.hpp"
#include "vsnd/vhost_user/topology_spec.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <grp.h>
#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

using namespace vsnd;

namespace {

int fail(const std::string& msg) {
    std::fprintf(stderr, "vsnd-host: %s\n", msg.c_str());
    return 1;
}

// The calling thread (the device loop's) at SCHED_FIFO `priority`, as a sound server's audio
// thread gets it from RTKit: a busy host then delays completions by microseconds, not by a
// scheduler slice. Threads it starts later inherit it (ALSA I/O); the WAV writer drops it.
std::string make_realtime(int priority) {
    const sched_param p{.sched_priority = priority};
    if (const int e = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p); e != 0)
        return fmt::format("--rt-priority {}: {} (needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least {}, and a cgroup "
                           "with a real-time budget); running at normal priority", priority, std::strerror(e), priority);
    return {};
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd-host: virtio-snd vhost-user backend for QEMU's vhost-user-snd-pci"};
    std::string socket_path, backend_name = "null", device_name = "default", wav_dir = ".", capture_wav,
                policy_name = "played", log_level = "info", notify_lead = "auto";
    unsigned renotify_ms = 10;
    int rt_priority = 0;
    std::vector<std::string> backend_options;
    vhost_user::TopologySpec spec;
    app.add_option("--socket", socket_path, "Unix socket to listen on (QEMU: -chardev socket,path=...)")->required();
    std::string socket_mode = "0600", socket_group;
    app.add_option("--socket-mode", socket_mode, "permissions of the socket, octal (who may connect: a front-end "
                                                 "is trusted with the device)")
        ->capture_default_str()
        ->check([](const std::string& v) -> std::string {
            if (v.empty() || v.size() > 4 || v.find_first_not_of("01234567") != std::string::npos) return "not an octal mode: " + v;
            return std::stoul(v, nullptr, 8) & ~0777ul ? "only permission bits (0..0777): " + v : std::string{};
        });
    app.add_option("--socket-group", socket_group, "group of the socket (name or number), e.g. with --socket-mode 0660");
    unsigned stall_timeout_ms = 5000;
    app.add_option("--stall-timeout-ms", stall_timeout_ms,
                   "close a front-end that has not sent SET_OWNER, or stops mid-message, for this long (0: never; "
                   "for a QEMU that adds the device long after creating its chardev)")
        ->capture_default_str();
    // Backends by name (device::BackendRegistry): the factory picks one.
    device::BackendRegistry registry;
    backends::register_null_backend(registry);
    std::shared_ptr<spdlog::logger> log; // created after parsing; the ALSA and WAV backends log through it
    backends::register_wav_backend(registry, [&log](const std::string& m) { if (log) log->warn("{}", m); });
    backends::register_alsa_backend(registry, [&log](const std::string& m) { if (log) log->info("alsa: {}", m); });
    std::string backend_help = "audio backend:";
    for (const auto& n : registry.names()) backend_help += fmt::format("\n  {}: {}", n, registry.find(n)->help);
    app.add_option("--backend", backend_name, backend_help)->check(CLI::IsMember(registry.names()))->capture_default_str();
    std::string option_help = "backend option KEY=VALUE, or STREAM:KEY=VALUE for one stream (repeatable):";
    for (const auto& n : registry.names())
        for (const auto& o : registry.find(n)->options) option_help += fmt::format("\n  {} {}: {}", n, o.key, o.help);
    app.add_option("-o,--option", backend_options, option_help);
    bool unpaced = false;
    app.add_flag("--unpaced", unpaced, "null backend: play everything the instant it arrives (= -o unpaced=1)");
    app.add_option("--streams", spec.streams, "PCM streams in order, e.g. out:1,in:1")->capture_default_str();
    app.add_option("--formats", spec.formats, "sample formats offered: S16,S24,S32,FLOAT,U8")->capture_default_str();
    app.add_option("--rates", spec.rates, "rates offered: a range (8000-192000) or a list (44100,48000)")
        ->capture_default_str();
    app.add_option("--channels", spec.channels, "channel range, e.g. 1-8 or 2")->capture_default_str();
    auto* device_opt = app.add_option("--device", device_name, "ALSA PCM (--backend alsa; = -o device=)")->capture_default_str();
    auto* wav_dir_opt = app.add_option("--wav-dir", wav_dir, "directory for stream-<id>.wav (--backend wav; = -o dir=)")
        ->capture_default_str();
    app.add_option("--capture-wav", capture_wav, "WAV file capture streams read (--backend wav; = -o capture=)");
    app.add_option("--policy", policy_name, "complete playback messages when played or when consumed")
        ->check(CLI::IsMember({"played", "consumed"}))
        ->capture_default_str();
    app.add_option("--notify-lead", notify_lead,
                   "played policy: complete this many microseconds before the audio is heard, the notification's "
                   "trip to the guest ('auto': measured from the guest's used_event; 0: off)")
        ->check(CLI::IsMember({"auto"}) | CLI::Range(0, 2000))
        ->capture_default_str();
    app.add_option("--renotify-ms", renotify_ms,
                   "notify again when the guest has not taken a completion this long after its notification (0: never)")
        ->check(CLI::Range(0u, 1000u))
        ->capture_default_str();
    app.add_option("--rt-priority", rt_priority,
                   "run the device loop SCHED_FIFO at this priority (1-99), as a sound server's audio thread runs; "
                   "0: normal scheduling. Without the right to (CAP_SYS_NICE, RLIMIT_RTPRIO) a warning, no error")
        ->check(CLI::Range(0, 99))
        ->capture_default_str();
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
        ->capture_default_str();
    app.set_version_flag("--version", std::string("vsnd-host ") + VSND_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "vsnd-host: %s (see --help)\n", e.what());
        return 2;
    }

    log = spdlog::stderr_color_mt("vsnd-host");
    log->set_level(spdlog::level::from_str(log_level));
    log->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

    if (unpaced && backend_name != "null") return fail("--unpaced needs --backend null");
    auto topology = vhost_user::make_topology(spec);
    if (!topology) return fail(topology.error());

    // The shorthand options are backend options; -o settings come after them and win.
    device::BackendOptions options;
    if (unpaced) options.set("unpaced", "1");
    if (backend_name == "wav") {
        options.set("dir", wav_dir);
        if (!capture_wav.empty()) options.set("capture", capture_wav);
    } else if (!capture_wav.empty() || wav_dir_opt->count()) {
        return fail("--wav-dir and --capture-wav need --backend wav");
    }
    if (backend_name == "alsa") options.set("device", device_name);
    else if (device_opt->count()) return fail("--device needs --backend alsa");
    for (const auto& o : backend_options)
        if (auto r = options.add(o); !r) return fail(r.error());
    for (std::uint32_t id : options.streams())
        if (id >= topology->streams.size())
            return fail(fmt::format("backend option for stream {}: there are {} streams (--streams {})", id,
                                    topology->streams.size(), spec.streams));

    MonotonicClock clock;
    auto created = registry.create(backend_name, clock, options);
    if (!created) return fail(created.error());
    std::unique_ptr<device::AudioBackend> backend = std::move(created).value();

    // Offer what was asked for and the backend can do: an impossible request stops here, in one
    // line, rather than as IO_ERR at the guest's first PREPARE.
    const auto fit = device::fit_topology(*topology, backend->capabilities());
    if (fit.status == device::Fit::Invalid) {
        std::string why;
        for (const auto& n : fit.notes) why += (why.empty() ? "" : "; ") + n;
        return fail(fmt::format("backend {} cannot serve this topology: {}", backend->name(), why));
    }
    for (const auto& n : fit.notes) log->warn("topology adjusted: {}", n);
    bool inputs = false;
    for (const auto& st : topology->streams) inputs |= st.direction == wire::Direction::Input;
    if (backend_name == "wav" && capture_wav.empty() && !options.get("capture") && inputs)
        log->info("no --capture-wav: capture streams record silence");

    const auto policy = policy_name == "played" ? device::CompletionPolicy::Played : device::CompletionPolicy::Consumed;
    device::SoundDevice dev(*topology, *backend, clock, policy);
    dev.set_logger([log](const std::string& m) { log->warn("device: {}", m); });
    device::NotifyTuning tuning;
    tuning.renotify_after = static_cast<Nanos>(renotify_ms) * 1'000'000;
    if (policy == device::CompletionPolicy::Played) {
        tuning.measure_lead = notify_lead == "auto";
        if (notify_lead != "auto") tuning.lead = static_cast<Nanos>(std::stoul(notify_lead)) * 1000;
    }
    dev.set_notify_tuning(tuning);

    std::signal(SIGPIPE, SIG_IGN); // a call fd may be a pipe whose reader has gone
    boost::asio::io_context io;
    vhost_user::ServerOptions access;
    access.mode = static_cast<mode_t>(std::stoul(socket_mode, nullptr, 8));
    access.stall_timeout = std::chrono::milliseconds(stall_timeout_ms);
    if (!socket_group.empty()) {
        if (const group* g = ::getgrnam(socket_group.c_str())) access.group = g->gr_gid;
        else if (socket_group.size() <= 9 && socket_group.find_first_not_of("0123456789") == std::string::npos) access.group = static_cast<gid_t>(std::stoul(socket_group));
        else return fail(fmt::format("--socket-group: no group {}", socket_group));
    }
    vhost_user::Server server(io, dev, log, access);
    // Handlers first, socket second: a SIGTERM that follows the socket's appearance at once (a
    // service manager, a test) must still finalise the WAV files, not kill the process.
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (ec) return;
        log->info("signal {}: shutting down", sig);
        server.stop();
        io.stop();
    });
    if (auto r = server.listen(socket_path); !r) return fail(r.error());
    log->info("vsnd-host {}: backend {}, {} streams ({} formats {}, rates {}, channels {}), completion when {}", VSND_VERSION,
              backend->name(), topology->streams.size(), spec.streams, spec.formats, spec.rates, spec.channels,
              policy_name);

    if (rt_priority > 0) {
        if (const std::string why = make_realtime(rt_priority); !why.empty()) log->warn("{}", why);
        else log->info("device loop: SCHED_FIFO priority {}", rt_priority);
    }
    io.run();
    server.stop();
    dev.reset(); // closes the backend's streams (WAV headers are finalised)
    // The leads in use were logged per connection (a reset forgets them); these are the totals.
    const device::NotifyStats ns = dev.notify_stats();
    log->info("notifications in total: {} tx trips, {} drain STOPs and {} requests after them timed, {} sent again",
              ns.trips_measured, ns.stop_trips_measured, ns.after_stop_trips_measured, ns.renotified);
    log->info("stopped after {} connection(s)", server.connections_accepted());
    return 0;
}
