/* The correlator's budget at the sizes the server meets (budget.c): an eviction pass over hundreds
 * of thousands of waiting observations, which estimates its cut from a sample of them, still
 * drops the oldest and about the share it aims at; rare attached observations still go first;
 * and renumbering the names, stacks and series keeps every observation's frames and labels.
 * The oracle is what a late span gets back (late_value and the late profiles' own frames and
 * labels), never the correlator's internals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corr_fixture.h"
#include "correlator/internal.h" /* interns_gen: how many times the tables were renumbered */

enum { PER_ARRIVAL = 1000, ARRIVALS = 1000, GROUP = 10 };

/* Arrival i: one sample of process pid (PID for arrive) on thread tid with PER_ARRIVAL observations
 * 0.9 ms apart inside [i s, i s + 0.9 s): no span edge at a whole second falls on one. */
static void arrive_of(corr *c, fixture *f, int i, int64_t pid, int64_t tid)
{
    static uint64_t ts[PER_ARRIVAL];
    for (int k = 0; k < PER_ARRIVAL; k++)
        ts[k] = (uint64_t)((int64_t)i * 1000 * MS + k * (9 * MS / 10) + MS / 2);
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, PER_ARRIVAL, pid, tid));
    attach(c, &pb, (int64_t)i * MS);
    sp_arena_reset(f->a);
}

static void arrive(corr *c, fixture *f, int i, int64_t tid)
{
    arrive_of(c, f, i, PID, tid);
}

/* A million observations through a 16 MiB budget: every pass (its cut read from a sample of
 * what waits) ends within the budget without emptying it; at the end, a late span over each group
 * of arrivals finds the newest groups whole and the oldest gone, with at most one group cut in
 * between: what was dropped is older than what stayed. */
static void a_pass_over_many_observations_drops_the_oldest_share(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 16 << 20, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0); /* the whole budget, not the share of I13 */
    int passes = 0;
    corr_stats before, after;
    for (int i = 0; i < ARRIVALS; i++) {
        corr_get_stats(c, 0, &before);
        arrive(c, f, i, TID);
        corr_get_stats(c, 0, &after);
        if (after.evicted == before.evicted)
            continue;
        passes++;
        assert_true(before.obs_waiting > (1u << 16)); /* past the sampling threshold */
        /* within the budget, and not everything gone: the pass aims at 3/4 of the budget, and
         * counts capacity, which the observation arrays' doubling makes up to twice what they
         * hold, so a third of the budget is the least it may leave */
        if (after.bytes > o.max_bytes || after.bytes < o.max_bytes / 3 ||
            after.obs_waiting >= before.obs_waiting + PER_ARRIVAL)
            fail_msg("arrival %d: a pass went from %llu observations in %llu bytes to %llu in %llu",
                     i, (unsigned long long)before.obs_waiting, (unsigned long long)before.bytes,
                     (unsigned long long)after.obs_waiting, (unsigned long long)after.bytes);
    }
    assert_true(passes >= 2);
    enum { NG = ARRIVALS / GROUP };
    sp_span v[NG];
    for (int g = 0; g < NG; g++) /* group g: arrivals [g*GROUP, (g+1)*GROUP) */
        v[g] = span((uint8_t)(g + 1), (int64_t)g * GROUP * 1000, (int64_t)(g + 1) * GROUP * 1000,
                    PID, TID);
    sp_batch tb;
    send_spans(c, f, v, NG, &tb);
    const int64_t whole = (int64_t)GROUP * PER_ARRIVAL * 10 * MS;
    int first_whole = -1, cut_groups = 0;
    for (int g = 0; g < NG; g++) {
        int64_t got = late_value(&tb, (uint8_t)(g + 1));
        if (got == whole) {
            if (first_whole < 0)
                first_whole = g;
        } else if (first_whole >= 0) {
            fail_msg("group %d lost observations (%lld of %lld) after group %d was whole", g,
                     (long long)got, (long long)whole, first_whole);
        } else {
            cut_groups += got > 0;
        }
    }
    assert_true(first_whole > 0);       /* the oldest went */
    assert_true(first_whole < NG - 10); /* the newest stayed */
    assert_true(cut_groups <= 1);
    corr_free(c);
}

