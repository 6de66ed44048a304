/* The store interface against the SQLite backend, on real files in temp dirs: what is written
 * is read back (stacks, totals, series, labels, spans, span extras, frame names). */
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

static void writes_batch_and_reads_back_stacks_and_totals(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC);
    add_sample(a, p, STK_MF, 10, f->t0 + 2 * SEC);
    add_sample(a, p, STK_MB, 20, f->t0 + 3 * SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);

    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.nstacks, 3);
    assert_int_equal(st.total, 60);
    assert_int_equal(value_of(&st, "main;foo;bar"), 30);
    assert_int_equal(value_of(&st, "main;foo"), 10);
    assert_int_equal(value_of(&st, "main;baz"), 20);

    store_query q = {.tenant = "t1", .type_id = CPU, .start_ns = f->t0, .end_ns = f->t0 + 60 * SEC};
    store_timeseries_set ts;
    sp_err err = {0};
    assert_int_equal(store_select_series(f->s, &q, 15 * SEC, NULL, 0, f->a, &ts, &err), 0);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.series[0].labels.n, 0);
    assert_int_equal(ts.series[0].npoints, 1);
    assert_int_equal(ts.series[0].points[0].t_ns, f->t0);
    assert_int_equal(ts.series[0].points[0].value, 60);
}

static void same_stack_twice_is_one_stack_row_with_summed_values(void **state)
{
    fx *f = *state;
    for (int round = 0; round < 2; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", f->t0);
        add_sample(a, p, STK_MFB, 5, f->t0 + 1 * SEC);
        add_sample(a, p, STK_MFB, 7, f->t0 + 2 * SEC); /* same stack, same bucket */
        sp_batch b = batch1(a, NULL, p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    store_stacks st = select_stacks(f, NULL, CPU, NULL, 0, 0, 0);
    assert_int_equal(st.nstacks, 1);
    assert_int_equal(value_of(&st, "main;foo;bar"), 24);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    /* One chunk per transaction, each holding the stack once with the sum of its bucket. */
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 2);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk WHERE total=12"), 2);
    assert_int_equal(chunk_entries(f->dir, "SELECT data FROM sample_chunk", 1), 2);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), 3);
    /* The anonymous tenant is where a NULL tenant went. */
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM tenant WHERE name='anonymous'"), 1);
}

static int64_t bucket_total(fx *f, int64_t t)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce(sum(total), -1) FROM sample_chunk WHERE bucket=%lld",
             (long long)(t / (10 * SEC)));
    return sql_int(f->dir, sql);
}

/* Each observation of a Sample goes to the 10 s bucket of its own time, in whatever order the
 * times come (the writer remembers the last bucket instead of dividing each time), and a value
 * without per-observation values is shared equally, the remainder to the first. */
static void observations_go_to_the_bucket_of_their_time_in_any_order(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    sp_sample *s = add_sample(a, p, STK_MFB, 23, f->t0 + 1 * SEC);
    static const int64_t at[] = {1, 15, 3, 25, 12}; /* seconds after t0 (a bucket's start) */
    s->nobs = 5;
    s->values = NULL; /* 23 in five: 7 (4 and the remainder 3), then 4 each */
    s->timestamps = sp_arena_calloc(a, s->nobs, sizeof *s->timestamps);
    for (uint32_t k = 0; k < s->nobs; k++)
        s->timestamps[k] = (uint64_t)(f->t0 + at[k] * SEC);
    s = add_sample(a, p, STK_MF, 9, f->t0 + 26 * SEC);
    s->values = NULL; /* one observation, its value the sample's */
    add_sample(a, p, STK_MB, 5, f->t0 + 2 * SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);

    assert_int_equal(bucket_total(f, f->t0), 7 + 4 + 5);
    assert_int_equal(bucket_total(f, f->t0 + 10 * SEC), 4 + 4);
    assert_int_equal(bucket_total(f, f->t0 + 20 * SEC), 4 + 9);
    assert_int_equal(bucket_total(f, f->t0 + 30 * SEC), -1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 23 + 9 + 5);
    assert_int_equal(value_of(&st, "main;foo;bar"), 23);
}

/* ---- closing buckets (sqlite_compact.c, M1-M6) ---------------------------------------------- */

#define MERGED_ID "4611686018427387904" /* SQS_CHUNK_MERGED_ID */

static void write_one(fx *f, const uint32_t *stk, int64_t v, int64_t t)
{
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", t);
    add_sample(a, p, stk, v, t);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
}

static int64_t bucket_rows(fx *f, int64_t t, const char *where)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM sample_chunk WHERE bucket=%lld%s",
             (long long)(t / (10 * SEC)), where);
    return sql_int(f->dir, sql);
}

/* M1, M5: a bucket written by three transactions becomes one merged chunk (its stacks summed,
 * its total kept), a lone chunk moves as it is, both into the closed id range, once a bucket
 * three later is written; every answer stays the same. */
static void closed_bucket_chunks_merge_into_one_and_answers_stay(void **state)
{
    fx *f = *state;
    write_one(f, STK_MFB, 5, f->t0 + 1 * SEC);
    write_one(f, STK_MB, 7, f->t0 + 2 * SEC);
    write_one(f, STK_MFB, 11, f->t0 + 3 * SEC);
    write_one(f, STK_MB, 13, f->t0 + 12 * SEC);
    assert_int_equal(bucket_rows(f, f->t0, ""), 3);
    store_query q = {.tenant = "t1", .type_id = CPU, .start_ns = f->t0, .end_ns = f->t0 + 60 * SEC};
    store_timeseries_set before, after;
    sp_err err = {0};
    assert_int_equal(store_select_series(f->s, &q, 10 * SEC, NULL, 0, f->a, &before, &err), 0);
    write_one(f, STK_MQ, 1, f->t0 + 42 * SEC); /* bucket + 4: closes + 0 and + 1 */
    assert_int_equal(bucket_rows(f, f->t0, ""), 1);
    assert_int_equal(bucket_rows(f, f->t0, " AND id >= " MERGED_ID " AND total = 23 AND seq = 3"),
                     1);
    assert_int_equal(
        chunk_entries(f->dir,
                      "SELECT data FROM sample_chunk WHERE id >= " MERGED_ID " AND total = 23", 1),
        2);
    assert_int_equal(bucket_rows(f, f->t0 + 12 * SEC, " AND id >= " MERGED_ID " AND total = 13"),
                     1);
    assert_int_equal(bucket_rows(f, f->t0 + 42 * SEC, " AND id < " MERGED_ID), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, f->t0, f->t0 + 20 * SEC);
    assert_int_equal(st.total, 36);
    assert_int_equal(value_of(&st, "main;foo;bar"), 16);
    assert_int_equal(value_of(&st, "main;baz"), 20);
    assert_int_equal(store_select_series(f->s, &q, 10 * SEC, NULL, 0, f->a, &after, &err), 0);
    assert_int_equal(after.n, 1);
    assert_int_equal(after.series[0].npoints, 3);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(after.series[0].points[i].t_ns, before.series[0].points[i].t_ns);
        assert_int_equal(after.series[0].points[i].value, before.series[0].points[i].value);
    }
    store_stats ss;
    store_stats_get(f->s, &ss);
    assert_int_equal(ss.chunks_merged, 3);
    assert_int_equal(ss.chunks_moved, 1);
}

