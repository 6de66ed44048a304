/* The SQLite store's dictionary (stacks, locations, functions) beyond its cache, its key tables
 * through failed transactions and full disks, and retention (by hand, in small chunks, in the
 * background). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/maps.h"
#include "storage-adapter/store.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_fixture.h"
#include "prints_fixture.h"

/* A profile of n distinct two-frame stacks over nloc unsymbolized locations, one sample each. */
static sp_profile *many_stacks(sp_arena *a, fx *f, uint32_t nloc, uint32_t n)
{
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    p->period = 10000000;
    p->nlocations = nloc + 1;
    p->locations = sp_arena_calloc(a, nloc + 1, sizeof *p->locations);
    for (uint32_t i = 1; i <= nloc; i++) {
        p->locations[i].mapping_id = 1;
        p->locations[i].address = 0x100000 + 16 * i;
        p->locations[i].frame_type = S_NATIVE;
    }
    p->samples = sp_arena_calloc(a, n, sizeof *p->samples);
    p->nsamples = n;
    for (uint32_t i = 0; i < n; i++) {
        sp_sample *s = &p->samples[i];
        s->nlocations = 2;
        s->location_ids = sp_arena_calloc(a, 2, sizeof *s->location_ids);
        s->location_ids[0] = i % nloc + 1;
        s->location_ids[1] = i / nloc + 1;
        s->value = 1;
    }
    return p;
}

static store_stacks select_from(store *s, fx *f, const char *tenant, const char *type)
{
    store *keep = f->s;
    f->s = s;
    store_stacks out = select_stacks(f, tenant, type, NULL, 0, 0, 0);
    f->s = keep;
    return out;
}

/* More stacks and locations than the writer's cache holds (the smallest cache: 512 stacks, 256
 * locations), found again across restarts and after retention, never inserted twice. With the
 * hash index (I1-I4 of sqlite_dict.c) no key row is ever written; without it (index_rows 1) the
 * rows are found only through the cache until it overflows and they are keyed. */
static void beyond_the_cache(fx *f, const char *dir, size_t index_rows)
{
    store *s;
    open_indexed(dir, 1, 0, index_rows, &s);
    const char *unkeyed_below_watermark =
        "SELECT count(*) FROM stack WHERE id <= (SELECT value FROM meta WHERE key='stack_keyed') "
        "AND id NOT IN (SELECT id FROM stack_key)";
    for (int round = 0; round < 3; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", many_stacks(a, f, 600, 1500));
        write_ok(s, &b);
        sp_arena_free(a);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 1500);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 600);
        assert_int_equal(sql_int(dir, unkeyed_below_watermark), 0);
        if (index_rows == 1)
            assert_true(sql_int(dir, "SELECT count(*) FROM stack_key") >= 512);
        else
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack_key") +
                                 sql_int(dir, "SELECT count(*) FROM location_key"),
                             0);
        store_stats st;
        store_stats_get(s, &st);
        assert_true(index_rows == 1 ? st.index_bytes == 0 : st.index_bytes > 0);
        assert_int_equal(select_from(s, f, "t1", CPU).total, 1500 * (round + 1));
        assert_int_equal(sql_int(dir, "SELECT period FROM series"), 10000000);
        store_close(s);
        open_indexed(dir, 1, 0, index_rows, &s);
    }
    /* Retention deletes the rows and their key rows; written again, they are one row each. */
    sp_err err = {0};
    assert_int_equal(store_retention_run(s, wall_ns() + 400 * HOUR, &err), 0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack_key"), 0);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM location_key"), 0);
    for (int round = 0; round < 2; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", many_stacks(a, f, 600, 1500));
        write_ok(s, &b);
        sp_arena_free(a);
    }
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 1500);
    assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 600);
    assert_int_equal(sql_int(dir, unkeyed_below_watermark), 0);
    assert_int_equal(select_from(s, f, "t1", CPU).total, 3000);
    /* The index forgot the rows retention deleted (I3): it holds the rows there are. */
    store_stats st;
    store_stats_get(s, &st);
    if (index_rows != 1)
        assert_int_equal(st.index_rows, sql_int(dir, "SELECT (SELECT count(*) FROM stack) + "
                                                     "(SELECT count(*) FROM location) + "
                                                     "(SELECT count(*) FROM function)"));
    store_close(s);
}

static void dictionary_beyond_the_cache_is_found_again(void **state)
{
    fx *f = *state;
    char dir[96];
    for (size_t index_rows = 0; index_rows < 2; index_rows++) {
        snprintf(dir, sizeof dir, "%s/i%zu", f->dir, index_rows);
        beyond_the_cache(f, dir, index_rows);
    }
}

/* One request whose location table names each location twice (OTLP does not forbid it): 1500
 * stacks on the first copies, then the same 1500 on the second. The writer keeps new rows
 * back and inserts them many to a statement (A1-A3 of sqlite_newrows.c); with the smallest
 * cache (512 stacks, 256 locations) the repeats come after the cache forgot the first ones, so
 * the hash index names a row still waiting, which must be inserted before it is read (A2): each
 * content is one row, in one request as across requests, and the flame graph counts both. */
static void content_repeated_in_one_request_is_one_row(void **state)
{
    fx *f = *state;
    for (size_t index_rows = 0; index_rows < 2; index_rows++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/r%zu", f->dir, index_rows);
        store *s;
        open_indexed(dir, 1, 0, index_rows, &s);
        for (int round = 0; round < 2; round++) {
            sp_arena *a = sp_arena_new(0);
            sp_profile *p = many_stacks(a, f, 1200, 3000);
            for (uint32_t i = 601; i <= 1200; i++)
                p->locations[i] = p->locations[i - 600]; /* the second copy of each */
            for (uint32_t i = 0; i < 3000; i++) {
                uint32_t *l = p->samples[i].location_ids;
                l[0] = (i % 1500) % 600 + 1 + (i >= 1500 ? 600 : 0);
                l[1] = (i % 1500) / 600 + 1 + (i >= 1500 ? 600 : 0);
            }
            sp_batch b = batch1(a, "t1", p);
            write_ok(s, &b);
            sp_arena_free(a);
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 600);
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 1500);
            assert_int_equal(sql_int(dir, "SELECT count(DISTINCT locs) FROM stack"), 1500);
            store_stacks out = select_from(s, f, "t1", CPU);
            assert_int_equal(out.total, 3000 * (round + 1));
            assert_int_equal(out.nstacks, 1500);
        }
        store_close(s);
    }
}

