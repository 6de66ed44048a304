/* The outbox: a bounded on-disk queue of messages for a remote destination, and the thread that
 * delivers them with retries.
 *
 * Used by the Pyroscope pusher (delivery/pusher.c: Push requests) and by trace
 * forwarding (app/pipeline.c feeds delivery/forward.c into one: OTLP trace exports). Items are
 * opaque protobuf messages tagged with a tenant; consecutive items of one tenant are delivered
 * together as their concatenation, which protobuf defines as their merge (both PushRequest and
 * ExportTraceServiceRequest are a repeated field 1 only), up to batch_max_bytes per request.
 *
 * Contract:
 * - outbox_put() returns once the item is a file under dir (fsync'ed, directory included, when
 *   o->fsync): an item acknowledged to a client survives a restart and is delivered after it.
 *   The two-phase form (outbox_stage(), then outbox_commit() or outbox_abort()) lets a caller make
 *   the item visible only after something else committed (the SQLite store acknowledges first).
 * - Delivery is at least once: an item is deleted only after the destination accepted the
 *   request that carried it; a crash between the answer and the delete sends it again.
 * - Retryable failures (connection errors, timeouts, HTTP 408/429/502/503/504, Connect
 *   unavailable / resource_exhausted, the gRPC statuses outbox_grpc_verdict() names) are retried
 *   with exponential backoff and full jitter, without limit while the queue has room; any other
 *   answer (400, 401, 413...) drops the batch with a log line naming the status and the body,
 *   counted as dropped. A delay the destination asks for (HTTP Retry-After, gRPC RetryInfo) is
 *   the minimum before the next attempt, capped at retry_after_max_ns.
 * - The queue holds at most max_bytes; an item that would exceed it drops the oldest items first
 *   (counted as dropped); an item larger than the whole bound is refused with SP_ETOOBIG.
 * - Metrics (common/metrics.c gauges, prefix = name): <name>_queued, <name>_queued_bytes,
 *   <name>_sent_total, <name>_retried_total, <name>_dropped_total (items).
 * Thread-safe; outbox_close() once, after every other call returned.
 */
#ifndef STORE_OUTBOX_H
#define STORE_OUTBOX_H

#include "../common/buf.h"
#include "../common/err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct outbox outbox;

/* Where and how the built-in sender POSTs a batch (libcurl). */
typedef struct outbox_http {
    const char *url;
    const char *content_type;   /* e.g. "application/proto" */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated, or NULL */
    const char *tenant_header;  /* set to each batch's tenant (e.g. "X-Scope-OrgID"); NULL = none */
    const char *basic_user;     /* basic auth, with the password read from basic_password_file */
    const char *basic_password_file;
    const char *bearer_token_file;        /* "Authorization: Bearer <first line of the file>" */
    const char *ca_file;                  /* PEM bundle trusted instead of the system's CAs */
    const char *client_cert, *client_key; /* PEM, for mutual TLS */
    int64_t timeout_ns;                   /* per request; 0 = 10 s */
    /* 1: url names a gRPC method (http:// = HTTP/2 over cleartext with prior knowledge, https:// =
     * TLS with ALPN h2); each batch is one length-prefixed gRPC message, and grpc-status in the
     * trailers decides (outbox_grpc_verdict()). Header names are sent lowercase. */
    int grpc;
} outbox_http;

/* A custom sender (tests, other transports): 0 = accepted, SP_EUNAVAIL = retry later, any other
 * code = rejected for good (the batch is dropped). With SP_EUNAVAIL it may set *retry_after_ns
 * (preset to -1) to the delay the destination asked for. */
typedef int (*outbox_deliver_fn)(void *ud, const char *tenant, const uint8_t *body, size_t len,
                                 int64_t *retry_after_ns, sp_err *err);

/* Rewrites a batch just before it is sent (the body is the items' concatenation): 0 with the
 * new body in out, or an error (logged; the batch is sent as queued). */
