#include "vsnd/audio/wav_file.hpp"

#include <fmt/format.h>
#include <sndfile.h>

#include <cerrno>
#include <cstring>

namespace vsnd::audio {
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

// libsndfile's int interface is left-aligned 32-bit: S24 in its container becomes value << 8.
std::int32_t to_int(PcmFormat f, const std::uint8_t* p) {
    switch (f) {
    case PcmFormat::U8: return static_cast<std::int32_t>((static_cast<std::uint32_t>(*p) ^ 0x80u) << 24);
    case PcmFormat::S16: { std::int16_t v; std::memcpy(&v, p, 2); return std::int32_t{v} * 65536; }
    case PcmFormat::S24: { std::uint32_t v; std::memcpy(&v, p, 4); return static_cast<std::int32_t>(v << 8); }
    default: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
    }
}

void from_int(PcmFormat f, std::int32_t v, std::uint8_t* p) {
    switch (f) {
    case PcmFormat::U8: *p = static_cast<std::uint8_t>((static_cast<std::uint32_t>(v) >> 24) ^ 0x80u); break;
    case PcmFormat::S16: { const auto s = static_cast<std::int16_t>(v >> 16); std::memcpy(p, &s, 2); break; }
    case PcmFormat::S24: { const std::int32_t s = v >> 8; std::memcpy(p, &s, 4); break; }
    default: std::memcpy(p, &v, 4);
    }
}

} // namespace

bool wav_can_hold(PcmFormat f) { return wav_subtype(f).has_value(); }

bool WavFileWriter::holds_format(const std::filesystem::path& path, const SampleSpec& fmt) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) return false;
    sf_close(f);
    const auto subtype = wav_subtype(fmt.format);
    return subtype && info.samplerate == static_cast<int>(fmt.rate) && info.channels == fmt.channels &&
           info.format == (SF_FORMAT_WAV | *subtype);
}

Expected<std::unique_ptr<WavFileWriter>, std::string> WavFileWriter::open(const std::filesystem::path& path,
                                                                          const SampleSpec& fmt, bool append) {
    auto subtype = wav_subtype(fmt.format);
    if (!subtype) return Unexpected{fmt::format("WAV cannot hold {} samples", wire::name(fmt.format))};
    SF_INFO info{};
    info.samplerate = static_cast<int>(fmt.rate);
    info.channels = fmt.channels;
    info.format = SF_FORMAT_WAV | *subtype;
    SNDFILE* f = nullptr;
    sf_count_t frames = 0;
    if (append && std::filesystem::exists(path)) {
        SF_INFO old{};
        f = sf_open(path.c_str(), SFM_RDWR, &old);
        if (f && (old.samplerate != info.samplerate || old.channels != info.channels || old.format != info.format)) {
            sf_close(f);
            f = nullptr;
        } else if (f) {
            sf_seek(f, 0, SEEK_END);
            frames = old.frames;
        }
    }
    if (!f) f = sf_open(path.c_str(), SFM_WRITE, &info);
    if (!f) return Unexpected{fmt::format("{}: {}", path.string(), sf_strerror(nullptr))};
    // The header follows every write: the file is whole at any instant, for a reader while the
    // stream still plays and after a crash.
    sf_command(f, SFC_SET_UPDATE_HEADER_AUTO, nullptr, SF_TRUE);
    return std::unique_ptr<WavFileWriter>(new WavFileWriter(f, fmt, frames));
}

WavFileWriter::~WavFileWriter() { sf_close(file_); }

WavFileWriter::Written WavFileWriter::write(std::span<const std::uint8_t> bytes) {
    const std::size_t sample_bytes = wire::format_info(fmt_.format)->physical_bytes;
    const std::size_t samples = bytes.size() / sample_bytes;
    const auto frames = static_cast<sf_count_t>(samples / fmt_.channels);
    sf_count_t wrote;
    errno = 0;
    if (fmt_.format == PcmFormat::Float) {
        // Float samples are stored as they are; copy for alignment.
        std::vector<float> f(samples);
        std::memcpy(f.data(), bytes.data(), samples * 4);
        wrote = sf_writef_float(file_, f.data(), frames);
    } else {
        ints_.resize(samples);
        for (std::size_t i = 0; i < samples; ++i) ints_[i] = to_int(fmt_.format, bytes.data() + i * sample_bytes);
        wrote = sf_writef_int(file_, ints_.data(), frames);
    }
    Written w{static_cast<std::size_t>(std::max<sf_count_t>(wrote, 0)), std::nullopt};
    frames_ += static_cast<sf_count_t>(w.frames);
    if (wrote == frames) return w;
    // libsndfile reports only "system error"; errno says which (ENOSPC, EFBIG, EIO).
    w.error = errno ? std::string(std::strerror(errno)) : std::string(sf_strerror(file_));
    // A short write may have left part of a frame: back to the last whole one, header to match.
    sf_count_t keep = frames_;
    sf_command(file_, SFC_FILE_TRUNCATE, &keep, sizeof keep);
    sf_command(file_, SFC_UPDATE_HEADER_NOW, nullptr, 0);
    return w;
}

Expected<std::unique_ptr<WavFileReader>, std::string> WavFileReader::open(const std::filesystem::path& path) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f) return Unexpected{fmt::format("{}: {}", path.string(), sf_strerror(nullptr))};
    std::optional<PcmFormat> format;
    for (PcmFormat candidate : {PcmFormat::U8, PcmFormat::S16, PcmFormat::S24, PcmFormat::S32, PcmFormat::Float})
        if (wav_subtype(candidate) == (info.format & SF_FORMAT_SUBMASK)) format = candidate;
    return std::unique_ptr<WavFileReader>(new WavFileReader(f, static_cast<unsigned>(info.channels),
                                                            static_cast<std::uint32_t>(info.samplerate),
                                                            static_cast<std::uint64_t>(info.frames), format));
}

WavFileReader::~WavFileReader() { sf_close(file_); }

std::size_t WavFileReader::read(std::span<std::uint8_t> out, const SampleSpec& fmt) {
    const std::size_t sample_bytes = wire::format_info(fmt.format)->physical_bytes;
    const std::size_t frames = out.size() / (sample_bytes * fmt.channels);
    const bool as_float = fmt.format == PcmFormat::Float;
    ints_.assign(frames * channels_, 0);
    floats_.assign(frames * channels_, 0.f);
    const sf_count_t got = as_float ? sf_readf_float(file_, floats_.data(), static_cast<sf_count_t>(frames))
                                    : sf_readf_int(file_, ints_.data(), static_cast<sf_count_t>(frames));
    for (std::size_t f = 0; f < frames; ++f)
        for (unsigned c = 0; c < fmt.channels; ++c) {
            const std::size_t src = f * channels_ + c % channels_;
            std::uint8_t* dst = out.data() + (f * fmt.channels + c) * sample_bytes;
            if (as_float) std::memcpy(dst, &floats_[src], 4);
            else from_int(fmt.format, ints_[src], dst);
        }
    return static_cast<std::size_t>(std::max<sf_count_t>(got, 0));
}

std::vector<std::uint8_t> WavFileReader::read_all(const SampleSpec& fmt) {
    std::vector<std::uint8_t> out(frames_ * fmt.frame_bytes());
    const std::size_t got = read(out, fmt);
    out.resize(got * fmt.frame_bytes());
    return out;
}

} // namespace vsnd::audio
