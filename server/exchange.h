/* One request/response exchange as it travels from a connection through the router (and maybe a
 * worker thread) and back. Internal to server/.
 *
 * Lifecycle: the protocol layer (http1.c / http2.c) creates it when headers start, fills the
 * request, and calls srv_router_dispatch(). Exactly one call of ex->on_done follows on the
 * event-loop thread, unless the connection or stream went away first: then the protocol layer sets
 * ex->cancelled and forgets the exchange, and whoever holds it last (the completion path) frees it.
 */
#ifndef SRV_EXCHANGE_H
#define SRV_EXCHANGE_H

#include "request.h"

#include <stdatomic.h>
#include <stdint.h>

struct srv_route;

typedef struct srv_exchange srv_exchange;
struct srv_exchange {
    srv_request req;
    srv_response resp;
    const struct srv_route *route;
    void (*on_done)(srv_exchange *ex);
    void *owner; /* the stream or connection waiting for the answer */
    atomic_int cancelled;
    int64_t start_ns;
    size_t charged;   /* body bytes charged to the process-wide in-flight budget */
    int metered;      /* counted in its endpoint's in-flight gauge, not yet finished */
    int auth_refused; /* server/auth.c refused the head: the body is discarded, auth_err answered */
    size_t discarded; /* body bytes dropped since (still bounded by the message limit) */
    sp_err auth_err;
    void (*worker_next)(srv_exchange *ex); /* on_done to restore after a worker ran it */
    srv_exchange *next;                    /* worker queue / completion list link */
};

/* body_limit: the most body bytes accepted; more sets req.body_too_big. */
srv_exchange *srv_exchange_new(srv_proto proto, size_t body_limit);
void srv_exchange_free(srv_exchange *ex);

/* Appends a header (name lower-cased). SP_ETOOBIG past the header budget (count or bytes). */
int srv_exchange_add_header(srv_exchange *ex, const char *name, size_t nlen, const char *value,
                            size_t vlen);
/* Splits target into path and query and percent-decodes the path. */
int srv_exchange_set_target(srv_exchange *ex, const char *target, size_t len);

/* Appends body bytes, charging the in-flight budget. Returns SP_ETOOBIG when the message limit is
 * passed (sets req.body_too_big), SP_EFULL when the process-wide budget is exhausted. */
int srv_exchange_body(srv_exchange *ex, const void *data, size_t len);

/* Process-wide budget of buffered request bodies (all connections), set once at start-up. */
void srv_inflight_budget_set(size_t bytes);
size_t srv_inflight_bytes(void);

int64_t srv_now_ns(void); /* CLOCK_MONOTONIC */
/* Parses a grpc-timeout header value ("100m", "5S"); -1 when malformed. */
int64_t srv_grpc_timeout_ns(const char *value);

/* grpc-message as gRPC over HTTP/2 ("Responses") writes it: percent-encoded outside printable
 * ASCII and '%'. Both protocol layers use it, so a message quoting the request (a path) can never
 * break a header line. Returns the length written to out (NUL-terminated, truncated to outsz). */
size_t srv_grpc_message_encode(const char *in, char *out, size_t outsz);

/* Body bytes allowed beyond --max-recv-msg-size: the 5-byte gRPC message prefix. */
#define SRV_FRAME_ALLOWANCE  5
#define SRV_MAX_HEADERS      100
#define SRV_MAX_HEADER_BYTES (64 * 1024)

#endif
