// Whether this process may run a thread at SCHED_FIFO `priority` (CAP_SYS_NICE or RLIMIT_RTPRIO):
// tried on the calling thread, which is put back to normal scheduling at once.
#pragma once

#include <sched.h>

namespace vsnd::test {

inline bool may_run_realtime(int priority) {
    const sched_param rt{.sched_priority = priority};
    if (::sched_setscheduler(0, SCHED_FIFO, &rt) != 0) return false;
    const sched_param normal{};
    ::sched_setscheduler(0, SCHED_OTHER, &normal);
    return true;
}

} // namespace vsnd::test
