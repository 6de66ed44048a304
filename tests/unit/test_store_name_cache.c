/* The location-name cache shared by queries (storage-adapter/name_cache.c, and its rules in
 * sqlite_names.c N1-N4): on real SQLite files with a scripted symbolizer, a query answers the
 * same with the cache warm as cold, names a frame whose symbols arrived after it was cached,
 * never serves a reused location id its previous name, and the cache stays within its budget.
 * The oracle is always the answer itself (every name, value and detail field), compared with
 * the answer of a store whose cache is empty. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "storage-adapter/name_cache.h"
#include "storage-adapter/store.h"
#include "symbols_fixture.h"

#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HOUR (3600 * SEC)

/* ---- a profile with every kind of location
 * ------------------------------------------------------- Location i (1..nloc), by i % 5: 0 named
 * by the sender (two lines: an inlined callee, so two frames), 1 native without a build id (the
 * synthetic name), 2 native with a build id (named by the symbolizer as scripted: addresses 0x1000,
 * 0x2000, 0x3000 and later ones), 3 kernel without a name, 4 named by the sender (one line). Stacks
 * of 2-9 frames drawn from a fixed sequence. */

enum { S_NATIVE = 1, S_KERNEL, S_APP, S_BID, S_LIBC, S_FILE, S_FIXED };

static sp_profile *profile(sp_arena *a, int64_t t, uint32_t nloc, uint32_t nsamples,
                           const char *fn_prefix)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = CPU;
    p->name = "process_cpu";
    p->time_nanos = t;
    p->duration_nanos = 10 * SEC;
    p->nstrings = S_FIXED + nloc;
    const char **strs = sp_arena_calloc(a, p->nstrings, sizeof *strs);
    const char *fixed[S_FIXED] = {"",  "native",         "kernel",    "/usr/bin/p",
                                  BID, "/lib/libc.so.6", "/src/app.c"};
    memcpy(strs, fixed, sizeof fixed);
    p->nfunctions = 1 + nloc;
    p->functions = sp_arena_calloc(a, p->nfunctions, sizeof *p->functions);
    for (uint32_t i = 1; i <= nloc; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s_function_with_a_longish_name_%u", fn_prefix, i);
        strs[S_FIXED + i - 1] = sp_arena_strndup(a, name, strlen(name));
        p->functions[i] =
            (sp_function){.name = S_FIXED + i - 1, .filename = S_FILE, .start_line = (int64_t)i};
    }
    p->strings = strs;
    p->nmappings = 3;
    p->mappings = sp_arena_calloc(a, 3, sizeof *p->mappings);
    p->mappings[1] = (sp_mapping){.filename = S_APP, .build_id = S_BID};
    p->mappings[2] = (sp_mapping){.filename = S_LIBC};
    p->nlocations = nloc + 1;
    p->locations = sp_arena_calloc(a, nloc + 1, sizeof *p->locations);
    for (uint32_t i = 1; i <= nloc; i++) {
        sp_location *l = &p->locations[i];
        l->mapping_id = 1;
        l->frame_type = S_NATIVE;
        l->address = 0x10000 + 16 * i;
        switch (i % 5) {
        case 0:
        case 4:
            l->nlines = i % 5 == 0 ? 2 : 1;
            l->lines = sp_arena_calloc(a, 2, sizeof *l->lines);
            l->lines[0] = (sp_line){.function_id = i, .line = 10 + i};
            l->lines[1] = (sp_line){.function_id = i > 1 ? i - 1 : i, .line = 20 + i};
            break;
        case 1:
            l->mapping_id = 2;
            break;
        case 2:
            l->address = (uint64_t)0x1000 * (1 + (i / 5) % 6); /* 0x1000 .. 0x6000 */
            break;
        case 3:
            l->frame_type = S_KERNEL;
            break;
        }
    }
    p->samples = sp_arena_calloc(a, nsamples, sizeof *p->samples);
    uint64_t r = 12345;
    for (uint32_t k = 0; k < nsamples; k++) {
        sp_sample *s = &p->samples[p->nsamples++];
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        s->nlocations = 2 + (uint32_t)(r >> 60) % 8;
        uint32_t *ids = sp_arena_calloc(a, s->nlocations, sizeof *ids);
        for (uint32_t j = 0; j < s->nlocations; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            ids[j] = 1 + (uint32_t)((r >> 33) % nloc);
        }
        s->location_ids = ids;
        s->value = 1 + (int64_t)(k % 7);
    }
    p->series = sp_arena_calloc(a, 2, sizeof *p->series);
    p->series[0] = (sp_kv){"__name__", "process_cpu"};
    p->series[1] = (sp_kv){"service_name", "svc"};
    p->nseries = 2;
    return p;
}

