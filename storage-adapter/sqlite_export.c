/* Range export of a SQLite store (spanprof admin export, store_export_range in store.h): walks
 * one committed state of <data_dir>/spanprof.db on a connection of its own (beside a running
 * server, like check and backup) and hands the caller, per tenant, the spans starting in the
 * range, each series' values per 10 s bucket as an sp_profile, and what was attached to those
 * spans per (series, hour) as sp_profiles whose samples name their span. The caller writes them
 * out; store_write() of what it hands out stores the same rows again. Invariants kept here:
 *   1. One read transaction for the whole walk: everything handed out is one committed state.
 *   2. A profile's dictionary is the stored rows themselves: function name, system name (the
 *      name when the row has none), file and first line; location mapping, address, frame type
 *      and lines; mapping file and build id. store_write() of the profile resolves to equal rows,
 *      so every frame is named the same after an import.
 *   3. A bucket belongs to the range when its start is in [from, until), a span when its start
 *      is; adjacent ranges (on 10 s boundaries) thus never export a bucket twice.
 *   4. A span's values are read from the hours in span_hour from the hour before `from` to the
 *      hour after `until` (samples are attached in the hour they were taken, which is that of
 *      the span but for explicit links from far away: those are left out).
 */
#include "sqlite_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum {
    X_TENANTS,
    X_SERIES,
    X_BUCKETS,
    X_CHUNKS,
    X_V1,
    X_SPANS,
    X_HOURS,
    X_SPAN_CHUNKS,
    X_SPAN_V1,
    X_STACK,
    X_LOC,
    X_FUNC,
    X_MAP,
    X_STR,
    X_N
};

static const char *const xsql[X_N] = {
    [X_TENANTS] = "SELECT id, name FROM tenant ORDER BY name",
    [X_SERIES] = "SELECT id, type, labels, period FROM series WHERE tenant=?1 ORDER BY id",
    [X_BUCKETS] = "SELECT bucket FROM sample_chunk WHERE series=?1 AND bucket BETWEEN ?2 AND ?3 "
                  "UNION SELECT bucket FROM sample WHERE series=?1 AND bucket BETWEEN ?2 AND ?3 "
                  "ORDER BY 1",
    [X_CHUNKS] = "SELECT data FROM sample_chunk WHERE series=?1 AND bucket=?2 ORDER BY seq",
    [X_V1] = "SELECT stack, value FROM sample WHERE series=?1 AND bucket=?2",
    [X_SPANS] = "SELECT span.span_id, span.trace_id, span.parent_id, (SELECT s FROM string "
                "WHERE string.id=span.service), (SELECT s FROM string WHERE "
                "string.id=span.name), span.start_ns, span.duration_ns, span.pid, span.tid, "
                "e.data, e.resource, r.data FROM span LEFT JOIN span_extra e ON "
                "e.hour=span.hour AND e.seq=span.extra LEFT JOIN span_resource r ON "
                "r.id=e.resource WHERE span.hour BETWEEN ?2 AND ?3 AND span.tenant=?1 AND "
                "span.start_ns>=?4 AND span.start_ns<?5 ORDER BY span.start_ns, span.span_id",
    [X_HOURS] = "SELECT hour FROM span_hour WHERE hour BETWEEN ?1 AND ?2 ORDER BY hour",
    [X_SPAN_CHUNKS] = "SELECT span_id, data FROM span_chunk WHERE hour=?1",
    [X_SPAN_V1] = "SELECT span_id, series, stack, value FROM span_stack WHERE hour=?1",
    [X_STACK] = "SELECT locs FROM stack WHERE id=?1",
    [X_LOC] = "SELECT mapping, address, kind, lines FROM location WHERE id=?1",
    [X_FUNC] = "SELECT name, system_name, file, start_line FROM function WHERE id=?1",
    [X_MAP] = "SELECT file, build_id FROM mapping WHERE id=?1",
    [X_STR] = "SELECT s FROM string WHERE id=?1",
};

/* One profile being built: the store's ids mapped to the profile's (1-based) indices. */
typedef struct builder {
    sp_arena *a;
    store_strset strs;         /* profile strings, index 0 = "" */
    store_agg fns, locs, maps; /* store id → profile index (sum) */
    store_agg stacks;          /* store stack id → index + 1 into memo */
    struct memo_stack {
        uint32_t *ids;
        uint32_t n;
    } * memo;
    size_t nmemo, capmemo;
    sp_function *fn;
    sp_location *loc;
    sp_mapping *map;
    size_t nfn, capfn, nloc, caploc, nmap, capmap;
    sp_sample *smp;
    size_t nsmp, capsmp;
} builder;

