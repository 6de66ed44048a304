/* Pushing correlated profiles to a Pyroscope cluster (push.v1.PusherService/Push) through the
 * durable outbox (outbox.h).
 *
 * Owns: the hold (samples waiting for their spans, hold.h) and its journal in
 * <data_dir>/outbox/pyroscope-hold, encoding what leaves as Push requests (see pusher.c for what is
 * sent and when), and its own outbox queue in <data_dir>/outbox/pyroscope. The program wires it
 * beside the store: pusher_stage() before store_write(), then pusher_commit() when the store
 * committed or pusher_abort() when it failed. Thread-safe: any number of ingest workers at once
 * (the outbox serialises); pusher_close() once, after every other call returned.
 *
 * Errors: SP_EINVAL (no URL, at open), SP_ENOMEM, SP_EFULL (the queue is at its byte cap: retry
 * later), SP_EUNAVAIL (the queue's directory cannot be written). None is fatal for the process;
 * each concerns the one batch.
 */
#ifndef DELIVERY_PUSHER_H
#define DELIVERY_PUSHER_H

#include "hold.h"
#include "outbox.h"

#include "../common/err.h"
#include "../common/profile.h"

typedef struct pusher pusher;

typedef struct pusher_options {
    const char *data_dir;  /* the queue lives in <data_dir>/outbox/pyroscope */
    outbox_http http;      /* http.url: Pyroscope's base URL; credentials, CA */
    uint64_t max_bytes;    /* queue cap; 0 = 256 MiB */
    int64_t linger_ns;     /* batch interval; 0 = send at once */
    int fsync;             /* 1 when the queue is the only copy (the acknowledgement) */
    int64_t delay_ns;      /* samples leave this long after their 10 s bucket ended (the hold,
                            * see pusher.c); negative = at arrival */
    size_t hold_max_bytes; /* the hold's memory; 0 = 256 MiB */
    /* Seams for tests and benchmarks: a sender instead of HTTP (outbox_options.deliver), and
     * the clock that stamps arrivals (NULL = CLOCK_REALTIME). */
    outbox_deliver_fn deliver;
    void *deliver_ud;
    int64_t (*clock_ns)(void);
} pusher_options;

#define PUSHER_MAX_GROUPS 16

typedef struct pusher_ticket {
    outbox_ticket ob;
    int staged; /* pushed at arrival: the staged queue item */
    int held;   /* held: the planned groups and their staged journal files */
    int ngroups;
    hold_group_id groups[PUSHER_MAX_GROUPS];
    uint64_t seqs[PUSHER_MAX_GROUPS];
    uint64_t sizes[PUSHER_MAX_GROUPS]; /* the journal files' bytes */
    int64_t plan_ns;
} pusher_ticket;

int pusher_open(pusher **out, const pusher_options *o, sp_err *err);
/* Stages b: its samples' journal files (held), or its Push request (at arrival). */
int pusher_stage(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err);
/* Commits what was staged (b: the same batch, now stored): held samples join the hold and
 * attach_only profiles relabel held samples. An error here leaves nothing queued. */
int pusher_commit(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err);
void pusher_abort(pusher *p, pusher_ticket *t);
/* Lets the due groups leave (the maintenance thread, once a second) and publishes the counters. */
void pusher_tick(pusher *p, int64_t now_ns);
/* 1 when the span claimed samples that had already been pushed: Pyroscope cannot answer it
 * exactly (the trace forwarder leaves it unmarked). */
int pusher_span_incomplete(pusher *p, const char *tenant, const uint8_t span_id[8]);
/* Everything held leaves, then the queue closes. Once, after every other call returned. */
void pusher_close(pusher *p);

/* The hold's counters (zeros when pushing at arrival). */
void pusher_hold_stats(pusher *p, hold_stats *out);

/* A journal file: tenant and Push request payload (pointers into d). SP_EINVAL when it is not
 * one (bad magic, lengths, or CRC). */
int pusher_journal_parse(const uint8_t *d, size_t n, const char **tenant, size_t *tlen,
                         const uint8_t **payload, size_t *plen);

#endif