static void write_profile(fx *f, int64_t t, uint32_t nloc, uint32_t nsamples, const char *prefix)
{
    sp_arena *a = sp_arena_new(0);
    sp_profile *ps[1] = {profile(a, t, nloc, nsamples, prefix)};
    sp_batch b = {.tenant = "t", .arena = a, .profiles = ps, .nprofiles = 1};
    sp_err err = {0};
    if (store_write(f->s, &b, &err))
        fail_msg("write: %s", err.msg);
    sp_arena_free(a);
}

/* The whole answer as text: the names in order, then every stack's value and frames (with
 * every detail field when asked), so that two answers compare byte for byte. */
static char *answer(store *s, int64_t t, int detail, uint32_t *unresolved)
{
    store_query q = {.tenant = "t",
                     .type_id = CPU,
                     .start_ns = t - 60 * SEC,
                     .end_ns = t + 60 * SEC,
                     .detail = detail};
    store_stacks out;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(0);
    if (store_select_stacks(s, &q, a, &out, &err))
        fail_msg("query: %s", err.msg);
    sp_buf b;
    sp_buf_init(&b, 0);
    for (uint32_t i = 0; i < out.nnames; i++)
        sp_buf_printf(&b, "name %u %s\n", i, out.names[i]);
    for (size_t i = 0; i < out.nstacks; i++) {
        const store_stack *st = &out.stacks[i];
        sp_buf_printf(&b, "stack %lld:", (long long)st->value);
        for (uint32_t k = 0; k < st->nframes; k++) {
            sp_buf_printf(&b, " %u", st->frames[k]);
            if (detail) {
                const store_frame *d = &st->detail[k];
                sp_buf_printf(&b, "[%lld %llx %s %s %s %lld %lld %u]", (long long)d->loc,
                              (unsigned long long)d->address, d->mapping, d->build_id, d->file,
                              (long long)d->start_line, (long long)d->line, d->inl);
            }
        }
        sp_buf_printf(&b, "\n");
    }
    sp_buf_printf(&b, "total %lld\n", (long long)out.total);
    if (unresolved)
        *unresolved = out.unresolved;
    char *text = strndup((const char *)b.data, b.len);
    sp_buf_free(&b);
    sp_arena_free(a);
    return text;
}

/* Two answers must be the same text; on a difference, the first differing line is shown. */
#define assert_same(got, want)                                                                     \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (strcmp(g_, w_) != 0) {                                                                 \
            size_t i_ = 0, l_ = 0;                                                                 \
            while (g_[i_] && g_[i_] == w_[i_])                                                     \
                if (g_[i_++] == '\n')                                                              \
                    l_ = i_;                                                                       \
            fail_msg("answers differ from: got \"%.120s\" want \"%.120s\"", g_ + l_, w_ + l_);     \
        }                                                                                          \
    } while (0)

static store_stats stats(fx *f)
{
    store_stats st;
    store_stats_get(f->s, &st);
    return st;
}

/* ---- through the store --------------------------------------------------------------------------
 */

/* N1: the second and third answers come from the cache and are byte for byte the first (cold)
 * answer, for flame graphs and for pprof detail; a detail query after a plain one (payloads
 * without detail, N4) answers what a cold detail query does. */
