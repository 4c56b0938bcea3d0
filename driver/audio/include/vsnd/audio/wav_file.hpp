// WAV files through libsndfile, with the sample conversion between virtio-snd PCM bytes and the
// file exact for U8, S16, S24 (in its 32-bit container), S32 and FLOAT.
#pragma once

#include "vsnd/audio/sample_spec.hpp"
#include "vsnd/expected.hpp"

#include <filesystem>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <vector>

typedef struct sf_private_tag SNDFILE;

namespace vsnd::audio {

// Whether a WAV file can hold this format exactly.
bool wav_can_hold(wire::PcmFormat f);

// Any one thread at a time. Its header is rewritten after every write, so the file is valid at
// any instant (a reader while it grows, a killed process).
class WavFileWriter {
public:
    // Appends when the file exists with the same rate, channels and sample type; starts anew
    // otherwise (or always, without `append`).
    static bool holds_format(const std::filesystem::path& path, const SampleSpec& fmt);
    static Expected<std::unique_ptr<WavFileWriter>, std::string> open(const std::filesystem::path& path,
                                                                      const SampleSpec& fmt, bool append);
    ~WavFileWriter();
    struct Written {
        std::size_t frames = 0;           // that reached the file
        std::optional<std::string> error; // why not all did (the disk is full, the file too large)
    };
    // Whole frames. After a failure the file is still valid, up to the frames it holds.
    Written write(std::span<const std::uint8_t> frames);

private:
    WavFileWriter(SNDFILE* f, const SampleSpec& fmt, std::int64_t frames) : file_(f), fmt_(fmt), frames_(frames) {}
    SNDFILE* file_;
    SampleSpec fmt_;
    std::int64_t frames_; // whole frames in the file (sf_count_t)
    std::vector<std::int32_t> ints_;
};

class WavFileReader {
public:
    static Expected<std::unique_ptr<WavFileReader>, std::string> open(const std::filesystem::path& path);
    ~WavFileReader();
    unsigned channels() const { return channels_; }
    std::uint32_t rate() const { return rate_; }
    std::uint64_t frames() const { return frames_; }
    // The file's own sample type, when it is one of ours (U8, S16, 24-bit, S32, float).
    std::optional<wire::PcmFormat> format() const { return format_; }
    // Reads whole frames in `fmt` (its channels taken from the file's round-robin); frames past
    // the end are silence. Returns how many came from the file.
    std::size_t read(std::span<std::uint8_t> out, const SampleSpec& fmt);
    // The whole rest of the file in `fmt`.
    std::vector<std::uint8_t> read_all(const SampleSpec& fmt);

private:
    WavFileReader(SNDFILE* f, unsigned ch, std::uint32_t rate, std::uint64_t frames, std::optional<wire::PcmFormat> format)
        : file_(f), channels_(ch), rate_(rate), frames_(frames), format_(format) {}
    SNDFILE* file_;
    unsigned channels_;
    std::uint32_t rate_;
    std::uint64_t frames_;
    std::optional<wire::PcmFormat> format_;
    std::vector<std::int32_t> ints_;
    std::vector<float> floats_;
};

} // namespace vsnd::audio
