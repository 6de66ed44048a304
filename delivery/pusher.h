/* Pushing correlated profiles to a Pyroscope cluster (push.v1.PusherService/Push) through the
 * durable outbox (outbox.h).
 *
 * Owns: encoding a batch as one PushRequest (see pusher.c for what is sent and what is not) and
 * its own outbox queue in <data_dir>/outbox/pyroscope. The program wires it beside the store:
 * pusher_stage() before store_write(), then pusher_commit() when the store committed or
 * pusher_abort() when it failed. Thread-safe: any number of ingest workers at once (the outbox
 * serialises); pusher_close() once, after every other call returned.
 *
 * Errors: SP_EINVAL (no URL, at open), SP_ENOMEM, SP_EFULL (the queue is at its byte cap: retry
 * later), SP_EUNAVAIL (the queue's directory cannot be written). None is fatal for the process;
 * each concerns the one batch.
 */
#ifndef DELIVERY_PUSHER_H
#define DELIVERY_PUSHER_H

#include "outbox.h"

#include "../common/err.h"
#include "../common/profile.h"

typedef struct pusher pusher;

typedef struct pusher_options {
    const char *data_dir; /* the queue lives in <data_dir>/outbox/pyroscope */
    outbox_http http;     /* http.url: Pyroscope's base URL; credentials, CA */
    uint64_t max_bytes;   /* queue cap; 0 = 256 MiB */
    int64_t linger_ns;    /* batch interval; 0 = send at once */
    int fsync;            /* 1 when the queue is the only copy (the acknowledgement) */
} pusher_options;

typedef struct pusher_ticket {
    outbox_ticket ob;
    int staged; /* 0: nothing of the batch is for Pyroscope (commit and abort do nothing) */
} pusher_ticket;

int pusher_open(pusher **out, const pusher_options *o, sp_err *err);
/* Encodes b (attach_only profiles are not pushed: counted, see pusher.c) and stages it. */
int pusher_stage(pusher *p, const sp_batch *b, pusher_ticket *t, sp_err *err);
/* Queues what was staged. An error here leaves nothing queued. */
int pusher_commit(pusher *p, pusher_ticket *t, sp_err *err);
void pusher_abort(pusher *p, pusher_ticket *t);
void pusher_close(pusher *p);

#endif
