#include "vsnd/wire/virtio_snd.hpp"
#include "vsnd/wire/control_structs.hpp"

#include <linux/virtio_snd.h>

#include <algorithm>
#include <cstring>
#include <endian.h>

namespace vsnd::wire {
namespace {

static_assert(sizeof(virtio_snd_hdr) == wire_size<Header>);
static_assert(sizeof(virtio_snd_event) == wire_size<Event>);
static_assert(sizeof(virtio_snd_query_info) == wire_size<QueryInfo>);
static_assert(sizeof(virtio_snd_jack_hdr) == wire_size<JackHeader>);
static_assert(sizeof(virtio_snd_jack_info) == wire_size<JackInfo>);
static_assert(sizeof(virtio_snd_jack_remap) == wire_size<JackRemap>);
static_assert(sizeof(virtio_snd_pcm_hdr) == wire_size<PcmHeader>);
static_assert(sizeof(virtio_snd_pcm_info) == wire_size<PcmInfo>);
static_assert(sizeof(virtio_snd_pcm_set_params) == wire_size<PcmSetParams>);
static_assert(sizeof(virtio_snd_pcm_xfer) == wire_size<PcmXfer>);
static_assert(sizeof(virtio_snd_pcm_status) == wire_size<PcmStatus>);
static_assert(sizeof(virtio_snd_chmap_info) == wire_size<ChmapInfo>);
static_assert(VIRTIO_SND_CHMAP_MAX_SIZE == kChmapMaxSize);
static_assert(VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME + 1 == kPcmFormatCount);
static_assert(VIRTIO_SND_CHMAP_BRC + 1 == kChannelPositionCount);
static_assert(VIRTIO_SND_PCM_RATE_384000 == static_cast<int>(PcmRate::R384000));

// v1.3 control layouts (not in the installed uapi header).
struct RawCtlHdr { __le32 code; __le32 control_id; };
struct RawCtlEvent { __le32 code; __le16 control_id; __le16 mask; };
struct RawCtlInfo {
    virtio_snd_info hdr;
    __le32 role, type, access, count, index;
    std::uint8_t name[kCtlNameSize];
    std::uint8_t pad[4]; // the value union holds 64-bit members, so it is 8-aligned
    union {
        struct { __le32 min, max, step; } integer;
        struct { __le64 min, max, step; } integer64;
        struct { __le32 items; } enumerated;
    } value;
};
static_assert(sizeof(RawCtlHdr) == wire_size<CtlHeader>);
static_assert(sizeof(RawCtlEvent) == wire_size<CtlEvent>);
static_assert(sizeof(RawCtlInfo) == wire_size<CtlInfo>);

template <class Raw, class T>
Bytes<T> to_bytes(const Raw& raw) {
    static_assert(sizeof(Raw) == wire_size<T>);
    Bytes<T> out;
    std::memcpy(out.data(), &raw, sizeof raw);
    return out;
}

template <class Raw>
Decoded<Raw> raw_from(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < sizeof(Raw)) return Unexpected{WireError::Truncated};
    if (bytes.size() > sizeof(Raw)) return Unexpected{WireError::Oversized};
    Raw raw;
    std::memcpy(&raw, bytes.data(), sizeof raw);
    return raw;
}

std::uint32_t le(__le32 v) { return le32toh(v); }
std::uint64_t le(__le64 v) { return le64toh(v); }
__le32 to_le32(std::uint32_t v) { return htole32(v); }
__le64 to_le64(std::uint64_t v) { return htole64(v); }
std::uint32_t raw(Code c) { return static_cast<std::uint32_t>(c); }

std::optional<Status> to_status(std::uint32_t v) {
    if (v >= 0x8000 && v <= 0x8003) return static_cast<Status>(v);
    return std::nullopt;
}
std::optional<Direction> to_direction(std::uint8_t v) {
    if (v <= 1) return static_cast<Direction>(v);
    return std::nullopt;
}

} // namespace