/* Rows the cache forgot, met between new ones in one request: a location from an earlier request
 * is read by its id (the hash index names it) while the request's new locations wait for their
 * statement of 32 (A2 of sqlite_newrows.c holds for the ids that wait, not for older ones); new
 * content met again later in the request is found among the waiting rows. Each content is still
 * one row, and the flame graph counts every sample. */
static void old_rows_read_between_waiting_new_ones(void **state)
{
    fx *f = *state;
    for (size_t index_rows = 0; index_rows < 2; index_rows++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/o%zu", f->dir, index_rows);
        store *s;
        open_indexed(dir, 1, 0, index_rows, &s);
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", many_stacks(a, f, 600, 600)); /* 600 locations, 600 stacks */
        write_ok(s, &b);
        sp_arena_free(a);
        /* 1,800 entries: odd ones the earlier request's locations, even ones new, then copies
         * of the first 300 new ones; one one-frame stack per sample */
        a = sp_arena_new(0);
        sp_profile *p = many_stacks(a, f, 1800, 1800);
        for (uint32_t j = 1; j <= 1800; j++) {
            sp_location *l = &p->locations[j];
            if (j > 1200)
                *l = p->locations[2 * (j - 1200)];
            else if (j % 2)
                l->address = 0x100000 + 16 * ((j + 1) / 2);
            else
                l->address = 0x900000 + 16 * j;
        }
        for (uint32_t i = 0; i < 1800; i++) {
            p->samples[i].nlocations = 1;
            p->samples[i].location_ids[0] = i + 1;
        }
        b = batch1(a, "t1", p);
        write_ok(s, &b);
        sp_arena_free(a);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 1200);
        assert_int_equal(sql_int(dir, "SELECT count(DISTINCT address) FROM location"), 1200);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 600 + 1200);
        assert_int_equal(sql_int(dir, "SELECT count(DISTINCT locs) FROM stack"), 1800);
        store_stacks out = select_from(s, f, "t1", CPU);
        assert_int_equal(out.total, 600 + 1800);
        assert_int_equal(out.nstacks, 1800);
        store_close(s);
    }
}

/* A profile of n one-frame stacks on n locations never seen before round r, one sample each. */
static sp_profile *new_locations(sp_arena *a, fx *f, uint32_t n, int r)
{
    sp_profile *p = many_stacks(a, f, n, n);
    for (uint32_t i = 1; i <= n; i++)
        p->locations[i].address += (uint64_t)r << 24;
    for (uint32_t i = 0; i < n; i++)
        p->samples[i].nlocations = 1;
    return p;
}

/* Writes new_locations(n, r) to f->s as tenant t1. */
static void write_new_locations(fx *f, uint32_t n, int r)
{
    sp_arena *a = sp_arena_new(0);
    sp_batch b = batch1(a, "t1", new_locations(a, f, n, r));
    write_ok(f->s, &b);
    sp_arena_free(a);
}

/* Keying ahead of need goes in whole slices (KEYS_SLICE in sqlite_dict.c, 16384 rows): each
 * slice lands all over the hash-ordered key table, so a transaction that keyed the 4,000 rows it
 * brought would dirty every page of it. A cache of 65,536 locations is half full at round 9 of
 * 4,000 new locations (the stacks, 131,072, never are); from then on the watermark moves a
 * whole slice at a time, and a round that finds less than a slice waiting leaves location_key
 * as it was. Written again, every
 * location is found (one row per content). */
static void keying_ahead_waits_for_a_whole_slice(void **state)
{
    fx *f = *state;
    enum { SLICE = 16384, ROUND = 4000, ROUNDS = 15 };
    store_close(f->s);
    store_options o = opts(f->dir);
    o.cache_bytes = (size_t)16 << 20; /* sqlite_write.c: 1/4 of cache_bytes / 64 are locations */
    o.index_rows = 1; /* the hash index gives up at its second row: key tables (I4) */
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    int64_t keyed_rows = 0, slices = 0;
    for (int r = 1; r <= ROUNDS; r++) {
        write_new_locations(f, ROUND, r);
        int64_t rows = sql_int(f->dir, "SELECT count(*) FROM location");
        int64_t keyed = sql_int(f->dir, "SELECT coalesce((SELECT value FROM meta WHERE "
                                        "key='location_keyed'), 0)");
        int64_t keys = sql_int(f->dir, "SELECT count(*) FROM location_key");
        assert_int_equal(rows, (int64_t)r * ROUND);
        if (keyed % SLICE)
            fail_msg("round %d: watermark %lld is not a whole number of slices", r,
                     (long long)keyed);
        assert_int_equal(keys, keyed); /* every row up to it, none above */
        if (r * ROUND < 65536 / 2)
            assert_int_equal(keyed, 0); /* the cache is the index until it is half full */
        else if (keys == keyed_rows)
            assert_true(rows - keyed < SLICE); /* nothing keyed: less than a slice waited */
        slices += keys > keyed_rows;
        keyed_rows = keys;
    }
    assert_true(keyed_rows >= 2 * SLICE);
    assert_true(slices < ROUNDS - 8); /* not every round after the cache was half full */
    assert_keys_whole(f->dir);
    for (int r = 1; r <= ROUNDS; r++) {
        write_new_locations(f, ROUND, r);
    }
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), ROUNDS * ROUND);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 2 * ROUNDS * ROUND);
    assert_keys_whole(f->dir);
}

