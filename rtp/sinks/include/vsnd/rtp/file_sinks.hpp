// Sinks paced by CLOCK_MONOTONIC (a PacedSink underneath): a WAV file with a timing sidecar like
// vsnd-host's ("first frame,CLOCK_MONOTONIC ns when it was played"), and a command's standard
// input (disorder-playrtp's --command). Both write one period at a time as it is played; the
// pipe is non-blocking, and frames a slow command cannot take are dropped and counted, so the
// loop never waits for it. One thread.
#pragma once

#include "vsnd/rtp/paced_sink.hpp"
#include "vsnd/expected.hpp"

#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

namespace vsnd::audio { class WavFileWriter; }

namespace vsnd::rtp {

// What both share: a PacedSink underneath that never plays silence for a late loop.
class PacedOutputSink : public PlayoutSink {
public:
    audio::SampleSpec spec() const override { return paced_->spec(); }
    std::optional<double> pending(Nanos now) const override { return paced_->pending(now); }
    std::size_t writable() const override { return paced_->writable(); }
    std::size_t write(std::span<const std::int32_t> s, Nanos now) override { return paced_->write(s, now); }
    std::uint32_t period_frames() const override { return paced_->period_frames(); }
    std::uint32_t buffer_frames() const override { return paced_->buffer_frames(); }
    Nanos next_wake(Nanos now) const override { return paced_->next_wake(now); }
    std::uint64_t xruns() const override { return paced_->xruns(); }
    std::string error() const override { return error_; }

protected:
    // `played` converts each played period to `spec.format` bytes and passes them on.
    PacedOutputSink(PacedSinkOptions o, std::function<void(std::span<const std::uint8_t>, Nanos)> played);
    std::unique_ptr<PacedSink> paced_;
    std::string error_;

private:
    std::vector<std::uint8_t> bytes_;
};

class WavSink final : public PacedOutputSink {
public:
    static Expected<std::unique_ptr<WavSink>, std::string> open(const std::filesystem::path& path, PacedSinkOptions o);
    ~WavSink() override;
    bool update(Nanos now) override;
    std::string describe() const override;
    std::filesystem::path timing_path() const;

private:
    WavSink(std::filesystem::path path, PacedSinkOptions o, std::unique_ptr<audio::WavFileWriter> w);
    std::filesystem::path path_;
    std::unique_ptr<audio::WavFileWriter> writer_;
    std::uint64_t frames_ = 0;
};

class CommandSink final : public PacedOutputSink {
public:
    // Runs `command` with /bin/sh -c; its stdin receives raw interleaved frames in o.spec.format.
    static Expected<std::unique_ptr<CommandSink>, std::string> open(const std::string& command, PacedSinkOptions o);
    ~CommandSink() override;
    bool update(Nanos now) override;
    std::string describe() const override;
    std::uint64_t dropped_frames() const { return dropped_; }

private:
    CommandSink(std::string command, PacedSinkOptions o, int fd, int pid);
    void send(std::span<const std::uint8_t> bytes);
    std::string command_;
    int fd_, pid_;
    std::vector<std::uint8_t> partial_; // the rest of a frame the pipe took only part of
    std::uint64_t dropped_ = 0;
};

} // namespace vsnd::rtp