std::optional<FormatInfo> format_info(PcmFormat f) {
    switch (f) {
    case PcmFormat::ImaAdpcm: return FormatInfo{4, 0};
    case PcmFormat::MuLaw: case PcmFormat::ALaw: case PcmFormat::S8: case PcmFormat::U8:
    case PcmFormat::DsdU8: return FormatInfo{8, 1};
    case PcmFormat::S16: case PcmFormat::U16: case PcmFormat::DsdU16: return FormatInfo{16, 2};
    case PcmFormat::S18_3: case PcmFormat::U18_3: return FormatInfo{18, 3};
    case PcmFormat::S20_3: case PcmFormat::U20_3: return FormatInfo{20, 3};
    case PcmFormat::S24_3: case PcmFormat::U24_3: return FormatInfo{24, 3};
    case PcmFormat::S20: case PcmFormat::U20: return FormatInfo{20, 4};
    case PcmFormat::S24: case PcmFormat::U24: return FormatInfo{24, 4};
    case PcmFormat::S32: case PcmFormat::U32: case PcmFormat::Float: case PcmFormat::DsdU32:
    case PcmFormat::Iec958Subframe: return FormatInfo{32, 4};
    case PcmFormat::Float64: return FormatInfo{64, 8};
    }
    return std::nullopt;
}

std::optional<PcmFormat> to_format(std::uint8_t v) {
    if (v < kPcmFormatCount) return static_cast<PcmFormat>(v);
    return std::nullopt;
}
std::optional<PcmRate> to_rate(std::uint8_t v) {
    if (v < kPcmRateCount) return static_cast<PcmRate>(v);
    return std::nullopt;
}

static constexpr std::uint32_t kRateHz[kPcmRateCount] = {
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000,
    384000, 12000, 24000,
};
std::uint32_t rate_hz(PcmRate r) { return kRateHz[static_cast<unsigned>(r)]; }
std::optional<PcmRate> rate_from_hz(std::uint32_t hz) {
    for (unsigned i = 0; i < kPcmRateCount; ++i)
        if (kRateHz[i] == hz) return static_cast<PcmRate>(i);
    return std::nullopt;
}

std::string_view name(PcmFormat f) {
    static constexpr std::string_view names[kPcmFormatCount] = {
        "IMA_ADPCM", "MU_LAW", "A_LAW", "S8", "U8", "S16", "U16", "S18_3", "U18_3", "S20_3",
        "U20_3", "S24_3", "U24_3", "S20", "U20", "S24", "U24", "S32", "U32", "FLOAT", "FLOAT64",
        "DSD_U8", "DSD_U16", "DSD_U32", "IEC958_SUBFRAME",
    };
    auto i = static_cast<unsigned>(f);
    return i < kPcmFormatCount ? names[i] : "?";
}

std::string_view name(Code c) {
    switch (c) {
    case Code::JackInfo: return "JACK_INFO";
    case Code::JackRemap: return "JACK_REMAP";
    case Code::PcmInfo: return "PCM_INFO";
    case Code::PcmSetParams: return "PCM_SET_PARAMS";
    case Code::PcmPrepare: return "PCM_PREPARE";
    case Code::PcmRelease: return "PCM_RELEASE";
    case Code::PcmStart: return "PCM_START";
    case Code::PcmStop: return "PCM_STOP";
    case Code::ChmapInfo: return "CHMAP_INFO";
    case Code::CtlInfo: return "CTL_INFO";
    case Code::CtlEnumItems: return "CTL_ENUM_ITEMS";
    case Code::CtlRead: return "CTL_READ";
    case Code::CtlWrite: return "CTL_WRITE";
    case Code::CtlTlvRead: return "CTL_TLV_READ";
    case Code::CtlTlvWrite: return "CTL_TLV_WRITE";
    case Code::CtlTlvCommand: return "CTL_TLV_COMMAND";
    case Code::EvtJackConnected: return "EVT_JACK_CONNECTED";
    case Code::EvtJackDisconnected: return "EVT_JACK_DISCONNECTED";
    case Code::EvtPcmPeriodElapsed: return "EVT_PCM_PERIOD_ELAPSED";
    case Code::EvtPcmXrun: return "EVT_PCM_XRUN";
    case Code::EvtCtlNotify: return "EVT_CTL_NOTIFY";
    }
    return "UNKNOWN";
}

std::string_view name(Status s) {
    switch (s) {
    case Status::Ok: return "OK";
    case Status::BadMsg: return "BAD_MSG";
    case Status::NotSupp: return "NOT_SUPP";
    case Status::IoErr: return "IO_ERR";
    }
    return "UNKNOWN";
}

