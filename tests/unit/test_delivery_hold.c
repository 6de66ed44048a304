/* delivery/hold.c: samples wait for their spans, then leave as one profile per series and bucket.
 * The oracle is written out per test from the batches it builds (values by stack and span), not
 * computed by the code under test. */
#include "common/arena.h"
#include "common/profile.h"
#include "delivery/hold.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define S 1000000000LL
/* A bucket well in the past of "now" is late at once; these tests use a clock of their own. */
#define B0 (1700000000LL) /* a bucket start, seconds (multiple of 10) */

/* ---- building batches ---- */

typedef struct obs {
    const char *stack; /* "leaf;caller;root" */
    int64_t ts_ns;
    int64_t value;
    const char *span; /* span id letter (its 8 bytes are that letter), NULL = none */
} obs;

static void ref_of(const char *span, sp_span_ref *r)
{
    memset(r, 0, sizeof *r);
    memset(r->span_id, span[0], 8);
    memset(r->trace_id, 't', 16);
}

/* One CPU profile of service svc with one sample per observation (leaf first frames). */
static sp_profile *make_profile(sp_arena *a, const char *svc, const obs *o, size_t n,
                                int attach_only)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    p->name = "process_cpu";
    p->period = 10000000;
    const char **strs = sp_arena_calloc(a, 256, sizeof *strs);
    sp_function *fn = sp_arena_calloc(a, 256, sizeof *fn);
    sp_location *loc = sp_arena_calloc(a, 256, sizeof *loc);
    sp_line *ln = sp_arena_calloc(a, 256, sizeof *ln);
    uint32_t ns = 1;
    strs[0] = "";
    sp_sample *smp = sp_arena_calloc(a, n, sizeof *smp);
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", o[i].stack);
        uint32_t *ids = sp_arena_calloc(a, 32, sizeof *ids);
        uint32_t nl = 0;
        for (char *save, *t = strtok_r(buf, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
            uint32_t id = 0;
            for (uint32_t k = 1; k < ns; k++)
                if (strcmp(strs[k], t) == 0)
                    id = k;
            if (!id) {
                id = ns++;
                strs[id] = sp_arena_strndup(a, t, strlen(t));
                fn[id].name = id;
                ln[id].function_id = id;
                loc[id].lines = &ln[id];
                loc[id].nlines = 1;
            }
            ids[nl++] = id;
        }
        smp[i].location_ids = ids;
        smp[i].nlocations = nl;
        smp[i].value = o[i].value;
        uint64_t *ts = sp_arena_alloc(a, sizeof *ts);
        *ts = (uint64_t)o[i].ts_ns;
        smp[i].timestamps = ts;
        smp[i].nobs = 1;
        if (o[i].span) {
            smp[i].spans = sp_arena_calloc(a, 1, sizeof *smp[i].spans);
            ref_of(o[i].span, smp[i].spans);
            smp[i].nspans = 1;
        }
    }
    p->strings = strs;
    p->nstrings = ns;
    p->functions = fn;
    p->nfunctions = ns;
    p->locations = loc;
    p->nlocations = ns;
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    p->samples = smp;
    p->nsamples = (uint32_t)n;
    sp_kv kv[1] = {{"service_name", svc}};
    sp_profile_set_series(p, a, "process_cpu", kv, 1);
    p->attach_only = (uint8_t)attach_only;
    p->time_nanos = n ? o[0].ts_ns : 0;
    return p;
}

typedef struct spn {
    const char *id, *parent;
    int64_t start, end;
} spn;

static sp_batch *make_batch(sp_arena *a, sp_profile **ps, size_t np, const spn *sp, size_t nsp)
{
    sp_batch *b = sp_arena_calloc(a, 1, sizeof *b);
    b->tenant = "t1";
    b->arena = a;
    b->profiles = sp_arena_calloc(a, np ? np : 1, sizeof *b->profiles);
    for (size_t i = 0; i < np; i++)
        b->profiles[i] = ps[i];
    b->nprofiles = np;
    b->spans = sp_arena_calloc(a, nsp ? nsp : 1, sizeof *b->spans);
    for (size_t i = 0; i < nsp; i++) {
        memset(b->spans[i].span_id, sp[i].id[0], 8);
        if (sp[i].parent)
            memset(b->spans[i].parent_span_id, sp[i].parent[0], 8);
        memset(b->spans[i].trace_id, 't', 16);
        b->spans[i].start_ns = (uint64_t)sp[i].start;
        b->spans[i].end_ns = (uint64_t)sp[i].end;
    }
    b->nspans = nsp;
    return b;
}

