/* The SQLite writer: one thread, one connection, batched transactions; and retention.
 *
 * store_write() validates its batch on the caller's thread, queues it and sleeps on its own
 * condition variable. The writer thread takes every queued batch (up to commit_max_batches),
 * writes them all in one transaction and wakes each caller with the outcome: all committed, or
 * all rolled back with the same SP_EUNAVAIL message. Grouping is what makes per-Export commits
 * affordable: one fsync (FULL) or one WAL append (NORMAL) serves every concurrent caller.
 *
 * Inside a transaction, sample values are first summed in memory per (series, bucket, stack)
 * and per (span, series, stack), then upserted in key order, so a stack seen a hundred times in
 * a batch costs one row write. Dictionary rows (strings, mappings, functions, locations, stacks,
 * series) are found through bounded in-memory caches keyed by a 128-bit content fingerprint,
 * else through their hash index (comparing full content), else inserted. A rollback clears the
 * caches, since they may name rows the rollback removed.
 *
 * Chunks of buckets that closed are merged in the same transaction (sqlite_compact.c, M1-M5).
 *
 * Retention runs on this thread too, as a sequence of small transactions between ingest
 * transactions (writes always go first), so it never holds the write lock for long and never
 * races the caches.
 *
 * Invariants (tests in tests/unit/test_store_sqlite.c and test_store_crash.c guard them):
 *
 *  W1. store_write() returns 0 only after the transaction holding its batch committed (COMMIT's
 *      sqlite3_step returned SQLITE_DONE); any failure rolls back every batch of the group and
 *      each caller gets the same error.
 *  W2. Key watermark (sqlite_dict.c): a stack or location row with an id above its watermark in
 *      `meta` has no key row, and the writer's cache holds every such row, so the cache is the
 *      index for them. Before the cache forgets anything (full, rollback, retention sweep, out of
 *      memory), the rows above the watermark are keyed in one sorted INSERT ... SELECT in the
 *      current transaction, then the watermark moves. An id at or below it (retention freed the
 *      newest rows and SQLite reused the id) is keyed at once.
 *  W3. A rollback clears every cache (they may name rows the rollback removed); nothing cached is
 *      ever trusted across a failed transaction.
 *  W4. Dictionary rows are content-addressed: one row per distinct content per table, found by
 *      fingerprint, then by full comparison; never two rows for one content after a crash
 *      (test_store_crash).
 *  W5. Only the writer thread touches the write connection and the caches.
 *
 * Streams (store_stream_*: one request's batch in parts, written while the caller converts the
 * rest):
 *
 *  S1. A stream joins the write queue with its first part (refused with SP_EFULL there, as a
 *      batch would be); the writer takes it into a group like any batch.
 *  S2. The transaction commits only when every stream in it is closed and all its parts are
 *      written: a stream is one batch for W1, all or nothing.
 *  S3. While no stream of the group has a part ready, the writer takes the next queued callers
 *      into the transaction (up to commit_max_batches) instead of idling, else sleeps on
 *      s->wake, which each part and each end signal.
 *  S4. A stream whose caller gave up leaves the group: the transaction is rolled back and built
 *      again without it, and its caller is released only then, so its parts are never read
 *      after store_stream_end() returns.
 *  S5. The memos (table index → row id) live across the parts of one stream: its tables only
 *      grow (store_stream_part's contract), so the memos are extended, not cleared; they are
 *      cleared for any other batch, part of another stream, and each transaction.
 *  S6. A stream is taken only while the writer is idle (no transaction or queue); otherwise its
 *      parts are validated as they come and written whole at its end (sqlite_queue.c). Streaming
 *      pays when the writer would otherwise wait for the request's conversion; when it is busy,
 *      parts would only hold its transaction open longer (measured: bench/RESULTS.md).
 *
 * Housekeeping (keying dictionary rows ahead of need, W2; closing buckets, sqlite_compact.c):
 *
 *  H1. It runs in a caller's transaction only when other callers are already queued (the writer
 *      will not be idle soon); otherwise the callers are answered first and it runs in a
 *      transaction of its own while nothing is queued, so a caller at low and medium load never
 *      waits for it (a slice of 16384 rows took 7-23 ms of a transaction at full load;
 *      closing the buckets a 40,000-sample Export made due took 4-5 ms of one in ten, at half
 *      load). Keying that W2 requires before the cache forgets runs where it must, as before.
 *      store_stats.housekeeping is 1 from the callers' answer until it has run: a reader that
 *      must see the keys or the merged chunks waits for 0.
 *  H2. A cache past 7/16 full doubles in the idle housekeeping, its new table's pages faulted in
 *      there (store_dict_grow_now), instead of at the put that would find it half full inside a
 *      caller's transaction. Busy writers never go idle: their puts grow the caches as before.
 */