/* M7: the fresh chunks of a bucket the writer remembers go without zstd (formats 0 and 2);
 * closing codes the bucket with zstd (formats 1 and 3), a lone chunk too, and stopping the store
 * closes the buckets still open. The answers stay the same throughout. Each round_batch is 100
 * stacks on consecutive ids, a chunk zstd shrinks. */
static int64_t chunks_where(fx *f, int64_t t, const char *packed, const char *range)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM sample_chunk WHERE bucket=%lld AND hex(substr(data, 1, 1)) "
             "IN %s AND id %s " MERGED_ID,
             (long long)(t / (10 * SEC)), packed, range);
    return sql_int(f->dir, sql);
}
#define PLAIN  "('00', '02')"
#define PACKED "('01', '03')"

static void fresh_chunks_go_plain_and_closed_ones_packed(void **state)
{
    fx *f = *state;
    write_round_ok(f->s, f->t0 + 1 * SEC, 0);
    write_round_ok(f->s, f->t0 + 2 * SEC, 1);
    write_round_ok(f->s, f->t0 + 12 * SEC, 2);
    assert_int_equal(chunks_where(f, f->t0, PLAIN, "<"), 2);
    assert_int_equal(chunks_where(f, f->t0 + 12 * SEC, PLAIN, "<"), 1);
    assert_int_equal(select_stacks(f, "k", CPU, NULL, 0, f->t0, f->t0 + 20 * SEC).total, 300);
    write_one(f, STK_MQ, 1, f->t0 + 42 * SEC); /* closes + 0 and + 1 */
    assert_int_equal(bucket_rows(f, f->t0, ""), 1);
    assert_int_equal(chunks_where(f, f->t0, PACKED, ">="), 1);
    assert_int_equal(bucket_rows(f, f->t0 + 12 * SEC, ""), 1);
    assert_int_equal(chunks_where(f, f->t0 + 12 * SEC, PACKED, ">="), 1);
    assert_int_equal(bucket_rows(f, f->t0 + 12 * SEC, " AND total = 100"), 1);
    store_stacks st = select_stacks(f, "k", CPU, NULL, 0, f->t0, f->t0 + 20 * SEC);
    assert_int_equal(st.total, 300);
    assert_int_equal(st.nstacks, 300);
    store_stats ss;
    store_stats_get(f->s, &ss);
    assert_int_equal(ss.chunks_merged, 2);
    assert_int_equal(ss.chunks_moved, 1);

    write_round_ok(f->s, f->t0 + 52 * SEC, 3); /* an open bucket when the store stops */
    assert_int_equal(chunks_where(f, f->t0 + 52 * SEC, PLAIN, "<"), 1);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(chunks_where(f, f->t0 + 52 * SEC, PACKED, ">="), 1);
    assert_int_equal(bucket_rows(f, f->t0 + 52 * SEC, ""), 1);
    assert_int_equal(bucket_rows(f, f->t0 + 42 * SEC, " AND id >= " MERGED_ID), 1);
    open_store(f);
    assert_int_equal(select_stacks(f, "k", CPU, NULL, 0, f->t0, f->t0 + 60 * SEC).total, 400);
    assert_int_equal(select_stacks(f, "k", CPU, NULL, 0, f->t0 + 50 * SEC, f->t0 + 60 * SEC).total,
                     100);
}

/* A sample with no frames is a stack too: its row (locs an empty blob, never NULL) is the first
 * new row of a fresh store here, inserted with the others of its statement (sqlite_newrows.c),
 * and found again by the next write. */
static void a_stack_with_no_frames_is_a_row_of_its_own(void **state)
{
    fx *f = *state;
    static const uint32_t none[] = {0};
    for (int round = 0; round < 2; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = mkprofile(a, CPU, "api", f->t0 + round * SEC);
        add_sample(a, p, none, 3, f->t0 + round * SEC);
        if (round) /* the first write's only new row has no bytes at all */
            add_sample(a, p, STK_MB, 4, f->t0 + round * SEC);
        sp_batch b = batch1(a, "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 2);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack WHERE length(locs) = 0 AND "
                                     "typeof(locs) = 'blob'"),
                     1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, f->t0, f->t0 + 9 * SEC);
    assert_int_equal(st.total, 10);
    assert_int_equal(value_of(&st, "main;baz"), 4);
}

/* M3: a write to a closed bucket adds a fresh chunk, merged into the closed one at the next
 * tick; a sender's clock a day ahead closes nothing that the wall clock has not. */