static int take(hold *h, sp_batch *b, int64_t now)
{
    hold_group_id ids[16];
    int n = hold_plan(h, b, now, ids, 16);
    assert_true(n >= 0);
    sp_err err = {0};
    return hold_add(h, b, now, ids, n, &err);
}

/* ---- what leaves ---- */

typedef struct got {
    char tenant[32], series[128];
    int64_t time_nanos, period;
    char stack[64];
    char span; /* 0 = none */
    int64_t value;
} got;

static got G[256];
static int NG, NDONE;

static int rec_emit(void *ud, const char *tenant, hold_group_id g, const sp_profile *p)
{
    (void)ud;
    (void)g;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        got *x = &G[NG++];
        memset(x, 0, sizeof *x);
        snprintf(x->tenant, sizeof x->tenant, "%s", tenant);
        snprintf(x->series, sizeof x->series, "%s", p->series[0].value);
        for (uint32_t k = 0; k < p->nseries; k++)
            if (strcmp(p->series[k].name, "service_name") == 0)
                snprintf(x->series, sizeof x->series, "%s", p->series[k].value);
        x->time_nanos = p->time_nanos;
        x->period = p->period;
        const sp_sample *s = &p->samples[i];
        for (uint32_t k = 0; k < s->nlocations; k++) {
            const sp_location *l = &p->locations[s->location_ids[k]];
            const char *name = p->strings[p->functions[l->lines[0].function_id].name];
            size_t o = strlen(x->stack);
            snprintf(x->stack + o, sizeof x->stack - o, "%s%s", k ? ";" : "", name);
        }
        x->span = s->nspans ? (char)s->spans[0].span_id[0] : 0;
        x->value = s->value;
    }
    return 0;
}

static void rec_done(void *ud, hold_group_id g)
{
    (void)ud;
    (void)g;
    NDONE++;
}

static int64_t sum_of(const char *stack, char span)
{
    int64_t v = 0;
    for (int i = 0; i < NG; i++)
        if ((!stack || strcmp(G[i].stack, stack) == 0) && (span == '*' || G[i].span == span))
            v += G[i].value;
    return v;
}

static void reset(void)
{
    NG = NDONE = 0;
}

/* ---- tests ---- */

static void test_one_profile_per_series_and_bucket_after_the_delay(void **state)
{
    (void)state;
    reset();
    hold_options o = {.delay_ns = 5 * S};
    hold *h = hold_new(&o);
    sp_arena *a = sp_arena_new(0);
    int64_t now = B0 * S + 1 * S; /* inside the bucket: group (B0, 0) */
    obs o1[] = {{"f;main", B0 * S + 100, 10, NULL}, {"g;main", B0 * S + 200, 20, NULL}};
    obs o2[] = {{"f;main", B0 * S + 300, 5, NULL}};
    sp_profile *p1 = make_profile(a, "svc", o1, 2, 0), *p2 = make_profile(a, "svc", o2, 1, 0);
    assert_int_equal(take(h, make_batch(a, &p1, 1, NULL, 0), now), 0);
    assert_int_equal(take(h, make_batch(a, &p2, 1, NULL, 0), now + S), 0);
    /* not before bucket end + delay */
    assert_int_equal(hold_release(h, B0 * S + 10 * S + 5 * S - 1, 0, rec_emit, rec_done, NULL), 0);
    assert_int_equal(NG, 0);
    assert_int_equal(hold_release(h, B0 * S + 15 * S, 0, rec_emit, rec_done, NULL), 1);
    assert_int_equal(NDONE, 1);
    assert_int_equal(NG, 2); /* f;main merged across the two batches */
    assert_int_equal(sum_of("f;main", 0), 15);
    assert_int_equal(sum_of("g;main", 0), 20);
    for (int i = 0; i < NG; i++) {
        assert_int_equal(G[i].time_nanos, B0 * S + 1); /* 1 ns in: Pyroscope ranges are closed */
        assert_int_equal(G[i].period, 10000000);
        assert_string_equal(G[i].tenant, "t1");
        assert_string_equal(G[i].series, "svc");
    }
    sp_arena_free(a);
    hold_free(h);
}

