/* New dictionary rows (stacks, locations, functions) inserted many to a statement, on the writer
 * thread inside its transaction (sqlite_dict.c hands them over; sqlite_write.c flushes them).
 *
 * A new row cost SQLite about half a microsecond as a one-row INSERT, much of it the statement
 * rather than the row (the program's start, a write cursor opened and moved to the table's last
 * row for the new rowid, the halt). With new frames in 2 % of the samples that was 38 ns a sample
 * of the writer's time (bench/RESULTS.md, "What new frames cost each thread"). Here a new row
 * waits until 2^SQS_NEWROWS_LG are, which one statement inserts (its cursor stays on the last
 * row, so each append is cheap); a profile's last few go in statements of the powers of two they
 * add up to. The caller needs the row's id at once (a stack names its locations' ids), so it is
 * the id SQLite will give: one more than the highest in the table, rows appended in order.
 *
 *   A1. Ids: next_id[k] is the id SQLite gives the next row of table k: read as max(id) + 1 at
 *       first use after the writer opened, rolled back or retention deleted rows of k (which
 *       lowers the highest id), then one more per row. Only this file inserts into these
 *       tables, so nothing else moves it; each statement checks it (last_insert_rowid) and a
 *       row numbered otherwise fails the transaction ("ids out of step"), never misnames one.
 *   A2. Nothing reads or updates a row of table k while it waits: every statement on table k
 *       that could meet one runs after sqs_newrows_flush(w, k) (find_row's reads by key, and by
 *       an id sqs_newrow_waits() says may wait; touch's refresh likewise; keying in bulk), and
 *       every write of a profile ends with all rows flushed (write_profile), so retention,
 *       bucket closing (its savepoint) and the commit never see a row waiting.
 *   A3. A rollback drops the waiting rows and forgets next_id (sqs_rollback): the caches that
 *       named them are cleared with it (W3 of sqlite_write.c).
 * A flush that fails is an SQLite failure of the transaction (SP_EUNAVAIL: the caller rolls
 * back), named by the row's table and id.
 */
#include "sqlite_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The columns each table's rows are inserted with (the id is SQLite's, A1), in bind order. */
static const struct {
    const char *table, *cols, *tuple, *what;
} shape_of[SQS_NKEYS] = {
    [SQS_KEYS_STACK] = {"stack", "hash, seen, locs", "(?,?,?)", "a stack"},
    [SQS_KEYS_LOC] = {"location", "hash, seen, mapping, address, kind, lines", "(?,?,?,?,?,?)",
                      "a location"},
    [SQS_KEYS_FN] = {"function", "hash, seen, name, system_name, file, start_line", "(?,?,?,?,?,?)",
                     "a function"},
};

static const int max_stmt_of[SQS_NKEYS] = {W_RET_MAX_STACK, W_RET_MAX_LOC, W_RET_MAX_FUNC};

/* The INSERT of n = 2^lg rows of table k, prepared on first use and kept. */
static int insert_stmt(sqs_writer *w, int k, int lg, sqlite3_stmt **out, sp_err *err)
{
    int n = 1 << lg;
    sqlite3_stmt **st = &w->newrows[k].ins[lg];
    if (!*st) {
        size_t tl = strlen(shape_of[k].tuple), cap = 96 + (size_t)n * (tl + 1);
        char *sql = malloc(cap);
        if (!sql)
            return sqs_oom(err);
        size_t o = (size_t)snprintf(sql, cap, "INSERT INTO %s(%s) VALUES", shape_of[k].table,
                                    shape_of[k].cols);
        for (int i = 0; i < n; i++) {
            if (i)
                sql[o++] = ',';
            memcpy(sql + o, shape_of[k].tuple, tl);
            o += tl;
        }
        sql[o] = 0;
        int rc = sqlite3_prepare_v3(w->db, sql, (int)o, SQLITE_PREPARE_PERSISTENT, st, NULL);
        free(sql);
        if (rc != SQLITE_OK)
            return sqs_fail(err, w->db, rc, "preparing the insert of %d new rows of %s", n,
                            shape_of[k].table);
    }
    *out = *st;
    return 0;
}

/* Binds row r of table k at parameters from `at` on; returns the next parameter. */
static int bind_row(sqlite3_stmt *st, int k, const sqs_newrows *nr, const sqs_newrow *r, int at)
{
    sqlite3_bind_int64(st, at++, r->hash);
    sqlite3_bind_int(st, at++, r->seen);
    if (k == SQS_KEYS_LOC)
        for (int i = 0; i < 3; i++)
            sqlite3_bind_int64(st, at++, r->ints[i]);
    for (int i = 0; i < (k == SQS_KEYS_FN ? 2 : 1); i++, at++) {
        /* an empty column is an empty blob or text, never NULL (nr->bytes may be NULL then) */
        const void *b = r->nbytes[i] > 0 ? (const void *)(nr->bytes + r->off[i]) : "";
        if (r->nbytes[i] < 0)
            sqlite3_bind_null(st, at);
        else if (k == SQS_KEYS_FN)
            sqlite3_bind_text(st, at, b, r->nbytes[i], SQLITE_STATIC);
        else
            sqlite3_bind_blob(st, at, b, r->nbytes[i], SQLITE_STATIC);
    }
    if (k == SQS_KEYS_FN)
        for (int i = 0; i < 2; i++)
            sqlite3_bind_int64(st, at++, r->ints[i]);
    return at;
}