static void late_writes_merge_again_and_future_clocks_close_nothing(void **state)
{
    fx *f = *state;
    write_one(f, STK_MFB, 5, f->t0 + 1 * SEC);
    write_one(f, STK_MFB, 6, f->t0 + 2 * SEC);
    write_one(f, STK_MB, 1, f->t0 + 45 * SEC);
    assert_int_equal(bucket_rows(f, f->t0, ""), 1);
    write_one(f, STK_MFB, 7, f->t0 + 3 * SEC); /* late */
    assert_int_equal(bucket_rows(f, f->t0, ""), 2);
    write_one(f, STK_MB, 1, f->t0 + 55 * SEC); /* the clock moves on */
    assert_int_equal(bucket_rows(f, f->t0, " AND total = 18 AND id >= " MERGED_ID), 1);
    assert_int_equal(bucket_rows(f, f->t0, ""), 1);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, f->t0, f->t0 + 9 * SEC).total, 18);
    int64_t now = (wall_ns() / (10 * SEC)) * (10 * SEC);
    write_one(f, STK_MFB, 1, now + 1 * SEC);
    write_one(f, STK_MFB, 2, now + 2 * SEC);
    write_one(f, STK_MFB, 3, now + 86400 * SEC);
    assert_int_equal(bucket_rows(f, now, ""), 2);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, now, now + 9 * SEC).total, 3);
}

/* M4: a chunk that does not decode leaves its bucket as it is, and the transaction that would
 * have closed it commits. */
static void undecodable_chunk_leaves_its_bucket_alone(void **state)
{
    fx *f = *state;
    write_one(f, STK_MFB, 5, f->t0 + 1 * SEC);
    write_one(f, STK_MFB, 6, f->t0 + 2 * SEC);
    sql_exec(f->dir, "UPDATE sample_chunk SET data = x'09' WHERE seq = 2");
    write_one(f, STK_MB, 1, f->t0 + 45 * SEC);
    assert_int_equal(bucket_rows(f, f->t0, " AND id < " MERGED_ID), 2);
    assert_int_equal(bucket_rows(f, f->t0 + 45 * SEC, ""), 1);
}

/* M6: closing that fails (here a trigger refuses the merge's deletions) is rolled back to its
 * savepoint, counted and logged; the batch whose transaction ran it is stored all the same, and
 * every chunk stays, so the answers are whole. */
static void failed_closing_keeps_the_batch_and_the_chunks(void **state)
{
    fx *f = *state;
    write_one(f, STK_MFB, 5, f->t0 + 1 * SEC);
    write_one(f, STK_MFB, 6, f->t0 + 2 * SEC);
    sql_exec(f->dir, "CREATE TRIGGER no_merge BEFORE DELETE ON sample_chunk "
                     "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
    write_one(f, STK_MB, 7, f->t0 + 45 * SEC); /* closes the first bucket: refused */
    assert_int_equal(bucket_rows(f, f->t0, " AND id < " MERGED_ID), 2);
    assert_int_equal(bucket_rows(f, f->t0 + 45 * SEC, ""), 1);
    store_stats ss;
    store_stats_get(f->s, &ss);
    assert_int_equal(ss.compact_failed, 1);
    assert_int_equal(ss.chunks_merged, 0);
    assert_int_equal(ss.batches_failed, 0);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, f->t0, f->t0 + 50 * SEC);
    assert_int_equal(st.total, 18);
    assert_int_equal(value_of(&st, "main;foo;bar"), 11);
    assert_int_equal(value_of(&st, "main;baz"), 7);
}

static void label_matchers_select_series(void **state)
{
    fx *f = *state;
    write_services(f);
    store_matcher eq = {"service_name", "db", STORE_MATCH_EQ};
    store_stacks st = select_stacks(f, "t1", CPU, &eq, 1, 0, 0);
    assert_int_equal(st.total, 200);
    assert_int_equal(value_of(&st, "main;baz"), 200);

    store_matcher neq = {"service_name", "db", STORE_MATCH_NEQ};
    st = select_stacks(f, "t1", CPU, &neq, 1, 0, 0);
    assert_int_equal(st.total, 400);

    store_matcher re = {"service_name", "a.*|w.b", STORE_MATCH_RE};
    st = select_stacks(f, "t1", CPU, &re, 1, 0, 0);
    assert_int_equal(st.total, 400);

    /* Anchored: "ap" does not match "api". */
    store_matcher re2 = {"service_name", "ap", STORE_MATCH_RE};
    st = select_stacks(f, "t1", CPU, &re2, 1, 0, 0);
    assert_int_equal(st.total, 0);

    store_matcher nre[] = {{"service_name", "api", STORE_MATCH_NRE},
                           {"env", "prod", STORE_MATCH_EQ}};
    st = select_stacks(f, "t1", CPU, nre, 2, 0, 0);
    assert_int_equal(st.total, 200);

    /* A missing label matches as "". */
    store_matcher missing = {"region", "", STORE_MATCH_EQ};
    st = select_stacks(f, "t1", CPU, &missing, 1, 0, 0);
    assert_int_equal(st.total, 600);

    /* The virtual __profile_type__ label, as Grafana sends it. */
    store_matcher pt = {"__profile_type__", CPU, STORE_MATCH_EQ};
    st = select_stacks(f, "t1", NULL, &pt, 1, 0, 0);
    assert_int_equal(st.total, 600);

    /* A parsed selector works the same. */
    store_selector sel;
    sp_err err = {0};
    assert_int_equal(
        store_parse_selector(CPU "{service_name=~\"api|web\", env!=\"dev\"}", f->a, &sel, &err), 0);
    st = select_stacks(f, "t1", sel.type_id, sel.matchers, sel.nmatchers, 0, 0);
    assert_int_equal(st.total, 100);

    /* A bad regex is the caller's error. */
    store_matcher bad = {"service_name", "(", STORE_MATCH_RE};
    store_query q = {.tenant = "t1", .matchers = &bad, .nmatchers = 1};
    store_stacks out;
    assert_int_equal(store_select_stacks(f->s, &q, f->a, &out, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "regular expression"));
}