static void test_late_spans_label_held_samples_with_the_outermost(void **state)
{
    (void)state;
    reset();
    hold_options o = {.delay_ns = 5 * S};
    hold *h = hold_new(&o);
    sp_arena *a = sp_arena_new(0);
    int64_t now = B0 * S + 2 * S;
    /* samples first: none labelled */
    obs samples[] = {{"db;main", B0 * S + 100, 30, NULL},
                     {"render;main", B0 * S + 500, 20, NULL},
                     {"idle;main", B0 * S + 900, 7, NULL}};
    sp_profile *p = make_profile(a, "svc", samples, 3, 0);
    assert_int_equal(take(h, make_batch(a, &p, 1, NULL, 0), now), 0);
    /* the child C [0, 200) claims db; then the parent P [0, 800) claims db and render, as the
     * correlator's attach_only profiles do, in two exports (child first: it ended first) */
    spn child[] = {{"C", "P", B0 * S, B0 * S + 200}};
    obs claim_c[] = {{"db;main", B0 * S + 100, 30, "C"}};
    sp_profile *ac = make_profile(a, "svc", claim_c, 1, 1);
    assert_int_equal(take(h, make_batch(a, &ac, 1, child, 1), now + S), 0);
    spn parent[] = {{"P", NULL, B0 * S, B0 * S + 800}};
    obs claim_p[] = {{"db;main", B0 * S + 100, 30, "P"}, {"render;main", B0 * S + 500, 20, "P"}};
    sp_profile *ap = make_profile(a, "svc", claim_p, 2, 1);
    assert_int_equal(take(h, make_batch(a, &ap, 1, parent, 1), now + 2 * S), 0);
    /* a later child claim does not take samples back from the parent */
    obs claim_c2[] = {{"db;main", B0 * S + 100, 30, "C"}};
    sp_profile *ac2 = make_profile(a, "svc", claim_c2, 1, 1);
    assert_int_equal(take(h, make_batch(a, &ac2, 1, child, 1), now + 3 * S), 0);
    assert_int_equal(hold_release(h, B0 * S + 15 * S, 0, rec_emit, rec_done, NULL), 1);
    assert_int_equal(sum_of("db;main", 'P'), 30);
    assert_int_equal(sum_of("render;main", 'P'), 20);
    assert_int_equal(sum_of("idle;main", 0), 7);
    assert_int_equal(sum_of(NULL, '*'), 57); /* H2: nothing appears, nothing is lost */
    assert_int_equal(sum_of(NULL, 'C'), 0);
    assert_false(hold_span_incomplete(h, "t1", (const uint8_t *)"PPPPPPPP"));
    assert_false(hold_span_incomplete(h, "t1", (const uint8_t *)"CCCCCCCC"));
    hold_stats st;
    hold_get_stats(h, &st);
    assert_true(st.moved_total >= 3);
    sp_arena_free(a);
    hold_free(h);
}

static void test_arrival_label_is_the_outermost_known_span(void **state)
{
    (void)state;
    reset();
    hold *h = hold_new(&(hold_options){.delay_ns = 0});
    sp_arena *a = sp_arena_new(0);
    int64_t now = B0 * S + 2 * S;
    spn spans[] = {{"P", NULL, B0 * S, B0 * S + 800}, {"C", "P", B0 * S, B0 * S + 200}};
    sp_batch *sb = make_batch(a, NULL, 0, spans, 2);
    assert_int_equal(take(h, sb, now), 0);
    /* a sample attached to both, innermost first (the correlator's order) */
    obs o1[] = {{"db;main", B0 * S + 100, 9, "C"}};
    sp_profile *p = make_profile(a, "svc", o1, 1, 0);
    sp_span_ref *two = sp_arena_calloc(a, 2, sizeof *two);
    ref_of("C", &two[0]);
    ref_of("P", &two[1]);
    p->samples[0].spans = two;
    p->samples[0].nspans = 2;
    assert_int_equal(take(h, make_batch(a, &p, 1, NULL, 0), now), 0);
    assert_int_equal(hold_release(h, B0 * S + 10 * S, 0, rec_emit, rec_done, NULL), 1);
    assert_int_equal(sum_of("db;main", 'P'), 9);
    sp_arena_free(a);
    hold_free(h);
}

