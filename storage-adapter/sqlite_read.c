/* Queries of the SQLite backend (Pyroscope querier.v1 semantics).
 *
 * Each query borrows a read connection from the pool, opens a read transaction (one consistent
 * WAL snapshot for all its statements, never blocking the writer), selects the tenant's series
 * whose labels match (matchers are evaluated here, in C, against the few series rows), then
 * reads only those series' key ranges of `sample_chunk` (and of `sample`, version 1 rows), or
 * only the named spans' rows of `span_chunk` (and `span_stack`). Stacks are turned into frame names
 * once per distinct location per query.
 */
#include "match.h"
#include "sqlite_store.h"

#include <stdlib.h>
#include <string.h>

static const char *const rsql[R_NSTMT] = {
    [R_BEGIN] = "BEGIN",
    [R_COMMIT] = "COMMIT",
    [R_TENANT] = "SELECT id FROM tenant WHERE name=?1",
    [R_SERIES] = "SELECT id, type, labels, period FROM series WHERE tenant=?1 ORDER BY id",
    [R_SERIES_HAS] = "SELECT 1 FROM sample_chunk WHERE series=?1 AND bucket>=?2 AND bucket<=?3 "
                     "UNION ALL SELECT 1 FROM sample WHERE series=?1 AND bucket>=?2 AND "
                     "bucket<=?3 LIMIT 1",
    [R_STACK_SUMS] = "SELECT stack, value FROM sample WHERE series=?1 AND bucket>=?2 AND "
                     "bucket<=?3",
    [R_BUCKET_SUMS] = "SELECT bucket, sum(v) FROM (SELECT bucket, total AS v FROM sample_chunk "
                      "WHERE series=?1 AND bucket>=?2 AND bucket<=?3 UNION ALL SELECT bucket, "
                      "value FROM sample WHERE series=?1 AND bucket>=?2 AND bucket<=?3) "
                      "GROUP BY bucket",
    [R_STACK] = "SELECT locs FROM stack WHERE id=?1",
    [R_LOC] = "SELECT mapping, address, kind, lines FROM location WHERE id=?1",
    [R_FUNC] = "SELECT name FROM function WHERE id=?1",
    [R_STRING] = "SELECT s FROM string WHERE id=?1",
    [R_MAPPING] = "SELECT file, build_id FROM mapping WHERE id=?1",
    [R_SPANSTK] = "SELECT series, stack, value FROM span_stack WHERE hour IN (SELECT hour FROM "
                  "span_hour WHERE hour>=?2 AND hour<=?3) AND span_id=?1",
    [R_CHUNKS] = "SELECT data FROM sample_chunk WHERE series=?1 AND bucket>=?2 AND bucket<=?3",
    [R_SPANCHUNKS] = "SELECT data FROM span_chunk WHERE hour IN (SELECT hour FROM span_hour WHERE "
                     "hour>=?2 AND hour<=?3) AND span_id=?1",
    [R_TRACE] = "SELECT span.span_id, span.trace_id, span.parent_id, (SELECT s FROM string "
                "WHERE string.id=span.service), (SELECT s FROM string WHERE "
                "string.id=span.name), span.start_ns, span.duration_ns, span.pid, span.tid, "
                "e.data, e.resource, r.data FROM span INDEXED BY span_by_trace LEFT JOIN "
                "span_extra e ON e.hour=span.hour AND e.seq=span.extra LEFT JOIN span_resource "
                "r ON r.id=e.resource WHERE span.tenant=?1 AND span.trace_id=?2 "
                "ORDER BY span.start_ns, span.span_id",
    [R_SPAN] = "SELECT span_id, trace_id, parent_id, (SELECT s FROM string WHERE id=service), "
               "(SELECT s FROM string WHERE id=name), start_ns, duration_ns, pid, tid "
               "FROM span WHERE hour IN (SELECT hour FROM span_hour) AND tenant=?1 AND "
               "span_id=?2 ORDER BY hour DESC LIMIT 1",
    [R_FUNC_DETAIL] = "SELECT (SELECT s FROM string WHERE id=file), start_line FROM function "
                      "WHERE id=?1",
    [R_MAPPING_DETAIL] = "SELECT (SELECT s FROM string WHERE id=file), (SELECT s FROM string "
                         "WHERE id=build_id) FROM mapping WHERE id=?1",
    [R_SYMBOL] = "SELECT frames FROM symbol WHERE build_id=?1 AND address=?2",
    [R_SERVICES] = "SELECT s FROM string WHERE id IN (SELECT DISTINCT service FROM span WHERE "
                   "hour>=?1 AND hour<=?2 AND tenant=?3 AND start_ns>=?4 AND start_ns<?5) "
                   "ORDER BY s",
    [R_STRING_ID] = "SELECT id FROM string WHERE s=?1",
    [R_SERVICE_TRACES] = "SELECT trace_id, max(start_ns) AS last FROM span WHERE hour=?1 AND "
                         "tenant=?2 AND service=?3 AND start_ns>=?4 AND start_ns<?5 GROUP BY "
                         "trace_id ORDER BY last DESC LIMIT ?6",
    [R_SPAN_HOURS_DESC] =
        "SELECT hour FROM span_hour WHERE hour>=?1 AND hour<=?2 ORDER BY hour DESC",
    [R_FIND_SPANS] = "SELECT span_id, trace_id, parent_id, service, name, start_ns, duration_ns, "
                     "pid, tid FROM span WHERE hour>=?1 AND hour<=?2 AND tenant=?3 AND "
                     "start_ns>=?4 AND start_ns<?5 AND duration_ns>=?6 AND (?7=0 OR service=?7) "
                     "AND (?8=0 OR name=?8) ORDER BY start_ns, span_id LIMIT ?9",
    [R_FIND_SPANS_BY_NAME] =
        "SELECT span_id, trace_id, parent_id, service, name, start_ns, duration_ns, pid, tid "
        "FROM span INDEXED BY span_by_name WHERE tenant=?3 AND name=?8 AND start_ns>=?4 AND "
        "start_ns<?5 AND duration_ns>=?6 AND (?7=0 OR service=?7) AND hour>=?1 AND hour<=?2 "
        "ORDER BY start_ns, span_id LIMIT ?9",
    [R_SPANSTK_ANY] = "SELECT 1 FROM span_stack LIMIT 1",
    [R_SPANCHUNK_AT] = "SELECT data FROM span_chunk WHERE hour=?1 AND span_id=?2",
    [R_SERIES_SPAN] = "SELECT (SELECT min(bucket) FROM sample_chunk WHERE series=x.id), "
                      "(SELECT max(bucket) FROM sample_chunk WHERE series=x.id), "
                      "(SELECT min(bucket) FROM sample WHERE series=x.id), "
                      "(SELECT max(bucket) FROM sample WHERE series=x.id) "
                      "FROM series x WHERE tenant=?1",
    [R_SERIES_IMPACT] = "SELECT count(DISTINCT bucket), count(*), coalesce(sum(length(data)), 0) "
                        "FROM sample_chunk WHERE series=?1 AND bucket>=?2 AND bucket<=?3",
};