std::string_view describe(WireError e) {
    switch (e) {
    case WireError::Truncated: return "message shorter than its structure";
    case WireError::Oversized: return "message longer than its structure";
    case WireError::InvalidValue: return "field holds a value the spec does not define";
    }
    return "?";
}

std::uint32_t ctl_max_count(CtlType t) {
    switch (t) {
    case CtlType::Boolean: case CtlType::Integer: case CtlType::Enumerated: return 128;
    case CtlType::Integer64: return 64;
    case CtlType::Bytes: return 512;
    case CtlType::Iec958: return 1;
    }
    return 0;
}

// ---- encode ----------------------------------------------------------------------------------

Bytes<Header> encode(const Header& m) {
    return to_bytes<virtio_snd_hdr, Header>({to_le32(raw(m.code))});
}
Bytes<StatusHeader> encode(const StatusHeader& m) {
    return to_bytes<virtio_snd_hdr, StatusHeader>({to_le32(static_cast<std::uint32_t>(m.status))});
}
Bytes<Event> encode(const Event& m) {
    return to_bytes<virtio_snd_event, Event>({{to_le32(raw(m.type))}, to_le32(m.data)});
}
Bytes<QueryInfo> encode(const QueryInfo& m) {
    return to_bytes<virtio_snd_query_info, QueryInfo>(
        {{to_le32(raw(m.code))}, to_le32(m.start_id), to_le32(m.count), to_le32(m.size)});
}
Bytes<JackHeader> encode(const JackHeader& m) {
    return to_bytes<virtio_snd_jack_hdr, JackHeader>({{to_le32(raw(m.code))}, to_le32(m.jack_id)});
}
Bytes<JackInfo> encode(const JackInfo& m) {
    virtio_snd_jack_info r{};
    r.hdr.hda_fn_nid = to_le32(m.hda_fn_nid);
    r.features = to_le32(m.features);
    r.hda_reg_defconf = to_le32(m.hda_reg_defconf);
    r.hda_reg_caps = to_le32(m.hda_reg_caps);
    r.connected = m.connected ? 1 : 0;
    return to_bytes<virtio_snd_jack_info, JackInfo>(r);
}
Bytes<JackRemap> encode(const JackRemap& m) {
    return to_bytes<virtio_snd_jack_remap, JackRemap>(
        {{{to_le32(raw(Code::JackRemap))}, to_le32(m.jack_id)}, to_le32(m.association),
         to_le32(m.sequence)});
}
Bytes<PcmHeader> encode(const PcmHeader& m) {
    return to_bytes<virtio_snd_pcm_hdr, PcmHeader>({{to_le32(raw(m.code))}, to_le32(m.stream_id)});
}
Bytes<PcmInfo> encode(const PcmInfo& m) {
    virtio_snd_pcm_info r{};
    r.hdr.hda_fn_nid = to_le32(m.hda_fn_nid);
    r.features = to_le32(m.features);
    r.formats = to_le64(m.formats);
    r.rates = to_le64(m.rates);
    r.direction = static_cast<std::uint8_t>(m.direction);
    r.channels_min = m.channels_min;
    r.channels_max = m.channels_max;
    return to_bytes<virtio_snd_pcm_info, PcmInfo>(r);
}
Bytes<PcmSetParams> encode(const PcmSetParams& m) {
    virtio_snd_pcm_set_params r{};
    r.hdr.hdr.code = to_le32(raw(Code::PcmSetParams));
    r.hdr.stream_id = to_le32(m.stream_id);
    r.buffer_bytes = to_le32(m.buffer_bytes);
    r.period_bytes = to_le32(m.period_bytes);
    r.features = to_le32(m.features);
    r.channels = m.channels;
    r.format = static_cast<std::uint8_t>(m.format);
    r.rate = static_cast<std::uint8_t>(m.rate);
    return to_bytes<virtio_snd_pcm_set_params, PcmSetParams>(r);
}
Bytes<PcmXfer> encode(const PcmXfer& m) {
    return to_bytes<virtio_snd_pcm_xfer, PcmXfer>({to_le32(m.stream_id)});
}
Bytes<PcmStatus> encode(const PcmStatus& m) {
    return to_bytes<virtio_snd_pcm_status, PcmStatus>(
        {to_le32(static_cast<std::uint32_t>(m.status)), to_le32(m.latency_bytes)});
}
Bytes<ChmapInfo> encode(const ChmapInfo& m) {
    virtio_snd_chmap_info r{};
    r.hdr.hda_fn_nid = to_le32(m.hda_fn_nid);
    r.direction = static_cast<std::uint8_t>(m.direction);
    r.channels = m.channels;
    for (unsigned i = 0; i < kChmapMaxSize; ++i) r.positions[i] = static_cast<std::uint8_t>(m.positions[i]);
    return to_bytes<virtio_snd_chmap_info, ChmapInfo>(r);
}
std::array<std::uint8_t, 16> encode(const Config& m) {
    std::array<std::uint8_t, 16> out{};
    const __le32 v[4] = {to_le32(m.jacks), to_le32(m.streams), to_le32(m.chmaps), to_le32(m.controls)};
    std::memcpy(out.data(), v, sizeof v);
    return out;
}

