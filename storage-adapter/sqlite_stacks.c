/* Stack reads of the SQLite backend: a selection's or a span's values per stack, read from the
 * chunks (and version-1 rows) of only the selected series or spans, then named by
 * sqlite_names.c. On the caller's thread, in its arena. */
#include "sqlite_read.h"

#include <stdlib.h>
#include <string.h>

/* Summing decoded chunks into a query's stack → value map. */
typedef struct chunk_ctx {
    rq *q;
    store_agg *vals;
    /* span chunks: the series the query selects (aux = the series' period), and what each
     * added (for the answer's period) */
    store_agg *allowed;
    int64_t added; /* sum of what went into vals */
    store_chunk_decoder dec;
} chunk_ctx;

static int chunk_add(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    chunk_ctx *c = ctx;
    int64_t stack = k0;
    if (c->allowed) { /* (series, stack) */
        store_agg_entry *s = store_agg_find(c->allowed, k0, 0, 0, 0);
        if (!s)
            return 0;
        s->sum += v;
        stack = k1;
    }
    store_agg_entry *e = store_agg_get(c->vals, stack, 0, 0, 0, NULL);
    if (!e)
        return -2;
    e->sum += v;
    c->added += v;
    return 0;
}

/* The period of the series that contributed the most among those that know theirs (ties: the
 * first); 0 when none does. */
static int64_t pick_period(const int64_t *contrib, const rseries *v, size_t n)
{
    size_t best = n;
    for (size_t i = 0; i < n; i++)
        if (v[i].period && (best == n || contrib[i] > contrib[best]))
            best = i;
    return best < n ? v[best].period : 0;
}

/* Steps a bound chunk statement and sums every chunk it returns. */
static int read_chunks(rq *q, sqlite3_stmt *st, int which, int nk, chunk_ctx *c)
{
    int src, rc = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *blob = sqlite3_column_blob(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        int d = store_chunk_decode(blob, len, nk, &c->dec, chunk_add, c);
        if (d == -2) {
            rc = rq_nomem(q);
            break;
        }
        if (d) {
            rc = sp_fail(q->err, SP_EINTERNAL,
                         "reading %s: a stored value chunk is malformed (the database is "
                         "damaged; restore it from a backup)",
                         which == R_CHUNKS ? "sample_chunk" : "span_chunk");
            break;
        }
    }
    sqlite3_reset(st);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(q, src, which);
    return rc;
}

int sqs_select_stacks(store *st, const store_query *query, sp_arena *a, store_stacks *out,
                      sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    store_agg vals;
    store_agg_init(&vals);
    rc = rq_select_series(&q, query, 0, &v, &n);
    sqlite3_stmt *sums = rc ? NULL : rq_stmt(&q, R_STACK_SUMS);
    if (!rc && !sums)
        rc = rq_prep_fail(&q, R_STACK_SUMS);
    sqlite3_stmt *chunks = rc ? NULL : rq_stmt(&q, R_CHUNKS);
    if (!rc && !chunks)
        rc = rq_prep_fail(&q, R_CHUNKS);
    chunk_ctx ck = {.q = &q, .vals = &vals};
    int64_t *contrib = n ? sp_arena_calloc(a, n, sizeof *contrib) : NULL;
    if (!rc && n && !contrib)
        rc = rq_nomem(&q);
    for (size_t i = 0; i < n && !rc; i++) {
        int64_t before = ck.added;
        sqlite3_bind_int64(sums, 1, v[i].id);
        sqlite3_bind_int64(sums, 2, q.b0);
        sqlite3_bind_int64(sums, 3, q.b1);
        int src;
        while ((src = sqlite3_step(sums)) == SQLITE_ROW) {
            store_agg_entry *e = store_agg_get(&vals, sqlite3_column_int64(sums, 0), 0, 0, 0, NULL);
            if (!e) {
                rc = rq_nomem(&q);
                break;
            }
            e->sum += sqlite3_column_int64(sums, 1);
            ck.added += sqlite3_column_int64(sums, 1);
        }
        sqlite3_reset(sums);
        if (!rc && src != SQLITE_DONE)
            rc = rq_dberr(&q, src, R_STACK_SUMS);
        if (!rc) {
            sqlite3_bind_int64(chunks, 1, v[i].id);
            sqlite3_bind_int64(chunks, 2, q.b0);
            sqlite3_bind_int64(chunks, 3, q.b1);
            rc = read_chunks(&q, chunks, R_CHUNKS, 1, &ck);
        }
        contrib[i] = ck.added - before;
    }
    if (!rc)
        rc = sqs_build_stacks(&q, &vals, query->detail, out);
    if (!rc)
        out->period = pick_period(contrib, v, n);
    store_chunk_decoder_free(&ck.dec);
    store_agg_free(&vals);
    rq_end(&q);
    return rc;
}

/* What the query's series attached to one span (version 1 rows and chunks) into ck->vals; the
 * series' contributions into ck->allowed. */
