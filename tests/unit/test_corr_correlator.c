/* correlator/: explicit links, inference by time + process + thread, sample splitting, late
 * arrivals in both directions, tenant isolation and the memory budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "correlator/correlator.h"

#include "corr_fixture.h"

/* Span sp received in tenant t1 at time 0. */
static void receive(corr *c, fixture *f, sp_span sp)
{
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    attach(c, &tb, 0);
}

static void attaches_sample_inside_span_on_same_thread(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    receive(c, f, span(1, 100, 200, PID, TID));

    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(attach(c, &pb, 0), 1);
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
    attach(c, &tb, 0);
    uint64_t other_thread[] = {150 * MS}, outside[] = {250 * MS}, short_span[] = {305 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, other_thread, 1, PID, TID + 1));
    sp_batch_add_profile(&pb, profile(f->a, outside, 1, PID, TID));
    sp_batch_add_profile(&pb, profile(f->a, short_span, 1, PID, TID)); /* 10 ms < 20 ms */
    assert_int_equal(attach(c, &pb, 0), 0);
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
    attach(c, &tb, 0);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    attach(c, &pb, 0);
    assert_int_equal(pb.profiles[0]->samples[0].nspans, 2);
    corr_free(c);
}

static void splits_a_sample_whose_observations_fall_in_different_spans(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    receive(c, f, span(1, 100, 200, PID, TID));
    uint64_t ts[] = {150 * MS, 250 * MS, 160 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 3, PID, TID));
    assert_int_equal(attach(c, &pb, 0), 2);
    sp_profile *p = pb.profiles[0];
    /* one sample per set of spans: the two observations inside together, the one outside */
    assert_int_equal(p->nsamples, 2);
    int64_t in_span = 0, total = 0;
    uint32_t obs = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        total += s->value;
        obs += s->nobs;
        int64_t sum = 0;
        for (uint32_t k = 0; k < s->nobs; k++) {
            sum += s->values[k];
            if (s->nspans)
                assert_true(s->timestamps[k] >= 100 * MS && s->timestamps[k] < 200 * MS);
            else
                assert_true(s->timestamps[k] == 250 * MS);
        }
        assert_int_equal(sum, s->value);
        if (s->nspans)
            in_span += s->value;
    }
    assert_int_equal(obs, 3);
    assert_int_equal(total, 30 * MS);   /* nothing lost by splitting */
    assert_int_equal(in_span, 20 * MS); /* exactly the two observations inside */
    corr_free(c);
}

/* Until a sample of a profile is split, the correlator writes only the spans of each sample's
 * output; the first split copies the rest of the samples before it in. Samples around a split
 * (another thread's, without spans; a linked one) come back as they were sent. */
static void samples_before_a_split_come_back_whole(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span sp = span(1, 100, 200, PID, TID);
    receive(c, f, sp);
    uint64_t ts[] = {150 * MS, 250 * MS};
    sp_profile *p = profile(f->a, ts, 2, PID, TID); /* sample 2 below: splits in two */
    sp_sample *v = sp_arena_calloc(f->a, 3, sizeof *v);
    static uint32_t short_stack[] = {2, 1}, leaf_only[] = {1};
    uint64_t t0[] = {160 * MS}, t1[] = {170 * MS};
    v[0] = (sp_sample){.location_ids = short_stack,
                       .nlocations = 2,
                       .value = 7 * MS,
                       .timestamps = t0,
                       .nobs = 1,
                       .pid = PID,
                       .tid = TID + 1};
    v[1] = (sp_sample){.location_ids = leaf_only,
                       .nlocations = 1,
                       .value = 9 * MS,
                       .timestamps = t1,
                       .nobs = 1,
                       .pid = PID,
                       .tid = TID,
                       .has_link = 1};
    memcpy(v[1].link.trace_id, sp.trace_id, 16);
    memcpy(v[1].link.span_id, sp.span_id, 8);
    v[2] = p->samples[0];
    p->samples = v;
    p->nsamples = 3;
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, p);
    attach(c, &pb, 0);
    assert_int_equal(p->nsamples, 4); /* the third split in two */
    const sp_sample *s = &p->samples[0];
    assert_int_equal(s->nlocations, 2);
    assert_int_equal(s->location_ids[0], 2);
    assert_int_equal(s->value, 7 * MS);
    assert_int_equal(s->nobs, 1);
    assert_int_equal(s->timestamps[0], 160 * MS);
    assert_int_equal(s->tid, TID + 1);
    assert_int_equal(s->nspans, 0);
    s = &p->samples[1];
    assert_int_equal(s->nlocations, 1);
    assert_int_equal(s->value, 9 * MS);
    assert_int_equal(s->timestamps[0], 170 * MS);
    assert_true(s->has_link);
    assert_true(s->nspans >= 1 && has_span(s, 1));
    for (int i = 2; i < 4; i++) {
        s = &p->samples[i];
        assert_int_equal(s->nlocations, 3);
        assert_int_equal(s->nobs, 1);
        assert_int_equal(s->nspans, s->timestamps[0] == 150 * MS ? 1 : 0);
    }
    corr_free(c);
}

