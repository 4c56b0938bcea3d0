// SDP (files and SAP payloads), SAP packets and the SAP directory on hostile input: nothing
// crashes, the directory stays within its bound, and whatever parses writes back and parses again.
#include "vsnd/rtp/sap.hpp"
#include "vsnd/rtp/sap_directory.hpp"
#include "vsnd/rtp/sdp.hpp"
#include "vsnd/rtp/rtcp.hpp"

#include <cstdlib>
#include <string_view>

using namespace vsnd;
using namespace vsnd::rtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::span<const std::uint8_t> rest(data + 1, size - 1);
    switch (data[0] % 3) {
    case 0: {
        auto s = parse_sdp(std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size()));
        if (s) {
            SdpAnnouncement a;
            a.format = s->format;
            a.port = s->port;
            a.name = "x";
            auto again = parse_sdp(write_sdp(a));
            auto without_order = s->format;
            without_order.channel_order.clear(); // not written back
            if (!again || again->format != without_order || again->port != s->port) std::abort();
        }
        break;
    }
    case 1: {
        SapDirectory dir(8, 5'000'000'000);
        Nanos now = 0;
        // Several announcements from the one input, split at 0xff bytes.
        std::size_t start = 0;
        for (std::size_t i = 0; i <= rest.size(); ++i)
            if (i == rest.size() || rest[i] == 0xff) {
                dir.on_datagram(rest.subspan(start, i - start), now += 1'000'000'000);
                start = i + 1;
                if (dir.entries().size() > 8) std::abort();
            }
        dir.expire(now);
        (void)dir.find("x");
        break;
    }
    case 2: (void)parse_rtcp(rest); break;
    }
    return 0;
}
