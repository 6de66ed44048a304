/* The store interface against the SQLite backend, on real files in temp dirs. */
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

/* ---- tests ------------------------------------------------------------------------------------
 */

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

static void write_services(fx *f)
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

static void set_pragma(const char *dir, const char *sql);

/* A version 5 file (span rows without extras) migrates to 6 in place: its spans read back with
 * no extras, and spans written afterwards keep theirs. */
static void migrates_from_version_5_spans_without_extras(void **state)
{
    fx *f = *state;
    sp_span sp = {.service = "api", .name = "old", .start_ns = (uint64_t)f->t0};
    sp.trace_id[0] = 0xcc;
    span_id(0x501, sp.span_id);
    sp_batch b = {.tenant = "t1", .spans = &sp, .nspans = 1};
    write_ok(f->s, &b);
    store_close(f->s);
    f->s = NULL;
    set_pragma(f->dir, "DROP TABLE span_extra; DROP TABLE span_resource; ALTER TABLE span DROP "
                       "extra; PRAGMA user_version=5");
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 6);
    static const uint8_t extras[] = {0x12, 0x00};
    sp_span nw = sp;
    nw.name = "new";
    span_id(0x502, nw.span_id);
    nw.extras = extras;
    nw.extras_len = sizeof extras;
    b.spans = &nw;
    write_ok(f->s, &b);
    uint8_t trace[16] = {0xcc};
    store_spans out;
    sp_err err = {0};
    assert_int_equal(store_trace_spans(f->s, "t1", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, 2);
    assert_string_equal(out.spans[0].name, "old");
    assert_null(out.spans[0].extras);
    assert_string_equal(out.spans[1].name, "new");
    assert_int_equal(out.spans[1].extras_len, sizeof extras);
}

/* ---- span extras: resource once, span part appended (sqlite_extras.c X1-X5) ----------------- */

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

static void restart_reads_the_same_numbers(void **state)
{
    fx *f = *state;
    write_services(f);
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC), 0x1111);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_stacks before = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    store_close(f->s);
    f->s = NULL;
    open_store(f);
    store_stacks after = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(before.total, 630);
    assert_int_equal(after.total, before.total);
    assert_int_equal(after.nstacks, before.nstacks);
    assert_int_equal(value_of(&after, "main;foo;bar"), value_of(&before, "main;foo;bar"));
    uint8_t id[8];
    span_id(0x1111, id);
    store_query q = {.tenant = "t1", .type_id = CPU};
    store_stacks st;
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 30);
    /* Writes after a restart find the existing dictionary rows. */
    write_services(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 1230);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 3);
}

static void migrates_from_version_0(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    rm_rf(f->dir);
    mkdir(f->dir, 0700);
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=0", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 6);
    assert_int_equal(sql_int(f->dir, "PRAGMA application_id"), 0x53505246);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='bucket_ns'"),
                     10000000000LL);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='span_stack'"),
                     1);
    assert_int_equal(
        sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='sample_chunk'"), 1);
    /* Opening again does not migrate twice. */
    store_close(f->s);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 6);
}

static void set_pragma(const char *dir, const char *sql)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A version 1 file (values as one row per stack in sample and span_stack, hash indexes on stack
 * and location) is migrated to version 3 in place: its rows stay readable beside what is written
 * afterwards, its dictionary rows are found again through the key tables, and all ages out. */
