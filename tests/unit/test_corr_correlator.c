/* correlator/: explicit links, inference by time + process + thread, sample splitting, late
 * arrivals in both directions, tenant isolation and the memory budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "correlator/correlator.h"

#define MS  1000000LL
#define PID 4242
#define TID 101

typedef struct fixture {
    sp_arena *a;
    sp_batch b;
} fixture;

static const char *strs[] = {"", "main", "handle", "parse", "cpu", "nanoseconds"};

/* A CPU profile with one sample per entry of ts[] groups: stack main→handle→parse. */
static sp_profile *profile(sp_arena *a, const uint64_t *ts, uint32_t nts, int64_t pid, int64_t tid)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    p->name = "process_cpu";
    p->strings = strs;
    p->nstrings = 6;
    p->sample_type = p->period_type = 4;
    p->sample_unit = p->period_unit = 5;
    p->nfunctions = p->nlocations = 4;
    p->functions = sp_arena_calloc(a, 4, sizeof *p->functions);
    p->locations = sp_arena_calloc(a, 4, sizeof *p->locations);
    for (uint32_t i = 1; i < 4; i++) {
        p->functions[i].name = i;
        sp_line *l = sp_arena_calloc(a, 1, sizeof *l);
        l->function_id = i;
        p->locations[i].lines = l;
        p->locations[i].nlines = 1;
    }
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    static sp_kv series[] = {{"__name__", "process_cpu"}, {"service_name", "shop"}};
    p->series = series;
    p->nseries = 2;
    p->samples = sp_arena_calloc(a, 1, sizeof *p->samples);
    p->nsamples = 1;
    sp_sample *s = &p->samples[0];
    static uint32_t stack[] = {3, 2, 1};
    s->location_ids = stack;
    s->nlocations = 3;
    s->timestamps = sp_arena_memdup(a, ts, nts * sizeof *ts);
    s->nobs = nts;
    s->value = (int64_t)nts * 10 * MS;
    s->pid = pid;
    s->tid = tid;
    return p;
}

static sp_span span(uint8_t id, int64_t start_ms, int64_t end_ms, int64_t pid, int64_t tid)
{
    sp_span s = {0};
    s.trace_id[0] = 0xaa;
    s.span_id[7] = id;
    s.service = "shop";
    s.name = "GET /cart";
    s.start_ns = (uint64_t)(start_ms * MS);
    s.end_ns = (uint64_t)(end_ms * MS);
    s.pid = pid;
    s.tid = tid;
    return s;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->a = sp_arena_new(0);
    f->b.arena = f->a;
    f->b.tenant = "t1";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sp_arena_free(f->a);
    free(f);
    return 0;
}

static sp_batch batch(fixture *f, const char *tenant)
{
    sp_batch b = {.tenant = tenant, .arena = f->a};
    return b;
}

static void attaches_sample_inside_span_on_same_thread(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_batch tb = batch(f, "t1");
    sp_span sp = span(1, 100, 200, PID, TID);
    tb.spans = &sp;
    tb.nspans = 1;
    corr_attach_spans(c, &tb, 0);

    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(corr_attach_spans(c, &pb, 0), 1);
    sp_sample *s = &pb.profiles[0]->samples[0];
    assert_int_equal(s->nspans, 1);
    assert_int_equal(s->spans[0].span_id[7], 1);
    corr_free(c);
}

static void ignores_other_thread_other_time_and_short_spans(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span spans[] = {span(1, 100, 200, PID, TID), span(2, 300, 310, PID, TID)};
    sp_batch tb = batch(f, "t1");
    tb.spans = spans;
    tb.nspans = 2;
    corr_attach_spans(c, &tb, 0);
    uint64_t other_thread[] = {150 * MS}, outside[] = {250 * MS}, short_span[] = {305 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, other_thread, 1, PID, TID + 1));
    sp_batch_add_profile(&pb, profile(f->a, outside, 1, PID, TID));
    sp_batch_add_profile(&pb, profile(f->a, short_span, 1, PID, TID)); /* 10 ms < 20 ms */
    assert_int_equal(corr_attach_spans(c, &pb, 0), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pb.profiles[i]->samples[0].nspans, 0);
    corr_free(c);
}

static void nested_spans_all_get_the_sample(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span spans[] = {span(1, 0, 1000, PID, TID), span(2, 100, 200, PID, TID)};
    sp_batch tb = batch(f, "t1");
    tb.spans = spans;
    tb.nspans = 2;
    corr_attach_spans(c, &tb, 0);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    corr_attach_spans(c, &pb, 0);
    assert_int_equal(pb.profiles[0]->samples[0].nspans, 2);
    corr_free(c);
}

