#include "vsnd/rtp/file_sinks.hpp"

#include "vsnd/audio/wav_file.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace vsnd::rtp {

PacedOutputSink::PacedOutputSink(PacedSinkOptions o, std::function<void(std::span<const std::uint8_t>, Nanos)> played) {
    o.wait_for_late_frames = true;
    paced_ = std::make_unique<PacedSink>(o, [this, played = std::move(played)](std::span<const std::int32_t> s, Nanos when,
                                                                                std::uint32_t) {
        if (!error_.empty()) return;
        bytes_.resize(s.size() * paced_->spec().sample_bytes());
        convert_samples(s, paced_->spec().format, bytes_.data());
        played(bytes_, when);
    });
}

// ---- WAV --------------------------------------------------------------------------------------

Expected<std::unique_ptr<WavSink>, std::string> WavSink::open(const std::filesystem::path& path, PacedSinkOptions o) {
    if (!sink_format_supported(o.spec.format) || !audio::wav_can_hold(o.spec.format))
        return Unexpected{fmt::format("a WAV sink cannot hold {}", wire::name(o.spec.format))};
    auto w = audio::WavFileWriter::open(path, o.spec, false);
    if (!w) return Unexpected{w.error()};
    return std::unique_ptr<WavSink>(new WavSink(path, o, std::move(*w)));
}

WavSink::WavSink(std::filesystem::path path, PacedSinkOptions o, std::unique_ptr<audio::WavFileWriter> w)
    : PacedOutputSink(o, [this](std::span<const std::uint8_t> bytes, Nanos when) {
          if (frames_ == 0) {
              // The file is one continuous run at the stream rate.
              if (std::FILE* t = std::fopen(timing_path().c_str(), "w")) {
                  std::fprintf(t, "# rate %u\n0,%lld\n", paced_->spec().rate, static_cast<long long>(when));
                  std::fclose(t);
              }
          }
          auto r = writer_->write(bytes);
          frames_ += r.frames;
          if (r.error) error_ = fmt::format("{}: {}", path_.string(), *r.error);
      }),
      path_(std::move(path)), writer_(std::move(w)) {
    std::remove(timing_path().c_str());
}

WavSink::~WavSink() = default;

bool WavSink::update(Nanos now) {
    paced_->update(now);
    return error_.empty();
}

std::filesystem::path WavSink::timing_path() const {
    auto p = path_;
    p.replace_extension(".timing.csv");
    return p;
}

std::string WavSink::describe() const { return fmt::format("WAV {} ({})", path_.string(), paced_->describe()); }

// ---- command ------------------------------------------------------------------------------------

Expected<std::unique_ptr<CommandSink>, std::string> CommandSink::open(const std::string& command, PacedSinkOptions o) {
    if (!sink_format_supported(o.spec.format)) return Unexpected{fmt::format("cannot write {}", wire::name(o.spec.format))};
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return Unexpected{fmt::format("pipe: {}", std::strerror(errno))};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[0], 0);
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    pid_t pid = -1;
    const int e = posix_spawn(&pid, "/bin/sh", &fa, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[0]);
    if (e != 0) {
        close(p[1]);
        return Unexpected{fmt::format("cannot run \"{}\": {}", command, std::strerror(e))};
    }
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    return std::unique_ptr<CommandSink>(new CommandSink(command, o, p[1], pid));
}

CommandSink::CommandSink(std::string command, PacedSinkOptions o, int fd, int pid)
    : PacedOutputSink(o, [this](std::span<const std::uint8_t> bytes, Nanos) { send(bytes); }), command_(std::move(command)),
      fd_(fd), pid_(pid) {}

void CommandSink::send(std::span<const std::uint8_t> bytes) {
    if (fd_ < 0) return;
    const auto fb = paced_->spec().frame_bytes();
    // A frame the pipe took only part of goes first, whole, or everything after it would be
    // shifted by a sample; a full pipe drops whole frames (counted) and never blocks.
    if (!partial_.empty()) {
        const ssize_t m = ::write(fd_, partial_.data(), partial_.size());
        if (m > 0) partial_.erase(partial_.begin(), partial_.begin() + m);
        if (!partial_.empty()) {
            dropped_ += bytes.size() / fb;
            return;
        }
    }
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno != EAGAIN) {
        error_ = fmt::format("command \"{}\": {}", command_, std::strerror(errno));
        return;
    }
    const std::size_t done = n < 0 ? 0 : static_cast<std::size_t>(n);
    const std::size_t whole = (done + fb - 1) / fb * fb; // the frames begun
    partial_.assign(bytes.begin() + static_cast<std::ptrdiff_t>(done), bytes.begin() + static_cast<std::ptrdiff_t>(std::min(whole, bytes.size())));
    dropped_ += (bytes.size() - std::min(whole, bytes.size())) / fb;
}

CommandSink::~CommandSink() {
    if (fd_ >= 0) close(fd_);
    if (pid_ > 0) {
        int status = 0;
        // The command sees EOF; give it a moment to finish, then make sure it is gone.
        for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(10'000);
        if (waitpid(pid_, &status, WNOHANG) == 0) {
            kill(pid_, SIGTERM);
            for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i) usleep(10'000);
            if (waitpid(pid_, &status, WNOHANG) == 0) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
            }
        }
    }
}

bool CommandSink::update(Nanos now) {
    paced_->update(now);
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = fmt::format("command \"{}\" exited", command_);
    }
    return error_.empty();
}

std::string CommandSink::describe() const { return fmt::format("command \"{}\" ({})", command_, paced_->describe()); }

} // namespace vsnd::rtp
