/* What the SQLite backend holds for a tenant (GetProfileStats) and what a query would read
 * (AnalyzeQuery). Both read the index only: per series, the first and last bucket of its value
 * chunks (two seeks each), and for a query the count and size of the chunks in range. Version 1
 * rows (the `sample` table of files written before chunks) count for the stats; AnalyzeQuery
 * counts chunks only, as nothing writes version 1 rows any more. */
#include "sqlite_read.h"

#include <limits.h>
#include <string.h>

int sqs_profile_stats(store *st, const char *tenant, store_profile_stats *out, sp_err *err)
{
    rq q;
    int rc = rq_begin(&q, st, tenant, NULL, NULL, err);
    if (rc)
        return rc;
    if (!q.tenant) {
        rq_end(&q);
        return 0;
    }
    sqlite3_stmt *s = rq_stmt(&q, R_SERIES_SPAN);
    if (!s) {
        rc = rq_prep_fail(&q, R_SERIES_SPAN);
        rq_end(&q);
        return rc;
    }
    sqlite3_bind_int64(s, 1, q.tenant);
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        for (int c = 0; c < 4; c += 2) {
            if (sqlite3_column_type(s, c) == SQLITE_NULL)
                continue;
            int64_t b0 = sqlite3_column_int64(s, c), b1 = sqlite3_column_int64(s, c + 1);
            lo = b0 < lo ? b0 : lo;
            hi = b1 > hi ? b1 : hi;
        }
    }
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        rc = rq_dberr(&q, src, R_SERIES_SPAN);
    rq_end(&q);
    if (!rc && lo <= hi) {
        out->data_ingested = 1;
        out->oldest_ns = lo * SQS_BUCKET_NS;
        out->newest_ns = hi * SQS_BUCKET_NS;
    }
    return rc;
}

int sqs_query_impact(store *st, const store_query *query, store_query_impact *out, sp_err *err)
{
    /* The matching series' labels: a scratch arena of its own (the answer is four numbers). */
    sp_arena *a = sp_arena_new((size_t)256 << 20);
    if (!a)
        return sp_fail(err, SP_ENOMEM, "out of memory analysing the query");
    rq q;
    int rc = rq_begin(&q, st, query->tenant, query, a, err);
    if (rc) {
        sp_arena_free(a);
        return rc;
    }
    rseries *series = NULL;
    size_t n = 0;
    if (q.tenant)
        rc = rq_select_series(&q, query, 1, &series, &n);
    sqlite3_stmt *s = NULL;
    if (!rc && n && !(s = rq_stmt(&q, R_SERIES_IMPACT)))
        rc = rq_prep_fail(&q, R_SERIES_IMPACT);
    for (size_t i = 0; i < n && !rc; i++) {
        sqlite3_bind_int64(s, 1, series[i].id);
        sqlite3_bind_int64(s, 2, q.b0);
        sqlite3_bind_int64(s, 3, q.b1);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            out->series++;
            out->buckets += (uint64_t)sqlite3_column_int64(s, 0);
            out->chunks += (uint64_t)sqlite3_column_int64(s, 1);
            out->bytes += (uint64_t)sqlite3_column_int64(s, 2);
        } else {
            rc = rq_dberr(&q, src, R_SERIES_IMPACT);
        }
        sqlite3_reset(s);
    }
    rq_end(&q);
    sp_arena_free(a);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}
