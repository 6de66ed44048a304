/* The ingest pipeline behind every ingest route: correlate, push (staged), store, push (queued),
 * forward traces. The program's own wiring: it is the otlp_sink the ingest services call, once per
 * request on a worker thread, and it answers only when the batch is durable.
 *
 * Owns nothing it is given (the correlator, store, pusher and trace outbox are opened and closed
 * by main.c); holds no lock of its own. Errors come from the stage that failed: the store's
 * (SP_EUNAVAIL, SP_EFULL, SP_EINVAL), the pusher's or the trace outbox's (SP_EFULL, SP_EUNAVAIL)
 * when they are the only copy; all go back to the client as the request's answer, none is fatal
 * for the process.
 */
#ifndef APP_PIPELINE_H
#define APP_PIPELINE_H

#include "../common/err.h"
#include "../common/profile.h"
#include "../correlator/correlator.h"
#include "../delivery/outbox.h"
#include "../delivery/pusher.h"
#include "../server/request.h"
#include "../storage-adapter/store.h"

#include <pthread.h>

typedef struct pipeline {
    corr *corr;
    store *store;    /* SQLite, or the "none" store when another engine keeps the data */
    int store_local; /* 1 when store keeps a copy (its commit is the acknowledgement) */
    pusher *pusher;  /* --store ...pyroscope, or NULL */
    outbox *forward; /* --traces-forward-to, or NULL */
    struct app_symbols *symbols; /* its counters join /metrics; NULL = none */
    /* the maintenance thread (pipeline_start/stop): the correlator's expiry once a second */
    pthread_t tick;
    pthread_mutex_t tick_mu;
    pthread_cond_t tick_cv;
    int tick_stop, ticking;
} pipeline;

/* Starts the maintenance thread (-1 when it cannot be created); pipeline_stop() joins it. */
int pipeline_start(pipeline *p);
void pipeline_stop(pipeline *p);

/* otlp_sink.write: correlate, then pusher_stage, store_write, pusher_commit, forward_traces; the
 * correlator's ticket is committed when the store committed, aborted when it did not. */
int pipeline_ingest(void *ud, const srv_request *req, sp_batch *b, sp_err *err);

/* otlp_sink's streams (otlp/sink.h): a large Export's profiles in parts, each correlated and
 * handed to store_stream_part() on a stage thread of the stream's own while the worker converts
 * the next (P1-P3 in pipeline.c); one transaction, acknowledged after its commit. A part the
 * stage could not hand on is reported by the next pipeline_stream_part() or by end, which then
 * stores nothing of the request. Offered only when the store's commit is the acknowledgement and
 * nothing else stages the batch (no Pyroscope pusher): begin returns NULL otherwise, and the
 * request goes through pipeline_ingest(). Each part's correlator ticket is committed when the
 * stream committed, aborted when it did not (I4). */
void *pipeline_stream_begin(void *ud, const srv_request *req, sp_arena *arena);
int pipeline_stream_part(void *stream, sp_batch *part, sp_err *err);
int pipeline_stream_end(void *stream, int failed, sp_err *err);

/* The metrics render hook: the correlator's and the store's counters as gauges (reads published
 * figures only: never sweeps, never waits for an ingest). */
void pipeline_metrics(void *ud);

/* The trace forwarder's rule (forward_hooks.profilable): the correlator's. */
int pipeline_span_profilable(void *ud, const char *tenant, const sp_span *sp);

/* The trace outbox's prepare hook (outbox_prepare_fn, ud = the pipeline): marks, when a batch of
 * forwarded exports is sent, the spans that have a span profile by then — every eligible span
 * of a profiled process, or with a Pyroscope pusher only the local roots that Pyroscope can
 * answer exactly (corr_span_mark, pusher_span_incomplete). */
int pipeline_forward_prepare(void *ud, const char *tenant, const uint8_t *body, size_t len,
                             sp_buf *out, sp_err *err);

#endif
