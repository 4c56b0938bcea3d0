// Playback into one WAV file per stream, stream-N.wav: exactly the frames played, appended across
// PREPAREs while the format stays the same; a new format starts a new stream-N.wav and keeps the
// earlier one as stream-N.K.wav. Capture from a WAV file (silence after its end).
// Paced by a clock like a sound card.
#pragma once

#include "vsnd/backends/paced_stream.hpp"
#include "vsnd/device/backend_registry.hpp"

#include <filesystem>
#include <map>
#include <mutex>

namespace vsnd::backends {

class WavBackend final : public device::AudioBackend {
public:
    WavBackend(const Clock& clock, std::filesystem::path output_dir, std::filesystem::path capture_file,
               PacedTiming timing = {});
    std::string name() const override { return "wav"; }
    device::Capabilities capabilities() const override;
    Expected<std::unique_ptr<device::BackendStream>, std::string> open(std::uint32_t stream_id,
                                                                       const device::StreamFormat& fmt) override;
    std::filesystem::path output_path(std::uint32_t stream_id) const;
    // stream-N.timing.csv: per run of continuous playback, its first frame (counted in the WAV
    // file) and the CLOCK_MONOTONIC instant it was played. Written when the stream is released.
    std::filesystem::path timing_path(std::uint32_t stream_id) const;
    // When each frame of the stream's latest PREPARE..RELEASE was played.
    std::shared_ptr<const PlaybackRecord> record(std::uint32_t stream_id) const;

private:
    mutable std::mutex mutex_; // records are read from other threads (tests, the demo)
    std::map<std::uint32_t, std::shared_ptr<PlaybackRecord>> records_;
    const Clock& clock_;
    std::filesystem::path output_dir_, capture_file_;
    PacedTiming timing_;
};

// "wav" with options dir= and capture= (vsnd-backend-wav).
void register_wav_backend(device::BackendRegistry& registry);

} // namespace vsnd::backends