#include "sqlite_store.h"
#include "../common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const wsql[W_NSTMT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_TENANT_FIND] = "SELECT id FROM tenant WHERE name=?1",
    [W_TENANT_INS] = "INSERT INTO tenant(name) VALUES(?1)",
    [W_SERIES_FIND] = "SELECT id, period FROM series WHERE tenant=?1 AND hash=?2 AND type=?3 AND "
                      "labels=?4",
    [W_SERIES_INS] = "INSERT INTO series(tenant, hash, type, labels) VALUES(?1, ?2, ?3, ?4)",
    [W_STRING_FIND] = "SELECT id FROM string WHERE s=?1",
    [W_STRING_INS] = "INSERT INTO string(s) VALUES(?1)",
    [W_MAPPING_FIND] = "SELECT id FROM mapping WHERE file=?1 AND build_id=?2",
    [W_MAPPING_INS] = "INSERT INTO mapping(file, build_id) VALUES(?1, ?2)",
    [W_FUNC_FIND] = "SELECT f.id, f.seen FROM function_key k CROSS JOIN function f ON f.id=k.id "
                    "WHERE k.hash=?1 AND f.name IS ?2 AND "
                    "f.system_name IS ?3 AND f.file=?4 AND f.start_line=?5",
    [W_FUNC_AT] = "SELECT id, seen FROM function WHERE id=?7 AND hash=?1 AND name IS ?2 AND "
                  "system_name IS ?3 AND file=?4 AND start_line=?5",
    [W_FUNC_SEEN] = "UPDATE function SET seen=?2 WHERE id=?1",
    [W_LOC_FIND] = "SELECT l.id, l.seen FROM location_key k CROSS JOIN location l ON l.id=k.id "
                   "WHERE k.hash=?1 AND l.mapping=?2 AND l.address=?3 AND l.kind=?4 AND "
                   "l.lines IS ?5",
    [W_LOC_AT] = "SELECT id, seen FROM location WHERE id=?7 AND hash=?1 AND mapping=?2 AND "
                 "address=?3 AND kind=?4 AND lines IS ?5",
    [W_LOC_SEEN] = "UPDATE location SET seen=?2 WHERE id=?1",
    [W_STACK_FIND] = "SELECT s.id, s.seen FROM stack_key k CROSS JOIN stack s ON s.id=k.id "
                     "WHERE k.hash=?1 AND s.locs=?2",
    [W_STACK_AT] = "SELECT id, seen FROM stack WHERE id=?4 AND hash=?1 AND locs=?2",
    [W_STACK_SEEN] = "UPDATE stack SET seen=?2 WHERE id=?1",
    [W_COMPACT_READ] = "SELECT seq, data, id, total FROM sample_chunk WHERE series=?1 AND "
                       "bucket=?2 ORDER BY seq",
    [W_COMPACT_DEL] = "DELETE FROM sample_chunk WHERE series=?1 AND bucket=?2",
    [W_COMPACT_INS] = "INSERT INTO sample_chunk(id, series, bucket, seq, total, data) VALUES("
                      "(SELECT max(coalesce(max(id), 0), 4611686018427387904) + 1 FROM "
                      "sample_chunk), ?1, ?2, ?3, ?4, ?5)",
    /* fresh chunks take ids below 2^62, merged ones above (sqlite_compact.c, M5) */
    [W_SAMPLE_CHUNK] = "INSERT INTO sample_chunk(id, series, bucket, seq, total, data) VALUES("
                       "(SELECT coalesce(max(id), 0) + 1 FROM sample_chunk WHERE id < "
                       "4611686018427387904), ?1, ?2, "
                       "(SELECT coalesce(max(seq), 0) + 1 FROM sample_chunk WHERE series=?1 AND "
                       "bucket=?2), ?3, ?4)",
    [W_SPAN_CHUNK] = "INSERT INTO span_chunk(hour, span_id, seq, data) VALUES(?1, ?2, "
                     "(SELECT coalesce(max(seq), 0) + 1 FROM span_chunk WHERE hour=?1 AND "
                     "span_id=?2), ?3)",
    [W_SPAN_UPSERT] = "INSERT OR REPLACE INTO span(hour, tenant, span_id, trace_id, parent_id, "
                      "service, name, start_ns, duration_ns, pid, tid, extra) "
                      "VALUES(?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12)",
    [W_SPAN_HOUR] = "INSERT OR IGNORE INTO span_hour(hour) VALUES(?1)",
    [W_RET_NEXT_SERIES] = "SELECT id FROM series WHERE id>?1 ORDER BY id LIMIT 1",
    [W_RET_SAMPLE_BOUND] = "SELECT bucket FROM sample WHERE series=?1 AND bucket<?2 "
                           "ORDER BY bucket LIMIT 1 OFFSET ?3",
    [W_RET_SAMPLE_DEL_LE] = "DELETE FROM sample WHERE series=?1 AND bucket<=?2",
    [W_RET_SAMPLE_DEL_LT] = "DELETE FROM sample WHERE series=?1 AND bucket<?2",
    [W_RET_SPANSTK_BOUND] = "SELECT hour, span_id FROM span_stack WHERE hour<?1 "
                            "ORDER BY hour, span_id LIMIT 1 OFFSET ?2",
    [W_RET_SPANSTK_DEL_LE] = "DELETE FROM span_stack WHERE (hour, span_id)<=(?1, ?2)",
    [W_RET_SPANSTK_DEL_LT] = "DELETE FROM span_stack WHERE hour<?1",
    [W_RET_SCHUNK_BOUND] = "SELECT bucket FROM sample_chunk WHERE series=?1 AND bucket<?2 "
                           "ORDER BY bucket LIMIT 1 OFFSET ?3",
    [W_RET_SCHUNK_DEL_LE] = "DELETE FROM sample_chunk WHERE series=?1 AND bucket<=?2",
    [W_RET_SCHUNK_DEL_LT] = "DELETE FROM sample_chunk WHERE series=?1 AND bucket<?2",
    [W_RET_SPCHUNK_BOUND] = "SELECT hour, span_id FROM span_chunk WHERE hour<?1 "
                            "ORDER BY hour, span_id LIMIT 1 OFFSET ?2",
    [W_RET_SPCHUNK_DEL_LE] = "DELETE FROM span_chunk WHERE (hour, span_id)<=(?1, ?2)",
    [W_RET_SPCHUNK_DEL_LT] = "DELETE FROM span_chunk WHERE hour<?1",
    [W_RET_SPANHOUR_DEL] = "DELETE FROM span_hour WHERE hour<?1",
    [W_RET_SPAN_BOUND] = "SELECT hour, tenant, span_id FROM span WHERE hour<?1 "
                         "ORDER BY hour, tenant, span_id LIMIT 1 OFFSET ?2",
    [W_RET_SPAN_DEL_LE] = "DELETE FROM span WHERE (hour, tenant, span_id)<=(?1, ?2, ?3)",
    [W_RET_SPAN_DEL_LT] = "DELETE FROM span WHERE hour<?1",
    [W_RET_MAX_STACK] = "SELECT max(id) FROM stack",
    [W_RET_DEL_STACK] = "DELETE FROM stack WHERE id>?1 AND id<=?2 AND seen<?3 "
                        "RETURNING hash, id",
    [W_RET_MAX_LOC] = "SELECT max(id) FROM location",
    [W_RET_DEL_LOC] = "DELETE FROM location WHERE id>?1 AND id<=?2 AND seen<?3 "
                      "RETURNING hash, id",
    [W_RET_MAX_FUNC] = "SELECT max(id) FROM function",
    [W_RET_DEL_FUNC] = "DELETE FROM function WHERE id>?1 AND id<=?2 AND seen<?3 "
                       "RETURNING hash, id",
    [W_STACK_KEY] = "INSERT OR IGNORE INTO stack_key(hash, id) VALUES(?1, ?2)",
    [W_LOC_KEY] = "INSERT OR IGNORE INTO location_key(hash, id) VALUES(?1, ?2)",
    [W_FUNC_KEY] = "INSERT OR IGNORE INTO function_key(hash, id) VALUES(?1, ?2)",
    [W_STACK_KEYS] = "INSERT OR IGNORE INTO stack_key(hash, id) SELECT hash, id FROM stack "
                     "WHERE id>?1 AND id<=?2 ORDER BY hash, id",
    [W_LOC_KEYS] = "INSERT OR IGNORE INTO location_key(hash, id) SELECT hash, id FROM location "
                   "WHERE id>?1 AND id<=?2 ORDER BY hash, id",
    [W_FUNC_KEYS] = "INSERT OR IGNORE INTO function_key(hash, id) SELECT hash, id FROM function "
                    "WHERE id>?1 AND id<=?2 ORDER BY hash, id",
    [W_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
    [W_META_GET] = "SELECT value FROM meta WHERE key=?1",
    [W_RET_DEL_STACK_KEY] = "DELETE FROM stack_key WHERE (hash, id) IN (SELECT hash, id FROM "
                            "stack WHERE id>?1 AND id<=?2 AND seen<?3)",
    [W_RET_DEL_LOC_KEY] = "DELETE FROM location_key WHERE (hash, id) IN (SELECT hash, id FROM "
                          "location WHERE id>?1 AND id<=?2 AND seen<?3)",
    [W_RET_DEL_FUNC_KEY] = "DELETE FROM function_key WHERE (hash, id) IN (SELECT hash, id FROM "
                           "function WHERE id>?1 AND id<=?2 AND seen<?3)",
    [W_SERIES_PERIOD] = "UPDATE series SET period=?2 WHERE id=?1",
    [W_SYMBOL_INS] = "INSERT OR IGNORE INTO symbol(build_id, address, frames) VALUES(?1, ?2, ?3)",
    [W_XRES_FIND] = "SELECT id, seen FROM span_resource WHERE hash=?1 AND data=?2",
    [W_XRES_INS] = "INSERT INTO span_resource(hash, seen, data) VALUES(?1, ?3, ?2)",
    [W_XRES_SEEN] = "UPDATE span_resource SET seen=?2 WHERE id=?1",
    [W_XSEQ_MAX] = "SELECT coalesce(max(seq), 0) FROM span_extra WHERE hour=?1",
    [W_XINS] = "INSERT INTO span_extra(hour, seq, resource, data) VALUES(?1, ?2, ?3, ?4)",
    [W_RET_SPEXTRA_BOUND] = "SELECT hour, seq FROM span_extra WHERE hour<?1 "
                            "ORDER BY hour, seq LIMIT 1 OFFSET ?2",
    [W_RET_SPEXTRA_DEL_LE] = "DELETE FROM span_extra WHERE (hour, seq)<=(?1, ?2)",
    [W_RET_SPEXTRA_DEL_LT] = "DELETE FROM span_extra WHERE hour<?1",
    [W_RET_SPRES_DEL] = "DELETE FROM span_resource WHERE id IN (SELECT id FROM span_resource "
                        "WHERE seen<?1 LIMIT ?2)",
};

