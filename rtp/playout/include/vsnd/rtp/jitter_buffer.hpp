// The jitter buffer: a fixed ring of frames indexed by extended RTP timestamp (in frames). A
// packet is written where its timestamp says, so reordering costs nothing and a duplicate
// rewrites the same frames; the reader takes frames in timeline order, and every frame that never
// arrived becomes concealment (silence, or a short fade from the last frame where the gap falls
// inside sound). Memory is allocated once. Single owner (the receiver's loop), never blocks.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace vsnd::rtp {

enum class Concealment : std::uint8_t { Silence, Fade };

class JitterBuffer {
public:
    // `capacity_frames` frames of `channels` int32 samples each.
    JitterBuffer(std::uint32_t capacity_frames, unsigned channels);

    std::uint32_t capacity() const { return capacity_; }
    unsigned channels() const { return channels_; }
    // Restarts the timeline: the next frame read is `frame`; everything held is dropped.
    void reset(std::int64_t read_position);
    std::int64_t read_position() const { return read_pos_; }

    enum class Put { Stored, Late, PartlyLate, TooFarAhead };
    // Stores `samples` (whole frames) starting at frame `first`. Frames before the read position
    // are dropped (Late, or PartlyLate when some were kept); a packet ending beyond the ring's
    // reach is refused whole (TooFarAhead).
    Put put(std::int64_t first, std::span<const std::int32_t> samples);
    // Whether frame `frame` is held.
    bool holds(std::int64_t frame) const;

    struct Read {
        std::uint32_t present = 0;   // frames that had arrived
        std::uint32_t concealed = 0; // frames that had not
    };
    // Takes the next `out.size() / channels` frames into `out`. Missing frames are concealed.
    Read read(std::span<std::int32_t> out, Concealment how, std::uint32_t fade_frames);
    // Drops the next `frames` frames (a slip).
    void skip(std::uint32_t frames);
    // Moves the read position; what is held and stays within reach is kept.
    void seek(std::int64_t read_position);
    // The first of the next `frames` frames that is missing or quieter than `threshold` in every
    // channel: where a slip is least audible.
    std::optional<std::uint32_t> find_quiet(std::uint32_t frames, std::int32_t threshold) const;
    // The frame last read (for repeating it), all zero before any.
    std::span<const std::int32_t> last_frame() const { return last_; }

private:
    std::size_t slot(std::int64_t frame) const {
        const std::int64_t m = frame % capacity_;
        return static_cast<std::size_t>(m < 0 ? m + capacity_ : m);
    }

    std::uint32_t capacity_;
    unsigned channels_;
    std::vector<std::int32_t> samples_;
    std::vector<std::uint8_t> filled_;
    std::vector<std::int32_t> last_;
    std::int64_t read_pos_ = 0;
    std::uint32_t fade_left_ = 0, fade_len_ = 0; // a fade in progress
    std::vector<std::int32_t> fade_from_;
};

} // namespace vsnd::rtp