/* Two addresses whose location keys share their 31-bit hash (the key of a location without
 * mapping, frame type or lines: varints 0, address, 0; sqlite_dict.c location_key()), found by
 * trying addresses: about 50,000 of them for a birthday collision. */
static void colliding_addresses(uint64_t *a1, uint64_t *a2)
{
    enum { BITS = 18 };
    uint64_t *seen = calloc((size_t)1 << BITS, sizeof *seen); /* hash31 << 32 | n, n = try */
    for (uint64_t n = 1;; n++) {
        uint8_t key[2 + STORE_VARINT_MAX];
        size_t k = 0;
        key[k++] = 0;
        k += store_varint_put(key + k, 0x7000000 + 16 * n);
        key[k++] = 0;
        uint64_t h1, h2;
        store_hash64x2(key, k, 51, 52, &h1, &h2);
        uint64_t h = h1 >> 33;
        for (size_t i = h & ((1u << BITS) - 1);; i = (i + 1) & ((1u << BITS) - 1)) {
            if (!seen[i]) {
                seen[i] = h << 32 | n;
                break;
            }
            if (seen[i] >> 32 == h) {
                *a1 = 0x7000000 + 16 * (seen[i] & 0xffffffffu);
                *a2 = 0x7000000 + 16 * n;
                free(seen);
                return;
            }
        }
    }
}

/* 300 locations beyond the smallest cache, and the locations at the addresses given (no
 * mapping, frame type or lines), one sample each on a stack of its own. */
static sp_profile *with_locations_at(sp_arena *a, fx *f, const uint64_t *addr, uint32_t n)
{
    sp_profile *p = many_stacks(a, f, 300, 300);
    sp_location *l = sp_arena_calloc(a, 301 + n, sizeof *l);
    memcpy(l, p->locations, 301 * sizeof *l);
    sp_sample *sm = sp_arena_calloc(a, 300 + n, sizeof *sm);
    memcpy(sm, p->samples, 300 * sizeof *sm);
    for (uint32_t i = 0; i < n; i++) {
        l[301 + i] = (sp_location){.address = addr[i]};
        sm[300 + i].nlocations = 1;
        sm[300 + i].location_ids = sp_arena_calloc(a, 1, sizeof(uint32_t));
        sm[300 + i].location_ids[0] = 301 + i;
        sm[300 + i].value = 1000;
    }
    p->locations = l;
    p->nlocations = 301 + n;
    p->samples = sm;
    p->nsamples = 300 + n;
    return p;
}

/* Two locations whose hashes collide (I1: the index is a multimap; each id it gives is checked
 * against the row): the second, new, is not taken for the first, and after a restart each is
 * found as itself though the index gives both ids for either (the smallest cache is not loaded
 * whole, so the lookups go to the index). One row each, and each keeps its samples. */
static void locations_whose_hashes_collide_are_told_apart(void **state)
{
    fx *f = *state;
    uint64_t addr[2];
    colliding_addresses(&addr[0], &addr[1]);
    store *s;
    char dir[96];
    snprintf(dir, sizeof dir, "%s/collide", f->dir);
    const uint64_t *sets[3] = {addr, addr + 1, addr};
    const uint32_t nset[3] = {1, 1, 2};
    for (int round = 0; round < 3; round++) {
        open_indexed(dir, 1, 0, 0, &s);
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", with_locations_at(a, f, sets[round], nset[round]));
        write_ok(s, &b);
        sp_arena_free(a);
        store_close(s);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 300 + (round ? 2 : 1));
    }
    char sql[160];
    for (int i = 0; i < 2; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM location WHERE address = %llu AND mapping = 0 AND kind = 0",
                 (unsigned long long)addr[i]);
        assert_int_equal(sql_int(dir, sql), 1);
    }
    assert_int_equal(sql_int(dir, "SELECT count(DISTINCT hash) FROM location WHERE mapping = 0"),
                     1); /* the collision the test is about */
    open_indexed(dir, 1, 0, 0, &s);
    store_stacks st = select_from(s, f, "t1", CPU);
    int64_t big = 0;
    for (size_t i = 0; i < st.nstacks; i++)
        if (st.stacks[i].value == 2000)
            big++;
    assert_int_equal(big, 2); /* each address's stack: its two samples of 1000 */
    store_close(s);
}

/* The same load with the hash index (I2 of sqlite_dict.c): the cache overflows (four times over)
 * and nothing is keyed, neither ahead nor when the cache forgets; every row is found again, in
 * the same process and after a restart, one row per content. The index holds them all. */
static void with_the_hash_index_nothing_is_keyed(void **state)
{
    fx *f = *state;
    enum { ROUND = 4000, ROUNDS = 15 };
    store_close(f->s);
    store_options o = opts(f->dir);
    o.cache_bytes = (size_t)16 << 20;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    for (int pass = 0; pass < 3; pass++) {
        for (int r = 1; r <= ROUNDS; r++) {
            write_new_locations(f, ROUND, r);
            assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"),
                             (int64_t)(pass ? ROUNDS : r) * ROUND);
            assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location_key") +
                                 sql_int(f->dir, "SELECT count(*) FROM stack_key"),
                             0);
        }
        store_stats st;
        store_stats_get(f->s, &st);
        assert_int_equal(st.index_rows, 2 * ROUNDS * ROUND); /* the locations and the stacks */
        assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total,
                         (int64_t)(pass + 1) * ROUNDS * ROUND);
        if (pass == 1) { /* a restart builds the index from the tables */
            store_close(f->s);
            f->s = NULL;
            assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
        }
    }
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='location_keyed'"), 0);
    assert_keys_whole(f->dir);
}

