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
 * Retention runs on this thread too, as a sequence of small transactions between ingest
 * transactions (writes always go first), so it never holds the write lock for long and never
 * races the caches.
 */
#include "sqlite_store.h"
#include "../common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sqs_kv {
    const char *name, *value;
    size_t nlen, vlen;
    uint32_t ord;
} sqs_kv;

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
    [W_FUNC_FIND] = "SELECT id, seen FROM function WHERE hash=?1 AND name IS ?2 AND "
                    "system_name IS ?3 AND file=?4 AND start_line=?5",
    [W_FUNC_INS] = "INSERT INTO function(hash, seen, name, system_name, file, start_line) "
                   "VALUES(?1, ?6, ?2, ?3, ?4, ?5)",
    [W_FUNC_SEEN] = "UPDATE function SET seen=?2 WHERE id=?1",
    [W_LOC_FIND] = "SELECT l.id, l.seen FROM location_key k CROSS JOIN location l ON l.id=k.id "
                   "WHERE k.hash=?1 AND l.mapping=?2 AND l.address=?3 AND l.kind=?4 AND "
                   "l.lines IS ?5",
    [W_LOC_INS] = "INSERT INTO location(hash, seen, mapping, address, kind, lines) "
                  "VALUES(?1, ?6, ?2, ?3, ?4, ?5)",
    [W_LOC_SEEN] = "UPDATE location SET seen=?2 WHERE id=?1",
    [W_STACK_FIND] = "SELECT s.id, s.seen FROM stack_key k CROSS JOIN stack s ON s.id=k.id "
                     "WHERE k.hash=?1 AND s.locs=?2",
    [W_STACK_INS] = "INSERT INTO stack(hash, seen, locs) VALUES(?1, ?3, ?2)",
    [W_STACK_SEEN] = "UPDATE stack SET seen=?2 WHERE id=?1",
    [W_SAMPLE_CHUNK] = "INSERT INTO sample_chunk(series, bucket, seq, total, data) VALUES(?1, ?2, "
                       "(SELECT coalesce(max(seq), 0) + 1 FROM sample_chunk WHERE series=?1 AND "
                       "bucket=?2), ?3, ?4)",
    [W_SPAN_CHUNK] = "INSERT INTO span_chunk(hour, span_id, seq, data) VALUES(?1, ?2, "
                     "(SELECT coalesce(max(seq), 0) + 1 FROM span_chunk WHERE hour=?1 AND "
                     "span_id=?2), ?3)",
    [W_SPAN_UPSERT] = "INSERT OR REPLACE INTO span(hour, tenant, span_id, trace_id, parent_id, "
                      "service, name, start_ns, duration_ns, pid, tid) "
                      "VALUES(?11, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
    [W_RET_DEL_STACK] = "DELETE FROM stack WHERE id>?1 AND id<=?2 AND seen<?3",
    [W_RET_MAX_LOC] = "SELECT max(id) FROM location",
    [W_RET_DEL_LOC] = "DELETE FROM location WHERE id>?1 AND id<=?2 AND seen<?3",
    [W_RET_MAX_FUNC] = "SELECT max(id) FROM function",
    [W_RET_DEL_FUNC] = "DELETE FROM function WHERE id>?1 AND id<=?2 AND seen<?3",
    [W_STACK_KEY] = "INSERT OR IGNORE INTO stack_key(hash, id) VALUES(?1, ?2)",
    [W_LOC_KEY] = "INSERT OR IGNORE INTO location_key(hash, id) VALUES(?1, ?2)",
    [W_STACK_KEYS] = "INSERT OR IGNORE INTO stack_key(hash, id) SELECT hash, id FROM stack "
                     "WHERE id>?1 AND id<=?2 ORDER BY hash, id",
    [W_LOC_KEYS] = "INSERT OR IGNORE INTO location_key(hash, id) SELECT hash, id FROM location "
                   "WHERE id>?1 AND id<=?2 ORDER BY hash, id",
    [W_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
    [W_META_GET] = "SELECT value FROM meta WHERE key=?1",
    [W_RET_DEL_STACK_KEY] = "DELETE FROM stack_key WHERE (hash, id) IN (SELECT hash, id FROM "
                            "stack WHERE id>?1 AND id<=?2 AND seen<?3)",
    [W_RET_DEL_LOC_KEY] = "DELETE FROM location_key WHERE (hash, id) IN (SELECT hash, id FROM "
                          "location WHERE id>?1 AND id<=?2 AND seen<?3)",
    [W_SERIES_PERIOD] = "UPDATE series SET period=?2 WHERE id=?1",
};

/* What each statement does, for error messages ("writing a stack: database or disk is full"). */
static const char *const wwhat[W_NSTMT] = {
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
    [W_FUNC_INS] = "writing a function",
    [W_FUNC_SEEN] = "refreshing a function",
    [W_LOC_FIND] = "looking up a location",
    [W_LOC_INS] = "writing a location",
    [W_LOC_SEEN] = "refreshing a location",
    [W_STACK_FIND] = "looking up a stack",
    [W_STACK_INS] = "writing a stack",
    [W_STACK_SEEN] = "refreshing a stack",
    [W_SAMPLE_CHUNK] = "writing sample values",
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
    [W_STACK_KEYS] = "writing stack keys",
    [W_LOC_KEYS] = "writing location keys",
    [W_META_SET] = "writing a schema fact",
    [W_META_GET] = "reading a schema fact",
    [W_RET_DEL_STACK_KEY] = "retention: deleting unused stack keys",
    [W_RET_DEL_LOC_KEY] = "retention: deleting unused location keys",
    [W_SERIES_PERIOD] = "recording a series' period",
};

/* Per key table: its watermark's name in meta, the statements that key one row and every row
 * above the watermark, and the statement reading the highest id. */
static const struct {
    const char *meta;
    int one, all, max;
} keys_of[SQS_NKEYS] = {
    [SQS_KEYS_STACK] = {"stack_keyed", W_STACK_KEY, W_STACK_KEYS, W_RET_MAX_STACK},
    [SQS_KEYS_LOC] = {"location_keyed", W_LOC_KEY, W_LOC_KEYS, W_RET_MAX_LOC},
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

static int load_watermarks(sqs_writer *w, sp_err *err);
static void load_dictionaries(sqs_writer *w);

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
    store_dict_init(&w->stacks, entries / 2);
    store_dict_init(&w->locations, entries / 4);
    store_dict_init(&w->functions, entries / 10);
    store_dict_init(&w->series, entries / 20);
    store_dict_init(&w->strings, entries / 20);
    store_dict_init(&w->mappings, entries / 40);
    store_dict_init(&w->tenants, entries / 40);
    store_agg_init(&w->samples);
    store_agg_init(&w->spanstk);
    store_agg_init(&w->hours);
    store_agg_init(&w->stack_memo);
    store_agg_init(&w->periods);
    w->ret.last_gc_hour = INT32_MIN;
    /* Rows written since the last keying are in no cache yet: key them before the first
     * lookup. */
    w->keys_dirty = (1u << SQS_NKEYS) - 1;
    int rc = load_watermarks(w, err);
    if (!rc)
        load_dictionaries(w);
    return rc;
}