/* The issue-12 loss: a request's arena is budgeted from its message size, and splitting 10,000
 * observations over 100 spans needs more than that. Every observation must come back, each in
 * the sample of exactly the span it fell in. */
static void splitting_many_observations_keeps_every_one(void **state)
{
    (void)state;
    corr *c = corr_new(NULL);
    sp_arena *sa = sp_arena_new(0);
    sp_span sp[100];
    for (int i = 0; i < 100; i++) {
        sp[i] = span((uint8_t)(i + 1), 1000 + i * 100, 1000 + (i + 1) * 100, PID, TID);
        sp[i].span_id[6] = (uint8_t)(i + 1); /* 100 distinct ids */
    }
    sp_batch tb = {.tenant = "t1", .arena = sa, .spans = sp, .nspans = 100};
    attach(c, &tb, 0);
    enum { N = 10000 };
    /* the arena of a ~100 KB request, as otlp/service.c budgets it */
    sp_arena *a = sp_arena_new(32 * 100000 + (4u << 20));
    uint64_t *ts = malloc(N * sizeof *ts);
    for (uint32_t k = 0; k < N; k++) /* 10 s at 1 kHz, interleaved so groups are not runs */
        ts[k] = (uint64_t)(1000 * MS + (int64_t)((k * 7919u) % N) * MS);
    sp_batch pb = {.tenant = "t1", .arena = a};
    sp_batch_add_profile(&pb, profile(a, ts, N, PID, TID));
    pb.profiles[0]->samples[0].value = (int64_t)N * 10 * MS;
    assert_int_equal(attach(c, &pb, 0), N);
    const sp_profile *p = pb.profiles[0];
    assert_int_equal(p->nsamples, 100); /* one per span, not one per observation */
    uint64_t obs = 0;
    int64_t total = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        assert_int_equal(s->nspans, 1);
        int64_t start = 1000 + (s->spans[0].span_id[6] - 1) * 100;
        for (uint32_t k = 0; k < s->nobs; k++) {
            assert_true((int64_t)s->timestamps[k] >= start * MS);
            assert_true((int64_t)s->timestamps[k] < (start + 100) * MS);
        }
        obs += s->nobs;
        total += s->value;
    }
    assert_int_equal(obs, N);
    assert_int_equal(total, (int64_t)N * 10 * MS);
    free(ts);
    sp_arena_free(a);
    sp_arena_free(sa);
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
    assert_int_equal(attach(c, &pb, 0), 1);
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
    assert_int_equal(attach(c, &pb, 0), 0);

    sp_span sp = span(7, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    assert_int_equal(attach(c, &tb, 0), 2);
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
    assert_int_equal(attach(c, &again, 0), 0);
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
    assert_int_equal(attach(c, &pb, 0), 1);
    sp_span sp = span(7, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    assert_int_equal(attach(c, &tb, 0), 0);
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
    attach(c, &tb, 0);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "tenant-b");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(attach(c, &pb, 0), 0);
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
    attach(c, &tb, 200 * MS);
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.spans_indexed, 1);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(attach(c, &pb, 5000 * MS), 0); /* long after the window */
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.spans_indexed, 0);
    corr_free(c);
}

static void stays_within_its_budget(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 64 * 1024};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0); /* the whole budget, not the share of I13 */
    for (int i = 0; i < 200; i++) {
        uint64_t ts[64];
        for (int k = 0; k < 64; k++)
            ts[k] = (uint64_t)(i * 1000 + k) * MS;
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, ts, 64, PID, TID + i));
        attach(c, &pb, 0);
    }
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_true(st.bytes < 4 * o.max_bytes);
    assert_true(st.evicted > 0);
    corr_free(c);
}

/* Issue 12 at scale: spans that arrived first stay in the window however many observations come
 * after them; the budget lets go of attached observations first (released, not a loss) and
 * evicts nothing that waits with nothing attached. */
static void budget_keeps_spans_and_lets_attached_observations_go_first(void **state)
{
    (void)state;
    corr_options o = {.max_bytes = 256 * 1024};
    corr *c = corr_new(&o);
    enum { THREADS = 100 };
    sp_arena *a = sp_arena_new(0);
    sp_span sp[THREADS];
    for (int i = 0; i < THREADS; i++) {
        sp[i] = span(1, 0, 100000, PID, TID + i); /* 100 s each, one per thread */
        sp[i].span_id[6] = (uint8_t)i;
    }
    sp_batch tb = {.tenant = "t1", .arena = a, .spans = sp, .nspans = THREADS};
    attach(c, &tb, 0);
    size_t attached = 0;
    uint64_t sent = 0;
    for (int round = 0; round < 50; round++)
        for (int i = 0; i < THREADS; i++) {
            uint64_t ts[64];
            for (int k = 0; k < 64; k++)
                ts[k] = (uint64_t)(round * 1000 + k) * MS;
            sp_batch pb = {.tenant = "t1", .arena = a};
            sp_batch_add_profile(&pb, profile(a, ts, 64, PID, TID + i));
            attached += attach(c, &pb, round * 10 * MS);
            sent += 64;
            sp_arena_reset(a);
        }
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(attached, sent); /* every observation found its thread's span */
    assert_int_equal(st.spans_indexed, THREADS);
    assert_int_equal(st.spans_evicted, 0);
    assert_int_equal(st.evicted, 0);
    assert_true(st.released > 0); /* the budget did have to act */
    assert_true(st.bytes <= 2 * o.max_bytes);
    sp_arena_free(a);
    corr_free(c);
}