/* The hash index hands over to the key tables (I4 of sqlite_dict.c): with room for 40,000 rows a
 * table, keying ahead resumes once it holds half that (and the cache is half full: round 9), so
 * when it gives up (round 11, the 40,001st location) little is left to key at once; from then on
 * the key tables find every row, in the same process and after a restart. */
static void the_hash_index_hands_over_to_the_key_tables(void **state)
{
    fx *f = *state;
    enum { SLICE = 16384, ROUND = 4000, ROUNDS = 15 };
    store_close(f->s);
    store_options o = opts(f->dir);
    o.cache_bytes = (size_t)16 << 20;
    o.index_rows = 40000;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 1; r <= ROUNDS; r++) {
            write_new_locations(f, ROUND, r);
            int64_t rows = sql_int(f->dir, "SELECT count(*) FROM location");
            int64_t keyed = sql_int(f->dir, "SELECT value FROM meta WHERE key='location_keyed'");
            store_stats st;
            store_stats_get(f->s, &st);
            assert_int_equal(rows, (int64_t)(pass ? ROUNDS : r) * ROUND);
            if (pass)
                continue;
            if (r < 9)
                assert_int_equal(keyed, 0);
            if (r == 10) { /* the index still holds every row, and keying has caught up */
                assert_int_equal(st.index_rows, 2 * 40000);
                assert_true(rows - keyed < SLICE);
            }
            if (r >= 11) /* given up (stacks and locations) */
                assert_int_equal(st.index_rows + st.index_bytes, 0);
        }
        assert_keys_whole(f->dir);
        assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total,
                         (int64_t)(pass + 1) * ROUNDS * ROUND);
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    }
}

/* Rows new to a store whose cache overflowed are inserted without a lookup: the hash index
 * (I2 of sqlite_dict.c) knows they are new. Each round brings 600 functions, 600 locations
 * and 1500 stacks never seen (start lines and addresses moved by the round); the smallest cache
 * (102 functions, 256 locations, 512 stacks) overflows in the first. Rows written again, in the
 * same process and after a restart (the index is built again from the tables), are looked up
 * and found: one row per content, and the counter of skipped lookups does not move for them. */
static sp_profile *round_stacks(sp_arena *a, fx *f, int round)
{
    sp_profile *p = many_stacks(a, f, 600, 1500);
    p->nfunctions = 601;
    p->functions = sp_arena_calloc(a, p->nfunctions, sizeof *p->functions);
    for (uint32_t i = 1; i < p->nlocations; i++) {
        p->functions[i] = (sp_function){
            .name = S_MAIN, .filename = S_FILE, .start_line = round * 100000 + (int64_t)i};
        sp_location *l = &p->locations[i];
        l->address += (uint64_t)round << 24;
        l->nlines = 1;
        l->lines = sp_arena_calloc(a, 1, sizeof *l->lines);
        l->lines[0] = (sp_line){.function_id = i, .line = 3};
    }
    return p;
}

static uint64_t lookups_skipped(store *s)
{
    store_stats st;
    store_stats_get(s, &st);
    return st.lookups_skipped;
}

static void new_rows_beyond_the_cache_need_no_lookup(void **state)
{
    fx *f = *state;
    store_close(f->s);
    store_options o = opts(f->dir);
    o.cache_bytes = 1;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    for (int round = 0; round < 4; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", round_stacks(a, f, round));
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), 4 * 600);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 4 * 600);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 4 * 1500);
    /* Every new function, and every new location and stack of rounds 1-3 (the first fills the
     * cache, which holds all it saw until then), but a false positive or two needed no lookup. */
    uint64_t skipped = lookups_skipped(f->s);
    print_message("lookups skipped: %llu of %d new rows\n", (unsigned long long)skipped, 4 * 2700);
    assert_true(skipped >= (4 * 600 + 3 * 2100) * 99 / 100);
    assert_true(skipped <= 4 * 2700);

    for (int restart = 0; restart < 2; restart++) {
        /* The same rounds again: all found, nothing skipped, nothing inserted. */
        uint64_t before = lookups_skipped(f->s);
        for (int round = 0; round < 4; round++) {
            sp_arena *a = sp_arena_new(0);
            sp_batch b = batch1(a, "t1", round_stacks(a, f, round));
            write_ok(f->s, &b);
            sp_arena_free(a);
        }
        assert_int_equal(lookups_skipped(f->s), before);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), 4 * 600);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 4 * 600);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 4 * 1500);
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    }
    /* After a restart the filter is whole again: a new round's rows skip their lookups. */
    sp_arena *a = sp_arena_new(0);
    sp_batch b = batch1(a, "t1", round_stacks(a, f, 9));
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_true(lookups_skipped(f->s) >= 2700 * 99 / 100);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), 5 * 600);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 5 * 600);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 13 * 1500); /* 3 x 4 + 1 */
}

/* A dictionary that fits is loaded whole at start-up (deep stacks too): the same stacks written
 * after a restart are found in memory, no row is inserted twice and no key row is needed. */
static void dictionary_loaded_at_start_up(void **state)
{
    fx *f = *state;
    for (int round = 0; round < 2; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = many_stacks(a, f, 600, 600);
        /* the last sample: a 600-frame stack (a blob of 1073 bytes) */
        sp_sample *deep = &p->samples[599];
        deep->nlocations = 600;
        deep->location_ids = sp_arena_calloc(a, 600, sizeof *deep->location_ids);
        for (uint32_t i = 0; i < 600; i++)
            deep->location_ids[i] = i + 1;
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
        store_close(f->s);
        open_store(f);
    }
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 600);
    assert_int_equal(sql_int(f->dir, "SELECT max(length(locs)) FROM stack"), 1073);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 600);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack_key"), 0);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 1200);
}