void sqs_reader_close(sqs_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < R_NSTMT; i++)
        sqlite3_finalize(r->st[i]);
    sqlite3_close(r->db);
    free(r);
}

/* ---- query context ------------------------------------------------------------------------------
 */

#include "sqlite_read.h"
#include "../common/log.h"

int rq_nomem(rq *q)
{
    return sp_fail(q->err, SP_ETOOBIG, "query answer too large for the request budget");
}

sqlite3_stmt *rq_stmt(rq *q, int which)
{
    if (!q->r->st[which] && sqlite3_prepare_v3(q->r->db, rsql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                               &q->r->st[which], NULL) != SQLITE_OK)
        return NULL;
    return q->r->st[which];
}

int rq_dberr(rq *q, int rc, int which)
{
    return sqs_fail(q->err, q->r->db, rc, "query (%.40s)", rsql[which]);
}

int rq_prep_fail(rq *q, int which)
{
    return sqs_fail(q->err, q->r->db, sqlite3_errcode(q->r->db), "preparing %.40s", rsql[which]);
}

void rq_end(rq *q)
{
    if (q->r) {
        for (int i = 0; i < R_NSTMT; i++)
            if (q->r->st[i])
                sqlite3_reset(q->r->st[i]);
        if (q->in_txn) {
            /* Ends the read transaction; a reader's COMMIT writes nothing and the answer is
             * already read, so a failure only means the snapshot is released by the ROLLBACK
             * that sqs_reader_release() issues for a connection still in a transaction. */
            sqlite3_stmt *c = rq_stmt(q, R_COMMIT);
            if (c && sqlite3_step(c) != SQLITE_DONE)
                sp_debug("msg=\"read transaction did not end cleanly\" err=\"%s\"",
                         sqlite3_errmsg(q->r->db));
            if (c)
                sqlite3_reset(c);
        }
        sqs_symbols_reader(q->s, q->r, 0);
        sqs_reader_release(q->s, q->r);
    }
    store_match_free(&q->match);
    q->r = NULL;
}

