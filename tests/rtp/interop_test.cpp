// Real senders into the real receiver over loopback: GStreamer's rtpL16pay/rtpL24pay, ffmpeg's
// RTP muxer with the SDP it writes, and vsnd-rtp-send (also through vsnd-rtp-impair). The
// receiver writes a WAV; the TestSignal it holds must be bit-exact (no resampling: --drift off,
// one clock on loopback), and its statistics must show no loss.
#include "vsnd/audio/test_signal.hpp"
#include "vsnd/audio/wav_file.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace vsnd::test {
namespace {

namespace fs = std::filesystem;

// Latency bounds of the real-time cases, widened in the sanitizer builds, whose receiver runs
// several times slower (the audio must still be exact there).
#ifdef VSND_SANITIZED
constexpr double kSlack = 2.0;
#else
constexpr double kSlack = 1.0;
#endif
using namespace std::chrono_literals;

struct Dir {
    fs::path path;
    Dir() {
        char t[] = "/tmp/vsnd-rtp-interop-XXXXXX";
        path = mkdtemp(t);
    }
    ~Dir() { fs::remove_all(path); }
};

pid_t spawn(const std::string& cmd) {
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0) << cmd;
    return pid;
}
int wait_for(pid_t pid) {
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
int run(const std::string& cmd) { return wait_for(spawn(cmd)); }

bool have(const char* tool) { return run(std::string("command -v ") + tool + " >/dev/null 2>&1") == 0; }

void write_test_wav(const fs::path& p, wire::PcmFormat f, std::uint32_t rate, std::uint64_t frames) {
    audio::SampleSpec spec{f, rate, 2};
    auto w = audio::WavFileWriter::open(p, spec, false);
    ASSERT_TRUE(w) << w.error();
    std::vector<std::uint8_t> buf(frames * spec.frame_bytes());
    audio::TestSignal(f, 2).fill(buf, 0);
    ASSERT_FALSE((*w)->write(buf).error);
}

// The received WAV (S16 or S32 = L24 << 8) holds TestSignal frames [0, frames) of `f`
// contiguously, after leading silence. Returns the number of exact frames in order.
std::uint64_t exact_frames(const fs::path& p, wire::PcmFormat f, std::uint64_t frames) {
    auto r = audio::WavFileReader::open(p);
    EXPECT_TRUE(r) << r.error();
    if (!r) return 0;
    const audio::SampleSpec s32{wire::PcmFormat::S32, (*r)->rate(), 2};
    auto bytes = (*r)->read_all(s32);
    std::vector<std::int32_t> got(bytes.size() / 4);
    std::memcpy(got.data(), bytes.data(), got.size() * 4);
    std::size_t first = 0;
    while (first * 2 + 1 < got.size() && got[first * 2] == 0 && got[first * 2 + 1] == 0) ++first;
    audio::TestSignal sig(f, 2);
    const audio::SampleSpec ref_spec{f, (*r)->rate(), 2};
    std::vector<std::uint8_t> ref(ref_spec.frame_bytes());
    std::uint64_t exact = 0;
    for (std::uint64_t k = 0; k < frames && (first + k) * 2 + 1 < got.size(); ++k) {
        sig.fill(ref, k);
        std::int32_t want[2];
        for (int c = 0; c < 2; ++c) {
            if (f == wire::PcmFormat::S16) {
                std::int16_t v;
                std::memcpy(&v, &ref[c * 2], 2);
                want[c] = std::int32_t{v} * 65536;
            } else {
                std::int32_t v;
                std::memcpy(&v, &ref[c * 4], 4);
                want[c] = static_cast<std::int32_t>(static_cast<std::uint32_t>(v) << 8);
            }
        }
        if (got[(first + k) * 2] != want[0] || got[(first + k) * 2 + 1] != want[1]) break;
        ++exact;
    }
    return exact;
}

nlohmann::json last_stats(const fs::path& p) {
    std::ifstream in(p);
    std::string line, last;
    while (std::getline(in, line))
        if (!line.empty()) last = line;
    EXPECT_FALSE(last.empty()) << "no statistics in " << p;
    return last.empty() ? nlohmann::json::object() : nlohmann::json::parse(last);
}

// One request on a Unix stream socket; the reply up to the peer's close (at most 64 KiB, 5 s).
std::string ask(const fs::path& path, const std::string& request) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return "connect failed";
    }
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)!write(fd, request.data(), request.size());
    std::string reply;
    char buf[4096];
    for (ssize_t n; reply.size() < 65536 && (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, static_cast<std::size_t>(n));
    close(fd);
    return reply;
}

