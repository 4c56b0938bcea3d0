// The vhost-user wire protocol as vhost-user-snd uses it: request codes, feature bits, the
// 12-byte header, the payloads, and a strict parser. The parser knows nothing about connection
// state; everything it accepts is well-formed on its own (exact sizes, fd counts, queue indices,
// ring sizes, alignments, non-overlapping regions). It never crashes on input and closes every
// fd of a message it rejects. Values are native-endian, as the protocol defines them.
#pragma once

#include "vsnd/expected.hpp"
#include "vsnd/wire/virtio_snd.hpp"
#include "vsnd/vhost_user/unique_fd.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace vsnd::vhost_user {

enum class Request : std::uint32_t {
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    SetBackendReqFd = 21,
    GetConfig = 24,
    SetConfig = 25,
    ResetDevice = 34,
    GetMaxMemSlots = 36,
    AddMemReg = 37,
    RemMemReg = 38,
    SetStatus = 39,
    GetStatus = 40,
};
// Name of any request code, "request <n>" for codes without one.
std::string request_name(std::uint32_t code);
inline std::string request_name(Request r) { return request_name(static_cast<std::uint32_t>(r)); }

// Header flags.
inline constexpr std::uint32_t kVersionMask = 0x3;
inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kFlagReply = 0x4;
inline constexpr std::uint32_t kFlagNeedReply = 0x8;
inline constexpr std::uint32_t kReplyFlags = kVersion | kFlagReply; // QEMU accepts exactly 0x5

inline constexpr std::size_t kHeaderSize = 12;
inline constexpr std::size_t kMaxFds = 8;        // VHOST_MEMORY_BASELINE_NREGIONS
inline constexpr std::size_t kMaxRegions = 8;
inline constexpr std::size_t kMaxConfigSize = 256; // VHOST_USER_MAX_CONFIG_SIZE
inline constexpr std::size_t kRegionSize = 32;
inline constexpr std::size_t kConfigHeaderSize = 12;
// Requests we do not implement are read (and refused) up to this size; larger ones are garbage.
inline constexpr std::size_t kMaxPayload = 4096;

// Virtio feature bits (GET/SET_FEATURES).
inline constexpr std::uint64_t kFeatureRingIndirectDesc = 1ull << 28;
inline constexpr std::uint64_t kFeatureRingEventIdx = 1ull << 29;
inline constexpr std::uint64_t kFeatureProtocolFeatures = 1ull << 30; // VHOST_USER_F_PROTOCOL_FEATURES
inline constexpr std::uint64_t kFeatureVersion1 = 1ull << 32;

// Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
inline constexpr std::uint64_t kProtocolMq = 1ull << 0;
inline constexpr std::uint64_t kProtocolReplyAck = 1ull << 3;
inline constexpr std::uint64_t kProtocolConfig = 1ull << 9;

// SET_VRING_KICK/CALL/ERR payload bits.
inline constexpr std::uint64_t kVringFileIndexMask = 0xff;
inline constexpr std::uint64_t kVringFileNoFd = 0x100;
// SET_VRING_ADDR flags: only VHOST_VRING_F_LOG is defined.
inline constexpr std::uint32_t kVringAddrFlagLog = 0x1;

struct Header {
    std::uint32_t request = 0;
    std::uint32_t flags = 0;
    std::uint32_t size = 0;
    bool need_reply() const { return (flags & kFlagNeedReply) != 0; }
};

struct VringState {
    std::uint32_t index = 0;
    std::uint32_t num = 0;
};
struct VringAddr {
    std::uint32_t index = 0;
    std::uint32_t flags = 0;
    std::uint64_t desc = 0, used = 0, avail = 0, log = 0; // wire order: used before avail
};
struct VringFile {
    std::uint32_t index = 0;
    bool no_fd = false; // the fd (if any) is in Message::fds
};
struct RegionDesc {
    std::uint64_t guest_addr = 0, size = 0, user_addr = 0, mmap_offset = 0;
};
struct MemoryTable {
    std::vector<RegionDesc> regions; // region i's fd is Message::fds[i]
};
struct ConfigSpace {
    std::uint32_t offset = 0, size = 0, flags = 0;
    std::vector<std::uint8_t> data; // exactly `size` bytes
};