typedef struct xctx {
    sqlite3 *db;
    sqlite3_stmt *st[X_N];
    const char *path;
    sp_err *err;
    const store_export_sink *sink;
    sp_arena *a; /* the tenant's: series, spans */
    builder b;
    store_chunk_decoder dec;
    int64_t from, until;
    /* the tenant being exported */
    const char *tenant;
    store_export_series *series;
    size_t nseries;
    store_agg series_ix; /* series id → index + 1 */
    store_agg span_ix;   /* span key → index + 1 into traces */
    uint8_t (*traces)[16];
    size_t ntraces, captraces;
    store_agg vals; /* (series, span key, stack) or (stack) → value */
} xctx;

static int oom(xctx *x)
{
    return sp_fail(x->err, SP_ENOMEM, "out of memory exporting %s", x->path);
}

static int dberr(xctx *x, int which)
{
    return sqs_fail(x->err, x->db, sqlite3_errcode(x->db), "exporting from %s (%.40s...)", x->path,
                    xsql[which]);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    return sqs_grow(p, cap, need, elem) ? -1 : 0;
}

static void builder_reset(builder *b)
{
    store_strset_free(&b->strs);
    store_strset_init(&b->strs);
    store_agg_reset(&b->fns);
    store_agg_reset(&b->locs);
    store_agg_reset(&b->maps);
    store_agg_reset(&b->stacks);
    b->nmemo = b->nsmp = 0;
    b->nfn = b->nloc = b->nmap = 1; /* index 0 unused, as in pprof */
    sp_arena_reset(b->a);
    store_strset_add(&b->strs, "", 0); /* pprof's string_table[0] */
}

static void builder_free(builder *b)
{
    store_strset_free(&b->strs);
    store_agg_free(&b->fns);
    store_agg_free(&b->locs);
    store_agg_free(&b->maps);
    store_agg_free(&b->stacks);
    free(b->memo);
    free(b->fn);
    free(b->loc);
    free(b->map);
    free(b->smp);
    sp_arena_free(b->a);
}

/* The profile string index of s (copied into the builder's arena); UINT32_MAX on OOM. */
static uint32_t intern(builder *b, const char *s, size_t n)
{
    int64_t i = store_strset_find(&b->strs, s, n);
    if (i >= 0)
        return (uint32_t)i;
    char *c = sp_arena_strndup(b->a, s, n);
    i = c ? store_strset_add(&b->strs, c, n) : -1;
    return i < 0 ? UINT32_MAX : (uint32_t)i;
}

/* The profile string of store string id (0 = ""). */
static int string_of(xctx *x, int64_t id, uint32_t *out)
{
    *out = 0;
    if (!id)
        return 0;
    sqlite3_stmt *st = x->st[X_STR];
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    const char *s = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    *out = s ? intern(&x->b, s, (size_t)sqlite3_column_bytes(st, 0)) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return dberr(x, X_STR);
    if (!s)
        return sp_fail(x->err, SP_EUNAVAIL,
                       "%s: string %lld is referenced but missing (run spanprof admin check)",
                       x->path, (long long)id);
    return *out == UINT32_MAX ? oom(x) : 0;
}

/* Looks a dictionary row up once per profile: *idx is its profile index when known already. */
static int memo_get(xctx *x, store_agg *m, int64_t id, uint32_t *idx, int *fresh)
{
    int created = 0;
    *fresh = 0;
    store_agg_entry *e = store_agg_get(m, id, 0, 0, 0, &created);
    if (!e)
        return oom(x);
    *fresh = created;
    *idx = (uint32_t)e->sum;
    return 0;
}

static int mapping_of(xctx *x, int64_t id, uint32_t *out)
{
    builder *b = &x->b;
    int fresh = 0, rc;
    *out = 0;
    if (!id)
        return 0;
    if ((rc = memo_get(x, &b->maps, id, out, &fresh)) || !fresh)
        return rc;
    sqlite3_stmt *st = x->st[X_MAP];
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int64_t file = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t bid = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? sp_fail(x->err, SP_EUNAVAIL,
                                           "%s: mapping %lld is referenced but missing (run "
                                           "spanprof admin check)",
                                           x->path, (long long)id)
                                 : dberr(x, X_MAP);
    if (grow((void **)&b->map, &b->capmap, b->nmap + 1, sizeof *b->map))
        return oom(x);
    sp_mapping *m = &b->map[b->nmap];
    memset(m, 0, sizeof *m);
    if ((rc = string_of(x, file, &m->filename)) || (rc = string_of(x, bid, &m->build_id)))
        return rc;
    *out = (uint32_t)b->nmap++;
    store_agg_find(&b->maps, id, 0, 0, 0)->sum = *out;
    return 0;
}