static void explicit_link_reaches_ancestors_known_now_and_later(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    /* root 1 (arrives later) → 2 (known, 10 ms: too short) → 3 (known, linked, 5 ms) */
    sp_span known[] = {child(2, 1, 100, 110, PID, TID), child(3, 2, 101, 106, PID, TID)};
    send_spans(c, f, known, 2, NULL);
    uint64_t ts[] = {102 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *p = profile(f->a, ts, 1, PID, TID);
    p->samples[0].has_link = 1;
    p->samples[0].link.span_id[7] = 3;
    sp_batch_add_profile(&pb, p);
    attach(c, &pb, 0);
    /* the link, not the short parent, and no inference */
    assert_int_equal(p->samples[0].nspans, 1);
    assert_int_equal(p->samples[0].spans[0].span_id[7], 3);
    /* the root arrives: the walk continues through 2 and reaches it */
    sp_span root = span(1, 0, 1000, PID, TID);
    sp_batch tb;
    send_spans(c, f, &root, 1, &tb);
    assert_int_equal(late_value(&tb, 1), 10 * MS);
    /* a root span from another process with the same id in another tenant: nothing */
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.by_link, 1);
    assert_int_equal(st.by_thread, 0);
    corr_free(c);
}

/* I4: the store failed to commit a batch; corr_abort forgets it, so the client's retry of that
 * export is taken as new. Spans: the retry claims the earlier observations again (otherwise
 * "already seen" would lose their late attachment for good). */
static void retried_after_failed_commit_span_export_claims_again(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    attach(c, &pb, 0); /* waits for its span */
    sp_span sp = span(1, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    corr_ticket t;
    assert_int_equal(corr_attach(c, &tb, 0, &t, NULL), 0);
    assert_int_equal(late_value(&tb, 1), 10 * MS);
    corr_abort(c, &tb, &t); /* the commit failed */
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.spans_indexed, 0);
    sp_batch again = batch(f, "t1");
    again.spans = &sp;
    again.nspans = 1;
    attach(c, &again, 0);
    assert_int_equal(late_value(&again, 1), 10 * MS); /* claimed again, once */
    sp_batch third = batch(f, "t1"); /* and a retry after a commit is still a retry */
    third.spans = &sp;
    third.nspans = 1;
    attach(c, &third, 0);
    assert_int_equal(late_value(&third, 1), 0);
    corr_free(c);
}

/* I4, profiles: a retried profile export after a failed commit keeps its observations once, so
 * a span arriving later attaches each of them once, not twice. */
static void retried_after_failed_commit_profile_attaches_once(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    uint64_t ts[] = {150 * MS, 160 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 2, PID, TID));
    corr_ticket t;
    assert_int_equal(corr_attach(c, &pb, 0, &t, NULL), 0);
    corr_abort(c, &pb, &t);
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.obs_waiting, 0);
    sp_batch retry = batch(f, "t1");
    sp_batch_add_profile(&retry, profile(f->a, ts, 2, PID, TID));
    attach(c, &retry, 0);
    sp_span sp = span(1, 100, 200, PID, TID);
    sp_batch tb;
    send_spans(c, f, &sp, 1, &tb);
    assert_int_equal(late_value(&tb, 1), 20 * MS); /* two observations of 10 ms, once each */
    corr_free(c);
}

/* I4, links: a span export whose span a linked observation waited for takes it from the queue;
 * when that export is not stored, the observation waits again for the retry. */