void sqs_writer_free(sqs_store *s)
{
    sqs_writer *w = &s->w;
    for (int i = 0; i < W_NSTMT; i++)
        sqlite3_finalize(w->st[i]);
    memset(w->st, 0, sizeof w->st);
    if (w->db)
        sqlite3_close(w->db);
    w->db = NULL;
    store_dict_free(&w->stacks);
    store_dict_free(&w->locations);
    store_dict_free(&w->functions);
    store_dict_free(&w->series);
    store_dict_free(&w->strings);
    store_dict_free(&w->mappings);
    store_dict_free(&w->tenants);
    store_agg_free(&w->samples);
    store_agg_free(&w->spanstk);
    store_agg_free(&w->hours);
    store_agg_free(&w->stack_memo);
    store_agg_free(&w->periods);
    store_chunk_coder_free(&w->coder);
    free(w->fn_ids);
    free(w->loc_ids);
    free(w->map_ids);
    free(w->str_ids);
    free(w->kbuf);
    free(w->pend);
    free(w->buf);
    free(w->kvs);
    free(w->sorted);
}

static void clear_caches(sqs_writer *w)
{
    store_dict_clear(&w->stacks);
    store_dict_clear(&w->locations);
    store_dict_clear(&w->functions);
    store_dict_clear(&w->series);
    store_dict_clear(&w->strings);
    store_dict_clear(&w->mappings);
    store_dict_clear(&w->tenants);
    store_agg_reset(&w->periods);
    w->keys_dirty = (1u << SQS_NKEYS) - 1;
    w->keys_complete = 0;
}

/* ---- validation (on the caller's thread)
 * ---------------------------------------------------------- */

#define BAD(...) sp_fail(err, SP_EINVAL, __VA_ARGS__)

static int check_str(const sp_profile *p, uint32_t idx, size_t pi, const char *what, sp_err *err)
{
    if (idx && idx >= p->nstrings)
        return BAD("profile %zu: %s string index %u out of range (string table has %u entries)", pi,
                   what, idx, p->nstrings);
    if (idx && !p->strings)
        return BAD("profile %zu: %s string index %u but no string table", pi, what, idx);
    return 0;
}

/* tables = 0 when the previous profile of the batch shares (and so validated) its tables. */
static int validate_profile(const sp_profile *p, size_t pi, int tables, sp_err *err)
{
    int rc;
    if (!p)
        return BAD("profile %zu is missing", pi);
    if (!p->type_id || !*p->type_id)
        return BAD("profile %zu has no profile type id", pi);
    if ((p->nfunctions > 1 && !p->functions) || (p->nlocations > 1 && !p->locations) ||
        (p->nmappings > 1 && !p->mappings) || (p->nsamples && !p->samples) ||
        (p->nseries && !p->series))
        return BAD("profile %zu: a table has entries but no storage", pi);
    for (uint32_t i = 1; tables && i < p->nfunctions; i++) {
        const sp_function *f = &p->functions[i];
        if ((rc = check_str(p, f->name, pi, "function name", err)) ||
            (rc = check_str(p, f->system_name, pi, "function system name", err)) ||
            (rc = check_str(p, f->filename, pi, "function file name", err)))
            return rc;
    }
    for (uint32_t i = 1; tables && i < p->nmappings; i++) {
        const sp_mapping *m = &p->mappings[i];
        if ((rc = check_str(p, m->filename, pi, "mapping file name", err)) ||
            (rc = check_str(p, m->build_id, pi, "mapping build id", err)))
            return rc;
    }
    for (uint32_t i = 1; tables && i < p->nlocations; i++) {
        const sp_location *l = &p->locations[i];
        if (l->mapping_id >= p->nmappings && l->mapping_id)
            return BAD("profile %zu location %u: mapping_id %u out of range (%u mappings)", pi, i,
                       l->mapping_id, p->nmappings);
        if ((rc = check_str(p, l->frame_type, pi, "frame type", err)))
            return rc;
        if (l->nlines && !l->lines)
            return BAD("profile %zu location %u: %u lines but no storage", pi, i, l->nlines);
        for (uint32_t k = 0; k < l->nlines; k++)
            if (l->lines[k].function_id && l->lines[k].function_id >= p->nfunctions)
                return BAD("profile %zu location %u line %u: function_id %u out of range "
                           "(%u functions)",
                           pi, i, k, l->lines[k].function_id, p->nfunctions);
    }
    for (uint32_t i = 0; i < p->nseries; i++)
        if (!p->series[i].name || !p->series[i].value)
            return BAD("profile %zu: series label %u has no name or value", pi, i);
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        if (s->nlocations && !s->location_ids)
            return BAD("profile %zu sample %u: %u locations but no storage", pi, i, s->nlocations);
        for (uint32_t k = 0; k < s->nlocations; k++)
            if (s->location_ids[k] >= p->nlocations)
                return BAD("profile %zu sample %u: location_id %u out of range (%u locations)", pi,
                           i, s->location_ids[k], p->nlocations);
        if (s->nobs && !s->timestamps)
            return BAD("profile %zu sample %u: %u observations but no timestamps", pi, i, s->nobs);
        if (s->nspans && !s->spans)
            return BAD("profile %zu sample %u: %u spans but no storage", pi, i, s->nspans);
        if (s->nlabels && !s->labels)
            return BAD("profile %zu sample %u: %u labels but no storage", pi, i, s->nlabels);
        for (uint32_t k = 0; k < s->nlabels; k++)
            if ((rc = check_str(p, s->labels[k].key, pi, "label key", err)) ||
                (rc = check_str(p, s->labels[k].str, pi, "label value", err)))
                return rc;
    }
    return 0;
}

static int validate_batch(const sp_batch *b, sp_err *err)
{
    if (b->nprofiles && !b->profiles)
        return BAD("batch has %zu profiles but no storage", b->nprofiles);
    if (b->nspans && !b->spans)
        return BAD("batch has %zu spans but no storage", b->nspans);
    const sp_profile *prev = NULL;
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        int shared = p && prev && p->functions == prev->functions &&
                     p->nfunctions == prev->nfunctions && p->locations == prev->locations &&
                     p->nlocations == prev->nlocations && p->mappings == prev->mappings &&
                     p->nmappings == prev->nmappings && p->strings == prev->strings &&
                     p->nstrings == prev->nstrings;
        int rc = validate_profile(p, i, !shared, err);
        if (rc)
            return rc;
        prev = p;
    }
    return 0;
}

/* ---- small SQLite helpers ----------------------------------------------------------------------
 */

/* Steps a statement that returns no rows (or ignores them) and resets it. */
int sqs_run(sqs_writer *w, int which, sp_err *err)
{
    sqlite3_stmt *st = w->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    return sqs_fail(err, w->db, rc, "%s", wwhat[which]);
}

/* Steps a lookup: 1 with the row's columns 0 (and 1 if seen) read, 0 when no row, <0 error. */
int sqs_find(sqs_writer *w, int which, int64_t *id, int32_t *seen, sp_err *err)
{
    sqlite3_stmt *st = w->st[which];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        if (seen)
            *seen = sqlite3_column_int(st, 1);
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    return sqs_fail(err, w->db, rc, "%s", wwhat[which]);
}

/* The key tables' watermarks as committed (after a rollback: the flushes it undid are undone in
 * memory too). Without them every row is keyed again (INSERT OR IGNORE): slow, never wrong. */
static int load_watermarks(sqs_writer *w, sp_err *err)
{
    for (int k = 0; k < SQS_NKEYS; k++) {
        sqlite3_stmt *st = w->st[W_META_GET];
        w->keyed[k] = 0;
        if (!st)
            continue;
        sqlite3_bind_text(st, 1, keys_of[k].meta, -1, SQLITE_STATIC);
        int64_t v = 0;
        int rc = sqs_find(w, W_META_GET, &v, NULL, err);
        if (rc < 0)
            return rc;
        w->keyed[k] = rc ? v : 0;
    }
    return 0;
}