struct Receiver {
    pid_t pid = 0;
    fs::path wav, stats;
};
// vsnd-rtp-recv into a WAV, bit-exact settings (no resampling), stopping 1 s after the stream ends.
Receiver start_receiver(const Dir& d, const std::string& source, const std::string& extra = "") {
    Receiver r{0, d.path / "rx.wav", d.path / "rx.jsonl"};
    r.pid = spawn(std::string("timeout -k 2 30 ") + VSND_RTP_RECV + " " + source + " --wav " + r.wav.string() +
                  " --stats " + r.stats.string() + " --drift off --until-idle 1 --duration 25 " + extra);
    std::this_thread::sleep_for(300ms); // bound and listening
    return r;
}

void expect_clean(const nlohmann::json& j) {
    EXPECT_EQ(j.value("lost", -1), 0) << j.dump();
    EXPECT_EQ(j.value("late", -1), 0) << j.dump();
    EXPECT_EQ(j.value("resyncs", -1), 0) << j.dump();
    EXPECT_EQ(j.value("concealed_frames", -1), 0) << j.dump();
    EXPECT_LE(j.value("underruns", 99), 1) << "one underrun when the stream ends: " << j.dump();
    EXPECT_EQ(j.value("sink_xruns", -1), 0) << j.dump();
}

// GStreamer sends 3 s of the TestSignal from a WAV (filesrc ! wavparse ! rtpL16pay/rtpL24pay);
// the receiver's WAV must hold it bit-exact.
void gstreamer_case(wire::PcmFormat f, const std::string& port, const std::string& receiver_options,
                    const std::string& payloader) {
    if (!have("gst-launch-1.0")) GTEST_FAIL() << "gst-launch-1.0 missing (tests/setup.sh installs it)";
    Dir d;
    const std::uint64_t frames = 3 * 48000;
    write_test_wav(d.path / "in.wav", f, 48000, frames);
    auto r = start_receiver(d, "127.0.0.1 " + port, receiver_options);
    ASSERT_EQ(run("timeout -k 2 20 gst-launch-1.0 -q filesrc location=" + (d.path / "in.wav").string() +
                  " ! wavparse ! audioconvert ! audio/x-raw,format=" + (f == wire::PcmFormat::S16 ? "S16BE" : "S24BE") +
                  ",rate=48000,channels=2 ! " + payloader + " ! udpsink host=127.0.0.1 port=" + port + " sync=true"),
              0);
    ASSERT_EQ(wait_for(r.pid), 0);
    EXPECT_EQ(exact_frames(r.wav, f, frames), frames);
    expect_clean(last_stats(r.stats));
}

TEST(Interop, GStreamerL16Pt96FourMsPacketsWithForcedWraps) {
    gstreamer_case(wire::PcmFormat::S16, "15004", "--latency 40",
                   "rtpL16pay pt=96 min-ptime=4000000 max-ptime=4000000 seqnum-offset=65500 timestamp-offset=4294960000");
}

TEST(Interop, GStreamerL24Pt97OneMsPackets) {
    gstreamer_case(wire::PcmFormat::S24, "15006", "--format L24 --pt 97 --latency 30",
                   "rtpL24pay pt=97 min-ptime=1000000 max-ptime=1000000");
}

