// The vhost-user message parser: every valid message QEMU 10.0 sends for vhost-user-snd is
// accepted with the right contents; each kind of malformed message is an error value, and the
// fds that came with it are closed.
#include "support.hpp"

#include "vsnd/vhost_user/protocol.hpp"

#include <gtest/gtest.h>

namespace vsnd::test {
namespace {

using namespace vsnd::vhost_user;

std::vector<std::uint8_t> msg(Request r, std::uint32_t flags, std::span<const std::uint8_t> payload) {
    return encode_message(r, flags, payload);
}

// Parses with `nfds` fresh eventfds; returns the result and the fd numbers given away.
struct Parsed {
    Expected<Message, ParseFailure> result;
    std::vector<int> fd_numbers;
};
Parsed parse_with(std::span<const std::uint8_t> bytes, std::size_t nfds) {
    std::vector<UniqueFd> fds;
    std::vector<int> numbers;
    for (std::size_t i = 0; i < nfds; ++i) {
        fds.push_back(make_eventfd());
        numbers.push_back(fds.back().get());
    }
    return {parse(bytes, std::move(fds)), numbers};
}

// Expects rejection with `error` and every fd closed.
void expect_rejected(std::span<const std::uint8_t> bytes, std::size_t nfds, ParseError error) {
    auto p = parse_with(bytes, nfds);
    ASSERT_FALSE(p.result) << "accepted";
    EXPECT_EQ(p.result.error().error, error) << describe(p.result.error().error) << ": " << p.result.error().detail;
    EXPECT_FALSE(p.result.error().detail.empty());
    for (int fd : p.fd_numbers) EXPECT_FALSE(fd_is_open(fd)) << "fd " << fd << " leaked";
}

MemoryTable two_regions() {
    // The layout QEMU sends for a 512 MiB pc machine: low RAM below the VGA hole, then the rest,
    // both from one memfd.
    return {{RegionDesc{0x0, 0xa0000, 0x7f0000000000, 0x0},
             RegionDesc{0xc0000, 0x1ff40000, 0x7f00000c0000, 0xc0000}}};
}

TEST(VhostUserParser, AcceptsEveryRequestQemuSends) {
    struct Case {
        Request r;
        std::uint32_t flags;
        std::vector<std::uint8_t> payload;
        std::size_t fds;
    };
    const std::vector<Case> cases = {
        {Request::GetFeatures, 0x1, {}, 0},
        {Request::SetFeatures, 0x1, encode_u64(0x140000000), 0},
        {Request::SetOwner, 0x1, {}, 0},
        {Request::GetProtocolFeatures, 0x1, {}, 0},
        {Request::SetProtocolFeatures, 0x1, encode_u64(0x209), 0},
        {Request::GetQueueNum, 0x1, {}, 0},
        {Request::SetMemTable, 0x9, encode(two_regions()), 2},
        {Request::SetVringNum, 0x1, encode(VringState{0, 64}), 0},
        {Request::SetVringBase, 0x1, encode(VringState{3, 0}), 0},
        {Request::SetVringAddr, 0x1, encode(VringAddr{2, 0, 0x7f0000100000, 0x7f00001004c0, 0x7f0000100400, 0x1234}), 0},
        {Request::SetVringKick, 0x1, encode(VringFile{1, false}), 1},
        {Request::SetVringCall, 0x1, encode(VringFile{3, false}), 1},
        {Request::SetVringCall, 0x1, encode(VringFile{3, true}), 0},
        {Request::SetVringErr, 0x1, encode(VringFile{0, false}), 1},
        {Request::SetVringEnable, 0x9, encode(VringState{1, 1}), 0},
        {Request::SetVringEnable, 0x9, encode(VringState{1, 0}), 0},
        {Request::GetVringBase, 0x1, encode(VringState{2, 0}), 0},
        {Request::GetConfig, 0x1, encode(ConfigSpace{0, 12, 0, std::vector<std::uint8_t>(12)}), 0},
        {Request::GetConfig, 0x1, encode(ConfigSpace{0, 16, 0, std::vector<std::uint8_t>(16)}), 0},
        {Request::SetConfig, 0x9, encode(ConfigSpace{4, 4, 0, {1, 2, 3, 4}}), 0},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(request_name(c.r));
        auto p = parse_with(msg(c.r, c.flags, c.payload), c.fds);
        ASSERT_TRUE(p.result) << p.result.error().detail;
        const auto& m = *p.result;
        EXPECT_TRUE(m.known);
        EXPECT_EQ(m.header.request, static_cast<std::uint32_t>(c.r));
        EXPECT_EQ(m.header.need_reply(), c.flags == 0x9);
        EXPECT_EQ(m.fds.size(), c.fds);
    }
}

TEST(VhostUserParser, DecodesPayloads) {
    auto a = parse(msg(Request::SetVringAddr, 1, encode(VringAddr{2, 0, 0x1000, 0x2000, 0x3000, 0x4000})), {});
    ASSERT_TRUE(a);
    const auto addr = std::get<VringAddr>(a->body);
    EXPECT_EQ(addr.index, 2u);
    EXPECT_EQ(addr.desc, 0x1000u);
    EXPECT_EQ(addr.used, 0x2000u); // used comes before avail on the wire
    EXPECT_EQ(addr.avail, 0x3000u);

    auto t = parse_with(msg(Request::SetMemTable, 9, encode(two_regions())), 2);
    ASSERT_TRUE(t.result);
    const auto& regions = std::get<MemoryTable>(t.result->body).regions;
    ASSERT_EQ(regions.size(), 2u);
    EXPECT_EQ(regions[1].guest_addr, 0xc0000u);
    EXPECT_EQ(regions[1].mmap_offset, 0xc0000u);
    EXPECT_EQ(regions[1].user_addr, 0x7f00000c0000u);
    EXPECT_EQ(encode(two_regions()).size(), 72u); // what QEMU sent for 2 regions

    auto k = parse_with(msg(Request::SetVringCall, 1, encode_u64(0x103)), 0);
    ASSERT_TRUE(k.result);
    EXPECT_EQ(std::get<VringFile>(k.result->body).index, 3u);
    EXPECT_TRUE(std::get<VringFile>(k.result->body).no_fd);

    auto c = parse(msg(Request::GetConfig, 1, encode(ConfigSpace{0, 12, 0, std::vector<std::uint8_t>(12)})), {});
    ASSERT_TRUE(c);
    EXPECT_EQ(c->header.size, 24u);
    EXPECT_EQ(std::get<ConfigSpace>(c->body).size, 12u);
}

TEST(VhostUserParser, UnknownRequestsAreParsedAsUnknownWithTheirFds) {
    // RESET_OWNER, ADD_MEM_REG (with an fd), and a code nobody defined: the session refuses them.
    for (auto [code, nfds, size] : {std::tuple{4u, 0u, 0u}, std::tuple{37u, 1u, 40u}, std::tuple{999u, 0u, 16u}}) {
        auto p = parse_with(encode_message(code, 0x9, std::vector<std::uint8_t>(size)), nfds);
        ASSERT_TRUE(p.result) << code;
        EXPECT_FALSE(p.result->known);
        EXPECT_EQ(p.result->fds.size(), nfds);
    }
    EXPECT_EQ(request_name(999), "request 999");
}

TEST(VhostUserParser, RejectsTruncatedHeaders) {
    const auto full = msg(Request::GetFeatures, 1, {});
    for (std::size_t n = 0; n < kHeaderSize; ++n)
        expect_rejected(std::span(full).first(n), 0, ParseError::TruncatedHeader);
}

TEST(VhostUserParser, RejectsBadVersionAndFlags) {
    for (std::uint32_t flags : {0x0u, 0x2u, 0x3u, 0xau})
        expect_rejected(msg(Request::GetFeatures, flags, {}), 0, ParseError::BadVersion);
    // REPLY on a request, undefined bits.
    for (std::uint32_t flags : {0x5u, 0xdu, 0x11u, 0x80000001u})
        expect_rejected(msg(Request::GetFeatures, flags, {}), 0, ParseError::BadFlags);
}

TEST(VhostUserParser, RejectsWrongSizes) {
    expect_rejected(msg(Request::GetFeatures, 1, encode_u64(0)), 0, ParseError::SizeMismatch);
    expect_rejected(msg(Request::SetFeatures, 1, std::vector<std::uint8_t>(4)), 0, ParseError::SizeMismatch);
    expect_rejected(msg(Request::SetVringNum, 1, std::vector<std::uint8_t>(12)), 0, ParseError::SizeMismatch);
    expect_rejected(msg(Request::SetVringAddr, 1, std::vector<std::uint8_t>(32)), 0, ParseError::SizeMismatch);
    expect_rejected(msg(Request::SetVringKick, 1, std::vector<std::uint8_t>(4)), 1, ParseError::SizeMismatch);
    // A table of 2 regions in the size of 1.
    auto t = encode(two_regions());
    t.resize(8 + 32);
    expect_rejected(msg(Request::SetMemTable, 9, t), 1, ParseError::SizeMismatch);
    expect_rejected(msg(Request::SetMemTable, 9, std::vector<std::uint8_t>(4)), 0, ParseError::SizeMismatch);
    // GET_CONFIG whose header size disagrees with the config size it names.
    auto c = encode(ConfigSpace{0, 12, 0, std::vector<std::uint8_t>(12)});
    c.resize(20);
    expect_rejected(msg(Request::GetConfig, 1, c), 0, ParseError::SizeMismatch);
    expect_rejected(msg(Request::GetConfig, 1, std::vector<std::uint8_t>(8)), 0, ParseError::SizeMismatch);
    // Header and buffer disagree.
    auto shortmsg = msg(Request::SetFeatures, 1, encode_u64(1));
    shortmsg.pop_back();
    expect_rejected(shortmsg, 0, ParseError::SizeMismatch);
}

TEST(VhostUserParser, RejectsOversizedPayloads) {
    MemoryTable nine;
    for (std::uint64_t i = 0; i < 9; ++i) nine.regions.push_back({i << 20, 1 << 20, (i << 20) + 0x7f0000000000, 0});
    expect_rejected(msg(Request::SetMemTable, 9, encode(nine)), 8, ParseError::Oversized);
    expect_rejected(encode_message(999u, 1, std::vector<std::uint8_t>(kMaxPayload + 1)), 0, ParseError::Oversized);
    expect_rejected(msg(Request::SetConfig, 1, std::vector<std::uint8_t>(kConfigHeaderSize + kMaxConfigSize + 1)), 0,
                    ParseError::Oversized);
    // A header announcing 4 GiB is rejected from the header alone.
    std::vector<std::uint8_t> h = msg(Request::GetConfig, 1, {});
    h[8] = h[9] = h[10] = h[11] = 0xff;
    auto r = parse_header(h);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().error, ParseError::Oversized);
    // Trailing bytes after a complete message.
    auto extra = msg(Request::GetConfig, 1, encode(ConfigSpace{0, 12, 0, std::vector<std::uint8_t>(12)}));
    extra.push_back(0);
    expect_rejected(extra, 0, ParseError::Oversized);
}

TEST(VhostUserParser, RejectsWrongFdCounts) {
    expect_rejected(msg(Request::SetFeatures, 1, encode_u64(0)), 1, ParseError::FdCount);
    expect_rejected(msg(Request::GetConfig, 1, encode(ConfigSpace{0, 12, 0, std::vector<std::uint8_t>(12)})), 2,
                    ParseError::FdCount);
    expect_rejected(msg(Request::SetVringKick, 1, encode(VringFile{0, false})), 0, ParseError::FdCount);
    expect_rejected(msg(Request::SetVringKick, 1, encode(VringFile{0, false})), 2, ParseError::FdCount);
    expect_rejected(msg(Request::SetVringCall, 1, encode(VringFile{0, true})), 1, ParseError::FdCount);
    expect_rejected(msg(Request::SetMemTable, 9, encode(two_regions())), 1, ParseError::FdCount);
    expect_rejected(msg(Request::SetMemTable, 9, encode(two_regions())), 3, ParseError::FdCount);
    expect_rejected(msg(Request::GetFeatures, 1, {}), 9, ParseError::FdCount);
}

TEST(VhostUserParser, RejectsQueueIndicesOutsideTheDevice) {
    expect_rejected(msg(Request::SetVringNum, 1, encode(VringState{4, 64})), 0, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::SetVringBase, 1, encode(VringState{0xffffffff, 0})), 0, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::GetVringBase, 1, encode(VringState{4, 0})), 0, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::SetVringEnable, 9, encode(VringState{200, 1})), 0, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::SetVringAddr, 1, encode(VringAddr{4, 0, 0, 0, 0, 0})), 0, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::SetVringKick, 1, encode(VringFile{4, false})), 1, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::SetVringCall, 1, encode_u64(0xff)), 1, ParseError::BadQueueIndex);
    // Undefined bits above NOFD.
    expect_rejected(msg(Request::SetVringErr, 1, encode_u64(0x200)), 1, ParseError::BadQueueIndex);
    expect_rejected(msg(Request::SetVringErr, 1, encode_u64(1ull << 40)), 1, ParseError::BadQueueIndex);
}