/* Keys the rows of dictionary k with ids in (watermark, to]. */
static int key_rows(sqs_writer *w, int k, int64_t to, sp_err *err)
{
    sqlite3_bind_int64(w->st[keys_of[k].all], 1, w->keyed[k]);
    sqlite3_bind_int64(w->st[keys_of[k].all], 2, to);
    return sqs_run(w, keys_of[k].all, err);
}

static int set_watermark(sqs_writer *w, int k, int64_t v, sp_err *err)
{
    sqlite3_stmt *st = w->st[W_META_SET];
    sqlite3_bind_text(st, 1, keys_of[k].meta, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    int rc = sqs_run(w, W_META_SET, err);
    if (!rc)
        w->keyed[k] = v;
    return rc;
}

/* Rows keyed per transaction ahead of need (a few milliseconds of work). */
#define KEYS_AHEAD 8192

/* Once a cache is half full, each transaction keys a slice of the rows only it knows, so the
 * keying left when it is full is small: keying them all at once held one transaction for a
 * quarter of a second (262 k locations). */
static int keys_ahead(sqs_writer *w, int k, const store_dict *d, sp_err *err)
{
    if (d->n < d->max / 2)
        return 0;
    int64_t top = 0;
    int rc = sqs_find(w, keys_of[k].max, &top, NULL, err);
    if (rc < 0)
        return rc;
    if (top <= w->keyed[k])
        return 0;
    int64_t to = top - w->keyed[k] > KEYS_AHEAD ? w->keyed[k] + KEYS_AHEAD : top;
    if ((rc = key_rows(w, k, to, err)))
        return rc;
    return set_watermark(w, k, to, err);
}

int sqs_keys_flush(sqs_writer *w, int k, sp_err *err)
{
    int rc = key_rows(w, k, INT64_MAX, err);
    int64_t top = 0;
    if (!rc && (rc = sqs_find(w, keys_of[k].max, &top, NULL, err)) >= 0)
        rc = 0;
    if (rc)
        return rc;
    /* Every row up to the highest is keyed now: the watermark follows it, down too when
     * retention deleted the newest rows (new ids then start above it again). */
    if (top != w->keyed[k] && (rc = set_watermark(w, k, top, err)))
        return rc;
    w->keys_dirty &= ~(1u << k);
    return 0;
}

/* Before a lookup that misses the cache of dictionary k: the cache must hold every unkeyed row
 * for a miss to mean "look in the key table". */
static int keys_ready(sqs_writer *w, int k, sp_err *err)
{
    return (w->keys_dirty & (1u << k)) ? sqs_keys_flush(w, k, err) : 0;
}

/* Remembers a row of dictionary k in its cache; when the cache forgets (full, or out of
 * memory), the rows only it knew are keyed before the next lookup. */
static void dict_remember(sqs_writer *w, int k, store_dict *d, uint64_t h1, uint64_t h2, int64_t id,
                          int32_t seen)
{
    uint64_t clears = d->clears;
    if (!store_dict_put(d, h1, h2, id, seen) || d->clears != clears) {
        w->keys_dirty |= 1u << k;
        w->keys_complete &= ~(1u << k);
    }
}

/* A new row of dictionary k: one at or below the watermark (an id retention freed, reused) is
 * keyed at once, since no bulk keying will reach it. */
static int key_new_row(sqs_writer *w, int k, int64_t hash, int64_t id, sp_err *err)
{
    if (id > w->keyed[k])
        return 0;
    sqlite3_stmt *st = w->st[keys_of[k].one];
    sqlite3_bind_int64(st, 1, hash);
    sqlite3_bind_int64(st, 2, id);
    return sqs_run(w, keys_of[k].one, err);
}

/* Start-up: a dictionary that fits in half its cache is loaded whole (the cache then answers
 * every lookup, hit or miss, with no query); a larger one is left to the key table. The
 * fingerprints are those resolve_stack() and resolve_location() compute from the same bytes. */
static void load_dictionaries(sqs_writer *w)
{
    static const char *const sql[SQS_NKEYS] = {
        [SQS_KEYS_STACK] = "SELECT id, seen, locs FROM stack",
        [SQS_KEYS_LOC] = "SELECT id, seen, lines, mapping, address, kind FROM location",
    };
    store_dict *dict[SQS_NKEYS] = {[SQS_KEYS_STACK] = &w->stacks, [SQS_KEYS_LOC] = &w->locations};
    for (int k = 0; k < SQS_NKEYS; k++) {
        store_dict *d = dict[k];
        int64_t rows = 0;
        sqlite3_stmt *st = NULL;
        char count[128];
        /* Counting stops past what would fit: a large table is not read at start-up. */
        snprintf(count, sizeof count, "SELECT count(*) FROM (SELECT 1 FROM %s LIMIT %zu)",
                 k == SQS_KEYS_STACK ? "stack" : "location", d->max / 2 + 1);
        if (sqlite3_prepare_v2(w->db, count, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            rows = sqlite3_column_int64(st, 0);
        else
            rows = INT64_MAX;
        sqlite3_finalize(st);
        st = NULL;
        if (rows < 0 || (uint64_t)rows > d->max / 2 ||
            sqlite3_prepare_v2(w->db, sql[k], -1, &st, NULL) != SQLITE_OK) {
            sqlite3_finalize(st);
            continue;
        }
        uint64_t clears = d->clears;
        int rc = SQLITE_OK, ok = 1;
        uint8_t small[512], *key = small, *big = NULL;
        size_t cap = sizeof small;
        while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            const void *blob = sqlite3_column_blob(st, 2);
            size_t n = (size_t)sqlite3_column_bytes(st, 2);
            if (n + 3 * STORE_VARINT_MAX > cap) {
                cap = 2 * (n + 3 * STORE_VARINT_MAX);
                uint8_t *nb = realloc(big, cap);
                if (!nb) {
                    ok = 0;
                    break;
                }
                key = big = nb;
            }
            if (n)
                memcpy(key, blob, n);
            if (k == SQS_KEYS_LOC)
                for (int c = 3; c <= 5; c++)
                    n += store_varint_put(key + n, (uint64_t)sqlite3_column_int64(st, c));
            uint64_t h1 = store_hash64(key, n, k == SQS_KEYS_STACK ? 61 : 51);
            uint64_t h2 = store_hash64(key, n, k == SQS_KEYS_STACK ? 62 : 52);
            ok =
                store_dict_put(d, h1, h2, sqlite3_column_int64(st, 0), sqlite3_column_int(st, 1)) &&
                d->clears == clears;
        }
        free(big);
        sqlite3_finalize(st);
        if (ok && rc == SQLITE_DONE) {
            /* Every row, keyed or not, is in the cache. */
            w->keys_complete |= 1u << k;
            w->keys_dirty &= ~(1u << k);
        } else {
            store_dict_clear(d);
        }
    }
}

static int insert(sqs_writer *w, int which, int64_t *id, sp_err *err)
{
    int rc = sqs_run(w, which, err);
    if (rc)
        return rc;
    *id = sqlite3_last_insert_rowid(w->db);
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int oom(sp_err *err)
{
    return sp_fail(err, SP_EUNAVAIL, "out of memory in the store's writer");
}

static int64_t hash31(uint64_t h)
{
    return (int64_t)(h >> 33);
}

static const char *pstr(const sp_profile *p, uint32_t idx, size_t *len)
{
    if (!idx || idx >= p->nstrings || !p->strings || !p->strings[idx]) {
        *len = 0;
        return "";
    }
    *len = p->string_lens ? p->string_lens[idx] : strlen(p->strings[idx]);
    return p->strings[idx];
}

/* Refreshes a dictionary row's `seen` when it is more than an hour behind `target`. */
static int touch(sqs_writer *w, int which, store_dict_entry *e, int64_t id, int32_t seen,
                 int32_t target, sp_err *err)
{
    if (seen >= target - 1)
        return 0;
    sqlite3_bind_int64(w->st[which], 1, id);
    sqlite3_bind_int(w->st[which], 2, target);
    int rc = sqs_run(w, which, err);
    if (!rc && e)
        e->seen = target;
    return rc;
}

/* ---- dictionaries ------------------------------------------------------------------------------
 */

static int resolve_tenant(sqs_writer *w, const char *name, int64_t *out, sp_err *err)
{
    size_t n = strlen(name);
    uint64_t h1 = store_hash64(name, n, 11), h2 = store_hash64(name, n, 12);
    store_dict_entry *e = store_dict_find(&w->tenants, h1, h2);
    if (e) {
        *out = e->id;
        return 0;
    }
    sqlite3_bind_text(w->st[W_TENANT_FIND], 1, name, (int)n, SQLITE_STATIC);
    int rc = sqs_find(w, W_TENANT_FIND, out, NULL, err);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        sqlite3_bind_text(w->st[W_TENANT_INS], 1, name, (int)n, SQLITE_STATIC);
        if ((rc = insert(w, W_TENANT_INS, out, err)))
            return rc;
    }
    store_dict_put(&w->tenants, h1, h2, *out, 0);
    return 0;
}

/* Interned text; the empty string is id 0 and has no row. */
static int resolve_string(sqs_writer *w, const char *s, size_t n, int64_t *out, sp_err *err)
{
    *out = 0;
    if (!n)
        return 0;
    uint64_t h1 = store_hash64(s, n, 21), h2 = store_hash64(s, n, 22);
    store_dict_entry *e = store_dict_find(&w->strings, h1, h2);
    if (e) {
        *out = e->id;
        return 0;
    }
    sqlite3_bind_text(w->st[W_STRING_FIND], 1, s, (int)n, SQLITE_STATIC);
    int rc = sqs_find(w, W_STRING_FIND, out, NULL, err);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        sqlite3_bind_text(w->st[W_STRING_INS], 1, s, (int)n, SQLITE_STATIC);
        if ((rc = insert(w, W_STRING_INS, out, err)))
            return rc;
    }
    store_dict_put(&w->strings, h1, h2, *out, 0);
    return 0;
}

/* A string of the profile's table, memoised by its index like the other tables (a frame type
 * is named by every location). */
static int resolve_pstring(sqs_writer *w, const sp_profile *p, uint32_t idx, int64_t *out,
                           sp_err *err)
{
    int memo = idx && idx < p->nstrings;
    if (memo && w->str_ids[idx]) {
        *out = w->str_ids[idx];
        return 0;
    }
    size_t n;
    const char *s = pstr(p, idx, &n);
    int rc = resolve_string(w, s, n, out, err);
    if (!rc && memo)
        w->str_ids[idx] = *out;
    return rc;
}

static int resolve_mapping(sqs_writer *w, const sp_profile *p, uint32_t mid, int64_t *out,
                           sp_err *err)
{
    *out = 0;
    if (!mid || mid >= p->nmappings)
        return 0;
    if (w->map_ids[mid]) {
        *out = w->map_ids[mid];
        return 0;
    }
    const sp_mapping *m = &p->mappings[mid];
    int64_t fid, bid;
    int rc;
    if ((rc = resolve_pstring(w, p, m->filename, &fid, err)) ||
        (rc = resolve_pstring(w, p, m->build_id, &bid, err)))
        return rc;
    uint8_t key[2 * STORE_VARINT_MAX];
    size_t k = store_varint_put(key, (uint64_t)fid);
    k += store_varint_put(key + k, (uint64_t)bid);
    uint64_t h1 = store_hash64(key, k, 31), h2 = store_hash64(key, k, 32);
    store_dict_entry *e = store_dict_find(&w->mappings, h1, h2);
    if (e) {
        *out = w->map_ids[mid] = e->id;
        return 0;
    }
    sqlite3_stmt *st = w->st[W_MAPPING_FIND];
    sqlite3_bind_int64(st, 1, fid);
    sqlite3_bind_int64(st, 2, bid);
    if ((rc = sqs_find(w, W_MAPPING_FIND, out, NULL, err)) < 0)
        return rc;
    if (rc == 0) {
        st = w->st[W_MAPPING_INS];
        sqlite3_bind_int64(st, 1, fid);
        sqlite3_bind_int64(st, 2, bid);
        if ((rc = insert(w, W_MAPPING_INS, out, err)))
            return rc;
    }
    store_dict_put(&w->mappings, h1, h2, *out, 0);
    w->map_ids[mid] = *out;
    return 0;
}

static size_t put_bytes(uint8_t *dst, const char *s, size_t n)
{
    size_t k = store_varint_put(dst, n);
    memcpy(dst + k, s, n);
    return k + n;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int resolve_function(sqs_writer *w, const sp_profile *p, uint32_t fid, int32_t target,
                            int64_t *out, sp_err *err)
{
    *out = 0;
    if (!fid || fid >= p->nfunctions)
        return 0;
    if (w->fn_ids[fid]) {
        *out = w->fn_ids[fid];
        return 0;
    }
    const sp_function *f = &p->functions[fid];
    size_t nl, sl;
    const char *name = pstr(p, f->name, &nl), *sys = pstr(p, f->system_name, &sl);
    if (sl == nl && memcmp(sys, name, nl) == 0)
        sl = 0;
    int64_t file_id;
    int rc = resolve_pstring(w, p, f->filename, &file_id, err);
    if (rc)
        return rc;
    if (grow((void **)&w->buf, &w->buf_cap, nl + sl + 4 * STORE_VARINT_MAX, 1))
        return oom(err);
    size_t k = put_bytes(w->buf, name, nl);
    k += put_bytes(w->buf + k, sys, sl);
    k += store_varint_put(w->buf + k, (uint64_t)file_id);
    k += store_varint_put(w->buf + k, zigzag(f->start_line));
    uint64_t h1 = store_hash64(w->buf, k, 41), h2 = store_hash64(w->buf, k, 42);
    store_dict_entry *e = store_dict_find(&w->functions, h1, h2);
    if (e) {
        if ((rc = touch(w, W_FUNC_SEEN, e, e->id, e->seen, target, err)))
            return rc;
        *out = w->fn_ids[fid] = e->id;
        return 0;
    }
    sqlite3_stmt *st = w->st[W_FUNC_FIND];
    sqlite3_bind_int64(st, 1, hash31(h1));
    if (nl)
        sqlite3_bind_text(st, 2, name, (int)nl, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    if (sl)
        sqlite3_bind_text(st, 3, sys, (int)sl, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, file_id);
    sqlite3_bind_int64(st, 5, f->start_line);
    int32_t seen = 0;
    if ((rc = sqs_find(w, W_FUNC_FIND, out, &seen, err)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = touch(w, W_FUNC_SEEN, NULL, *out, seen, target, err)))
            return rc;
        if (seen < target - 1)
            seen = target;
    } else {
        st = w->st[W_FUNC_INS];
        sqlite3_bind_int64(st, 1, hash31(h1));
        if (nl)
            sqlite3_bind_text(st, 2, name, (int)nl, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 2);
        if (sl)
            sqlite3_bind_text(st, 3, sys, (int)sl, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 3);
        sqlite3_bind_int64(st, 4, file_id);
        sqlite3_bind_int64(st, 5, f->start_line);
        sqlite3_bind_int(st, 6, target);
        if ((rc = insert(w, W_FUNC_INS, out, err)))
            return rc;
        seen = target;
    }
    store_dict_put(&w->functions, h1, h2, *out, seen);
    w->fn_ids[fid] = *out;
    return 0;
}

/* Whether function fid is nothing but the made-up name sp_frame_name() gives location l (the OTLP
 * converter names unsymbolized frames that way). Such a function says nothing the location does
 * not, so it is not stored (for eBPF profiles that is one row per native address saved); the
 * reader names the frame again with store_frame_name(). */
static int is_synthetic(const sp_profile *p, const sp_location *l, uint32_t fid)
{
    const sp_function *f = &p->functions[fid];
    size_t nl, sl, fl, tl, ml = 0;
    const char *name = pstr(p, f->name, &nl), *sys = pstr(p, f->system_name, &sl);
    pstr(p, f->filename, &fl);
    if (!nl || nl > 400 || fl || f->start_line || !memchr(name, 'x', nl))
        return 0;
    if (sl && (sl != nl || memcmp(sys, name, nl) != 0))
        return 0;
    const char *type = pstr(p, l->frame_type, &tl), *file = "";
    if (l->mapping_id && l->mapping_id < p->nmappings)
        file = pstr(p, p->mappings[l->mapping_id].filename, &ml);
    if (tl > 64 || ml > 256)
        return 0;
    /* The name sp_frame_name() makes, "<type> 0x<address> <mapping basename>", compared piece
     * by piece (it reads its strings up to their first NUL; printing it cost more than the
     * rest of resolving a location). */
    tl = strnlen(type, tl);
    ml = strnlen(file, ml);
    if (!tl && !l->address && !ml)
        return 0; /* named "unknown", which has no 'x' */
    const char *base = file;
    size_t bl = ml;
    for (size_t i = ml; i-- > 0;)
        if (file[i] == '/') {
            if (i + 1 < ml) {
                base = file + i + 1;
                bl = ml - i - 1;
            }
            break;
        }
    char hex[2 + 16];
    size_t hl = 0;
    for (uint64_t a = l->address;; a >>= 4) {
        hex[sizeof hex - 1 - hl++] = "0123456789abcdef"[a & 15];
        if (a < 16)
            break;
    }
    hex[sizeof hex - 1 - hl++] = 'x';
    hex[sizeof hex - 1 - hl++] = '0';
    const char *h = hex + sizeof hex - hl;
    size_t at = 0;
    if (tl) {
        if (nl < tl + 1 || memcmp(name, type, tl) != 0 || name[tl] != ' ')
            return 0;
        at = tl + 1;
    }
    if (nl - at < hl || memcmp(name + at, h, hl) != 0)
        return 0;
    at += hl;
    if (bl)
        return nl - at == bl + 1 && name[at] == ' ' && memcmp(name + at + 1, base, bl) == 0;
    return at == nl;
}

/* A dictionary row whose find and insert statements are both bound: its id, inserted when new,
 * and its `seen` hour refreshed when found (sets *seen to what the cache should remember). */
static int find_or_insert(sqs_writer *w, int find_stmt, int ins_stmt, int seen_stmt, int32_t target,
                          int64_t *out, int32_t *seen, int *created, sp_err *err)
{
    *created = 0;
    int rc = find_stmt < 0 ? 0 : sqs_find(w, find_stmt, out, seen, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if ((rc = touch(w, seen_stmt, NULL, *out, *seen, target, err)))
            return rc;
        if (*seen < target - 1)
            *seen = target;
        return 0;
    }
    if ((rc = insert(w, ins_stmt, out, err)))
        return rc;
    *seen = target;
    *created = 1;
    return 0;
}

/* A location whose key is built and whose cache slot is being fetched. */
typedef struct sqs_pending {
    uint32_t lid;
    size_t off, len, lines_len; /* its key in kbuf: the lines blob, then map, address, kind */
    int64_t map_id, kind;
    uint64_t h1, h2;
} sqs_pending;

/* Builds location lid's key at the end of kbuf (functions, mapping and frame type resolved). */
static int location_key(sqs_writer *w, const sp_profile *p, uint32_t lid, int32_t target, size_t at,
                        sqs_pending *out, sp_err *err)
{
    const sp_location *l = &p->locations[lid];
    int rc;
    out->lid = lid;
    if ((rc = resolve_mapping(w, p, l->mapping_id, &out->map_id, err)) ||
        (rc = resolve_pstring(w, p, l->frame_type, &out->kind, err)))
        return rc;
    int64_t fdb[16];
    int useful = 0; /* any line with a real function or a line number */
    for (uint32_t k = 0; k < l->nlines; k++) {
        uint32_t f = l->lines[k].function_id;
        int64_t id = 0;
        if (f && f < p->nfunctions && !is_synthetic(p, l, f) &&
            (rc = resolve_function(w, p, f, target, &id, err)))
            return rc;
        if (k < 16)
            fdb[k] = id;
        useful |= id != 0 || l->lines[k].line != 0;
    }
    if (grow((void **)&w->kbuf, &w->kbuf_cap, at + (size_t)(l->nlines + 2) * 2 * STORE_VARINT_MAX,
             1))
        return oom(err);
    uint8_t *kb = w->kbuf + at;
    size_t k = 0;
    for (uint32_t i = 0; useful && i < l->nlines; i++) {
        uint32_t f = l->lines[i].function_id;
        int64_t id = i < 16                                             ? fdb[i]
                     : f && f < p->nfunctions && !is_synthetic(p, l, f) ? w->fn_ids[f]
                                                                        : 0;
        k += store_varint_put(kb + k, (uint64_t)id);
        k += store_varint_put(kb + k, zigzag(l->lines[i].line));
    }
    out->lines_len = k;
    k += store_varint_put(kb + k, (uint64_t)out->map_id);
    k += store_varint_put(kb + k, l->address);
    k += store_varint_put(kb + k, (uint64_t)out->kind);
    out->off = at;
    out->len = k;
    out->h1 = store_hash64(kb, k, 51);
    out->h2 = store_hash64(kb, k, 52);
    return 0;
}

/* Finds (or inserts) the location a built key names and memoises its id. */
static int location_finish(sqs_writer *w, const sp_profile *p, const sqs_pending *pk,
                           int32_t target, sp_err *err)
{
    const sp_location *l = &p->locations[pk->lid];
    int rc;
    int64_t id;
    store_dict_entry *e = store_dict_find(&w->locations, pk->h1, pk->h2);
    if (e) {
        if ((rc = touch(w, W_LOC_SEEN, e, e->id, e->seen, target, err)))
            return rc;
        w->loc_ids[pk->lid] = e->id;
        return 0;
    }
    for (int which = W_LOC_FIND; which <= W_LOC_INS; which++) {
        sqlite3_stmt *st = w->st[which];
        sqlite3_bind_int64(st, 1, hash31(pk->h1));
        sqlite3_bind_int64(st, 2, pk->map_id);
        sqlite3_bind_int64(st, 3, (int64_t)l->address);
        sqlite3_bind_int64(st, 4, pk->kind);
        if (pk->lines_len)
            sqlite3_bind_blob(st, 5, w->kbuf + pk->off, (int)pk->lines_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 5);
        if (which == W_LOC_INS)
            sqlite3_bind_int(st, 6, target);
    }
    int32_t seen = 0;
    int created;
    if ((rc = keys_ready(w, SQS_KEYS_LOC, err)) ||
        (rc = find_or_insert(w, (w->keys_complete >> SQS_KEYS_LOC) & 1 ? -1 : W_LOC_FIND, W_LOC_INS,
                             W_LOC_SEEN, target, &id, &seen, &created, err)) ||
        (created && (rc = key_new_row(w, SQS_KEYS_LOC, hash31(pk->h1), id, err))))
        return rc;
    /* The statements kept a pointer to kbuf: clear it before kbuf is reused. */
    sqlite3_clear_bindings(w->st[W_LOC_INS]);
    sqlite3_clear_bindings(w->st[W_LOC_FIND]);
    dict_remember(w, SQS_KEYS_LOC, &w->locations, pk->h1, pk->h2, id, seen);
    w->loc_ids[pk->lid] = id;
    return 0;
}

/* Resolves the locations of a stack that are not memoised yet: every key first, prefetching
 * its cache slot, then the lookups (a request brings tens of thousands of locations, each a
 * cache miss in a large table; issued together they overlap). */
static int resolve_locations(sqs_writer *w, const sp_profile *p, const sp_sample *s, int32_t target,
                             sp_err *err)
{
    size_t n = 0, at = 0;
    int rc = 0;
    for (uint32_t i = 0; i < s->nlocations; i++) {
        uint32_t lid = s->location_ids[i];
        if (!lid || lid >= p->nlocations || w->loc_ids[lid])
            continue;
        if (grow((void **)&w->pend, &w->pend_cap, n + 1, sizeof *w->pend))
            return oom(err);
        if ((rc = location_key(w, p, lid, target, at, &w->pend[n], err)))
            break;
        store_dict_prefetch(&w->locations, w->pend[n].h1);
        at += w->pend[n].len;
        w->loc_ids[lid] = -1; /* pending: a stack may name a location twice */
        n++;
    }
    for (size_t i = 0; i < n; i++)
        if (!rc)
            rc = location_finish(w, p, &w->pend[i], target, err);
        else
            w->loc_ids[w->pend[i].lid] = 0;
    return rc;
}

static int resolve_stack(sqs_writer *w, const sp_profile *p, const sp_sample *s, int32_t target,
                         int64_t *out, sp_err *err)
{
    int rc;
    if ((rc = resolve_locations(w, p, s, target, err)))
        return rc;
    if (grow((void **)&w->buf, &w->buf_cap, (size_t)s->nlocations * STORE_VARINT_MAX + 1, 1))
        return oom(err);
    size_t k = 0;
    for (uint32_t i = 0; i < s->nlocations; i++) {
        uint32_t lid = s->location_ids[i];
        if (lid && lid < p->nlocations)
            k += store_varint_put(w->buf + k, (uint64_t)w->loc_ids[lid]);
    }
    uint64_t h1 = store_hash64(w->buf, k, 61), h2 = store_hash64(w->buf, k, 62);
    store_dict_entry *e = store_dict_find(&w->stacks, h1, h2);
    if (e) {
        *out = e->id;
        return touch(w, W_STACK_SEEN, e, e->id, e->seen, target, err);
    }
    for (int which = W_STACK_FIND; which <= W_STACK_INS; which++) {
        sqlite3_stmt *st = w->st[which];
        sqlite3_bind_int64(st, 1, hash31(h1));
        sqlite3_bind_blob(st, 2, k ? (const void *)w->buf : "", (int)k, SQLITE_STATIC);
        if (which == W_STACK_INS)
            sqlite3_bind_int(st, 3, target);
    }
    int32_t seen = 0;
    int created;
    if ((rc = keys_ready(w, SQS_KEYS_STACK, err)) ||
        (rc = find_or_insert(w, (w->keys_complete >> SQS_KEYS_STACK) & 1 ? -1 : W_STACK_FIND,
                             W_STACK_INS, W_STACK_SEEN, target, out, &seen, &created, err)) ||
        (created && (rc = key_new_row(w, SQS_KEYS_STACK, hash31(h1), *out, err))))
        return rc;
    sqlite3_clear_bindings(w->st[W_STACK_INS]);
    sqlite3_clear_bindings(w->st[W_STACK_FIND]);
    dict_remember(w, SQS_KEYS_STACK, &w->stacks, h1, h2, *out, seen);
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    const sqs_kv *x = a, *y = b;
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    if (x->nlen != y->nlen)
        return x->nlen < y->nlen ? -1 : 1;
    return x->ord < y->ord ? -1 : x->ord > y->ord;
}

/* Labels the link travels in, never series labels (Pyroscope splits series without them). */
static int is_link_label(const char *n, size_t len)
{
    return (len == 7 && memcmp(n, "span_id", 7) == 0) ||
           (len == 8 && memcmp(n, "trace_id", 8) == 0) ||
           (len == 10 && memcmp(n, "profile_id", 10) == 0);
}

/* Keeps the series' period that of the last profile written to it (0 = the profile does not
 * say: the stored one stays). `stored` is the row's period when just read, -1 when unknown. */
static int note_period(sqs_writer *w, int64_t series, int64_t stored, int64_t period, sp_err *err)
{
    int created = 0;
    store_agg_entry *e = store_agg_get(&w->periods, series, 0, 0, 0, &created);
    if (!e)
        return oom(err);
    if (created)
        e->aux = stored;
    if (!period || e->aux == period)
        return 0;
    sqlite3_bind_int64(w->st[W_SERIES_PERIOD], 1, series);
    sqlite3_bind_int64(w->st[W_SERIES_PERIOD], 2, period);
    int rc = sqs_run(w, W_SERIES_PERIOD, err);
    if (!rc)
        e->aux = period;
    return rc;
}

/* The series of a sample: the profile's labels plus the sample's string labels (which win). */
static int resolve_series(sqs_writer *w, int64_t tenant, const sp_profile *p, const sp_sample *s,
                          int64_t *out, sp_err *err)
{
    size_t n = 0, need = p->nseries + (s ? s->nlabels : 0) + 1;
    if (grow((void **)&w->kvs, &w->kv_cap, need, sizeof *w->kvs))
        return oom(err);
    int has_name = 0;
    for (uint32_t i = 0; i < p->nseries; i++) {
        sqs_kv *kv = &w->kvs[n];
        kv->name = p->series[i].name;
        kv->value = p->series[i].value;
        kv->nlen = strlen(kv->name);
        kv->vlen = strlen(kv->value);
        kv->ord = (uint32_t)n;
        has_name |= strcmp(kv->name, "__name__") == 0;
        n++;
    }
    if (!has_name && p->name && *p->name) {
        sqs_kv *kv = &w->kvs[n];
        kv->name = "__name__";
        kv->nlen = 8;
        kv->value = p->name;
        kv->vlen = strlen(p->name);
        kv->ord = (uint32_t)n++;
    }
    for (uint32_t i = 0; s && i < s->nlabels; i++) {
        const sp_label *l = &s->labels[i];
        if (!l->str)
            continue; /* numeric labels are not series labels */
        sqs_kv *kv = &w->kvs[n];
        kv->name = pstr(p, l->key, &kv->nlen);
        kv->value = pstr(p, l->str, &kv->vlen);
        if (!kv->nlen || is_link_label(kv->name, kv->nlen) ||
            (kv->nlen == 8 && memcmp(kv->name, "__name__", 8) == 0))
            continue;
        kv->ord = (uint32_t)n++;
    }
    qsort(w->kvs, n, sizeof *w->kvs, kv_cmp);
    size_t tl = strlen(p->type_id), bytes = tl + 1 + STORE_VARINT_MAX;
    for (size_t i = 0; i < n; i++)
        bytes += w->kvs[i].nlen + w->kvs[i].vlen + 2;
    if (grow((void **)&w->buf, &w->buf_cap, bytes, 1))
        return oom(err);
    /* Key: tenant, type, labels; the labels blob is its tail. Of equal names the last wins. */
    size_t k = store_varint_put(w->buf, (uint64_t)tenant);
    memcpy(w->buf + k, p->type_id, tl + 1);
    k += tl + 1;
    size_t blob_at = k;
    for (size_t i = 0; i < n; i++) {
        const sqs_kv *kv = &w->kvs[i];
        if (i + 1 < n && kv->nlen == w->kvs[i + 1].nlen &&
            memcmp(kv->name, w->kvs[i + 1].name, kv->nlen) == 0)
            continue;
        if (!kv->vlen || memchr(kv->name, 0, kv->nlen) || memchr(kv->value, 0, kv->vlen))
            continue; /* an empty value is an absent label (Prometheus) */
        memcpy(w->buf + k, kv->name, kv->nlen);
        k += kv->nlen;
        w->buf[k++] = 0;
        memcpy(w->buf + k, kv->value, kv->vlen);
        k += kv->vlen;
        w->buf[k++] = 0;
    }
    uint64_t h1 = store_hash64(w->buf, k, 71), h2 = store_hash64(w->buf, k, 72);
    store_dict_entry *e = store_dict_find(&w->series, h1, h2);
    if (e) {
        *out = e->id;
        return note_period(w, *out, -1, p->period, err);
    }
    int rc;
    for (int which = W_SERIES_FIND; which <= W_SERIES_INS; which++) {
        sqlite3_stmt *st = w->st[which];
        sqlite3_bind_int64(st, 1, tenant);
        sqlite3_bind_int64(st, 2, hash31(h1));
        sqlite3_bind_text(st, 3, p->type_id, (int)tl, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, w->buf + blob_at, (int)(k - blob_at), SQLITE_STATIC);
    }
    sqlite3_stmt *fs = w->st[W_SERIES_FIND];
    int64_t stored = 0;
    rc = sqlite3_step(fs);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(fs, 0);
        stored = sqlite3_column_int64(fs, 1);
    }
    sqlite3_reset(fs);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqs_fail(err, w->db, rc, "%s", wwhat[W_SERIES_FIND]);
    if (rc == SQLITE_DONE && (rc = insert(w, W_SERIES_INS, out, err)))
        return rc;
    sqlite3_clear_bindings(w->st[W_SERIES_FIND]);
    sqlite3_clear_bindings(w->st[W_SERIES_INS]);
    store_dict_put(&w->series, h1, h2, *out, 0);
    return note_period(w, *out, stored, p->period, err);
}

/* ---- one batch ---------------------------------------------------------------------------------
 */

static int sample_has_series_labels(const sp_profile *p, const sp_sample *s)
{
    for (uint32_t i = 0; i < s->nlabels; i++) {
        if (!s->labels[i].str)
            continue;
        size_t n;
        const char *k = pstr(p, s->labels[i].key, &n);
        if (n && !is_link_label(k, n))
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
        e = store_agg_get(&w->samples, series, bucket, stack, 0, NULL);
        if (!e)
            return oom(err);
        e->sum += v;
    }
    int64_t hour = sqs_floor_div(bucket * SQS_BUCKET_NS, SQS_HOUR_NS);
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
            return oom(err);
        e->sum += v;
    }
    return 0;
}

