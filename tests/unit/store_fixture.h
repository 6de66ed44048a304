/* Fixtures of the SQLite store's unit tests (test_store_*.c): a store on a temp dir, a profile
 * with a fixed dictionary, samples, batches, and readers of what was stored (stack answers, SQL
 * on the database file, value chunks). Include after cmocka.h. */
#ifndef SPANPROF_TEST_STORE_FIXTURE_H
#define SPANPROF_TEST_STORE_FIXTURE_H

#include "storage-adapter/chunk.h"
#include "storage-adapter/maps.h"
#include "storage-adapter/store.h"

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SEC  1000000000LL
#define HOUR (3600 * SEC)
#define CPU  "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define WALL "wall:wall:nanoseconds:wall:nanoseconds"

/* ---- fixtures ------------------------------------------------------------------------------ */

typedef struct fx {
    char dir[64];
    store *s;
    sp_arena *a; /* answers */
    int64_t t0;  /* "now", on a bucket boundary */
} fx;

static inline int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void rm_rf(const char *dir)
{
    chmod(dir, 0755);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

static inline store_options opts(const char *dir)
{
    store_options o = {0};
    o.data_dir = dir;
    o.retention_interval_ns = -1; /* tests run retention by hand */
    o.busy_timeout_ms = 200;
    return o;
}

static inline void open_store(fx *f)
{
    store_options o = opts(f->dir);
    sp_err err = {0};
    int rc = store_open_sqlite(&f->s, &o, &err);
    if (rc)
        fail_msg("open: %s", err.msg);
}

static inline int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_store_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->t0 = (wall_ns() / (10 * SEC)) * (10 * SEC) - 3600 * SEC;
    f->a = sp_arena_new(0);
    open_store(f);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fx *f = *state;
    store_close(f->s);
    sp_arena_free(f->a);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* A profile with a fixed dictionary: functions main, foo, bar, baz, qux (locations 1..5, one
 * line each, in libc.so.6, frame type native), location 6 without symbol (address 0xdead),
 * location 7 with two lines (inlined: inl inside foo). Samples are added with add_sample(). */
enum { L_MAIN = 1, L_FOO, L_BAR, L_BAZ, L_QUX, L_NOSYM, L_INL, NLOC };

__attribute__((unused)) static const char *const fx_strings[] = {
    "",    "main", "foo", "bar", "baz", "qux", "inl", "native", "/lib/x86_64-linux-gnu/libc.so.6",
    "env", "prod", "dev", "a.c"};
enum { S_MAIN = 1, S_NATIVE = 7, S_LIBC = 8, S_ENV = 9, S_PROD = 10, S_DEV = 11, S_FILE = 12 };

typedef struct pb {
    sp_profile *p;
    uint32_t cap;
} pb;

static inline sp_profile *mkprofile(sp_arena *a, const char *type, const char *service, int64_t t)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = type;
    char *name = sp_arena_strndup(a, type, strcspn(type, ":"));
    p->name = name;
    p->time_nanos = t;
    p->duration_nanos = 10 * SEC;
    p->nstrings = sizeof fx_strings / sizeof fx_strings[0];
    p->strings = (const char **)fx_strings;
    p->nfunctions = 7;
    p->functions = sp_arena_calloc(a, p->nfunctions, sizeof *p->functions);
    for (uint32_t i = 1; i < p->nfunctions; i++) {
        p->functions[i].name = i; /* strings 1..6 */
        p->functions[i].filename = S_FILE;
    }
    p->nmappings = 2;
    p->mappings = sp_arena_calloc(a, 2, sizeof *p->mappings);
    p->mappings[1].filename = S_LIBC;
    p->nlocations = NLOC;
    p->locations = sp_arena_calloc(a, NLOC, sizeof *p->locations);
    for (uint32_t i = 1; i < NLOC; i++) {
        sp_location *l = &p->locations[i];
        l->mapping_id = 1;
        l->address = 0x1000 * i;
        l->frame_type = S_NATIVE;
        if (i <= L_QUX) {
            l->nlines = 1;
            l->lines = sp_arena_calloc(a, 1, sizeof *l->lines);
            l->lines[0].function_id = i;
            l->lines[0].line = 10 * i;
        }
    }
    p->locations[L_NOSYM].address = 0xdead;
    /* L_INL: inl (function 6) inlined into foo (function 2): innermost first. */
    p->locations[L_INL].nlines = 2;
    p->locations[L_INL].lines = sp_arena_calloc(a, 2, sizeof(sp_line));
    p->locations[L_INL].lines[0].function_id = 6;
    p->locations[L_INL].lines[1].function_id = 2;
    p->samples = sp_arena_calloc(a, 64, sizeof *p->samples);
    p->nseries = 2;
    p->series = sp_arena_calloc(a, 2, sizeof *p->series);
    p->series[0] = (sp_kv){"__name__", name};
    p->series[1] = (sp_kv){"service_name", service};
    return p;
}