static int function_of(xctx *x, int64_t id, uint32_t *out)
{
    builder *b = &x->b;
    int fresh = 0, rc;
    *out = 0;
    if (!id)
        return 0;
    if ((rc = memo_get(x, &b->fns, id, out, &fresh)) || !fresh)
        return rc;
    sqlite3_stmt *st = x->st[X_FUNC];
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? sp_fail(x->err, SP_EUNAVAIL,
                                           "%s: function %lld is referenced but missing (run "
                                           "spanprof admin check)",
                                           x->path, (long long)id)
                                 : dberr(x, X_FUNC);
    }
    const char *name = (const char *)sqlite3_column_text(st, 0);
    const char *sys = (const char *)sqlite3_column_text(st, 1);
    uint32_t n = name ? intern(b, name, (size_t)sqlite3_column_bytes(st, 0)) : 0;
    /* NULL system_name = the same as name (sqlite_dict.c keeps it only when it differs) */
    uint32_t s = sys ? intern(b, sys, (size_t)sqlite3_column_bytes(st, 1)) : n;
    int64_t file = sqlite3_column_int64(st, 2), start = sqlite3_column_int64(st, 3);
    sqlite3_reset(st);
    if (n == UINT32_MAX || s == UINT32_MAX ||
        grow((void **)&b->fn, &b->capfn, b->nfn + 1, sizeof *b->fn))
        return oom(x);
    sp_function *f = &b->fn[b->nfn];
    *f = (sp_function){n, s, 0, start, 0};
    if ((rc = string_of(x, file, &f->filename)))
        return rc;
    *out = (uint32_t)b->nfn++;
    store_agg_find(&b->fns, id, 0, 0, 0)->sum = *out;
    return 0;
}

/* The location's lines blob: varints (function id, zigzag line), innermost first. */
static int location_lines(xctx *x, sp_location *l, const uint8_t *p, const uint8_t *end, int64_t id)
{
    uint32_t n = 0;
    for (const uint8_t *q = p; q < end; n++) {
        uint64_t fn, line;
        if (store_varint_get(&q, end, &fn) || store_varint_get(&q, end, &line))
            return sp_fail(x->err, SP_EUNAVAIL,
                           "%s: location %lld has malformed lines (run spanprof admin check)",
                           x->path, (long long)id);
    }
    l->lines = n ? sp_arena_calloc(x->b.a, n, sizeof *l->lines) : NULL;
    if (n && !l->lines)
        return oom(x);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t fn, line;
        store_varint_get(&p, end, &fn);
        store_varint_get(&p, end, &line);
        int rc = function_of(x, (int64_t)fn, &l->lines[k].function_id);
        if (rc)
            return rc;
        l->lines[k].line = (int64_t)(line >> 1) ^ -(int64_t)(line & 1);
    }
    l->nlines = n;
    return 0;
}

static int location_of(xctx *x, int64_t id, uint32_t *out)
{
    builder *b = &x->b;
    int fresh = 0, rc;
    if ((rc = memo_get(x, &b->locs, id, out, &fresh)) || !fresh)
        return rc;
    sqlite3_stmt *st = x->st[X_LOC];
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? sp_fail(x->err, SP_EUNAVAIL,
                                           "%s: location %lld is referenced but missing (run "
                                           "spanprof admin check)",
                                           x->path, (long long)id)
                                 : dberr(x, X_LOC);
    }
    int64_t mapping = sqlite3_column_int64(st, 0), kind = sqlite3_column_int64(st, 2);
    uint64_t address = (uint64_t)sqlite3_column_int64(st, 1);
    size_t len = (size_t)sqlite3_column_bytes(st, 3);
    const void *blob = sqlite3_column_blob(st, 3);
    uint8_t *lines = len ? sp_arena_memdup(b->a, blob, len) : NULL;
    sqlite3_reset(st);
    if (len && !lines)
        return oom(x);
    sp_location l = {.address = address};
    if ((rc = mapping_of(x, mapping, &l.mapping_id)) || (rc = string_of(x, kind, &l.frame_type)) ||
        (rc = location_lines(x, &l, lines, lines + len, id)))
        return rc;
    if (grow((void **)&b->loc, &b->caploc, b->nloc + 1, sizeof *b->loc))
        return oom(x);
    b->loc[b->nloc] = l;
    *out = (uint32_t)b->nloc++;
    store_agg_find(&b->locs, id, 0, 0, 0)->sum = *out;
    return 0;
}

