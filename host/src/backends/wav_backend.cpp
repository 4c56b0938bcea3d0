#include "vsnd/backends/wav_backend.hpp"

#include <fmt/format.h>
#include <sndfile.h>

#include <cstring>
#include <vector>

namespace vsnd::backends {
namespace {

using wire::PcmFormat;

std::optional<int> wav_subtype(PcmFormat f) {
    switch (f) {
    case PcmFormat::U8: return SF_FORMAT_PCM_U8;
    case PcmFormat::S16: return SF_FORMAT_PCM_16;
    case PcmFormat::S24: return SF_FORMAT_PCM_24;
    case PcmFormat::S32: return SF_FORMAT_PCM_32;
    case PcmFormat::Float: return SF_FORMAT_FLOAT;
    default: return std::nullopt;
    }
}

// Samples go through libsndfile's int (left-aligned 32-bit) or float interface, which is exact
// for every format above: S24 in its 32-bit container becomes value << 8.
class WavSink final : public FrameSink {
public:
    WavSink(SNDFILE* f, const device::StreamFormat& fmt) : file_(f), fmt_(fmt) {}
    ~WavSink() override { sf_close(file_); }

    void played(std::span<const std::uint8_t> bytes) override {
        const std::size_t samples = bytes.size() / wire::format_info(fmt_.format)->physical_bytes;
        const sf_count_t frames = static_cast<sf_count_t>(samples / fmt_.channels);
        if (fmt_.format == PcmFormat::Float) {
            floats_.resize(samples);
            std::memcpy(floats_.data(), bytes.data(), bytes.size());
            sf_writef_float(file_, floats_.data(), frames);
            return;
        }
        ints_.resize(samples);
        for (std::size_t i = 0; i < samples; ++i) ints_[i] = to_int(bytes.data(), i);
        sf_writef_int(file_, ints_.data(), frames);
    }

private:
    std::int32_t to_int(const std::uint8_t* p, std::size_t i) const {
        switch (fmt_.format) {
        case PcmFormat::U8: return static_cast<std::int32_t>((static_cast<std::uint32_t>(p[i]) ^ 0x80u) << 24);
        case PcmFormat::S16: { std::int16_t v; std::memcpy(&v, p + 2 * i, 2); return std::int32_t{v} * 65536; }
        case PcmFormat::S24: { std::int32_t v; std::memcpy(&v, p + 4 * i, 4); return static_cast<std::int32_t>(static_cast<std::uint32_t>(v) << 8); }
        default: { std::int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
        }
    }

    SNDFILE* file_;
    device::StreamFormat fmt_;
    std::vector<std::int32_t> ints_;
    std::vector<float> floats_;
};

class WavSource final : public FrameSource {
public:
    WavSource(SNDFILE* f, int file_channels, const device::StreamFormat& fmt)
        : file_(f), file_channels_(file_channels), fmt_(fmt) {}
    ~WavSource() override { sf_close(file_); }

    void capture(std::span<std::uint8_t> out) override {
        const std::size_t sample_bytes = wire::format_info(fmt_.format)->physical_bytes;
        const std::size_t frames = out.size() / (sample_bytes * fmt_.channels);
        const bool as_float = fmt_.format == PcmFormat::Float;
        ints_.assign(frames * file_channels_, 0);
        floats_.assign(frames * file_channels_, 0.f);
        // Past the end of the file: silence.
        if (as_float) sf_readf_float(file_, floats_.data(), static_cast<sf_count_t>(frames));
        else sf_readf_int(file_, ints_.data(), static_cast<sf_count_t>(frames));
        for (std::size_t f = 0; f < frames; ++f)
            for (unsigned c = 0; c < fmt_.channels; ++c) {
                const std::size_t src = f * file_channels_ + c % file_channels_;
                std::uint8_t* dst = out.data() + (f * fmt_.channels + c) * sample_bytes;
                if (as_float) { std::memcpy(dst, &floats_[src], 4); continue; }
                const std::int32_t v = ints_[src];
                switch (fmt_.format) {
                case PcmFormat::U8: *dst = static_cast<std::uint8_t>((static_cast<std::uint32_t>(v) >> 24) ^ 0x80u); break;
                case PcmFormat::S16: { const auto s = static_cast<std::int16_t>(v >> 16); std::memcpy(dst, &s, 2); break; }
                case PcmFormat::S24: { const std::int32_t s = v >> 8; std::memcpy(dst, &s, 4); break; }
                default: std::memcpy(dst, &v, 4);
                }
            }
    }

private:
    SNDFILE* file_;
    int file_channels_;
    device::StreamFormat fmt_;
    std::vector<std::int32_t> ints_;
    std::vector<float> floats_;
};

} // namespace

WavBackend::WavBackend(const Clock& clock, std::filesystem::path output_dir, std::filesystem::path capture_file,
                       PacedTiming timing)
    : clock_(clock), output_dir_(std::move(output_dir)), capture_file_(std::move(capture_file)), timing_(timing) {}

std::filesystem::path WavBackend::output_path(std::uint32_t stream_id) const {
    return output_dir_ / fmt::format("stream-{}.wav", stream_id);
}

Expected<std::unique_ptr<device::BackendStream>, std::string> WavBackend::open(std::uint32_t stream_id,
                                                                               const device::StreamFormat& fmt) {
    auto subtype = wav_subtype(fmt.format);
    if (!subtype) return Unexpected{fmt::format("WAV cannot hold {} samples", wire::name(fmt.format))};

    if (fmt.direction == wire::Direction::Output) {
        const auto path = output_path(stream_id);
        SF_INFO info{};
        info.samplerate = static_cast<int>(fmt.rate);
        info.channels = fmt.channels;
        info.format = SF_FORMAT_WAV | *subtype;
        // Append to the stream's file while the format is unchanged; start a new one otherwise.
        SNDFILE* f = nullptr;
        if (std::filesystem::exists(path)) {
            SF_INFO old{};
            f = sf_open(path.c_str(), SFM_RDWR, &old);
            if (f && (old.samplerate != info.samplerate || old.channels != info.channels || old.format != info.format)) {
                sf_close(f);
                f = nullptr;
            } else if (f) {
                sf_seek(f, 0, SEEK_END);
            }
        }
        if (!f) f = sf_open(path.c_str(), SFM_WRITE, &info);
        if (!f) return Unexpected{fmt::format("{}: {}", path.string(), sf_strerror(nullptr))};
        return std::unique_ptr<device::BackendStream>(
            std::make_unique<PacedStream>(clock_, fmt, timing_, std::make_unique<WavSink>(f, fmt), nullptr));
    }

    if (capture_file_.empty()) return Unexpected{std::string("no capture file configured")};
    SF_INFO info{};
    SNDFILE* f = sf_open(capture_file_.c_str(), SFM_READ, &info);
    if (!f) return Unexpected{fmt::format("{}: {}", capture_file_.string(), sf_strerror(nullptr))};
    return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(
        clock_, fmt, timing_, nullptr, std::make_unique<WavSource>(f, info.channels, fmt)));
}

} // namespace vsnd::backends
