#include "vsnd/backends/wav_backend.hpp"
#include "vsnd/audio/wav_file.hpp"

#include "vsnd/device/waker_slot.hpp"
#include "vsnd/event_fd.hpp"

#include <fmt/format.h>

#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <thread>

namespace vsnd::backends {

using audio::WavFileReader;
using audio::WavFileWriter;
using audio::wav_can_hold;
// One output stream's file, shared by the device thread (which fills `ring` with played frames)
// and the file thread (which opens the file, drains the ring into it and closes it).
struct WavBackend::SinkFile {
    SinkFile(std::size_t ring_bytes, std::shared_ptr<const PlaybackRecord> rec) : ring(ring_bytes), record(std::move(rec)) {}
    SpscByteRing ring;                               // device thread pushes, file thread pops
    std::shared_ptr<const PlaybackRecord> record;    // complete once `closing` is set
    device::OpenStateSlot open_state;
    std::atomic<bool> closing{false};                // device thread: no more frames, no more runs
    std::atomic<std::uint64_t> dropped_frames{0};    // the ring was full (the disk stalled > 2 s)
    device::WakerSlot waker;
    // File thread only.
    std::unique_ptr<WavFileWriter> writer;
    std::filesystem::path wav, timing;
    std::uint64_t first_frame = 0;                   // frames already in the file at this PREPARE
    std::optional<std::string> write_error;          // the disk failed: the file ends where it did
    std::uint64_t unwritten_bytes = 0;               // played after that, not in the file
};

// The backend's one file thread: opens, writes and closes every output WAV and timing sidecar, so
// the device thread never waits for the disk. Jobs (opens, flush barriers) come through a locked
// queue that only the device thread and flush() fill, one per PREPARE at most; played frames
// through each file's ring. Each round takes the queued jobs, then drains every ring (closing the
// files whose stream has gone: a close posted before an open is always finished before it runs),
// then runs the jobs.
// With WavIo::Inline there is no thread: every job and every drain runs at once on the caller's.
class WavBackend::FileThread {
public:
    FileThread(WavIo io, std::function<void(const std::string&)> log) : inline_(io == WavIo::Inline), log_(std::move(log)) {
        if (inline_) return;
        thread_ = std::thread([this] { run(); });
        pthread_setname_np(thread_.native_handle(), "vsnd-wav-io");
    }
    // Finishes every job and every file, then joins.
    ~FileThread() {
        if (inline_) {
            for (auto& f : files_) f->closing.store(true, std::memory_order_release);
            service_files();
            return;
        }
        {
            std::lock_guard lock(mutex_);
            quit_ = true;
        }
        doorbell_.signal();
        thread_.join();
    }
    // Any thread; never blocks beyond a short lock.
    void post(std::function<void()> job) {
        if (inline_) {
            service_files();
            job();
            return;
        }
        {
            std::lock_guard lock(mutex_);
            jobs_.push_back(std::move(job));
        }
        doorbell_.signal();
    }
    // Device thread: frames or a close to look at.
    void ring() {
        if (inline_) service_files();
        else doorbell_.signal();
    }
    // File thread (from an open job): drains `f` from now on. A file whose stream closed while it
    // was opening is finished at once, before any later job (a re-open of the same path) runs.
    void adopt(std::shared_ptr<SinkFile> f) {
        if (f->closing.load(std::memory_order_acquire)) {
            close_file(*f);
            return;
        }
        files_.push_back(std::move(f));
    }

private:
    void run() {
        // Disk writes never run at the device loop's real-time priority (vsnd-host --rt-priority),
        // whichever thread creates the backend (vsnd-host creates it before it raises its own).
        const sched_param normal{};
        pthread_setschedparam(pthread_self(), SCHED_OTHER, &normal);
        std::vector<std::function<void()>> jobs;
        for (;;) {
            pollfd pfd{doorbell_.fd(), POLLIN, 0};
            ::poll(&pfd, 1, -1);
            doorbell_.consume();
            bool quit = false;
            {
                std::lock_guard lock(mutex_);
                jobs.assign(std::make_move_iterator(jobs_.begin()), std::make_move_iterator(jobs_.end()));
                jobs_.clear();
                quit = quit_;
            }
            service_files();
            for (auto& job : jobs) job();
            jobs.clear();
            if (quit) {
                // The backend is going: every stream has closed (the device outlives none of them).
                for (auto& f : files_) f->closing.store(true, std::memory_order_release);
                service_files();
                return;
            }
        }
    }

