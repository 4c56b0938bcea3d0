#include "vsnd/backends/null_backend.hpp"

namespace vsnd::backends {

void register_null_backend(device::BackendRegistry& registry) {
    registry.add({"null",
                  "playback discarded and capture silent, both paced in real time",
                  {{"unpaced", "1: play everything the instant it arrives (benchmarks)"}},
                  [](const Clock& clock, const device::BackendOptions& o)
                      -> Expected<std::unique_ptr<device::AudioBackend>, std::string> {
                      const auto unpaced = o.get("unpaced").value_or("0");
                      if (unpaced != "0" && unpaced != "1") return Unexpected{std::string("null unpaced: 0 or 1")};
                      return std::unique_ptr<device::AudioBackend>(
                          std::make_unique<NullBackend>(clock, PacedTiming{}, unpaced == "1"));
                  }});
}

} // namespace vsnd::backends