static void migrates_from_version_1(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC), 0x1111);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_close(f->s);
    f->s = NULL;
    /* Turn the file into what version 1 wrote: the same values as v1 rows, no chunk tables. */
    set_pragma(f->dir,
               "INSERT INTO sample(series, bucket, stack, value) SELECT series, bucket, "
               "(SELECT id FROM stack), total FROM sample_chunk;"
               "INSERT INTO span_stack(hour, span_id, series, stack, value) SELECT hour, span_id, "
               "(SELECT series FROM sample_chunk), (SELECT id FROM stack), 30 FROM span_chunk;"
               "DROP TABLE sample_chunk; DROP TABLE span_chunk;"
               "DELETE FROM meta WHERE key='chunk_format';"
               "DROP TABLE symbol; DROP INDEX span_by_name; ALTER TABLE span DROP extra;"
               "DROP TABLE span_extra; DROP TABLE span_resource;"
               "DROP TABLE stack_key; DROP TABLE location_key; ALTER TABLE series DROP period;"
               "DELETE FROM meta WHERE key IN ('stack_keyed', 'location_keyed');"
               "CREATE INDEX stack_by_hash ON stack(hash);"
               "CREATE INDEX location_by_hash ON location(hash); PRAGMA user_version=1");
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample"), 1);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 6);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack_key"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location_key"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='stack_keyed'"),
                     sql_int(f->dir, "SELECT max(id) FROM stack"));
    assert_int_equal(
        sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='stack_by_hash'"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='chunk_format'"), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 30);
    assert_int_equal(value_of(&st, "main;foo;bar"), 30);
    uint8_t id[8];
    span_id(0x1111, id);
    store_query q = {.tenant = "t1", .type_id = CPU};
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 30);
    /* New writes go to chunks and add up with the version 1 rows. */
    a = sp_arena_new(0);
    p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 12, f->t0 + 1 * SEC), 0x1111);
    b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 42);
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 42);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 3);
    /* Retention ages both out. */
    assert_int_equal(store_retention_run(f->s, wall_ns() + 400 * HOUR, &err), 0);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_stack"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_chunk"), 0);
}

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

/* More stacks and locations than the writer's cache holds (the smallest cache: 512 stacks, 256
 * locations): new rows are found only through the cache until it overflows and they are keyed;
 * across restarts every row is still found, never inserted twice. */
static void dictionary_beyond_the_cache_is_found_again(void **state)
{
    fx *f = *state;
    store_close(f->s);
    store_options o = opts(f->dir);
    o.cache_bytes = 1;
    sp_err err = {0};
    assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    for (int round = 0; round < 3; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", many_stacks(a, f, 600, 1500));
        write_ok(f->s, &b);
        sp_arena_free(a);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1500);
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 600);
        /* Only rows above the watermark lack a key row. */
        assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack WHERE id <= (SELECT value "
                                         "FROM meta WHERE key='stack_keyed') AND id NOT IN "
                                         "(SELECT id FROM stack_key)"),
                         0);
        assert_true(sql_int(f->dir, "SELECT count(*) FROM stack_key") >= 512);
        assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 1500 * (round + 1));
        assert_int_equal(sql_int(f->dir, "SELECT period FROM series"), 10000000);
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open_sqlite(&f->s, &o, &err), 0);
    }
    /* Retention deletes the rows and their key rows; written again, they are one row each. */
    assert_int_equal(store_retention_run(f->s, wall_ns() + 400 * HOUR, &err), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack_key"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location_key"), 0);
    for (int round = 0; round < 2; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = batch1(a, "t1", many_stacks(a, f, 600, 1500));
        write_ok(f->s, &b);
        sp_arena_free(a);
    }
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1500);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 600);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack WHERE id <= (SELECT value "
                                     "FROM meta WHERE key='stack_keyed') AND id NOT IN "
                                     "(SELECT id FROM stack_key)"),
                     0);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 3000);
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

static void refuses_newer_schema_version(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    set_pragma(f->dir, "PRAGMA user_version=7");
    store_options o = opts(f->dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_null(s);
    assert_non_null(
        strstr(err.msg, "database schema version 7 is newer than this spanprof (6); upgrade"));
    /* Nothing was changed. */
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 7);
    set_pragma(f->dir, "PRAGMA user_version=6");
    open_store(f);
}