TEST(Interop, FfmpegStaticPt10WithItsSdpAndVariablePackets) {
    if (!have("ffmpeg")) GTEST_FAIL() << "ffmpeg missing (tests/setup.sh installs it)";
    Dir d;
    const std::uint64_t frames = 3 * 44100;
    write_test_wav(d.path / "in.wav", wire::PcmFormat::S16, 44100, frames);
    const std::string send = "timeout -k 2 20 ffmpeg -nostdin -hide_banner -loglevel error -re -i " + (d.path / "in.wav").string() +
                             " -c:a pcm_s16be -f rtp -sdp_file " + (d.path / "ff.sdp").string() + " rtp://127.0.0.1:15010";
    // ffmpeg writes the SDP as it starts: a first short run writes it, the receiver reads it.
    ASSERT_EQ(run(send + " -t 0.05 >/dev/null 2>&1 || true"), 0);
    ASSERT_TRUE(fs::exists(d.path / "ff.sdp"));
    auto r = start_receiver(d, (d.path / "ff.sdp").string(), "--latency 60");
    ASSERT_EQ(run(send), 0);
    ASSERT_EQ(wait_for(r.pid), 0);
    EXPECT_EQ(exact_frames(r.wav, wire::PcmFormat::S16, frames), frames);
    expect_clean(last_stats(r.stats));
}

TEST(Interop, PipeWireRtpSinkIsReceivedWithoutLossOrResync) {
    if (!have("pipewire") || !have("pw-cat")) GTEST_FAIL() << "PipeWire missing (tests/setup.sh installs it from bookworm-backports)";
    Dir d;
    const std::uint64_t frames = 5 * 48000;
    write_test_wav(d.path / "in.wav", wire::PcmFormat::S16, 48000, frames);
    Receiver r{0, d.path / "rx.wav", d.path / "rx.jsonl"};
    r.pid = spawn(std::string("timeout -k 2 40 ") + VSND_RTP_RECV + " 127.0.0.1 15060 --format L24 --pt 127 --wav " +
                  r.wav.string() + " --stats " + r.stats.string() + " --stats-interval 0.5 --latency 40 --until-idle 1 --duration 30");
    std::this_thread::sleep_for(300ms);
    ASSERT_EQ(run(std::string(VSND_PIPEWIRE_SINK) + " 15060 " + (d.path / "in.wav").string() + " 5"), 0);
    ASSERT_EQ(wait_for(r.pid), 0);
    const auto j = last_stats(r.stats);
    // PipeWire's own clock paces it: a dummy driver on the system clock, its quantum fixed (see the
    // script). Its stream is not a steady clock even so: a packet capture here showed it falling
    // 5-19 ms behind real time within 5 s, in steps it never makes up (its timer wakes late and
    // the graph does not catch up). A drift loop must not chase a step at once, so the test does
    // not ask for the target latency: it asks that the buffer absorbs the steps, with nothing
    // lost, late or resynchronised, and no underrun but the one at the end. On a loaded machine
    // PipeWire has stalled for longer than the whole buffer (CI, once): the receiver's arrival
    // spread shows it, and then an underrun and a resynchronisation are the right answer; only
    // loss (none on loopback) and the received count are asked.
    EXPECT_GT(j.value("received", 0), 4500) << j.dump();
    EXPECT_EQ(j.value("lost", -1), 0) << j.dump();
    const double spread = j.value("arrival_spread_ms", -1.0);
    ASSERT_GE(spread, 0.0) << j.dump();
    constexpr double kAbsorbable = 30.0; // of the 40 ms target: the rest is packet and period
    if (spread >= kAbsorbable) {
        std::printf("PipeWire stalled: its packets came %.1f ms behind their timestamps, beyond the 40 ms buffer; "
                    "underruns %lld, resyncs %lld (not judged)\n",
                    spread, j.value("underruns", -1LL), j.value("resyncs", -1LL));
        return;
    }
    std::printf("PipeWire: arrival spread %.1f ms\n", spread);
    EXPECT_EQ(j.value("late", -1), 0) << j.dump();
    EXPECT_EQ(j.value("resyncs", -1), 0) << j.dump();
    EXPECT_LE(j.value("underruns", 99), 1) << j.dump();
    std::vector<double> lat;
    std::ifstream in(r.stats);
    for (std::string s; std::getline(in, s);) {
        auto x = nlohmann::json::parse(s, nullptr, false);
        if (x.is_object() && x.value("state", "") == "playing" && x["latency_ms"].is_number()) lat.push_back(x["latency_ms"]);
    }
    ASSERT_GT(lat.size(), 6u);
    const auto [lo, hi] = std::minmax_element(lat.begin() + 2, lat.end());
    std::printf("PipeWire: latency from 1 s on %.1f .. %.1f ms (target 40)\n", *lo, *hi);
    EXPECT_GT(*lo, 40.0 - 25.0 * kSlack);
    EXPECT_LT(*hi, 40.0 + 25.0 * kSlack);
    std::printf("PipeWire's clock against this machine's, as the receiver's loop found it: %+.0f ppm\n", j.value("drift_ppm", 0.0));
    // The audio arrived: PipeWire converted S16 -> F32 -> S24; count the frames that are the
    // TestSignal exactly (a conversion that is exact keeps them all).
    std::printf("PipeWire: %llu of %llu frames bit-exact after S16 -> F32 -> S24\n",
                static_cast<unsigned long long>(exact_frames(r.wav, wire::PcmFormat::S16, frames)),
                static_cast<unsigned long long>(frames));
}