typedef int (*outbox_prepare_fn)(void *ud, const char *tenant, const uint8_t *body, size_t len,
                                 sp_buf *out, sp_err *err);

typedef struct outbox_options {
    const char *dir;           /* created if missing; holds only this outbox's files */
    const char *name;          /* metric prefix and log name, e.g. "pyroscope" */
    uint64_t max_bytes;        /* 0 = 256 MiB */
    size_t batch_max_bytes;    /* one request carries at most this much (or one item); 0 = 4 MiB */
    int64_t linger_ns;         /* wait this long for more items before sending; 0 = none */
    int64_t hold_ns;           /* an item is sent no sooner than this after it was queued (and
                                * after a restart, after the open); 0 = at once */
    outbox_prepare_fn prepare; /* NULL = send the items as queued */
    void *prepare_ud;
    int64_t backoff_min_ns;     /* first retry delay; 0 = 200 ms */
    int64_t backoff_max_ns;     /* cap; 0 = 30 s */
    int64_t retry_after_max_ns; /* cap on a delay the destination asks for; 0 = 5 min */
    int fsync;                  /* fsync every item and the directory before put returns */
    outbox_http http;           /* used when deliver is NULL */
    outbox_deliver_fn deliver;  /* NULL = POST with http */
    void *deliver_ud;
} outbox_options;

typedef struct outbox_stats {
    uint64_t queued, queued_bytes; /* on disk now */
    uint64_t enqueued, sent, retried, dropped, batches_sent;
} outbox_stats;

/* Opens dir (items left by an earlier run are queued again, oldest first; a torn or foreign
 * file is dropped with a log line) and starts the sender thread. */
int outbox_open(outbox **out, const outbox_options *o, sp_err *err);

int outbox_put(outbox *ob, const char *tenant, const void *data, size_t len, sp_err *err);

/* Two-phase put: stage writes the item to a temporary file (fsync'ed per o->fsync) and returns a
 * ticket; commit makes it a queued item (rename), abort deletes it. Exactly one of the two must
 * follow every successful stage. */
typedef struct outbox_ticket {
    uint64_t seq;
    uint64_t size;
} outbox_ticket;
int outbox_stage(outbox *ob, const char *tenant, const void *data, size_t len, outbox_ticket *t,
                 sp_err *err);
int outbox_commit(outbox *ob, const outbox_ticket *t, sp_err *err);
void outbox_abort(outbox *ob, const outbox_ticket *t);

/* Waits until the queue is empty or timeout_ns passed: 0 when empty, SP_EDEADLINE otherwise. */
int outbox_drain(outbox *ob, int64_t timeout_ns);

void outbox_stats_get(outbox *ob, outbox_stats *out);

/* Stops the sender (an in-flight request is abandoned; its items stay queued) and frees. */
void outbox_close(outbox *ob);

/* The built-in HTTP sender's verdict on an answer: 0 for 2xx, SP_EUNAVAIL for retryable
 * statuses (or a Connect body naming unavailable / resource_exhausted), SP_EINVAL otherwise. */
int outbox_http_verdict(long status, const char *body, size_t len);

/* A Retry-After value (RFC 9110: delay-seconds or an HTTP-date) as nanoseconds from now (0 for a
 * date in the past); -1 when it is neither. */
int64_t outbox_retry_after_ns(const char *value, int64_t now_unix_s);

/* The delay a grpc-status-details-bin trailer (base64 of google.rpc.Status) asks for through a
 * google.rpc.RetryInfo detail, in nanoseconds; -1 when it has none. */
int64_t outbox_grpc_retry_info_ns(const char *b64, size_t len);

/* The OTLP/gRPC exporter rules on a grpc-status: 0 for OK; SP_EUNAVAIL for CANCELLED,
 * DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED only
 * when the server sent RetryInfo (has_retry_info); SP_EINVAL for every other status. */
int outbox_grpc_verdict(int grpc_status, int has_retry_info);

#endif
