/* The writer's dictionaries: strings, mappings, functions, locations, stacks, series and tenants
 * found or inserted, on the writer thread only (sqlite_write.c calls in, inside its transaction).
 *
 * Each row is found through a bounded in-memory cache keyed by a 128-bit content fingerprint,
 * else through its hash index or key table (comparing full content), else inserted. Stacks,
 * locations and functions are found through the hash index below while it holds every row, else
 * through key tables the writer fills in bulk (invariant 2 of sqlite_write.c: rows above the key
 * watermark are not keyed yet and are found through the cache, or the index).
 * Errors: SP_EUNAVAIL (SQLite failed: the caller rolls back the whole transaction), SP_ENOMEM.
 *
 * A cache that forgot rows (it clears itself when full) cannot tell a new row from a forgotten
 * one. The hash indexes answer that for stacks, locations and functions, in memory:
 *   I1. While bit k of index_complete is set, every row of table k is in index[k] as (its hash
 *       column, its id). It may hold more (rows of a transaction rolled back): a superset is
 *       safe, since an id it gives is only a candidate, checked against the row's content.
 *   I2. So a cache miss reads only the rows whose hash matches (by id, W_*_AT), and a hash the
 *       index does not have is a new row, inserted without reading anything. Key tables are
 *       then neither read nor written: rows above the watermark stay unkeyed (invariant 2 of
 *       sqlite_write.c holds as is), and new rows cost no random B-tree page. Keying a slice of
 *       16 k rows rewrote nearly every page of a key table: a tenth of the server's CPU and more
 *       than half the bytes written at full ingest with new frames (bench/RESULTS.md).
 *   I3. Built at start-up from the table's hash column; every row inserted is added, and the
 *       rows retention deletes (its DELETE returns them) are removed once their transaction
 *       commits: a rollback brings them back, so they stay (a rolled-back insert stays too).
 *   I4. An index holds at most store_options.index_rows rows (4 Mi by default: up to 64 MiB
 *       for a table that size; with it the rows' caches only save reads, and their budget went
 *       from 64 to 32 MiB at no cost in CPU, bench/RESULTS.md). From half that on, keying
 *       ahead resumes (a slice at a time, as without the index) so that little is left unkeyed
 *       when it fills. Past its limit, out of memory, or at an id of 2^32 - 1 or more, it gives
 *       up: the bit is cleared until the next start and, since the cache may have forgotten
 *       unkeyed rows, every row above the watermark is keyed before the next lookup; lookups
 *       then go through the key table as before.
 */
#include "sqlite_store.h"
#include "../common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per key table: its watermark's name in meta, the statements that key one row and every row
 * above the watermark, and the statement reading the highest id. */
static const struct {
    const char *meta;
    int one, all, max;
} keys_of[SQS_NKEYS] = {
    [SQS_KEYS_STACK] = {"stack_keyed", W_STACK_KEY, W_STACK_KEYS, W_RET_MAX_STACK},
    [SQS_KEYS_LOC] = {"location_keyed", W_LOC_KEY, W_LOC_KEYS, W_RET_MAX_LOC},
    [SQS_KEYS_FN] = {"function_keyed", W_FUNC_KEY, W_FUNC_KEYS, W_RET_MAX_FUNC},
};

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
    return sqs_fail(err, w->db, rc, "%s", sqs_wwhat[which]);
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
    return sqs_fail(err, w->db, rc, "%s", sqs_wwhat[which]);
}

/* The key tables' watermarks as committed (after a rollback: the flushes it undid are undone in
 * memory too). Without them every row is keyed again (INSERT OR IGNORE): slow, never wrong. */
int sqs_load_watermarks(sqs_writer *w, sp_err *err)
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
    int rc = sqs_newrows_flush(w, k, err); /* A2: they are read here */
    if (rc)
        return rc;
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

