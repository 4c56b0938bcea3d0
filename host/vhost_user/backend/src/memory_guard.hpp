// Guest memory that the front-end can shrink under us. vsnd-host maps the front-end's files; if a
// file is truncated after SET_MEM_TABLE (a memfd without seals, a plain file), the next access to
// the lost pages raises SIGBUS and would kill the daemon. The guard answers such a SIGBUS by
// mapping anonymous zero pages over the whole region, so the access completes (reading zeros,
// writing into nothing), and by flagging the region and signalling an eventfd, so its connection
// closes on the next turn of the loop. A SIGBUS anywhere else goes to the handler installed
// before ours, or takes the default action. The handler is installed when the program starts.
//
// Threads: add()/remove() on the device loop's thread (the only one that touches guest memory);
// the signal handler runs on whichever thread faulted. A fixed table, no allocation in the handler.
#pragma once

#include <cstddef>

namespace vsnd::vhost_user::memory_guard {

inline constexpr int kSlots = 64;

// Watches [base, base + len); -1 when every slot is taken (the region is then unguarded).
int add(void* base, std::size_t len);
// Stops watching (before the region is unmapped).
void remove(int slot);
// Whether the region faulted (and now holds zero pages).
bool faulted(int slot);
// Readable after any guarded fault (non-blocking eventfd; read it to re-arm).
int fault_fd();

} // namespace vsnd::vhost_user::memory_guard
