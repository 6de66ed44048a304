/* Routing: one table from (method, path) to a handler, shared by every listener and protocol.
 *
 * A route is INLINE (runs on the event loop: cheap, never blocks: /ready, /metrics), WORKER (runs
 * on the ingest pool behind its bounded queue: decoding, conversion, storage) or QUERY (runs on
 * the query pool, its own threads and queue: reads of the store), so a span query never waits
 * behind Exports however many are queued. When a pool's queue is full the router answers at once
 * with SP_EFULL, which becomes gRPC RESOURCE_EXHAUSTED or HTTP 429 with Retry-After. Unknown gRPC
 * paths get UNIMPLEMENTED, unknown HTTP paths 404.
 */
#ifndef SRV_ROUTER_H
#define SRV_ROUTER_H

#include "request.h"

typedef void (*srv_handler_fn)(srv_request *req, srv_response *resp, void *ud);

typedef enum { SRV_INLINE, SRV_WORKER, SRV_QUERY } srv_route_kind;

typedef struct srv_router srv_router;

srv_router *srv_router_new(void);
void srv_router_free(srv_router *r);

/* method NULL = any method. path ending in '*' matches by prefix. endpoint names a metrics label.
 */
int srv_router_add(srv_router *r, const char *method, const char *path, srv_route_kind kind,
                   const char *endpoint, srv_handler_fn fn, void *ud);

/* ---- server/ internals: used by the protocol layers, not by handlers ---- */
struct srv_exchange;
struct srv_workers;

struct srv_route {
    char method[16];
    char *path;
    size_t plen;
    int prefix;
    srv_route_kind kind;
    int endpoint;
    srv_handler_fn fn;
    void *ud;
};

/* The pools WORKER and QUERY routes run on; query NULL = QUERY routes share ingest's pool. */
void srv_router_set_workers(srv_router *r, struct srv_workers *ingest, struct srv_workers *query);
struct srv_auth;
/* Credentials and tenancy rules (server/auth.h) checked on every request; NULL = none. */
void srv_router_set_auth(srv_router *r, const struct srv_auth *a);
/* Called once the request head is known: picks the route and starts the endpoint's metrics. */
void srv_router_match(srv_router *r, struct srv_exchange *ex);
/* Called once the request is complete (or must be answered early, e.g. body too big): runs or
 * queues the handler; ex->on_done follows exactly once on the loop thread unless cancelled. */
void srv_router_dispatch(srv_router *r, struct srv_exchange *ex);
/* Answers ex with err right away (no handler). */
void srv_router_fail(struct srv_exchange *ex, const sp_err *err);

#endif