/* Three observations attached to a span among hundreds of thousands without one: a sample of
 * what waits would likely miss them, and the budget must still let them go before it evicts
 * what waits for a span (I5). */
static void rare_attached_observations_still_go_first(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 8 << 20, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    sp_span v[] = {span(1, 0, 100, PID, TID + 1)};
    send_spans(c, f, v, 1, NULL);
    uint64_t ts[] = {10 * MS, 20 * MS, 30 * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 3, PID, TID + 1));
    assert_int_equal(attach(c, &pb, 0), 3);
    corr_stats st;
    int i = 0;
    do {
        arrive(c, f, ++i, TID);
        corr_get_stats(c, 0, &st);
    } while (!st.evicted && i < ARRIVALS);
    assert_true(st.evicted > 0);
    assert_true(st.released >= 1);
    corr_free(c);
}

/* The function name of frame k (0: the leaf) of a late sample. */
static const char *frame_of(const sp_profile *late, const sp_sample *s, uint32_t k)
{
    const sp_location *l = &late->locations[s->location_ids[k]];
    return late->strings[late->functions[l->lines[0].function_id].name];
}

static const char *label(const sp_profile *p, const char *name)
{
    for (uint32_t i = 0; i < p->nseries; i++)
        if (strcmp(p->series[i].name, name) == 0)
            return p->series[i].value;
    return NULL;
}

/* Round i: one observation at i.5 ms on a never-seen leaf "leaf_i" under "mid_<i / 500>" and main,
 * in series service_name=svc_i, so names, stacks and series all grow and the budget renumbers
 * them again and again. */
static void one_round(corr *c, fixture *f, int i)
{
    char *leaf = sp_arena_alloc(f->a, 32), *mid = sp_arena_alloc(f->a, 32),
         *svc = sp_arena_alloc(f->a, 32);
    snprintf(leaf, 32, "leaf_%d", i);
    snprintf(mid, 32, "mid_%d", i / 500);
    snprintf(svc, 32, "svc_%d", i);
    const char **names = sp_arena_memdup(f->a, strs, sizeof strs);
    names[2] = mid;
    names[3] = leaf;
    sp_kv *kv = sp_arena_calloc(f->a, 2, sizeof *kv);
    kv[0] = (sp_kv){"__name__", "process_cpu"};
    kv[1] = (sp_kv){"service_name", svc};
    uint64_t ts[] = {(uint64_t)i * MS + MS / 2};
    sp_batch pb = batch(f, "t1");
    sp_profile *p = profile(f->a, ts, 1, PID, TID);
    p->strings = names;
    p->series = kv;
    sp_batch_add_profile(&pb, p);
    attach(c, &pb, (int64_t)i * MS);
    sp_arena_reset(f->a);
}

/* The run stops right after a renumbering and a few rounds more, so the last rounds'
 * observations were renumbered (moved down with the ids of everything before them dropped) or
 * came after it, their middle frame a name interned before the renumbering and moved down by
 * it; a late span over them gets each one with its own frames and its own series. */
