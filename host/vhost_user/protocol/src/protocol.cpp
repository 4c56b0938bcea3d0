#include "vsnd/vhost_user/protocol.hpp"

#include "vsnd/virtq/split_ring.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace vsnd::vhost_user {
namespace {

std::uint32_t get_u32(std::span<const std::uint8_t> b, std::size_t at) {
    std::uint32_t v;
    std::memcpy(&v, b.data() + at, sizeof v);
    return v;
}
std::uint64_t get_u64(std::span<const std::uint8_t> b, std::size_t at) {
    std::uint64_t v;
    std::memcpy(&v, b.data() + at, sizeof v);
    return v;
}
void put_u32(std::vector<std::uint8_t>& b, std::uint32_t v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
}
void put_u64(std::vector<std::uint8_t>& b, std::uint64_t v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
}

Unexpected<ParseFailure> fail(ParseError e, std::string detail) { return Unexpected{ParseFailure{e, std::move(detail)}}; }

// Payload size of requests with a fixed one.
std::optional<std::size_t> fixed_size(Request r) {
    switch (r) {
    case Request::GetFeatures:
    case Request::SetOwner:
    case Request::GetProtocolFeatures:
    case Request::GetQueueNum: return 0;
    case Request::SetFeatures:
    case Request::SetProtocolFeatures:
    case Request::SetVringNum:
    case Request::SetVringBase:
    case Request::GetVringBase:
    case Request::SetVringKick:
    case Request::SetVringCall:
    case Request::SetVringErr:
    case Request::SetVringEnable: return 8;
    case Request::SetVringAddr: return 40;
    default: return std::nullopt;
    }
}

// Largest payload a request may announce.
std::size_t max_size(std::uint32_t code) {
    if (!implemented(code)) return kMaxPayload;
    const auto r = static_cast<Request>(code);
    if (auto f = fixed_size(r)) return *f;
    if (r == Request::SetMemTable) return 8 + kMaxRegions * kRegionSize;
    return kConfigHeaderSize + kMaxConfigSize; // GET/SET_CONFIG
}

bool overlaps(std::uint64_t a, std::uint64_t alen, std::uint64_t b, std::uint64_t blen) {
    return a < b + blen && b < a + alen; // callers ensure neither range wraps
}

std::string queue_error(std::uint32_t index) { return fmt::format("queue index {} (the device has {})", index, wire::kQueueCount); }

Expected<Body, ParseFailure> parse_memory_table(std::span<const std::uint8_t> p, std::size_t nfds) {
    if (p.size() < 8) return fail(ParseError::SizeMismatch, fmt::format("memory table of {} bytes", p.size()));
    const std::uint32_t n = get_u32(p, 0);
    if (n == 0 || n > kMaxRegions)
        return fail(ParseError::BadMemoryTable, fmt::format("{} regions (1..{} allowed)", n, kMaxRegions));
    if (p.size() != 8 + n * kRegionSize)
        return fail(ParseError::SizeMismatch, fmt::format("memory table of {} regions in {} bytes", n, p.size()));
    if (nfds != n) return fail(ParseError::FdCount, fmt::format("{} fds for {} regions", nfds, n));
    MemoryTable t;
    for (std::uint32_t i = 0; i < n; ++i) {
        const std::size_t at = 8 + i * kRegionSize;
        RegionDesc r{get_u64(p, at), get_u64(p, at + 8), get_u64(p, at + 16), get_u64(p, at + 24)};
        if (r.size == 0) return fail(ParseError::BadMemoryTable, fmt::format("region {} is empty", i));
        if (r.guest_addr + r.size < r.guest_addr || r.user_addr + r.size < r.user_addr ||
            r.mmap_offset + r.size < r.mmap_offset)
            return fail(ParseError::BadMemoryTable, fmt::format("region {} wraps around the address space", i));
        for (std::uint32_t j = 0; j < i; ++j) {
            const auto& o = t.regions[j];
            if (overlaps(r.guest_addr, r.size, o.guest_addr, o.size) || overlaps(r.user_addr, r.size, o.user_addr, o.size))
                return fail(ParseError::BadMemoryTable, fmt::format("regions {} and {} overlap", j, i));
        }
        t.regions.push_back(r);
    }
    return Body{std::move(t)};
}

Expected<Body, ParseFailure> parse_config(std::span<const std::uint8_t> p) {
    const ConfigSpace head{get_u32(p, 0), get_u32(p, 4), get_u32(p, 8), {}};
    if (head.size == 0 || head.size > kMaxConfigSize || head.offset > kMaxConfigSize - head.size)
        return fail(ParseError::BadConfig, fmt::format("config range {}+{} (max {})", head.offset, head.size, kMaxConfigSize));
    if (p.size() != kConfigHeaderSize + head.size)
        return fail(ParseError::SizeMismatch, fmt::format("config of {} bytes in a {}-byte payload", head.size, p.size()));
    if (head.flags > 1) return fail(ParseError::BadConfig, fmt::format("config flags {:#x}", head.flags));
    ConfigSpace c = head;
    c.data.assign(p.begin() + kConfigHeaderSize, p.end());
    return Body{std::move(c)};
}

} // namespace