static void retention_deletes_old_data_and_keeps_new(void **state)
{
    fx *f = *state;
    /* Old data at t0 - 200 h (stack main;qux only there), new data at t0. */
    int64_t old = f->t0 - 200 * HOUR;
    sp_arena *a = sp_arena_new(0);
    sp_profile *po = mkprofile(a, CPU, "api", old);
    attach(a, add_sample(a, po, STK_MQ, 7, old + SEC), 0x0001);
    attach(a, add_sample(a, po, STK_MFB, 5, old + SEC), 0x0001);
    sp_profile *pn = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, pn, STK_MFB, 11, f->t0 + SEC), 0x0002);
    sp_batch b = {0};
    b.tenant = "t1";
    b.profiles = sp_arena_calloc(a, 2, sizeof *b.profiles);
    b.profiles[0] = po;
    b.profiles[1] = pn;
    b.nprofiles = 2;
    sp_span spans[2];
    memset(spans, 0, sizeof spans);
    span_id(1, spans[0].span_id);
    spans[0].start_ns = (uint64_t)old;
    spans[0].end_ns = (uint64_t)old + 1;
    span_id(2, spans[1].span_id);
    spans[1].start_ns = (uint64_t)f->t0;
    spans[1].end_ns = (uint64_t)f->t0 + 1;
    b.spans = spans;
    b.nspans = 2;
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 2);

    /* Simulate that the old stack was last written long ago (the test cannot wait 200 h). */
    store_close(f->s);
    /* The old data's first stack (main;qux) is the stack only it uses. */
    set_pragma(f->dir, "UPDATE stack SET seen=seen-300 WHERE id=(SELECT min(id) FROM stack);"
                       "UPDATE location SET seen=seen-300 WHERE address=20480;"
                       "UPDATE function SET seen=seen-300 WHERE name='qux'");
    open_store(f);

    sp_err err = {0};
    assert_int_equal(store_retention_run(f->s, wall_ns(), &err), 0);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 11);
    assert_int_equal(value_of(&st, "main;foo;bar"), 11);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_chunk"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span"), 1);
    /* The stack only the old data used is gone, with its no longer used location. */
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), 3);
    store_spans out;
    uint8_t trace[16] = {0};
    assert_int_equal(store_trace_spans(f->s, "t1", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, 1);
    store_stats stats;
    store_stats_get(f->s, &stats);
    assert_int_equal(stats.retention_runs, 1);
    assert_true(stats.rows_deleted >= 6);

    /* New writes after a sweep still work and reuse what is left. */
    write_services(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 611);
}

static void retention_in_small_chunks_deletes_everything_old(void **state)
{
    fx *f = *state;
    store_close(f->s);
    store_options o = opts(f->dir);
    o.retention_chunk_rows = 3;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    int64_t old = f->t0 - 300 * HOUR;
    for (int k = 0; k < 4; k++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, k % 2 ? "a" : "b", old);
        for (int i = 0; i < 20; i++)
            attach(a, add_sample(a, p, i % 2 ? STK_MFB : STK_MB, 1, old + i * 10 * SEC),
                   0x100 + (uint64_t)i);
        sp_profile *pn = mkprofile(a, CPU, "a", f->t0);
        add_sample(a, pn, STK_MF, 1, f->t0);
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        b = batch1(a, "t1", pn);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    /* 20 old buckets × 4 transactions, and the new bucket once per transaction. */
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 84);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_chunk"), 80);
    assert_int_equal(store_retention_run(f->s, wall_ns(), &err), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 4);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_chunk"), 0);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 4);
}

static void full_disk_rolls_back_the_whole_batch(void **state)
{
    fx *f = *state;
    store_close(f->s);
    store_options o = opts(f->dir);
    o.max_db_bytes = 200 * 1024;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    write_services(f);
    /* Batches of many distinct stacks until the cap is hit. */
    int rc = 0;
    int64_t committed = 600;
    for (int round = 0; round < 200 && !rc; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "big", f->t0);
        p->nlocations = 64;
        sp_location *locs = sp_arena_calloc(a, 64, sizeof *locs);
        memcpy(locs, p->locations, NLOC * sizeof *locs);
        for (uint32_t i = NLOC; i < 64; i++) {
            locs[i].mapping_id = 1;
            locs[i].address = (uint64_t)round * 100000 + i;
        }
        p->locations = locs;
        for (int k = 0; k < 60; k++) {
            uint32_t stk[40];
            for (int d = 0; d < 39; d++)
                stk[d] = NLOC + (uint32_t)((k * 7 + d * 13 + round) % (64 - NLOC));
            stk[39] = 0;
            add_sample(a, p, stk, 1, f->t0 + k * SEC);
        }
        sp_batch b = batch1(a, "t1", p);
        rc = store_write(f->s, &b, &err);
        if (!rc)
            committed += 60;
        sp_arena_free(a);
    }
    assert_int_equal(rc, SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "full"));
    assert_non_null(strstr(err.msg, "nothing of this batch was stored"));
    /* Everything acknowledged is there, nothing of the failed batch is. */
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, committed);
    /* The store stays usable: a small write into existing pages may still fit, reads work. */
    store_stats stats;
    store_stats_get(f->s, &stats);
    assert_true(stats.batches_failed >= 1);
    store_close(f->s);
    open_store(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, committed);
}

static void background_retention_thread_runs(void **state)
{
    fx *f = *state;
    store_close(f->s);
    store_options o = opts(f->dir);
    o.retention_interval_ns = 50 * 1000000LL;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    int64_t old = f->t0 - 400 * HOUR;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", old);
    add_sample(a, p, STK_MFB, 1, old);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_stats st;
    for (int i = 0; i < 200; i++) {
        store_stats_get(f->s, &st);
        if (st.retention_runs > 0 && st.rows_deleted > 0)
            break;
        usleep(20000);
    }
    assert_true(st.rows_deleted >= 1);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 0);
}

/* A transaction that fails after writing new stack and location rows (or while keying them, or
 * inserting them) is rolled back whole, and the writer forgets what it did: its cache, the rows
 * only the cache indexed, the rows waiting and its watermarks are those of the file again. Writing
 * everything again afterwards, in the same process and after a restart, adds values and no
 * dictionary row. The failure is a trigger on the table named, added from a second connection (the
 * store has no fault hooks); the default cache keys nothing (every row is unkeyed), the smallest
 * keys all the time. */