TEST(VhostUserParser, RejectsBadRingSizesBasesAndAddresses) {
    for (std::uint32_t n : {0u, 3u, 100u, 65536u, 0x80000000u, 0xffffffffu})
        expect_rejected(msg(Request::SetVringNum, 1, encode(VringState{0, n})), 0, ParseError::BadVringNum);
    for (std::uint32_t n : {1u, 64u, 256u, 32768u}) EXPECT_TRUE(parse(msg(Request::SetVringNum, 1, encode(VringState{0, n})), {}));
    expect_rejected(msg(Request::SetVringBase, 1, encode(VringState{0, 0x10000})), 0, ParseError::BadVringBase);
    expect_rejected(msg(Request::SetVringEnable, 9, encode(VringState{0, 2})), 0, ParseError::BadEnable);
    expect_rejected(msg(Request::SetVringAddr, 1, encode(VringAddr{0, 2, 0x1000, 0x2000, 0x3000, 0})), 0, ParseError::BadVringAddr);
    expect_rejected(msg(Request::SetVringAddr, 1, encode(VringAddr{0, 0, 0x1008, 0x2000, 0x3000, 0})), 0, ParseError::BadVringAddr);
    expect_rejected(msg(Request::SetVringAddr, 1, encode(VringAddr{0, 0, 0x1000, 0x2002, 0x3000, 0})), 0, ParseError::BadVringAddr);
    expect_rejected(msg(Request::SetVringAddr, 1, encode(VringAddr{0, 0, 0x1000, 0x2000, 0x3001, 0})), 0, ParseError::BadVringAddr);
}

