#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"

#include <fmt/format.h>

#include <cstdio>

namespace vsnd::backends {

using audio::WavFileReader;
using audio::WavFileWriter;
using audio::wav_can_hold;
namespace {

// Writes the frames, and at the end of the stream a timing sidecar next to the WAV: one line per
// run of continuous playback, "first frame,CLOCK_MONOTONIC ns when it was played"; the frames
// after it followed at the stream rate. With it, anything logged against CLOCK_MONOTONIC can be
// compared with when the audio was really played.
class WavSink final : public FrameSink {
public:
    WavSink(std::unique_ptr<WavFileWriter> w, std::shared_ptr<const PlaybackRecord> rec, std::filesystem::path timing,
            std::uint64_t first_frame)
        : writer_(std::move(w)), record_(std::move(rec)), timing_(std::move(timing)), first_frame_(first_frame) {}
    ~WavSink() override {
        std::FILE* f = std::fopen(timing_.c_str(), "a");
        if (!f) return;
        std::fprintf(f, "# prepare: rate %u, frames %llu\n", record_->rate, static_cast<unsigned long long>(record_->frames));
        for (const auto& run : record_->runs)
            std::fprintf(f, "%llu,%lld\n", static_cast<unsigned long long>(first_frame_ + run.frames),
                         static_cast<long long>(run.when));
        std::fclose(f);
    }
    void played(std::span<const std::uint8_t> frames) override { writer_->write(frames); }

private:
    std::unique_ptr<WavFileWriter> writer_;
    std::shared_ptr<const PlaybackRecord> record_;
    std::filesystem::path timing_;
    std::uint64_t first_frame_; // frames already in the file when this PREPARE began
};

class WavSource final : public FrameSource {
public:
    WavSource(std::unique_ptr<WavFileReader> r, const device::StreamFormat& fmt) : reader_(std::move(r)), fmt_(fmt) {}
    void capture(std::span<std::uint8_t> frames) override { reader_->read(frames, fmt_.spec()); }

private:
    std::unique_ptr<WavFileReader> reader_;
    device::StreamFormat fmt_;
};

std::uint64_t wav_frames(const std::filesystem::path& p) {
    auto r = WavFileReader::open(p);
    return r ? (*r)->frames() : 0;
}

} // namespace

WavBackend::WavBackend(const Clock& clock, std::filesystem::path output_dir, std::filesystem::path capture_file,
                       PacedTiming timing)
    : clock_(clock), output_dir_(std::move(output_dir)), capture_file_(std::move(capture_file)), timing_(timing) {}

std::filesystem::path WavBackend::output_path(std::uint32_t stream_id) const {
    return output_dir_ / fmt::format("stream-{}.wav", stream_id);
}

std::filesystem::path WavBackend::timing_path(std::uint32_t stream_id) const {
    return output_dir_ / fmt::format("stream-{}.timing.csv", stream_id);
}

std::shared_ptr<const PlaybackRecord> WavBackend::record(std::uint32_t stream_id) const {
    std::lock_guard lock(mutex_);
    auto it = records_.find(stream_id);
    return it == records_.end() ? nullptr : it->second;
}

Expected<std::unique_ptr<device::BackendStream>, std::string> WavBackend::open(std::uint32_t stream_id,
                                                                               const device::StreamFormat& fmt) {
    if (!wav_can_hold(fmt.format)) return Unexpected{fmt::format("WAV cannot hold {} samples", wire::name(fmt.format))};
    if (fmt.direction == wire::Direction::Output) {
        // A new format starts a new file; the earlier one is kept as stream-N.K.wav (K = 1, 2, ...).
        const auto path = output_path(stream_id);
        if (std::filesystem::exists(path) && !WavFileWriter::holds_format(path, fmt.spec())) {
            for (unsigned k = 1;; ++k) {
                auto older = output_dir_ / fmt::format("stream-{}.{}.wav", stream_id, k);
                if (std::filesystem::exists(older)) continue;
                std::error_code ec;
                std::filesystem::rename(path, older, ec);
                if (!ec && std::filesystem::exists(timing_path(stream_id)))
                    std::filesystem::rename(timing_path(stream_id),
                                            output_dir_ / fmt::format("stream-{}.{}.timing.csv", stream_id, k), ec);
                if (ec) return Unexpected{fmt::format("cannot keep {}: {}", path.string(), ec.message())};
                break;
            }
        }
        const std::uint64_t already = std::filesystem::exists(path) ? wav_frames(path) : 0;
        auto w = WavFileWriter::open(path, fmt.spec(), true);
        if (!w) return Unexpected{w.error()};
        auto rec = std::make_shared<PlaybackRecord>(fmt.rate, fmt.frame_bytes(), timing_.rate_ratio, false);
        {
            std::lock_guard lock(mutex_);
            records_[stream_id] = rec;
        }
        return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(
            clock_, fmt, timing_,
            std::make_unique<WavSink>(std::move(w).value(), rec, timing_path(stream_id), already), nullptr, rec));
    }
    if (capture_file_.empty()) // no file to capture from: silence, paced like a card
        return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(clock_, fmt, timing_, nullptr, nullptr));
    auto r = WavFileReader::open(capture_file_);
    if (!r) return Unexpected{r.error()};
    return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(
        clock_, fmt, timing_, nullptr, std::make_unique<WavSource>(std::move(r).value(), fmt)));
}

device::Capabilities WavBackend::capabilities() const {
    device::Capabilities c;
    c.output.formats = 0;
    for (unsigned raw = 0; raw < wire::kPcmFormatCount; ++raw)
        if (wav_can_hold(static_cast<wire::PcmFormat>(raw))) c.output.formats |= std::uint64_t{1} << raw;
    if (!capture_file_.empty()) c.input.formats = c.output.formats; // captured frames come from a WAV
    return c;
}

void register_wav_backend(device::BackendRegistry& registry) {
    registry.add({"wav",
                  "playback into DIR/stream-<id>.wav (+ a timing sidecar), capture from a WAV file or silence",
                  {{"dir", "directory for the output files, created if missing (default .)"},
                   {"capture", "WAV file capture streams read (default: silence)"}},
                  [](const Clock& clock, const device::BackendOptions& o)
                      -> Expected<std::unique_ptr<device::AudioBackend>, std::string> {
                      const std::filesystem::path dir = o.get("dir").value_or(".");
                      const std::filesystem::path capture = o.get("capture").value_or("");
                      std::error_code ec;
                      std::filesystem::create_directories(dir, ec);
                      if (ec || !std::filesystem::is_directory(dir))
                          return Unexpected{fmt::format("wav dir {}: {}", dir.string(), ec ? ec.message() : "not a directory")};
                      if (!capture.empty())
                          if (auto r = WavFileReader::open(capture); !r)
                              return Unexpected{fmt::format("wav capture {}: {}", capture.string(), r.error())};
                      return std::unique_ptr<device::AudioBackend>(std::make_unique<WavBackend>(clock, dir, capture));
                  }});
}

} // namespace vsnd::backends
