// vsnd-wav-tool: makes and compares WAV files for tests.
//   gen FILE --format S16 --rate 48000 --channels 2 --frames N   the TestSignal
//   compare A B [--prefix]   sample-exact: same rate, channels and samples (B may be a prefix of A
//                            with --prefix); compares values, so a 24-bit sample matches whether
//                            stored packed or in a 32-bit container
#include "vsnd/audio/test_signal.hpp"
#include "vsnd/audio/wav_file.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sndfile.h>

#include <cmath>
#include <vector>

using namespace vsnd;

namespace {

struct Samples {
    int rate = 0, channels = 0;
    bool is_float = false;
    std::vector<std::int32_t> ints;
    std::vector<float> floats;
    std::size_t frames() const { return (is_float ? floats.size() : ints.size()) / static_cast<std::size_t>(channels); }
};

std::optional<Samples> load(const std::string& path) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) {
        fmt::print(stderr, "vsnd-wav-tool: {}: {}\n", path, sf_strerror(nullptr));
        return std::nullopt;
    }
    Samples s;
    s.rate = info.samplerate;
    s.channels = info.channels;
    const int sub = info.format & SF_FORMAT_SUBMASK;
    s.is_float = sub == SF_FORMAT_FLOAT || sub == SF_FORMAT_DOUBLE;
    const auto n = static_cast<std::size_t>(info.frames) * static_cast<std::size_t>(info.channels);
    if (s.is_float) {
        s.floats.resize(n);
        s.floats.resize(static_cast<std::size_t>(sf_readf_float(f, s.floats.data(), info.frames)) * info.channels);
    } else {
        s.ints.resize(n);
        s.ints.resize(static_cast<std::size_t>(sf_readf_int(f, s.ints.data(), info.frames)) * info.channels);
    }
    sf_close(f);
    return s;
}

int compare(const std::string& a_path, const std::string& b_path, bool prefix) {
    auto a = load(a_path), b = load(b_path);
    if (!a || !b) return 2;
    if (a->rate != b->rate || a->channels != b->channels || a->is_float != b->is_float) {
        fmt::print("differ: {} Hz {} ch {} vs {} Hz {} ch {}\n", a->rate, a->channels, a->is_float ? "float" : "int",
                   b->rate, b->channels, b->is_float ? "float" : "int");
        return 1;
    }
    const std::size_t n = std::min(a->frames(), b->frames());
    const auto ch = static_cast<std::size_t>(a->channels);
    for (std::size_t i = 0; i < n * ch; ++i) {
        const bool same = a->is_float ? std::memcmp(&a->floats[i], &b->floats[i], 4) == 0 : a->ints[i] == b->ints[i];
        if (!same) {
            fmt::print("differ: first at frame {} (of {} / {})\n", i / ch, a->frames(), b->frames());
            return 1;
        }
    }
    if (a->frames() != b->frames() && !(prefix && b->frames() <= a->frames())) {
        fmt::print("differ: {} frames vs {} frames (equal over the first {})\n", a->frames(), b->frames(), n);
        return 1;
    }
    fmt::print("equal: {} frames{}\n", n, a->frames() != b->frames() ? fmt::format(" (prefix of {})", a->frames()) : "");
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"vsnd test WAV files"};
    app.require_subcommand(1);
    auto* gen = app.add_subcommand("gen", "write the TestSignal");
    std::string out, format = "S16";
    std::uint32_t rate = 48000, frames = 48000;
    unsigned channels = 2;
    gen->add_option("file", out)->required();
    gen->add_option("--format", format, "S16, S24, S32 or FLOAT");
    gen->add_option("--rate", rate);
    gen->add_option("--channels", channels)->check(CLI::Range(1, 8));
    gen->add_option("--frames", frames);
    auto* cmp = app.add_subcommand("compare", "compare two WAVs sample by sample");
    std::string a, b;
    bool prefix = false;
    cmp->add_option("a", a)->required();
    cmp->add_option("b", b)->required();
    cmp->add_flag("--prefix", prefix, "B may be a prefix of A");
    CLI11_PARSE(app, argc, argv);

    if (*cmp) return compare(a, b, prefix);
    const auto code = audio::parse_format(format);
    if (!code || !audio::wav_can_hold(*code)) {
        fmt::print(stderr, "vsnd-wav-tool: unknown format {}\n", format);
        return 2;
    }
    const audio::SampleSpec sf{*code, rate, static_cast<std::uint8_t>(channels)};
    auto w = audio::WavFileWriter::open(out, sf, false);
    if (!w) {
        fmt::print(stderr, "vsnd-wav-tool: {}\n", w.error());
        return 2;
    }
    audio::TestSignal sig(sf.format, channels);
    std::vector<std::uint8_t> buf(std::size_t{frames} * sf.frame_bytes());
    sig.fill(buf, 0);
    (*w)->write(buf);
    return 0;
}