static int span_values(rq *q, int64_t key, int64_t h0, int64_t h1, sqlite3_stmt *rows,
                       sqlite3_stmt *chunks, chunk_ctx *ck)
{
    int rc = 0, src = SQLITE_DONE;
    if (rows) {
        sqlite3_bind_int64(rows, 1, key);
        sqlite3_bind_int64(rows, 2, h0);
        sqlite3_bind_int64(rows, 3, h1);
    }
    while (rows && (src = sqlite3_step(rows)) == SQLITE_ROW) {
        int64_t v = sqlite3_column_int64(rows, 2);
        store_agg_entry *s = store_agg_find(ck->allowed, sqlite3_column_int64(rows, 0), 0, 0, 0);
        if (!s)
            continue;
        store_agg_entry *e = store_agg_get(ck->vals, sqlite3_column_int64(rows, 1), 0, 0, 0, NULL);
        if (!e) {
            rc = rq_nomem(q);
            break;
        }
        s->sum += v;
        e->sum += v;
        ck->added += v;
    }
    if (rows)
        sqlite3_reset(rows);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(q, src, R_SPANSTK);
    if (!rc) {
        sqlite3_bind_int64(chunks, 1, key);
        sqlite3_bind_int64(chunks, 2, h0);
        sqlite3_bind_int64(chunks, 3, h1);
        rc = read_chunks(q, chunks, R_SPANCHUNKS, 2, ck);
    }
    return rc;
}

/* Shared by span stacks and span totals: the query's series (the filter) and statements. */
typedef struct span_read {
    rseries *v;
    size_t n;
    store_agg allowed; /* series id → what it contributed */
    int64_t h0, h1;
    sqlite3_stmt *rows, *chunks;
} span_read;

static int span_read_begin(rq *q, const store_query *query, span_read *sr)
{
    memset(sr, 0, sizeof *sr);
    store_agg_init(&sr->allowed);
    /* The series filter (tenant, type, labels) applies; the time range only narrows which
     * hours are searched. */
    sr->h0 = INT64_MIN;
    sr->h1 = INT64_MAX;
    if (query->start_ns > 0)
        sr->h0 = sqs_floor_div(query->start_ns, SQS_HOUR_NS);
    if (query->end_ns > 0)
        sr->h1 = sqs_floor_div(query->end_ns - 1, SQS_HOUR_NS);
    int rc = rq_select_series(q, query, 0, &sr->v, &sr->n);
    for (size_t i = 0; i < sr->n && !rc; i++)
        if (!store_agg_get(&sr->allowed, sr->v[i].id, 0, 0, 0, NULL))
            rc = rq_nomem(q);
    if (rc || !sr->n)
        return rc;
    /* Version 1 rows (files written before value chunks): looked up only when the table has
     * any, which saves a seek per span and hour on every file made since. */
    sqlite3_stmt *any = rq_stmt(q, R_SPANSTK_ANY);
    if (!any)
        return rq_prep_fail(q, R_SPANSTK_ANY);
    int has_v1 = sqlite3_step(any) == SQLITE_ROW;
    sqlite3_reset(any);
    if (has_v1 && !(sr->rows = rq_stmt(q, R_SPANSTK)))
        return rq_prep_fail(q, R_SPANSTK);
    if (!(sr->chunks = rq_stmt(q, R_SPANCHUNKS)))
        return rq_prep_fail(q, R_SPANCHUNKS);
    return 0;
}

/* Whether span i of the list is worth reading: a valid id not seen earlier in the list. */
static int span_wanted(const uint8_t (*ids)[8], size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (memcmp(ids[j], ids[i], 8) == 0)
            return 0;
    return sqs_span_key(ids[i]) != 0;
}

static int key_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The distinct valid span keys of a list, ascending (the order of span_chunk's key, so a large
 * set -- a trace, every span of a name -- is read in index order and duplicates cost nothing). */
static int64_t *span_keys(rq *q, const uint8_t (*ids)[8], size_t nids, size_t *n)
{
    int64_t *k = sp_arena_alloc(q->a, (nids + 1) * sizeof *k);
    *n = 0;
    if (!k)
        return NULL;
    for (size_t i = 0; i < nids; i++)
        if ((k[*n] = sqs_span_key(ids[i])) != 0)
            (*n)++;
    qsort(k, *n, sizeof *k, key_cmp);
    size_t u = 0;
    for (size_t i = 0; i < *n; i++)
        if (!u || k[i] != k[u - 1])
            k[u++] = k[i];
    *n = u;
    return k;
}

/* Large sets (a trace of many spans, every span of a name) are read hour by hour, each hour's
 * keys ascending: the lookups then walk span_chunk's (hour, span_id) key forward, so each page
 * is fetched once per hour instead of once per span and hour as per-span reads do (those jump
 * between the hours' key ranges). Small sets keep the per-span read (one statement). */
#define SPAN_SET_MIN 16