static void failed_transaction_leaves_keys_and_cache_consistent(void **state)
{
    fx *f = *state;
    static const struct {
        size_t cache, index_rows;
        const char *table;
    } cases[] = {{0, 0, "sample_chunk"},
                 {1, 0, "sample_chunk"},
                 {1, 1, "sample_chunk"},
                 {1, 1, "stack_key"},
                 {1, 1, "location_key"},
                 {1, 0, "location"}, /* new rows go in many to a statement (sqlite_newrows.c) */
                 {0, 0, "stack"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/c%zu", f->dir, c);
        store *s;
        open_indexed(dir, cases[c].cache, 0, cases[c].index_rows, &s);
        for (int r = 0; r < 5; r++)
            write_round_ok(s, f->t0, r);
        char sql[512];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE inject(x); INSERT INTO inject VALUES(1);"
                 "CREATE TRIGGER inject_%s BEFORE INSERT ON %s WHEN EXISTS(SELECT 1 FROM inject) "
                 "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
                 cases[c].table, cases[c].table);
        sql_exec(dir, sql);
        int64_t stacks = sql_int(dir, "SELECT count(*) FROM stack");
        int64_t keyed = sql_int(dir, "SELECT value FROM meta WHERE key='stack_keyed'");
        sp_err err = {0};
        int rc = 0;
        /* Rounds until one fails (keying starts when the small cache is half full). */
        int r = 5;
        for (; r < 12 && !(rc = write_round(s, f->t0, r, &err)); r++)
            stacks += ROUND_STACKS, keyed = sql_int(dir, "SELECT value FROM meta WHERE "
                                                         "key='stack_keyed'");
        if (!rc)
            fail_msg("case %zu: no failure injected on %s", c, cases[c].table);
        assert_non_null(strstr(err.msg, "injected failure"));
        assert_non_null(strstr(err.msg, "nothing of this batch was stored"));
        /* Nothing of the failed round is in the file. */
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), stacks);
        assert_int_equal(sql_int(dir, "SELECT value FROM meta WHERE key='stack_keyed'"), keyed);
        assert_keys_whole(dir);
        sql_exec(dir, "DELETE FROM inject");
        int64_t expect = (int64_t)r * ROUND_STACKS;
        for (int pass = 0; pass < 2; pass++) {
            /* Every round again, the failed one included: one row per content. */
            for (int k = 0; k <= r; k++)
                write_round_ok(s, f->t0, k);
            expect += (int64_t)(r + 1) * ROUND_STACKS;
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"),
                             (int64_t)(r + 1) * ROUND_STACKS);
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"),
                             (int64_t)(r + 1) * ROUND_LOCS + 1);
            assert_int_equal(total_k(s, f->a), expect);
            assert_keys_whole(dir);
            store_close(s);
            open_indexed(dir, cases[c].cache, 0, cases[c].index_rows, &s);
            assert_int_equal(total_k(s, f->a), expect);
        }
        store_close(s);
    }
}

/* The disk fills (size cap) while every row written is unkeyed: the failed transaction leaves
 * the file's key tables whole, and after a restart, too small a cache to load the dictionary,
 * every row committed is found again. */
static void full_disk_with_unkeyed_rows_finds_them_after_restart(void **state)
{
    fx *f = *state;
    store *s;
    store_close(f->s);
    f->s = NULL;
    open_with(f->dir, 0, 256 * 1024, &s);
    sp_err err = {0};
    int r = 0, rc = 0;
    for (; r < 200 && !(rc = write_round(s, f->t0, r, &err)); r++)
        ;
    assert_int_equal(rc, SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "full"));
    assert_true(r >= 3); /* more than the small cache loads whole */
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), (int64_t)r * ROUND_STACKS);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack WHERE id > (SELECT value FROM "
                                     "meta WHERE key='stack_keyed')"),
                     (int64_t)r * ROUND_STACKS);
    assert_int_equal(total_k(s, f->a), (int64_t)r * ROUND_STACKS);
    assert_keys_whole(f->dir);
    /* What still fits in the same process adds no row either. */
    if (write_round(s, f->t0, 0, &err) == 0)
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), (int64_t)r * ROUND_STACKS);
    store_close(s);
    open_with(f->dir, 1, 0, &f->s);
    int64_t before = total_k(f->s, f->a);
    for (int k = 0; k <= r; k++)
        write_round_ok(f->s, f->t0, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"),
                     (int64_t)(r + 1) * ROUND_STACKS);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"),
                     (int64_t)(r + 1) * ROUND_LOCS + 1);
    assert_int_equal(total_k(f->s, f->a), before + (int64_t)(r + 1) * ROUND_STACKS);
    assert_keys_whole(f->dir);
}

/* Retention deletes dictionary rows both keyed and unkeyed, the newest ones too (SQLite then
 * gives their ids again): the rows kept are still found, and those written again are one row
 * each, in the same process and after a restart. Old rounds are written at t0 (deleted), kept
 * ones with data 1000 h ahead (their `seen` hour is ahead of any cut); `order` decides whether
 * the deleted rows have the lowest ids or the highest. */