/* What each statement does, for error messages ("writing a stack: database or disk is full"). */
const char *const sqs_wwhat[W_NSTMT] = {
    [W_BEGIN] = "starting a transaction",
    [W_COMMIT] = "committing",
    [W_ROLLBACK] = "rolling back",
    [W_TENANT_FIND] = "looking up a tenant",
    [W_TENANT_INS] = "writing a tenant",
    [W_SERIES_FIND] = "looking up a series",
    [W_SERIES_INS] = "writing a series",
    [W_STRING_FIND] = "looking up a string",
    [W_STRING_INS] = "writing a string",
    [W_MAPPING_FIND] = "looking up a mapping",
    [W_MAPPING_INS] = "writing a mapping",
    [W_FUNC_FIND] = "looking up a function",
    [W_FUNC_AT] = "looking up a function by its hash index",
    [W_FUNC_SEEN] = "refreshing a function",
    [W_LOC_FIND] = "looking up a location",
    [W_LOC_AT] = "looking up a location by its hash index",
    [W_LOC_SEEN] = "refreshing a location",
    [W_STACK_FIND] = "looking up a stack",
    [W_STACK_AT] = "looking up a stack by its hash index",
    [W_STACK_SEEN] = "refreshing a stack",
    [W_SAMPLE_CHUNK] = "writing sample values",
    [W_COMPACT_READ] = "reading a bucket's chunks to merge them",
    [W_COMPACT_DEL] = "deleting a bucket's merged chunks",
    [W_COMPACT_INS] = "writing a bucket's merged chunk",
    [W_SPAN_CHUNK] = "writing span stack values",
    [W_SPAN_UPSERT] = "writing a span",
    [W_SPAN_HOUR] = "recording a span hour",
    [W_RET_NEXT_SERIES] = "retention: listing series",
    [W_RET_SAMPLE_BOUND] = "retention: reading sample buckets",
    [W_RET_SAMPLE_DEL_LE] = "retention: deleting samples",
    [W_RET_SAMPLE_DEL_LT] = "retention: deleting samples",
    [W_RET_SPANSTK_BOUND] = "retention: reading span stacks",
    [W_RET_SPANSTK_DEL_LE] = "retention: deleting span stacks",
    [W_RET_SPANSTK_DEL_LT] = "retention: deleting span stacks",
    [W_RET_SCHUNK_BOUND] = "retention: reading sample buckets",
    [W_RET_SCHUNK_DEL_LE] = "retention: deleting samples",
    [W_RET_SCHUNK_DEL_LT] = "retention: deleting samples",
    [W_RET_SPCHUNK_BOUND] = "retention: reading span stacks",
    [W_RET_SPCHUNK_DEL_LE] = "retention: deleting span stacks",
    [W_RET_SPCHUNK_DEL_LT] = "retention: deleting span stacks",
    [W_RET_SPANHOUR_DEL] = "retention: deleting span hours",
    [W_RET_SPAN_BOUND] = "retention: reading spans",
    [W_RET_SPAN_DEL_LE] = "retention: deleting spans",
    [W_RET_SPAN_DEL_LT] = "retention: deleting spans",
    [W_RET_MAX_STACK] = "retention: reading stacks",
    [W_RET_DEL_STACK] = "retention: deleting unused stacks",
    [W_RET_MAX_LOC] = "retention: reading locations",
    [W_RET_DEL_LOC] = "retention: deleting unused locations",
    [W_RET_MAX_FUNC] = "retention: reading functions",
    [W_RET_DEL_FUNC] = "retention: deleting unused functions",
    [W_STACK_KEY] = "writing a stack key",
    [W_LOC_KEY] = "writing a location key",
    [W_FUNC_KEY] = "writing a function key",
    [W_STACK_KEYS] = "writing stack keys",
    [W_LOC_KEYS] = "writing location keys",
    [W_FUNC_KEYS] = "writing function keys",
    [W_META_SET] = "writing a schema fact",
    [W_META_GET] = "reading a schema fact",
    [W_RET_DEL_STACK_KEY] = "retention: deleting unused stack keys",
    [W_RET_DEL_LOC_KEY] = "retention: deleting unused location keys",
    [W_RET_DEL_FUNC_KEY] = "retention: deleting unused function keys",
    [W_SERIES_PERIOD] = "recording a series' period",
    [W_SYMBOL_INS] = "keeping a frame's symbols",
    [W_XRES_FIND] = "looking up a span resource",
    [W_XRES_INS] = "writing a span resource",
    [W_XRES_SEEN] = "marking a span resource used",
    [W_XSEQ_MAX] = "numbering span attributes",
    [W_XINS] = "writing a span's attributes",
    [W_RET_SPEXTRA_BOUND] = "finding old span attributes",
    [W_RET_SPEXTRA_DEL_LE] = "deleting old span attributes",
    [W_RET_SPEXTRA_DEL_LT] = "deleting old span attributes",
    [W_RET_SPRES_DEL] = "deleting unused span resources",
};

/* Retention phases, in order: data first, then the dictionary rows nothing uses any more. */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int32_t sqs_hour_of(int64_t t)
{
    return (int32_t)sqs_floor_div(t, SQS_HOUR_NS);
}

/* ---- set-up ------------------------------------------------------------------------------------
 */

int sqs_writer_init(sqs_store *s, sp_err *err)
{
    sqs_writer *w = &s->w;
    for (int i = 0; i < W_NSTMT; i++) {
        int rc = sqlite3_prepare_v3(w->db, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i], NULL);
        if (rc != SQLITE_OK)
            return sqs_fail(err, w->db, rc, "preparing writer statement %d", i);
    }
    /* The cache budget, split by how many rows each dictionary tends to have. An entry costs
     * its size twice over (the tables are kept at most half full). */
    size_t entries = s->opt.cache_bytes / (2 * sizeof(store_dict_entry));
    if (entries < 1024)
        entries = 1024;
    store_dict_init(&w->stacks, entries * 6 / 16);
    store_dict_init(&w->stack_prints, entries / 16); /* the hot stacks; may forget */
    store_dict_init(&w->locations, entries / 4);
    store_dict_init(&w->loc_prints, entries / 16); /* the hot locations; may forget */
    store_dict_init(&w->functions, entries / 10);
    store_dict_init(&w->series, entries / 20);
    store_dict_init(&w->strings, entries / 20);
    store_dict_init(&w->mappings, entries / 40);
    store_dict_init(&w->tenants, entries / 40);
    for (int k = 0; k < SQS_NKEYS; k++)
        store_hindex_init(&w->index[k], s->opt.index_rows); /* I4 */
    memset(&w->samples, 0, sizeof w->samples);
    store_agg_init(&w->spanstk);
    store_agg_init(&w->hours);
    memset(&w->stack_memo, 0, sizeof w->stack_memo);
    store_agg_init(&w->periods);
    w->ret.last_gc_hour = INT32_MIN;
    /* Rows written since the last keying are in no cache yet: key them before the first
     * lookup. */
    w->keys_dirty = (1u << SQS_NKEYS) - 1;
    int rc = sqs_load_watermarks(w, err);
    if (!rc) {
        sqs_load_dictionaries(w);
        sqs_index_build(w);
    }
    return rc;
}