static int span_set_values(rq *q, const int64_t *keys, size_t nkeys, const span_read *sr,
                           chunk_ctx *ck)
{
    sqlite3_stmt *hs = rq_stmt(q, R_SPAN_HOURS_DESC), *at = rq_stmt(q, R_SPANCHUNK_AT);
    if (!hs || !at)
        return rq_prep_fail(q, !hs ? R_SPAN_HOURS_DESC : R_SPANCHUNK_AT);
    int64_t hours[64];
    size_t nh = 0;
    int rc = 0, src;
    sqlite3_bind_int64(hs, 1, sr->h0);
    sqlite3_bind_int64(hs, 2, sr->h1);
    while ((src = sqlite3_step(hs)) == SQLITE_ROW && nh < sizeof hours / sizeof hours[0])
        hours[nh++] = sqlite3_column_int64(hs, 0);
    sqlite3_reset(hs);
    if (src == SQLITE_ROW) { /* a range of more hours than that: per span, as before */
        for (size_t i = 0; i < nkeys && !rc; i++)
            rc = span_values(q, keys[i], sr->h0, sr->h1, NULL, sr->chunks, ck);
        return rc;
    }
    if (src != SQLITE_DONE)
        return rq_dberr(q, src, R_SPAN_HOURS_DESC);
    for (size_t h = nh; h-- > 0 && !rc;) /* ascending */
        for (size_t i = 0; i < nkeys && !rc; i++) {
            sqlite3_bind_int64(at, 1, hours[h]);
            sqlite3_bind_int64(at, 2, keys[i]);
            rc = read_chunks(q, at, R_SPANCHUNKS, 2, ck);
        }
    return rc;
}

int sqs_span_stacks(store *st, const store_query *query, const uint8_t (*span_ids)[8], size_t nids,
                    sp_arena *a, store_stacks *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    store_agg vals;
    store_agg_init(&vals);
    span_read sr;
    rc = span_read_begin(&q, query, &sr);
    chunk_ctx ck = {.q = &q, .vals = &vals, .allowed = &sr.allowed};
    size_t nkeys = 0;
    int64_t *keys = rc ? NULL : span_keys(&q, span_ids, nids, &nkeys);
    if (!rc && !keys)
        rc = rq_nomem(&q);
    if (!rc && sr.n && !sr.rows && nkeys > SPAN_SET_MIN)
        rc = span_set_values(&q, keys, nkeys, &sr, &ck);
    else
        for (size_t i = 0; i < nkeys && sr.n && !rc; i++)
            rc = span_values(&q, keys[i], sr.h0, sr.h1, sr.rows, sr.chunks, &ck);
    if (!rc)
        rc = sqs_build_stacks(&q, &vals, query->detail, out);
    if (!rc && sr.n) {
        int64_t *contrib = sp_arena_calloc(a, sr.n, sizeof *contrib);
        for (size_t i = 0; contrib && i < sr.n; i++)
            contrib[i] = store_agg_find(&sr.allowed, sr.v[i].id, 0, 0, 0)->sum;
        out->period = contrib ? pick_period(contrib, sr.v, sr.n) : 0;
    }
    store_chunk_decoder_free(&ck.dec);
    store_agg_free(&vals);
    store_agg_free(&sr.allowed);
    rq_end(&q);
    return rc;
}

int sqs_span_totals(store *st, const store_query *query, const uint8_t (*span_ids)[8], size_t nids,
                    store_span_total *out, sp_err *err)
{
    rq q;
    /* No answer is built in an arena: the query's own bookkeeping goes in a small one. */
    sp_arena *a = sp_arena_new(0);
    if (!a)
        return sp_fail(err, SP_ENOMEM, "out of memory");
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc) {
        sp_arena_free(a);
        return rc;
    }
    store_agg vals;
    store_agg_init(&vals);
    span_read sr;
    rc = span_read_begin(&q, query, &sr);
    chunk_ctx ck = {.q = &q, .vals = &vals, .allowed = &sr.allowed};
    for (size_t i = 0; i < nids && sr.n && !rc; i++) {
        /* A repeated id answers what its first occurrence does (a trace's spans are few; long
         * lists -- span heatmaps -- come without repeats and skip the look-back). */
        if (nids <= 4096 && !span_wanted(span_ids, i)) {
            for (size_t j = 0; j < i; j++)
                if (memcmp(span_ids[j], span_ids[i], 8) == 0) {
                    out[i] = out[j];
                    break;
                }
            continue;
        }
        if (sqs_span_key(span_ids[i]) == 0)
            continue;
        store_agg_reset(&vals);
        rc = span_values(&q, sqs_span_key(span_ids[i]), sr.h0, sr.h1, sr.rows, sr.chunks, &ck);
        for (size_t k = 0; !rc && k < vals.cap; k++)
            if (vals.slots[k].used && vals.slots[k].sum) {
                out[i].value = sp_sat_add(out[i].value, vals.slots[k].sum);
                out[i].stacks++;
            }
    }
    store_chunk_decoder_free(&ck.dec);
    store_agg_free(&vals);
    store_agg_free(&sr.allowed);
    rq_end(&q);
    sp_arena_free(a);
    return rc;
}