static void label_names_values_series_and_types(void **state)
{
    fx *f = *state;
    write_services(f);
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, WALL, "api", f->t0);
    add_sample(a, p, STK_MF, 1, f->t0 + SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);

    sp_err err = {0};
    store_query q = {.tenant = "t1", .start_ns = f->t0, .end_ns = f->t0 + HOUR};
    store_strings s;
    assert_int_equal(store_profile_types(f->s, &q, f->a, &s, &err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0], CPU);
    assert_string_equal(s.v[1], WALL);

    assert_int_equal(store_label_names(f->s, &q, f->a, &s, &err), 0);
    const char *want[] = {"__name__",
                          "__period_type__",
                          "__period_unit__",
                          "__profile_type__",
                          "__type__",
                          "__unit__",
                          "env",
                          "service_name"};
    assert_int_equal(s.n, 8);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(s.v[i], want[i]);

    store_matcher pt = {"__profile_type__", CPU, STORE_MATCH_EQ};
    q.matchers = &pt;
    q.nmatchers = 1;
    assert_int_equal(store_label_values(f->s, &q, "service_name", f->a, &s, &err), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.v[0], "api");
    assert_string_equal(s.v[2], "web");
    assert_int_equal(store_label_values(f->s, &q, "env", f->a, &s, &err), 0);
    assert_int_equal(s.n, 2);

    const char *names[] = {"service_name", "env"};
    store_labelsets ls;
    assert_int_equal(store_series(f->s, &q, names, 2, f->a, &ls, &err), 0);
    assert_int_equal(ls.n, 3);
    assert_int_equal(ls.sets[0].n, 2);
    assert_string_equal(ls.sets[0].labels[0].name, "env");
    assert_string_equal(ls.sets[0].labels[0].value, "dev");
    assert_string_equal(ls.sets[0].labels[1].value, "web");

    /* Outside the time range there is nothing. */
    store_query late = {.tenant = "t1", .start_ns = f->t0 + 2 * HOUR, .end_ns = f->t0 + 3 * HOUR};
    assert_int_equal(store_profile_types(f->s, &late, f->a, &s, &err), 0);
    assert_int_equal(s.n, 0);
    /* Another tenant sees nothing. */
    store_query other = {.tenant = "t2"};
    assert_int_equal(store_label_names(f->s, &other, f->a, &s, &err), 0);
    assert_int_equal(s.n, 0);
    store_stacks st = select_stacks(f, "t2", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.nstacks, 0);
}

static void time_range_selects_buckets(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MFB, 1, f->t0 + 1 * SEC);  /* bucket 0 */
    add_sample(a, p, STK_MFB, 2, f->t0 + 15 * SEC); /* bucket 1 */
    add_sample(a, p, STK_MB, 4, f->t0 + 25 * SEC);  /* bucket 2 */
    add_sample(a, p, STK_MB, 8, f->t0 + 125 * SEC); /* bucket 12 */
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);

    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, f->t0, f->t0 + 10 * SEC).total, 1);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, f->t0 + 10 * SEC, f->t0 + 30 * SEC).total,
                     6);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, f->t0 + 30 * SEC, 0).total, 8);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, f->t0 + 200 * SEC, 0).total, 0);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 15);

    /* Per step of 20 s from t0: [0,20) = 3, [20,40) = 4, [120,140) = 8. */
    store_query q = {
        .tenant = "t1", .type_id = CPU, .start_ns = f->t0, .end_ns = f->t0 + 300 * SEC};
    store_timeseries_set ts;
    sp_err err = {0};
    assert_int_equal(store_select_series(f->s, &q, 20 * SEC, NULL, 0, f->a, &ts, &err), 0);
    assert_int_equal(ts.n, 1);
    assert_int_equal(ts.series[0].npoints, 3);
    assert_int_equal(ts.series[0].points[0].value, 3);
    assert_int_equal(ts.series[0].points[1].t_ns, f->t0 + 20 * SEC);
    assert_int_equal(ts.series[0].points[1].value, 4);
    assert_int_equal(ts.series[0].points[2].t_ns, f->t0 + 120 * SEC);
    assert_int_equal(ts.series[0].points[2].value, 8);
}

static void select_series_groups_by_label(void **state)
{
    fx *f = *state;
    write_services(f);
    const char *by[] = {"env"};
    store_query q = {.tenant = "t1", .type_id = CPU, .start_ns = f->t0, .end_ns = f->t0 + 60 * SEC};
    store_timeseries_set ts;
    sp_err err = {0};
    assert_int_equal(store_select_series(f->s, &q, 60 * SEC, by, 1, f->a, &ts, &err), 0);
    assert_int_equal(ts.n, 2);
    assert_string_equal(ts.series[0].labels.labels[0].value, "dev");
    assert_int_equal(ts.series[0].points[0].value, 300);
    assert_string_equal(ts.series[1].labels.labels[0].value, "prod");
    assert_int_equal(ts.series[1].points[0].value, 300);
    assert_int_equal(store_select_series(f->s, &q, 0, NULL, 0, f->a, &ts, &err), SP_EINVAL);
}

static void span_stacks_read_only_that_span(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC), 0x1111);
    sp_sample *both = add_sample(a, p, STK_MF, 10, f->t0 + 2 * SEC);
    attach(a, both, 0x1111);
    attach(a, both, 0x2222); /* nested span: the sample counts for both */
    attach(a, add_sample(a, p, STK_MB, 20, f->t0 + 3 * SEC), 0x2222);
    add_sample(a, p, STK_MQ, 40, f->t0 + 4 * SEC); /* no span */
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);

    uint8_t ids[3][8];
    span_id(0x1111, ids[0]);
    span_id(0x2222, ids[1]);
    span_id(0x3333, ids[2]);
    store_query q = {.tenant = "t1", .type_id = CPU};
    store_stacks st;
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, ids, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 40);
    assert_int_equal(value_of(&st, "main;foo;bar"), 30);
    assert_int_equal(value_of(&st, "main;foo"), 10);
    assert_int_equal(value_of(&st, "main;qux"), 0);

    assert_int_equal(store_span_stacks(f->s, &q, ids + 1, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 30);
    assert_int_equal(value_of(&st, "main;baz"), 20);

    /* A set of spans merges (the shared sample counts once per span). */
    assert_int_equal(store_span_stacks(f->s, &q, ids, 3, f->a, &st, &err), 0);
    assert_int_equal(st.total, 70);

    /* Unknown span, other tenant, other type: nothing. */
    assert_int_equal(store_span_stacks(f->s, &q, ids + 2, 1, f->a, &st, &err), 0);
    assert_int_equal(st.nstacks, 0);
    store_query other = {.tenant = "t2", .type_id = CPU};
    assert_int_equal(store_span_stacks(f->s, &other, ids, 1, f->a, &st, &err), 0);
    assert_int_equal(st.nstacks, 0);
    store_query wall = {.tenant = "t1", .type_id = WALL};
    assert_int_equal(store_span_stacks(f->s, &wall, ids, 1, f->a, &st, &err), 0);
    assert_int_equal(st.nstacks, 0);

    /* The rows a span query reads are that span's only: 2 stacks for 0x1111. */
    assert_int_equal(chunk_entries(f->dir, "SELECT data FROM span_chunk WHERE span_id=4369", 2), 2);
    assert_int_equal(chunk_entries(f->dir, "SELECT data FROM span_chunk", 2), 4);
}

