/* Closing a bucket: one sample_chunk row per (series, 10 s bucket) instead of one per
 * transaction that wrote to it, in pages with no holes.
 *
 * Every transaction writes its own chunk for each (series, bucket) it touches, so a bucket an
 * agent reports into twice (5 s exports) or that concurrent batches reach through several
 * transactions holds several chunks, each naming its stacks again with their own sums. Once a
 * bucket is closed, the writer thread decodes its chunks, sums them per stack and writes one
 * chunk in their place, in one transaction (so a query sees the old chunks or the merged one,
 * never both or neither): the callers' when others are queued, else one of its own right after
 * they were answered (H1 in sqlite_write.c), so at low and medium load no Export waits for it.
 * Off-CPU sums are nanoseconds whose low bits are noise: a stack named in two chunks costs two
 * full values, merged only one (bench_ingest --off-cpu 1: 34 % fewer blob bytes).
 *
 * Deleting the replaced rows leaves holes in their pages, which SQLite refills only with rows
 * whose ids fall there. So fresh chunks and closed ones live in two id ranges (M5), each
 * appended at its end: a closed bucket's rows leave the fresh range whole, so its pages empty
 * completely and go back to the free list, and the closed range holds no row that will leave.
 *
 * Invariants (tests in tests/unit/test_store_sqlite.c):
 *
 *  M1. Closing changes no answer: the merged chunk holds, per stack, the sum of what the chunks
 *      it replaces held (entries summing to 0 dropped, as the writer drops them), its total is
 *      their total, its seq their largest, and it is written in the same transaction that
 *      deletes them. A lone chunk moves as it is (same blob, total and seq), or coded again
 *      when it was written plain (M7).
 *  M2. The writer only remembers which (series, bucket) it wrote to, up to SQS_COMPACT_MAX
 *      entries (past it, new ones are not remembered: counted in compact_untracked); what it
 *      forgets (a restart, a rollback, the cap) stays unmerged in the fresh range, and correct.
 *      The database is the truth: a bucket is closed from what its rows hold when that runs.
 *  M3. A bucket is closed once the writer has written a bucket SQS_COMPACT_LAG buckets later
 *      (data time, so a backfill compacts as it goes; but never later than the wall clock minus
 *      the lag, so a sender's clock in the future closes nothing early); a later write to it
 *      adds a fresh chunk and closes it again at the next tick. At most SQS_COMPACT_BATCH
 *      buckets are closed per transaction, so a backlog spreads over transactions instead of
 *      delaying one commit.
 *  M4. A chunk that does not decode leaves its bucket as it is (logged): closing never fails an
 *      ingest transaction over data already stored.
 *  M5. sample_chunk ids below SQS_CHUNK_MERGED_ID (2^62) are fresh chunks (the writer's, and
 *      every row of a file migrated from version 6), ids from it are closed buckets' chunks;
 *      each range takes max + 1 of itself. Reads do not care which range a row is in.
 *  M6. Closing never fails the ingest transaction it runs in: it runs under a savepoint, and
 *      when it fails (SQLite, memory) it is rolled back to it, counted (compact_failed) and
 *      logged, and the batches commit with their buckets unmerged (M2: still correct). Only
 *      when SQLite itself ended the transaction does the failure reach the batches.
 *  M7. A fresh chunk of a bucket the writer remembers (M2) is written without zstd: it is read
 *      back, merged and coded again when the bucket closes, so compressing it was wasted (the
 *      flush's zstd and the close's unzstd were 2.7 % of the server at full ingest,
 *      bench/RESULTS.md). A bucket it does not remember gets zstd at once. When the writer
 *      stops, every bucket it remembers is closed (sqs_compact_all, for at most
 *      SQS_COMPACT_STOP_NS), so only a crash leaves plain chunks behind, a few buckets' worth.
 */
#include "sqlite_store.h"
#include "../common/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Notes that this transaction writes a chunk to (series, bucket); 1 when it is remembered. */
int sqs_compact_note(sqs_writer *w, int64_t series, int64_t bucket)
{
    if (bucket > w->compact_newest)
        w->compact_newest = bucket;
    if (w->compact.n >= SQS_COMPACT_MAX) {
        w->compact_untracked++;
        return 0;
    }
    int64_t *n = store_sum3_at(&w->compact, series, bucket, 1);
    if (!n) {
        w->compact_untracked++;
        return 0;
    }
    (*n)++;
    return 1;
}

static void warn_undecodable(int64_t series, int64_t bucket)
{
    sp_warn("msg=\"sample chunk does not decode, bucket left unmerged\" series=%" PRId64
            " bucket=%" PRId64,
            series, bucket);
}