static void answers_the_same_bytes_warm_and_cold(void **state)
{
    fx *f = *state;
    write_profile(f, f->t0, 400, 3000, "fn");
    f->sc.later = 0;
    char *cold = answer(f->s, f->t0, 0, NULL);
    assert_non_null(strstr(cold, "twice"));         /* the symbolizer's names are in it */
    assert_non_null(strstr(cold, "native 0x4000")); /* and frames not known yet */
    store_stats st = stats(f);
    /* 326 distinct locations: the 80 of the build id share 6 addresses, stored once each */
    assert_int_equal(st.name_cache_entries, 326);
    assert_int_equal(st.name_cache_hits, 0);
    for (int i = 0; i < 2; i++) {
        char *warm = answer(f->s, f->t0, 0, NULL);
        assert_same(warm, cold);
        free(warm);
    }
    assert_int_equal(stats(f).name_cache_hits, 2 * 326); /* every location, from the cache */
    /* detail: after plain queries (payloads without detail), then warm */
    char *d1 = answer(f->s, f->t0, 1, NULL);
    char *d2 = answer(f->s, f->t0, 1, NULL);
    reopen(f); /* a restart empties the cache */
    assert_int_equal(stats(f).name_cache_entries, 0);
    char *dcold = answer(f->s, f->t0, 1, NULL);
    assert_non_null(strstr(dcold, "/src/p.cc"));
    assert_same(d1, dcold);
    assert_same(d2, dcold);
    char *plain = answer(f->s, f->t0, 0, NULL); /* plain after detail payloads */
    assert_same(plain, cold);
    free(plain);
    free(dcold);
    free(d1);
    free(d2);
    free(cold);
}

/* Waits until the writer kept `want` symbol rows (it writes them between ingest batches). */
static void wait_symbol_rows(fx *f, int want)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", f->dir);
    for (int i = 0; i < 500; i++) {
        sqlite3 *db;
        sqlite3_stmt *st;
        int n = 0;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM symbol", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        if (n >= want)
            return;
        usleep(10000);
    }
    fail_msg("the writer never kept %d symbol rows", want);
}

/* N1: a native frame cached while its symbols were not known yet is named as soon as the
 * symbolizer knows it, and from then on without asking it (the final answer replaced the
 * pending entry). */
static void symbols_that_arrive_later_name_a_cached_frame(void **state)
{
    fx *f = *state;
    write_profile(f, f->t0, 50, 200, "fn");
    f->sc.later = 1;
    uint32_t unresolved = 0;
    char *before = answer(f->s, f->t0, 0, &unresolved);
    assert_null(strstr(before, "twice"));
    assert_non_null(strstr(before, "native 0x1000 p"));
    assert_int_equal(unresolved, 6);                   /* 0x1000 .. 0x6000 */
    char *again = answer(f->s, f->t0, 0, &unresolved); /* the pending entries, served warm */
    assert_same(again, before);
    assert_int_equal(unresolved, 6);
    f->sc.later = 0;
    char *after = answer(f->s, f->t0, 0, &unresolved);
    assert_non_null(strstr(after, "twice"));
    assert_non_null(strstr(after, "work(double)"));
    assert_non_null(strstr(after, "shapes::Circle::area() const"));
    assert_null(strstr(after, "native 0x1000 p"));
    assert_null(strstr(after, "native 0x2000 p"));
    assert_non_null(strstr(after, "native 0x3000 p")); /* nothing there: final, unnamed */
    assert_int_equal(unresolved, 3);                   /* 0x4000 .. 0x6000 */
    int calls = f->sc.calls;
    char *final = answer(f->s, f->t0, 0, &unresolved);
    assert_same(final, after);
    assert_int_equal(f->sc.calls, calls + 3); /* only the three still unknown are asked */
    wait_symbol_rows(f, 3);                   /* the writer keeps final answers in a while */
    reopen(f);
    f->sc.later = 1; /* the symbol table alone names them now */
    char *cold = answer(f->s, f->t0, 0, NULL);
    assert_same(cold, after);
    free(cold);
    free(final);
    free(after);
    free(again);
    free(before);
}