void sqs_writer_free(sqs_store *s)
{
    sqs_writer *w = &s->w;
    for (int i = 0; i < W_NSTMT; i++)
        sqlite3_finalize(w->st[i]);
    memset(w->st, 0, sizeof w->st);
    sqs_newrows_free(w);
    if (w->db)
        sqlite3_close(w->db);
    w->db = NULL;
    store_dict_free(&w->stacks);
    store_dict_free(&w->locations);
    store_dict_free(&w->loc_prints);
    store_dict_free(&w->stack_prints);
    store_dict_free(&w->functions);
    store_dict_free(&w->series);
    store_dict_free(&w->strings);
    store_dict_free(&w->mappings);
    store_dict_free(&w->tenants);
    for (int k = 0; k < SQS_NKEYS; k++)
        store_hindex_free(&w->index[k]);
    free(w->index_gone);
    store_sum3_free(&w->samples);
    store_agg_free(&w->spanstk);
    store_agg_free(&w->hours);
    store_sum3_free(&w->stack_memo);
    free(w->stack_idx);
    store_agg_free(&w->periods);
    store_chunk_coder_free(&w->coder);
    store_sum3_free(&w->compact);
    store_chunk_merge_free(&w->merge);
    free(w->compact_keep);
    store_chunk_decoder_free(&w->decoder);
    free(w->fn_ids);
    free(w->loc_ids);
    free(w->map_ids);
    free(w->str_ids);
    free(w->kbuf);
    free(w->pend);
    free(w->buf);
    free(w->kvs);
    free(w->sorted);
    free(w->sorted3);
    sqs_extras_cache_clear(w);
}

static void clear_caches(sqs_writer *w)
{
    store_dict_clear(&w->stacks);
    store_dict_clear(&w->locations);
    store_dict_clear(&w->loc_prints);
    store_dict_clear(&w->stack_prints);
    store_dict_clear(&w->functions);
    store_dict_clear(&w->series);
    store_dict_clear(&w->strings);
    store_dict_clear(&w->mappings);
    store_dict_clear(&w->tenants);
    store_agg_reset(&w->periods);
    sqs_extras_cache_clear(w);
    w->keys_dirty = (1u << SQS_NKEYS) - 1;
    w->keys_complete = 0;
}

/* ---- one batch ---------------------------------------------------------------------------------
 */

static int sample_has_series_labels(const sp_profile *p, const sp_sample *s)
{
    for (uint32_t i = 0; i < s->nlabels; i++) {
        if (!s->labels[i].str)
            continue;
        size_t n;
        const char *k = sqs_pstr(p, s->labels[i].key, &n);
        if (n && !sqs_is_link_label(k, n))
            return 1;
    }
    return 0;
}

/* Adds one observation: to its series' bucket, and to each span the sample is attached to
 * (in the hour of the observation). */
static int add_value(sqs_writer *w, int64_t series, int64_t bucket, int64_t stack, int64_t v,
                     const sp_sample *s, int attach_only, sp_err *err)
{
    store_agg_entry *e;
    /* attach_only: the value was stored with its profile earlier; only the span learns of it. */
    if (!attach_only) {
        int64_t *sum = store_sum3_at(&w->samples, series, bucket, stack);
        if (!sum)
            return series ? sqs_oom(err) : sp_fail(err, SP_EINTERNAL, "series id 0");
        *sum += v;
    }
    int64_t hour = s->nspans ? sqs_floor_div(bucket * SQS_BUCKET_NS, SQS_HOUR_NS) : 0;
    for (uint32_t k = 0; k < s->nspans; k++) {
        const uint8_t *id = s->spans[k].span_id;
        int64_t key = sqs_span_key(id);
        if (!key)
            continue; /* an all-zero span id is invalid (OTLP): nothing can refer to it */
        int dup = 0;
        for (uint32_t j = 0; j < k && !dup; j++)
            dup = memcmp(s->spans[j].span_id, id, 8) == 0;
        if (dup)
            continue;
        e = store_agg_get(&w->spanstk, hour, key, series, stack, NULL);
        if (!e)
            return sqs_oom(err);
        e->sum += v;
    }
    return 0;
}

/* Adds one sample's observations. Those without their own values share the sample's value.
 * Consecutive observations in one bucket (the eBPF profiler sends several timestamps per sample)
 * go in as one value: one probe of the aggregate, not one per timestamp. */
static int add_sample_values(sqs_writer *w, const sp_profile *p, const sp_sample *s, int64_t series,
                             int64_t stack, int64_t default_bucket, uint64_t *nobs, sp_err *err)
{
    int rc;
    if (!s->nobs) {
        if ((rc = add_value(w, series, default_bucket, stack, s->value, s, p->attach_only, err)))
            return rc;
        *nobs += p->attach_only ? 0 : 1;
        return 0;
    }
    /* equal shares, the remainder to the first (no division for the usual single one) */
    int64_t share = s->values ? 0 : s->nobs == 1 ? s->value : s->value / (int64_t)s->nobs;
    int64_t rest = s->values ? 0 : s->value - share * (int64_t)s->nobs;
    int64_t run_bucket = 0, run_value = 0;
    for (uint32_t k = 0; k < s->nobs; k++) {
        int64_t v = s->values ? s->values[k] : share + (k == 0 ? rest : 0);
        int64_t t = (int64_t)s->timestamps[k];
        int64_t b = t > 0 ? sqs_bucket_of(w, t) : default_bucket;
        if (k > 0 && b != run_bucket) {
            if (run_value &&
                (rc = add_value(w, series, run_bucket, stack, run_value, s, p->attach_only, err)))
                return rc;
            run_value = 0;
        }
        run_bucket = b;
        run_value += v;
    }
    if (run_value &&
        (rc = add_value(w, series, run_bucket, stack, run_value, s, p->attach_only, err)))
        return rc;
    *nobs += p->attach_only ? 0 : s->nobs; /* counted when first stored */
    return 0;
}

#define PREFETCH_AHEAD 8

typedef struct pending {
    const sp_sample *s;
    int64_t series, stack;
} pending;