/* The profile's location ids of stored stack id (leaf first), memoised per profile. */
static int stack_of(xctx *x, int64_t id, struct memo_stack *out)
{
    builder *b = &x->b;
    int created;
    store_agg_entry *e = store_agg_get(&b->stacks, id, 0, 0, 0, &created);
    if (!e)
        return oom(x);
    if (!created) {
        *out = b->memo[e->sum - 1];
        return 0;
    }
    sqlite3_stmt *st = x->st[X_STACK];
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    size_t len = rc == SQLITE_ROW ? (size_t)sqlite3_column_bytes(st, 0) : 0;
    uint8_t *blob = len ? sp_arena_memdup(b->a, sqlite3_column_blob(st, 0), len) : NULL;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? sp_fail(x->err, SP_EUNAVAIL,
                                           "%s: stack %lld is referenced but missing (run "
                                           "spanprof admin check)",
                                           x->path, (long long)id)
                                 : dberr(x, X_STACK);
    struct memo_stack m = {sp_arena_calloc(b->a, len + 1, sizeof *m.ids), 0};
    if ((len && !blob) || !m.ids)
        return oom(x);
    for (const uint8_t *p = blob, *end = blob + len; p < end;) {
        uint64_t loc;
        if (store_varint_get(&p, end, &loc))
            return sp_fail(x->err, SP_EUNAVAIL, "%s: stack %lld is malformed (run admin check)",
                           x->path, (long long)id);
        if ((rc = location_of(x, (int64_t)loc, &m.ids[m.n])))
            return rc;
        m.n++;
    }
    if (grow((void **)&b->memo, &b->capmemo, b->nmemo + 1, sizeof *b->memo))
        return oom(x);
    b->memo[b->nmemo++] = m;
    store_agg_find(&b->stacks, id, 0, 0, 0)->sum = (int64_t)b->nmemo;
    *out = m;
    return 0;
}

/* Adds a sample of stored stack `stack` with value v (and span ref, for span values). */
static int add_sample(xctx *x, int64_t stack, int64_t v, const sp_span_ref *span)
{
    builder *b = &x->b;
    struct memo_stack m = {NULL, 0};
    int rc = stack_of(x, stack, &m);
    if (rc)
        return rc;
    if (grow((void **)&b->smp, &b->capsmp, b->nsmp + 1, sizeof *b->smp))
        return oom(x);
    sp_sample *s = &b->smp[b->nsmp++];
    memset(s, 0, sizeof *s);
    s->location_ids = m.ids;
    s->nlocations = m.n;
    s->value = v;
    if (span) {
        s->spans = sp_arena_memdup(b->a, span, sizeof *span);
        if (!s->spans)
            return oom(x);
        s->nspans = 1;
    }
    return 0;
}

/* Hands the built profile to the sink. */
static int emit(xctx *x, const store_export_series *s, int64_t t_ns, int span_values)
{
    builder *b = &x->b;
    sp_profile p;
    memset(&p, 0, sizeof p);
    char *parts = sp_arena_strndup(b->a, s->type_id, strlen(s->type_id));
    if (!parts)
        return oom(x);
    /* name:sample_type:sample_unit:period_type:period_unit */
    uint32_t *idx[4] = {&p.sample_type, &p.sample_unit, &p.period_type, &p.period_unit};
    char *c = strchr(parts, ':');
    if (c)
        *c++ = 0;
    p.name = parts;
    for (int i = 0; i < 4; i++) {
        char *next = c ? strchr(c, ':') : NULL;
        if (next)
            *next++ = 0;
        *idx[i] = c ? intern(b, c, strlen(c)) : 0;
        if (*idx[i] == UINT32_MAX)
            return oom(x);
        c = next;
    }
    p.type_id = s->type_id;
    p.period = s->period;
    p.time_nanos = t_ns;
    p.duration_nanos = span_values ? SQS_HOUR_NS : SQS_BUCKET_NS;
    p.strings = b->strs.strs;
    p.string_lens = b->strs.lens;
    p.nstrings = (uint32_t)b->strs.n;
    sp_function f0 = {0};
    sp_location l0 = {0};
    sp_mapping m0 = {0};
    p.functions = b->nfn > 1 ? b->fn : &f0;
    p.locations = b->nloc > 1 ? b->loc : &l0;
    p.mappings = b->nmap > 1 ? b->map : &m0;
    p.nfunctions = (uint32_t)b->nfn;
    p.nlocations = (uint32_t)b->nloc;
    p.nmappings = (uint32_t)b->nmap;
    p.samples = b->smp;
    p.nsamples = (uint32_t)b->nsmp;
    p.series = (sp_kv *)s->labels;
    p.nseries = s->nlabels;
    return x->sink->profile(x->sink->ud, s, t_ns, span_values, &p, x->err);
}

/* ---- the walk
 * ------------------------------------------------------------------------------------
 */

