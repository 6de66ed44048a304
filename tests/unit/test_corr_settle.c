/* Rule 3 after the settle time (I8, I10 in correlator/correlator.c): each observation without a
 * span of its own thread is judged once its settle time has passed, at the first corr_settle()
 * from then on, whatever the slot's order became meanwhile (sorted by a late span's lookup,
 * compacted by expiry, appended out of time order, the clock set back). The oracle is the
 * arrival times the test itself chose: at tick t, every observation that arrived by t - settle is
 * attached to the threadless span over it, and none that arrived later. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "corr_fixture.h"

#define SETTLE_MS 1000
#define STEP_MS   100 /* one observation arrives every STEP_MS */
#define NOBS      60

static void send_span(corr *c, fixture *f, sp_span s, int64_t now_ms)
{
    sp_batch tb = batch(f, "t1");
    sp_span *v = sp_arena_memdup(f->a, &s, sizeof s);
    tb.spans = v;
    tb.nspans = 1;
    attach(c, &tb, now_ms * MS);
}

/* One observation of thread TID at ts_ms, arriving at now_ms. */
static void observe(corr *c, fixture *f, int64_t ts_ms, int64_t now_ms)
{
    uint64_t ts[] = {(uint64_t)ts_ms * MS};
    sp_batch pb = batch(f, "t1");
    sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
    attach(c, &pb, now_ms * MS);
}

static void settle_pass_decides_each_observation_on_time(void **state)
{
    fixture *f = *state;
    corr_options o = {.settle_ns = SETTLE_MS * MS};
    corr *c = corr_new(&o);
    send_span(c, f, span(1, 0, 100000, PID, 0), 0); /* threadless, over everything below */
    sp_batch settled = batch(f, "t1");
    int64_t arrived[NOBS + 1];
    int n = 0;
    for (int64_t now = 0; now <= NOBS * STEP_MS + 2 * SETTLE_MS; now += STEP_MS) {
        if (n < NOBS) {
            /* pairs arrive out of time order, and every fifth sample is two seconds old (a
             * batching sender): sorted by time, it lands among observations decided before */
            int64_t ts = n % 2 ? now - 50 : now + 20;
            if (n % 5 == 4 && now >= 2000)
                ts = now - 2000;
            observe(c, f, ts, now);
            arrived[n++] = now;
        }
        if (now % 700 == 0) /* another threadless span: its lookup sorts the slot by time */
            send_span(c, f, span((uint8_t)(2 + now / 700), 200000 + now, 200100 + now, PID, 0),
                      now);
        if (now % 300 == 0) {
            assert_int_equal(corr_settle(c, now * MS, settled_store, &settled), 0);
            int64_t want = 0;
            for (int k = 0; k < n; k++)
                want += arrived[k] + SETTLE_MS <= now ? 10 * MS : 0;
            if (late_value(&settled, 1) != want)
                fail_msg("at %lld ms: %lld ns attached, %lld due", (long long)now,
                         (long long)late_value(&settled, 1), (long long)want);
        }
    }
    assert_int_equal(late_value(&settled, 1), NOBS * 10 * MS);
    corr_free(c);
}

/* The wall clock set back by more than the workers' jitter: observations that arrive "earlier"
 * now sit behind ones that expire later, and are still decided on time. */
static void settle_pass_after_the_clock_was_set_back(void **state)
{
    fixture *f = *state;
    corr_options o = {.settle_ns = SETTLE_MS * MS};
    corr *c = corr_new(&o);
    send_span(c, f, span(1, 0, 100000, PID, 0), 0);
    sp_batch settled = batch(f, "t1");
    observe(c, f, 50000, 50000);
    observe(c, f, 10000, 10000); /* 40 s back */
    observe(c, f, 10100, 10100);
    assert_int_equal(corr_settle(c, 10500 * MS, settled_store, &settled), 0);
    assert_int_equal(late_value(&settled, 1), 0);
    assert_int_equal(corr_settle(c, 11100 * MS, settled_store, &settled), 0);
    assert_int_equal(late_value(&settled, 1), 2 * 10 * MS); /* the two that arrived at 10 s */
    assert_int_equal(corr_settle(c, 51000 * MS, settled_store, &settled), 0);
    assert_int_equal(late_value(&settled, 1), 3 * 10 * MS);
    corr_free(c);
}