/* Keying ahead works in slices of KEYS_SLICE rows, and only once that many are waiting.
 *
 * The key tables are B-trees ordered by hash, so any slice of new rows lands all over them: a
 * slice of 2,000 rows into a 1,500-page location_key dirtied nearly every page, and each page
 * dirtied goes to the WAL at commit and to the file at the next checkpoint. Keying whatever was
 * waiting in each transaction made location_key two thirds of all the pages the writer wrote
 * (bench/RESULTS.md, "The key tables' pages"): the pages written per row keyed are about the
 * table's pages over the slice's rows, so a slice ten times the table's pages costs a tenth of a
 * page per row. The slice is bounded by the time it holds one transaction
 * (about 1 us per row). */
#define KEYS_SLICE 16384

/* Once a cache is half full, a transaction keys a slice of the rows only it knows when a whole
 * slice is waiting, so the keying left when it is full is small: keying them all at once held
 * one transaction for a quarter of a second (262 k locations). */
int sqs_keys_ahead(sqs_writer *w, int k, const store_dict *d, sp_err *err)
{
    if (d->n < d->max / 2 || (sqs_index_complete(w, k) && w->index[k].n < w->index[k].max / 2))
        return 0; /* I2, I4 */
    int64_t top = 0;
    int rc = sqs_find(w, keys_of[k].max, &top, NULL, err);
    if (rc < 0)
        return rc;
    if (top - w->keyed[k] < KEYS_SLICE)
        return 0;
    int64_t to = w->keyed[k] + KEYS_SLICE;
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

/* ---- hash indexes (I1-I4) ----------------------------------------------------------------------
 */

static const char *const index_sql[SQS_NKEYS] = {
    [SQS_KEYS_STACK] = "SELECT hash, id FROM stack",
    [SQS_KEYS_LOC] = "SELECT hash, id FROM location",
    [SQS_KEYS_FN] = "SELECT hash, id FROM function",
};

/* I4: from now on table k is found through its key table; the rows the cache may have forgotten
 * are keyed before the next lookup. */
static void index_give_up(sqs_writer *w, int k)
{
    store_hindex_free(&w->index[k]);
    w->index_complete &= ~(1u << k);
    w->keys_dirty |= 1u << k;
}

static int index_add(store_hindex *x, int64_t hash, int64_t id)
{
    if (hash < 0 || hash > UINT32_MAX || id <= 0 || id >= UINT32_MAX)
        return -1;
    return store_hindex_add(x, (uint32_t)hash, (uint32_t)id);
}

void sqs_index_build(sqs_writer *w)
{
    for (int k = 0; k < SQS_NKEYS; k++) {
        store_hindex *x = &w->index[k];
        store_hindex_free(x);
        w->index_complete &= ~(1u << k);
        sqlite3_stmt *st = NULL;
        if (!x->max || sqlite3_prepare_v2(w->db, index_sql[k], -1, &st, NULL) != SQLITE_OK) {
            sqlite3_finalize(st);
            continue;
        }
        int rc, ok = 1;
        while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ok = index_add(x, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)) == 0;
        sqlite3_finalize(st);
        if (ok && rc == SQLITE_DONE)
            w->index_complete |= 1u << k;
        else
            store_hindex_free(x);
    }
}

/* I3: a row just inserted. */
static void index_note_insert(sqs_writer *w, int k, int64_t hash, int64_t id)
{
    if (((w->index_complete >> k) & 1) && index_add(&w->index[k], hash, id))
        index_give_up(w, k);
}

void sqs_index_note_delete(sqs_writer *w, int k, int64_t hash, int64_t id)
{
    if (!((w->index_complete >> k) & 1))
        return;
    if (sqs_grow((void **)&w->index_gone, &w->index_gone_cap, w->nindex_gone + 1,
                 sizeof *w->index_gone)) {
        index_give_up(w, k); /* I4: out of memory */
        return;
    }
    int64_t *g = w->index_gone[w->nindex_gone++];
    g[0] = k;
    g[1] = hash;
    g[2] = id;
}