    void service_files() {
        for (auto it = files_.begin(); it != files_.end();) {
            SinkFile& f = **it;
            const bool closing = f.closing.load(std::memory_order_acquire); // before the last drain
            for (;;) {
                const std::uint64_t head = f.ring.head();
                const auto region = f.ring.read_region(head, f.ring.used_bytes());
                if (region.empty()) break;
                if (f.write_error) {
                    f.unwritten_bytes += region.size();
                } else if (auto w = f.writer->write(region); w.error) {
                    // A file with a hole would misplace every later frame: it stops here, valid
                    // and exact up to this point; the next stream's file tries the disk again.
                    f.write_error = std::move(w.error);
                    f.unwritten_bytes += region.size() - w.frames * f.record->frame_bytes;
                    if (log_) log_(fmt::format("wav: writing {} failed ({}): the file ends here, playback goes on",
                                               f.wav.filename().string(), *f.write_error));
                }
                f.ring.commit_read(head + region.size());
            }
            if (!closing) {
                ++it;
                continue;
            }
            close_file(f);
            it = files_.erase(it);
        }
    }

    // Closes the WAV (libsndfile writes its header) and appends one line per run of continuous
    // playback to the timing sidecar: "first frame,CLOCK_MONOTONIC ns when it was played"; the
    // frames after it followed at the stream rate. With it, anything logged against
    // CLOCK_MONOTONIC can be compared with when the audio was really played.
    void close_file(SinkFile& f) {
        f.writer.reset();
        if (const auto lost = f.dropped_frames.load(std::memory_order_relaxed); lost && log_)
            log_(fmt::format("wav: {} frames not written to disk in time and left out of the file", lost));
        if (f.write_error && log_)
            log_(fmt::format("wav: {} frames played after the write failure ({}) are not in the file",
                             f.unwritten_bytes / f.record->frame_bytes, *f.write_error));
        std::FILE* out = std::fopen(f.timing.c_str(), "a");
        if (!out) return;
        std::fprintf(out, "# prepare: rate %u, frames %llu\n", f.record->rate,
                     static_cast<unsigned long long>(f.record->frames));
        for (const auto& run : f.record->runs)
            std::fprintf(out, "%llu,%lld\n", static_cast<unsigned long long>(f.first_frame + run.frames),
                         static_cast<long long>(run.when));
        std::fclose(out);
    }

