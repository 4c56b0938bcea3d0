#include "wav.hpp"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>

namespace vsnd::guest {

namespace {

constexpr std::uint16_t kTagPcm = 1;
constexpr std::uint16_t kTagFloat = 3;
constexpr std::uint16_t kTagExtensible = 0xFFFE;
// KSDATAFORMAT_SUBTYPE_* GUIDs all end in these 14 bytes after the 2-byte format tag.
constexpr std::uint8_t kGuidTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                        0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

class ByteWriter {
public:
    void str(const char* s) { raw(s, std::strlen(s)); }
    void u16(std::uint16_t v) { raw(&v, sizeof v); }
    void u32(std::uint32_t v) { raw(&v, sizeof v); }
    void raw(const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        buf_.insert(buf_.end(), b, b + n);
    }
    [[nodiscard]] const std::vector<std::byte>& bytes() const { return buf_; }

private:
    std::vector<std::byte> buf_;
};

std::uint16_t rd16(const std::byte* p) {
    std::uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

std::uint32_t rd32(const std::byte* p) {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

}  // namespace

void write_wav(const std::string& path, const StreamFormat& fmt, std::span<const std::byte> samples) {
    const bool s24 = fmt.format == SampleFormat::S24_LE;
    const bool is_float = fmt.format == SampleFormat::FLOAT_LE;
    const auto sbytes = static_cast<std::uint16_t>(sample_bytes(fmt.format));
    const auto block = static_cast<std::uint16_t>(sbytes * fmt.channels);
    const std::uint32_t fmt_size = s24 ? 40 : is_float ? 18 : 16;
    const std::uint32_t fact_size = is_float ? 12 : 0;
    if (samples.size() > std::numeric_limits<std::uint32_t>::max() - 100) throw std::runtime_error(path + ": too large for WAV");
    const auto data_size = static_cast<std::uint32_t>(samples.size());
    const std::uint32_t pad = data_size & 1u;

    ByteWriter w;
    w.str("RIFF");
    w.u32(4 + (8 + fmt_size) + fact_size + (8 + data_size + pad));
    w.str("WAVE");
    w.str("fmt ");
    w.u32(fmt_size);
    w.u16(s24 ? kTagExtensible : is_float ? kTagFloat : kTagPcm);
    w.u16(static_cast<std::uint16_t>(fmt.channels));
    w.u32(fmt.rate);
    w.u32(fmt.rate * block);
    w.u16(block);
    w.u16(static_cast<std::uint16_t>(sbytes * 8));
    if (s24) {
        w.u16(22);  // cbSize
        w.u16(24);  // valid bits
        w.u32(0);   // channel mask: unspecified
        w.u16(kTagPcm);
        w.raw(kGuidTail, sizeof kGuidTail);
    } else if (is_float) {
        w.u16(0);  // cbSize
    }
    if (is_float) {
        w.str("fact");
        w.u32(4);
        w.u32(static_cast<std::uint32_t>(data_size / block));
    }
    w.str("data");
    w.u32(data_size);

    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot create");
    out.write(reinterpret_cast<const char*>(w.bytes().data()), static_cast<std::streamsize>(w.bytes().size()));
    if (s24) {
        // ALSA keeps 24-bit samples in the low bits, WAV in the high bits.
        std::vector<std::byte> conv(samples.size());
        for (std::size_t i = 0; i + 4 <= samples.size(); i += 4) {
            const std::uint32_t v = rd32(samples.data() + i) << 8;
            std::memcpy(conv.data() + i, &v, 4);
        }
        out.write(reinterpret_cast<const char*>(conv.data()), static_cast<std::streamsize>(conv.size()));
    } else {
        out.write(reinterpret_cast<const char*>(samples.data()), static_cast<std::streamsize>(samples.size()));
    }
    if (pad) out.put('\0');
    out.close();
    if (!out) throw std::runtime_error(path + ": write failed");
}

WavData read_wav(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto* file = reinterpret_cast<const std::byte*>(raw.data());
    const std::size_t size = raw.size();
    auto fail = [&](const std::string& why) { return std::runtime_error(path + ": " + why); };

    if (size < 12 || std::memcmp(file, "RIFF", 4) != 0 || std::memcmp(file + 8, "WAVE", 4) != 0)
        throw fail("not a RIFF/WAVE file");

    std::uint16_t tag = 0, channels = 0, block = 0, bits = 0, valid = 0;
    std::uint32_t rate = 0;
    const std::byte* data = nullptr;
    std::size_t data_size = 0;
    for (std::size_t pos = 12; pos + 8 <= size;) {
        const std::byte* id = file + pos;
        std::size_t len = rd32(file + pos + 4);
        const std::byte* body = file + pos + 8;
        const std::size_t avail = size - pos - 8;
        if (std::memcmp(id, "fmt ", 4) == 0) {
            if (len < 16 || len > avail) throw fail("bad fmt chunk");
            tag = rd16(body);
            channels = rd16(body + 2);
            rate = rd32(body + 4);
            block = rd16(body + 12);
            bits = rd16(body + 14);
            valid = bits;
            if (tag == kTagExtensible) {
                if (len < 40 || std::memcmp(body + 26, kGuidTail, sizeof kGuidTail) != 0)
                    throw fail("unsupported WAVE_FORMAT_EXTENSIBLE sub-format");
                valid = rd16(body + 18);
                tag = rd16(body + 24);
            }
        } else if (std::memcmp(id, "data", 4) == 0) {
            // A writer that was killed may leave the size at 0 or too large: take what is there.
            if (len == 0 || len > avail) len = avail;
            data = body;
            data_size = len;
            break;
        }
        pos += 8 + len + (len & 1);
    }
    if (channels == 0 || rate == 0 || block == 0) throw fail("missing or empty fmt chunk");
    if (data == nullptr) throw fail("no data chunk");

    WavData out;
    out.format.rate = rate;
    out.format.channels = channels;
    enum class Src { Copy, Packed24, Left24 } src = Src::Copy;
    if (tag == kTagPcm && bits == 16 && block == 2 * channels) {
        out.format.format = SampleFormat::S16_LE;
    } else if (tag == kTagPcm && bits == 24 && block == 3 * channels) {
        out.format.format = SampleFormat::S24_LE;
        src = Src::Packed24;
    } else if (tag == kTagPcm && bits == 32 && block == 4 * channels) {
        out.format.format = valid == 24 ? SampleFormat::S24_LE : SampleFormat::S32_LE;
        if (valid == 24) src = Src::Left24;
    } else if (tag == kTagFloat && bits == 32 && block == 4 * channels) {
        out.format.format = SampleFormat::FLOAT_LE;
    } else {
        throw fail("unsupported sample format (tag " + std::to_string(tag) + ", " + std::to_string(bits) + " bits)");
    }

    const std::size_t frames = data_size / block;
    out.samples.resize(frames * out.format.frame_bytes());
    const std::size_t n = frames * channels;
    switch (src) {
        case Src::Copy: std::memcpy(out.samples.data(), data, out.samples.size()); break;
        case Src::Packed24:
            for (std::size_t i = 0; i < n; ++i) {
                const std::byte* s = data + 3 * i;
                // assemble in the top 24 bits, then shift down arithmetically to sign-extend
                const auto u = static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(s[0])) << 8 |
                               static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(s[1])) << 16 |
                               static_cast<std::uint32_t>(std::to_integer<std::uint8_t>(s[2])) << 24;
                const std::int32_t v = static_cast<std::int32_t>(u) >> 8;
                std::memcpy(out.samples.data() + 4 * i, &v, 4);
            }
            break;
        case Src::Left24:
            for (std::size_t i = 0; i < n; ++i) {
                const std::int32_t v = static_cast<std::int32_t>(rd32(data + 4 * i)) >> 8;
                std::memcpy(out.samples.data() + 4 * i, &v, 4);
            }
            break;
    }
    return out;
}

}  // namespace vsnd::guest
