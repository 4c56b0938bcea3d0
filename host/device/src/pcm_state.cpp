#include "vsnd/device/pcm_state.hpp"

namespace vsnd::device {

std::string_view name(PcmState s) {
    switch (s) {
    case PcmState::Initial: return "initial";
    case PcmState::ParamsSet: return "params-set";
    case PcmState::Prepared: return "prepared";
    case PcmState::Started: return "started";
    case PcmState::Stopped: return "stopped";
    case PcmState::Released: return "released";
    }
    return "?";
}

std::optional<PcmState> transition(PcmState from, wire::Code command) {
    using S = PcmState;
    switch (command) {
    case wire::Code::PcmSetParams:
        if (from == S::Initial || from == S::ParamsSet || from == S::Prepared || from == S::Released)
            return S::ParamsSet;
        break;
    case wire::Code::PcmPrepare:
        if (from == S::ParamsSet || from == S::Prepared || from == S::Released) return S::Prepared;
        break;
    case wire::Code::PcmStart:
        if (from == S::Prepared || from == S::Stopped) return S::Started;
        break;
    case wire::Code::PcmStop:
        if (from == S::Started) return S::Stopped;
        break;
    case wire::Code::PcmRelease:
        if (from == S::Prepared || from == S::Stopped) return S::Released;
        // Nothing to free: Linux's sync_stop re-sends RELEASE after a reset; stay where we are.
        if (from == S::Initial || from == S::ParamsSet || from == S::Released) return from;
        break;
    default: break;
    }
    return std::nullopt;
}

} // namespace vsnd::device