/* Workers read the time before they wait for the lock: a call a few milliseconds "older" than
 * the one before it is the same moment, and its observation is decided with the others. */
static void jitter_between_workers_keeps_the_order(void **state)
{
    fixture *f = *state;
    corr_options o = {.settle_ns = SETTLE_MS * MS};
    corr *c = corr_new(&o);
    send_span(c, f, span(1, 0, 100000, PID, 0), 0);
    sp_batch settled = batch(f, "t1");
    observe(c, f, 5000, 5000);
    observe(c, f, 5001, 4990); /* the other worker took its time 10 ms earlier */
    assert_int_equal(corr_settle(c, 5995 * MS, settled_store, &settled), 0);
    assert_int_equal(late_value(&settled, 1), 0);
    assert_int_equal(corr_settle(c, 6000 * MS, settled_store, &settled), 0);
    assert_int_equal(late_value(&settled, 1), 2 * 10 * MS);
    corr_free(c);
}

/* Expiry drops the oldest observations of a slot in arrival order as one prefix (budget.c,
 * drop_prefix): one that arrived at t leaves at t + window exactly, not a nanosecond later,
 * and one that arrived a nanosecond later stays. */
static void an_observation_leaves_when_its_window_ends(void **state)
{
    fixture *f = *state;
    corr_options o = {.window_ns = 3000 * MS};
    corr *c = corr_new(&o);
    uint64_t ts[] = {100 * MS};
    for (int64_t at = 0; at < 2; at++) { /* arriving at 0 and at 1 ns */
        sp_batch pb = batch(f, "t1");
        sp_batch_add_profile(&pb, profile(f->a, ts, 1, PID, TID));
        attach(c, &pb, at);
    }
    corr_stats st;
    corr_get_stats(c, 3000 * MS - 1, &st);
    assert_int_equal(st.obs_waiting, 2);
    corr_get_stats(c, 3000 * MS, &st);
    assert_int_equal(st.obs_waiting, 1);
    corr_get_stats(c, 3000 * MS + 1, &st);
    assert_int_equal(st.obs_waiting, 0);
    corr_free(c);
}

/* I10 across expiry: the observations rule 3 decided come first in their slot, and when expiry
 * drops them, the mark that says where the undecided ones begin moves down with them. Ten
 * observations are decided (no span yet), ten more arrive, a threadless span over all of them
 * comes before the second ten are due, and while the first ten leave the window one by one the
 * second ten are each attached when due. */
static void expiry_of_decided_observations_keeps_the_undecided_in_reach(void **state)
{
    fixture *f = *state;
    corr_options o = {.settle_ns = SETTLE_MS * MS, .window_ns = 3 * SETTLE_MS * MS};
    corr *c = corr_new(&o);
    sp_batch settled = batch(f, "t1");
    corr_stats st;
    for (int64_t now = 0; now < 3000; now += STEP_MS) {
        if (now < 1000 || now >= 2000)
            observe(c, f, now, now);
        if (now >= 1000 && now < 2000)
            assert_int_equal(corr_settle(c, now * MS, settled_store, &settled), 0);
    }
    send_span(c, f, span(1, 0, 100000, PID, 0), 2950);
    for (int64_t now = 3000; now < 4000; now += STEP_MS) {
        corr_get_stats(c, now * MS, &st); /* expiry: the first ten leave, one per step */
        assert_int_equal(st.obs_waiting, 10 + (3900 - now) / STEP_MS);
        assert_int_equal(corr_settle(c, now * MS, settled_store, &settled), 0);
        if (late_value(&settled, 1) != (now - 3000 + STEP_MS) / STEP_MS * 10 * MS)
            fail_msg("at %lld ms: %lld ns attached", (long long)now,
                     (long long)late_value(&settled, 1));
    }
    corr_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(settle_pass_decides_each_observation_on_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(settle_pass_after_the_clock_was_set_back, setup, teardown),
        cmocka_unit_test_setup_teardown(jitter_between_workers_keeps_the_order, setup, teardown),
        cmocka_unit_test_setup_teardown(an_observation_leaves_when_its_window_ends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(expiry_of_decided_observations_keeps_the_undecided_in_reach,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