/* The entries of x->vals sorted by key, so files come out the same for the same data. */
static int entry_cmp(const void *a, const void *b)
{
    const store_agg_entry *p = *(store_agg_entry *const *)a, *q = *(store_agg_entry *const *)b;
    for (int i = 0; i < 4; i++)
        if (p->k[i] != q->k[i])
            return p->k[i] < q->k[i] ? -1 : 1;
    return 0;
}

/* malloc'd: the caller frees it. */
static store_agg_entry **sorted_vals(xctx *x, size_t *n)
{
    store_agg_entry **v = malloc((x->vals.n + 1) * sizeof *v);
    *n = 0;
    if (!v)
        return NULL;
    for (size_t i = 0; i < x->vals.cap; i++)
        if (x->vals.slots[i].used && x->vals.slots[i].sum)
            v[(*n)++] = &x->vals.slots[i];
    qsort(v, *n, sizeof *v, entry_cmp);
    return v;
}

struct span_sum {
    xctx *x;
    int64_t key;
};

static int sum_stack(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    (void)k1;
    store_agg_entry *e = store_agg_get(ctx, k0, 0, 0, 0, NULL);
    if (!e)
        return -2;
    e->sum += v;
    return 0;
}

/* Steps a bound statement of chunk blobs (column col) through fn; with key_col >= 0, only the
 * rows of an exported span (ctx is then a span_sum whose key is set per row). */
static int read_blobs(xctx *x, int which, int col, int nk, int key_col,
                      int (*fn)(void *ctx, int64_t k0, int64_t k1, int64_t v), void *ctx)
{
    sqlite3_stmt *st = x->st[which];
    int src, rc = 0;
    while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (key_col >= 0) {
            int64_t key = sqlite3_column_int64(st, key_col);
            if (!store_agg_find(&x->span_ix, key, 0, 0, 0))
                continue;
            ((struct span_sum *)ctx)->key = key;
        }
        int d = store_chunk_decode(sqlite3_column_blob(st, col),
                                   (size_t)sqlite3_column_bytes(st, col), nk, &x->dec, fn, ctx);
        if (d == -2)
            rc = oom(x);
        else if (d)
            rc = sp_fail(x->err, SP_EUNAVAIL,
                         "%s: a stored value chunk of %s is malformed (run spanprof admin check)",
                         x->path, which == X_CHUNKS ? "sample_chunk" : "span_chunk");
    }
    sqlite3_reset(st);
    if (!rc && src != SQLITE_DONE)
        rc = dberr(x, which);
    return rc;
}

/* One series' values of one bucket as one profile. */
static int export_bucket(xctx *x, const store_export_series *s, int64_t bucket)
{
    store_agg_reset(&x->vals);
    builder_reset(&x->b);
    sqlite3_bind_int64(x->st[X_CHUNKS], 1, s->id);
    sqlite3_bind_int64(x->st[X_CHUNKS], 2, bucket);
    int rc = read_blobs(x, X_CHUNKS, 0, 1, -1, sum_stack, &x->vals);
    sqlite3_stmt *v1 = x->st[X_V1];
    sqlite3_bind_int64(v1, 1, s->id);
    sqlite3_bind_int64(v1, 2, bucket);
    int src;
    while (!rc && (src = sqlite3_step(v1)) == SQLITE_ROW)
        if (sum_stack(&x->vals, sqlite3_column_int64(v1, 0), 0, sqlite3_column_int64(v1, 1)))
            rc = oom(x);
    sqlite3_reset(v1);
    if (!rc && src != SQLITE_DONE)
        rc = dberr(x, X_V1);
    size_t n = 0;
    store_agg_entry **v = rc ? NULL : sorted_vals(x, &n);
    if (!rc && !v)
        rc = oom(x);
    for (size_t i = 0; i < n && !rc; i++)
        rc = add_sample(x, v[i]->k[0], v[i]->sum, NULL);
    if (!rc && n)
        rc = emit(x, s, bucket * SQS_BUCKET_NS, 0);
    free(v);
    return rc;
}

static int export_series_values(xctx *x, const store_export_series *s)
{
    int64_t b0 = sqs_floor_div(x->from + SQS_BUCKET_NS - 1, SQS_BUCKET_NS); /* starts >= from */
    int64_t b1 = sqs_floor_div(x->until - 1, SQS_BUCKET_NS);                /* starts < until */
    sqlite3_stmt *st = x->st[X_BUCKETS];
    int64_t *buckets = NULL;
    size_t n = 0, cap = 0;
    int src, rc = 0;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_int64(st, 2, b0);
    sqlite3_bind_int64(st, 3, b1);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&buckets, &cap, n + 1, sizeof *buckets)) {
            rc = oom(x);
            break;
        }
        buckets[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (!rc && src != SQLITE_DONE)
        rc = dberr(x, X_BUCKETS);
    for (size_t i = 0; i < n && !rc; i++)
        rc = export_bucket(x, s, buckets[i]);
    free(buckets);
    return rc;
}