static void trace_spans_and_span_lookup(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_batch b = {0};
    b.tenant = "t1";
    sp_span spans[3];
    memset(spans, 0, sizeof spans);
    for (int i = 0; i < 3; i++) {
        spans[i].trace_id[15] = i < 2 ? 0xaa : 0xbb;
        span_id(0x100 + (uint64_t)i, spans[i].span_id);
        spans[i].service = "api";
        spans[i].name = i == 0 ? "GET /" : "query";
        spans[i].start_ns = (uint64_t)(f->t0 + (3 - i) * SEC);
        spans[i].end_ns = spans[i].start_ns + 500000000ULL;
        spans[i].pid = 42;
        spans[i].tid = 43 + i;
    }
    span_id(0x100, spans[1].parent_span_id);
    static const uint8_t extras[] = {0x12, 0x02, 0x12, 0x00};
    spans[0].extras = extras;
    spans[0].extras_len = sizeof extras;
    b.spans = spans;
    b.nspans = 3;
    write_ok(f->s, &b);
    sp_arena_free(a);

    uint8_t trace[16] = {0};
    trace[15] = 0xaa;
    store_spans out;
    sp_err err = {0};
    assert_int_equal(store_trace_spans(f->s, "t1", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, 2);
    /* Ascending start: span 0x101 started first. */
    assert_memory_equal(out.spans[0].span_id, spans[1].span_id, 8);
    assert_memory_equal(out.spans[0].parent_span_id, spans[0].span_id, 8);
    assert_string_equal(out.spans[0].name, "query");
    assert_string_equal(out.spans[1].service, "api");
    assert_int_equal(out.spans[1].end_ns - out.spans[1].start_ns, 500000000);
    assert_int_equal(out.spans[1].tid, 43);
    /* The extras blob comes back byte for byte with its row; a span without has none. */
    assert_int_equal(out.spans[1].extras_len, sizeof extras);
    assert_memory_equal(out.spans[1].extras, extras, sizeof extras);
    assert_null(out.spans[0].extras);
    assert_int_equal(out.spans[0].extras_len, 0);

    sp_span one;
    assert_int_equal(store_span_get(f->s, "t1", spans[2].span_id, f->a, &one, &err), 0);
    assert_int_equal(one.trace_id[15], 0xbb);
    assert_int_equal(one.pid, 42);
    assert_int_equal(store_span_get(f->s, "t2", spans[2].span_id, f->a, &one, &err), SP_ENOTFOUND);
    uint8_t none[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    assert_int_equal(store_span_get(f->s, "t1", none, f->a, &one, &err), SP_ENOTFOUND);
    assert_non_null(strstr(err.msg, "0909090909090909"));
    assert_int_equal(store_trace_spans(f->s, "t2", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, 0);
}

static uint8_t *put_len(uint8_t *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t len_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* ResourceSpans{1: res?, 2: ScopeSpans{1: scope?, 2: span}}, as otlp_span_extras() writes it
 * (the payloads are opaque to the store). */
static size_t mk_extras(uint8_t *b, const char *res, const char *scope, const char *span)
{
    size_t nr = res ? strlen(res) : 0, ns = scope ? strlen(scope) : 0, np = strlen(span);
    size_t nss = (scope ? 1 + len_len(ns) + ns : 0) + 1 + len_len(np) + np;
    uint8_t *p = b;
    if (res) {
        *p++ = 0x0a;
        p = put_len(p, nr);
        memcpy(p, res, nr);
        p += nr;
    }
    *p++ = 0x12;
    p = put_len(p, nss);
    if (scope) {
        *p++ = 0x0a;
        p = put_len(p, ns);
        memcpy(p, scope, ns);
        p += ns;
    }
    *p++ = 0x12;
    p = put_len(p, np);
    memcpy(p, span, np);
    p += np;
    return (size_t)(p - b);
}

static void count_problem(void *ud, const char *problem)
{
    char *seen = ud;
    strncat(seen, problem, 1023 - strlen(seen));
}

static void span_extras_share_resources_and_age_out(void **state)
{
    fx *f = *state;
    enum { N = 8 };
    static char big[301];
    memset(big, 'r', 300);
    static uint8_t blobs[N + 1][512];
    size_t lens[N + 1];
    char name[N + 1][16];
    for (int i = 0; i < 4; i++) { /* one resource + scope, a resource past one length byte */
        snprintf(name[i], sizeof name[i], "span-%d", i);
        lens[i] = mk_extras(blobs[i], big, "scope", name[i]);
    }
    lens[4] = mk_extras(blobs[4], "R2", NULL, "span-4");         /* resource only */
    lens[5] = mk_extras(blobs[5], NULL, "S2", "span-5");         /* scope only */
    static const uint8_t odd[] = {0x12, 0x82, 0x00, 0x12, 0x00}; /* non-minimal length: whole */
    memcpy(blobs[6], odd, sizeof odd);
    lens[6] = sizeof odd;
    lens[7] = mk_extras(blobs[7], "R3", NULL, "old-span"); /* only in an old hour */
    lens[8] = mk_extras(blobs[8], big, "scope", "later");  /* a later hour (seen moves) */
    int64_t old = f->t0 - 200 * HOUR;
    sp_span spans[N + 1];
    memset(spans, 0, sizeof spans);
    for (int i = 0; i <= N; i++) {
        spans[i].trace_id[0] = 0xdd;
        span_id(0x700 + (uint64_t)i, spans[i].span_id);
        spans[i].service = "api";
        spans[i].name = "x";
        spans[i].start_ns = (uint64_t)(i == 7 ? old : i == 8 ? f->t0 + 5 * HOUR : f->t0 + i * SEC);
        spans[i].end_ns = spans[i].start_ns + 1;
        spans[i].extras = blobs[i];
        spans[i].extras_len = (uint32_t)lens[i];
    }
    /* Two transactions (the resource cache across commits) and span 3 written twice (X5). */
    sp_batch b = {.tenant = "t1", .spans = spans, .nspans = 4};
    write_ok(f->s, &b);
    b.spans = spans + 3;
    b.nspans = N + 1 - 3;
    write_ok(f->s, &b);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span"), N + 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_extra"), N + 2);
    /* big+scope, R2, S2, R3: once each; the odd blob is stored whole (resource 0). */
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_resource"), 4);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_extra WHERE resource=0"), 1);
    char q[200];
    int64_t later = (f->t0 + 5 * HOUR) / HOUR;
    snprintf(q, sizeof q,
             "SELECT seen FROM span_resource WHERE id=(SELECT resource FROM span_extra WHERE "
             "hour=%lld)",
             (long long)later);
    assert_int_equal(sql_int(f->dir, q), later); /* X3 */

    store_spans out;
    sp_err err = {0};
    uint8_t trace[16] = {0xdd};
    assert_int_equal(store_trace_spans(f->s, "t1", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, N + 1);
    for (size_t k = 0; k < out.n; k++) { /* X1: byte for byte */
        int i = (int)(((unsigned)out.spans[k].span_id[6] << 8 | out.spans[k].span_id[7]) - 0x700);
        assert_true(i >= 0 && i <= N);
        assert_int_equal(out.spans[k].extras_len, lens[i]);
        assert_memory_equal(out.spans[k].extras, blobs[i], lens[i]);
    }
    char problems[1024] = "";
    uint64_t np = 0;
    assert_int_equal(store_check(f->dir, count_problem, problems, &np, &err), 0);
    assert_int_equal(np, 0);

    /* Retention: the old hour's span, its span_extra row and the resource only it used go. */
    assert_int_equal(store_retention_run(f->s, wall_ns(), &err), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span"), N);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_extra"), N + 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_resource"), 3);
    /* The cache forgot it (X4): written again, it is stored again and reads back. */
    spans[7].start_ns = spans[7].end_ns = (uint64_t)f->t0;
    b.spans = spans + 7;
    b.nspans = 1;
    write_ok(f->s, &b);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_resource"), 4);
    assert_int_equal(store_trace_spans(f->s, "t1", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, N + 1);
    for (size_t k = 0; k < out.n; k++)
        if (out.spans[k].span_id[7] == 7)
            assert_memory_equal(out.spans[k].extras, blobs[7], lens[7]);

    /* admin check: a dangling reference (7) and a resource seen before its rows (8). */
    store_close(f->s);
    f->s = NULL;
    set_pragma(f->dir, "UPDATE span_resource SET seen=0 WHERE data=x'0a025233'");
    assert_int_equal(store_check(f->dir, count_problem, problems, &np, &err), 0);
    assert_int_equal(np, 1);
    assert_non_null(strstr(problems, "1 span_extra rows whose resource does not exist or was "
                                     "last seen before them (invariant 8)"));
    set_pragma(f->dir, "DELETE FROM span_extra WHERE data=x'7370616e2d35'");
    problems[0] = 0;
    assert_int_equal(store_check(f->dir, count_problem, problems, &np, &err), 0);
    assert_int_equal(np, 1);
    assert_non_null(strstr(problems, "1 spans whose extras row does not exist (invariant 7)"));
    open_store(f);
}

static void unsymbolized_and_inlined_frames_are_named(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    const uint32_t nosym[] = {L_MAIN, L_NOSYM, 0};
    const uint32_t inl[] = {L_MAIN, L_INL, 0};
    add_sample(a, p, nosym, 3, f->t0 + SEC);
    add_sample(a, p, inl, 4, f->t0 + SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;native 0xdead libc.so.6"), 3);
    assert_int_equal(value_of(&st, "main;foo;inl"), 4);
    for (uint32_t i = 0; i < st.nnames; i++)
        assert_true(st.names[i][0] != 0);
}

/* store_span_totals answers per span what store_span_stacks sums to, reading no dictionary; the
 * period of the profiles written comes back with the stacks (the latest a series was given). */
static void span_totals_and_the_period(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    p->period = 10000000;
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC), 0x1111);
    attach(a, add_sample(a, p, STK_MB, 20, f->t0 + 2 * SEC), 0x1111);
    sp_sample *both = add_sample(a, p, STK_MFB, 5, f->t0 + 3 * SEC);
    attach(a, both, 0x2222);
    attach(a, both, 0x1111);
    sp_profile *w = mkprofile(a, WALL, "api", f->t0);
    attach(a, add_sample(a, w, STK_MQ, 1000, f->t0 + 1 * SEC), 0x1111);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    b = batch1(a, "t1", w);
    write_ok(f->s, &b);
    sp_arena_free(a);

    uint8_t ids[5][8];
    span_id(0x1111, ids[0]);
    span_id(0x2222, ids[1]);
    span_id(0x3333, ids[2]); /* nothing attached */
    span_id(0x1111, ids[3]); /* repeated */
    span_id(0, ids[4]);      /* invalid */
    store_query q = {.tenant = "t1", .type_id = CPU};
    store_span_total tot[5];
    sp_err err = {0};
    assert_int_equal(store_span_totals(f->s, &q, (const uint8_t(*)[8])ids, 5, tot, &err), 0);
    assert_int_equal(tot[0].value, 55);
    assert_int_equal(tot[0].stacks, 2);
    assert_int_equal(tot[1].value, 5);
    assert_int_equal(tot[1].stacks, 1);
    assert_int_equal(tot[2].value, 0);
    assert_int_equal(tot[2].stacks, 0);
    assert_int_equal(tot[3].value, 55);
    assert_int_equal(tot[3].stacks, 2);
    assert_int_equal(tot[4].value, 0);
    /* The same as the stacks, span by span. */
    for (int i = 0; i < 2; i++) {
        store_stacks st;
        assert_int_equal(
            store_span_stacks(f->s, &q, (const uint8_t(*)[8])ids[i], 1, f->a, &st, &err), 0);
        assert_int_equal(st.total, tot[i].value);
        assert_int_equal(st.nstacks, tot[i].stacks);
        assert_int_equal(st.period, 10000000);
    }
    /* Every type: the wall stack counts too; another tenant sees nothing. */
    q.type_id = NULL;
    assert_int_equal(store_span_totals(f->s, &q, (const uint8_t(*)[8])ids, 1, tot, &err), 0);
    assert_int_equal(tot[0].value, 1055);
    assert_int_equal(tot[0].stacks, 3);
    q.tenant = "t2";
    assert_int_equal(store_span_totals(f->s, &q, (const uint8_t(*)[8])ids, 1, tot, &err), 0);
    assert_int_equal(tot[0].value, 0);

    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).period, 10000000);
    assert_int_equal(select_stacks(f, "t1", WALL, NULL, 0, 0, 0).period, 0); /* not given */
    /* A later profile with another period: the series keeps the latest, across a restart. */
    a = sp_arena_new(0);
    p = mkprofile(a, CPU, "api", f->t0);
    p->period = 20000000;
    add_sample(a, p, STK_MFB, 1, f->t0 + 1 * SEC);
    b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_close(f->s);
    open_store(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).period, 20000000);
}