static void retried_after_failed_commit_link_waits_again(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    uint64_t ts[] = {102 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *p = profile(f->a, ts, 1, PID, TID);
    p->samples[0].has_link = 1;
    p->samples[0].link.span_id[7] = 3; /* span 3 has not arrived */
    sp_batch_add_profile(&pb, p);
    attach(c, &pb, 0);
    sp_span sp[] = {child(3, 1, 100, 200, PID, TID), span(1, 0, 1000, PID, TID)};
    sp_batch tb = batch(f, "t1");
    tb.spans = sp;
    tb.nspans = 2;
    corr_ticket t;
    assert_int_equal(corr_attach(c, &tb, 0, &t, NULL), 0);
    assert_int_equal(late_value(&tb, 1), 10 * MS); /* the link's ancestor */
    corr_abort(c, &tb, &t);
    sp_batch again = batch(f, "t1");
    again.spans = sp;
    again.nspans = 2;
    attach(c, &again, 0);
    assert_int_equal(late_value(&again, 1), 10 * MS);
    corr_free(c);
}

static void explicit_link_stops_at_another_process(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span v[] = {span(1, 0, 1000, PID + 1, TID), child(2, 1, 100, 200, PID, TID)};
    send_spans(c, f, v, 2, NULL);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *p = profile(f->a, ts, 1, PID, TID);
    p->samples[0].has_link = 1;
    p->samples[0].link.span_id[7] = 2;
    sp_batch_add_profile(&pb, p);
    attach(c, &pb, 0);
    assert_int_equal(p->samples[0].nspans, 1);
    assert_true(has_span(&p->samples[0], 2));
    corr_free(c);
}

static void innermost_span_comes_first(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span v[] = {span(1, 0, 1000, PID, TID), span(2, 100, 500, PID, TID),
                   span(3, 120, 200, PID, TID)};
    send_spans(c, f, v, 3, NULL);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    attach(c, &pb, 0);
    const sp_sample *s = &pb.profiles[0]->samples[0];
    assert_int_equal(s->nspans, 3);
    assert_int_equal(s->spans[0].span_id[7], 3);
    assert_int_equal(s->spans[2].span_id[7], 1);
    corr_free(c);
}

static void threadless_spans_attach_only_as_one_chain(void **state)
{
    fixture *f = *state;
    corr_options now = {.settle_ns = -1}; /* rule 3 on arrival */
    corr *c = corr_new(&now);
    /* trace A: 1 ⊃ 2, trace B: 3, all without thread.id; 3 overlaps 1 only in [600, 800) */
    sp_span v[] = {span(1, 0, 700, PID, 0), child(2, 1, 100, 300, PID, 0),
                   span(3, 600, 800, PID, 0)};
    v[2].trace_id[0] = 0xbb;
    send_spans(c, f, v, 3, NULL);
    uint64_t unique[] = {150 * MS}, amb[] = {650 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, unique, 1, PID, TID));
    sp_batch_add_profile(&pb, profile(f->a, amb, 1, PID, TID));
    attach(c, &pb, 0);
    const sp_sample *s = &pb.profiles[0]->samples[0];
    assert_int_equal(s->nspans, 2);
    assert_int_equal(s->spans[0].span_id[7], 2);
    assert_int_equal(pb.profiles[1]->samples[0].nspans, 0);
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.by_process_span, 1);
    assert_int_equal(st.ambiguous, 1);
    corr_free(c);

    corr_options off = {.threadless = CORR_THREADLESS_OFF, .settle_ns = -1};
    c = corr_new(&off);
    send_spans(c, f, v, 3, NULL);
    sp_batch pb2 = batch(f, "t1");
    sp_batch_add_profile(&pb2, profile(f->a, unique, 1, PID, TID));
    attach(c, &pb2, 0);
    assert_int_equal(pb2.profiles[0]->samples[0].nspans, 0);
    corr_free(c);
}

static void threadless_late_spans_judge_the_whole_export(void **state)
{
    fixture *f = *state;
    corr_options now = {.settle_ns = -1}; /* rule 3 on arrival */
    corr *c = corr_new(&now);
    uint64_t ts[] = {150 * MS, 650 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 2, PID, 0));
    attach(c, &pb, 0);
    sp_span v[] = {span(1, 0, 700, PID, 0), child(2, 1, 100, 300, PID, 0),
                   span(3, 600, 800, PID, 0)};
    v[2].trace_id[0] = 0xbb;
    sp_batch tb;
    send_spans(c, f, v, 3, &tb);
    assert_int_equal(late_value(&tb, 1), 10 * MS); /* 150 only: 650 is ambiguous */
    assert_int_equal(late_value(&tb, 2), 10 * MS);
    assert_int_equal(late_value(&tb, 3), 0);
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.by_process_span, 1);
    assert_int_equal(st.ambiguous, 1);
    corr_free(c);
}

/* I8: spans without thread.id are exported when they end, in batches; two threads serve
 * concurrent requests. Decided on arrival, thread B's sample lands in A's span (b1 was not known
 * yet); after the settle time every concurrent span is known and the guard sees both threads
 * running: ambiguous. A request while no other thread runs still gets its thread's samples. */