/* Reads every chunk of (series, bucket): the first one's blob copied to w->buf, and from the
 * second on all of them decoded into w->merge (emptied first). Returns the rows, or <0 on an
 * SQLite or memory error; *fresh = rows in the fresh id range, *seq = the largest seq, *bad =
 * a chunk did not decode (M4). */
static int read_bucket(sqs_writer *w, int64_t series, int64_t bucket, int *fresh, int64_t *seq,
                       int64_t *first_total, size_t *first_len, int *bad, sp_err *err)
{
    sqlite3_stmt *st = w->st[W_COMPACT_READ];
    sqlite3_bind_int64(st, 1, series);
    sqlite3_bind_int64(st, 2, bucket);
    store_chunk_merge_reset(&w->merge);
    int rc, rows = 0, oom = 0;
    *fresh = *bad = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *seq = sqlite3_column_int64(st, 0);
        *fresh += sqlite3_column_int64(st, 2) < SQS_CHUNK_MERGED_ID;
        const uint8_t *blob = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        int d = 0;
        if (rows++ == 0) { /* kept as it is if it stays alone */
            if (sqs_grow((void **)&w->buf, &w->buf_cap, len ? len : 1, 1))
                oom = 1;
            else
                memcpy(w->buf, blob, len);
            *first_len = len;
            *first_total = sqlite3_column_int64(st, 3);
        } else if (!*bad) {
            if (rows == 2)
                d = store_chunk_merge_add(&w->merge, w->buf, *first_len, &w->decoder);
            if (!d)
                d = store_chunk_merge_add(&w->merge, blob, len, &w->decoder);
        }
        if (d == -2 || oom) {
            sqlite3_reset(st);
            return sqs_oom(err);
        }
        *bad |= d != 0;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sqs_fail(err, w->db, rc, "%s", sqs_wwhat[W_COMPACT_READ]);
    if (*bad)
        warn_undecodable(series, bucket);
    return rows;
}

/* Writes (series, bucket)'s one chunk in the merged id range after deleting its rows (M1). */
static int replace_bucket(sqs_writer *w, int64_t series, int64_t bucket, int64_t seq, int64_t total,
                          const uint8_t *blob, size_t len, sp_err *err)
{
    sqlite3_stmt *del = w->st[W_COMPACT_DEL];
    sqlite3_bind_int64(del, 1, series);
    sqlite3_bind_int64(del, 2, bucket);
    int rc = sqs_run(w, W_COMPACT_DEL, err);
    if (rc || !len)
        return rc;
    sqlite3_stmt *ins = w->st[W_COMPACT_INS];
    sqlite3_bind_int64(ins, 1, series);
    sqlite3_bind_int64(ins, 2, bucket);
    sqlite3_bind_int64(ins, 3, seq);
    sqlite3_bind_int64(ins, 4, total);
    sqlite3_bind_blob(ins, 5, blob, (int)len, SQLITE_STATIC);
    rc = sqs_run(w, W_COMPACT_INS, err);
    sqlite3_clear_bindings(ins);
    return rc;
}

/* Closes one (series, bucket): its chunks merged into one, or its one fresh chunk moved as it
 * is, into the merged id range (M1, M5). */
static int close_bucket(sqs_writer *w, int64_t series, int64_t bucket, sp_err *err)
{
    int64_t seq = 0, first_total = 0;
    size_t first_len = 0;
    int fresh, bad;
    int rows = read_bucket(w, series, bucket, &fresh, &seq, &first_total, &first_len, &bad, err);
    if (rows < 0)
        return rows;
    if (!fresh || bad) /* nothing new, or M4 */
        return 0;
    if (rows == 1 && store_chunk_packed(w->buf, first_len)) {
        w->chunks_moved++;
        return replace_bucket(w, series, bucket, seq, first_total, w->buf, first_len, err);
    }
    if (rows == 1) { /* written plain (M7): coded again, with zstd */
        int d = store_chunk_merge_add(&w->merge, w->buf, first_len, &w->decoder);
        if (d == -2)
            return sqs_oom(err);
        if (d) { /* M4 */
            warn_undecodable(series, bucket);
            return 0;
        }
    }
    if (sqs_grow((void **)&w->sorted3, &w->sorted3_cap, w->merge.n, sizeof *w->sorted3))
        return sqs_oom(err);
    int64_t summed = store_chunk_merge_sum(&w->merge, series, bucket, w->sorted3);
    if (summed < 0)
        return sqs_oom(err);
    size_t n = (size_t)summed;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total = (int64_t)((uint64_t)total + (uint64_t)w->sorted3[i].sum);
    const uint8_t *blob = NULL;
    size_t len = 0;
    if (n && store_chunk_encode_sum3(&w->coder, w->sorted3, n, 1, &blob, &len))
        return sqs_oom(err);
    if (rows == 1)
        w->chunks_moved++;
    else
        w->chunks_merged += (uint64_t)rows;
    return replace_bucket(w, series, bucket, seq, total, blob, len, err);
}

