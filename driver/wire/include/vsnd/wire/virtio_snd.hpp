// Typed C++ view of the virtio-snd wire format (virtio spec v1.2 §5.14, control elements of v1.3,
// rates of v1.4). Layouts come from <linux/virtio_snd.h>; what that header lacks (controls) is
// defined in control_structs.hpp. All wire values are little-endian; decode() checks the exact
// size and value ranges and returns an error value, never a crash.
#pragma once

#include "vsnd/expected.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace vsnd::wire {

// The four virtqueues of a virtio-snd device, in the spec's order (v1.2 §5.14.2).
enum class QueueIndex : std::uint8_t { Control = 0, Event = 1, Tx = 2, Rx = 3 };
inline constexpr unsigned kQueueCount = 4;

enum class Code : std::uint32_t {
    JackInfo = 0x0001, JackRemap = 0x0002,
    PcmInfo = 0x0100, PcmSetParams = 0x0101, PcmPrepare = 0x0102, PcmRelease = 0x0103,
    PcmStart = 0x0104, PcmStop = 0x0105,
    ChmapInfo = 0x0200,
    CtlInfo = 0x0300, CtlEnumItems = 0x0301, CtlRead = 0x0302, CtlWrite = 0x0303,
    CtlTlvRead = 0x0304, CtlTlvWrite = 0x0305, CtlTlvCommand = 0x0306,
    EvtJackConnected = 0x1000, EvtJackDisconnected = 0x1001,
    EvtPcmPeriodElapsed = 0x1100, EvtPcmXrun = 0x1101,
    EvtCtlNotify = 0x1200,
};

enum class Status : std::uint32_t { Ok = 0x8000, BadMsg = 0x8001, NotSupp = 0x8002, IoErr = 0x8003 };

enum class Direction : std::uint8_t { Output = 0, Input = 1 };

// Bit index in pcm_info.formats == enum value.
enum class PcmFormat : std::uint8_t {
    ImaAdpcm = 0, MuLaw, ALaw, S8, U8, S16, U16, S18_3, U18_3, S20_3, U20_3, S24_3, U24_3,
    S20, U20, S24, U24, S32, U32, Float, Float64, DsdU8, DsdU16, DsdU32, Iec958Subframe,
};
inline constexpr unsigned kPcmFormatCount = 25;

// Bit index in pcm_info.rates == enum value. 12000/24000 were appended in v1.4, out of order.
enum class PcmRate : std::uint8_t {
    R5512 = 0, R8000, R11025, R16000, R22050, R32000, R44100, R48000, R64000, R88200, R96000,
    R176400, R192000, R384000, R12000, R24000,
};
inline constexpr unsigned kPcmRateCount = 16;

enum class ChannelPosition : std::uint8_t {
    None = 0, NA, Mono, FL, FR, RL, RR, FC, LFE, SL, SR, RC, FLC, FRC, RLC, RRC, FLW, FRW, FLH,
    FCH, FRH, TC, TFL, TFR, TFC, TRL, TRR, TRC, TFLC, TFRC, TSL, TSR, LLFE, RLFE, BC, BLC, BRC,
};
inline constexpr unsigned kChannelPositionCount = 37;
inline constexpr unsigned kChmapMaxSize = 18;

// Per-stream feature bits (pcm_info.features / set_params.features).
enum class PcmFeature : std::uint8_t {
    ShmemHost = 0, ShmemGuest = 1, MsgPolling = 2, EvtShmemPeriods = 3, EvtXruns = 4,
};
constexpr std::uint32_t bit(PcmFeature f) { return 1u << static_cast<unsigned>(f); }
inline constexpr std::uint32_t kJackFeatureRemap = 1u << 0;
inline constexpr std::uint64_t kFeatureCtls = 1ull << 0; // VIRTIO_SND_F_CTLS (v1.3)

// Format facts: sample width and the bytes one sample occupies in memory.
struct FormatInfo {
    unsigned significant_bits;
    unsigned physical_bytes; // 0 for formats without a whole-byte sample (IMA ADPCM)
};
std::optional<FormatInfo> format_info(PcmFormat f);
std::optional<PcmFormat> to_format(std::uint8_t raw);
std::optional<PcmRate> to_rate(std::uint8_t raw);
std::uint32_t rate_hz(PcmRate r);
std::optional<PcmRate> rate_from_hz(std::uint32_t hz);
std::string_view name(PcmFormat f);
std::string_view name(Code c);
std::string_view name(Status s);

enum class WireError { Truncated, Oversized, InvalidValue };
std::string_view describe(WireError e);
template <class T>
using Decoded = Expected<T, WireError>;