int rq_begin(rq *q, store *st, const char *tenant, const store_query *query, sp_arena *a,
             sp_err *err)
{
    memset(q, 0, sizeof *q);
    q->s = (sqs_store *)st;
    q->a = a;
    q->err = err;
    q->b0 = INT64_MIN;
    q->b1 = INT64_MAX;
    if (query) {
        tenant = query->tenant;
        /* A range holds the buckets that start in it, as Pyroscope counts a profile in the range
         * holding its timestamp: adjacent ranges never share a bucket, so their sums add up to
         * the whole (a bucket merely touched by a range used to count in both). */
        if (query->start_ns > 0)
            q->b0 = sqs_floor_div(query->start_ns + SQS_BUCKET_NS - 1, SQS_BUCKET_NS);
        if (query->end_ns > 0)
            q->b1 = sqs_floor_div(query->end_ns - 1, SQS_BUCKET_NS);
        if (query->nmatchers && !query->matchers)
            return sp_fail(err, SP_EINTERNAL, "query: nmatchers without matchers");
        int rc = store_match_compile(&q->match, query->matchers, query->nmatchers, err);
        if (rc)
            return rc;
    }
    int rc = sqs_reader_acquire(q->s, &q->r, err);
    if (rc) {
        store_match_free(&q->match);
        return rc;
    }
    sqs_symbols_reader(q->s, q->r, 1); /* before the snapshot is taken (Y4) */
    uint64_t gen = __atomic_load_n(&q->s->names_gen, __ATOMIC_SEQ_CST); /* N2: before, ... */
    sqlite3_stmt *b = rq_stmt(q, R_BEGIN);
    if (!b) {
        rc = rq_prep_fail(q, R_BEGIN);
        rq_end(q);
        return rc;
    }
    rc = sqlite3_step(b);
    sqlite3_reset(b);
    if (rc != SQLITE_DONE) {
        rc = rq_dberr(q, rc, R_BEGIN);
        rq_end(q);
        return rc;
    }
    q->in_txn = 1;
    sqlite3_stmt *t = rq_stmt(q, R_TENANT);
    if (!t) {
        rc = rq_prep_fail(q, R_TENANT);
        rq_end(q);
        return rc;
    }
    const char *name = sqs_tenant_name(tenant);
    sqlite3_bind_text(t, 1, name, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(t); /* the transaction's first read: it takes the snapshot */
    if (rc == SQLITE_ROW)
        q->tenant = sqlite3_column_int64(t, 0);
    sqlite3_reset(t);
    /* N2: ... and after the snapshot was taken, the same even generation */
    q->names_gen = gen;
    q->names_ok = !(gen & 1) && gen == __atomic_load_n(&q->s->names_gen, __ATOMIC_SEQ_CST);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = rq_dberr(q, rc, R_TENANT);
        rq_end(q);
        return rc;
    }
    return 0;
}