/* The tenant's series (all of them: span values may name a series with no bucket in range). */
static int load_series(xctx *x, int64_t tenant)
{
    sqlite3_stmt *st = x->st[X_SERIES];
    size_t cap = 0;
    int src, rc = 0;
    x->nseries = 0;
    store_agg_reset(&x->series_ix);
    sqlite3_bind_int64(st, 1, tenant);
    while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *blob = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        const char *type = (const char *)sqlite3_column_text(st, 1);
        if (grow((void **)&x->series, &cap, x->nseries + 1, sizeof *x->series))
            break;
        store_export_series *s = &x->series[x->nseries];
        memset(s, 0, sizeof *s);
        s->id = sqlite3_column_int64(st, 0);
        s->period = sqlite3_column_int64(st, 3);
        s->tenant = x->tenant;
        s->type_id = sp_arena_strndup(x->a, type ? type : "", type ? strlen(type) : 0);
        char *text = sp_arena_strndup(x->a, len ? (const char *)blob : "", len);
        sp_kv *kv = sp_arena_calloc(x->a, len / 2 + 1, sizeof *kv);
        if (!s->type_id || !text || !kv) {
            rc = oom(x);
            break;
        }
        /* labels = "name\0value\0name\0value\0" (sqlite_schema.c) */
        for (char *p = text, *end = text + len; p < end && (size_t)(end - p) > strlen(p);) {
            char *name = p;
            p += strlen(p) + 1;
            if (p >= end)
                break;
            kv[s->nlabels++] = (sp_kv){name, p};
            p += strlen(p) + 1;
        }
        s->labels = kv;
        store_agg_entry *e = store_agg_get(&x->series_ix, s->id, 0, 0, 0, NULL);
        if (!e) {
            rc = oom(x);
            break;
        }
        e->sum = (int64_t)++x->nseries;
    }
    sqlite3_reset(st);
    if (!rc && src == SQLITE_ROW) /* left the loop on a failed grow */
        rc = oom(x);
    else if (!rc && src != SQLITE_DONE)
        rc = dberr(x, X_SERIES);
    return rc;
}

static int sum_span(void *ctx, int64_t series, int64_t stack, int64_t v)
{
    struct span_sum *c = ctx;
    if (!store_agg_find(&c->x->series_ix, series, 0, 0, 0))
        return 0; /* another tenant's series under an equal span id */
    store_agg_entry *e = store_agg_get(&c->x->vals, series, c->key, stack, 0, NULL);
    if (!e)
        return -2;
    e->sum += v;
    return 0;
}

/* The series-grouped profiles of what one hour attached to the exported spans. */
static int emit_span_hour(xctx *x, int64_t hour)
{
    size_t n = 0;
    store_agg_entry **v = sorted_vals(x, &n); /* by series, then span, then stack */
    if (!v)
        return oom(x);
    int rc = 0;
    for (size_t i = 0; i < n && !rc;) {
        int64_t series = v[i]->k[0];
        const store_export_series *s =
            &x->series[store_agg_find(&x->series_ix, series, 0, 0, 0)->sum - 1];
        builder_reset(&x->b);
        for (; i < n && v[i]->k[0] == series && !rc; i++) {
            sp_span_ref ref;
            store_agg_entry *t = store_agg_find(&x->span_ix, v[i]->k[1], 0, 0, 0);
            memcpy(ref.trace_id, x->traces[t->sum - 1], 16);
            sqs_span_bytes(v[i]->k[1], ref.span_id);
            rc = add_sample(x, v[i]->k[2], v[i]->sum, &ref);
        }
        if (!rc)
            rc = emit(x, s, hour * SQS_HOUR_NS, 1);
    }
    free(v);
    return rc;
}

static int export_span_hour(xctx *x, int64_t hour)
{
    store_agg_reset(&x->vals);
    struct span_sum c = {x, 0};
    sqlite3_bind_int64(x->st[X_SPAN_CHUNKS], 1, hour);
    int rc = read_blobs(x, X_SPAN_CHUNKS, 1, 2, 0, sum_span, &c);
    sqlite3_stmt *v1 = x->st[X_SPAN_V1];
    sqlite3_bind_int64(v1, 1, hour);
    int src;
    while (!rc && (src = sqlite3_step(v1)) == SQLITE_ROW) {
        c.key = sqlite3_column_int64(v1, 0);
        if (store_agg_find(&x->span_ix, c.key, 0, 0, 0) &&
            sum_span(&c, sqlite3_column_int64(v1, 1), sqlite3_column_int64(v1, 2),
                     sqlite3_column_int64(v1, 3)))
            rc = oom(x);
    }
    sqlite3_reset(v1);
    if (!rc && src != SQLITE_DONE)
        rc = dberr(x, X_SPAN_V1);
    return rc ? rc : emit_span_hour(x, hour);
}

