/* Retention for the SQLite store: deletes data older than the retention in small transactions
 * that the writer thread interleaves with ingest (sqlite_write.c calls sqs_retention_start() when
 * a run is due and sqs_retention_step() between commits), so ingest never waits for a long delete.
 * Order: sample buckets (version 1 rows, then chunks), span stacks (the same) and spans by whole
 * hours from the front of their keys, then the spans' extras (span_extra, by whole hours too) and
 * the span resources last seen before the cut hour (sqlite_extras.c, X3), then dictionary rows
 * (stacks, locations, functions) nobody used since before the cut plus a margin.
 */
#include "sqlite_store.h"

enum {
    RP_SAMPLES,
    RP_SAMPLE_CHUNKS,
    RP_SPAN_STACKS,
    RP_SPAN_CHUNKS,
    RP_SPANS,
    RP_SPAN_EXTRAS,
    RP_SPAN_RESOURCES,
    RP_STACKS,
    RP_LOCATIONS,
    RP_FUNCTIONS,
    RP_DONE
};

/* The statements of the bucket-keyed (sample, sample_chunk) and hour-keyed (span_stack,
 * span_chunk, span_extra) phases: version 1 rows and chunks age out the same way. */
static const int bucket_stmts[2][3] = {
    {W_RET_SAMPLE_BOUND, W_RET_SAMPLE_DEL_LE, W_RET_SAMPLE_DEL_LT},
    {W_RET_SCHUNK_BOUND, W_RET_SCHUNK_DEL_LE, W_RET_SCHUNK_DEL_LT},
};
static const int hour_stmts[3][3] = {
    {W_RET_SPANSTK_BOUND, W_RET_SPANSTK_DEL_LE, W_RET_SPANSTK_DEL_LT},
    {W_RET_SPCHUNK_BOUND, W_RET_SPCHUNK_DEL_LE, W_RET_SPCHUNK_DEL_LT},
    {W_RET_SPEXTRA_BOUND, W_RET_SPEXTRA_DEL_LE, W_RET_SPEXTRA_DEL_LT},
};

/* Dictionary rows must outlive every data row that names them. A row's `seen` is refreshed when
 * it is more than an hour old, and a location is refreshed whenever a stack using it is, so the
 * margins below (in hours, beyond the retention cut) keep anything still referenced. */
#define MARGIN_STACK_H    2
#define MARGIN_LOCATION_H 4
#define MARGIN_FUNCTION_H 6

static int dictionary_due(const sqs_retention *r)
{
    return r->cut_hour > r->last_gc_hour;
}

static void next_phase(sqs_retention *r)
{
    r->phase++;
    r->cursor = r->series_cur = r->max_id = 0;
    if (r->phase == RP_STACKS && !dictionary_due(r))
        r->phase = RP_DONE;
}

void sqs_retention_start(sqs_store *s, sqs_req *req)
{
    sqs_retention *r = &s->w.ret;
    r->req = req;
    r->phase = RP_SAMPLES;
    r->cursor = r->series_cur = r->max_id = 0;
    r->deleted = 0;
    r->cut_ns = req->now_ns - s->opt.retention_ns;
    r->cut_bucket = sqs_floor_div(r->cut_ns, SQS_BUCKET_NS);
    r->cut_hour = sqs_hour_of(r->cut_ns);
    if (s->opt.retention_ns <= 0)
        r->phase = RP_DONE;
}

/* Reads one integer row (or none) from a statement with its parameters bound. */
static int one_int(sqs_writer *w, int which, int64_t *out, sp_err *err)
{
    return sqs_find(w, which, out, NULL, err);
}

/* keys: the dictionary's key table (SQS_KEYS_*). */
static int sweep_dictionary(sqs_writer *w, int max_stmt, int del_stmt, int keys, int32_t older_than,
                            int64_t window, store_dict *cache, sp_err *err)
{
    sqs_retention *r = &w->ret;
    int rc;
    if (!r->max_id) {
        if ((rc = one_int(w, max_stmt, &r->max_id, err)) < 0)
            return rc;
        if (!r->max_id)
            return 1;
        r->cursor = 0;
    }
    /* Key rows first: they are found through the rows about to go. */
    int key_del = keys == SQS_KEYS_STACK ? W_RET_DEL_STACK_KEY
                  : keys == SQS_KEYS_LOC ? W_RET_DEL_LOC_KEY
                                         : W_RET_DEL_FUNC_KEY;
    int ch = 0;
    for (int i = 0; i < 2; i++) {
        int which = i ? del_stmt : key_del;
        sqlite3_stmt *st = w->st[which];
        sqlite3_bind_int64(st, 1, r->cursor);
        sqlite3_bind_int64(st, 2, r->cursor + window);
        sqlite3_bind_int(st, 3, older_than);
        if (!i) {
            if ((rc = sqs_run(w, which, err)))
                return rc;
            continue;
        }
        /* The rows' DELETE returns their (hash, id): the hash index forgets them (I3). */
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sqs_index_note_delete(w, keys, sqlite3_column_int64(st, 0),
                                  sqlite3_column_int64(st, 1));
            ch++;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return sqs_fail(err, w->db, rc, "%s", sqs_wwhat[which]);
    }
    r->deleted += (uint64_t)ch;
    if (ch && del_stmt != W_RET_DEL_STACK)
        r->names_stale = 1; /* names the queries keep may be of these rows (N3) */
    if (ch && !w->newrows[keys].n)
        w->newrows[keys].next_id = 0; /* A1: numbered from the highest left, as SQLite would */
    if (ch) {
        /* The cache may name deleted rows; forgetting it forgets the unkeyed rows too, so they
         * are keyed first, unless the hash index finds them (I2; keyed if it gives up, I4). */
        if (!sqs_index_complete(w, keys) && (rc = sqs_keys_flush(w, keys, err)))
            return rc;
        w->keys_dirty |= 1u << keys;
        store_dict_clear(cache);
        if (keys == SQS_KEYS_LOC)
            store_dict_clear(&w->loc_prints); /* their ids may be gone, or be reused */
        store_dict_clear(&w->stack_prints);   /* stacks, or stacks of locations gone */
        w->keys_complete &= ~(1u << keys);
    }
    r->cursor += window;
    return r->cursor >= r->max_id;
}