static void retention_of_keyed_and_unkeyed_rows(void **state)
{
    fx *f = *state;
    int64_t ahead = f->t0 + 1000 * HOUR;
    int c = 0;
    for (int order = 0; order < 2; order++)
        for (size_t mode = 0; mode < 3; mode++, c++) {
            /* the default cache; the smallest with key tables; the smallest with the index */
            size_t cache = mode > 0, index_rows = mode == 1;
            char dir[96];
            snprintf(dir, sizeof dir, "%s/c%d", f->dir, c);
            store *s;
            open_indexed(dir, cache, 0, index_rows, &s);
            for (int k = 0; k < 2; k++)
                for (int r = 0; r < 4; r++) {
                    int old = (k == 0) == (order == 0);
                    write_round_ok(s, old ? f->t0 : ahead, old ? r : 10 + r);
                }
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 8 * ROUND_STACKS);
            if (index_rows != 1)
                assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack_key"), 0);
            else
                assert_true(sql_int(dir, "SELECT count(*) FROM stack_key") > 0);
            sp_err err = {0};
            assert_int_equal(store_retention_run(s, wall_ns() + 400 * HOUR, &err), 0);
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 4 * ROUND_STACKS);
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 4 * ROUND_LOCS + 1);
            assert_int_equal(total_k(s, f->a), 4 * ROUND_STACKS);
            assert_keys_whole(dir);
            int64_t expect = 4 * ROUND_STACKS;
            for (int pass = 0; pass < 2; pass++) {
                for (int r = 0; r < 4; r++) {
                    write_round_ok(s, f->t0, r);
                    write_round_ok(s, ahead, 10 + r);
                }
                expect += 8 * ROUND_STACKS;
                assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 8 * ROUND_STACKS);
                assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 8 * ROUND_LOCS + 1);
                assert_int_equal(total_k(s, f->a), expect);
                assert_keys_whole(dir);
                store_close(s);
                open_indexed(dir, cache, 0, index_rows, &s);
            }
            store_close(s);
        }
}

/* The hour a new row is marked with comes from the newest time of its profile's samples: found
 * by a pass over their timestamps, or taken from the producer's bound when it gives one
 * (sp_profile.facts_known, which the OTLP converter fills). Each round writes one new stack;
 * rounds 0 and 1 say the newest time is 1000 h ahead (a timestamp there; only the bound), round 2
 * gives a bound of no timestamps at all. */
static void the_newest_time_marks_new_rows_by_timestamps_or_the_producers_bound(void **state)
{
    fx *f = *state;
    int64_t ahead = f->t0 + 1000 * HOUR;
    uint32_t leaf[3] = {L_FOO, L_BAR, L_BAZ};
    for (int round = 0; round < 3; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", f->t0);
        add_sample(a, p, (uint32_t[]){L_MAIN, leaf[round], 0}, 1, round ? f->t0 + SEC : ahead);
        if (round) {
            p->facts_known = 1;
            p->obs_bound = 1;
            p->newest = round == 1 ? ahead : INT64_MIN;
        }
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM stack WHERE seen = %lld",
             (long long)(ahead / HOUR));
    assert_int_equal(sql_int(f->dir, sql), 2); /* rounds 0 and 1 */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM stack WHERE seen < %lld",
             (long long)(f->t0 / HOUR + 2));
    assert_int_equal(sql_int(f->dir, sql), 1); /* round 2: now's hour */
}

/* A stack a request brings again is the same row whatever the request's layout, with its
 * locations found by their prints: the second request has foo and bar at each other's places in
 * its location table; stacks that differ only in order stay apart; a frame index 0 (left out of
 * the stack) changes nothing. (It guarded a cache of stacks by a print made from their
 * locations' prints, tried and not kept: bench/RESULTS.md.) */
static void stacks_found_by_print_keep_their_frames_in_order(void **state)
{
    fx *f = *state;
    for (int swapped = 0; swapped < 2; swapped++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", f->t0);
        uint32_t foo = L_FOO, bar = L_BAR;
        if (swapped) {
            sp_location t = p->locations[L_FOO];
            p->locations[L_FOO] = p->locations[L_BAR];
            p->locations[L_BAR] = t;
            foo = L_BAR, bar = L_FOO;
        }
        int64_t scale = swapped ? 10 : 1;
        add_sample(a, p, (uint32_t[]){L_MAIN, foo, bar, 0}, 1 * scale, f->t0 + SEC);
        add_sample(a, p, (uint32_t[]){L_MAIN, bar, foo, 0}, 2 * scale, f->t0 + SEC);
        sp_sample *s = add_sample(a, p, (uint32_t[]){L_MAIN, foo, 0}, 4 * scale, f->t0 + SEC);
        if (!swapped) { /* leaf first: foo, (none), main */
            uint32_t *ids = sp_arena_calloc(a, 3, sizeof *ids);
            ids[0] = foo, ids[1] = 0, ids[2] = L_MAIN;
            s->location_ids = ids;
            s->nlocations = 3;
        }
        sp_print *prints;
        assert_int_equal(sp_location_prints(p, a, &prints), 0);
        p->location_prints = prints;
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;foo;bar"), 11);
    assert_int_equal(value_of(&st, "main;bar;foo"), 22);
    assert_int_equal(value_of(&st, "main;foo"), 44);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 3);
}

/* How many rows of table `what` the stack main;foo;bar (and its locations' functions) names
 * that were last seen before hour h. */
static int64_t mfb_rows_older_than(fx *f, const char *what, int64_t h)
{
    char sql[256];
    if (strcmp(what, "function") == 0)
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM function WHERE seen < %lld AND name IN "
                 "(SELECT id FROM string WHERE s IN ('main', 'foo', 'bar'))",
                 (long long)h);
    else if (strcmp(what, "location") == 0)
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM location WHERE seen < %lld AND address IN (%d, %d, %d)",
                 (long long)h, 0x1000 * L_MAIN, 0x1000 * L_FOO, 0x1000 * L_BAR);
    else
        snprintf(sql, sizeof sql, "SELECT count(*) FROM stack WHERE seen < %lld", (long long)h);
    return sql_int(f->dir, sql);
}

/* A stack or a location the writer finds by its print still has its rows refreshed when a later
 * hour writes it, and all of them: the stack, its locations, and their functions (retention's
 * margins delete a function before a location before a stack, and rely on each being refreshed
 * whenever the one naming it is). */