static void concurrent_writers_are_all_committed(void **state)
{
    fx *f = *state;
    enum { NT = 8, NB = 40 };
    pthread_t th[NT];
    writer_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (writer_arg){.s = f->s, .t0 = f->t0, .id = i, .batches = NB};
        pthread_create(&th[i], NULL, writer, &args[i]);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++)
        assert_int_equal(args[i].failures, 0);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, NT * NB * 3);
    assert_int_equal(value_of(&st, "main;foo;bar"), NT * NB);
    store_stats stats;
    store_stats_get(f->s, &stats);
    assert_int_equal(stats.batches_committed, NT * NB);
    assert_int_equal(stats.batches_failed, 0);
    assert_true(stats.transactions <= NT * NB);
    uint8_t id[8];
    span_id(0x5003, id);
    store_query q = {.tenant = "t1", .type_id = CPU};
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, NB * 2);
}

static void invalid_batch_is_rejected_alone(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    sp_sample *s = add_sample(a, p, STK_MFB, 1, f->t0);
    s->location_ids[0] = 900;
    sp_batch b = batch1(a, "t1", p);
    sp_err err = {0};
    assert_int_equal(store_write(f->s, &b, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "location_id 900 out of range (8 locations)"));
    p->samples[0].location_ids[0] = L_BAR;
    p->type_id = NULL;
    assert_int_equal(store_write(f->s, &b, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "no profile type id"));
    p->type_id = CPU;
    /* A location list checked against one profile's table is checked again against another's:
     * q shares p's samples (and their lists) but has a smaller location table. */
    sp_profile q = *p;
    q.nlocations = 3;
    sp_profile *two[] = {p, &q};
    sp_batch b2 = b;
    b2.profiles = two;
    b2.nprofiles = 2;
    assert_int_equal(store_write(f->s, &b2, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "profile 1 sample 0: location_id"));
    assert_non_null(strstr(err.msg, "out of range (3 locations)"));
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 1);
}

