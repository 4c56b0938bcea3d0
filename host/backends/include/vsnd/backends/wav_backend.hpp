// Playback into one WAV file per stream, stream-N.wav: exactly the frames played, appended across
// PREPAREs while the format stays the same; a new format starts a new stream-N.wav and keeps the
// earlier one as stream-N.K.wav. Capture from a WAV file (silence after its end).
// Paced by a clock like a sound card.
//
// Threads. The device thread calls open() and the streams; it never touches the disk for playback:
// the backend's file thread opens each output file (the stream is Opening until then), writes
// the played frames from a 2 s ring (at most 64 MiB; a disk stalled longer loses frames from the file, counted and
// logged, never the timing) and closes the file and its sidecar after the stream has gone. Capture
// still reads its WAV on the device thread (a local file, read a period at a time).
#pragma once

#include "vsnd/backends/paced_stream.hpp"
#include "vsnd/device/backend_registry.hpp"

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <map>
#include <mutex>

namespace vsnd::backends {

// Where the output files are opened, written and closed.
enum class WavIo {
    FileThread, // the backend's own thread: the device thread never waits for the disk
    Inline,     // the device thread, at once: deterministic runs on a SimulatedClock, where a
                // real thread's open would race simulated time
};

class WavBackend final : public device::AudioBackend {
public:
    // `log` (file thread): frames a stalled or full disk made us leave out. Default: none.
    WavBackend(const Clock& clock, std::filesystem::path output_dir, std::filesystem::path capture_file,
               PacedTiming timing = {}, WavIo io = WavIo::FileThread, std::function<void(const std::string&)> log = {});
    ~WavBackend() override; // writes and closes every file still open
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
    // Blocks until every frame played so far is in its file and every closed stream's file and
    // sidecar are complete (read them after this). WavIo::FileThread: any thread but the device's;
    // WavIo::Inline: the device's thread only (or while no device runs).
    void flush();

    class FileThread;
    struct SinkFile;

private:
    std::optional<std::string> open_output(SinkFile& file, std::uint32_t stream_id, const audio::SampleSpec& spec);

    mutable std::mutex mutex_; // records are read from other threads (tests, the demo)
    std::map<std::uint32_t, std::shared_ptr<PlaybackRecord>> records_;
    const Clock& clock_;
    std::filesystem::path output_dir_, capture_file_;
    PacedTiming timing_;
    std::unique_ptr<FileThread> files_; // last: goes first, while everything it uses is alive
};

// "wav" with options dir= and capture= (vsnd-backend-wav). `log` (the file thread calls it): frames
// a stalled or full disk left out of a file.
void register_wav_backend(device::BackendRegistry& registry, std::function<void(const std::string&)> log = {});

} // namespace vsnd::backends