TEST(VhostUserParser, RejectsBadMemoryTables) {
    auto table = [](std::vector<RegionDesc> r) { return encode(MemoryTable{std::move(r)}); };
    std::vector<std::uint8_t> zero(8, 0);
    expect_rejected(msg(Request::SetMemTable, 9, zero), 0, ParseError::BadMemoryTable);
    expect_rejected(msg(Request::SetMemTable, 9, table({{0, 0, 0x1000, 0}})), 1, ParseError::BadMemoryTable);
    expect_rejected(msg(Request::SetMemTable, 9, table({{~0ull - 0xfff, 0x2000, 0x1000, 0}})), 1, ParseError::BadMemoryTable);
    expect_rejected(msg(Request::SetMemTable, 9, table({{0, 0x2000, ~0ull, 0}})), 1, ParseError::BadMemoryTable);
    expect_rejected(msg(Request::SetMemTable, 9, table({{0, 0x2000, 0x1000, ~0ull}})), 1, ParseError::BadMemoryTable);
    // Overlap in guest-physical or in front-end addresses: translation would be ambiguous.
    expect_rejected(msg(Request::SetMemTable, 9, table({{0, 0x2000, 0x10000, 0}, {0x1000, 0x2000, 0x20000, 0}})), 2,
                    ParseError::BadMemoryTable);
    expect_rejected(msg(Request::SetMemTable, 9, table({{0, 0x2000, 0x10000, 0}, {0x8000, 0x2000, 0x11000, 0}})), 2,
                    ParseError::BadMemoryTable);
    // A region count the payload does not hold.
    auto t = table({{0, 0x2000, 0x10000, 0}});
    t[0] = 200;
    expect_rejected(msg(Request::SetMemTable, 9, t), 1, ParseError::BadMemoryTable);
}