static void profiles_sharing_one_dictionary_are_stored_alike(void **state)
{
    fx *f = *state;
    /* The converter gives every service of a request its own profile over one dictionary. */
    sp_arena *a = sp_arena_new(0);
    sp_profile *p1 = mkprofile(a, CPU, "api", f->t0);
    sp_profile *p2 = mkprofile(a, CPU, "db", f->t0);
    p2->functions = p1->functions;
    p2->locations = p1->locations;
    p2->mappings = p1->mappings;
    add_sample(a, p1, STK_MFB, 3, f->t0 + SEC);
    add_sample(a, p2, STK_MFB, 4, f->t0 + SEC);
    add_sample(a, p2, STK_MB, 5, f->t0 + SEC);
    sp_batch b = {.tenant = "t1", .arena = a, .nprofiles = 2};
    sp_profile *ps[2] = {p1, p2};
    b.profiles = ps;
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_matcher db = {"service_name", "db", STORE_MATCH_EQ};
    store_stacks st = select_stacks(f, "t1", CPU, &db, 1, 0, 0);
    assert_int_equal(st.total, 9);
    assert_int_equal(value_of(&st, "main;foo;bar"), 4);
    assert_int_equal(value_of(&st, "main;baz"), 5);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 12);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 2);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM series"), 2);
}

/* A profile whose strings are strs (mapping 1's file is string 5) and whose locations 1..n-1
 * each have one line naming function i, with neither mapping nor frame type; the functions are
 * left for the caller to name. */
static sp_profile *one_line_per_location(sp_arena *a, fx *f, const char *const *strs,
                                         uint32_t nstrs, uint32_t n)
{
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    p->strings = (const char **)strs;
    p->nstrings = nstrs;
    p->nfunctions = n;
    p->functions = sp_arena_calloc(a, n, sizeof *p->functions);
    p->mappings[1].filename = 5;
    p->nlocations = n;
    for (uint32_t i = 1; i < n; i++) {
        sp_location *l = &p->locations[i];
        *l = (sp_location){.nlines = 1};
        l->lines = sp_arena_calloc(a, 1, sizeof(sp_line));
        l->lines[0].function_id = i;
    }
    return p;
}

/* Functions named with sp_frame_name() are not stored, whether the converter says it made them
 * (made_up, as the OTLP converter does: the name is then not compared) or the store finds out by
 * comparing the name with the location's; a name that does not fit its location is stored. */