static void threadless_decisions_wait_for_concurrent_spans(void **state)
{
    fixture *f = *state;
    /* a1 [0,100) and a2 [100,200) ran on A, b1 [50,150) on B, c1 [300,400) on A alone */
    sp_span a1 = span(1, 0, 100, PID, 0), a2 = span(2, 100, 200, PID, 0);
    sp_span b1 = span(3, 50, 150, PID, 0), c1 = span(4, 300, 400, PID, 0);
    a1.trace_id[0] = 0xa1;
    a2.trace_id[0] = 0xa2;
    b1.trace_id[0] = 0xb1;
    c1.trace_id[0] = 0xc1;
    uint64_t on_a[] = {20 * MS, 75 * MS, 120 * MS, 180 * MS, 350 * MS};
    uint64_t on_b[] = {60 * MS, 90 * MS, 140 * MS};
    for (int settle = 0; settle < 2; settle++) {
        corr_options o = {.settle_ns = settle ? 1000 * MS : -1};
        corr *c = corr_new(&o);
        sp_batch tb1 = batch(f, "t1"); /* a1 ended first: the first export */
        tb1.spans = &a1;
        tb1.nspans = 1;
        attach(c, &tb1, 0);
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, on_a, 5, PID, TID));
        sp_batch_add_profile(&pb, profile(f->a, on_b, 3, PID, TID + 1));
        attach(c, &pb, 100 * MS);
        sp_span rest[] = {b1, a2, c1}; /* the next export, in end order */
        sp_batch tb2 = batch(f, "t1");
        tb2.spans = rest;
        tb2.nspans = 3;
        attach(c, &tb2, 500 * MS);
        sp_batch settled = batch(f, "t1");
        assert_int_equal(corr_settle(c, 2000 * MS, settled_store, &settled), 0);
        /* B's samples in A's spans: only when decided on arrival */
        int64_t b_in_a = 0;
        for (uint32_t k = 0; k < pb.profiles[1]->nsamples; k++)
            if (has_span(&pb.profiles[1]->samples[k], 1))
                b_in_a += pb.profiles[1]->samples[k].value;
        b_in_a += late_value(&tb2, 1) + late_value(&settled, 1);
        if (!settle) {
            assert_true(b_in_a > 0); /* the bug the settle time fixes */
        } else {
            assert_int_equal(b_in_a, 0);
            for (int id = 1; id <= 3; id++) /* a1, a2, b1: both threads ran during each */
                assert_int_equal(late_value(&tb2, (uint8_t)id) + late_value(&settled, (uint8_t)id),
                                 0);
            assert_int_equal(late_value(&settled, 4), 10 * MS); /* c1: A's 350 ms sample */
            corr_stats st;
            corr_get_stats(c, 0, &st);
            assert_int_equal(st.by_process_span, 1);
            assert_int_equal(st.ambiguous, 7);
        }
        corr_free(c);
    }
}

/* The off-CPU value each span gets, over b's samples: attached ones and attach_only ones. */
static int64_t span_value(const sp_batch *b, uint8_t id)
{
    int64_t v = 0;
    for (size_t i = 0; i < b->nprofiles; i++)
        for (uint32_t k = 0; k < b->profiles[i]->nsamples; k++)
            if (has_span(&b->profiles[i]->samples[k], id))
                v += b->profiles[i]->samples[k].value;
    return v;
}

static sp_profile *offcpu(sp_arena *a, const uint64_t *ts, const int64_t *d, uint32_t n)
{
    sp_profile *p = profile(a, ts, n, PID, TID);
    p->type_id = "off_cpu:off_cpu:nanoseconds::";
    p->name = "off_cpu";
    sp_sample *s = &p->samples[0];
    s->values = sp_arena_memdup(a, d, n * sizeof *d);
    s->value = 0;
    for (uint32_t k = 0; k < n; k++)
        s->value += d[k];
    return p;
}

/* I9: an off-CPU observation (timestamp T = switch-in, value D) is the interval [T - D, T]; each
 * span of its thread gets the part inside it, whichever side arrived first. */
static void offcpu_intervals_give_each_span_its_part(void **state)
{
    fixture *f = *state;
    sp_span v[] = {span(1, 0, 1000, PID, TID), child(2, 1, 100, 200, PID, TID),
                   span(3, 1000, 1100, PID, TID)};
    uint64_t ts[] = {180 * MS, 1050 * MS};
    int64_t d[] = {50 * MS, 100 * MS};
    for (int spans_first = 0; spans_first < 2; spans_first++) {
        corr *c = corr_new(NULL);
        sp_batch tb = batch(f, "t1"), pb = batch(f, "t1");
        if (spans_first)
            send_spans(c, f, v, 3, &tb);
        sp_batch_add_profile(&pb, offcpu(f->a, ts, d, 2));
        attach(c, &pb, 0);
        if (!spans_first)
            send_spans(c, f, v, 3, &tb);
        int64_t got[4];
        for (uint8_t id = 1; id <= 3; id++)
            got[id] = span_value(&pb, id) + span_value(&tb, id);
        assert_int_equal(got[2], 50 * MS);           /* [130, 180] inside the inner span */
        assert_int_equal(got[1], 50 * MS + 50 * MS); /* that, and [950, 1000] of the second */
        assert_int_equal(got[3], 50 * MS);           /* [1000, 1050] */
        /* the profile itself keeps every nanosecond once */
        int64_t total = 0;
        for (uint32_t k = 0; k < pb.profiles[0]->nsamples; k++)
            total += pb.profiles[0]->samples[k].value;
        assert_int_equal(total, 150 * MS);
        corr_stats st;
        corr_get_stats(c, 0, &st);
        assert_int_equal(st.offcpu_attached, 2);
        assert_int_equal(st.by_thread, 0); /* CPU counters untouched */
        corr_free(c);
    }
}

static void equal_pids_on_two_hosts_never_mix(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span sp = span(1, 100, 200, PID, TID);
    sp.ident.key[1] = sp_ident_hash("host-a", 6);
    send_spans(c, f, &sp, 1, NULL);
    uint64_t ts[] = {150 * MS};
    sp_proc_ident host_b = {{0, sp_ident_hash("host-b", 6), 0, 0}};
    sp_proc_ident pod_only = {{0, 0, sp_ident_hash("pod", 3), 0}};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    pb.profiles[0]->samples[0].ident = &host_b;
    pb.profiles[1]->samples[0].ident = &pod_only; /* no host on this side: pid decides */
    attach(c, &pb, 0);
    assert_int_equal(pb.profiles[0]->samples[0].nspans, 0);
    assert_int_equal(pb.profiles[1]->samples[0].nspans, 1);
    corr_free(c);
}