std::string request_name(std::uint32_t code) {
    switch (static_cast<Request>(code)) {
    case Request::GetFeatures: return "GET_FEATURES";
    case Request::SetFeatures: return "SET_FEATURES";
    case Request::SetOwner: return "SET_OWNER";
    case Request::ResetOwner: return "RESET_OWNER";
    case Request::SetMemTable: return "SET_MEM_TABLE";
    case Request::SetLogBase: return "SET_LOG_BASE";
    case Request::SetLogFd: return "SET_LOG_FD";
    case Request::SetVringNum: return "SET_VRING_NUM";
    case Request::SetVringAddr: return "SET_VRING_ADDR";
    case Request::SetVringBase: return "SET_VRING_BASE";
    case Request::GetVringBase: return "GET_VRING_BASE";
    case Request::SetVringKick: return "SET_VRING_KICK";
    case Request::SetVringCall: return "SET_VRING_CALL";
    case Request::SetVringErr: return "SET_VRING_ERR";
    case Request::GetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case Request::SetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case Request::GetQueueNum: return "GET_QUEUE_NUM";
    case Request::SetVringEnable: return "SET_VRING_ENABLE";
    case Request::SetBackendReqFd: return "SET_BACKEND_REQ_FD";
    case Request::GetConfig: return "GET_CONFIG";
    case Request::SetConfig: return "SET_CONFIG";
    case Request::ResetDevice: return "RESET_DEVICE";
    case Request::GetMaxMemSlots: return "GET_MAX_MEM_SLOTS";
    case Request::AddMemReg: return "ADD_MEM_REG";
    case Request::RemMemReg: return "REM_MEM_REG";
    case Request::SetStatus: return "SET_STATUS";
    case Request::GetStatus: return "GET_STATUS";
    }
    return fmt::format("request {}", code);
}

bool implemented(std::uint32_t code) {
    switch (static_cast<Request>(code)) {
    case Request::GetFeatures:
    case Request::SetFeatures:
    case Request::SetOwner:
    case Request::SetMemTable:
    case Request::SetVringNum:
    case Request::SetVringAddr:
    case Request::SetVringBase:
    case Request::GetVringBase:
    case Request::SetVringKick:
    case Request::SetVringCall:
    case Request::SetVringErr:
    case Request::GetProtocolFeatures:
    case Request::SetProtocolFeatures:
    case Request::GetQueueNum:
    case Request::SetVringEnable:
    case Request::GetConfig:
    case Request::SetConfig: return true;
    default: return false;
    }
}

