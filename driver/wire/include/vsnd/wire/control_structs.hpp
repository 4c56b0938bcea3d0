// virtio-snd control elements (virtio spec v1.3, VIRTIO_SND_F_CTLS). Linux 6.1's uapi header
// predates them, so the layouts are defined here, checked against the spec's sizes.
#pragma once

#include "vsnd/wire/virtio_snd.hpp"

#include <cstdint>
#include <string>

namespace vsnd::wire {

enum class CtlRole : std::uint32_t { Undefined = 0, Volume = 1, Mute = 2, Gain = 3 };
enum class CtlType : std::uint32_t { Boolean = 0, Integer, Integer64, Enumerated, Bytes, Iec958 };
enum class CtlAccess : std::uint8_t {
    Read = 0, Write, Volatile, Inactive, TlvRead, TlvWrite, TlvCommand,
};
enum class CtlNotifyMask : std::uint8_t { Value = 0, Info = 1, Tlv = 2 };

inline constexpr std::size_t kCtlNameSize = 44;
inline constexpr std::size_t kCtlEnumItemSize = 64;
inline constexpr std::size_t kCtlValueSize = 512;

// Largest element count a control of each type may declare (spec table).
std::uint32_t ctl_max_count(CtlType t);

struct CtlHeader { Code code; std::uint32_t control_id; };
struct CtlEvent { std::uint16_t control_id, mask; }; // type is always EvtCtlNotify
struct CtlInfo {
    std::uint32_t hda_fn_nid = 0;
    std::uint32_t role = 0; // raw: bit 0 carries the direction when role != Undefined
    CtlType type = CtlType::Boolean;
    std::uint32_t access = 0, count = 0, index = 0;
    std::string name;
    // INTEGER: min/max/step in the first three; INTEGER64 uses all 64 bits; ENUMERATED: items.
    std::int64_t min = 0, max = 0, step = 0;
    std::uint32_t items = 0;
};

template <> struct WireSize<CtlHeader> { static constexpr std::size_t value = 8; };
template <> struct WireSize<CtlEvent> { static constexpr std::size_t value = 8; };
template <> struct WireSize<CtlInfo> { static constexpr std::size_t value = 96; };

Bytes<CtlHeader> encode(const CtlHeader&);
Bytes<CtlEvent> encode(const CtlEvent&);
Bytes<CtlInfo> encode(const CtlInfo&);

} // namespace vsnd::wire