/* ---- series selection --------------------------------------------------------------------------
 */

static const char *series_label(void *ctx, const char *name)
{
    const rseries *s = ctx;
    if (name[0] == '_' && name[1] == '_') {
        if (strcmp(name, "__profile_type__") == 0)
            return s->type;
        if (strcmp(name, "__type__") == 0)
            return s->parts[1];
        if (strcmp(name, "__unit__") == 0)
            return s->parts[2];
        if (strcmp(name, "__period_type__") == 0)
            return s->parts[3];
        if (strcmp(name, "__period_unit__") == 0)
            return s->parts[4];
    }
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        int c = strcmp(s->labels[mid].name, name);
        if (c == 0)
            return s->labels[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int decode_series(rq *q, sqlite3_stmt *st, rseries *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(st, 0);
    out->period = sqlite3_column_int64(st, 3);
    const char *type = (const char *)sqlite3_column_text(st, 1);
    out->type = sp_arena_strndup(q->a, type ? type : "", type ? strlen(type) : 0);
    const uint8_t *blob = sqlite3_column_blob(st, 2);
    int len = sqlite3_column_bytes(st, 2);
    if (!out->type)
        return rq_nomem(q);
    /* name:sample_type:sample_unit:period_type:period_unit */
    char *copy = sp_arena_strndup(q->a, out->type, strlen(out->type));
    if (!copy)
        return rq_nomem(q);
    for (int i = 0; i < 5 && copy; i++) {
        out->parts[i] = copy;
        char *c = strchr(copy, ':');
        if (c)
            *c = 0;
        copy = c ? c + 1 : NULL;
    }
    uint32_t n = 0;
    for (int i = 0; i < len; i++)
        n += blob[i] == 0;
    n /= 2;
    if (!n)
        return 0;
    char *text = sp_arena_memdup(q->a, blob, (size_t)len);
    out->labels = sp_arena_alloc(q->a, n * sizeof *out->labels);
    if (!text || !out->labels)
        return rq_nomem(q);
    char *p = text, *end = text + len;
    for (uint32_t i = 0; i < n && p < end; i++) {
        out->labels[i].name = p;
        p += strlen(p) + 1;
        if (p >= end)
            break;
        out->labels[i].value = p;
        p += strlen(p) + 1;
        out->n++;
    }
    return 0;
}

static int series_has_data(rq *q, int64_t id, int *has)
{
    sqlite3_stmt *st = rq_stmt(q, R_SERIES_HAS);
    if (!st)
        return rq_prep_fail(q, R_SERIES_HAS);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, q->b0);
    sqlite3_bind_int64(st, 3, q->b1);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rq_dberr(q, rc, R_SERIES_HAS);
    *has = rc == SQLITE_ROW;
    return 0;
}

/* The tenant's series of the query's type whose labels match; with `in_range`, only those with
 * data in the time range. */
int rq_select_series(rq *q, const store_query *query, int in_range, rseries **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!q->tenant)
        return 0;
    sqlite3_stmt *st = rq_stmt(q, R_SERIES);
    if (!st)
        return rq_prep_fail(q, R_SERIES);
    sqlite3_bind_int64(st, 1, q->tenant);
    size_t cap = 0;
    rseries *v = NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 1);
        if (query && query->type_id && *query->type_id &&
            (!type || strcmp(type, query->type_id) != 0))
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            rseries *nv = sp_arena_alloc(q->a, nc * sizeof *nv);
            if (!nv) {
                sqlite3_reset(st);
                return rq_nomem(q);
            }
            if (v)
                memcpy(nv, v, *n * sizeof *nv);
            v = nv;
            cap = nc;
        }
        if ((rc = decode_series(q, st, &v[*n]))) {
            sqlite3_reset(st);
            return rc;
        }
        if (!store_match_eval(&q->match, series_label, &v[*n]))
            continue;
        (*n)++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return rq_dberr(q, rc, R_SERIES);
    if (in_range) {
        size_t k = 0;
        for (size_t i = 0; i < *n; i++) {
            int has = 0;
            if ((rc = series_has_data(q, v[i].id, &has)))
                return rc;
            if (has)
                v[k++] = v[i];
        }
        *n = k;
    }
    *out = v;
    return 0;
}