/* stack: location ids root first, 0-terminated. */
static inline sp_sample *add_sample(sp_arena *a, sp_profile *p, const uint32_t *root_first,
                                    int64_t value, int64_t ts)
{
    assert_true(p->nsamples < 64);
    sp_sample *s = &p->samples[p->nsamples++];
    uint32_t n = 0;
    while (root_first[n])
        n++;
    s->nlocations = n;
    s->location_ids = sp_arena_calloc(a, n + 1, sizeof *s->location_ids);
    for (uint32_t i = 0; i < n; i++)
        s->location_ids[i] = root_first[n - 1 - i];
    s->value = value;
    if (ts) {
        s->nobs = 1;
        s->timestamps = sp_arena_calloc(a, 1, sizeof *s->timestamps);
        s->values = sp_arena_calloc(a, 1, sizeof *s->values);
        s->timestamps[0] = (uint64_t)ts;
        s->values[0] = value;
    }
    return s;
}

static inline void attach(sp_arena *a, sp_sample *s, uint64_t span)
{
    sp_span_ref *refs = sp_arena_calloc(a, s->nspans + 1, sizeof *refs);
    if (s->nspans)
        memcpy(refs, s->spans, s->nspans * sizeof *refs);
    for (int i = 0; i < 8; i++)
        refs[s->nspans].span_id[i] = (uint8_t)(span >> (56 - 8 * i));
    refs[s->nspans].trace_id[0] = 0x7;
    s->spans = refs;
    s->nspans++;
}