    const bool inline_;
    std::function<void(const std::string&)> log_;
    EventFd doorbell_;
    std::mutex mutex_;
    std::deque<std::function<void()>> jobs_;
    bool quit_ = false;
    std::vector<std::shared_ptr<SinkFile>> files_; // file thread only
    std::thread thread_;
};

namespace {

using SinkFile = WavBackend::SinkFile;

// Device thread: played frames go into the file's ring, for the file thread to write.
class WavSink final : public FrameSink {
public:
    WavSink(std::shared_ptr<SinkFile> f, WavBackend::FileThread& thread) : file_(std::move(f)), thread_(thread) {}
    ~WavSink() override {
        file_->closing.store(true, std::memory_order_release);
        thread_.ring();
    }
    void played(std::span<const std::uint8_t> frames) override {
        const std::size_t fb = file_->record->frame_bytes;
        const std::size_t n = std::min(frames.size(), file_->ring.free_bytes() / fb * fb);
        file_->ring.push(frames.first(n));
        if (n < frames.size()) file_->dropped_frames.fetch_add((frames.size() - n) / fb, std::memory_order_relaxed);
        thread_.ring();
    }
    device::OpenState open_state() override {
        return file_->open_state.load();
    }
    void set_waker(device::Waker w) override { file_->waker.set(std::move(w)); }

private:
    std::shared_ptr<SinkFile> file_;
    WavBackend::FileThread& thread_;
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
                       PacedTiming timing, WavIo io, std::function<void(const std::string&)> log)
    : clock_(clock), output_dir_(std::move(output_dir)), capture_file_(std::move(capture_file)), timing_(timing),
      files_(std::make_unique<FileThread>(io, std::move(log))) {}

WavBackend::~WavBackend() = default;

void WavBackend::flush() {
    std::promise<void> done;
    auto f = done.get_future();
    files_->post([&] { done.set_value(); });
    f.wait();
}

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
        auto rec = std::make_shared<PlaybackRecord>(fmt.rate, fmt.frame_bytes(), timing_.rate_ratio, false);
        {
            std::lock_guard lock(mutex_);
            records_[stream_id] = rec;
        }
        // Room for 2 s of audio (whole frames): what the disk may stall before frames are lost.
        const std::size_t fb = fmt.frame_bytes();
        // (At most 64 MiB: 2 s of 8 channels of FLOAT64 at 384 kHz is 49 MiB.)
        const std::size_t ring_frames = std::min<std::size_t>(std::max<std::size_t>(std::size_t{fmt.rate} * 2, 4096),
                                                              (std::size_t{64} << 20) / fb);
        auto file = std::make_shared<SinkFile>(ring_frames * fb, rec);
        file->wav = output_path(stream_id);
        file->timing = timing_path(stream_id);
        FileThread* thread = files_.get(); // the job may run inside ~FileThread, after files_ let go
        thread->post([this, thread, file, stream_id, spec = fmt.spec()] {
            // A stream closed before its file opened (its PREPARE timed out) opens nothing.
            std::optional<std::string> error;
            if (file->closing.load(std::memory_order_acquire)) error = "closed before it opened";
            else error = open_output(*file, stream_id, spec);
            if (!error) thread->adopt(file);
            file->open_state.publish(std::move(error));
            file->waker.wake();
        });
        return std::unique_ptr<device::BackendStream>(
            std::make_unique<PacedStream>(clock_, fmt, timing_, std::make_unique<WavSink>(file, *files_), nullptr, rec));
    }
    if (capture_file_.empty()) // no file to capture from: silence, paced like a card
        return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(clock_, fmt, timing_, nullptr, nullptr));
    auto r = WavFileReader::open(capture_file_);
    if (!r) return Unexpected{r.error()};
    return std::unique_ptr<device::BackendStream>(std::make_unique<PacedStream>(
        clock_, fmt, timing_, nullptr, std::make_unique<WavSource>(std::move(r).value(), fmt)));
}

// File thread: a new format starts a new file; the earlier one is kept as stream-N.K.wav (K = 1,
// 2, ...). The same format appends.
std::optional<std::string> WavBackend::open_output(SinkFile& file, std::uint32_t stream_id, const audio::SampleSpec& spec) {
    const auto path = output_path(stream_id);
    if (std::filesystem::exists(path) && !WavFileWriter::holds_format(path, spec)) {
        for (unsigned k = 1;; ++k) {
            auto older = output_dir_ / fmt::format("stream-{}.{}.wav", stream_id, k);
            if (std::filesystem::exists(older)) continue;
            std::error_code ec;
            std::filesystem::rename(path, older, ec);
            if (!ec && std::filesystem::exists(timing_path(stream_id)))
                std::filesystem::rename(timing_path(stream_id),
                                        output_dir_ / fmt::format("stream-{}.{}.timing.csv", stream_id, k), ec);
            if (ec) return fmt::format("cannot keep {}: {}", path.string(), ec.message());
            break;
        }
    }
    file.first_frame = std::filesystem::exists(path) ? wav_frames(path) : 0;
    auto w = WavFileWriter::open(path, spec, true);
    if (!w) return w.error();
    file.writer = std::move(w).value();
    return std::nullopt;
}

device::Capabilities WavBackend::capabilities() const {
    device::Capabilities c;
    c.output.formats = 0;
    for (unsigned raw = 0; raw < wire::kPcmFormatCount; ++raw)
        if (wav_can_hold(static_cast<wire::PcmFormat>(raw))) c.output.formats |= std::uint64_t{1} << raw;
    if (!capture_file_.empty()) c.input.formats = c.output.formats; // captured frames come from a WAV
    return c;
}

void register_wav_backend(device::BackendRegistry& registry, std::function<void(const std::string&)> log) {
    registry.add({"wav",
                  "playback into DIR/stream-<id>.wav (+ a timing sidecar), capture from a WAV file or silence",
                  {{"dir", "directory for the output files, created if missing (default .)"},
                   {"capture", "WAV file capture streams read (default: silence)"}},
                  [log](const Clock& clock, const device::BackendOptions& o)
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
                      return std::unique_ptr<device::AudioBackend>(
                          std::make_unique<WavBackend>(clock, dir, capture, PacedTiming{}, WavIo::FileThread, log));
                  }});
}

} // namespace vsnd::backends