static int write_profile(sqs_writer *w, int64_t tenant, const sp_profile *p, uint64_t *nobs,
                         sp_err *err)
{
    int rc;
    if (sqs_grow((void **)&w->fn_ids, &w->fn_cap, p->nfunctions + 1, sizeof *w->fn_ids) ||
        sqs_grow((void **)&w->loc_ids, &w->loc_cap, p->nlocations + 1, sizeof *w->loc_ids) ||
        sqs_grow((void **)&w->map_ids, &w->map_cap, p->nmappings + 1, sizeof *w->map_ids) ||
        sqs_grow((void **)&w->str_ids, &w->str_cap, p->nstrings + 1, sizeof *w->str_ids))
        return sqs_oom(err);
    int memo_reset = 0;
    if (p->locations != w->memo_locs || p->functions != w->memo_funcs ||
        p->mappings != w->memo_maps || p->strings != w->memo_strs ||
        p->nlocations != w->memo_nlocs || p->nfunctions != w->memo_nfuncs ||
        p->nmappings != w->memo_nmaps || p->nstrings != w->memo_nstrs) {
        /* (the converter never moves a request's location table: another table in between,
         * such as a late profile's, is never extended) */
        if (w->memo_owner && w->memo_nlocs != UINT32_MAX && p->locations == w->memo_locs &&
            p->nlocations >= w->memo_nlocs && p->nfunctions >= w->memo_nfuncs &&
            p->nmappings >= w->memo_nmaps && p->nstrings >= w->memo_nstrs) {
            /* S5: a later part of the stream whose tables the memos hold; they extend them. */
            memset(w->fn_ids + w->memo_nfuncs + 1, 0,
                   (p->nfunctions - w->memo_nfuncs) * sizeof *w->fn_ids);
            memset(w->loc_ids + w->memo_nlocs + 1, 0,
                   (p->nlocations - w->memo_nlocs) * sizeof *w->loc_ids);
            memset(w->map_ids + w->memo_nmaps + 1, 0,
                   (p->nmappings - w->memo_nmaps) * sizeof *w->map_ids);
            memset(w->str_ids + w->memo_nstrs + 1, 0,
                   (p->nstrings - w->memo_nstrs) * sizeof *w->str_ids);
        } else {
            memset(w->fn_ids, 0, (p->nfunctions + 1) * sizeof *w->fn_ids);
            memset(w->loc_ids, 0, (p->nlocations + 1) * sizeof *w->loc_ids);
            memset(w->map_ids, 0, (p->nmappings + 1) * sizeof *w->map_ids);
            memset(w->str_ids, 0, (p->nstrings + 1) * sizeof *w->str_ids);
            store_sum3_reset(&w->stack_memo);
            w->stack_idx_of = NULL;
            memo_reset = 1;
        }
        w->memo_locs = p->locations;
        w->memo_funcs = p->functions;
        w->memo_maps = p->mappings;
        w->memo_strs = p->strings;
        w->memo_nlocs = p->nlocations;
        w->memo_nfuncs = p->nfunctions;
        w->memo_nmaps = p->nmappings;
        w->memo_nstrs = p->nstrings;
    }

    /* The hour dictionary rows are marked with: the later of now and the newest data. */
    int64_t tmax = p->time_nanos + (p->duration_nanos > 0 ? p->duration_nanos : 0);
    if (p->facts_known) { /* the producer's bound: no pass over the samples' timestamps */
        if (p->newest > tmax)
            tmax = p->newest;
    } else {
        for (uint32_t i = 0; i < p->nsamples; i++)
            for (uint32_t k = 0; k < p->samples[i].nobs; k++)
                if ((int64_t)p->samples[i].timestamps[k] > tmax)
                    tmax = (int64_t)p->samples[i].timestamps[k];
    }
    int32_t target = sqs_hour_of(tmax);
    if (target < w->now_hour)
        target = w->now_hour;
    if (memo_reset || target < w->memo_target)
        w->memo_target = target; /* what rows found through the memos were refreshed to */
    int64_t default_bucket =
        sqs_floor_div(p->time_nanos > 0 ? p->time_nanos : now_ns(), SQS_BUCKET_NS);

    int by_index = sqs_stack_idx_ready(w, p);
    int64_t base_series = 0;
    pending ring[PREFETCH_AHEAD] = {{0}};
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        if (i + 2 * PREFETCH_AHEAD < p->nsamples) /* the memo's slot, or the print's, ahead */
            sqs_stack_prefetch(w, p, &p->samples[i + 2 * PREFETCH_AHEAD], by_index);
        if (!s->nobs && !s->value)
            continue;
        int64_t series, stack;
        if (sample_has_series_labels(p, s)) {
            if ((rc = sqs_resolve_series(w, tenant, p, s, &series, err)))
                return rc;
        } else {
            if (!base_series && (rc = sqs_resolve_series(w, tenant, p, NULL, &base_series, err)))
                return rc;
            series = base_series;
        }
        /* The memo is keyed by the location list's address: only valid while the tables it
         * indexes stay the same, which the memo reset above ensures. Stack ids are row ids, so
         * 0 is a new entry. An empty stack may have no list: key 1, which no list's address is.
         * A printed stack's entry is its index instead: no hash, no probe. */
        int64_t *m = by_index && s->stack && s->stack < p->nstack_prints
                         ? &w->stack_idx[s->stack]
                         : store_sum3_at(&w->stack_memo,
                                         s->location_ids ? (int64_t)(uintptr_t)s->location_ids : 1,
                                         s->nlocations, 0);
        if (!m)
            return sqs_oom(err);
        if (!*m) {
            if ((rc = sqs_resolve_stack(w, p, s, target, &stack, err))) {
                store_sum3_reset(&w->stack_memo);
                w->stack_idx_of = NULL;
                return rc;
            }
            *m = stack;
        } else {
            stack = *m;
        }
        /* The aggregate's slot is a cache miss in a table of hundreds of thousands of entries:
         * prefetched now, the sample is added PREFETCH_AHEAD samples later (the order of the
         * additions changes no sum). */
        int64_t b0 = s->nobs && s->timestamps[0] > 0 ? sqs_bucket_of(w, (int64_t)s->timestamps[0])
                                                     : default_bucket;
        if (!p->attach_only)
            store_sum3_prefetch(&w->samples, series, b0, stack);
        pending *q = &ring[i % PREFETCH_AHEAD];
        if (i >= PREFETCH_AHEAD && q->s &&
            (rc = add_sample_values(w, p, q->s, q->series, q->stack, default_bucket, nobs, err)))
            return rc;
        *q = (pending){s, series, stack};
    }
    for (uint32_t k = 0; k < PREFETCH_AHEAD; k++)
        if (ring[k].s && (rc = add_sample_values(w, p, ring[k].s, ring[k].series, ring[k].stack,
                                                 default_bucket, nobs, err)))
            return rc;
    return sqs_newrows_flush(w, -1, err); /* A2 of sqlite_newrows.c: none waits past here */
}

/* Records an hour in span_hour once (the writer remembers which it has written). */
static int note_hour(sqs_writer *w, int64_t hour, sp_err *err)
{
    if (store_agg_find(&w->hours, hour, 0, 0, 0))
        return 0;
    sqlite3_bind_int64(w->st[W_SPAN_HOUR], 1, hour);
    int rc = sqs_run(w, W_SPAN_HOUR, err);
    if (rc)
        return rc;
    return store_agg_get(&w->hours, hour, 0, 0, 0, NULL) ? 0 : sqs_oom(err);
}