static int write_profile(sqs_writer *w, int64_t tenant, const sp_profile *p, uint64_t *nobs,
                         sp_err *err)
{
    int rc;
    if (grow((void **)&w->fn_ids, &w->fn_cap, p->nfunctions + 1, sizeof *w->fn_ids) ||
        grow((void **)&w->loc_ids, &w->loc_cap, p->nlocations + 1, sizeof *w->loc_ids) ||
        grow((void **)&w->map_ids, &w->map_cap, p->nmappings + 1, sizeof *w->map_ids) ||
        grow((void **)&w->str_ids, &w->str_cap, p->nstrings + 1, sizeof *w->str_ids))
        return oom(err);
    if (p->locations != w->memo_locs || p->functions != w->memo_funcs ||
        p->mappings != w->memo_maps || p->strings != w->memo_strs ||
        p->nlocations != w->memo_nlocs || p->nfunctions != w->memo_nfuncs ||
        p->nmappings != w->memo_nmaps || p->nstrings != w->memo_nstrs) {
        memset(w->fn_ids, 0, (p->nfunctions + 1) * sizeof *w->fn_ids);
        memset(w->loc_ids, 0, (p->nlocations + 1) * sizeof *w->loc_ids);
        memset(w->map_ids, 0, (p->nmappings + 1) * sizeof *w->map_ids);
        memset(w->str_ids, 0, (p->nstrings + 1) * sizeof *w->str_ids);
        store_agg_reset(&w->stack_memo);
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
    for (uint32_t i = 0; i < p->nsamples; i++)
        for (uint32_t k = 0; k < p->samples[i].nobs; k++)
            if ((int64_t)p->samples[i].timestamps[k] > tmax)
                tmax = (int64_t)p->samples[i].timestamps[k];
    int32_t target = sqs_hour_of(tmax);
    if (target < w->now_hour)
        target = w->now_hour;
    int64_t default_bucket =
        sqs_floor_div(p->time_nanos > 0 ? p->time_nanos : now_ns(), SQS_BUCKET_NS);

    int64_t base_series = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        if (!s->nobs && !s->value)
            continue;
        int64_t series, stack;
        if (sample_has_series_labels(p, s)) {
            if ((rc = resolve_series(w, tenant, p, s, &series, err)))
                return rc;
        } else {
            if (!base_series && (rc = resolve_series(w, tenant, p, NULL, &base_series, err)))
                return rc;
            series = base_series;
        }
        /* The memo is keyed by the location list's address: only valid while the tables it
         * indexes stay the same, which the memo reset above ensures. */
        int created = 0;
        store_agg_entry *m = store_agg_get(&w->stack_memo, (int64_t)(uintptr_t)s->location_ids,
                                           s->nlocations, 0, 0, &created);
        if (!m)
            return oom(err);
        if (created) {
            if ((rc = resolve_stack(w, p, s, target, &stack, err))) {
                store_agg_reset(&w->stack_memo);
                return rc;
            }
            m->aux = stack;
        } else {
            stack = m->aux;
        }
        if (s->nobs) {
            /* Observations without their own values share the sample's value. */
            int64_t share = s->values ? 0 : s->value / (int64_t)s->nobs;
            int64_t rest = s->values ? 0 : s->value - share * (int64_t)s->nobs;
            for (uint32_t k = 0; k < s->nobs; k++) {
                int64_t v = s->values ? s->values[k] : share + (k == 0 ? rest : 0);
                int64_t t = (int64_t)s->timestamps[k];
                int64_t b = t > 0 ? sqs_floor_div(t, SQS_BUCKET_NS) : default_bucket;
                if (v && (rc = add_value(w, series, b, stack, v, s, p->attach_only, err)))
                    return rc;
            }
            *nobs += p->attach_only ? 0 : s->nobs; /* counted when first stored */
        } else {
            if ((rc =
                     add_value(w, series, default_bucket, stack, s->value, s, p->attach_only, err)))
                return rc;
            *nobs += p->attach_only ? 0 : 1;
        }
    }
    return 0;
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
    return store_agg_get(&w->hours, hour, 0, 0, 0, NULL) ? 0 : oom(err);
}