static void only_cpu_profiles_are_correlated(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span sp = span(1, 100, 200, PID, TID);
    send_spans(c, f, &sp, 1, NULL);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *mem = profile(f->a, ts, 1, PID, TID);
    mem->type_id = "memory:alloc_space:bytes:space:bytes";
    mem->samples[0].has_link = 1;
    mem->samples[0].link.span_id[7] = 1;
    sp_batch_add_profile(&pb, mem);
    assert_int_equal(attach(c, &pb, 0), 0);
    assert_int_equal(mem->samples[0].nspans, 0);
    assert_true(corr_is_cpu_type("wall:wall:nanoseconds:wall:nanoseconds"));
    assert_true(corr_is_cpu_type("process_cpu:samples:count:cpu:nanoseconds"));
    assert_false(corr_is_cpu_type("goroutines:goroutine:count:goroutine:count"));
    corr_free(c);
}

static void budget_drops_the_oldest_observations_first(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 512 * 1024, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0); /* the whole budget, not the share of I13 */
    /* observations arrive over time; the budget forces evictions */
    for (int i = 0; i < 400; i++) {
        uint64_t ts[64];
        for (int k = 0; k < 64; k++)
            ts[k] = (uint64_t)(i * 1000 + k) * MS;
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, ts, 64, PID, TID));
        attach(c, &pb, (int64_t)i * 1000 * MS);
    }
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_true(st.evicted > 0);
    assert_true(st.bytes <= 2 * o.max_bytes);
    /* the newest observations are still there for a late span, the oldest are gone */
    sp_span v[] = {span(1, 399000, 399100, PID, TID), span(2, 0, 100, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 2, &tb);
    assert_true(late_value(&tb, 1) > 0);
    assert_int_equal(late_value(&tb, 2), 0);
    corr_free(c);
}

/* An eviction pass drops the oldest share of what waits, not everything: with a long window the
 * expiry times of what the budget holds span a small part of it, and a histogram of 64 buckets
 * over the window (9.4 s each for 10 minutes) put them all in one bucket and dropped them all. */
static void budget_evicts_a_share_when_the_window_is_long(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 512 * 1024, .window_ns = 600000 * MS};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0); /* the whole budget, not the share of I13 */
    int passes = 0;
    for (int i = 0; i < 400; i++) {
        int64_t now = (int64_t)i * 10 * MS; /* 4 s of arrivals */
        uint64_t ts[64];
        for (int k = 0; k < 64; k++)
            ts[k] = (uint64_t)(now + k * MS / 8);
        corr_stats before, after;
        corr_get_stats(c, now, &before);
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, ts, 64, PID, TID + i % 8));
        attach(c, &pb, now);
        corr_get_stats(c, now, &after);
        if (after.evicted == before.evicted)
            continue;
        passes++;
        /* aiming at 3/4 of the budget: well over half of what waited is still there */
        if (after.obs_waiting * 2 < before.obs_waiting)
            fail_msg("arrival %d: an eviction pass left %llu of %llu observations", i,
                     (unsigned long long)after.obs_waiting, (unsigned long long)before.obs_waiting);
    }
    assert_true(passes > 0);
    corr_free(c);
}

/* I12: no trim while everything fits; once the budget evicts, the memory goes back to the
 * system, once per call that evicted (the counter a scrape shows), never inside the lock. */
static void budget_eviction_gives_memory_back(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 512 * 1024, .window_ns = 600000 * MS};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0); /* the whole budget, not the share of I13 */
    uint64_t calls_that_evicted = 0;
    for (int i = 0; i < 400; i++) {
        int64_t now = (int64_t)i * 10 * MS;
        uint64_t ts[64];
        for (int k = 0; k < 64; k++)
            ts[k] = (uint64_t)(now + k * MS / 8);
        corr_stats before, after;
        corr_get_stats(c, 0, &before);
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, ts, 64, PID, TID + i % 8));
        attach(c, &pb, now);
        corr_get_stats(c, 0, &after);
        int evicted = after.evicted + after.released > before.evicted + before.released;
        calls_that_evicted += (uint64_t)evicted;
        assert_int_equal(after.memory_trims, calls_that_evicted);
    }
    assert_true(calls_that_evicted > 0);
    corr_free(c);
}

/* Every sample on a never-seen frame (a leaf named once), no spans, a budget far smaller than
 * the run: the budget drops observations and, since the tables of names and stacks they leave
 * behind would otherwise grow for ever, rebuilds those tables often enough that `bytes` stays
 * within it all run long. */