TEST(VhostUserParser, RejectsBadConfigAccess) {
    expect_rejected(msg(Request::GetConfig, 1, encode(ConfigSpace{0, 0, 0, {}})), 0, ParseError::BadConfig);
    expect_rejected(msg(Request::GetConfig, 1, encode(ConfigSpace{250, 12, 0, std::vector<std::uint8_t>(12)})), 0,
                    ParseError::BadConfig);
    expect_rejected(msg(Request::GetConfig, 1, encode(ConfigSpace{0, 12, 2, std::vector<std::uint8_t>(12)})), 0,
                    ParseError::BadConfig);
    // size 257 but only 12 bytes: the size field is checked first.
    expect_rejected(msg(Request::SetConfig, 1, encode(ConfigSpace{0, 257, 0, std::vector<std::uint8_t>(12)})), 0,
                    ParseError::BadConfig);
}

TEST(VhostUserFrameReader, ReassemblesMessagesFedByteByByte) {
    std::vector<std::uint8_t> stream;
    for (const auto& m : {msg(Request::GetFeatures, 1, {}), msg(Request::SetVringNum, 1, encode(VringState{1, 64})),
                          msg(Request::GetConfig, 1, encode(ConfigSpace{0, 12, 0, std::vector<std::uint8_t>(12)}))})
        stream.insert(stream.end(), m.begin(), m.end());
    FrameReader r;
    std::vector<Message> got;
    for (std::uint8_t b : stream) {
        auto buf = r.buffer();
        ASSERT_FALSE(buf.empty());
        buf[0] = b;
        auto m = r.commit(1, {});
        ASSERT_TRUE(m) << m.error().detail;
        if (*m) got.push_back(std::move(**m));
    }
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(std::get<VringState>(got[1].body).num, 64u);
    EXPECT_EQ(std::get<ConfigSpace>(got[2].body).size, 12u);
    EXPECT_FALSE(r.mid_message());
}

