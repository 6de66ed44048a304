/* Scheduling hints for the server's threads: which of them a busy machine should run first.
 *
 * Ingest is throughput work: a 40,000-sample Export keeps a core for tens of milliseconds, and
 * at full load every core has one. A query or the event loop is latency work: it wakes, runs a
 * millisecond or two, and sleeps. Two hints, both without privilege:
 *
 *  - the ingest pool's nice value (SRV_INGEST_NICE, server/workers.h) gives the latency threads
 *    the larger share of a contended core;
 *  - srv_sched_latency_slice() gives the calling thread a short scheduler slice. On Linux 6.12 and
 *    later (EEVDF, sched_attr.sched_runtime for SCHED_OTHER), a woken thread whose slice is
 *    shorter than the running thread's preempts it at once; otherwise it waits until the running
 *    thread's slice ends, which on a kernel with HZ=250 and no preemption can be the next tick,
 *    4 ms later, once per hand-off (loop -> query thread -> loop). The slice takes no more CPU
 *    than before: it only decides who runs first.
 *
 * Threading: each call acts on the calling thread only. Errors: none returned; an older kernel
 * refuses the attribute (EINVAL, E2BIG) and the thread keeps its default slice, logged once at
 * debug level. Real-time and deadline policies (an operator's chrt) are left as they are.
 */
#ifndef SRV_SCHED_H
#define SRV_SCHED_H

/* 0.2 ms: between the kernel's floor (0.1 ms) and its default base slice (0.75 ms x 1 + log2
 * of the CPU count); a query's CPU is 1.5-2 ms, so it is preempted in turn, never for long. */
#define SRV_LATENCY_SLICE_NS 200000ULL

void srv_sched_latency_slice(const char *thread_role);

#endif