static void new_frames_all_run_long_stay_within_the_budget(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 256 * 1024, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0); /* the whole budget, not the share of I13 */
    enum { ROUNDS = 20000 };
    corr_stats st;
    for (int i = 0; i < ROUNDS; i++) {
        char *leaf = sp_arena_alloc(f->a, 48);
        snprintf(leaf, 48, "leaf_never_seen_before_%d", i);
        const char **names = sp_arena_memdup(f->a, strs, sizeof strs);
        names[3] = leaf;
        uint64_t ts[] = {(uint64_t)i * MS};
        sp_batch pb = batch(f, "t1");
        sp_profile *p = profile(f->a, ts, 1, PID, TID);
        p->strings = names;
        sp_batch_add_profile(&pb, p);
        attach(c, &pb, (int64_t)i * MS);
        if (i % 1000 == 999) {
            corr_get_stats(c, (int64_t)i * MS, &st);
            if (st.bytes > 2 * o.max_bytes)
                fail_msg("round %d: %llu bytes held, over twice the budget of %zu", i,
                         (unsigned long long)st.bytes, o.max_bytes);
        }
    }
    corr_get_stats(c, ROUNDS * MS, &st);
    assert_true(st.evicted > 0);
    /* what the tables cost never crowds out the observations: the newest thousand still wait,
     * and a late span over them takes them */
    assert_true(st.obs_waiting >= 1000);
    sp_span v[] = {span(1, ROUNDS - 1000, ROUNDS, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 1, &tb);
    assert_int_equal(late_value(&tb, 1), 1000 * 10 * MS);
    corr_free(c);
}

/* A retried span export after its spans left the window, while observations they claimed are
 * still waiting, must not attach those observations a second time. */
static void retry_after_the_span_expired_attaches_nothing_twice(void **state)
{
    fixture *f = *state;
    corr_options o = {.window_ns = 1000 * MS};
    corr *c = corr_new(&o);
    sp_span sp = span(1, 100, 200, PID, TID);
    sp_batch tb = batch(f, "t1");
    tb.spans = &sp;
    tb.nspans = 1;
    attach(c, &tb, 1);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    assert_int_equal(attach(c, &pb, 900 * MS), 1); /* attached at arrival */
    corr_stats st;
    corr_get_stats(c, 1100 * MS, &st); /* the span is out of the window, the sample is not */
    assert_int_equal(st.spans_indexed, 0);
    assert_int_equal(st.obs_waiting, 1);
    sp_batch again = batch(f, "t1");
    again.spans = &sp;
    again.nspans = 1;
    assert_int_equal(attach(c, &again, 1200 * MS), 0);
    assert_int_equal(again.nprofiles, 0);
    corr_free(c);
}

/* Timestamps near the ends of the range (valid OTLP: end >= start) must not overflow. */
static void absurd_timestamps_are_harmless(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    sp_span v[] = {span(1, 0, 0, PID, TID), span(2, 0, 0, PID, TID), span(3, 0, 0, PID, TID)};
    v[0].start_ns = 1;
    v[0].end_ns = (uint64_t)1 << 63;
    v[1].start_ns = 0;
    v[1].end_ns = (uint64_t)INT64_MAX; /* eligible, longest possible */
    v[2].start_ns = UINT64_MAX;
    v[2].end_ns = UINT64_MAX;
    send_spans(c, f, v, 3, NULL);
    uint64_t ts[] = {UINT64_MAX, (uint64_t)1 << 63, 0, 150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 4, PID, TID));
    attach(c, &pb, 0);
    const sp_profile *p = pb.profiles[0];
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        int in_range = s->timestamps[0] <= (uint64_t)INT64_MAX;
        assert_int_equal(s->nspans, in_range ? 1 : 0);
        if (in_range)
            assert_int_equal(s->spans[0].span_id[7], 2);
    }
    corr_free(c);
}

/* Every new host.id adds a process identity; once its spans left the window the memory must go,
 * or `bytes` stays over the budget for good. */
static void identities_leave_with_their_spans(void **state)
{
    fixture *f = *state;
    corr_options o = {.window_ns = 1000 * MS};
    corr *c = corr_new(&o);
    enum { N = 20000, ROUNDS = 4 };
    sp_span *v = calloc(N, sizeof *v);
    uint64_t after[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            v[i] = span((uint8_t)i, 100, 200, PID, TID);
            v[i].span_id[0] = (uint8_t)(i >> 8);
            v[i].ident.key[0] = (uint64_t)(r * N + i) + 1; /* a new host each time */
        }
        sp_batch tb = batch(f, "t1");
        tb.spans = v;
        tb.nspans = N;
        int64_t t0 = (int64_t)r * 10000 * MS + 1;
        attach(c, &tb, t0);
        corr_stats st;
        corr_get_stats(c, t0 + 5000 * MS, &st); /* past the window and the retry markers */
        assert_int_equal(st.spans_known, 0);
        after[r] = st.bytes;
    }
    free(v);
    corr_free(c);
    /* what a round leaves behind does not pile up (20000 identities are over 1 MiB) */
    assert_true(after[ROUNDS - 1] < after[0] + 64 * 1024);
}

/* A client naming a new X-Scope-OrgID per request does not grow memory for ever, and tenants
 * that still hold spans keep matching their own samples after the table is rebuilt. */
