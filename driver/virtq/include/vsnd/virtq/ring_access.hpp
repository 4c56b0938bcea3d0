// Little-endian, atomic access to ring words shared with another party. Index and flag words are
// published with release and observed with acquire, so the entries written before an index
// update are visible to whoever sees the new index, also across processes sharing the memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <endian.h>

namespace vsnd::virtq::detail {

inline std::uint16_t load_acquire16(std::uint8_t* p) {
    return le16toh(std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(p))
                       .load(std::memory_order_acquire));
}
inline void store_release16(std::uint8_t* p, std::uint16_t v) {
    std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(p)).store(htole16(v), std::memory_order_release);
}
// Plain (relaxed) accesses for ring entries, ordered by the index accesses around them.
inline std::uint16_t load16(const std::uint8_t* p) { std::uint16_t v; std::memcpy(&v, p, 2); return le16toh(v); }
inline std::uint32_t load32(const std::uint8_t* p) { std::uint32_t v; std::memcpy(&v, p, 4); return le32toh(v); }
inline std::uint64_t load64(const std::uint8_t* p) { std::uint64_t v; std::memcpy(&v, p, 8); return le64toh(v); }
inline void store16(std::uint8_t* p, std::uint16_t v) { v = htole16(v); std::memcpy(p, &v, 2); }
inline void store32(std::uint8_t* p, std::uint32_t v) { v = htole32(v); std::memcpy(p, &v, 4); }
inline void store64(std::uint8_t* p, std::uint64_t v) { v = htole64(v); std::memcpy(p, &v, 8); }
inline void full_fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Offsets inside the avail and used rings.
inline constexpr std::size_t kFlags = 0, kIdx = 2, kRing = 4;
inline constexpr std::size_t avail_entry(std::size_t i) { return kRing + 2 * i; }
inline constexpr std::size_t used_entry(std::size_t i) { return kRing + 8 * i; }
inline constexpr std::size_t avail_used_event(std::uint16_t n) { return kRing + 2u * n; }
inline constexpr std::size_t used_avail_event(std::uint16_t n) { return kRing + 8u * n; }

} // namespace vsnd::virtq::detail