TEST(VhostUserFrameReader, NeverAsksForMoreThanTheCurrentMessage) {
    FrameReader r;
    EXPECT_EQ(r.buffer().size(), kHeaderSize);
    const auto m = msg(Request::SetVringAddr, 1, encode(VringAddr{0, 0, 0x1000, 0x2000, 0x3000, 0}));
    std::copy_n(m.begin(), kHeaderSize, r.buffer().begin());
    ASSERT_TRUE(r.commit(kHeaderSize, {}));
    EXPECT_EQ(r.buffer().size(), 40u);
    EXPECT_TRUE(r.mid_message());
}

TEST(VhostUserFrameReader, RejectsAnOversizedHeaderBeforeItsPayload) {
    FrameReader r;
    auto h = encode_message(Request::SetMemTable, 9, std::vector<std::uint8_t>(8 + 9 * 32));
    std::copy_n(h.begin(), kHeaderSize, r.buffer().begin());
    auto fd = make_eventfd();
    const int n = fd.get();
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(fd));
    auto m = r.commit(kHeaderSize, std::move(fds));
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().error, ParseError::Oversized);
    EXPECT_FALSE(fd_is_open(n));
}

TEST(VhostUserFrameReader, RejectsMoreThanEightFdsPerMessage) {
    FrameReader r;
    std::vector<UniqueFd> fds;
    std::vector<int> numbers;
    for (int i = 0; i < 9; ++i) {
        fds.push_back(make_eventfd());
        numbers.push_back(fds.back().get());
    }
    r.buffer()[0] = 1;
    auto m = r.commit(1, std::move(fds));
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().error, ParseError::FdCount);
    for (int n : numbers) EXPECT_FALSE(fd_is_open(n));
}

TEST(VhostUserReply, HeaderChecksMatchQemus) {
    const auto ok = encode_reply(1, encode_u64(0x140000000));
    EXPECT_EQ(ok[4], 0x5); // flags exactly 0x5
    EXPECT_TRUE(check_reply_header(ok, 1, 8));
    EXPECT_FALSE(check_reply_header(ok, 1, 16));
    EXPECT_FALSE(check_reply_header(ok, 15, 8));
    auto bad = ok;
    bad[4] = 0xd;
    EXPECT_FALSE(check_reply_header(bad, 1, 8));
}

} // namespace
} // namespace vsnd::test