/* ---- string answers
 * ------------------------------------------------------------------------------ */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Copies a string set into a sorted arena array. */
static int finish_strings(rq *q, const store_strset *set, store_strings *out)
{
    out->n = set->n;
    if (!set->n)
        return 0;
    out->v = sp_arena_alloc(q->a, set->n * sizeof *out->v);
    if (!out->v)
        return rq_nomem(q);
    memcpy(out->v, set->strs, set->n * sizeof *out->v);
    qsort(out->v, out->n, sizeof *out->v, str_cmp);
    return 0;
}

static int strset_put(rq *q, store_strset *set, const char *s)
{
    return store_strset_add(set, s, strlen(s)) < 0 ? rq_nomem(q) : 0;
}

int sqs_profile_types(store *st, const store_query *query, sp_arena *a, store_strings *out,
                      sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    store_strset set;
    store_strset_init(&set);
    rc = rq_select_series(&q, query, 1, &v, &n);
    for (size_t i = 0; i < n && !rc; i++)
        rc = strset_put(&q, &set, v[i].type);
    if (!rc)
        rc = finish_strings(&q, &set, out);
    store_strset_free(&set);
    rq_end(&q);
    return rc;
}

static const char *const virtual_labels[] = {"__period_type__", "__period_unit__",
                                             "__profile_type__", "__type__", "__unit__"};

int sqs_label_names(store *st, const store_query *query, sp_arena *a, store_strings *out,
                    sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    store_strset set;
    store_strset_init(&set);
    rc = rq_select_series(&q, query, 1, &v, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        for (uint32_t k = 0; k < v[i].n && !rc; k++)
            rc = strset_put(&q, &set, v[i].labels[k].name);
        for (size_t k = 0; k < 5 && !rc; k++)
            if (series_label(&v[i], virtual_labels[k]))
                rc = strset_put(&q, &set, virtual_labels[k]);
    }
    if (!rc)
        rc = finish_strings(&q, &set, out);
    store_strset_free(&set);
    rq_end(&q);
    return rc;
}

int sqs_label_values(store *st, const store_query *query, const char *name, sp_arena *a,
                     store_strings *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    store_strset set;
    store_strset_init(&set);
    rc = rq_select_series(&q, query, 1, &v, &n);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *val = series_label(&v[i], name);
        if (val && *val)
            rc = strset_put(&q, &set, val);
    }
    if (!rc)
        rc = finish_strings(&q, &set, out);
    store_strset_free(&set);
    rq_end(&q);
    return rc;
}

static int labels_cmp(const store_labels *x, const store_labels *y)
{
    size_t n = x->n < y->n ? x->n : y->n;
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(x->labels[i].name, y->labels[i].name);
        if (c)
            return c;
        c = strcmp(x->labels[i].value, y->labels[i].value);
        if (c)
            return c;
    }
    return x->n < y->n ? -1 : x->n > y->n;
}

static int labelset_cmp(const void *a, const void *b)
{
    return labels_cmp(a, b);
}

static int kv_name_cmp(const void *a, const void *b)
{
    return strcmp(((const sp_kv *)a)->name, ((const sp_kv *)b)->name);
}