static void splits_a_sample_whose_observations_fall_in_different_spans(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span sp = span(1, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    corr_attach_spans(c, &tb, 0);
    uint64_t ts[] = {150 * MS, 250 * MS, 160 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 3, PID, TID));
    assert_int_equal(corr_attach_spans(c, &pb, 0), 2);
    sp_profile *p = pb.profiles[0];
    assert_int_equal(p->nsamples, 3);
    int64_t in_span = 0, total = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        total += p->samples[i].value;
        if (p->samples[i].nspans)
            in_span += p->samples[i].value;
        assert_int_equal(p->samples[i].nobs, 1);
    }
    assert_int_equal(total, 30 * MS);   /* nothing lost by splitting */
    assert_int_equal(in_span, 20 * MS); /* exactly the two observations inside */
    corr_free(c);
}

static void explicit_link_wins_without_any_span_known(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *p = profile(f->a, ts, 1, 0, 0); /* no pid/tid: inference impossible */
    p->samples[0].has_link = 1;
    p->samples[0].link.span_id[7] = 9;
    sp_batch_add_profile(&pb, p);
    assert_int_equal(corr_attach_spans(c, &pb, 0), 1);
    assert_int_equal(p->samples[0].nspans, 1);
    assert_int_equal(p->samples[0].spans[0].span_id[7], 9);
    corr_free(c);
}

static void span_arriving_after_the_profile_claims_its_samples(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    uint64_t ts[] = {150 * MS, 160 * MS, 900 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 3, PID, TID));
    assert_int_equal(corr_attach_spans(c, &pb, 0), 0);

    sp_span sp = span(7, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    assert_int_equal(corr_attach_spans(c, &tb, 0), 2);
    assert_int_equal(tb.nprofiles, 1);
    sp_profile *late = tb.profiles[0];
    assert_true(late->attach_only);
    assert_string_equal(late->type_id, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    int64_t v = 0;
    for (uint32_t i = 0; i < late->nsamples; i++) {
        const sp_sample *s = &late->samples[i];
        v += s->value;
        assert_int_equal(s->nspans, 1);
        assert_int_equal(s->spans[0].span_id[7], 7);
        /* frames come back by name, leaf first */
        assert_int_equal(s->nlocations, 3);
        const sp_location *leaf = &late->locations[s->location_ids[0]];
        assert_string_equal(late->strings[late->functions[leaf->lines[0].function_id].name],
                            "parse");
    }
    assert_int_equal(v, 20 * MS);
    /* a retry of the same span attaches nothing twice */
    sp_batch again = batch(f, "t1");
    again.spans = &sp;
    again.nspans = 1;
    assert_int_equal(corr_attach_spans(c, &again, 0), 0);
    assert_int_equal(again.nprofiles, 0);
    corr_free(c);
}

static void late_span_does_not_double_count_an_explicit_link(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *p = profile(f->a, ts, 1, PID, TID);
    p->samples[0].has_link = 1;
    p->samples[0].link.span_id[7] = 7;
    sp_batch_add_profile(&pb, p);
    assert_int_equal(corr_attach_spans(c, &pb, 0), 1);
    sp_span sp = span(7, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    assert_int_equal(corr_attach_spans(c, &tb, 0), 0);
    corr_free(c);
}

static void tenants_never_match_each_other(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span sp = span(1, 100, 200, PID, TID);
    sp_batch tb = batch(f, "tenant-a");
    tb.spans = &sp;
    tb.nspans = 1;
    corr_attach_spans(c, &tb, 0);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "tenant-b");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(corr_attach_spans(c, &pb, 0), 0);
    corr_free(c);
}

static void expired_spans_are_forgotten(void **state)
{
    fixture *f = *state;
    corr_options o = {.window_ns = 1000 * MS};
    corr *c = corr_new(&o);
    sp_span sp = span(1, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    corr_attach_spans(c, &tb, 200 * MS);
    corr_stats st;
    corr_get_stats(c, &st);
    assert_int_equal(st.spans_indexed, 1);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(corr_attach_spans(c, &pb, 5000 * MS), 0); /* long after the window */
    corr_get_stats(c, &st);
    assert_int_equal(st.spans_indexed, 0);
    corr_free(c);
}

static void stays_within_its_budget(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 64 * 1024};
    corr *c = corr_new(&o);
    for (int i = 0; i < 200; i++) {
        uint64_t ts[64];
        for (int k = 0; k < 64; k++)
            ts[k] = (uint64_t)(i * 1000 + k) * MS;
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, ts, 64, PID, TID + i));
        corr_attach_spans(c, &pb, 0);
    }
    corr_stats st;
    corr_get_stats(c, &st);
    assert_true(st.bytes < 4 * o.max_bytes);
    assert_true(st.evicted > 0);
    corr_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(attaches_sample_inside_span_on_same_thread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(ignores_other_thread_other_time_and_short_spans, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(nested_spans_all_get_the_sample, setup, teardown),
        cmocka_unit_test_setup_teardown(splits_a_sample_whose_observations_fall_in_different_spans,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(explicit_link_wins_without_any_span_known, setup, teardown),
        cmocka_unit_test_setup_teardown(span_arriving_after_the_profile_claims_its_samples, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(late_span_does_not_double_count_an_explicit_link, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(tenants_never_match_each_other, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_spans_are_forgotten, setup, teardown),
        cmocka_unit_test_setup_teardown(stays_within_its_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
