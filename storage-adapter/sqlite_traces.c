/* Finding traces in the SQLite backend's span index: the services that sent spans in a time
 * range, and a service's most recent traces (the page's and the terminal client's way in).
 *
 * The span table is keyed by (hour, tenant, span_id) for retention and span lookups; these two
 * read the hours a range covers and filter, so their cost grows with the spans of those hours
 * (the default range is one hour). A service index would make them seeks but costs every span
 * write an index entry; the page asks rarely and ingest never stops, so the scan is the trade. */
#include "sqlite_read.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void hour_range(const store_query *q, int64_t *h0, int64_t *h1, int64_t *t0, int64_t *t1)
{
    *t0 = q->start_ns > 0 ? q->start_ns : INT64_MIN;
    *t1 = q->end_ns > 0 ? q->end_ns : INT64_MAX;
    *h0 = q->start_ns > 0 ? sqs_hour_of(q->start_ns) : INT32_MIN;
    *h1 = q->end_ns > 0 ? sqs_hour_of(q->end_ns - 1) : INT32_MAX;
}

int sqs_span_services(store *st, const store_query *query, sp_arena *a, store_strings *out,
                      sp_err *err)
{
    rq q;
    store_query tq = {.tenant = query->tenant};
    int rc = rq_begin(&q, st, query->tenant, &tq, a, err);
    if (rc || !q.tenant) {
        if (!rc)
            rq_end(&q);
        return rc;
    }
    int64_t h0, h1, t0, t1;
    hour_range(query, &h0, &h1, &t0, &t1);
    sqlite3_stmt *s = rq_stmt(&q, R_SERVICES);
    if (!s) {
        rc = rq_prep_fail(&q, R_SERVICES);
        rq_end(&q);
        return rc;
    }
    sqlite3_bind_int64(s, 1, h0);
    sqlite3_bind_int64(s, 2, h1);
    sqlite3_bind_int64(s, 3, q.tenant);
    sqlite3_bind_int64(s, 4, t0);
    sqlite3_bind_int64(s, 5, t1);
    size_t cap = 0;
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        if (!name || !*name)
            continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            const char **nv = sp_arena_alloc(a, nc * sizeof *nv);
            if (!nv) {
                rc = rq_nomem(&q);
                break;
            }
            if (out->n)
                memcpy(nv, out->v, out->n * sizeof *nv);
            out->v = nv;
            cap = nc;
        }
        if (!(out->v[out->n] = sp_arena_strndup(a, name, strlen(name)))) {
            rc = rq_nomem(&q);
            break;
        }
        out->n++;
    }
    sqlite3_reset(s);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(&q, src, R_SERVICES);
    rq_end(&q);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