/* A series' labels plus its virtual ones, reduced to `names` when given; sorted by name. */
static int project(rq *q, const rseries *s, const char *const *names, size_t nnames,
                   store_labels *out)
{
    size_t cap = nnames ? nnames : s->n + 5;
    out->labels = sp_arena_alloc(q->a, (cap ? cap : 1) * sizeof *out->labels);
    out->n = 0;
    if (!out->labels)
        return rq_nomem(q);
    if (nnames) {
        for (size_t i = 0; i < nnames; i++) {
            const char *v = names[i] ? series_label((void *)s, names[i]) : NULL;
            int dup = 0;
            for (size_t k = 0; k < out->n && !dup; k++)
                dup = strcmp(out->labels[k].name, names[i]) == 0;
            if (v && *v && !dup)
                out->labels[out->n++] = (sp_kv){names[i], v};
        }
    } else {
        for (uint32_t i = 0; i < s->n; i++)
            out->labels[out->n++] = s->labels[i];
        for (size_t k = 0; k < 5; k++) {
            const char *v = series_label((void *)s, virtual_labels[k]);
            if (v && *v)
                out->labels[out->n++] = (sp_kv){virtual_labels[k], v};
        }
    }
    qsort(out->labels, out->n, sizeof *out->labels, kv_name_cmp);
    return 0;
}

int sqs_series(store *st, const store_query *query, const char *const *names, size_t nnames,
               sp_arena *a, store_labelsets *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    rc = rq_select_series(&q, query, 1, &v, &n);
    if (!rc && n) {
        out->sets = sp_arena_alloc(a, n * sizeof *out->sets);
        if (!out->sets)
            rc = rq_nomem(&q);
        for (size_t i = 0; i < n && !rc; i++)
            rc = project(&q, &v[i], names, nnames, &out->sets[i]);
        if (!rc) {
            qsort(out->sets, n, sizeof *out->sets, labelset_cmp);
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (!k || labels_cmp(&out->sets[k - 1], &out->sets[i]) != 0)
                    out->sets[k++] = out->sets[i];
            out->n = k;
        }
    }
    rq_end(&q);
    return rc;
}

/* ---- time series ------------------------------------------------------------------------------
 */

typedef struct group {
    store_labels labels;
    store_agg points; /* step start → sum */
} group;

static int point_cmp(const void *a, const void *b)
{
    const store_point *x = a, *y = b;
    return x->t_ns < y->t_ns ? -1 : x->t_ns > y->t_ns;
}

static int ts_cmp(const void *a, const void *b)
{
    return labels_cmp(&((const store_timeseries *)a)->labels,
                      &((const store_timeseries *)b)->labels);
}