static void test_arrivals_after_a_bucket_left_form_a_late_group_of_their_own(void **state)
{
    (void)state;
    reset();
    hold *h = hold_new(&(hold_options){.delay_ns = 2 * S});
    sp_arena *a = sp_arena_new(0);
    obs o1[] = {{"f;main", B0 * S + 100, 10, NULL}};
    sp_profile *p1 = make_profile(a, "svc", o1, 1, 0);
    assert_int_equal(take(h, make_batch(a, &p1, 1, NULL, 0), B0 * S + S), 0);
    assert_int_equal(hold_release(h, B0 * S + 12 * S, 0, rec_emit, rec_done, NULL), 1);
    assert_int_equal(NG, 1);
    assert_int_equal(G[0].time_nanos, B0 * S + 1);
    /* the same bucket after it left: a late group, stamped inside the bucket's first ms */
    obs o2[] = {{"f;main", B0 * S + 200, 4, NULL}};
    sp_profile *p2 = make_profile(a, "svc", o2, 1, 0);
    int64_t now = B0 * S + 20 * S + 300000000;
    assert_int_equal(hold_group_of(h, B0 * S + 200, now).gen, B0 + 23);
    assert_int_equal(take(h, make_batch(a, &p2, 1, NULL, 0), now), 0);
    assert_int_equal(hold_release(h, (B0 + 23) * S - 1, 0, rec_emit, rec_done, NULL), 0);
    assert_int_equal(hold_release(h, (B0 + 23) * S, 0, rec_emit, rec_done, NULL), 1);
    assert_int_equal(NG, 2);
    assert_int_equal(G[1].value, 4);
    assert_true(G[1].time_nanos > B0 * S && G[1].time_nanos < B0 * S + 1000000);
    for (uint32_t slot = 0; slot < 997; slot += 31)
        for (int64_t d = 10; d < 3000; d += 7) {
            int64_t late = hold_late_offset(slot, B0, B0 + d);
            assert_true(late > hold_bucket_offset(slot) && late < hold_bucket_offset(slot) + 500);
            int64_t rec = hold_recovered_offset(slot, (uint64_t)d);
            assert_true(rec >= hold_bucket_offset(slot) + 499 &&
                        rec < hold_bucket_offset(slot) + 999);
            assert_true(rec < 1000000);
        }
    sp_arena_free(a);
    hold_free(h);
}

static void test_a_span_whose_samples_already_left_is_incomplete(void **state)
{
    (void)state;
    reset();
    hold *h = hold_new(&(hold_options){.delay_ns = 0});
    sp_arena *a = sp_arena_new(0);
    obs o1[] = {{"f;main", B0 * S + 100, 10, NULL}};
    sp_profile *p1 = make_profile(a, "svc", o1, 1, 0);
    assert_int_equal(take(h, make_batch(a, &p1, 1, NULL, 0), B0 * S + S), 0);
    assert_int_equal(hold_release(h, B0 * S + 10 * S, 0, rec_emit, rec_done, NULL), 1);
    spn sp[] = {{"X", NULL, B0 * S, B0 * S + 500}};
    obs claim[] = {{"f;main", B0 * S + 100, 10, "X"}};
    sp_profile *ax = make_profile(a, "svc", claim, 1, 1);
    assert_int_equal(take(h, make_batch(a, &ax, 1, sp, 1), B0 * S + 11 * S), 0);
    assert_true(hold_span_incomplete(h, "t1", (const uint8_t *)"XXXXXXXX"));
    assert_false(hold_span_incomplete(h, "t2", (const uint8_t *)"XXXXXXXX"));
    hold_stats st;
    hold_get_stats(h, &st);
    assert_int_equal(st.incomplete_total, 1);
    assert_int_equal(hold_release(h, B0 * S + 60 * S, 1, rec_emit, rec_done, NULL), 0);
    assert_int_equal(NG, 1); /* the claim sent nothing again */
    sp_arena_free(a);
    hold_free(h);
}