/* The location id a query shows for the frame named `name`, from a detail answer. */
static int64_t loc_of(fx *f, int64_t t, const char *name)
{
    store_query q = {.tenant = "t",
                     .type_id = CPU,
                     .start_ns = t - 60 * SEC,
                     .end_ns = t + 60 * SEC,
                     .detail = 1};
    store_stacks out;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(0);
    if (store_select_stacks(f->s, &q, a, &out, &err))
        fail_msg("query: %s", err.msg);
    int64_t loc = 0;
    for (size_t i = 0; i < out.nstacks && !loc; i++)
        for (uint32_t k = 0; k < out.stacks[i].nframes && !loc; k++)
            if (strcmp(out.names[out.stacks[i].frames[k]], name) == 0)
                loc = out.stacks[i].detail[k].loc;
    sp_arena_free(a);
    return loc;
}

/* N2, N3: retention deletes every location; the next write reuses their ids for other
 * functions; the cache (warm with the old names) must answer the new ones. */
static void a_reused_location_id_never_serves_the_old_name(void **state)
{
    fx *f = *state;
    write_profile(f, f->t0, 40, 300, "old");
    char *old = answer(f->s, f->t0, 0, NULL);
    char *old_warm = answer(f->s, f->t0, 0, NULL);
    assert_same(old, old_warm);
    int64_t old_loc = loc_of(f, f->t0, "old_function_with_a_longish_name_4");
    assert_true(old_loc > 0);
    sp_err err = {0};
    assert_int_equal(store_retention_run(f->s, f->t0 + 400 * HOUR, &err), 0);
    write_profile(f, f->t0 + 20 * SEC, 40, 300, "new");
    char *fresh = answer(f->s, f->t0 + 20 * SEC, 0, NULL);
    assert_null(strstr(fresh, "old_function"));
    assert_non_null(strstr(fresh, "new_function_with_a_longish_name_4"));
    /* the same ids (the test is only meaningful when they were reused) */
    assert_int_equal(loc_of(f, f->t0 + 20 * SEC, "new_function_with_a_longish_name_4"), old_loc);
    reopen(f);
    char *cold = answer(f->s, f->t0 + 20 * SEC, 0, NULL);
    assert_same(fresh, cold);
    free(cold);
    free(fresh);
    free(old_warm);
    free(old);
}

/* C1: with the smallest budget and far more locations than fit, the cache never holds more than
 * its budget, evicts, and answers stay exact. */
static void the_cache_stays_within_its_budget(void **state)
{
    fx *f = *state;
    f->budget = 1; /* raised to the minimum */
    reopen(f);
    write_profile(f, f->t0, 4000, 6000, "fn");
    char *cold = answer(f->s, f->t0, 0, NULL);
    for (int i = 0; i < 3; i++) {
        store_stats st = stats(f);
        assert_true(st.name_cache_bytes <= STORE_NCACHE_MIN_BYTES);
        assert_true(st.name_cache_entries > 100);
        char *warm = answer(f->s, f->t0, i == 1, NULL);
        if (i != 1)
            assert_same(warm, cold);
        free(warm);
    }
    store_stats st = stats(f);
    assert_true(st.name_cache_bytes <= STORE_NCACHE_MIN_BYTES);
    assert_true(st.name_cache_evicted > 1000);
    /* a small answer fits: its second asking is served from the cache */
    write_profile(f, f->t0 + 300 * SEC, 30, 100, "small");
    char *small = answer(f->s, f->t0 + 300 * SEC, 0, NULL);
    uint64_t hits = stats(f).name_cache_hits;
    char *small_warm = answer(f->s, f->t0 + 300 * SEC, 0, NULL);
    assert_same(small_warm, small);
    assert_true(stats(f).name_cache_hits >= hits + 20);
    assert_true(stats(f).name_cache_bytes <= STORE_NCACHE_MIN_BYTES);
    free(small_warm);
    free(small);
    free(cold);
}