int sqs_select_series(store *st, const store_query *query, int64_t step, const char *const *by,
                      size_t nby, sp_arena *a, store_timeseries_set *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, NULL, query, a, err);
    if (rc)
        return rc;
    rseries *v;
    size_t n;
    store_strset keys; /* group key text → group index */
    store_strset_init(&keys);
    group *groups = NULL;
    size_t ngroups = 0, gcap = 0;
    int64_t anchor = query->start_ns > 0 ? query->start_ns : 0;
    rc = rq_select_series(&q, query, 0, &v, &n);
    sqlite3_stmt *sums = rc ? NULL : rq_stmt(&q, R_BUCKET_SUMS);
    if (!rc && !sums)
        rc = rq_prep_fail(&q, R_BUCKET_SUMS);
    for (size_t i = 0; i < n && !rc; i++) {
        store_labels lbl;
        if (nby) {
            if ((rc = project(&q, &v[i], by, nby, &lbl)))
                break;
        } else {
            lbl.labels = NULL;
            lbl.n = 0;
        }
        /* Group key: name=value pairs joined by \1. */
        size_t klen = 1;
        for (size_t k = 0; k < lbl.n; k++)
            klen += strlen(lbl.labels[k].name) + strlen(lbl.labels[k].value) + 2;
        char *key = sp_arena_alloc(a, klen);
        if (!key) {
            rc = rq_nomem(&q);
            break;
        }
        size_t kp = 0;
        for (size_t k = 0; k < lbl.n; k++) {
            size_t ln = strlen(lbl.labels[k].name), lv = strlen(lbl.labels[k].value);
            memcpy(key + kp, lbl.labels[k].name, ln);
            kp += ln;
            key[kp++] = '\2';
            memcpy(key + kp, lbl.labels[k].value, lv);
            kp += lv;
            key[kp++] = '\1';
        }
        key[kp] = 0;
        int64_t gi = store_strset_find(&keys, key, kp);
        if (gi < 0) {
            gi = store_strset_add(&keys, key, kp);
            if (gi < 0) {
                rc = rq_nomem(&q);
                break;
            }
            if (ngroups == gcap) {
                size_t nc = gcap ? gcap * 2 : 16;
                group *ng = realloc(groups, nc * sizeof *ng);
                if (!ng) {
                    rc = rq_nomem(&q);
                    break;
                }
                groups = ng;
                gcap = nc;
            }
            groups[ngroups].labels = lbl;
            store_agg_init(&groups[ngroups].points);
            ngroups++;
        }
        group *g = &groups[gi];
        sqlite3_bind_int64(sums, 1, v[i].id);
        sqlite3_bind_int64(sums, 2, q.b0);
        sqlite3_bind_int64(sums, 3, q.b1);
        int src;
        while ((src = sqlite3_step(sums)) == SQLITE_ROW) {
            int64_t t = sqlite3_column_int64(sums, 0) * SQS_BUCKET_NS;
            int64_t p = t <= anchor ? anchor : anchor + sqs_floor_div(t - anchor, step) * step;
            store_agg_entry *e = store_agg_get(&g->points, p, 0, 0, 0, NULL);
            if (!e) {
                rc = rq_nomem(&q);
                break;
            }
            e->sum += sqlite3_column_int64(sums, 1);
        }
        sqlite3_reset(sums);
        if (!rc && src != SQLITE_DONE)
            rc = rq_dberr(&q, src, R_BUCKET_SUMS);
    }
    if (!rc && ngroups) {
        out->series = sp_arena_alloc(a, ngroups * sizeof *out->series);
        if (!out->series)
            rc = rq_nomem(&q);
        for (size_t i = 0; i < ngroups && !rc; i++) {
            store_timeseries *ts = &out->series[out->n];
            ts->labels = groups[i].labels;
            ts->npoints = 0;
            ts->points = groups[i].points.n
                             ? sp_arena_alloc(a, groups[i].points.n * sizeof *ts->points)
                             : NULL;
            if (groups[i].points.n && !ts->points) {
                rc = rq_nomem(&q);
                break;
            }
            for (size_t k = 0; k < groups[i].points.cap; k++)
                if (groups[i].points.slots[k].used)
                    ts->points[ts->npoints++] = (store_point){groups[i].points.slots[k].k[0],
                                                              groups[i].points.slots[k].sum};
            if (ts->npoints) { /* points is NULL without any: qsort(NULL, 0) is undefined */
                qsort(ts->points, ts->npoints, sizeof *ts->points, point_cmp);
                out->n++;
            }
        }
        if (!rc)
            qsort(out->series, out->n, sizeof *out->series, ts_cmp);
    }
    for (size_t i = 0; i < ngroups; i++)
        store_agg_free(&groups[i].points);
    free(groups);
    store_strset_free(&keys);
    if (rc)
        memset(out, 0, sizeof *out);
    rq_end(&q);
    return rc;
}

/* ---- spans ---------------------------------------------------------------------------------- */