static void tenants_leave_with_their_spans(void **state)
{
    fixture *f = *state;
    corr_options o = {.window_ns = 1000 * MS};
    corr *c = corr_new(&o);
    enum { N = 5000, ROUNDS = 4 };
    uint64_t after[ROUNDS];
    char name[32];
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = (int64_t)r * 10000 * MS + 1;
        for (int i = 0; i < N; i++) {
            snprintf(name, sizeof name, "tenant-%d-%d", r, i);
            sp_span sp = span(1, 100, 200, PID, TID);
            sp_batch tb = batch(f, name);
            tb.spans = &sp;
            tb.nspans = 1;
            attach(c, &tb, t0);
        }
        /* one long-lived tenant, re-sent each round, must still match after a rebuild */
        sp_span keep = span(9, 100, 200, PID, TID);
        sp_batch kb = batch(f, "keeper");
        kb.spans = &keep;
        kb.nspans = 1;
        attach(c, &kb, t0 + 4000 * MS);
        corr_stats st;
        corr_get_stats(c, t0 + 4500 * MS, &st); /* the others expire, a sweep runs */
        uint64_t ts[] = {150 * MS};
        sp_batch pb = batch(f, "keeper");
        sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
        attach(c, &pb, t0 + 4600 * MS);
        assert_int_equal(pb.profiles[0]->samples[0].nspans, 1);
        assert_int_equal(pb.profiles[0]->samples[0].spans[0].span_id[7], 9);
        sp_batch other = batch(f, "tenant-0-0"); /* a forgotten tenant's id is not reused */
        sp_batch_add_profile(&other, profile(f->a, ts, 1, PID, TID));
        attach(c, &other, t0 + 4600 * MS);
        assert_int_equal(other.profiles[0]->samples[0].nspans, 0);
        corr_get_stats(c, t0 + 9000 * MS, &st);
        after[r] = st.bytes;
    }
    corr_free(c);
    assert_true(after[ROUNDS - 1] < after[0] + 64 * 1024);
}

/* A sender's parent cycle (1 ↔ 2) or a span that is its own parent ends the walk, each span once;
 * when everything expires the waiting counters come back to zero, not below. */
static void parent_cycles_end_and_counters_return_to_zero(void **state)
{
    fixture *f = *state;
    corr_options o = {.window_ns = 1000 * MS};
    corr *c = corr_new(&o);
    sp_span v[] = {child(1, 2, 100, 200, PID, TID), child(2, 1, 100, 200, PID, TID),
                   child(3, 3, 100, 200, PID, TID)};
    sp_batch tb = batch(f, "t1");
    tb.spans = v;
    tb.nspans = 3;
    attach(c, &tb, 1);
    uint64_t ts[] = {150 * MS};
    sp_batch pb = batch(f, "t1");
    sp_profile *a = profile(f->a, ts, 1, PID, TID), *b = profile(f->a, ts, 1, PID, TID);
    a->samples[0].has_link = b->samples[0].has_link = 1;
    a->samples[0].link.span_id[7] = 1;
    b->samples[0].link.span_id[7] = 3;
    sp_batch_add_profile(&pb, a);
    sp_batch_add_profile(&pb, b);
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID + 1)); /* waits, unmatched */
    attach(c, &pb, 2);
    assert_int_equal(a->samples[0].nspans, 2);
    assert_true(has_span(&a->samples[0], 1) && has_span(&a->samples[0], 2));
    assert_int_equal(b->samples[0].nspans, 1);
    corr_stats st;
    corr_get_stats(c, 5000 * MS, &st);
    assert_int_equal(st.obs_waiting, 0);
    assert_int_equal(st.obs_unattached, 0);
    assert_int_equal(st.unmatched, 1);
    assert_int_equal(st.by_link, 2);
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
        cmocka_unit_test_setup_teardown(explicit_link_reaches_ancestors_known_now_and_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(explicit_link_stops_at_another_process, setup, teardown),
        cmocka_unit_test_setup_teardown(innermost_span_comes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(threadless_spans_attach_only_as_one_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(threadless_decisions_wait_for_concurrent_spans, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(offcpu_intervals_give_each_span_its_part, setup, teardown),
        cmocka_unit_test_setup_teardown(threadless_late_spans_judge_the_whole_export, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(equal_pids_on_two_hosts_never_mix, setup, teardown),
        cmocka_unit_test_setup_teardown(only_cpu_profiles_are_correlated, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_eviction_gives_memory_back, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_evicts_a_share_when_the_window_is_long, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(new_frames_all_run_long_stay_within_the_budget, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(budget_drops_the_oldest_observations_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retry_after_the_span_expired_attaches_nothing_twice, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(absurd_timestamps_are_harmless, setup, teardown),
        cmocka_unit_test_setup_teardown(identities_leave_with_their_spans, setup, teardown),
        cmocka_unit_test_setup_teardown(tenants_leave_with_their_spans, setup, teardown),
        cmocka_unit_test_setup_teardown(samples_before_a_split_come_back_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(splitting_many_observations_keeps_every_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retried_after_failed_commit_span_export_claims_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retried_after_failed_commit_profile_attaches_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(retried_after_failed_commit_link_waits_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(budget_keeps_spans_and_lets_attached_observations_go_first,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(parent_cycles_end_and_counters_return_to_zero, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