// Which payload a request carries: none (also every request we do not implement), a u64, or
// one of the structures above.
using Body = std::variant<std::monostate, std::uint64_t, VringState, VringAddr, VringFile, MemoryTable, ConfigSpace>;

struct Message {
    Header header;
    Body body;
    std::vector<UniqueFd> fds;
    // One of the requests this parser validates (see implemented()).
    bool known = false;
};

// The requests the backend implements and the parser validates field by field.
bool implemented(std::uint32_t request);

enum class ParseError {
    TruncatedHeader,  // fewer than 12 bytes
    BadVersion,       // flags bits 0-1 are not 1
    BadFlags,         // REPLY or an undefined flag bit on a request
    Oversized,        // payload larger than any valid one for this request
    SizeMismatch,     // payload size not the exact size of this request
    FdCount,          // wrong number of fds for the request, or more than 8
    BadQueueIndex,    // queue index >= 4, or undefined bits in a vring file payload
    BadVringNum,      // SET_VRING_NUM not a power of two in 1..32768
    BadVringBase,     // SET_VRING_BASE beyond a 16-bit index
    BadVringAddr,     // undefined flags, or a misaligned ring part
    BadMemoryTable,   // region count, an empty/wrapping/overlapping region
    BadConfig,        // config offset/size/flags out of range
    BadEnable,        // SET_VRING_ENABLE with a value other than 0/1
};
std::string_view describe(ParseError e);

struct ParseFailure {
    ParseError error;
    std::string detail; // one line, for the log
};

// Checks a header on its own, before its payload is read: version and flag bits, and that the
// announced size is possible for the request (so an oversized payload is never read).
Expected<Header, ParseFailure> parse_header(std::span<const std::uint8_t> bytes);
// Validates a payload of exactly header.size bytes and the fds that came with the message.
// On failure every fd is closed.
Expected<Message, ParseFailure> parse_body(const Header& header, std::span<const std::uint8_t> payload,
                                           std::vector<UniqueFd> fds);
// Header and payload in one buffer, exactly one message long.
Expected<Message, ParseFailure> parse(std::span<const std::uint8_t> bytes, std::vector<UniqueFd> fds);

// Reassembles messages from a byte stream: asks for exactly the bytes that complete the current
// header or payload, so a read never crosses into the next message, and collects the fds that
// arrive meanwhile (they travel with the message's first bytes).
class FrameReader {
public:
    FrameReader() { reset(); }
    // Where the next bytes go; never empty.
    std::span<std::uint8_t> buffer();
    // `n` bytes were written to buffer() and `fds` arrived with them. Returns a message once
    // complete, nullopt while incomplete, or the reason the stream is broken.
    Expected<std::optional<Message>, ParseFailure> commit(std::size_t n, std::vector<UniqueFd> fds);
    // Bytes of an incomplete message are buffered (EOF now means a truncated message).
    bool mid_message() const { return have_ > 0; }

private:
    void reset();
    std::vector<std::uint8_t> buf_;
    std::size_t have_ = 0;
    std::optional<Header> header_;
    std::vector<UniqueFd> fds_;
};

// ---- encoding (both directions) ------------------------------------------------------------

std::vector<std::uint8_t> encode_message(std::uint32_t request, std::uint32_t flags, std::span<const std::uint8_t> payload);
inline std::vector<std::uint8_t> encode_message(Request r, std::uint32_t flags, std::span<const std::uint8_t> payload) {
    return encode_message(static_cast<std::uint32_t>(r), flags, payload);
}
std::vector<std::uint8_t> encode_u64(std::uint64_t v);
std::vector<std::uint8_t> encode(const VringState& s);
std::vector<std::uint8_t> encode(const VringAddr& a);
std::vector<std::uint8_t> encode(const VringFile& f);
std::vector<std::uint8_t> encode(const MemoryTable& t);
std::vector<std::uint8_t> encode(const ConfigSpace& c); // header + data

// A reply (flags 0x5) to `request`.
std::vector<std::uint8_t> encode_reply(std::uint32_t request, std::span<const std::uint8_t> payload);

// Front-end side: checks a reply header against the request it answers and the size expected
// (QEMU's rules: flags exactly 0x5, same request code, exact size).
Expected<Header, std::string> check_reply_header(std::span<const std::uint8_t> bytes, std::uint32_t request,
                                                 std::uint32_t expected_size);

} // namespace vsnd::vhost_user