int rq_span_row(rq *q, sqlite3_stmt *st, sp_span *sp)
{
    memset(sp, 0, sizeof *sp);
    sqs_span_bytes(sqlite3_column_int64(st, 0), sp->span_id);
    if (sqlite3_column_bytes(st, 1) == 16)
        memcpy(sp->trace_id, sqlite3_column_blob(st, 1), 16);
    sqs_span_bytes(sqlite3_column_int64(st, 2), sp->parent_span_id);
    const char *svc = (const char *)sqlite3_column_text(st, 3);
    const char *name = (const char *)sqlite3_column_text(st, 4);
    sp->service = sp_arena_strndup(q->a, svc ? svc : "", svc ? strlen(svc) : 0);
    sp->name = sp_arena_strndup(q->a, name ? name : "", name ? strlen(name) : 0);
    if (!sp->service || !sp->name)
        return rq_nomem(q);
    sp->start_ns = (uint64_t)sqlite3_column_int64(st, 5);
    sp->end_ns = sp->start_ns + (uint64_t)sqlite3_column_int64(st, 6);
    sp->pid = sqlite3_column_int64(st, 7);
    sp->tid = sqlite3_column_int64(st, 8);
    /* extras: only the trace statement reads them (columns 9-11: span_extra's data and
     * resource, span_resource's data); none when the span has no span_extra row. Resource 0:
     * data is the whole blob; else the blob is rebuilt from the two parts (sqlite_extras.c). */
    if (sqlite3_column_count(st) <= 11 || sqlite3_column_type(st, 9) == SQLITE_NULL)
        return 0;
    const uint8_t *data = sqlite3_column_blob(st, 9);
    size_t n = (size_t)sqlite3_column_bytes(st, 9), len = n;
    if (sqlite3_column_int64(st, 10) == 0) {
        if (!n)
            return 0;
        sp->extras = sp_arena_memdup(q->a, data, n);
    } else {
        const uint8_t *head = sqlite3_column_blob(st, 11);
        size_t nhead = head ? (size_t)sqlite3_column_bytes(st, 11) : 0;
        sp->extras = sqs_extras_join(head, nhead, data, n, q->a, &len);
    }
    if (!sp->extras)
        return rq_nomem(q);
    sp->extras_len = (uint32_t)len;
    return 0;
}

int sqs_trace_spans(store *st, const char *tenant, const uint8_t trace_id[16], sp_arena *a,
                    store_spans *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, tenant, NULL, a, err);
    if (rc)
        return rc;
    if (!q.tenant) {
        rq_end(&q);
        return 0;
    }
    sqlite3_stmt *s = rq_stmt(&q, R_TRACE);
    if (!s) {
        rc = rq_prep_fail(&q, R_TRACE);
        rq_end(&q);
        return rc;
    }
    sqlite3_bind_int64(s, 1, q.tenant);
    sqlite3_bind_blob(s, 2, trace_id, 16, SQLITE_TRANSIENT);
    size_t cap = 0;
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            sp_span *nv = sp_arena_alloc(a, nc * sizeof *nv);
            if (!nv) {
                rc = rq_nomem(&q);
                break;
            }
            if (out->spans)
                memcpy(nv, out->spans, out->n * sizeof *nv);
            out->spans = nv;
            cap = nc;
        }
        if ((rc = rq_span_row(&q, s, &out->spans[out->n])))
            break;
        out->n++;
    }
    sqlite3_reset(s);
    if (!rc && src != SQLITE_DONE)
        rc = rq_dberr(&q, src, R_TRACE);
    if (rc)
        memset(out, 0, sizeof *out);
    rq_end(&q);
    return rc;
}

int sqs_span_get(store *st, const char *tenant, const uint8_t span_id[8], sp_arena *a, sp_span *out,
                 sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, tenant, NULL, a, err);
    if (rc)
        return rc;
    static const char hex[] = "0123456789abcdef";
    char idhex[17];
    for (int i = 0; i < 8; i++) {
        idhex[2 * i] = hex[span_id[i] >> 4];
        idhex[2 * i + 1] = hex[span_id[i] & 15];
    }
    idhex[16] = 0;
    rc = sp_fail(err, SP_ENOTFOUND, "span %s is not in the span index of tenant %s", idhex,
                 sqs_tenant_name(tenant));
    if (q.tenant) {
        sqlite3_stmt *s = rq_stmt(&q, R_SPAN);
        if (!s) {
            rc = rq_prep_fail(&q, R_SPAN);
        } else {
            sqlite3_bind_int64(s, 1, q.tenant);
            sqlite3_bind_int64(s, 2, sqs_span_key(span_id));
            int src = sqlite3_step(s);
            if (src == SQLITE_ROW) {
                rc = rq_span_row(&q, s, out);
                if (!rc && err) {
                    err->code = 0;
                    err->msg[0] = 0;
                }
            } else if (src != SQLITE_DONE) {
                rc = rq_dberr(&q, src, R_SPAN);
            }
            sqlite3_reset(s);
        }
    }
    rq_end(&q);
    return rc;
}