static void test_pinned_groups_wait_and_the_budget_releases_early(void **state)
{
    (void)state;
    reset();
    hold *h = hold_new(&(hold_options){.delay_ns = 0});
    sp_arena *a = sp_arena_new(0);
    obs o1[] = {{"f;main", B0 * S + 100, 10, NULL}};
    sp_profile *p1 = make_profile(a, "svc", o1, 1, 0);
    sp_batch *b = make_batch(a, &p1, 1, NULL, 0);
    hold_group_id ids[4];
    int n = hold_plan(h, b, B0 * S + S, ids, 4);
    assert_int_equal(n, 1);
    /* staged, not committed: due, but pinned (H1) */
    assert_int_equal(hold_release(h, B0 * S + 60 * S, 1, rec_emit, rec_done, NULL), 0);
    sp_err err = {0};
    assert_int_equal(hold_add(h, b, B0 * S + S, ids, n, &err), 0);
    assert_int_equal(hold_release(h, B0 * S + 60 * S, 0, rec_emit, rec_done, NULL), 1);
    hold_free(h);
    /* a budget of one byte: every unpinned group leaves at the next call, counted early */
    reset();
    h = hold_new(&(hold_options){.delay_ns = 3600 * S, .max_bytes = 1});
    assert_int_equal(take(h, make_batch(a, &p1, 1, NULL, 0), B0 * S + S), 0);
    assert_int_equal(hold_release(h, B0 * S + 2 * S, 0, rec_emit, rec_done, NULL), 1);
    hold_stats st;
    hold_get_stats(h, &st);
    assert_int_equal(st.early_total, 1);
    assert_int_equal(sum_of(NULL, '*'), 10);
    /* H1: the bucket's group left early; what arrives for it later forms a group of its own
     * with another timestamp, never a second (B0, 0) that Pyroscope would collapse with it */
    assert_true(hold_group_of(h, B0 * S + 200, B0 * S + 3 * S).gen != 0);
    assert_int_equal(take(h, make_batch(a, &p1, 1, NULL, 0), B0 * S + 3 * S), 0);
    assert_int_equal(hold_release(h, B0 * S + 4 * S, 1, rec_emit, rec_done, NULL), 1);
    assert_int_equal(NG, 2);
    assert_int_not_equal(G[0].time_nanos, G[1].time_nanos);
    assert_int_equal(G[0].time_nanos / 1000000, G[1].time_nanos / 1000000); /* same ms */
    hold_free(h);
    /* a caller's own budget (the journal's bytes): all = 2 lets the oldest group alone leave */
    reset();
    h = hold_new(&(hold_options){.delay_ns = 3600 * S});
    obs o2[] = {{"f;main", (B0 + 10) * S + 100, 3, NULL}};
    sp_profile *p2 = make_profile(a, "svc", o2, 1, 0);
    assert_int_equal(take(h, make_batch(a, &p1, 1, NULL, 0), B0 * S + S), 0);
    assert_int_equal(take(h, make_batch(a, &p2, 1, NULL, 0), (B0 + 10) * S + S), 0);
    assert_int_equal(hold_release(h, (B0 + 11) * S, 0, rec_emit, rec_done, NULL), 0);
    assert_int_equal(hold_release(h, (B0 + 11) * S, 2, rec_emit, rec_done, NULL), 1);
    assert_int_equal(sum_of(NULL, '*'), 10); /* the older bucket */
    hold_get_stats(h, &st);
    assert_int_equal(st.groups, 1);
    sp_arena_free(a);
    hold_free(h);
}

static void test_too_many_buckets_are_refused_to_the_caller(void **state)
{
    (void)state;
    hold *h = hold_new(&(hold_options){.delay_ns = 0});
    sp_arena *a = sp_arena_new(0);
    obs o[5];
    for (int i = 0; i < 5; i++)
        o[i] = (obs){"f;main", (B0 + 10 * i) * S, 1, NULL};
    sp_profile *p = make_profile(a, "svc", o, 5, 0);
    hold_group_id ids[4];
    assert_int_equal(hold_plan(h, make_batch(a, &p, 1, NULL, 0), (B0 + 60) * S, ids, 4), -1);
    hold_stats st;
    hold_get_stats(h, &st);
    assert_int_equal(st.groups, 0); /* nothing pinned or left behind */
    sp_arena_free(a);
    hold_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_profile_per_series_and_bucket_after_the_delay),
        cmocka_unit_test(test_late_spans_label_held_samples_with_the_outermost),
        cmocka_unit_test(test_arrival_label_is_the_outermost_known_span),
        cmocka_unit_test(test_arrivals_after_a_bucket_left_form_a_late_group_of_their_own),
        cmocka_unit_test(test_a_span_whose_samples_already_left_is_incomplete),
        cmocka_unit_test(test_pinned_groups_wait_and_the_budget_releases_early),
        cmocka_unit_test(test_too_many_buckets_are_refused_to_the_caller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