static void rows_found_by_print_are_refreshed_in_a_later_hour(void **state)
{
    fx *f = *state;
    const int64_t at[3] = {f->t0 + SEC, f->t0 + 2 * SEC, f->t0 + 10 * HOUR};
    for (int round = 0; round < 3; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", at[round]);
        add_sample(a, p, STK_MFB, 1 + round, at[round]);
        give_prints(a, p);
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    int64_t later = (f->t0 + 10 * HOUR) / HOUR;
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    assert_int_equal(mfb_rows_older_than(f, "stack", later - 1), 0);
    assert_int_equal(mfb_rows_older_than(f, "location", later - 1), 0);
    assert_int_equal(mfb_rows_older_than(f, "function", later - 1), 0);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;foo;bar"), 1 + 2 + 3);
}

/* Stacks found by their prints are the stacks their content names: the same row whatever the
 * request's location table (another order, another id for each location), a list that differs
 * only in order its own row, and a list of the same locations in another request found again. */
static void stacks_found_by_stack_print_are_their_content(void **state)
{
    fx *f = *state;
    for (int round = 0; round < 4; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", f->t0);
        uint32_t foo = L_FOO, bar = L_BAR;
        if (round % 2) { /* the request's table lists bar where foo was */
            sp_location t = p->locations[L_FOO];
            p->locations[L_FOO] = p->locations[L_BAR];
            p->locations[L_BAR] = t;
            foo = L_BAR, bar = L_FOO;
        }
        add_sample(a, p, (uint32_t[]){L_MAIN, foo, bar, 0}, 1, f->t0 + SEC);
        add_sample(a, p, (uint32_t[]){L_MAIN, bar, foo, 0}, 10, f->t0 + SEC);
        add_sample(a, p, (uint32_t[]){L_MAIN, foo, 0}, 100, f->t0 + SEC);
        give_prints(a, p);
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 3);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;foo;bar"), 4);
    assert_int_equal(value_of(&st, "main;bar;foo"), 40);
    assert_int_equal(value_of(&st, "main;foo"), 400);
}

/* The writer trusts a stack print as it trusts its own content hashes: a later request whose
 * sample carries a known print is stored under that stack without its locations being read
 * (here they differ, which no converter would send: it shows the print, not the content, found
 * the stack); in a later hour the content is resolved again. */
static void a_known_stack_print_is_found_without_its_locations(void **state)
{
    fx *f = *state;
    sp_print known = {0, 0};
    const int64_t at[3] = {f->t0 + SEC, f->t0 + 2 * SEC, f->t0 + 10 * HOUR};
    for (int round = 0; round < 3; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", at[round]);
        add_sample(a, p, round ? STK_MB : STK_MFB, 1 + round, at[round]);
        give_prints(a, p);
        if (!round)
            known = p->stack_prints[1];
        else
            ((sp_print *)p->stack_prints)[1] = known;
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;foo;bar"), 1 + 2);
    assert_int_equal(value_of(&st, "main;baz"), 3);
}

/* Two profiles of one request share its tables, the second five hours later in its data: a new
 * stack of the second reuses locations the first resolved (refreshed for the first's hour only),
 * so its print must not promise more; the next request of that later hour refreshes them. */
static void a_stack_print_promises_the_batchs_lowest_hour(void **state)
{
    fx *f = *state;
    int64_t later = f->t0 + 5 * HOUR;
    for (int round = 0; round < 2; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p2 = mkprofile(a, CPU, "api", later);
        add_sample(a, p2, STK_MFB, 10, later + SEC);
        sp_batch b = {.tenant = "t1", .arena = a};
        b.profiles = sp_arena_calloc(a, 2, sizeof *b.profiles);
        if (!round) { /* first main;foo now, on the same tables, then main;foo;bar later */
            sp_profile *p1 = mkprofile(a, CPU, "api", f->t0);
            p1->locations = p2->locations;
            p1->functions = p2->functions;
            p1->mappings = p2->mappings;
            add_sample(a, p1, STK_MF, 1, f->t0 + SEC);
            give_prints(a, p1);
            b.profiles[b.nprofiles++] = p1;
        }
        give_prints(a, p2);
        b.profiles[b.nprofiles++] = p2;
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    int64_t h = (later + SEC) / HOUR; /* (main;foo's own stack row stays at the first hour) */
    assert_int_equal(mfb_rows_older_than(f, "location", h - 1), 0);
    assert_int_equal(mfb_rows_older_than(f, "function", h - 1), 0);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;foo;bar"), 20);
    assert_int_equal(value_of(&st, "main;foo"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(dictionary_beyond_the_cache_is_found_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(dictionary_loaded_at_start_up, setup, teardown),
        cmocka_unit_test_setup_teardown(stacks_found_by_print_keep_their_frames_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rows_found_by_print_are_refreshed_in_a_later_hour, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stacks_found_by_stack_print_are_their_content, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_known_stack_print_is_found_without_its_locations, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_stack_print_promises_the_batchs_lowest_hour, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(with_the_hash_index_nothing_is_keyed, setup, teardown),
        cmocka_unit_test_setup_teardown(locations_whose_hashes_collide_are_told_apart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_hash_index_hands_over_to_the_key_tables, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(keying_ahead_waits_for_a_whole_slice, setup, teardown),
        cmocka_unit_test_setup_teardown(new_rows_beyond_the_cache_need_no_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(retention_deletes_old_data_and_keeps_new, setup, teardown),
        cmocka_unit_test_setup_teardown(retention_in_small_chunks_deletes_everything_old, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(full_disk_rolls_back_the_whole_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(old_rows_read_between_waiting_new_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(content_repeated_in_one_request_is_one_row, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failed_transaction_leaves_keys_and_cache_consistent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(full_disk_with_unkeyed_rows_finds_them_after_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retention_of_keyed_and_unkeyed_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(
            the_newest_time_marks_new_rows_by_timestamps_or_the_producers_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(background_retention_thread_runs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