static void renumbering_keeps_each_observation_its_frames_and_labels(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 512 * 1024, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    enum { MIN_ROUNDS = 10000, MAX_ROUNDS = 100000, LAST = 100, AFTER = 20 };
    int i = 0;
    for (;; i++) {
        assert_true(i < MAX_ROUNDS);
        uint64_t gen = c->interns_gen;
        one_round(c, f, i);
        if (i >= MIN_ROUNDS && c->interns_gen != gen && (i + 1) % 500 < 500 - AFTER)
            break; /* renumbered in this round, and the mid name stays for AFTER more */
    }
    uint64_t gen = c->interns_gen;
    for (int k = 1; k <= AFTER; k++)
        one_round(c, f, i + k);
    assert_int_equal(c->interns_gen, gen); /* no second renumbering */
    /* rounds i - LAST .. i - 1 waited through the renumbering, i .. i + AFTER came after it */
    sp_span v[] = {span(1, i - LAST, i + AFTER + 1, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 1, &tb);
    int seen = 0;
    for (size_t k = 0; k < tb.nprofiles; k++) {
        const sp_profile *p = tb.profiles[k];
        const char *svc = label(p, "service_name");
        assert_non_null(svc);
        for (uint32_t j = 0; j < p->nsamples; j++) {
            int round = (int)(p->samples[j].timestamps[0] / MS);
            char want_leaf[32], want_mid[32], want_svc[32];
            snprintf(want_leaf, sizeof want_leaf, "leaf_%d", round);
            snprintf(want_mid, sizeof want_mid, "mid_%d", round / 500);
            snprintf(want_svc, sizeof want_svc, "svc_%d", round);
            assert_int_equal(p->samples[j].nlocations, 3);
            assert_string_equal(frame_of(p, &p->samples[j], 0), want_leaf);
            assert_string_equal(frame_of(p, &p->samples[j], 1), want_mid);
            assert_string_equal(frame_of(p, &p->samples[j], 2), "main");
            assert_string_equal(svc, want_svc);
            assert_int_equal(p->samples[j].value, 10 * MS);
            seen++;
        }
    }
    assert_int_equal(seen, LAST + 1 + AFTER);
    corr_free(c);
}

/* I13: a process that has sent no span (most of what the eBPF profiler samples) waits in a
 * sixteenth of the budget. What it holds stays near that share however much comes, the oldest
 * go first (counted in unclaimed_evicted; the budget itself never acts), and the process's first
 * spans still find its newest samples, which then leave the share. */
static void a_process_without_spans_waits_in_its_share(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 16 << 20, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    const size_t share = o.max_bytes / 16;
    enum { N = 100 }; /* 100,000 observations, 4 MB of records: four times the share */
    corr_stats st;
    for (int i = 0; i < N; i++) {
        arrive_of(c, f, i, PID, TID + i % 4);
        corr_get_stats(c, 0, &st);
        if (st.unclaimed_bytes > 2 * share) /* one arrival may double an array past it */
            fail_msg("arrival %d: %llu bytes of observations without spans, the share is %zu", i,
                     (unsigned long long)st.unclaimed_bytes, share);
    }
    assert_true(st.unclaimed_evicted > 0);
    assert_int_equal(st.evicted, 0);
    assert_int_equal(st.released, 0);
    assert_true(st.obs_waiting >= share / 2 / 40); /* not emptied: a few thousand still wait */
    sp_span v[] = {span(1, (N - 1) * 1000, N * 1000, PID, TID + (N - 1) % 4),
                   span(2, 0, 1000, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 2, &tb);
    assert_int_equal(late_value(&tb, 1), PER_ARRIVAL * 10 * MS); /* the newest: whole */
    assert_int_equal(late_value(&tb, 2), 0);                     /* the oldest: gone */
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.unclaimed_bytes, 0);
    corr_free(c);
}

/* I13: a process that has sent spans waits in the whole budget beside one that has not: the
 * same arrivals into both, and a late span over the oldest finds them whole for the first and
 * gone for the second. */
static void a_process_with_spans_waits_in_the_whole_budget(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 16 << 20, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    sends_spans(c, f, PID, 0);
    enum { N = 100 };
    for (int i = 0; i < N; i++) {
        arrive_of(c, f, i, PID, TID);
        arrive_of(c, f, i, PID + 1, TID);
    }
    corr_stats st;
    corr_get_stats(c, 0, &st);
    assert_int_equal(st.evicted, 0);
    assert_true(st.unclaimed_evicted > 0);
    sp_span v[] = {span(1, 0, 1000, PID, TID), span(2, 0, 1000, PID + 1, TID)};
    sp_batch tb;
    send_spans(c, f, v, 2, &tb);
    assert_int_equal(late_value(&tb, 1), PER_ARRIVAL * 10 * MS);
    assert_int_equal(late_value(&tb, 2), 0);
    corr_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_pass_over_many_observations_drops_the_oldest_share, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rare_attached_observations_still_go_first, setup, teardown),
        cmocka_unit_test_setup_teardown(renumbering_keeps_each_observation_its_frames_and_labels,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_process_without_spans_waits_in_its_share, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_process_with_spans_waits_in_the_whole_budget, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