static int export_span_values(xctx *x)
{
    if (!x->ntraces)
        return 0;
    sqlite3_stmt *st = x->st[X_HOURS];
    int64_t *hours = NULL;
    size_t n = 0, cap = 0;
    int src, rc = 0;
    sqlite3_bind_int64(st, 1, sqs_floor_div(x->from, SQS_HOUR_NS) - 1);
    sqlite3_bind_int64(st, 2, sqs_floor_div(x->until - 1, SQS_HOUR_NS) + 1);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&hours, &cap, n + 1, sizeof *hours)) {
            rc = oom(x);
            break;
        }
        hours[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (!rc && src != SQLITE_DONE)
        rc = dberr(x, X_HOURS);
    for (size_t i = 0; i < n && !rc; i++)
        rc = export_span_hour(x, hours[i]);
    free(hours);
    return rc;
}

/* The tenant's spans starting in the range, handed out and remembered for their values. */
static int export_spans(xctx *x, int64_t tenant)
{
    sqlite3_stmt *st = x->st[X_SPANS];
    int src, rc = 0;
    x->ntraces = 0;
    store_agg_reset(&x->span_ix);
    sqlite3_bind_int64(st, 1, tenant);
    sqlite3_bind_int64(st, 2, sqs_floor_div(x->from, SQS_HOUR_NS));
    sqlite3_bind_int64(st, 3, sqs_floor_div(x->until - 1, SQS_HOUR_NS));
    sqlite3_bind_int64(st, 4, x->from);
    sqlite3_bind_int64(st, 5, x->until);
    sp_arena *ea = sp_arena_new(0); /* one span's extras at a time */
    if (!ea)
        return oom(x);
    while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
        sp_span sp;
        memset(&sp, 0, sizeof sp);
        int64_t key = sqlite3_column_int64(st, 0);
        sqs_span_bytes(key, sp.span_id);
        if (sqlite3_column_bytes(st, 1) == 16)
            memcpy(sp.trace_id, sqlite3_column_blob(st, 1), 16);
        int64_t parent = sqlite3_column_int64(st, 2);
        if (parent)
            sqs_span_bytes(parent, sp.parent_span_id);
        sp.service = (const char *)sqlite3_column_text(st, 3);
        sp.name = (const char *)sqlite3_column_text(st, 4);
        sp.service = sp.service ? sp.service : "";
        sp.name = sp.name ? sp.name : "";
        sp.start_ns = (uint64_t)sqlite3_column_int64(st, 5);
        sp.end_ns = sp.start_ns + (uint64_t)sqlite3_column_int64(st, 6);
        sp.pid = sqlite3_column_int64(st, 7);
        sp.tid = sqlite3_column_int64(st, 8);
        /* The extras as stored: whole (resource 0) or rebuilt from their parts (sqlite_extras.c).
         */
        sp_arena_reset(ea);
        if (sqlite3_column_type(st, 9) != SQLITE_NULL) {
            const uint8_t *d = sqlite3_column_blob(st, 9);
            size_t n = (size_t)sqlite3_column_bytes(st, 9);
            if (sqlite3_column_int64(st, 10) == 0) {
                sp.extras = n ? d : NULL;
            } else {
                const uint8_t *h = sqlite3_column_blob(st, 11);
                sp.extras =
                    sqs_extras_join(h, h ? (size_t)sqlite3_column_bytes(st, 11) : 0, d, n, ea, &n);
                if (!sp.extras)
                    rc = oom(x);
            }
            sp.extras_len = sp.extras ? (uint32_t)n : 0;
        }
        if (!rc && grow((void **)&x->traces, &x->captraces, x->ntraces + 1, sizeof *x->traces))
            rc = oom(x);
        store_agg_entry *e = rc ? NULL : store_agg_get(&x->span_ix, key, 0, 0, 0, NULL);
        if (!rc && !e)
            rc = oom(x);
        if (!rc) {
            memcpy(x->traces[x->ntraces++], sp.trace_id, 16);
            e->sum = (int64_t)x->ntraces;
            rc = x->sink->span(x->sink->ud, &sp, x->err);
        }
    }
    sqlite3_reset(st);
    sp_arena_free(ea);
    if (!rc && src != SQLITE_DONE)
        rc = dberr(x, X_SPANS);
    return rc;
}