TEST(Interop, VsndSenderThroughTheImpairmentRelayKeepsTheTimeline) {
    Dir d;
    auto r = start_receiver(d, "127.0.0.1 15020", "--latency 40 --conceal silence");
    const pid_t relay = spawn(std::string("exec ") + VSND_RTP_IMPAIR + " --listen 127.0.0.1:15021 --to 127.0.0.1:15020 --loss 0.01 "
                              "--dup 0.01 --reorder 0.02 --reorder-ms 3 --jitter-ms 5 --seed 3 --duration 6 2>" +
                              (d.path / "relay.txt").string());
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(run(std::string(VSND_RTP_SEND) + " 127.0.0.1 15021 --signal test --duration 3 2>/dev/null"), 0);
    ASSERT_EQ(wait_for(r.pid), 0);
    kill(relay, SIGTERM);
    wait_for(relay);
    const auto j = last_stats(r.stats);
    // The relay's figures against the receiver's.
    std::ifstream in(d.path / "relay.txt");
    std::string relay_line((std::istreambuf_iterator<char>(in)), {});
    unsigned long long rin = 0, rout = 0, lost = 0, dup = 0, reord = 0, over = 0;
    ASSERT_EQ(std::sscanf(relay_line.c_str(), "vsnd-rtp-impair: in %llu out %llu lost %llu duplicated %llu reordered %llu overflow %llu",
                          &rin, &rout, &lost, &dup, &reord, &over), 6) << relay_line;
    EXPECT_EQ(j.value("lost", 0ull), lost) << j.dump();
    EXPECT_EQ(j.value("duplicate", 0ull), dup) << j.dump();
    EXPECT_EQ(j.value("concealed_frames", 0ull), lost * 48) << j.dump();
    EXPECT_EQ(j.value("late", -1), 0) << j.dump();
    EXPECT_GT(j.value("reordered", 0), 0) << j.dump();
}