static int write_span(sqs_writer *w, int64_t tenant, const sp_span *sp, sp_err *err)
{
    int64_t key = sqs_span_key(sp->span_id);
    if (!key)
        return 0; /* an all-zero span id is invalid (OTLP): nothing can refer to it */
    int64_t service, name;
    int rc;
    const char *svc = sp->service ? sp->service : "", *nm = sp->name ? sp->name : "";
    if ((rc = resolve_string(w, svc, strlen(svc), &service, err)) ||
        (rc = resolve_string(w, nm, strlen(nm), &name, err)))
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
    rc = sqs_run(w, W_SPAN_UPSERT, err);
    sqlite3_clear_bindings(st);
    return rc ? rc : note_hour(w, hour, err);
}

static int write_batch(sqs_writer *w, const sp_batch *b, uint64_t *nobs, uint64_t *nspans,
                       sp_err *err)
{
    int64_t tenant;
    /* Memos never outlive a batch: another batch's tables may reuse the same addresses. */
    w->memo_locs = w->memo_funcs = w->memo_maps = w->memo_strs = NULL;
    w->memo_nlocs = UINT32_MAX; /* matches no profile */
    int rc = resolve_tenant(w, sqs_tenant_name(b->tenant), &tenant, err);
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

/* Writes an aggregation map as chunks: one row per run of entries sharing their leading keys
 * ((series, bucket) of samples, (hour, span) of span values), the rest of the key and the value
 * coded by store_chunk_encode(). Rows go in key order (B-tree friendly). */
static int flush(sqs_writer *w, store_agg *m, int which, sp_err *err)
{
    if (!m->n)
        return 0;
    if (grow((void **)&w->sorted, &w->sorted_cap, m->n, sizeof *w->sorted))
        return oom(err);
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].used && m->slots[i].sum)
            w->sorted[n++] = m->slots[i];
    qsort(w->sorted, n, sizeof *w->sorted, entry_cmp);
    sqlite3_stmt *st = w->st[which];
    int spans = which == W_SPAN_CHUNK;
    for (size_t i = 0; i < n;) {
        const store_agg_entry *e = &w->sorted[i];
        size_t j = i + 1;
        int64_t total = e->sum;
        while (j < n && w->sorted[j].k[0] == e->k[0] && w->sorted[j].k[1] == e->k[1])
            total += w->sorted[j++].sum;
        const uint8_t *blob;
        size_t len;
        if (store_chunk_encode(&w->coder, e, j - i, 2, spans ? 2 : 1, &blob, &len))
            return oom(err);
        sqlite3_bind_int64(st, 1, e->k[0]);
        sqlite3_bind_int64(st, 2, e->k[1]);
        if (spans) {
            sqlite3_bind_blob(st, 3, blob, (int)len, SQLITE_STATIC);
        } else {
            sqlite3_bind_int64(st, 3, total);
            sqlite3_bind_blob(st, 4, blob, (int)len, SQLITE_STATIC);
        }
        int rc = sqs_run(w, which, err);
        if (rc)
            return rc;
        /* span chunks: record each hour in span_hour (rows are in hour order). */
        if (spans && (i == 0 || e->k[0] != w->sorted[i - 1].k[0]) &&
            (rc = note_hour(w, e->k[0], err)))
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
    store_agg_reset(&w->hours);
    sp_err ignored = {0};
    if (load_watermarks(w, &ignored))
        memset(w->keyed, 0, sizeof w->keyed);
}