static int export_tenant(xctx *x, int64_t id, const char *name)
{
    sp_arena_reset(x->a);
    x->tenant = sp_arena_strndup(x->a, name, strlen(name));
    if (!x->tenant)
        return oom(x);
    int rc = x->sink->tenant(x->sink->ud, x->tenant, x->err);
    if (!rc)
        rc = load_series(x, id);
    if (!rc)
        rc = export_spans(x, id);
    for (size_t i = 0; i < x->nseries && !rc; i++)
        rc = export_series_values(x, &x->series[i]);
    if (!rc)
        rc = export_span_values(x);
    return rc;
}

/* Opens the file read-only in one read transaction and prepares the statements. */
static int export_open(xctx *x, const char *data_dir, char *path, size_t pathsz)
{
    if (!data_dir || !*data_dir)
        return sp_fail(x->err, SP_EINVAL, "no data directory given");
    snprintf(path, pathsz, "%s/%s", data_dir, SQS_DB_FILE);
    x->path = path;
    struct stat stt;
    if (stat(path, &stt) != 0)
        return sp_fail(x->err, SP_ENOTFOUND, "%s: %s (is --data-dir the server's?)", path,
                       strerror(errno));
    int rc = sqlite3_open_v2(path, &x->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return sqs_fail(x->err, x->db, rc, "opening %s", path);
    sqlite3_busy_timeout(x->db, 5000);
    sqlite3_stmt *v = NULL;
    int64_t app = 0, ver = 0;
    if (sqlite3_prepare_v2(x->db, "SELECT * FROM pragma_application_id, pragma_user_version", -1,
                           &v, NULL) == SQLITE_OK &&
        sqlite3_step(v) == SQLITE_ROW) {
        app = sqlite3_column_int64(v, 0);
        ver = sqlite3_column_int64(v, 1);
    }
    sqlite3_finalize(v);
    if (app != SQS_APPLICATION_ID || ver < 2 || ver > SQS_SCHEMA_VERSION)
        return sp_fail(x->err, SP_EUNAVAIL,
                       "%s: not a spanprof database of schema 2..%d (application_id 0x%llx, "
                       "schema %lld); start this spanprof on it once to migrate it",
                       path, SQS_SCHEMA_VERSION, (long long)app, (long long)ver);
    if ((rc = sqlite3_exec(x->db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
        return sqs_fail(x->err, x->db, rc, "starting a read transaction on %s", path);
    for (int i = 0; i < X_N; i++)
        if ((rc = sqlite3_prepare_v2(x->db, xsql[i], -1, &x->st[i], NULL)) != SQLITE_OK)
            return dberr(x, i);
    return 0;
}

int store_export_range(const char *data_dir, const char *tenant, int64_t from_ns, int64_t until_ns,
                       const store_export_sink *sink, sp_err *err)
{
    char path[4200];
    xctx x;
    memset(&x, 0, sizeof x);
    x.err = err;
    x.sink = sink;
    x.from = from_ns;
    x.until = until_ns;
    x.path = "";
    if (until_ns <= from_ns)
        return sp_fail(err, SP_EINVAL, "the range is empty (--until must be after --from)");
    x.a = sp_arena_new(0);
    x.b.a = sp_arena_new(0);
    store_strset_init(&x.b.strs);
    int rc = x.a && x.b.a ? export_open(&x, data_dir, path, sizeof path) : oom(&x);
    sqlite3_stmt *t = rc ? NULL : x.st[X_TENANTS];
    int src = SQLITE_DONE, found = 0;
    while (t && !rc && (src = sqlite3_step(t)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(t, 1);
        if (!name || (tenant && strcmp(tenant, name) != 0))
            continue;
        found = 1;
        char copy[256];
        snprintf(copy, sizeof copy, "%s", name);
        rc = export_tenant(&x, sqlite3_column_int64(t, 0), copy);
    }
    if (!rc && t && src != SQLITE_DONE)
        rc = dberr(&x, X_TENANTS);
    if (!rc && tenant && !found)
        rc = sp_fail(err, SP_ENOTFOUND, "%s has no tenant \"%s\"", x.path, tenant);
    for (int i = 0; i < X_N; i++)
        sqlite3_finalize(x.st[i]);
    if (x.db)
        sqlite3_exec(x.db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(x.db);
    builder_free(&x.b);
    store_agg_free(&x.series_ix);
    store_agg_free(&x.span_ix);
    store_agg_free(&x.vals);
    store_chunk_decoder_free(&x.dec);
    free(x.series);
    free(x.traces);
    sp_arena_free(x.a);
    return rc;
}