/* Closes the buckets up to `closed` written to (M3), at most SQS_COMPACT_BATCH of them; keeps
 * the open ones (and the closed ones left for the next transaction) in the map. */
static int close_due(sqs_writer *w, int64_t closed, sp_err *err)
{
    store_sum3 *m = &w->compact;
    if (sqs_grow((void **)&w->compact_keep, &w->compact_keep_cap, m->n, sizeof *w->compact_keep))
        return sqs_oom(err);
    size_t keep = 0, merged = 0;
    int rc = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const store_sum3_entry *e = &m->slots[i];
        if (!e->k[0])
            continue;
        if (e->k[1] > closed || merged >= SQS_COMPACT_BATCH) {
            w->compact_keep[keep++] = *e;
        } else if (!rc) {
            rc = close_bucket(w, e->k[0], e->k[1], err);
            merged++;
        }
    }
    store_sum3_reset(m);
    for (size_t i = 0; i < keep; i++) {
        int64_t *n = store_sum3_at(m, w->compact_keep[i].k[0], w->compact_keep[i].k[1], 1);
        if (n)
            *n = w->compact_keep[i].sum;
    }
    if (merged < SQS_COMPACT_BATCH)
        w->compact_done_upto = closed; /* nothing closed is left over: skip the scan until the
                                          clock moves */
    return rc;
}

static int savepoint(sqs_writer *w, const char *sql)
{
    return sqlite3_exec(w->db, sql, NULL, NULL, NULL);
}

/* Runs inside the caller's transaction, after its samples were flushed (M6). */
/* The newest bucket that may be closed now: data time, but never ahead of the clock (one
 * sender's clock far in the future must not close every bucket at once, each later write would
 * then be merged again at once). */
static int64_t closable(const sqs_writer *w, int64_t now_ns)
{
    int64_t newest = w->compact_newest, now = sqs_floor_div(now_ns, SQS_BUCKET_NS);
    return (newest < now ? newest : now) - SQS_COMPACT_LAG;
}

int sqs_compact_due(const sqs_writer *w, int64_t now_ns)
{
    return w->compact.n && closable(w, now_ns) > w->compact_done_upto;
}

int sqs_compact(sqs_writer *w, int64_t now_ns, sp_err *err)
{
    int64_t closed = closable(w, now_ns);
    if (!sqs_compact_due(w, now_ns))
        return 0;
    int rc = savepoint(w, "SAVEPOINT compact");
    if (rc != SQLITE_OK)
        return sqs_fail(err, w->db, rc, "starting to close buckets");
    sp_err cerr = {0};
    uint64_t merged = w->chunks_merged, moved = w->chunks_moved;
    if (!(rc = close_due(w, closed, &cerr)))
        return savepoint(w, "RELEASE compact") == SQLITE_OK
                   ? 0
                   : sqs_fail(err, w->db, SQLITE_ERROR, "closing buckets");
    if (sqlite3_get_autocommit(w->db)) { /* SQLite ended the transaction itself: it failed */
        *err = cerr;
        return rc;
    }
    if (savepoint(w, "ROLLBACK TO compact") != SQLITE_OK ||
        savepoint(w, "RELEASE compact") != SQLITE_OK) {
        *err = cerr;
        return rc;
    }
    w->chunks_merged = merged; /* nothing of it stayed */
    w->chunks_moved = moved;
    w->compact_failed++;
    static sp_ratelimit rl;
    uint64_t held = 0;
    if (sp_ratelimit_ok(&rl, 10000, &held))
        sp_warn("msg=\"closing buckets failed; their chunks stay as they are and the batches "
                "are stored\" error=\"%s\" held_back=%llu",
                cerr.msg, (unsigned long long)held);
    return 0;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* M7: at stop, every bucket remembered closed, SQS_COMPACT_BATCH to a transaction of its own,
 * until none is left or SQS_COMPACT_STOP_NS passed (what is left stays correct, M2). */
void sqs_compact_all(sqs_writer *w)
{
    int64_t until = mono_ns() + SQS_COMPACT_STOP_NS;
    while (w->compact.n && mono_ns() < until) {
        sp_err err = {0};
        size_t before = w->compact.n;
        int rc = sqs_run(w, W_BEGIN, &err);
        if (!rc)
            rc = close_due(w, INT64_MAX, &err);
        if (!rc)
            rc = sqs_run(w, W_COMMIT, &err);
        if (rc) {
            sqs_rollback(w);
            sp_warn("msg=\"closing buckets at stop failed; their chunks stay as they are\" "
                    "error=\"%s\"",
                    err.msg);
            return;
        }
        if (w->compact.n >= before)
            return; /* nothing closed: never loop */
    }
}