std::string_view describe(ParseError e) {
    switch (e) {
    case ParseError::TruncatedHeader: return "truncated header";
    case ParseError::BadVersion: return "bad protocol version";
    case ParseError::BadFlags: return "bad header flags";
    case ParseError::Oversized: return "oversized payload";
    case ParseError::SizeMismatch: return "wrong payload size";
    case ParseError::FdCount: return "wrong number of file descriptors";
    case ParseError::BadQueueIndex: return "bad queue index";
    case ParseError::BadVringNum: return "bad ring size";
    case ParseError::BadVringBase: return "bad ring base";
    case ParseError::BadVringAddr: return "bad ring address";
    case ParseError::BadMemoryTable: return "bad memory table";
    case ParseError::BadConfig: return "bad config access";
    case ParseError::BadEnable: return "bad enable value";
    }
    return "unknown parse error";
}

namespace {

Expected<Header, ParseFailure> validate(const Header& h) {
    const auto what = request_name(h.request);
    if ((h.flags & kVersionMask) != kVersion)
        return fail(ParseError::BadVersion, fmt::format("{}: version {} (flags {:#x})", what, h.flags & kVersionMask, h.flags));
    if (h.flags & ~(kVersionMask | kFlagNeedReply))
        return fail(ParseError::BadFlags, fmt::format("{}: flags {:#x}", what, h.flags));
    if (implemented(h.request)) {
        const auto fixed = fixed_size(static_cast<Request>(h.request));
        if (fixed && h.size != *fixed)
            return fail(ParseError::SizeMismatch, fmt::format("{}: {}-byte payload, expected {}", what, h.size, *fixed));
    }
    if (h.size > max_size(h.request))
        return fail(ParseError::Oversized, fmt::format("{}: {}-byte payload (at most {})", what, h.size, max_size(h.request)));
    return h;
}

} // namespace

Expected<Header, ParseFailure> parse_header(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < kHeaderSize)
        return fail(ParseError::TruncatedHeader, fmt::format("{} of {} header bytes", bytes.size(), kHeaderSize));
    return validate(Header{get_u32(bytes, 0), get_u32(bytes, 4), get_u32(bytes, 8)});
}