/* Query threads share the cache: four threads asking at once all get the single-threaded
 * answer. */
typedef struct racer {
    fx *f;
    const char *want;
    int wrong;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < 20; i++) {
        char *got = answer(r->f->s, r->f->t0, i % 3 == 2, NULL);
        r->wrong += i % 3 != 2 && strcmp(got, r->want) != 0;
        free(got);
    }
    return NULL;
}

static void concurrent_queries_share_the_cache(void **state)
{
    fx *f = *state;
    f->budget = 256 << 10;
    reopen(f);
    write_profile(f, f->t0, 1500, 3000, "fn");
    char *want = answer(f->s, f->t0, 0, NULL);
    reopen(f);
    pthread_t th[4];
    racer r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (racer){f, want, 0};
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].wrong, 0);
    }
    assert_true(stats(f).name_cache_bytes <= 256 << 10);
    free(want);
}

/* ---- the cache alone ----------------------------------------------------------------------------
 */

/* C1: random payload sizes, many keys: never above the budget; what is there is what was put. */
static void cache_never_holds_more_than_its_budget(void **state)
{
    (void)state;
    size_t budget = 200 << 10;
    store_ncache *c = store_ncache_new(budget);
    assert_non_null(c);
    uint8_t in[3000], out[3000];
    uint64_t r = 7;
    for (int i = 0; i < 20000; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 1 + (r >> 33) % (i % 50 ? 200 : sizeof in);
        int64_t key = (int64_t)((r >> 20) % 5000);
        memset(in, (int)(key & 0xff), len);
        store_ncache_put(c, 0, key, in, len);
        store_ncache_stats st;
        store_ncache_get_stats(c, &st);
        assert_true(st.bytes <= budget);
        int64_t got = store_ncache_get(c, 0, key, out, sizeof out);
        if (got >= 0) { /* just put: present unless it could not fit */
            assert_int_equal(got, (int64_t)len);
            assert_int_equal(out[len - 1], (uint8_t)(key & 0xff));
        }
    }
    store_ncache_stats st;
    store_ncache_get_stats(c, &st);
    assert_true(st.evicted > 0);
    assert_true(st.entries > 100);
    store_ncache_free(c);
}

/* C2: a later generation empties what it probes; an earlier one reads and stores nothing. */
static void generations_only_move_forward(void **state)
{
    (void)state;
    store_ncache *c = store_ncache_new(0);
    uint8_t buf[16];
    store_ncache_put(c, 2, 7, (const uint8_t *)"old", 4);
    assert_int_equal(store_ncache_get(c, 2, 7, buf, sizeof buf), 4);
    assert_string_equal((char *)buf, "old");
    assert_int_equal(store_ncache_get(c, 4, 7, buf, sizeof buf), -1); /* emptied */
    store_ncache_put(c, 2, 7, (const uint8_t *)"stale", 6);           /* refused */
    assert_int_equal(store_ncache_get(c, 4, 7, buf, sizeof buf), -1);
    store_ncache_put(c, 4, 7, (const uint8_t *)"new", 4);
    assert_int_equal(store_ncache_get(c, 2, 7, buf, sizeof buf), -1); /* not for an older one */
    assert_int_equal(store_ncache_get(c, 4, 7, buf, 2), 4); /* too small: the length only */
    assert_int_equal(store_ncache_get(c, 4, 7, buf, sizeof buf), 4);
    assert_string_equal((char *)buf, "new");
    store_ncache_stats st;
    store_ncache_get_stats(c, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.clears, 1);
    assert_int_equal(st.not_stored, 1);
    store_ncache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(answers_the_same_bytes_warm_and_cold, setup, teardown),
        cmocka_unit_test_setup_teardown(symbols_that_arrive_later_name_a_cached_frame, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_reused_location_id_never_serves_the_old_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_cache_stays_within_its_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_queries_share_the_cache, setup, teardown),
        cmocka_unit_test(cache_never_holds_more_than_its_budget),
        cmocka_unit_test(generations_only_move_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