Bytes<CtlHeader> encode(const CtlHeader& m) {
    return to_bytes<RawCtlHdr, CtlHeader>({to_le32(raw(m.code)), to_le32(m.control_id)});
}
Bytes<CtlEvent> encode(const CtlEvent& m) {
    return to_bytes<RawCtlEvent, CtlEvent>(
        {to_le32(raw(Code::EvtCtlNotify)), htole16(m.control_id), htole16(m.mask)});
}
Bytes<CtlInfo> encode(const CtlInfo& m) {
    RawCtlInfo r{};
    r.hdr.hda_fn_nid = to_le32(m.hda_fn_nid);
    r.role = to_le32(m.role);
    r.type = to_le32(static_cast<std::uint32_t>(m.type));
    r.access = to_le32(m.access);
    r.count = to_le32(m.count);
    r.index = to_le32(m.index);
    // Always 0-terminated: at most kCtlNameSize - 1 characters are kept.
    std::memcpy(r.name, m.name.data(), std::min(m.name.size(), kCtlNameSize - 1));
    if (m.type == CtlType::Integer64) {
        r.value.integer64 = {to_le64(static_cast<std::uint64_t>(m.min)),
                             to_le64(static_cast<std::uint64_t>(m.max)),
                             to_le64(static_cast<std::uint64_t>(m.step))};
    } else if (m.type == CtlType::Enumerated) {
        r.value.enumerated.items = to_le32(m.items);
    } else {
        r.value.integer = {to_le32(static_cast<std::uint32_t>(m.min)),
                           to_le32(static_cast<std::uint32_t>(m.max)),
                           to_le32(static_cast<std::uint32_t>(m.step))};
    }
    return to_bytes<RawCtlInfo, CtlInfo>(r);
}

// ---- decode ----------------------------------------------------------------------------------