static inline void span_id(uint64_t v, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline sp_batch batch1(sp_arena *a, const char *tenant, sp_profile *p)
{
    sp_batch b = {0};
    b.tenant = tenant;
    b.arena = a;
    b.profiles = sp_arena_calloc(a, 1, sizeof *b.profiles);
    b.profiles[0] = p;
    b.nprofiles = 1;
    return b;
}

/* Waits until the writer's keying ahead of need, which runs in a transaction of its own after
 * the callers are answered (H1 in sqlite_write.c), is done: what a test then reads of the key
 * tables and watermarks is what the writer left. */
static inline void wait_housekeeping(store *s)
{
    store_stats st;
    for (int i = 0; i < 10000; i++) {
        store_stats_get(s, &st);
        if (!st.housekeeping)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    fail_msg("the store's housekeeping did not finish in 10 s");
}

static inline void write_ok(store *s, const sp_batch *b)
{
    sp_err err = {0};
    int rc = store_write(s, b, &err);
    if (rc)
        fail_msg("write: %s (%s)", err.msg, sp_code_name(rc));
    wait_housekeeping(s);
}

/* "main;foo;bar" of a stack answer, root first. */
static inline const char *stack_text(const store_stacks *st, size_t i, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    const store_stack *s = &st->stacks[i];
    for (uint32_t j = s->nframes; j-- > 0;) {
        int w = snprintf(buf + k, n - k, "%s%s", k ? ";" : "", st->names[s->frames[j]]);
        if (w < 0 || (size_t)w >= n - k)
            break;
        k += (size_t)w;
    }
    return buf;
}

static inline int64_t value_of(const store_stacks *st, const char *text)
{
    char buf[512];
    int64_t v = 0;
    for (size_t i = 0; i < st->nstacks; i++)
        if (strcmp(stack_text(st, i, buf, sizeof buf), text) == 0)
            v += st->stacks[i].value;
    return v;
}

static inline store_stacks select_stacks(fx *f, const char *tenant, const char *type,
                                         const store_matcher *m, size_t nm, int64_t start,
                                         int64_t end)
{
    store_query q = {.tenant = tenant,
                     .type_id = type,
                     .matchers = m,
                     .nmatchers = nm,
                     .start_ns = start,
                     .end_ns = end};
    store_stacks out;
    sp_err err = {0};
    int rc = store_select_stacks(f->s, &q, f->a, &out, &err);
    if (rc)
        fail_msg("select stacks: %s", err.msg);
    return out;
}

static inline int64_t sql_int(const char *dir, const char *sql)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static inline int count_entry(void *ctx, int64_t k0, int64_t k1, int64_t v)
{
    (void)k0, (void)k1, (void)v;
    ++*(int64_t *)ctx;
    return 0;
}

/* The (stack, value) or (series, stack, value) entries in the value chunks `sql` selects (its
 * first column is the chunk blob): what version 1 stored as one row each. */
static inline int64_t chunk_entries(const char *dir, const char *sql, int nk)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t n = 0;
    store_chunk_decoder d = {0};
    while (sqlite3_step(st) == SQLITE_ROW)
        assert_int_equal(store_chunk_decode(sqlite3_column_blob(st, 0),
                                            (size_t)sqlite3_column_bytes(st, 0), nk, &d,
                                            count_entry, &n),
                         0);
    store_chunk_decoder_free(&d);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

__attribute__((unused)) static const uint32_t STK_MFB[] = {L_MAIN, L_FOO, L_BAR, 0};
__attribute__((unused)) static const uint32_t STK_MF[] = {L_MAIN, L_FOO, 0};
__attribute__((unused)) static const uint32_t STK_MB[] = {L_MAIN, L_BAZ, 0};
__attribute__((unused)) static const uint32_t STK_MQ[] = {L_MAIN, L_QUX, 0};

static inline void sql_exec(const char *dir, const char *sql)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* ---- shared by several test files ---- */

static inline void write_services(fx *f)
{
    sp_arena *a = sp_arena_new(0);
    sp_batch b = {0};
    b.tenant = "t1";
    b.profiles = sp_arena_calloc(a, 3, sizeof *b.profiles);
    b.nprofiles = 3;
    const char *svc[] = {"api", "db", "web"};
    const uint32_t *stk[] = {STK_MFB, STK_MB, STK_MQ};
    for (int i = 0; i < 3; i++) {
        sp_profile *p = mkprofile(a, CPU, svc[i], f->t0);
        p->nseries = 3;
        sp_kv *kv = sp_arena_calloc(a, 3, sizeof *kv);
        kv[0] = p->series[0];
        kv[1] = (sp_kv){"env", i == 2 ? "dev" : "prod"};
        kv[2] = p->series[1];
        p->series = kv;
        add_sample(a, p, stk[i], 100 * (i + 1), f->t0 + SEC);
        b.profiles[i] = p;
    }
    write_ok(f->s, &b);
    sp_arena_free(a);
}

static inline void set_pragma(const char *dir, const char *sql)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

typedef struct writer_arg {
    store *s;
    int64_t t0;
    int id, batches, failures;
} writer_arg;

static inline void *writer(void *arg)
{
    writer_arg *w = arg;
    for (int i = 0; i < w->batches; i++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, w->id % 2 ? "odd" : "even", w->t0);
        add_sample(a, p, STK_MFB, 1, w->t0 + i * SEC);
        attach(a, add_sample(a, p, STK_MB, 2, w->t0 + i * SEC), 0x5000 + (uint64_t)w->id);
        sp_batch b = batch1(a, "t1", p);
        sp_err err = {0};
        if (store_write(w->s, &b, &err) != 0)
            w->failures++;
        sp_arena_free(a);
    }
    return NULL;
}

#define ROUND_LOCS   64
#define ROUND_STACKS 100

/* Round r: ROUND_STACKS new three-frame stacks (value 1 each) over ROUND_LOCS unsymbolized
 * locations of its own and one every round shares, at time t, with their prints. Content
 * depends on r alone. */
static inline sp_batch round_batch(sp_arena *a, int64_t t, int r)
{
    sp_profile *p = mkprofile(a, CPU, "keys", t);
    p->nlocations = ROUND_LOCS + 2;
    p->locations = sp_arena_calloc(a, ROUND_LOCS + 2, sizeof *p->locations);
    for (uint32_t i = 1; i <= ROUND_LOCS + 1; i++) {
        p->locations[i].mapping_id = 1;
        p->locations[i].frame_type = S_NATIVE;
        p->locations[i].address =
            i == ROUND_LOCS + 1 ? 0x10 : 0x100000 + (uint64_t)r * 4096 + 16 * i;
    }
    p->samples = sp_arena_calloc(a, ROUND_STACKS, sizeof *p->samples);
    p->nsamples = ROUND_STACKS;
    for (uint32_t i = 0; i < ROUND_STACKS; i++) {
        sp_sample *s = &p->samples[i];
        s->nlocations = 3;
        s->location_ids = sp_arena_calloc(a, 3, sizeof *s->location_ids);
        s->location_ids[0] = 1 + i % ROUND_LOCS;
        s->location_ids[1] = 1 + (i / ROUND_LOCS + i) % ROUND_LOCS;
        s->location_ids[2] = ROUND_LOCS + 1;
        s->value = 1;
    }
    /* with the prints the OTLP converter gives its locations (the store finds rows by them) */
    sp_print *prints;
    if (sp_location_prints(p, a, &prints))
        fail_msg("location prints: out of budget");
    p->location_prints = prints;
    return batch1(a, "k", p);
}

static inline int write_round(store *s, int64_t t, int r, sp_err *err)
{
    sp_arena *a = sp_arena_new(0);
    sp_batch b = round_batch(a, t, r);
    int rc = store_write(s, &b, err);
    sp_arena_free(a);
    wait_housekeeping(s);
    return rc;
}

static inline void write_round_ok(store *s, int64_t t, int r)
{
    sp_err err = {0};
    if (write_round(s, t, r, &err))
        fail_msg("round %d: %s", r, err.msg);
}

static inline int64_t total_k(store *s, sp_arena *a)
{
    store_query q = {.tenant = "k", .type_id = CPU};
    store_stacks out;
    sp_err err = {0};
    if (store_select_stacks(s, &q, a, &out, &err))
        fail_msg("select stacks: %s", err.msg);
    return out.total;
}

/* The file's key tables are whole: no content stored twice, and no row at or below its
 * watermark without its key row (a lookup could not find it). */
static inline void assert_keys_whole(const char *dir)
{
    assert_int_equal(
        sql_int(dir,
                "SELECT count(*) FROM (SELECT 1 FROM stack GROUP BY locs HAVING count(*) > 1)"),
        0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM (SELECT 1 FROM location GROUP BY mapping, "
                                  "address, kind, lines HAVING count(*) > 1)"),
                     0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack WHERE id <= (SELECT value FROM meta "
                                  "WHERE key='stack_keyed') AND (hash, id) NOT IN (SELECT hash, id "
                                  "FROM stack_key)"),
                     0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM location WHERE id <= (SELECT value FROM "
                                  "meta WHERE key='location_keyed') AND (hash, id) NOT IN (SELECT "
                                  "hash, id FROM location_key)"),
                     0);
    /* and no key row naming a row that is gone */
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack_key WHERE (hash, id) NOT IN (SELECT "
                                  "hash, id FROM stack)"),
                     0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM location_key WHERE (hash, id) NOT IN "
                                  "(SELECT hash, id FROM location)"),
                     0);
    /* the same for functions (since version 8) */
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM (SELECT 1 FROM function GROUP BY name, "
                                  "system_name, file, start_line HAVING count(*) > 1)"),
                     0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM function WHERE id <= (SELECT value FROM "
                                  "meta WHERE key='function_keyed') AND (hash, id) NOT IN (SELECT "
                                  "hash, id FROM function_key)"),
                     0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM function_key WHERE (hash, id) NOT IN "
                                  "(SELECT hash, id FROM function)"),
                     0);
}

/* index_rows 1: the writer's hash index gives up at once, so lookups go through the key tables
 * (I4 of sqlite_dict.c); 0: the default. */
static inline void open_indexed(const char *dir, size_t cache_bytes, uint64_t max_db_bytes,
                                size_t index_rows, store **s)
{
    store_options o = opts(dir);
    o.cache_bytes = cache_bytes;
    o.max_db_bytes = max_db_bytes;
    o.index_rows = index_rows;
    sp_err err = {0};
    if (store_open_sqlite(s, &o, &err))
        fail_msg("open: %s", err.msg);
}

static inline void open_with(const char *dir, size_t cache_bytes, uint64_t max_db_bytes, store **s)
{
    open_indexed(dir, cache_bytes, max_db_bytes, 0, s);
}

#endif