static void synthetic_function_names_are_not_stored(void **state)
{
    fx *f = *state;
    /* sp_frame_name(): what the OTLP converter and store_frame_name() call unsymbolized frames. */
    static const char *const strs[] = {"",
                                       "main",
                                       "native 0xdead libc.so.6",
                                       "native 0xbeef libc.so.6",
                                       "native",
                                       "/lib/x86_64-linux-gnu/libc.so.6",
                                       "libc.so.6+0xdead"};
    for (int made_up = 0; made_up < 2; made_up++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = one_line_per_location(a, f, strs, 7, 5);
        p->functions[1].name = 1;
        p->functions[2].name = p->functions[2].system_name = 2;
        p->functions[3].name = 3;
        p->functions[2].made_up = p->functions[3].made_up = (uint8_t)made_up;
        p->functions[4].name = 2; /* the sender's: not made up, whatever it looks like */
        for (uint32_t i = 1; i < 5; i++) {
            p->locations[i].mapping_id = 1;
            p->locations[i].frame_type = 4;
        }
        p->locations[1].address = 0x1;
        p->locations[2].address = 0xdead;
        p->locations[3].address = 0xbeef;
        p->locations[4].address = 0xf00d; /* name does not fit this address: a real name */
        p->nseries = 1;
        const uint32_t stk[] = {1, 2, 3, 4, 0};
        add_sample(a, p, stk, 1, f->t0 + SEC);
        sp_batch b = batch1(a, made_up ? "t2" : "t1", p);
        write_ok(f->s, &b);
        sp_arena_free(a);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), 2);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location WHERE lines IS NULL"), 2);
        store_stacks st = select_stacks(f, made_up ? "t2" : "t1", CPU, NULL, 0, 0, 0);
        assert_int_equal(st.total, 1);
        assert_int_equal(value_of(&st, "main;native 0xdead libc.so.6;native 0xbeef "
                                       "libc.so.6;native 0xdead libc.so.6"),
                         1);
    }
}

/* A made-up name says what the location says, "unknown" included (no frame type, address or
 * mapping): the flame graph names such a frame "unknown" and a made-up name that fits its
 * location is never a function row. The same whether the location says it is bare (the OTLP
 * converter gave it its only line: the store then reads neither line nor function) or not: the
 * second pass finds the first's rows. */
static void made_up_names_of_bare_locations(void **state)
{
    fx *f = *state;
    static const char *const strs[] = {"",       "main",          "unknown", "native 0x0 libc.so.6",
                                       "native", "/lib/libc.so.6"};
    for (int bare = 0; bare < 2; bare++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = one_line_per_location(a, f, strs, 6, 4);
        p->functions[1].name = 1;
        for (uint32_t i = 2; i < 4; i++) {
            p->functions[i].name = p->functions[i].system_name = i;
            p->functions[i].made_up = 1;
            p->locations[i].bare = (uint8_t)bare;
        }
        p->locations[3].mapping_id = 1; /* "native 0x0 libc.so.6": address 0, but a mapping */
        p->locations[3].frame_type = 4;
        p->nseries = 1;
        const uint32_t stk[] = {1, 2, 3, 0};
        add_sample(a, p, stk, 1, f->t0 + SEC);
        const char *tenant = bare ? "t2" : "t1";
        sp_batch b = batch1(a, tenant, p);
        write_ok(f->s, &b);
        sp_arena_free(a);
        store_stacks st = select_stacks(f, tenant, CPU, NULL, 0, 0, 0);
        assert_int_equal(st.total, 1);
        assert_int_equal(value_of(&st, "main;unknown;native 0x0 libc.so.6"), 1);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function WHERE name = 'native 0x0 "
                                         "libc.so.6'"),
                         0);
        /* "unknown" has no 'x' to tell it apart from a sender's name: stored, as before. */
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function WHERE name = 'unknown'"),
                         1);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 3);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    }
}

static void span_stacks_narrowed_by_time_range(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + SEC), 0x1111);
    attach(a, add_sample(a, p, STK_MB, 20, f->t0 + 2 * HOUR), 0x1111);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    uint8_t id[8];
    span_id(0x1111, id);
    store_stacks st;
    sp_err err = {0};
    store_query all = {.tenant = "t1", .type_id = CPU};
    assert_int_equal(store_span_stacks(f->s, &all, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 50);
    /* Grafana's range: the span's time +- 30 s. */
    store_query around = {
        .tenant = "t1", .type_id = CPU, .start_ns = f->t0 - 30 * SEC, .end_ns = f->t0 + 31 * SEC};
    assert_int_equal(store_span_stacks(f->s, &around, (const uint8_t(*)[8])id, 1, f->a, &st, &err),
                     0);
    assert_int_equal(st.total, 30);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_hour"), 2);
}

static void attach_only_profiles_add_to_spans_not_totals(void **state)
{
    fx *f = *state;
    /* The profile first, without its span (the span was not known yet)... */
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MFB, 30, f->t0 + SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    /* ...then the correlator re-sends the same samples, attached, once the span arrived. */
    p->attach_only = 1;
    attach(a, &p->samples[0], 0x4242);
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 30);
    uint8_t id[8];
    span_id(0x4242, id);
    store_query q = {.tenant = "t1", .type_id = CPU};
    store_stacks st;
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 30);
    store_stats stats;
    store_stats_get(f->s, &stats);
    assert_int_equal(stats.samples_written, 1);
}

/* ---- the value chunk coding ---- */

/* ---- key tables under failures, retention and migration ------------------------------------ */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writes_batch_and_reads_back_stacks_and_totals, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(same_stack_twice_is_one_stack_row_with_summed_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(observations_go_to_the_bucket_of_their_time_in_any_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(label_matchers_select_series, setup, teardown),
        cmocka_unit_test_setup_teardown(closed_bucket_chunks_merge_into_one_and_answers_stay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(failed_closing_keeps_the_batch_and_the_chunks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(late_writes_merge_again_and_future_clocks_close_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(undecodable_chunk_leaves_its_bucket_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(fresh_chunks_go_plain_and_closed_ones_packed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_stack_with_no_frames_is_a_row_of_its_own, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(label_names_values_series_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(time_range_selects_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(select_series_groups_by_label, setup, teardown),
        cmocka_unit_test_setup_teardown(span_stacks_read_only_that_span, setup, teardown),
        cmocka_unit_test_setup_teardown(trace_spans_and_span_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(span_extras_share_resources_and_age_out, setup, teardown),
        cmocka_unit_test_setup_teardown(unsymbolized_and_inlined_frames_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(span_totals_and_the_period, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_batch_is_rejected_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(profiles_sharing_one_dictionary_are_stored_alike, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(synthetic_function_names_are_not_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(made_up_names_of_bare_locations, setup, teardown),
        cmocka_unit_test_setup_teardown(span_stacks_narrowed_by_time_range, setup, teardown),
        cmocka_unit_test_setup_teardown(attach_only_profiles_add_to_spans_not_totals, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(concurrent_writers_are_all_committed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
