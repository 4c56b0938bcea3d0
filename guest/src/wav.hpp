// Minimal RIFF/WAVE reader and writer for the agent's formats.
//
// Written: S16_LE and S32_LE as WAVE_FORMAT_PCM, S24_LE as WAVE_FORMAT_EXTENSIBLE (32-bit
// container, 24 valid bits, samples left-justified as WAV requires), FLOAT_LE as
// WAVE_FORMAT_IEEE_FLOAT (with a fact chunk).
// Read: the above, plus packed 24-bit PCM; samples are returned in ALSA layout.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "audio_format.hpp"

namespace vsnd::guest {

struct WavData {
    StreamFormat format;
    std::vector<std::byte> samples;  // interleaved, ALSA layout of format.format
};

// Throws std::runtime_error on I/O errors.
void write_wav(const std::string& path, const StreamFormat& fmt, std::span<const std::byte> samples);

// Throws std::runtime_error on I/O errors and unsupported or malformed files.
[[nodiscard]] WavData read_wav(const std::string& path);

}  // namespace vsnd::guest