// vsnd-rtp-recv as a virtio-snd driver of vsnd-host (over vhost-user, as QEMU would connect):
// the stream reaches vsnd-host's WAV bit-exact, and the latency the receiver reports is the one
// the WAV's timing sidecar shows (sender's first packet to its first frame being played).
TEST(Interop, IntoVsndHostOverVhostUserBitExactWithTheTrueLatency) {
    Dir d;
    const auto sock = d.path / "vsnd.sock";
    const pid_t host = spawn(std::string("exec timeout -k 2 40 ") + VSND_HOST + " --socket " + sock.string() + " --backend wav --wav-dir " +
                             (d.path / "host").string() + " --log-level warn");
    for (int i = 0; i < 100 && !fs::exists(sock); ++i) std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(fs::exists(sock));
    Receiver r{0, d.path / "rx.wav", d.path / "rx.jsonl"};
    r.pid = spawn(std::string("timeout -k 2 30 ") + VSND_RTP_RECV + " 127.0.0.1 15030 --vhost-user " + sock.string() +
                  " --stats " + r.stats.string() + " --stats-interval 0.1 --drift off --until-idle 1 --duration 25 --latency 40");
    std::this_thread::sleep_for(500ms);
    const auto sent = d.path / "send.txt";
    ASSERT_EQ(run(std::string(VSND_RTP_SEND) + " 127.0.0.1 15030 --signal test --duration 3 2>" + sent.string()), 0);
    ASSERT_EQ(wait_for(r.pid), 0);
    kill(host, SIGTERM);
    wait_for(host);
    const std::uint64_t frames = 3 * 48000;
    EXPECT_EQ(exact_frames(d.path / "host" / "stream-0.wav", wire::PcmFormat::S16, frames), frames);
    const auto j = last_stats(r.stats);
    expect_clean(j);
    // The truth: when the sidecar says the WAV frame holding content frame 0 was played, minus
    // when the sender sent it.
    std::ifstream st(sent);
    std::string line((std::istreambuf_iterator<char>(st)), {});
    const auto at = line.find("first at ");
    ASSERT_NE(at, std::string::npos) << line;
    const double first_sent = std::stod(line.substr(at + 9));
    auto wav = audio::WavFileReader::open(d.path / "host" / "stream-0.wav");
    ASSERT_TRUE(wav);
    auto bytes = (*wav)->read_all(audio::SampleSpec{wire::PcmFormat::S16, 48000, 2});
    std::size_t first = 0;
    while ((first + 1) * 4 <= bytes.size() && std::all_of(&bytes[first * 4], &bytes[first * 4 + 4], [](auto b) { return b == 0; })) ++first;
    // The sidecar's run that holds that frame: the card may have started (and run dry) on the
    // receiver's silence before the first packet's frames, which then begin a later run.
    std::ifstream side(d.path / "host" / "stream-0.timing.csv");
    std::string l;
    unsigned long long run_frame = 0, f = 0;
    long long run_when = 0, w = 0;
    unsigned runs = 0;
    while (std::getline(side, l))
        if (!l.empty() && l[0] != '#' && std::sscanf(l.c_str(), "%llu,%lld", &f, &w) == 2 && f <= first) {
            run_frame = f;
            run_when = w;
            ++runs;
        }
    ASSERT_GT(run_when, 0) << "no run in the sidecar";
    if (runs > 1) std::printf("the sidecar has %u runs up to the first frame of content\n", runs);
    const double heard = static_cast<double>(run_when) + (static_cast<double>(first) - static_cast<double>(run_frame)) * 1e9 / 48000;
    const double true_ms = (heard - first_sent) / 1e6;
    // The receiver's figure while playing steadily (statistics every 100 ms; the first second
    // and the stream's end left out).
    std::vector<double> measured;
    std::ifstream in(r.stats);
    double first_playing = -1;
    for (std::string s; std::getline(in, s);) {
        auto x = nlohmann::json::parse(s, nullptr, false);
        if (!x.is_object() || x.value("state", "") != "playing" || !x["latency_ms"].is_number()) continue;
        const double t = x["t"];
        if (first_playing < 0) first_playing = t;
        if (t > first_playing + 1 && t < first_playing + 2.5) measured.push_back(x["latency_ms"]);
    }
    ASSERT_FALSE(measured.empty());
    std::sort(measured.begin(), measured.end());
    const double reported = measured[measured.size() / 2];
    // Measured here, idle machine: truth 39.77 ms, the receiver's figure 39.94-39.99 ms; with a
    // second real-time test beside it: truth 38.3-39.8 ms, figure 1.35-1.4 ms above it (the
    // completions reach a loaded receiver late, and it takes them as late playback).
    EXPECT_NEAR(true_ms, 40.0, 2.0 * kSlack);
    EXPECT_NEAR(reported, true_ms, 2.0 * kSlack) << "receiver's figure against vsnd-host's record";
    std::printf("true end-to-end %.3f ms, receiver reports %.3f ms (median of %zu)\n", true_ms, reported, measured.size());
}

