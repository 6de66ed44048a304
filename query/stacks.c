/* Merged stacks for the query handlers (see stacks.h). */
#include "stacks.h"
#include "spanset.h"
#include "../common/hex.h"

#include <stdio.h>
#include <string.h>

/* Span queries: a service_name="X" matcher is asked of the spans, not of the series, when every
 * span asked for is indexed with service X. Grafana's "Profiles for this span" sends the span's
 * own service; eBPF samples are stored under unknown_service:<executable> (or, once the
 * process's spans arrived, under the learned service), and the span's samples must come back
 * either way. Any other matcher (or a service the spans do not carry) still filters series. */
static int span_service_matchers(const query_ctx *c, store_query *q, const uint8_t (*ids)[8],
                                 size_t nids, sp_arena *a, sp_err *err)
{
    if (!nids || nids > 64)
        return 0;
    const char *svc = NULL; /* the one service every span carries */
    for (size_t i = 0; i < nids; i++) {
        sp_span sp;
        int rc = store_span_get(c->store, q->tenant, ids[i], a, &sp, err);
        if (rc == SP_ENOTFOUND || rc == SP_EUNIMPL)
            return 0;
        if (rc)
            return rc;
        if (!sp.service || (svc && strcmp(svc, sp.service) != 0))
            return 0;
        svc = sp.service;
    }
    store_matcher *rest = sp_arena_alloc(a, (q->nmatchers + 1) * sizeof *rest);
    if (!rest)
        return sp_fail(err, SP_ETOOBIG, "query too large");
    size_t n = 0;
    for (size_t k = 0; k < q->nmatchers; k++) {
        const store_matcher *m = &q->matchers[k];
        if (m->op == STORE_MATCH_EQ && strcmp(m->name, "service_name") == 0 &&
            strcmp(m->value, svc) == 0)
            continue;
        rest[n++] = *m;
    }
    q->matchers = rest;
    q->nmatchers = n;
    return 0;
}

static int span_stacks(const query_ctx *c, store_query *q, const uint8_t (*ids)[8], size_t nids,
                       sp_arena *a, store_stacks *out, sp_err *err)
{
    int rc = span_service_matchers(c, q, ids, nids, a, err);
    return rc ? rc : store_span_stacks(c->store, q, ids, nids, a, out, err);
}

/* The samples of a span set (trace or name), each once. */
static int spanset_stacks(const query_ctx *c, const query_stacks_req *r, sp_arena *a,
                          store_stacks *out, int *done, sp_err *err)
{
    store_selector sel = r->sel ? *r->sel : (store_selector){0};
    query_spanset set;
    int rc, named = 1;
    *done = 0;
    if (r->ntrace_ids)
        rc = query_spanset_by_traces(c, r->tenant, &sel, r->trace_ids, r->ntrace_ids, a, &set, err);
    else
        rc =
            query_spanset_by_name(c, r->tenant, &sel, r->start_ns, r->end_ns, a, &set, &named, err);
    if (rc || !named)
        return rc;
    *done = 1;
    if (!set.n)
        return 0;
    store_query q = query_spanset_query(&set, r->tenant, r->type ? r->type->id : NULL, &sel);
    q.detail = r->detail;
    return store_span_stacks(c->store, &q, (const uint8_t(*)[8])set.ids, set.n, a, out, err);
}

static int select_stacks(const query_ctx *c, const query_stacks_req *r, sp_arena *a,
                         store_stacks *out, sp_err *err)
{
    if (r->ntrace_ids && r->by_span)
        return sp_fail(err, SP_EINVAL,
                       "span_selector and trace_id_selector cannot be combined: ask for the "
                       "spans or for the traces");
    if (!r->by_span) {
        int done;
        int rc = spanset_stacks(c, r, a, out, &done, err);
        if (rc || done)
            return rc;
    }
    store_query q = {
        .tenant = r->tenant,
        .type_id = r->type ? r->type->id : NULL,
        .matchers = r->sel ? r->sel->matchers : NULL,
        .nmatchers = r->sel ? r->sel->nmatchers : 0,
        .start_ns = r->start_ns,
        .end_ns = r->end_ns,
        .detail = r->detail,
    };
    if (r->by_span) {
        if (!r->nspan_ids)
            return 0;
        return span_stacks(c, &q, r->span_ids, r->nspan_ids, a, out, err);
    }
    /* A matcher span_id="<16 hex>" selects a span's profile. span_id is never a series label (it
     * is the link), so this is the only thing it can mean; it lets Grafana's traces-to-profiles
     * custom query ({span_id="${__span.spanId}"}) reach spans that spanprof correlated itself. */
    if (r->sel) {
        for (size_t i = 0; i < r->sel->nmatchers; i++) {
            const store_matcher *m = &r->sel->matchers[i];
            uint8_t(*id)[8] = sp_arena_alloc(a, sizeof *id);
            if (m->op != STORE_MATCH_EQ || strcmp(m->name, "span_id") != 0 || !id ||
                sp_hex_decode(m->value, *id, 8) != 0)
                continue;
            store_matcher *rest = sp_arena_alloc(a, (r->sel->nmatchers + 1) * sizeof *rest);
            if (!rest)
                return sp_fail(err, SP_ETOOBIG, "query too large");
            size_t n = 0;
            for (size_t k = 0; k < r->sel->nmatchers; k++)
                if (k != i)
                    rest[n++] = r->sel->matchers[k];
            q.matchers = rest;
            q.nmatchers = n;
            return span_stacks(c, &q, (const uint8_t(*)[8])id, 1, a, out, err);
        }
    }
    return store_select_stacks(c->store, &q, a, out, err);
}

int query_stacks_select(const query_ctx *c, const query_stacks_req *r, sp_arena *a,
                        store_stacks *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = select_stacks(c, r, a, out, err);
    if (!rc && c->unresolved)
        *c->unresolved += out->unresolved;
    return rc;
}

query_ctx query_ctx_for_request(const void *shared, uint32_t *unresolved)
{
    query_ctx c = *(const query_ctx *)shared;
    *unresolved = 0;
    c.unresolved = unresolved;
    return c;
}

void query_unresolved_header(srv_response *resp, uint32_t unresolved)
{
    char v[16];
    snprintf(v, sizeof v, "%u", unresolved);
    srv_response_header(resp, "x-spanprof-unresolved-frames", v);
}

int query_max_nodes(const query_ctx *c, int64_t requested, int64_t *out, sp_err *err)
{
    if (requested == 0)
        *out = c->max_nodes_default;
    else if (requested > c->max_nodes_max)
        return sp_fail(err, SP_EINVAL, "max_nodes %lld is greater than the allowed %lld",
                       (long long)requested, (long long)c->max_nodes_max);
    else
        *out = requested < 0 ? -1 : requested;
    return 0;
}
