// The device topology from vsnd-host's command line: `--streams out:1,in:1`, `--formats
// S16,S24`, `--rates 8000-192000` or `44100,48000`, `--channels 1-8` or `2`.
#pragma once

#include "vsnd/device/topology.hpp"
#include "vsnd/expected.hpp"

#include <string>

namespace vsnd::vhost_user {

// Streams one device offers, in all (each costs nothing until it plays).
inline constexpr std::size_t kMaxStreams = 256;

struct TopologySpec {
    std::string streams = "out:1,in:1";
    std::string formats = "S16,S24,S32,FLOAT";
    std::string rates = "8000-192000";
    std::string channels = "1-8";
};

// The topology, or one line saying which option is wrong and why.
Expected<device::Topology, std::string> make_topology(const TopologySpec& spec);

} // namespace vsnd::vhost_user
