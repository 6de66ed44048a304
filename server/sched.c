#include "sched.h"
#include "../common/log.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's struct sched_attr (uapi linux/sched/types.h, which clashes with <sched.h>): the
 * first version of it, 48 bytes, which every kernel with sched_setattr accepts. */
typedef struct {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
} sched_attr_v0;

#define SP_SCHED_OTHER 0
#define SP_SCHED_BATCH 3

void srv_sched_latency_slice(const char *thread_role)
{
#if defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
    static atomic_int logged;
    /* Read, change the slice only, write back: the policy and nice value stay what they are
     * (a nice value passed as 0 would undo the ingest pool's). sched_runtime is the slice of a
     * fair-class thread since Linux 6.12, clamped there to 0.1-100 ms. */
    sched_attr_v0 at = {0};
    int rc = (int)syscall(SYS_sched_getattr, 0, &at, sizeof at, 0);
    if (!rc && at.sched_policy != SP_SCHED_OTHER && at.sched_policy != SP_SCHED_BATCH)
        return; /* real-time or deadline: an operator's choice, left alone */
    if (!rc) {
        at.size = sizeof at;
        at.sched_flags &= 0x01; /* SCHED_FLAG_RESET_ON_FORK, if an operator set it */
        at.sched_runtime = SRV_LATENCY_SLICE_NS;
        rc = (int)syscall(SYS_sched_setattr, 0, &at, 0);
    }
    if (rc && !atomic_exchange(&logged, 1))
        sp_debug("msg=\"kernel keeps its default scheduler slice\" thread=%s", thread_role);
#else
    (void)thread_role;
#endif
}