/* A string's id (a service or span name); 0 when no span ever named it. */
static int service_id(rq *q, const char *service, int64_t *out)
{
    *out = 0;
    sqlite3_stmt *s = rq_stmt(q, R_STRING_ID);
    if (!s)
        return rq_prep_fail(q, R_STRING_ID);
    sqlite3_bind_text(s, 1, service, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : rq_dberr(q, rc, R_STRING_ID);
}

/* Adds the traces of one hour (newest first) not seen yet, up to `want` in all. */
static int hour_traces(rq *q, int64_t hour, int64_t svc, int64_t t0, int64_t t1, size_t want,
                       store_trace_ids *out, size_t *cap)
{
    sqlite3_stmt *s = rq_stmt(q, R_SERVICE_TRACES);
    if (!s)
        return rq_prep_fail(q, R_SERVICE_TRACES);
    sqlite3_bind_int64(s, 1, hour);
    sqlite3_bind_int64(s, 2, q->tenant);
    sqlite3_bind_int64(s, 3, svc);
    sqlite3_bind_int64(s, 4, t0);
    sqlite3_bind_int64(s, 5, t1);
    sqlite3_bind_int64(s, 6, (int64_t)want);
    int rc = 0, src;
    while (out->n < want && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const void *id = sqlite3_column_blob(s, 0);
        if (!id || sqlite3_column_bytes(s, 0) != 16)
            continue;
        int seen = 0; /* a trace across an hour boundary: its newer hour came first */
        for (size_t i = 0; i < out->n && !seen; i++)
            seen = memcmp(out->ids[i], id, 16) == 0;
        if (seen)
            continue;
        if (out->n == *cap) {
            size_t nc = *cap ? *cap * 2 : 32;
            uint8_t(*ni)[16] = sp_arena_alloc(q->a, nc * sizeof *ni);
            int64_t *nt = sp_arena_alloc(q->a, nc * sizeof *nt);
            if (!ni || !nt) {
                rc = rq_nomem(q);
                break;
            }
            if (out->n) {
                memcpy(ni, out->ids, out->n * sizeof *ni);
                memcpy(nt, out->last_start_ns, out->n * sizeof *nt);
            }
            out->ids = ni;
            out->last_start_ns = nt;
            *cap = nc;
        }
        memcpy(out->ids[out->n], id, 16);
        out->last_start_ns[out->n++] = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc;
}

int sqs_service_traces(store *st, const store_query *query, const char *service, size_t limit,
                       sp_arena *a, store_trace_ids *out, sp_err *err)
{
    rq q;
    store_query tq = {.tenant = query->tenant};
    int rc = rq_begin(&q, st, query->tenant, &tq, a, err);
    int64_t svc = 0;
    if (!rc && q.tenant)
        rc = service_id(&q, service, &svc);
    if (rc || !q.tenant || !svc || !limit) {
        if (!rc)
            rq_end(&q);
        return rc;
    }
    int64_t h0, h1, t0, t1;
    hour_range(query, &h0, &h1, &t0, &t1);
    sqlite3_stmt *hs = rq_stmt(&q, R_SPAN_HOURS_DESC);
    if (!hs) {
        rc = rq_prep_fail(&q, R_SPAN_HOURS_DESC);
        rq_end(&q);
        return rc;
    }
    /* The hours first (the statement is reset before the per-hour reads). */
    int64_t *hours = NULL;
    size_t nh = 0, caph = 0;
    sqlite3_bind_int64(hs, 1, h0);
    sqlite3_bind_int64(hs, 2, h1);
    int src;
    while ((src = sqlite3_step(hs)) == SQLITE_ROW) {
        if (nh == caph) {
            size_t nc = caph ? caph * 2 : 64;
            int64_t *nv = realloc(hours, nc * sizeof *nv);
            if (!nv) {
                rc = rq_nomem(&q);
                break;
            }
            hours = nv;
            caph = nc;
        }
        hours[nh++] = sqlite3_column_int64(hs, 0);
    }
    sqlite3_reset(hs);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(&q, src, R_SPAN_HOURS_DESC);
    /* One more than asked, to know whether there were more. */
    size_t cap = 0, want = limit < SIZE_MAX ? limit + 1 : limit;
    for (size_t i = 0; i < nh && !rc && out->n < want; i++)
        rc = hour_traces(&q, hours[i], svc, t0, t1, want, out, &cap);
    free(hours);
    rq_end(&q);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (out->n > limit) {
        out->n = limit;
        out->truncated = 1;
    }
    return 0;
}

/* Service and span names by string id for one answer: a span set has few distinct ones, so a
 * short list beats a subselect per row (each a seek into the string table). */
typedef struct name_cache {
    int64_t id[32];
    const char *s[32];
    int n, next;
} name_cache;

static int cached_name(rq *q, name_cache *c, int64_t id, const char **out)
{
    for (int i = 0; i < c->n; i++)
        if (c->id[i] == id) {
            *out = c->s[i];
            return 0;
        }
    sqlite3_stmt *st = rq_stmt(q, R_STRING);
    if (!st)
        return rq_prep_fail(q, R_STRING);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    const char *v = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    *out = sp_arena_strndup(q->a, v ? v : "", v ? strlen(v) : 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rq_dberr(q, rc, R_STRING);
    if (!*out)
        return rq_nomem(q);
    int slot = c->n < 32 ? c->n++ : c->next++ % 32; /* full: replace round robin */
    c->id[slot] = id;
    c->s[slot] = *out;
    return 0;
}

/* A row of R_FIND_SPANS*: like rq_span_row, with service and name as string ids. */
static int find_row(rq *q, sqlite3_stmt *st, name_cache *names, sp_span *sp)
{
    memset(sp, 0, sizeof *sp);
    sqs_span_bytes(sqlite3_column_int64(st, 0), sp->span_id);
    if (sqlite3_column_bytes(st, 1) == 16)
        memcpy(sp->trace_id, sqlite3_column_blob(st, 1), 16);
    sqs_span_bytes(sqlite3_column_int64(st, 2), sp->parent_span_id);
    int rc = cached_name(q, names, sqlite3_column_int64(st, 3), &sp->service);
    if (!rc)
        rc = cached_name(q, names, sqlite3_column_int64(st, 4), &sp->name);
    sp->start_ns = (uint64_t)sqlite3_column_int64(st, 5);
    sp->end_ns = sp->start_ns + (uint64_t)sqlite3_column_int64(st, 6);
    sp->pid = sqlite3_column_int64(st, 7);
    sp->tid = sqlite3_column_int64(st, 8);
    return rc;
}

int sqs_find_spans(store *st, const store_query *query, const store_span_filter *f, sp_arena *a,
                   store_spans *out, sp_err *err)
{
    name_cache names = {0};
    rq q;
    store_query tq = {.tenant = query->tenant};
    int rc = rq_begin(&q, st, query->tenant, &tq, a, err);
    int64_t svc = 0, name = 0;
    if (!rc && q.tenant && f->service)
        rc = service_id(&q, f->service, &svc);
    if (!rc && q.tenant && f->name)
        rc = service_id(&q, f->name, &name);
    /* A service or name no span ever carried: nothing can match. */
    if (rc || !q.tenant || (f->service && !svc) || (f->name && !name)) {
        if (!rc)
            rq_end(&q);
        return rc;
    }
    int64_t h0, h1, t0, t1;
    hour_range(query, &h0, &h1, &t0, &t1);
    /* With a name, the name index (schema 5) seeks to it; without, the range's spans are read. */
    int which = f->name ? R_FIND_SPANS_BY_NAME : R_FIND_SPANS;
    sqlite3_stmt *s = rq_stmt(&q, which);
    if (!s) {
        rc = rq_prep_fail(&q, which);
        rq_end(&q);
        return rc;
    }
    sqlite3_bind_int64(s, 1, h0);
    sqlite3_bind_int64(s, 2, h1);
    sqlite3_bind_int64(s, 3, q.tenant);
    sqlite3_bind_int64(s, 4, t0);
    sqlite3_bind_int64(s, 5, t1);
    sqlite3_bind_int64(s, 6, f->min_duration_ns > 0 ? f->min_duration_ns : 0);
    sqlite3_bind_int64(s, 7, svc);
    sqlite3_bind_int64(s, 8, name);
    /* One more than asked, to know whether there were more. */
    sqlite3_bind_int64(s, 9, f->limit && f->limit < INT64_MAX ? (int64_t)f->limit + 1 : -1);
    size_t cap = 0;
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            sp_span *nv = sp_arena_alloc(a, nc * sizeof *nv);
            if (!nv) {
                rc = rq_nomem(&q);
                break;
            }
            if (out->n)
                memcpy(nv, out->spans, out->n * sizeof *nv);
            out->spans = nv;
            cap = nc;
        }
        if ((rc = find_row(&q, s, &names, &out->spans[out->n])))
            break;
        out->n++;
    }
    sqlite3_reset(s);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(&q, src, which);
    rq_end(&q);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (f->limit && out->n > f->limit) {
        out->n = f->limit;
        out->truncated = 1;
    }
    return 0;
}