// Runs a shell script in a network namespace of its own (unshare: no named namespace, no
// mounts, so it also works in a chroot), which ends with the script: multicast never leaves it.
int in_own_network(const Dir& d, const std::string& script) {
    std::ofstream(d.path / "netns.sh") << "set -e\nip link set lo up\n" << script;
    return run("timeout -k 2 60 unshare --net --fork sh " + (d.path / "netns.sh").string());
}

TEST(Interop, MulticastIpv4TwoReceiversOnOneGroupAndSap) {
    Dir d;
    auto recv = [&](const std::string& tag, const std::string& source) {
        return std::string(VSND_RTP_RECV) + " " + source + " --interface lo --wav " + (d.path / (tag + ".wav")).string() +
               " --stats " + (d.path / (tag + ".jsonl")).string() + " --drift off --until-idle 1 --duration 25 --latency 80 2>/dev/null";
    };
    const std::string send = std::string(VSND_RTP_SEND) + " --interface lo --signal test --sap --sap-address 239.255.255.255:9875 "
                                                          "--sap-interval 0.5 ";
    // Two receivers on one group; then a session found by SAP: listed, and joined by name.
    const std::string script =
        "ip link set lo multicast on\nip route add 224.0.0.0/4 dev lo\n" + recv("a", "239.255.12.42 15040") + " &\n" +
        recv("b", "239.255.12.42 15040") + " &\nsleep 0.4\n" + send + "239.255.12.42 15040 --duration 2 --name 'vsnd mc test' 2>/dev/null\nwait\n" +
        send + "239.255.12.43 15042 --duration 4 --name 'vsnd sap test' 2>/dev/null &\n" + VSND_RTP_RECV +
        " --sap --sap-wait 1.5 --interface lo > " + (d.path / "sap.txt").string() + "\n" + recv("c", "--sap 'vsnd sap test' --sap-wait 3") +
        "\nwait\n";
    ASSERT_EQ(in_own_network(d, script), 0) << "needs root, iproute2 and unshare";
    for (const char* tag : {"a", "b"}) {
        EXPECT_EQ(exact_frames(d.path / (std::string(tag) + ".wav"), wire::PcmFormat::S16, 2 * 48000), 2u * 48000) << tag;
        expect_clean(last_stats(d.path / (std::string(tag) + ".jsonl")));
    }
    std::ifstream in(d.path / "sap.txt");
    std::string listed((std::istreambuf_iterator<char>(in)), {});
    EXPECT_NE(listed.find("vsnd sap test\t239.255.12.43:15042\tL16/48000/2 pt 96"), std::string::npos) << listed;
    const auto j = last_stats(d.path / "c.jsonl");
    EXPECT_GT(j.value("received", 0), 1000) << j.dump();
    EXPECT_EQ(j.value("lost", -1), 0) << j.dump();
}

TEST(Interop, MulticastIpv6OverVethAndARejoinAfterSilence) {
    // A veth pair inside the namespace: the sender sends on one end, the receiver joins on the
    // other, so the group crosses a link (IPv6 multicast does not loop back on lo).
    Dir d;
    const std::string script =
        "ip link add va type veth peer name vb\nip -6 addr add fd42::1/64 dev va nodad\nip -6 addr add fd42::2/64 dev vb nodad\n"
        "ip link set va up\nip link set vb up\nsleep 1\n" +
        std::string(VSND_RTP_RECV) + " ff15::1:42 15044 --interface vb --wav " + (d.path / "rx.wav").string() + " --stats " +
        (d.path / "rx.jsonl").string() + " --drift off --until-idle 2 --duration 25 --rejoin-after 0.5 --conceal silence --latency 80 2>/dev/null &\n"
        "sleep 0.6\n" +
        // 1 s of audio, 1.5 s of silence (the group falls silent: the receiver rejoins), 1 s more.
        VSND_RTP_SEND + " ff15::1:42 15044 --interface va --signal test --duration 3.5 --pause 1:1.5 2>/dev/null\nwait\n";
    ASSERT_EQ(in_own_network(d, script), 0) << "needs root, iproute2 and unshare";
    const auto j = last_stats(d.path / "rx.jsonl");
    EXPECT_EQ(j.value("received", 0), 2000) << j.dump();
    EXPECT_EQ(j.value("lost", -1), 0) << j.dump();
    EXPECT_GE(j.value("rejoins", 0), 1) << j.dump();
    EXPECT_EQ(j.value("resyncs", -1), 0) << "the pause is on the timeline: " << j.dump();
    EXPECT_EQ(exact_frames(d.path / "rx.wav", wire::PcmFormat::S16, 48000), 48000u);
}