Expected<Message, ParseFailure> parse_body(const Header& h, std::span<const std::uint8_t> p, std::vector<UniqueFd> fds) {
    // Re-checked: parse_body is also called on its own (fuzzer, tests).
    if (auto hv = validate(h); !hv) return Unexpected{hv.error()};
    const auto what = request_name(h.request);
    if (p.size() != h.size)
        return fail(ParseError::SizeMismatch, fmt::format("{}: header says {} bytes, got {}", what, h.size, p.size()));
    if (fds.size() > kMaxFds) return fail(ParseError::FdCount, fmt::format("{}: {} fds (at most {})", what, fds.size(), kMaxFds));

    Message m;
    m.header = h;
    m.known = implemented(h.request);
    auto with = [&](Body body) -> Expected<Message, ParseFailure> {
        m.body = std::move(body);
        m.fds = std::move(fds);
        return std::move(m);
    };
    auto no_fds = [&]() -> std::optional<ParseFailure> {
        if (fds.empty()) return std::nullopt;
        return ParseFailure{ParseError::FdCount, fmt::format("{}: {} unexpected fds", what, fds.size())};
    };
    if (!m.known) return with(std::monostate{}); // the session refuses it (and closes its fds)

    switch (static_cast<Request>(h.request)) {
    case Request::GetFeatures:
    case Request::SetOwner:
    case Request::GetProtocolFeatures:
    case Request::GetQueueNum:
        if (auto e = no_fds()) return Unexpected{*e};
        return with(std::monostate{});
    case Request::SetFeatures:
    case Request::SetProtocolFeatures:
        if (auto e = no_fds()) return Unexpected{*e};
        return with(get_u64(p, 0));
    case Request::SetVringNum:
    case Request::SetVringBase:
    case Request::GetVringBase:
    case Request::SetVringEnable: {
        if (auto e = no_fds()) return Unexpected{*e};
        const VringState s{get_u32(p, 0), get_u32(p, 4)};
        if (s.index >= wire::kQueueCount) return fail(ParseError::BadQueueIndex, fmt::format("{}: {}", what, queue_error(s.index)));
        const auto r = static_cast<Request>(h.request);
        if (r == Request::SetVringNum && !virtq::valid_queue_size(s.num))
            return fail(ParseError::BadVringNum, fmt::format("{}: {} is not a power of two in 1..{}", what, s.num, virtq::kMaxQueueSize));
        if (r == Request::SetVringBase && s.num > 0xffff)
            return fail(ParseError::BadVringBase, fmt::format("{}: {} is not a 16-bit ring index", what, s.num));
        if (r == Request::SetVringEnable && s.num > 1)
            return fail(ParseError::BadEnable, fmt::format("{}: value {}", what, s.num));
        return with(s);
    }
    case Request::SetVringAddr: {
        if (auto e = no_fds()) return Unexpected{*e};
        const VringAddr a{get_u32(p, 0), get_u32(p, 4), get_u64(p, 8), get_u64(p, 16), get_u64(p, 24), get_u64(p, 32)};
        if (a.index >= wire::kQueueCount) return fail(ParseError::BadQueueIndex, fmt::format("{}: {}", what, queue_error(a.index)));
        if (a.flags & ~kVringAddrFlagLog) return fail(ParseError::BadVringAddr, fmt::format("{}: flags {:#x}", what, a.flags));
        // Split-ring alignment (virtio 1.2 §2.7): descriptors 16, avail 2, used 4.
        if (a.desc % 16 || a.avail % 2 || a.used % 4)
            return fail(ParseError::BadVringAddr, fmt::format("{}: misaligned desc {:#x} avail {:#x} used {:#x}", what,
                                                              a.desc, a.avail, a.used));
        return with(a);
    }
    case Request::SetVringKick:
    case Request::SetVringCall:
    case Request::SetVringErr: {
        const std::uint64_t v = get_u64(p, 0);
        if (v & ~(kVringFileIndexMask | kVringFileNoFd))
            return fail(ParseError::BadQueueIndex, fmt::format("{}: undefined bits in {:#x}", what, v));
        const VringFile f{static_cast<std::uint32_t>(v & kVringFileIndexMask), (v & kVringFileNoFd) != 0};
        if (f.index >= wire::kQueueCount) return fail(ParseError::BadQueueIndex, fmt::format("{}: {}", what, queue_error(f.index)));
        const std::size_t want = f.no_fd ? 0 : 1;
        if (fds.size() != want)
            return fail(ParseError::FdCount, fmt::format("{}: {} fds, expected {}{}", what, fds.size(), want, f.no_fd ? " (NOFD)" : ""));
        return with(f);
    }
    case Request::SetMemTable: {
        auto t = parse_memory_table(p, fds.size());
        if (!t) return fail(t.error().error, fmt::format("{}: {}", what, t.error().detail));
        return with(std::move(t).value());
    }
    case Request::GetConfig:
    case Request::SetConfig: {
        if (auto e = no_fds()) return Unexpected{*e};
        if (p.size() < kConfigHeaderSize)
            return fail(ParseError::SizeMismatch, fmt::format("{}: {}-byte payload", what, p.size()));
        auto c = parse_config(p);
        if (!c) return fail(c.error().error, fmt::format("{}: {}", what, c.error().detail));
        return with(std::move(c).value());
    }
    default: break;
    }
    return with(std::monostate{});
}

Expected<Message, ParseFailure> parse(std::span<const std::uint8_t> bytes, std::vector<UniqueFd> fds) {
    auto h = parse_header(bytes);
    if (!h) return Unexpected{h.error()};
    if (bytes.size() - kHeaderSize != h->size)
        return fail(bytes.size() - kHeaderSize < h->size ? ParseError::SizeMismatch : ParseError::Oversized,
                    fmt::format("{}: header says {} payload bytes, message has {}", request_name(h->request), h->size,
                                bytes.size() - kHeaderSize));
    return parse_body(*h, bytes.subspan(kHeaderSize), std::move(fds));
}

// ---- FrameReader ---------------------------------------------------------------------------

void FrameReader::reset() {
    buf_.assign(kHeaderSize, 0);
    have_ = 0;
    header_.reset();
    fds_.clear();
}

std::span<std::uint8_t> FrameReader::buffer() { return std::span(buf_).subspan(have_); }