static int write_span(sqs_writer *w, int64_t tenant, const sp_span *sp, sp_err *err)
{
    int64_t key = sqs_span_key(sp->span_id);
    if (!key)
        return 0; /* an all-zero span id is invalid (OTLP): nothing can refer to it */
    int64_t service, name;
    int rc;
    const char *svc = sp->service ? sp->service : "", *nm = sp->name ? sp->name : "";
    if ((rc = sqs_resolve_string(w, svc, strlen(svc), &service, err)) ||
        (rc = sqs_resolve_string(w, nm, strlen(nm), &name, err)))
        return rc;
    sqlite3_stmt *st = w->st[W_SPAN_UPSERT];
    sqlite3_bind_int64(st, 1, tenant);
    sqlite3_bind_int64(st, 2, key);
    sqlite3_bind_blob(st, 3, sp->trace_id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, sqs_span_key(sp->parent_span_id));
    sqlite3_bind_int64(st, 5, service);
    sqlite3_bind_int64(st, 6, name);
    sqlite3_bind_int64(st, 7, (int64_t)sp->start_ns);
    sqlite3_bind_int64(st, 8, sp->end_ns > sp->start_ns ? (int64_t)(sp->end_ns - sp->start_ns) : 0);
    sqlite3_bind_int64(st, 9, sp->pid);
    sqlite3_bind_int64(st, 10, sp->tid);
    int64_t hour = sqs_floor_div((int64_t)sp->start_ns, SQS_HOUR_NS);
    sqlite3_bind_int64(st, 11, hour);
    if (sp->extras && sp->extras_len) {
        int64_t seq;
        if ((rc = sqs_write_extras(w, hour, sp->extras, sp->extras_len, &seq, err))) {
            sqlite3_clear_bindings(st);
            return rc;
        }
        sqlite3_bind_int64(st, 12, seq);
    }
    rc = sqs_run(w, W_SPAN_UPSERT, err);
    sqlite3_clear_bindings(st);
    return rc ? rc : note_hour(w, hour, err);
}

/* owner: the stream b is a part of, or NULL. */
static int write_batch(sqs_writer *w, const sp_batch *b, const sqs_req *owner, uint64_t *nobs,
                       uint64_t *nspans, sp_err *err)
{
    int64_t tenant;
    /* Memos never outlive a batch, or a stream's parts (S5): another batch's tables may reuse the
     * same addresses. */
    if (!owner || owner != w->memo_owner) {
        w->memo_locs = w->memo_funcs = w->memo_maps = w->memo_strs = NULL;
        w->memo_nlocs = UINT32_MAX; /* matches no profile */
        w->memo_owner = owner;
    }
    int rc = sqs_resolve_tenant(w, sqs_tenant_name(b->tenant), &tenant, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < b->nprofiles; i++)
        if ((rc = write_profile(w, tenant, b->profiles[i], nobs, err))) {
            sp_err_prefix(err, "profile %zu: ", i);
            return rc;
        }
    for (size_t i = 0; i < b->nspans; i++)
        if ((rc = write_span(w, tenant, &b->spans[i], err)))
            return rc;
    *nspans += b->nspans;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const store_agg_entry *x = a, *y = b;
    for (int i = 0; i < 4; i++)
        if (x->k[i] != y->k[i])
            return x->k[i] < y->k[i] ? -1 : 1;
    return 0;
}

/* Writes the span aggregate as chunks: one row per (hour, span), its (series, stack) pairs and
 * values coded by store_chunk_encode(). Rows go in key order (B-tree friendly), and each hour is
 * recorded in span_hour. */
static int flush_spans(sqs_writer *w, sp_err *err)
{
    store_agg *m = &w->spanstk;
    if (!m->n)
        return 0;
    if (sqs_grow((void **)&w->sorted, &w->sorted_cap, m->n, sizeof *w->sorted))
        return sqs_oom(err);
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].used && m->slots[i].sum)
            w->sorted[n++] = m->slots[i];
    qsort(w->sorted, n, sizeof *w->sorted, entry_cmp);
    sqlite3_stmt *st = w->st[W_SPAN_CHUNK];
    for (size_t i = 0; i < n;) {
        const store_agg_entry *e = &w->sorted[i];
        size_t j = i + 1;
        while (j < n && w->sorted[j].k[0] == e->k[0] && w->sorted[j].k[1] == e->k[1])
            j++;
        const uint8_t *blob;
        size_t len;
        if (store_chunk_encode(&w->coder, e, j - i, 2, 2, &blob, &len))
            return sqs_oom(err);
        sqlite3_bind_int64(st, 1, e->k[0]);
        sqlite3_bind_int64(st, 2, e->k[1]);
        sqlite3_bind_blob(st, 3, blob, (int)len, SQLITE_STATIC);
        int rc = sqs_run(w, W_SPAN_CHUNK, err);
        if (rc)
            return rc;
        if ((i == 0 || e->k[0] != w->sorted[i - 1].k[0]) && (rc = note_hour(w, e->k[0], err)))
            return rc;
        i = j;
    }
    sqlite3_clear_bindings(st);
    return 0;
}

/* The sample aggregate's flush: one row per (series, bucket), the stacks and values in its chunk.
 */