/* One transaction for n callers' batches. */
static void commit_group(sqs_store *s, sqs_req **g, size_t n)
{
    sqs_writer *w = &s->w;
    sp_err terr = {0};
    uint64_t nobs = 0, nspans = 0;
    w->now_hour = sqs_hour_of(now_ns());
    store_agg_reset(&w->samples);
    store_agg_reset(&w->spanstk);
    int rc = sqs_run(w, W_BEGIN, &terr);
    if (rc)
        sp_err_prefix(&terr, "starting a transaction: ");
    for (size_t i = 0; i < n && !rc; i++)
        rc = write_batch(w, g[i]->batch, &nobs, &nspans, &terr);
    if (!rc)
        rc = flush(w, &w->samples, W_SAMPLE_CHUNK, &terr);
    if (!rc)
        rc = flush(w, &w->spanstk, W_SPAN_CHUNK, &terr);
    if (!rc)
        rc = keys_ahead(w, SQS_KEYS_STACK, &w->stacks, &terr);
    if (!rc)
        rc = keys_ahead(w, SQS_KEYS_LOC, &w->locations, &terr);
    int64_t t0 = mono_us(), commit_us = 0;
    if (!rc) {
        rc = sqs_run(w, W_COMMIT, &terr);
        if (rc)
            sp_err_prefix(&terr, "commit: ");
        commit_us = mono_us() - t0;
    }
    if (rc)
        sqs_rollback(w);
    store_agg_reset(&w->samples);
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
    pthread_mutex_lock(&s->mu);
    if (rc) {
        s->stats.batches_failed += n;
    } else {
        s->stats.transactions++;
        s->stats.batches_committed += n;
        s->stats.samples_written += nobs;
        s->stats.spans_written += nspans;
        s->stats.last_commit_us = (uint64_t)commit_us;
    }
    s->stats.cache_bytes = store_dict_bytes(&w->stacks) + store_dict_bytes(&w->locations) +
                           store_dict_bytes(&w->functions) + store_dict_bytes(&w->series) +
                           store_dict_bytes(&w->strings) + store_dict_bytes(&w->mappings) +
                           store_dict_bytes(&w->tenants);
    s->stats.cache_clears = w->stacks.clears + w->locations.clears + w->functions.clears +
                            w->series.clears + w->strings.clears + w->mappings.clears +
                            w->tenants.clears;
    pthread_mutex_unlock(&s->mu);
}