// ---- messages ------------------------------------------------------------------------------

struct Header { Code code; };                      // virtio_snd_hdr (request)
struct StatusHeader { Status status; };            // virtio_snd_hdr (response)
struct Event { Code type; std::uint32_t data; };   // virtio_snd_event
struct QueryInfo { Code code; std::uint32_t start_id, count, size; };
struct JackHeader { Code code; std::uint32_t jack_id; };
struct JackInfo {
    std::uint32_t hda_fn_nid = 0, features = 0, hda_reg_defconf = 0, hda_reg_caps = 0;
    bool connected = false;
};
struct JackRemap { std::uint32_t jack_id, association, sequence; };
struct PcmHeader { Code code; std::uint32_t stream_id; };
struct PcmInfo {
    std::uint32_t hda_fn_nid = 0, features = 0;
    std::uint64_t formats = 0, rates = 0;
    Direction direction = Direction::Output;
    std::uint8_t channels_min = 1, channels_max = 2;
};
struct PcmSetParams {
    std::uint32_t stream_id = 0, buffer_bytes = 0, period_bytes = 0, features = 0;
    std::uint8_t channels = 0;
    PcmFormat format = PcmFormat::S16;
    PcmRate rate = PcmRate::R48000;
};
struct PcmXfer { std::uint32_t stream_id; };
struct PcmStatus { Status status; std::uint32_t latency_bytes; };
struct ChmapInfo {
    std::uint32_t hda_fn_nid = 0;
    Direction direction = Direction::Output;
    std::uint8_t channels = 0;
    std::array<ChannelPosition, kChmapMaxSize> positions{};
};
struct Config { std::uint32_t jacks = 0, streams = 0, chmaps = 0, controls = 0; };

// Wire sizes, fixed by the spec.
template <class T> struct WireSize;
template <> struct WireSize<Header> { static constexpr std::size_t value = 4; };
template <> struct WireSize<StatusHeader> { static constexpr std::size_t value = 4; };
template <> struct WireSize<Event> { static constexpr std::size_t value = 8; };
template <> struct WireSize<QueryInfo> { static constexpr std::size_t value = 16; };
template <> struct WireSize<JackHeader> { static constexpr std::size_t value = 8; };
template <> struct WireSize<JackInfo> { static constexpr std::size_t value = 24; };
template <> struct WireSize<JackRemap> { static constexpr std::size_t value = 16; };
template <> struct WireSize<PcmHeader> { static constexpr std::size_t value = 8; };
template <> struct WireSize<PcmInfo> { static constexpr std::size_t value = 32; };
template <> struct WireSize<PcmSetParams> { static constexpr std::size_t value = 24; };
template <> struct WireSize<PcmXfer> { static constexpr std::size_t value = 4; };
template <> struct WireSize<PcmStatus> { static constexpr std::size_t value = 8; };
template <> struct WireSize<ChmapInfo> { static constexpr std::size_t value = 24; };
template <class T> inline constexpr std::size_t wire_size = WireSize<T>::value;

template <class T> using Bytes = std::array<std::uint8_t, wire_size<T>>;

// encode() writes every byte (padding included, as zeros).
Bytes<Header> encode(const Header&);
Bytes<StatusHeader> encode(const StatusHeader&);
Bytes<Event> encode(const Event&);
Bytes<QueryInfo> encode(const QueryInfo&);
Bytes<JackHeader> encode(const JackHeader&);
Bytes<JackInfo> encode(const JackInfo&);
Bytes<JackRemap> encode(const JackRemap&);
Bytes<PcmHeader> encode(const PcmHeader&);
Bytes<PcmInfo> encode(const PcmInfo&);
Bytes<PcmSetParams> encode(const PcmSetParams&);
Bytes<PcmXfer> encode(const PcmXfer&);
Bytes<PcmStatus> encode(const PcmStatus&);
Bytes<ChmapInfo> encode(const ChmapInfo&);
// Config is 12 bytes, or 16 when VIRTIO_SND_F_CTLS is negotiated.
std::array<std::uint8_t, 16> encode(const Config&);

// decode<T>() requires exactly wire_size<T> bytes. Request codes are not validated here (an
// unknown code is the device's NOT_SUPP, not a framing error); enum fields with a closed set of
// values (status, direction, format, rate, channel position) are.
template <class T> Decoded<T> decode(std::span<const std::uint8_t> bytes);
Decoded<Config> decode_config(std::span<const std::uint8_t> bytes);

// Reads only the leading code of a request, whatever its length.
Decoded<Code> peek_code(std::span<const std::uint8_t> bytes);

} // namespace vsnd::wire
