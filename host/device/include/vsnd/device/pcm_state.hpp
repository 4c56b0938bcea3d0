// The PCM command state machine of virtio-snd §5.14.6.6.1, with the tolerance the Linux driver
// needs: RELEASE of a stream that holds no resources is a harmless no-op (the driver re-sends it
// from sync_stop), and SET_PARAMS is accepted from a fresh stream after a device reset (resume).
#pragma once

#include "vsnd/wire/virtio_snd.hpp"

#include <optional>
#include <string_view>

namespace vsnd::device {

enum class PcmState { Initial, ParamsSet, Prepared, Started, Stopped, Released };
std::string_view name(PcmState s);

// The state a command leads to from `from`, or nullopt if the command is not valid there.
std::optional<PcmState> transition(PcmState from, wire::Code command);

// Whether I/O messages may be queued: pre-fill in PREPARE, running, and paused (Linux writes
// while paused).
constexpr bool accepts_io(PcmState s) {
    return s == PcmState::Prepared || s == PcmState::Started || s == PcmState::Stopped;
}

} // namespace vsnd::device