/* ---- the writer thread -------------------------------------------------------------------------
 */

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
        while (!s->head && !s->w.ret.req && !s->ret_head && !s->stopping)
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
                commit_group(s, &one, 1);
                pthread_mutex_lock(&s->mu);
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
            pthread_mutex_unlock(&s->mu);
            commit_group(s, group, n);
            pthread_mutex_lock(&s->mu);
            for (size_t i = 0; i < n; i++)
                complete(group[i], group[i]->rc);
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
        if (s->stopping)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    free(group);
    return NULL;
}

/* ---- entry points ------------------------------------------------------------------------------
 */

static int enqueue_and_wait(sqs_store *s, sqs_req *req, sp_err *err)
{
    pthread_cond_init(&req->cv, NULL);
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&req->cv);
        return sp_fail(err, SP_EUNAVAIL, "the store is closing");
    }
    if (req->kind == SQS_REQ_WRITE) {
        if (s->npending >= s->opt.max_pending) {
            size_t n = s->npending;
            pthread_mutex_unlock(&s->mu);
            pthread_cond_destroy(&req->cv);
            return sp_fail(err, SP_EFULL,
                           "the store's write queue is full (%zu batches waiting); retry later", n);
        }
        if (s->tail)
            s->tail->next = req;
        else
            s->head = req;
        s->tail = req;
        s->npending++;
    } else {
        if (s->ret_tail)
            s->ret_tail->next = req;
        else
            s->ret_head = req;
        s->ret_tail = req;
    }
    pthread_cond_signal(&s->wake);
    while (!req->done)
        pthread_cond_wait(&req->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&req->cv);
    return req->rc;
}

int sqs_write(store *st, const sp_batch *b, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    if (!b->nprofiles && !b->nspans)
        return 0;
    int rc = validate_batch(b, err);
    if (rc)
        return rc;
    sqs_req req = {.kind = SQS_REQ_WRITE, .batch = b, .err = err};
    return enqueue_and_wait(s, &req, err);
}

int sqs_retention_run(store *st, int64_t now, sp_err *err)
{
    sqs_store *s = (sqs_store *)st;
    sqs_req req = {.kind = SQS_REQ_RETENTION, .now_ns = now, .err = err};
    return enqueue_and_wait(s, &req, err);
}