static void refuses_a_foreign_file(void **state)
{
    fx *f = *state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_store_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    FILE *fp = fopen(path, "w");
    fputs("this is not a database, it is a text file that is long enough to have a header.....",
          fp);
    fclose(fp);
    store_options o = opts(dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "not a SQLite database"));

    remove(path);
    set_pragma(dir, "CREATE TABLE users(id INTEGER)");
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "another program"));
    rm_rf(dir);
    (void)f;
}

static void read_only_data_dir_is_a_clear_error(void **state)
{
    fx *f = *state;
    store_close(f->s); /* no other threads while forking */
    f->s = NULL;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/ro", f->dir);
    assert_int_equal(mkdir(dir, 0555), 0);
    chmod(f->dir, 0755);
    /* root ignores permissions: check as an unprivileged user in a child process. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        store_options o = opts(dir);
        sp_err err = {0};
        store *s = NULL;
        int rc = store_open_sqlite(&s, &o, &err);
        if (rc != SP_EUNAVAIL)
            _exit(1);
        if (!strstr(err.msg, "is not writable") || !strstr(err.msg, dir))
            _exit(2);
        /* A writable lock file (left by an earlier run) in a read-only directory. */
        if (strstr(err.msg, "spanprof.db") == NULL)
            _exit(4);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* The lock file exists and is writable, the directory is not. */
    char lock[160];
    snprintf(lock, sizeof lock, "%s/spanprof.lock", dir);
    chmod(dir, 0755);
    FILE *lf = fopen(lock, "w");
    assert_non_null(lf);
    fclose(lf);
    chmod(lock, 0666);
    chmod(dir, 0555);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        store_options o = opts(dir);
        sp_err err = {0};
        store *s = NULL;
        int rc = store_open_sqlite(&s, &o, &err);
        if (!(rc == SP_EUNAVAIL && strstr(err.msg, "is not writable")))
            fprintf(stderr, "read-only open: rc=%d msg=%s\n", rc, err.msg);
        _exit(rc == SP_EUNAVAIL && strstr(err.msg, "is not writable") ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    chmod(dir, 0755);

    /* A data dir that is a file. */
    char file[128];
    snprintf(file, sizeof file, "%s/file", f->dir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    store_options o = opts(file);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "not a directory"));
}

static void second_spanprof_on_the_same_dir_is_refused(void **state)
{
    fx *f = *state;
    store_options o = opts(f->dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "in use by another spanprof"));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(err.msg, pid));
}

static void locked_database_is_a_clear_error(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    store_options o = opts(f->dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "locked by another process"));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    open_store(f);
}

typedef struct writer_arg {
    store *s;
    int64_t t0;
    int id, batches, failures;
} writer_arg;

static void *writer(void *arg)
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