TEST(Interop, ControlSocketAndDump) {
    Dir d;
    const auto ctl = d.path / "ctl";
    Receiver r{0, d.path / "rx.wav", d.path / "rx.jsonl"};
    r.pid = spawn(std::string("exec timeout -k 2 30 ") + VSND_RTP_RECV + " 127.0.0.1 15050 --sink null --control " + ctl.string() +
                  " --dump " + (d.path / "dump.wav").string() + " --dump-seconds 1 --drift off --stats " + r.stats.string() +
                  " --stats-format csv");
    std::this_thread::sleep_for(400ms);
    ASSERT_EQ(run(std::string(VSND_RTP_SEND) + " 127.0.0.1 15050 --signal test --duration 1.5 2>/dev/null"), 0);
    // "stats" answers one JSON line; "stop" ends the receiver, which writes its dump.
    const std::string line = ask(ctl, "stats\n");
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_EQ(j.value("received", 0), 1500);
    EXPECT_EQ(ask(ctl, "bogus\n"), "unknown command (stats, stop)\n");
    EXPECT_EQ(ask(ctl, "stop\n"), "stopping\n");
    EXPECT_EQ(wait_for(r.pid), 0);
    // The dump holds the last second played: the end of the signal, then silence.
    auto dump = audio::WavFileReader::open(d.path / "dump.wav");
    ASSERT_TRUE(dump) << dump.error();
    EXPECT_EQ((*dump)->frames(), 48000u);
    std::ifstream csv(r.stats);
    std::string header;
    std::getline(csv, header);
    EXPECT_EQ(header.rfind("t,state,latency_ms", 0), 0u) << header;
}

TEST(Interop, BadInputIsOneClearLine) {
    Dir d;
    auto out = d.path / "err.txt";
    auto line_count = [&] {
        std::ifstream in(out);
        std::string all((std::istreambuf_iterator<char>(in)), {});
        return std::count(all.begin(), all.end(), '\n');
    };
    EXPECT_NE(run(std::string(VSND_RTP_RECV) + " " + (d.path / "missing.sdp").string() + " 2>" + out.string()), 0);
    EXPECT_EQ(line_count(), 1);
    std::ofstream(d.path / "bad.sdp") << "v=0\nm=audio 5004 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n";
    EXPECT_NE(run(std::string(VSND_RTP_RECV) + " " + (d.path / "bad.sdp").string() + " 2>" + out.string()), 0);
    EXPECT_EQ(line_count(), 1);
    EXPECT_NE(run(std::string(VSND_RTP_RECV) + " 5004 --latency 3 --period-ms 5 2>" + out.string()), 0);
    EXPECT_EQ(line_count(), 1);
    EXPECT_NE(run(std::string(VSND_RTP_SEND) + " 127.0.0.1 5004 --ptime 0 2>" + out.string()), 0);
    EXPECT_EQ(line_count(), 1);
    EXPECT_NE(run(std::string(VSND_RTP_SEND) + " nowhere 5004 2>" + out.string()), 0);
    EXPECT_EQ(line_count(), 1);
    EXPECT_NE(run(std::string(VSND_RTP_IMPAIR) + " --listen 1 --to 2 2>" + out.string()), 0);
    EXPECT_EQ(line_count(), 1);
    for (const char* tool : {VSND_RTP_RECV, VSND_RTP_SEND, VSND_RTP_IMPAIR})
        EXPECT_EQ(run(std::string(tool) + " --help >/dev/null"), 0) << tool;
}

} // namespace
} // namespace vsnd::test