template <>
Decoded<Header> decode<Header>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_hdr>(b);
    if (!r) return Unexpected{r.error()};
    return Header{static_cast<Code>(le(r->code))};
}
template <>
Decoded<StatusHeader> decode<StatusHeader>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_hdr>(b);
    if (!r) return Unexpected{r.error()};
    auto s = to_status(le(r->code));
    if (!s) return Unexpected{WireError::InvalidValue};
    return StatusHeader{*s};
}
template <>
Decoded<Event> decode<Event>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_event>(b);
    if (!r) return Unexpected{r.error()};
    return Event{static_cast<Code>(le(r->hdr.code)), le(r->data)};
}
template <>
Decoded<QueryInfo> decode<QueryInfo>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_query_info>(b);
    if (!r) return Unexpected{r.error()};
    return QueryInfo{static_cast<Code>(le(r->hdr.code)), le(r->start_id), le(r->count), le(r->size)};
}
template <>
Decoded<JackHeader> decode<JackHeader>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_jack_hdr>(b);
    if (!r) return Unexpected{r.error()};
    return JackHeader{static_cast<Code>(le(r->hdr.code)), le(r->jack_id)};
}
template <>
Decoded<JackInfo> decode<JackInfo>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_jack_info>(b);
    if (!r) return Unexpected{r.error()};
    if (r->connected > 1) return Unexpected{WireError::InvalidValue};
    return JackInfo{le(r->hdr.hda_fn_nid), le(r->features), le(r->hda_reg_defconf),
                    le(r->hda_reg_caps), r->connected == 1};
}
template <>
Decoded<JackRemap> decode<JackRemap>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_jack_remap>(b);
    if (!r) return Unexpected{r.error()};
    return JackRemap{le(r->hdr.jack_id), le(r->association), le(r->sequence)};
}
template <>
Decoded<PcmHeader> decode<PcmHeader>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_pcm_hdr>(b);
    if (!r) return Unexpected{r.error()};
    return PcmHeader{static_cast<Code>(le(r->hdr.code)), le(r->stream_id)};
}
template <>
Decoded<PcmInfo> decode<PcmInfo>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_pcm_info>(b);
    if (!r) return Unexpected{r.error()};
    auto dir = to_direction(r->direction);
    if (!dir) return Unexpected{WireError::InvalidValue};
    return PcmInfo{le(r->hdr.hda_fn_nid), le(r->features), le(r->formats), le(r->rates), *dir,
                   r->channels_min, r->channels_max};
}
template <>
Decoded<PcmSetParams> decode<PcmSetParams>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_pcm_set_params>(b);
    if (!r) return Unexpected{r.error()};
    auto fmt = to_format(r->format);
    auto rate = to_rate(r->rate);
    if (!fmt || !rate) return Unexpected{WireError::InvalidValue};
    return PcmSetParams{le(r->hdr.stream_id), le(r->buffer_bytes), le(r->period_bytes),
                        le(r->features), r->channels, *fmt, *rate};
}
template <>
Decoded<PcmXfer> decode<PcmXfer>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_pcm_xfer>(b);
    if (!r) return Unexpected{r.error()};
    return PcmXfer{le(r->stream_id)};
}
template <>
Decoded<PcmStatus> decode<PcmStatus>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_pcm_status>(b);
    if (!r) return Unexpected{r.error()};
    auto s = to_status(le(r->status));
    if (!s) return Unexpected{WireError::InvalidValue};
    return PcmStatus{*s, le(r->latency_bytes)};
}
template <>
Decoded<ChmapInfo> decode<ChmapInfo>(std::span<const std::uint8_t> b) {
    auto r = raw_from<virtio_snd_chmap_info>(b);
    if (!r) return Unexpected{r.error()};
    auto dir = to_direction(r->direction);
    if (!dir || r->channels > kChmapMaxSize) return Unexpected{WireError::InvalidValue};
    ChmapInfo m{le(r->hdr.hda_fn_nid), *dir, r->channels, {}};
    for (unsigned i = 0; i < kChmapMaxSize; ++i) {
        if (r->positions[i] >= kChannelPositionCount) return Unexpected{WireError::InvalidValue};
        m.positions[i] = static_cast<ChannelPosition>(r->positions[i]);
    }
    return m;
}
template <>
Decoded<CtlHeader> decode<CtlHeader>(std::span<const std::uint8_t> b) {
    auto r = raw_from<RawCtlHdr>(b);
    if (!r) return Unexpected{r.error()};
    return CtlHeader{static_cast<Code>(le(r->code)), le(r->control_id)};
}
template <>
Decoded<CtlEvent> decode<CtlEvent>(std::span<const std::uint8_t> b) {
    auto r = raw_from<RawCtlEvent>(b);
    if (!r) return Unexpected{r.error()};
    if (le(r->code) != raw(Code::EvtCtlNotify) || (le16toh(r->mask) & ~0x7u))
        return Unexpected{WireError::InvalidValue};
    return CtlEvent{le16toh(r->control_id), le16toh(r->mask)};
}

Decoded<Config> decode_config(std::span<const std::uint8_t> b) {
    if (b.size() < 12) return Unexpected{WireError::Truncated};
    if (b.size() > 16 || b.size() % 4) return Unexpected{WireError::Oversized};
    __le32 v[4] = {};
    std::memcpy(v, b.data(), b.size());
    return Config{le(v[0]), le(v[1]), le(v[2]), b.size() == 16 ? le(v[3]) : 0};
}

Decoded<Code> peek_code(std::span<const std::uint8_t> b) {
    if (b.size() < wire_size<Header>) return Unexpected{WireError::Truncated};
    return decode<Header>(b.first(wire_size<Header>))->code;
}

} // namespace vsnd::wire
