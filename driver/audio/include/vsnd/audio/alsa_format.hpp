// The ALSA name of a virtio-snd sample format (both little-endian, same memory layout), for the
// programs that talk to ALSA: the host's ALSA backend and the guest agent. Header-only so that
// vsnd-audio itself does not depend on alsa-lib; include it only where <alsa/asoundlib.h> is.
#pragma once

#include "vsnd/wire/virtio_snd.hpp"

#include <alsa/asoundlib.h>

#include <optional>

namespace vsnd::audio {

inline std::optional<snd_pcm_format_t> alsa_format(wire::PcmFormat f) {
    using F = wire::PcmFormat;
    switch (f) {
    case F::MuLaw: return SND_PCM_FORMAT_MU_LAW;
    case F::ALaw: return SND_PCM_FORMAT_A_LAW;
    case F::S8: return SND_PCM_FORMAT_S8;
    case F::U8: return SND_PCM_FORMAT_U8;
    case F::S16: return SND_PCM_FORMAT_S16_LE;
    case F::U16: return SND_PCM_FORMAT_U16_LE;
    case F::S18_3: return SND_PCM_FORMAT_S18_3LE;
    case F::U18_3: return SND_PCM_FORMAT_U18_3LE;
    case F::S20_3: return SND_PCM_FORMAT_S20_3LE;
    case F::U20_3: return SND_PCM_FORMAT_U20_3LE;
    case F::S24_3: return SND_PCM_FORMAT_S24_3LE;
    case F::U24_3: return SND_PCM_FORMAT_U24_3LE;
    case F::S20: return SND_PCM_FORMAT_S20_LE;
    case F::U20: return SND_PCM_FORMAT_U20_LE;
    case F::S24: return SND_PCM_FORMAT_S24_LE;
    case F::U24: return SND_PCM_FORMAT_U24_LE;
    case F::S32: return SND_PCM_FORMAT_S32_LE;
    case F::U32: return SND_PCM_FORMAT_U32_LE;
    case F::Float: return SND_PCM_FORMAT_FLOAT_LE;
    case F::Float64: return SND_PCM_FORMAT_FLOAT64_LE;
    case F::DsdU8: return SND_PCM_FORMAT_DSD_U8;
    case F::DsdU16: return SND_PCM_FORMAT_DSD_U16_LE;
    case F::DsdU32: return SND_PCM_FORMAT_DSD_U32_LE;
    case F::Iec958Subframe: return SND_PCM_FORMAT_IEC958_SUBFRAME_LE;
    case F::ImaAdpcm: return std::nullopt;
    }
    return std::nullopt;
}

} // namespace vsnd::audio