Expected<std::optional<Message>, ParseFailure> FrameReader::commit(std::size_t n, std::vector<UniqueFd> fds) {
    for (auto& fd : fds) fds_.push_back(std::move(fd));
    if (fds_.size() > kMaxFds) {
        auto count = fds_.size();
        reset();
        return fail(ParseError::FdCount, fmt::format("{} fds with one message (at most {})", count, kMaxFds));
    }
    have_ += std::min(n, buf_.size() - have_);
    if (have_ < buf_.size()) return std::optional<Message>{};
    if (!header_) {
        auto h = parse_header(buf_);
        if (!h) {
            reset();
            return Unexpected{h.error()};
        }
        header_ = *h;
        if (h->size > 0) {
            buf_.resize(kHeaderSize + h->size);
            return std::optional<Message>{};
        }
    }
    auto m = parse_body(*header_, std::span<const std::uint8_t>(buf_).subspan(kHeaderSize), std::move(fds_));
    reset();
    if (!m) return Unexpected{m.error()};
    return std::optional<Message>{std::move(m).value()};
}

// ---- encoding ------------------------------------------------------------------------------

std::vector<std::uint8_t> encode_message(std::uint32_t request, std::uint32_t flags, std::span<const std::uint8_t> payload) {
    std::vector<std::uint8_t> b;
    b.reserve(kHeaderSize + payload.size());
    put_u32(b, request);
    put_u32(b, flags);
    put_u32(b, static_cast<std::uint32_t>(payload.size()));
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

std::vector<std::uint8_t> encode_u64(std::uint64_t v) {
    std::vector<std::uint8_t> b;
    put_u64(b, v);
    return b;
}

std::vector<std::uint8_t> encode(const VringState& s) {
    std::vector<std::uint8_t> b;
    put_u32(b, s.index);
    put_u32(b, s.num);
    return b;
}

std::vector<std::uint8_t> encode(const VringAddr& a) {
    std::vector<std::uint8_t> b;
    put_u32(b, a.index);
    put_u32(b, a.flags);
    for (auto v : {a.desc, a.used, a.avail, a.log}) put_u64(b, v);
    return b;
}

std::vector<std::uint8_t> encode(const VringFile& f) { return encode_u64(f.index | (f.no_fd ? kVringFileNoFd : 0)); }

std::vector<std::uint8_t> encode(const MemoryTable& t) {
    std::vector<std::uint8_t> b;
    put_u32(b, static_cast<std::uint32_t>(t.regions.size()));
    put_u32(b, 0);
    for (const auto& r : t.regions)
        for (auto v : {r.guest_addr, r.size, r.user_addr, r.mmap_offset}) put_u64(b, v);
    return b;
}

std::vector<std::uint8_t> encode(const ConfigSpace& c) {
    std::vector<std::uint8_t> b;
    put_u32(b, c.offset);
    put_u32(b, c.size);
    put_u32(b, c.flags);
    b.insert(b.end(), c.data.begin(), c.data.end());
    return b;
}

std::vector<std::uint8_t> encode_reply(std::uint32_t request, std::span<const std::uint8_t> payload) {
    return encode_message(request, kReplyFlags, payload);
}

Expected<Header, std::string> check_reply_header(std::span<const std::uint8_t> bytes, std::uint32_t request,
                                                 std::uint32_t expected_size) {
    if (bytes.size() < kHeaderSize) return Unexpected{std::string("truncated reply header")};
    const Header h{get_u32(bytes, 0), get_u32(bytes, 4), get_u32(bytes, 8)};
    if (h.flags != kReplyFlags) return Unexpected{fmt::format("reply flags {:#x} instead of {:#x}", h.flags, kReplyFlags)};
    if (h.request != request)
        return Unexpected{fmt::format("reply to {} while waiting for {}", request_name(h.request), request_name(request))};
    if (h.size != expected_size)
        return Unexpected{fmt::format("{} reply of {} bytes, expected {}", request_name(request), h.size, expected_size)};
    return h;
}

} // namespace vsnd::vhost_user