/* N3 of sqlite_stacks.c: names_gen is odd from before a commit that deletes location or
 * function rows until that commit (or its rollback) is over, so that no query's snapshot can be
 * taken inside that window and still find one even generation before and after it. */
static void names_commit_begin(sqs_store *s)
{
    sqs_retention *r = &s->w.ret;
    if (r->names_stale && !r->names_odd) {
        __atomic_add_fetch(&s->names_gen, 1, __ATOMIC_SEQ_CST);
        r->names_odd = 1;
    }
}

static void names_commit_end(sqs_store *s)
{
    sqs_retention *r = &s->w.ret;
    if (r->names_odd)
        __atomic_add_fetch(&s->names_gen, 1, __ATOMIC_SEQ_CST);
    r->names_odd = r->names_stale = 0;
}

/* One small transaction of retention work: 1 when the run is complete, 0 when there is more,
 * negative on error. Long because it is one switch over the retention phases (a few lines each)
 * around one transaction: split, the begin/commit/rollback pairing would be spread out. */
int sqs_retention_step(sqs_store *s, sp_err *err)
{
    sqs_writer *w = &s->w;
    sqs_retention *r = &w->ret;
    if (r->phase >= RP_DONE)
        return 1;
    int64_t chunk = s->opt.retention_chunk_rows;
    int rc = sqs_run(w, W_BEGIN, err);
    if (rc)
        return rc;
    int phase = r->phase;
    int done = 0;
    switch (phase) {
    case RP_SAMPLES:
    case RP_SAMPLE_CHUNKS: {
        const int *sq = bucket_stmts[phase == RP_SAMPLE_CHUNKS];
        int64_t budget = chunk;
        while (budget > 0 && !done) {
            if (!r->series_cur) {
                sqlite3_bind_int64(w->st[W_RET_NEXT_SERIES], 1, r->cursor);
                if ((rc = one_int(w, W_RET_NEXT_SERIES, &r->series_cur, err)) < 0)
                    goto fail;
                if (rc == 0) {
                    r->series_cur = 0;
                    done = 1;
                    break;
                }
            }
            sqlite3_stmt *st = w->st[sq[0]];
            sqlite3_bind_int64(st, 1, r->series_cur);
            sqlite3_bind_int64(st, 2, r->cut_bucket);
            sqlite3_bind_int64(st, 3, budget);
            int64_t b;
            if ((rc = one_int(w, sq[0], &b, err)) < 0)
                goto fail;
            if (rc == 1) {
                sqlite3_bind_int64(w->st[sq[1]], 1, r->series_cur);
                sqlite3_bind_int64(w->st[sq[1]], 2, b);
                if ((rc = sqs_run(w, sq[1], err)))
                    goto fail;
                r->deleted += (uint64_t)sqlite3_changes(w->db);
                budget = 0;
            } else {
                sqlite3_bind_int64(w->st[sq[2]], 1, r->series_cur);
                sqlite3_bind_int64(w->st[sq[2]], 2, r->cut_bucket);
                if ((rc = sqs_run(w, sq[2], err)))
                    goto fail;
                int ch = sqlite3_changes(w->db);
                r->deleted += (uint64_t)ch;
                budget -= ch + 1;
                r->cursor = r->series_cur;
                r->series_cur = 0;
            }
        }
        break;
    }
    case RP_SPAN_STACKS:
    case RP_SPAN_CHUNKS:
    case RP_SPAN_EXTRAS: {
        /* Whole hours before the cut, from the front of the key, `chunk` rows at a time. */
        const int *sq = hour_stmts[phase == RP_SPAN_STACKS ? 0 : phase == RP_SPAN_CHUNKS ? 1 : 2];
        int64_t cut_h = sqs_floor_div(r->cut_ns, SQS_HOUR_NS);
        sqlite3_stmt *st = w->st[sq[0]];
        sqlite3_bind_int64(st, 1, cut_h);
        sqlite3_bind_int64(st, 2, chunk);
        rc = sqlite3_step(st);
        int64_t bh = 0, bs = 0;
        if (rc == SQLITE_ROW) {
            bh = sqlite3_column_int64(st, 0);
            bs = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (rc == SQLITE_ROW) {
            sqlite3_bind_int64(w->st[sq[1]], 1, bh);
            sqlite3_bind_int64(w->st[sq[1]], 2, bs);
            if ((rc = sqs_run(w, sq[1], err)))
                goto fail;
            r->deleted += (uint64_t)sqlite3_changes(w->db);
        } else if (rc == SQLITE_DONE) {
            sqlite3_bind_int64(w->st[sq[2]], 1, cut_h);
            if ((rc = sqs_run(w, sq[2], err)))
                goto fail;
            r->deleted += (uint64_t)sqlite3_changes(w->db);
            done = 1;
        } else {
            rc = sqs_fail(err, w->db, rc, "retention of span stacks");
            goto fail;
        }
        break;
    }
    case RP_SPANS: {
        /* Whole hours of spans that started before the cut, then those hours of span_hour. */
        int64_t cut_h = sqs_floor_div(r->cut_ns, SQS_HOUR_NS);
        sqlite3_stmt *st = w->st[W_RET_SPAN_BOUND];
        sqlite3_bind_int64(st, 1, cut_h);
        sqlite3_bind_int64(st, 2, chunk);
        rc = sqlite3_step(st);
        int64_t key[3] = {0, 0, 0};
        if (rc == SQLITE_ROW)
            for (int i = 0; i < 3; i++)
                key[i] = sqlite3_column_int64(st, i);
        sqlite3_reset(st);
        if (rc == SQLITE_ROW) {
            for (int i = 0; i < 3; i++)
                sqlite3_bind_int64(w->st[W_RET_SPAN_DEL_LE], i + 1, key[i]);
            if ((rc = sqs_run(w, W_RET_SPAN_DEL_LE, err)))
                goto fail;
            r->deleted += (uint64_t)sqlite3_changes(w->db);
        } else if (rc == SQLITE_DONE) {
            sqlite3_bind_int64(w->st[W_RET_SPAN_DEL_LT], 1, cut_h);
            if ((rc = sqs_run(w, W_RET_SPAN_DEL_LT, err)))
                goto fail;
            r->deleted += (uint64_t)sqlite3_changes(w->db);
            sqlite3_bind_int64(w->st[W_RET_SPANHOUR_DEL], 1, cut_h);
            if ((rc = sqs_run(w, W_RET_SPANHOUR_DEL, err)))
                goto fail;
            store_agg_reset(&w->hours);
            done = 1;
        } else {
            rc = sqs_fail(err, w->db, rc, "retention of spans");
            goto fail;
        }
        break;
    }
    case RP_SPAN_RESOURCES: {
        /* After the span_extra rows of those hours (X3): none names them any more. */
        sqlite3_stmt *st = w->st[W_RET_SPRES_DEL];
        sqlite3_bind_int64(st, 1, sqs_floor_div(r->cut_ns, SQS_HOUR_NS));
        sqlite3_bind_int64(st, 2, chunk);
        if ((rc = sqs_run(w, W_RET_SPRES_DEL, err)))
            goto fail;
        int ch = sqlite3_changes(w->db);
        r->deleted += (uint64_t)ch;
        if (ch)
            sqs_extras_cache_clear(w); /* X4 */
        done = ch < chunk;
        break;
    }
    case RP_STACKS:
        rc = sweep_dictionary(w, W_RET_MAX_STACK, W_RET_DEL_STACK, SQS_KEYS_STACK,
                              r->cut_hour - MARGIN_STACK_H, chunk * 8, &w->stacks, err);
        if (rc < 0)
            goto fail;
        done = rc;
        break;
    case RP_LOCATIONS:
        rc = sweep_dictionary(w, W_RET_MAX_LOC, W_RET_DEL_LOC, SQS_KEYS_LOC,
                              r->cut_hour - MARGIN_LOCATION_H, chunk * 8, &w->locations, err);
        if (rc < 0)
            goto fail;
        done = rc;
        break;
    case RP_FUNCTIONS:
        rc = sweep_dictionary(w, W_RET_MAX_FUNC, W_RET_DEL_FUNC, SQS_KEYS_FN,
                              r->cut_hour - MARGIN_FUNCTION_H, chunk * 8, &w->functions, err);
        if (rc < 0)
            goto fail;
        done = rc;
        if (done)
            r->last_gc_hour = r->cut_hour;
        break;
    }
    names_commit_begin(s);
    if ((rc = sqs_run(w, W_COMMIT, err)))
        goto fail;
    sqs_index_commit_deletes(w);
    names_commit_end(s);
    if (done)
        next_phase(r);
    return r->phase >= RP_DONE;
fail:
    sp_err_prefix(err, "retention: ");
    sqs_rollback(w);
    names_commit_end(s); /* after the rollback: the rows may have gone after all */
    return rc;
}
