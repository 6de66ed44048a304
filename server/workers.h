/* A worker pool behind a bounded queue. The server runs two: "ingest" (decode, convert, store)
 * and "query" (reads), so a query never waits behind Exports.
 *
 * The event loop submits exchanges; a fixed set of threads runs their handlers so a 64 MiB decode
 * never stalls other connections; finished exchanges travel back to the loop thread, which writes
 * the answers. The queue holds at most max_pending exchanges that no thread has picked up yet:
 * srv_workers_submit() returns SP_EFULL beyond that and the caller answers RESOURCE_EXHAUSTED /
 * 429 at once (the OTLP retry contract), so memory stays bounded under load. The queue's depth is
 * the gauge `<name>_queue_pending`; the threads are named `<name>-<i>` (top, perf).
 */
#ifndef SRV_WORKERS_H
#define SRV_WORKERS_H

#include "exchange.h"

#include <stddef.h>

struct event_base;
typedef struct srv_workers srv_workers;
typedef void (*srv_job_fn)(srv_exchange *ex);

/* What a pool's threads are for, which sets how the kernel schedules them (server/sched.h). */
typedef enum {
    /* Long jobs (Exports): nice SRV_INGEST_NICE, so the rest of the process gets the CPU first
     * when both want it. */
    SRV_POOL_THROUGHPUT,
    /* Short jobs a user waits for (queries): nice 0 and a short scheduler slice, so a woken
     * thread runs at once instead of after a busy thread's slice. */
    SRV_POOL_LATENCY,
} srv_pool_class;

/* name: "ingest" or "query" (a static string; metrics and thread names). */
srv_workers *srv_workers_new(struct event_base *base, const char *name, int nthreads,
                             size_t max_pending, srv_pool_class cls);
/* The throughput pool's nice value above the rest of the process. */
#define SRV_INGEST_NICE 5
/* Joins the threads after they finish what is queued. Call after the loop has stopped. */
void srv_workers_free(srv_workers *w);

int srv_workers_submit(srv_workers *w, srv_exchange *ex, srv_job_fn run);
size_t srv_workers_pending(srv_workers *w);
/* Exchanges submitted and not yet handed back to the loop (queued + running + completing). */
size_t srv_workers_outstanding(srv_workers *w);
const char *srv_workers_name(const srv_workers *w);

#endif