void sqs_index_commit_deletes(sqs_writer *w)
{
    for (size_t i = 0; i < w->nindex_gone; i++) {
        const int64_t *g = w->index_gone[i];
        int k = (int)g[0];
        if (((w->index_complete >> k) & 1) && g[1] >= 0 && g[1] <= UINT32_MAX && g[2] > 0 &&
            g[2] < UINT32_MAX)
            store_hindex_remove(&w->index[k], (uint32_t)g[1], (uint32_t)g[2]);
    }
    w->nindex_gone = 0;
}

int sqs_index_complete(const sqs_writer *w, int k)
{
    return (w->index_complete >> k) & 1;
}

/* Start-up: a stack or location table that fits in half its cache is loaded whole (the cache
 * then answers every lookup, hit or miss, with no query); a larger one is left to the key table.
 * The fingerprints are those sqs_resolve_stack() and resolve_location() compute from the same
 * bytes. Functions are not loaded: a function is looked up once per request and native frame
 * names none; their hash index answers the misses. */
void sqs_load_dictionaries(sqs_writer *w)
{
    static const char *const sql[SQS_KEYS_LOC + 1] = {
        [SQS_KEYS_STACK] = "SELECT id, seen, locs FROM stack",
        [SQS_KEYS_LOC] = "SELECT id, seen, lines, mapping, address, kind FROM location",
    };
    store_dict *dict[SQS_KEYS_LOC + 1] = {
        [SQS_KEYS_STACK] = &w->stacks, [SQS_KEYS_LOC] = &w->locations};
    for (int k = 0; k <= SQS_KEYS_LOC; k++) {
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
            uint64_t h1, h2;
            store_hash64x2(key, n, k == SQS_KEYS_STACK ? 61 : 51, k == SQS_KEYS_STACK ? 62 : 52,
                           &h1, &h2);
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

int sqs_grow(void **p, size_t *cap, size_t need, size_t elem)
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

int sqs_oom(sp_err *err)
{
    return sp_fail(err, SP_EUNAVAIL, "out of memory in the store's writer");
}

static int64_t hash31(uint64_t h)
{
    return (int64_t)(h >> 33);
}

/* Starts loading the index slot of a row whose cache slot is being fetched: a row the cache
 * lacks is looked up in the index next, and a new row added to it (both a cache miss in a table
 * of every row, issue 19). */
SP_PREFETCH_HELPER void index_prefetch(const sqs_writer *w, int k, uint64_t h1)
{
    if (sqs_index_complete(w, k))
        store_hindex_prefetch(&w->index[k], (uint32_t)hash31(h1));
}

const char *sqs_pstr(const sp_profile *p, uint32_t idx, size_t *len)
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
    int k = which == W_STACK_SEEN  ? SQS_KEYS_STACK
            : which == W_LOC_SEEN  ? SQS_KEYS_LOC
            : which == W_FUNC_SEEN ? SQS_KEYS_FN
                                   : -1;
    if (k >= 0 && sqs_newrow_waits(w, k, id)) {
        int rc = sqs_newrows_flush(w, k, err); /* A2: an UPDATE would miss it */
        if (rc)
            return rc;
    }
    sqlite3_bind_int64(w->st[which], 1, id);
    sqlite3_bind_int(w->st[which], 2, target);
    int rc = sqs_run(w, which, err);
    if (!rc && e)
        e->seen = target;
    return rc;
}

/* ---- dictionaries ------------------------------------------------------------------------------
 */

int sqs_resolve_tenant(sqs_writer *w, const char *name, int64_t *out, sp_err *err)
{
    size_t n = strlen(name);
    uint64_t h1, h2;
    store_hash64x2(name, n, 11, 12, &h1, &h2);
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
int sqs_resolve_string(sqs_writer *w, const char *s, size_t n, int64_t *out, sp_err *err)
{
    *out = 0;
    if (!n)
        return 0;
    uint64_t h1, h2;
    store_hash64x2(s, n, 21, 22, &h1, &h2);
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
    const char *s = sqs_pstr(p, idx, &n);
    int rc = sqs_resolve_string(w, s, n, out, err);
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
    uint64_t h1, h2;
    store_hash64x2(key, k, 31, 32, &h1, &h2);
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

/* The statements of the dictionaries with a key table; `at` reads a candidate by id, its id the
 * parameter at_id. */
static const struct {
    int find, at, at_id, seen;
} rows_of[SQS_NKEYS] = {
    [SQS_KEYS_STACK] = {W_STACK_FIND, W_STACK_AT, 4, W_STACK_SEEN},
    [SQS_KEYS_LOC] = {W_LOC_FIND, W_LOC_AT, 7, W_LOC_SEEN},
    [SQS_KEYS_FN] = {W_FUNC_FIND, W_FUNC_AT, 7, W_FUNC_SEEN},
};

/* Binds row r (sqs_row, sqlite_store.h) to lookup `which`. Only the statement about to run is
 * bound: a new row reads nothing, and binding all three each time was a sixth of what a new
 * row cost the writer. */
static void bind_row(sqs_writer *w, int which, const sqs_row *r)
{
    sqlite3_stmt *st = w->st[which];
    int next = 2;
    sqlite3_bind_int64(st, 1, r->hash);
    if (r->k == SQS_KEYS_LOC)
        for (int i = 0; i < 3; i++)
            sqlite3_bind_int64(st, next++, r->ints[i]);
    for (int i = 0; i < (r->k == SQS_KEYS_FN ? 2 : 1); i++, next++) {
        if (!r->bytes[i])
            sqlite3_bind_null(st, next);
        else if (r->k == SQS_KEYS_FN)
            sqlite3_bind_text(st, next, r->bytes[i], r->nbytes[i], SQLITE_STATIC);
        else
            sqlite3_bind_blob(st, next, r->bytes[i], r->nbytes[i], SQLITE_STATIC);
    }
    if (r->k == SQS_KEYS_FN)
        for (int i = 0; i < 2; i++)
            sqlite3_bind_int64(st, next++, r->ints[i]);
}

/* Steps statement which bound with r, then clears its bindings (they point into the caller's
 * buffers). */
static int find_bound(sqs_writer *w, int which, int64_t *out, int32_t *seen, sp_err *err)
{
    int rc = sqs_find(w, which, out, seen, err);
    sqlite3_clear_bindings(w->st[which]);
    return rc;
}

/* Finds row r: through the hash index (I2: each id it gives for the hash, read by id and
 * compared) or else the key table (not when the cache holds the whole table). 1 with *out and
 * *seen, 0 when there is none, <0 error. */
static int find_row(sqs_writer *w, const sqs_row *r, int64_t *out, int32_t *seen, sp_err *err)
{
    int k = r->k;
    if ((w->keys_complete >> k) & 1)
        return 0; /* the cache holds the whole table */
    if (sqs_index_complete(w, k)) {
        store_hindex_it it = {0};
        uint32_t id;
        int tried = 0, rc = 0;
        while (rc == 0 && (id = store_hindex_next(&w->index[k], (uint32_t)r->hash, &it))) {
            /* A2 for this id only: a row older than the waiting ones is read without inserting
             * them, so a request's new rows still go in statements of 32 (a location the cache
             * forgot, met between new ones, used to flush them a few at a time). */
            if (sqs_newrow_waits(w, k, id) && (rc = sqs_newrows_flush(w, k, err)))
                return rc;
            if (!tried++)
                bind_row(w, rows_of[k].at, r);
            sqlite3_bind_int64(w->st[rows_of[k].at], rows_of[k].at_id, id);
            rc = sqs_find(w, rows_of[k].at, out, seen, err);
        }
        if (tried)
            sqlite3_clear_bindings(w->st[rows_of[k].at]);
        w->index_skips += !tried;
        return rc;
    }
    int rc = sqs_newrows_flush(w, k, err); /* A2 */
    if (!rc)
        rc = keys_ready(w, k, err);
    if (rc)
        return rc;
    bind_row(w, rows_of[k].find, r);
    return find_bound(w, rows_of[k].find, out, seen, err);
}

/* Row r of dictionary r->k, which its cache d missed: found (its `seen` hour refreshed) or
 * inserted, keyed at once when it took a reused id, remembered in d. Sets *seen to what the
 * cache remembers. */
static int keyed_row(sqs_writer *w, store_dict *d, const sqs_row *r, uint64_t h1, uint64_t h2,
                     int32_t target, int64_t *out, int32_t *seen, sp_err *err)
{
    int k = r->k;
    *seen = 0;
    int rc = find_row(w, r, out, seen, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if ((rc = touch(w, rows_of[k].seen, NULL, *out, *seen, target, err)))
            return rc;
        if (*seen < target - 1)
            *seen = target;
    } else {
        rc = sqs_newrow_add(w, r, target, out, err); /* inserted with others (A1-A3) */
        if (rc || (rc = key_new_row(w, k, r->hash, *out, err)))
            return rc;
        *seen = target;
        index_note_insert(w, k, r->hash, *out);
    }
    dict_remember(w, k, d, h1, h2, *out, *seen);
    return 0;
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
    const char *name = sqs_pstr(p, f->name, &nl), *sys = sqs_pstr(p, f->system_name, &sl);
    if (sl == nl && memcmp(sys, name, nl) == 0)
        sl = 0;
    int64_t file_id;
    int rc = resolve_pstring(w, p, f->filename, &file_id, err);
    if (rc)
        return rc;
    if (sqs_grow((void **)&w->buf, &w->buf_cap, nl + sl + 4 * STORE_VARINT_MAX, 1))
        return sqs_oom(err);
    size_t k = put_bytes(w->buf, name, nl);
    k += put_bytes(w->buf + k, sys, sl);
    k += store_varint_put(w->buf + k, (uint64_t)file_id);
    k += store_varint_put(w->buf + k, zigzag(f->start_line));
    uint64_t h1, h2;
    store_hash64x2(w->buf, k, 41, 42, &h1, &h2);
    index_prefetch(w, SQS_KEYS_FN, h1);
    store_dict_entry *e = store_dict_find(&w->functions, h1, h2);
    if (e) {
        if ((rc = touch(w, W_FUNC_SEEN, e, e->id, e->seen, target, err)))
            return rc;
        *out = w->fn_ids[fid] = e->id;
        return 0;
    }
    sqs_row r = {.k = SQS_KEYS_FN,
                 .hash = hash31(h1),
                 .bytes = {nl ? name : NULL, sl ? sys : NULL},
                 .nbytes = {(int)nl, (int)sl},
                 .ints = {file_id, f->start_line}};
    int32_t seen;
    if ((rc = keyed_row(w, &w->functions, &r, h1, h2, target, out, &seen, err)))
        return rc;
    w->fn_ids[fid] = *out;
    return 0;
}

/* Whether the made-up name the converter gave location l (sp_function.made_up, or the line of a
 * bare location) is all its key needs: the checks of is_synthetic() below pass for such a name
 * without reading it (a function and its name are two cache misses per native frame of an eBPF
 * request, which are new to the writer once per request): it has no file or line, and "<type>
 * 0x<address> <basename>" is under 400 bytes with these lengths and has an 'x', unless it is
 * "unknown". */
static int made_up_says_nothing(const sp_profile *p, const sp_location *l)
{
    size_t tl, ml = 0;
    const char *type = sqs_pstr(p, l->frame_type, &tl), *file = "";
    if (l->mapping_id && l->mapping_id < p->nmappings)
        file = sqs_pstr(p, p->mappings[l->mapping_id].filename, &ml);
    return tl <= 64 && ml <= 256 && (strnlen(type, tl) || l->address || strnlen(file, ml));
}

/* Whether function fid is nothing but the made-up name sp_frame_name() gives location l (the OTLP
 * converter names unsymbolized frames that way). Such a function says nothing the location does
 * not, so it is not stored (for eBPF profiles that is one row per native address saved); the
 * reader names the frame again with store_frame_name(). */
static int is_synthetic(const sp_profile *p, const sp_location *l, uint32_t fid)
{
    const sp_function *f = &p->functions[fid];
    if (f->made_up) /* no name: left to readers, as the store's reader does (store_frame_name) */
        return !f->name || made_up_says_nothing(p, l);
    size_t nl, sl, fl;
    const char *name = sqs_pstr(p, f->name, &nl), *sys = sqs_pstr(p, f->system_name, &sl);
    sqs_pstr(p, f->filename, &fl);
    if (!nl || nl > 400 || fl || f->start_line || !memchr(name, 'x', nl))
        return 0;
    if (sl && (sl != nl || memcmp(sys, name, nl) != 0))
        return 0;
    size_t tl, ml = 0;
    const char *type = sqs_pstr(p, l->frame_type, &tl), *file = "";
    if (l->mapping_id && l->mapping_id < p->nmappings)
        file = sqs_pstr(p, p->mappings[l->mapping_id].filename, &ml);
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
    int bare = l->bare && made_up_says_nothing(p, l);
    for (uint32_t k = 0; !bare && k < l->nlines; k++) {
        uint32_t f = l->lines[k].function_id;
        int64_t id = 0;
        if (f && f < p->nfunctions && !is_synthetic(p, l, f) &&
            (rc = resolve_function(w, p, f, target, &id, err)))
            return rc;
        if (k < 16)
            fdb[k] = id;
        useful |= id != 0 || l->lines[k].line != 0;
    }
    if (sqs_grow((void **)&w->kbuf, &w->kbuf_cap,
                 at + (size_t)(l->nlines + 2) * 2 * STORE_VARINT_MAX, 1))
        return sqs_oom(err);
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
    store_hash64x2(kb, k, 51, 52, &out->h1, &out->h2);
    return 0;
}

/* Remembers location lid's print (when the request came with prints) as naming row id. */
static void remember_print(sqs_writer *w, const sp_profile *p, uint32_t lid, int64_t id,
                           int32_t seen)
{
    if (p->location_prints)
        (void)store_dict_put(&w->loc_prints, p->location_prints[lid].a, p->location_prints[lid].b,
                             id, seen); /* may forget: harmless */
}

/* A location found by its print: its id memoised. 1 when found. Only while its row needs no
 * refresh: a refresh goes through the content (location_key), which refreshes the location's
 * functions too, and retention's margins rely on a function being refreshed whenever its
 * location is (a location refreshed here alone could outlive its functions). */
static int found_by_print(sqs_writer *w, const sp_profile *p, uint32_t lid, int32_t target)
{
    const sp_print *pr = &p->location_prints[lid];
    store_dict_entry *e = store_dict_find(&w->loc_prints, pr->a, pr->b);
    if (!e || e->seen < target - 1)
        return 0;
    w->loc_ids[lid] = e->id;
    return 1;
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
        remember_print(w, p, pk->lid, e->id, e->seen);
        w->loc_ids[pk->lid] = e->id;
        return 0;
    }
    sqs_row r = {.k = SQS_KEYS_LOC,
                 .hash = hash31(pk->h1),
                 .bytes = {pk->lines_len ? w->kbuf + pk->off : NULL},
                 .nbytes = {(int)pk->lines_len},
                 .ints = {pk->map_id, (int64_t)l->address, pk->kind}};
    int32_t seen;
    if ((rc = keyed_row(w, &w->locations, &r, pk->h1, pk->h2, target, &id, &seen, err)))
        return rc;
    remember_print(w, p, pk->lid, id, seen);
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
    if (p->location_prints) /* the prints' slots first: their misses overlap */
        for (uint32_t i = 0; i < s->nlocations; i++) {
            uint32_t lid = s->location_ids[i];
            if (lid && lid < p->nlocations && !w->loc_ids[lid])
                store_dict_prefetch(&w->loc_prints, p->location_prints[lid].a);
        }
    for (uint32_t i = 0; i < s->nlocations; i++) {
        uint32_t lid = s->location_ids[i];
        if (!lid || lid >= p->nlocations || w->loc_ids[lid])
            continue;
        if (p->location_prints && found_by_print(w, p, lid, target))
            continue;
        if (sqs_grow((void **)&w->pend, &w->pend_cap, n + 1, sizeof *w->pend))
            return sqs_oom(err);
        if ((rc = location_key(w, p, lid, target, at, &w->pend[n], err)))
            break;
        store_dict_prefetch(&w->locations, w->pend[n].h1);
        index_prefetch(w, SQS_KEYS_LOC, w->pend[n].h1);
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

/* A stack by its content: its locations resolved, then the list of their ids. */
static int resolve_stack_content(sqs_writer *w, const sp_profile *p, const sp_sample *s,
                                 int32_t target, int64_t *out, sp_err *err)
{
    int rc;
    if ((rc = resolve_locations(w, p, s, target, err)))
        return rc;
    if (sqs_grow((void **)&w->buf, &w->buf_cap, (size_t)s->nlocations * STORE_VARINT_MAX + 1, 1))
        return sqs_oom(err);
    size_t k = 0;
    for (uint32_t i = 0; i < s->nlocations; i++) {
        uint32_t lid = s->location_ids[i];
        if (lid && lid < p->nlocations)
            k += store_varint_put(w->buf + k, (uint64_t)w->loc_ids[lid]);
    }
    uint64_t h1, h2;
    store_hash64x2(w->buf, k, 61, 62, &h1, &h2);
    index_prefetch(w, SQS_KEYS_STACK, h1); /* its miss overlaps the cache's */
    store_dict_entry *e = store_dict_find(&w->stacks, h1, h2);
    if (e) {
        *out = e->id;
        return touch(w, W_STACK_SEEN, e, e->id, e->seen, target, err);
    }
    sqs_row r = {.k = SQS_KEYS_STACK,
                 .hash = hash31(h1),
                 .bytes = {k ? (const void *)w->buf : ""},
                 .nbytes = {(int)k}};
    int32_t seen;
    return keyed_row(w, &w->stacks, &r, h1, h2, target, out, &seen, err);
}

/* Whether p's samples find their stack ids in w->stack_idx (by sp_sample.stack): p comes with
 * stack prints, and the memo is p's entries' (kept while the memos are, S5) or made empty now.
 * 0 when p has none or there is no memory: the memo by list address then serves. */
int sqs_stack_idx_ready(sqs_writer *w, const sp_profile *p)
{
    if (!p->stack_prints || !p->nstack_prints)
        return 0;
    if (w->stack_idx_of == p->stack_prints && w->stack_idx_cap >= p->nstack_prints)
        return 1;
    if (sqs_grow((void **)&w->stack_idx, &w->stack_idx_cap, p->nstack_prints,
                 sizeof *w->stack_idx)) {
        w->stack_idx_of = NULL;
        return 0;
    }
    memset(w->stack_idx, 0, w->stack_idx_cap * sizeof *w->stack_idx);
    w->stack_idx_of = p->stack_prints;
    return 1;
}

/* The sample's stack print, when its producer made one (sp_profile.stack_prints). */
static const sp_print *stack_print_of(const sp_profile *p, const sp_sample *s)
{
    return p->stack_prints && s->stack && s->stack < p->nstack_prints ? &p->stack_prints[s->stack]
                                                                      : NULL;
}

void sqs_stack_prefetch(const sqs_writer *w, const sp_profile *p, const sp_sample *s, int by_index)
{
    const sp_print *pr = stack_print_of(p, s);
    if (!by_index)
        store_sum3_prefetch(&w->stack_memo,
                            s->location_ids ? (int64_t)(uintptr_t)s->location_ids : 1,
                            s->nlocations, 0);
    else if (pr && !w->stack_idx[s->stack])
        store_dict_prefetch(&w->stack_prints, pr->a);
}

/* A stack found by its print skips resolving its locations (a request's known stacks hold tens
 * of thousands of them). The entry's `seen` is the target its content was last resolved at (the
 * lowest of the batch's so far, w->memo_target, when its locations came from the memos), which
 * refreshed the stack, its locations and their functions to at least one hour below it:
 * for any target up to that one, resolving the content again would change nothing (touch()
 * skips rows within an hour), so the id is all there is to do. A later hour resolves the
 * content once, which refreshes them all in the order retention's margins rely on. */
int sqs_resolve_stack(sqs_writer *w, const sp_profile *p, const sp_sample *s, int32_t target,
                      int64_t *out, sp_err *err)
{
    const sp_print *pr = stack_print_of(p, s);
    if (pr) {
        store_dict_entry *e = store_dict_find(&w->stack_prints, pr->a, pr->b);
        if (e && target <= e->seen) {
            *out = e->id;
            return 0;
        }
    }
    int rc = resolve_stack_content(w, p, s, target, out, err);
    /* The locations may come from the memos, filled for an earlier profile of the batch with a
     * lower target: the entry says the lower one. */
    int32_t resolved = w->memo_target < target ? w->memo_target : target;
    if (!rc && pr)
        (void)store_dict_put(&w->stack_prints, pr->a, pr->b, *out, resolved); /* may forget */
    return rc;
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
int sqs_is_link_label(const char *n, size_t len)
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
        return sqs_oom(err);
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
int sqs_resolve_series(sqs_writer *w, int64_t tenant, const sp_profile *p, const sp_sample *s,
                       int64_t *out, sp_err *err)
{
    size_t n = 0, need = p->nseries + (s ? s->nlabels : 0) + 1;
    if (sqs_grow((void **)&w->kvs, &w->kv_cap, need, sizeof *w->kvs))
        return sqs_oom(err);
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
        kv->name = sqs_pstr(p, l->key, &kv->nlen);
        kv->value = sqs_pstr(p, l->str, &kv->vlen);
        if (!kv->nlen || sqs_is_link_label(kv->name, kv->nlen) ||
            (kv->nlen == 8 && memcmp(kv->name, "__name__", 8) == 0))
            continue;
        kv->ord = (uint32_t)n++;
    }
    qsort(w->kvs, n, sizeof *w->kvs, kv_cmp);
    size_t tl = strlen(p->type_id), bytes = tl + 1 + STORE_VARINT_MAX;
    for (size_t i = 0; i < n; i++)
        bytes += w->kvs[i].nlen + w->kvs[i].vlen + 2;
    if (sqs_grow((void **)&w->buf, &w->buf_cap, bytes, 1))
        return sqs_oom(err);
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
    uint64_t h1, h2;
    store_hash64x2(w->buf, k, 71, 72, &h1, &h2);
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
        return sqs_fail(err, w->db, rc, "%s", sqs_wwhat[W_SERIES_FIND]);
    if (rc == SQLITE_DONE && (rc = insert(w, W_SERIES_INS, out, err)))
        return rc;
    sqlite3_clear_bindings(w->st[W_SERIES_FIND]);
    sqlite3_clear_bindings(w->st[W_SERIES_INS]);
    store_dict_put(&w->series, h1, h2, *out, 0);
    return note_period(w, *out, stored, p->period, err);
}