static void durability_full_and_url_open(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    char url[128];
    snprintf(url, sizeof url, "sqlite://%s", f->dir);
    store_options o = {0};
    o.durability = STORE_DURABILITY_FULL;
    o.retention_interval_ns = -1;
    sp_err err = {0};
    assert_int_equal(store_open(&f->s, url, &o, &err), 0);
    write_services(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 600);
    store *s = NULL;
    /* (pyroscope+http:// URLs open the Pyroscope backend, tested with it.) */
    assert_int_equal(store_open(&s, "bogus://", &o, &err), SP_EINVAL);
    store_options none = {0};
    assert_int_equal(store_open(&s, NULL, &none, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "no data directory"));
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
        sp_profile *p = mkprofile(a, CPU, "api", f->t0);
        p->strings = (const char **)strs;
        p->nstrings = 7;
        p->nfunctions = 5;
        p->functions = sp_arena_calloc(a, 5, sizeof *p->functions);
        p->functions[1].name = 1;
        p->functions[2].name = p->functions[2].system_name = 2;
        p->functions[3].name = 3;
        p->functions[2].made_up = p->functions[3].made_up = (uint8_t)made_up;
        p->functions[4].name = 2; /* the sender's: not made up, whatever it looks like */
        p->mappings[1].filename = 5;
        p->nlocations = 5;
        for (uint32_t i = 1; i < 5; i++) {
            sp_location *l = &p->locations[i];
            l->mapping_id = 1;
            l->frame_type = 4;
            l->nlines = 1;
            l->lines = sp_arena_calloc(a, 1, sizeof(sp_line));
            l->lines[0].function_id = i;
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

#define ROUND_LOCS   64
#define ROUND_STACKS 100

/* Round r: ROUND_STACKS new three-frame stacks (value 1 each) over ROUND_LOCS unsymbolized
 * locations of its own and one every round shares, at time t. Content depends on r alone. */
static sp_batch round_batch(sp_arena *a, int64_t t, int r)
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
    return batch1(a, "k", p);
}

static int write_round(store *s, int64_t t, int r, sp_err *err)
{
    sp_arena *a = sp_arena_new(0);
    sp_batch b = round_batch(a, t, r);
    int rc = store_write(s, &b, err);
    sp_arena_free(a);
    return rc;
}

static void write_round_ok(store *s, int64_t t, int r)
{
    sp_err err = {0};
    if (write_round(s, t, r, &err))
        fail_msg("round %d: %s", r, err.msg);
}

static int64_t total_k(store *s, sp_arena *a)
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
static void assert_keys_whole(const char *dir)
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
}

static void open_with(const char *dir, size_t cache_bytes, uint64_t max_db_bytes, store **s)
{
    store_options o = opts(dir);
    o.cache_bytes = cache_bytes;
    o.max_db_bytes = max_db_bytes;
    sp_err err = {0};
    if (store_open_sqlite(s, &o, &err))
        fail_msg("open: %s", err.msg);
}

/* A transaction that fails after writing new stack and location rows (or while keying them) is
 * rolled back whole, and the writer forgets what it did: its cache, the rows only the cache
 * indexed and its watermarks are those of the file again. Writing everything again afterwards,
 * in the same process and after a restart, adds values and no dictionary row. The failure is
 * a trigger on the table named, added from a second connection (the store has no fault hooks);
 * the default cache keys nothing (every row is unkeyed), the smallest keys all the time. */
static void failed_transaction_leaves_keys_and_cache_consistent(void **state)
{
    fx *f = *state;
    static const struct {
        size_t cache;
        const char *table;
    } cases[] = {{0, "sample_chunk"}, {1, "sample_chunk"}, {1, "stack_key"}, {1, "location_key"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/c%zu", f->dir, c);
        store *s;
        open_with(dir, cases[c].cache, 0, &s);
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
            open_with(dir, cases[c].cache, 0, &s);
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
        for (size_t cache = 0; cache < 2; cache++, c++) {
            char dir[96];
            snprintf(dir, sizeof dir, "%s/c%d", f->dir, c);
            store *s;
            open_with(dir, cache, 0, &s);
            for (int k = 0; k < 2; k++)
                for (int r = 0; r < 4; r++) {
                    int old = (k == 0) == (order == 0);
                    write_round_ok(s, old ? f->t0 : ahead, old ? r : 10 + r);
                }
            assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 8 * ROUND_STACKS);
            if (!cache)
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
                open_with(dir, cache, 0, &s);
            }
            store_close(s);
        }
}

/* Version 2 and version 1 files with a dictionary larger than the cache loads at start-up:
 * migrated to 3, every row is keyed, and writing the same content again adds no row. */
