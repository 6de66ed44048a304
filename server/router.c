#include "router.h"
#include "auth.h"
#include "exchange.h"
#include "../common/metrics.h"
#include "workers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 64

struct srv_router {
    struct srv_route routes[MAX_ROUTES];
    int nroutes;
    srv_workers *workers, *query_workers;
    const srv_auth *auth;
    int other_endpoint;
};

srv_router *srv_router_new(void)
{
    srv_router *r = calloc(1, sizeof *r);
    if (r)
        r->other_endpoint = sp_metrics_endpoint("other");
    return r;
}

void srv_router_free(srv_router *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nroutes; i++)
        free(r->routes[i].path);
    free(r);
}

void srv_router_set_workers(srv_router *r, srv_workers *ingest, srv_workers *query)
{
    r->workers = ingest;
    r->query_workers = query;
}

void srv_router_set_auth(srv_router *r, const srv_auth *a)
{
    r->auth = a;
}

int srv_router_add(srv_router *r, const char *method, const char *path, srv_route_kind kind,
                   const char *endpoint, srv_handler_fn fn, void *ud)
{
    if (r->nroutes == MAX_ROUTES)
        return SP_ENOMEM;
    struct srv_route *rt = &r->routes[r->nroutes];
    memset(rt, 0, sizeof *rt);
    snprintf(rt->method, sizeof rt->method, "%s", method ? method : "");
    rt->path = strdup(path);
    if (!rt->path)
        return SP_ENOMEM;
    rt->plen = strlen(path);
    if (rt->plen && path[rt->plen - 1] == '*') {
        rt->prefix = 1;
        rt->plen--;
    }
    rt->kind = kind;
    rt->endpoint = sp_metrics_endpoint(endpoint ? endpoint : path);
    rt->fn = fn;
    rt->ud = ud;
    r->nroutes++;
    return 0;
}

static int path_matches(const struct srv_route *rt, const char *path)
{
    if (rt->prefix)
        return strncmp(path, rt->path, rt->plen) == 0;
    return strcmp(path, rt->path) == 0;
}

/* Sentinels for "no route": path unknown, or known under another method. */
static const struct srv_route no_route, wrong_method;

void srv_router_match(srv_router *r, srv_exchange *ex)
{
    const char *path = ex->req.path ? ex->req.path : "";
    const struct srv_route *found = &no_route;
    for (int i = 0; i < r->nroutes; i++) {
        const struct srv_route *rt = &r->routes[i];
        if (!path_matches(rt, path))
            continue;
        if (rt->method[0] && strcmp(rt->method, ex->req.method) != 0 &&
            !(strcmp(rt->method, "GET") == 0 && strcmp(ex->req.method, "HEAD") == 0)) {
            found = &wrong_method;
            continue;
        }
        found = rt;
        break;
    }
    ex->route = found;
    ex->req.endpoint = found->fn ? found->endpoint : r->other_endpoint;
    ex->req.endpoint_name = sp_metrics_endpoint_name(ex->req.endpoint);
    sp_metrics_request_start(ex->req.endpoint);
    ex->metered = 1;
    /* Decided on the head alone, before any body byte is buffered. */
    ex->auth_refused = srv_auth_check(r->auth, &ex->req, &ex->auth_err) != 0;
}

static void complete(srv_exchange *ex)
{
    if (ex->metered) {
        sp_metrics_request_done(ex->req.endpoint, ex->resp.status, ex->resp.grpc,
                                ex->resp.grpc_status, ex->req.body.len);
        ex->metered = 0;
    }
    ex->on_done(ex);
}

void srv_router_fail(srv_exchange *ex, const sp_err *err)
{
    srv_response_error(&ex->resp, &ex->req, err);
    complete(ex);
}

static void run_handler(srv_exchange *ex)
{
    const struct srv_route *rt = ex->route;
    if (ex->req.deadline_ns && srv_now_ns() > ex->req.deadline_ns) {
        sp_err err;
        sp_fail(&err, SP_EDEADLINE, "deadline exceeded before the request was handled");
        srv_response_error(&ex->resp, &ex->req, &err);
        return;
    }
    rt->fn(&ex->req, &ex->resp, rt->ud);
    if (ex->resp.status == 0)
        ex->resp.status = 200;
}

/* Runs on the loop thread when a worker hands the exchange back. */
static void worker_done(srv_exchange *ex)
{
    ex->on_done = ex->worker_next;
    complete(ex);
}

void srv_router_dispatch(srv_router *r, srv_exchange *ex)
{
    sp_err err = {0};
    const struct srv_route *rt = ex->route;
    if (!rt)
        srv_router_match(r, ex);
    rt = ex->route;
    if (ex->auth_refused) { /* before routing: an unauthenticated peer learns nothing */
        srv_report_refusal(&ex->req, SP_EAUTH, 0, ex->auth_err.msg);
        srv_auth_refuse(r->auth, &ex->req, &ex->resp, &ex->auth_err);
        complete(ex);
        return;
    }
    if (rt == &no_route || rt == &wrong_method) {
        if (srv_request_is_grpc(&ex->req))
            sp_fail(&err, SP_EUNIMPL, "unknown service or method %s", ex->req.path);
        else if (rt == &wrong_method) {
            srv_response_send(&ex->resp, 405, "text/plain; charset=utf-8", "method not allowed\n",
                              19);
            complete(ex);
            return;
        } else
            sp_fail(&err, SP_ENOTFOUND, "no such path: %s", ex->req.path);
        srv_router_fail(ex, &err);
        return;
    }
    if (ex->req.body_too_big) {
        sp_fail(&err, SP_ETOOBIG,
                "received message larger than max (%zu bytes); the limit is set by "
                "--max-recv-msg-size",
                ex->req.body.limit - SRV_FRAME_ALLOWANCE);
        srv_router_fail(ex, &err);
        return;
    }
    if (rt->kind == SRV_INLINE || !r->workers) {
        run_handler(ex);
        complete(ex);
        return;
    }
    srv_workers *pool = rt->kind == SRV_QUERY && r->query_workers ? r->query_workers : r->workers;
    ex->worker_next = ex->on_done;
    ex->on_done = worker_done;
    if (srv_workers_submit(pool, ex, run_handler) != 0) {
        ex->on_done = ex->worker_next;
        sp_fail(&err, SP_EFULL, "%s queue is full (%zu requests waiting); retry later",
                srv_workers_name(pool), srv_workers_pending(pool));
        srv_router_fail(ex, &err);
    }
}