static int flush_samples(sqs_writer *w, sp_err *err)
{
    store_sum3 *m = &w->samples;
    if (!m->n)
        return 0;
    if (sqs_grow((void **)&w->sorted3, &w->sorted3_cap, m->n, sizeof *w->sorted3))
        return sqs_oom(err);
    size_t n = store_sum3_sorted(m, w->sorted3);
    sqlite3_stmt *st = w->st[W_SAMPLE_CHUNK];
    for (size_t i = 0; i < n;) {
        const store_sum3_entry *e = &w->sorted3[i];
        size_t j = i + 1;
        int64_t total = e->sum;
        while (j < n && w->sorted3[j].k[0] == e->k[0] && w->sorted3[j].k[1] == e->k[1])
            total += w->sorted3[j++].sum;
        const uint8_t *blob;
        size_t len;
        int merged_later = sqs_compact_note(w, e->k[0], e->k[1]); /* M7: then no zstd now */
        if (store_chunk_encode_sum3(&w->coder, e, j - i, !merged_later, &blob, &len))
            return sqs_oom(err);
        sqlite3_bind_int64(st, 1, e->k[0]);
        sqlite3_bind_int64(st, 2, e->k[1]);
        sqlite3_bind_int64(st, 3, total);
        sqlite3_bind_blob(st, 4, blob, (int)len, SQLITE_STATIC);
        int rc = sqs_run(w, W_SAMPLE_CHUNK, err);
        if (rc)
            return rc;
        i = j;
    }
    sqlite3_clear_bindings(st);
    return 0;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sqs_rollback(sqs_writer *w)
{
    if (!sqlite3_get_autocommit(w->db)) {
        sqlite3_stmt *st = w->st[W_ROLLBACK];
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    /* Statements left mid-step by an error must not keep a read snapshot. */
    for (int i = 0; i < W_NSTMT; i++)
        sqlite3_reset(w->st[i]);
    clear_caches(w);
    sqs_newrows_drop(w); /* A3 */
    store_agg_reset(&w->hours);
    sp_err ignored = {0};
    if (sqs_load_watermarks(w, &ignored))
        memset(w->keyed, 0, sizeof w->keyed);
    w->nindex_gone = 0; /* I3: the rows are back */
}

/* Writes what the group's members have ready (S2): a plain batch whole, a stream's parts not
 * written yet. Sets *progress when it wrote anything, *all_done when every member is finished,
 * *aborted to the index of a stream whose caller gave up (and stops there), else -1. */
static int write_ready(sqs_store *s, sqs_req **g, size_t n, uint64_t *nobs, uint64_t *nspans,
                       int *progress, int *all_done, long *aborted, sp_err *err)
{
    *progress = 0;
    *all_done = 1;
    *aborted = -1;
    for (size_t i = 0; i < n; i++) {
        sqs_req *r = g[i];
        int rc;
        if (r->finished)
            continue;
        if (r->kind != SQS_REQ_STREAM) {
            if ((rc = write_batch(&s->w, r->batch, NULL, nobs, nspans, err)))
                return rc;
            r->finished = *progress = 1;
            continue;
        }
        for (;;) {
            pthread_mutex_lock(&s->mu);
            sqs_part *next = r->written ? r->written->next : r->parts;
            int closed = r->closed, gave_up = r->aborted;
            pthread_mutex_unlock(&s->mu);
            if (gave_up) {
                *aborted = (long)i;
                return 0;
            }
            if (!next) {
                r->finished = closed;
                break;
            }
            if ((rc = write_batch(&s->w, next->batch, r, nobs, nspans, err)))
                return rc;
            r->written = next;
            *progress = 1;
        }
        if (!r->finished)
            *all_done = 0;
    }
    return 0;
}

/* S3: nothing was ready. Takes the next queued caller into the transaction when there is room,
 * else sleeps until a part, an end or a new caller arrives. Returns the group's size; sets
 * *closing when the store is closing with a stream still open (its caller broke store_close's
 * contract: the transaction fails rather than wait for ever). */
static size_t wait_for_parts(sqs_store *s, sqs_req **g, size_t n, size_t max, int *closing)
{
    pthread_mutex_lock(&s->mu);
    *closing = 0;
    int ready = 0;
    for (size_t i = 0; i < n && !ready; i++)
        ready =
            !g[i]->finished && g[i]->kind == SQS_REQ_STREAM &&
            (g[i]->aborted || g[i]->closed || (g[i]->written ? g[i]->written->next : g[i]->parts));
    if (!ready && s->head && n < max) {
        g[n] = s->head;
        g[n]->written = NULL;
        g[n]->finished = 0;
        n++;
        s->head = s->head->next;
        if (!s->head)
            s->tail = NULL;
        s->npending--;
    } else if (!ready && s->stopping) {
        *closing = 1;
    } else if (!ready) {
        pthread_cond_wait(&s->wake, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* S4: the caller of stream g[k] gave up: it leaves the group and is released. */
static size_t drop_member(sqs_store *s, sqs_req **g, size_t n, size_t k)
{
    sqs_req *r = g[k];
    memmove(g + k, g + k + 1, (n - k - 1) * sizeof *g);
    pthread_mutex_lock(&s->mu);
    r->rc = 0;
    r->done = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&s->mu);
    return n - 1;
}

/* Whether sqs_keys_ahead() may have rows to key: a cache half full (it then asks SQLite). */
static int keys_may_be_due(const sqs_writer *w)
{
    return w->stacks.n >= w->stacks.max / 2 || w->locations.n >= w->locations.max / 2;
}

/* The writer's dictionary caches, for what is done to or counted over all of them. */
#define WRITER_DICTS 9
static void writer_dicts(sqs_writer *w, store_dict *d[WRITER_DICTS])
{
    d[0] = &w->stacks, d[1] = &w->locations, d[2] = &w->functions, d[3] = &w->series;
    d[4] = &w->strings, d[5] = &w->mappings, d[6] = &w->tenants, d[7] = &w->loc_prints;
    d[8] = &w->stack_prints;
}

/* H2: caches about to double do it while the writer is idle. A cache of 262 k locations
 * doubling inside an Export's transaction held it 20-40 ms, much of that faulting in the new
 * table's huge pages (a temporary trace of the half-load run; bench/RESULTS.md, "The key
 * tables' pages, and growth stalls"). */
static int dicts_room_due(sqs_writer *w)
{
    store_dict *d[WRITER_DICTS];
    writer_dicts(w, d);
    for (size_t i = 0; i < WRITER_DICTS; i++)
        if (store_dict_room_due(d[i]))
            return 1;
    return 0;
}

static void grow_dicts_early(sqs_writer *w)
{
    store_dict *d[WRITER_DICTS];
    writer_dicts(w, d);
    for (size_t i = 0; i < WRITER_DICTS; i++)
        if (store_dict_room_due(d[i]))
            (void)store_dict_grow_now(d[i]); /* out of memory: the put grows it, or clears it */
}

/* Keys dictionary rows ahead of need (W2). */
static int housekeep_keys(sqs_writer *w, sp_err *err)
{
    int rc = sqs_keys_ahead(w, SQS_KEYS_STACK, &w->stacks, err);
    if (!rc)
        rc = sqs_keys_ahead(w, SQS_KEYS_LOC, &w->locations, err);
    return rc ? rc : sqs_keys_ahead(w, SQS_KEYS_FN, &w->functions, err);
}

/* Copies the closing's counters to the store's stats (under s->mu). */
static void publish_compact_stats(sqs_store *s)
{
    s->stats.chunks_merged = s->w.chunks_merged;
    s->stats.chunks_moved = s->w.chunks_moved;
    s->stats.compact_untracked = s->w.compact_untracked;
    s->stats.compact_failed = s->w.compact_failed;
}

/* One transaction for the n callers' batches and streams; streams may bring more callers in
 * while it is built (S3) or leave it (S4). Returns how many callers it holds in the end, whose
 * rc it set. */
static size_t commit_group(sqs_store *s, sqs_req **g, size_t n, size_t max)
{
    sqs_writer *w = &s->w;
    sp_err terr;
    uint64_t nobs, nspans;
    int rc;
restart:
    memset(&terr, 0, sizeof terr);
    nobs = nspans = 0;
    for (size_t i = 0; i < n; i++) {
        g[i]->written = NULL;
        g[i]->finished = 0;
    }
    w->memo_owner = NULL;
    w->now_hour = sqs_hour_of(now_ns());
    store_sum3_reset(&w->samples);
    store_agg_reset(&w->spanstk);
    rc = sqs_run(w, W_BEGIN, &terr);
    if (rc)
        sp_err_prefix(&terr, "starting a transaction: ");
    while (!rc) {
        int progress, all_done;
        long aborted;
        rc = write_ready(s, g, n, &nobs, &nspans, &progress, &all_done, &aborted, &terr);
        if (!rc && aborted >= 0 && !g[aborted]->written) {
            /* nothing of it is in the transaction yet */
            n = drop_member(s, g, n, (size_t)aborted);
            if (!n) {
                sqs_rollback(w);
                return 0;
            }
            continue;
        }
        if (!rc && aborted >= 0) {
            sqs_rollback(w);
            n = drop_member(s, g, n, (size_t)aborted);
            if (!n)
                return 0;
            goto restart;
        }
        if (rc || all_done)
            break;
        int closing = 0;
        if (!progress)
            n = wait_for_parts(s, g, n, max, &closing);
        if (closing)
            rc = sp_fail(&terr, SP_EUNAVAIL, "the store is closing with a stream still open");
    }
    pthread_mutex_lock(&s->mu);
    int house = s->head != NULL; /* H1: others wait, no idle time is coming */
    pthread_mutex_unlock(&s->mu);
    if (!rc)
        rc = sqs_newrows_flush(w, -1, &terr); /* none waits (A2); an early return's rows */
    if (!rc)
        rc = flush_samples(w, &terr);
    if (!rc && house)
        rc = sqs_compact(w, now_ns(), &terr);
    if (!rc)
        rc = flush_spans(w, &terr);
    if (!rc && house)
        rc = housekeep_keys(w, &terr);
    int64_t t0 = mono_us(), commit_us = 0;
    if (!rc) {
        rc = sqs_run(w, W_COMMIT, &terr);
        if (rc)
            sp_err_prefix(&terr, "commit: ");
        commit_us = mono_us() - t0;
    }
    if (rc)
        sqs_rollback(w);
    store_sum3_reset(&w->samples);
    store_agg_reset(&w->spanstk);
    for (size_t i = 0; i < n; i++) {
        if (rc) {
            g[i]->rc = SP_EUNAVAIL;
            sp_fail(g[i]->err, SP_EUNAVAIL,
                    "store write failed, nothing of this batch was stored: %s", terr.msg);
        } else {
            g[i]->rc = 0;
        }
    }
    if (rc)
        sp_warn("msg=\"store transaction rolled back\" batches=%zu error=\"%s\"", n, terr.msg);
    int due = !house && (keys_may_be_due(w) || sqs_compact_due(w, now_ns()) || dicts_room_due(w));
    pthread_mutex_lock(&s->mu);
    s->house_due |= due;
    if (rc) {
        s->stats.batches_failed += n;
    } else {
        s->stats.transactions++;
        s->stats.batches_committed += n;
        s->stats.samples_written += nobs;
        s->stats.spans_written += nspans;
        s->stats.last_commit_us = (uint64_t)commit_us;
    }
    publish_compact_stats(s);
    store_dict *dicts[WRITER_DICTS];
    writer_dicts(w, dicts);
    s->stats.cache_bytes = 0;
    s->stats.cache_clears = 0;
    for (size_t i = 0; i < WRITER_DICTS; i++) {
        s->stats.cache_bytes += store_dict_bytes(dicts[i]);
        s->stats.cache_clears += dicts[i]->clears;
    }
    s->stats.lookups_skipped = w->index_skips;
    s->stats.index_rows = s->stats.index_bytes = 0;
    for (int k = 0; k < SQS_NKEYS; k++) {
        s->stats.index_rows += w->index[k].n;
        s->stats.index_bytes += store_hindex_bytes(&w->index[k]);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- the writer thread -------------------------------------------------------------------------
 */

/* H1: a transaction of its own for the keying and the closing of buckets the last callers'
 * transaction left, while nothing is queued. A failure rolls back only this (W3 clears the
 * caches) and is logged; rows not keyed yet stay correct (W2), buckets not closed too (M2, M6). */
static void housekeep(sqs_store *s)
{
    sqs_writer *w = &s->w;
    grow_dicts_early(w); /* H2 */
    sp_err err = {0};
    int rc = sqs_run(w, W_BEGIN, &err);
    if (!rc)
        rc = housekeep_keys(w, &err);
    if (!rc)
        rc = sqs_compact(w, now_ns(), &err);
    if (!rc && (rc = sqs_run(w, W_COMMIT, &err)) != 0)
        sp_err_prefix(&err, "commit: ");
    if (rc) {
        sqs_rollback(w);
        sp_warn("msg=\"store housekeeping rolled back\" error=\"%s\"", err.msg);
    }
    pthread_mutex_lock(&s->mu);
    publish_compact_stats(s);
    pthread_mutex_unlock(&s->mu);
}

static void complete(sqs_req *req, int rc)
{
    req->rc = rc;
    req->done = 1;
    pthread_cond_signal(&req->cv);
}

void *sqs_writer_main(void *arg)
{
    sqs_store *s = arg;
    size_t max = s->opt.commit_max_batches;
    sqs_req **group = calloc(max, sizeof *group);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->w.ret.req && !s->ret_head && !s->sym_new.head && !s->house_due &&
               !s->stopping)
            pthread_cond_wait(&s->wake, &s->mu);
        if (s->head) {
            if (s->opt.commit_linger_ns > 0 && s->npending < max && !s->stopping) {
                /* Let concurrent callers join this transaction. */
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                int64_t ns = until.tv_nsec + s->opt.commit_linger_ns;
                until.tv_sec += (time_t)(ns / 1000000000LL);
                until.tv_nsec = (long)(ns % 1000000000LL);
                pthread_cond_timedwait(&s->wake, &s->mu, &until);
            }
            size_t n = 0;
            if (!group) {
                /* No memory for grouping: one batch per transaction. */
                sqs_req *one = s->head;
                s->head = one->next;
                if (!s->head)
                    s->tail = NULL;
                s->npending--;
                pthread_mutex_unlock(&s->mu);
                size_t kept = commit_group(s, &one, 1, 1);
                pthread_mutex_lock(&s->mu);
                if (kept)
                    complete(one, one->rc);
                continue;
            }
            while (s->head && n < max) {
                group[n++] = s->head;
                s->head = s->head->next;
            }
            if (!s->head)
                s->tail = NULL;
            s->npending -= n;
            s->writing = 1;
            pthread_mutex_unlock(&s->mu);
            n = commit_group(s, group, n, max);
            pthread_mutex_lock(&s->mu);
            s->writing = 0;
            for (size_t i = 0; i < n; i++)
                complete(group[i], group[i]->rc);
            continue;
        }
        if (s->house_due && !s->stopping) {
            s->house_due = 0;
            s->housekeeping = 1;
            s->writing = 1; /* S6: a stream begun now is joined, not taken */
            pthread_mutex_unlock(&s->mu);
            housekeep(s);
            pthread_mutex_lock(&s->mu);
            s->writing = 0;
            s->housekeeping = 0;
            continue;
        }
        if (s->sym_new.head && !s->stopping) {
            /* Names found by queries: a small transaction of their own between batches. */
            s->sym_flushing = s->sym_new;
            memset(&s->sym_new, 0, sizeof s->sym_new);
            pthread_mutex_unlock(&s->mu);
            sqs_symbols_write(s);
            pthread_mutex_lock(&s->mu);
            sqs_symbols_retire(s);
            continue;
        }
        if (!s->w.ret.req && s->ret_head) {
            sqs_req *req = s->ret_head;
            s->ret_head = req->next;
            if (!s->ret_head)
                s->ret_tail = NULL;
            sqs_retention_start(s, req);
        }
        if (s->w.ret.req) {
            sqs_req *req = s->w.ret.req;
            if (s->stopping || __atomic_load_n(&s->closing, __ATOMIC_ACQUIRE)) {
                sp_fail(req->err, SP_EUNAVAIL, "the store is closing; retention run cancelled");
                s->w.ret.req = NULL;
                complete(req, SP_EUNAVAIL);
                continue;
            }
            pthread_mutex_unlock(&s->mu);
            int rc = sqs_retention_step(s, req->err);
            pthread_mutex_lock(&s->mu);
            if (rc != 0) {
                s->stats.rows_deleted += s->w.ret.deleted;
                s->w.ret.deleted = 0;
                if (rc > 0)
                    s->stats.retention_runs++;
                s->w.ret.req = NULL;
                complete(req, rc > 0 ? 0 : rc);
            }
            continue;
        }
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            sqs_compact_all(&s->w); /* M7 of sqlite_compact.c */
            pthread_mutex_lock(&s->mu);
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(group);
    return NULL;
}