/* Inserts rows [from, from + 2^lg) of table k in one statement. */
static int insert_rows(sqs_writer *w, int k, uint32_t from, int lg, sp_err *err)
{
    sqs_newrows *nr = &w->newrows[k];
    sqlite3_stmt *st;
    int n = 1 << lg;
    int rc = insert_stmt(w, k, lg, &st, err);
    if (rc)
        return rc;
    int at = 1;
    for (int i = 0; i < n; i++)
        at = bind_row(st, k, nr, &nr->rows[from + (uint32_t)i], at);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* they point into nr->bytes */
    int64_t last = nr->rows[from + (uint32_t)n - 1].id, got = sqlite3_last_insert_rowid(w->db);
    if (src == SQLITE_DONE && got != last) /* A1 */
        return sp_fail(err, SP_EUNAVAIL,
                       "writing %s: ids out of step (the last of %d rows got id %lld, the writer "
                       "gave it %lld)",
                       shape_of[k].what, n, (long long)got, (long long)last);
    if (src != SQLITE_DONE)
        return sqs_fail(err, w->db, src, "writing %s (ids %lld to %lld)", shape_of[k].what,
                        (long long)nr->rows[from].id,
                        (long long)nr->rows[from + (uint32_t)n - 1].id);
    return 0;
}

int sqs_newrows_flush(sqs_writer *w, int k, sp_err *err)
{
    if (k < 0) {
        for (int t = 0; t < SQS_NKEYS; t++) {
            int rc = sqs_newrows_flush(w, t, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    sqs_newrows *nr = &w->newrows[k];
    uint32_t i = 0;
    int rc = 0;
    /* In statements of 2^lg rows, the largest first: at most SQS_NEWROWS_LG + 1 of them. */
    for (int lg = SQS_NEWROWS_LG; !rc && lg >= 0; lg--)
        for (; !rc && nr->n - i >= (1u << lg); i += 1u << lg)
            rc = insert_rows(w, k, i, lg, err);
    if (rc)
        return rc; /* the transaction rolls back, which drops them all (A3) */
    nr->n = 0;
    nr->nbytes = 0;
    return 0;
}

/* A1: the next id of table k, read from the file on first use. */
static int next_id(sqs_writer *w, int k, int64_t *out, sp_err *err)
{
    sqs_newrows *nr = &w->newrows[k];
    if (!nr->next_id) {
        int64_t max = 0;
        int rc = sqs_find(w, max_stmt_of[k], &max, NULL, err);
        if (rc < 0)
            return rc;
        nr->next_id = (rc ? max : 0) + 1;
    }
    if (nr->next_id == INT64_MAX)
        return sp_fail(err, SP_EUNAVAIL, "no id left for %s", shape_of[k].what);
    *out = nr->next_id++;
    return 0;
}

/* Copies n bytes of a row's column into nr->bytes; *off where. */
static int keep_bytes(sqs_newrows *nr, const void *b, int n, size_t *off)
{
    *off = nr->nbytes;
    if (n <= 0)
        return 0;
    if (sqs_grow((void **)&nr->bytes, &nr->bytes_cap, nr->nbytes + (size_t)n, 1))
        return -1;
    memcpy(nr->bytes + nr->nbytes, b, (size_t)n);
    nr->nbytes += (size_t)n;
    return 0;
}

int sqs_newrow_add(sqs_writer *w, const sqs_row *r, int32_t seen, int64_t *id, sp_err *err)
{
    int k = r->k;
    sqs_newrows *nr = &w->newrows[k];
    int rc = next_id(w, k, id, err);
    if (rc)
        return rc;
    if (sqs_grow((void **)&nr->rows, &nr->rows_cap, nr->n + 1, sizeof *nr->rows))
        return sqs_oom(err);
    sqs_newrow *e = &nr->rows[nr->n];
    *e = (sqs_newrow){.id = *id, .hash = r->hash, .seen = seen};
    memcpy(e->ints, r->ints, sizeof e->ints);
    for (int i = 0; i < 2; i++) {
        e->nbytes[i] = r->bytes[i] ? r->nbytes[i] : -1;
        if (keep_bytes(nr, r->bytes[i], r->bytes[i] ? r->nbytes[i] : 0, &e->off[i]))
            return sqs_oom(err);
    }
    if (!nr->n)
        nr->first = *id;
    nr->n++;
    return nr->n >= 1u << SQS_NEWROWS_LG ? sqs_newrows_flush(w, k, err) : 0;
}

int sqs_newrow_waits(const sqs_writer *w, int k, int64_t id)
{
    return w->newrows[k].n && id >= w->newrows[k].first;
}

void sqs_newrows_drop(sqs_writer *w)
{
    for (int k = 0; k < SQS_NKEYS; k++) {
        w->newrows[k].n = 0;
        w->newrows[k].nbytes = 0;
        w->newrows[k].next_id = 0; /* A1: read again */
    }
}

void sqs_newrows_free(sqs_writer *w)
{
    for (int k = 0; k < SQS_NKEYS; k++) {
        sqs_newrows *nr = &w->newrows[k];
        for (int i = 0; i <= SQS_NEWROWS_LG; i++)
            sqlite3_finalize(nr->ins[i]);
        free(nr->rows);
        free(nr->bytes);
        memset(nr, 0, sizeof *nr);
    }
}