static void migrates_a_large_dictionary_from_versions_2_and_1(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    for (int from = 2; from >= 1; from--) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/v%d", f->dir, from);
        store *s;
        open_with(dir, 0, 0, &s);
        for (int r = 0; r < 6; r++)
            write_round_ok(s, f->t0, r);
        store_close(s);
        /* What version 2 had: hash indexes, no key tables, no period. */
        sql_exec(dir,
                 "DROP TABLE symbol; DROP INDEX span_by_name; ALTER TABLE span DROP extra; DROP "
                 "TABLE span_extra; DROP TABLE span_resource; DROP TABLE stack_key; DROP "
                 "TABLE location_key; "
                 "ALTER TABLE series DROP "
                 "period; DELETE FROM meta WHERE key IN ('stack_keyed', 'location_keyed');"
                 "CREATE INDEX stack_by_hash ON stack(hash);"
                 "CREATE INDEX location_by_hash ON location(hash); PRAGMA user_version=2");
        int64_t before = 6 * ROUND_STACKS;
        if (from == 1) {
            /* and no chunk tables (the values written as chunks are dropped with them) */
            sql_exec(dir, "DROP TABLE sample_chunk; DROP TABLE span_chunk; DELETE FROM meta WHERE "
                          "key='chunk_format'; PRAGMA user_version=1");
            before = 0;
        }
        open_with(dir, 1, 0, &s);
        assert_int_equal(sql_int(dir, "PRAGMA user_version"), 6);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack_key"), 6 * ROUND_STACKS);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location_key"), 6 * ROUND_LOCS + 1);
        assert_int_equal(sql_int(dir, "SELECT value FROM meta WHERE key='stack_keyed'"),
                         sql_int(dir, "SELECT max(id) FROM stack"));
        assert_int_equal(sql_int(dir, "SELECT value FROM meta WHERE key='location_keyed'"),
                         sql_int(dir, "SELECT max(id) FROM location"));
        assert_int_equal(total_k(s, f->a), before);
        for (int r = 0; r < 7; r++)
            write_round_ok(s, f->t0, r);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 7 * ROUND_STACKS);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 7 * ROUND_LOCS + 1);
        assert_int_equal(total_k(s, f->a), before + 7 * ROUND_STACKS);
        assert_keys_whole(dir);
        store_close(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writes_batch_and_reads_back_stacks_and_totals, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(same_stack_twice_is_one_stack_row_with_summed_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(label_matchers_select_series, setup, teardown),
        cmocka_unit_test_setup_teardown(label_names_values_series_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(time_range_selects_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(select_series_groups_by_label, setup, teardown),
        cmocka_unit_test_setup_teardown(span_stacks_read_only_that_span, setup, teardown),
        cmocka_unit_test_setup_teardown(trace_spans_and_span_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(span_extras_share_resources_and_age_out, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_5_spans_without_extras, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unsymbolized_and_inlined_frames_are_named, setup, teardown),
        cmocka_unit_test_setup_teardown(restart_reads_the_same_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(dictionary_beyond_the_cache_is_found_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(span_totals_and_the_period, setup, teardown),
        cmocka_unit_test_setup_teardown(dictionary_loaded_at_start_up, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_0, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_newer_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_foreign_file, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_data_dir_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(second_spanprof_on_the_same_dir_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(locked_database_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_writers_are_all_committed, setup, teardown),
        cmocka_unit_test_setup_teardown(retention_deletes_old_data_and_keeps_new, setup, teardown),
        cmocka_unit_test_setup_teardown(retention_in_small_chunks_deletes_everything_old, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(invalid_batch_is_rejected_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(full_disk_rolls_back_the_whole_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_transaction_leaves_keys_and_cache_consistent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(full_disk_with_unkeyed_rows_finds_them_after_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retention_of_keyed_and_unkeyed_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_a_large_dictionary_from_versions_2_and_1, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(durability_full_and_url_open, setup, teardown),
        cmocka_unit_test_setup_teardown(background_retention_thread_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(profiles_sharing_one_dictionary_are_stored_alike, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(synthetic_function_names_are_not_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(span_stacks_narrowed_by_time_range, setup, teardown),
        cmocka_unit_test_setup_teardown(attach_only_profiles_add_to_spans_not_totals, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
