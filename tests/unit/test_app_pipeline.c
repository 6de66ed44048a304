/* The pipeline's streams (app/pipeline.c P1-P3): a large Export's parts are correlated and handed
 * to the store on a stage thread while the worker converts the next. What a user sees, read back
 * from a real SQLite store and a real correlator: every part stored as one batch and its samples
 * under the span that covers them; a part the store refuses fails the whole Export by name,
 * stores nothing, and leaves nothing waiting in the correlator (a retry is taken as new, I4).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "app/pipeline.h"
#include "store_fixture.h"

static const store_matcher APP = {"service_name", "app", STORE_MATCH_EQ};
static const uint32_t STK_MAIN_FOO_BAR[] = {L_MAIN, L_FOO, L_BAR, 0};

enum { PID = 4242, TID = 7, PARTS = 6, PER_PART = 40 };

/* The start of a 10 s bucket twenty seconds ago. */
static int64_t recent_bucket(void)
{
    return (wall_ns() / (10 * SEC) - 2) * 10 * SEC;
}

/* A span over [t, t + 10 s) on thread TID of process PID, known to the correlator. */
static void index_span(corr *c, sp_arena *a, int64_t t, uint64_t id)
{
    sp_span *sp = sp_arena_calloc(a, 1, sizeof *sp);
    sp->trace_id[0] = 0x7;
    span_id(id, sp->span_id);
    sp->service = "app";
    sp->name = "GET /cart";
    sp->start_ns = (uint64_t)t;
    sp->end_ns = (uint64_t)(t + 10 * SEC);
    sp->pid = PID;
    sp->tid = TID;
    sp_batch b = {.tenant = "t1", .arena = a, .spans = sp, .nspans = 1};
    corr_ticket tk;
    sp_err err = {0};
    if (corr_attach(c, &b, wall_ns(), &tk, &err))
        fail_msg("corr_attach: %s", err.msg);
    corr_commit(c, &tk);
}

/* Part k: PER_PART samples of main;foo;bar = 1 on (PID, TID) inside the span. */
static sp_batch *part_of(sp_arena *a, int64_t t, int k)
{
    sp_profile *p = mkprofile(a, CPU, "app", t);
    for (int i = 0; i < PER_PART; i++) {
        sp_sample *s = add_sample(a, p, STK_MAIN_FOO_BAR, 1, t + SEC + (k * PER_PART + i) * 1000);
        s->pid = PID;
        s->tid = TID;
    }
    sp_batch *b = sp_arena_calloc(a, 1, sizeof *b);
    *b = batch1(a, "t1", p);
    return b;
}

static int64_t span_value(fx *f, int64_t t, uint64_t id)
{
    uint8_t ids[1][8];
    span_id(id, ids[0]);
    store_query q = {.tenant = "t1", .type_id = CPU, .start_ns = t - HOUR, .end_ns = t + HOUR};
    store_stacks out;
    sp_err err = {0};
    if (store_span_stacks(f->s, &q, (const uint8_t(*)[8])ids, 1, f->a, &out, &err))
        fail_msg("span stacks: %s", err.msg);
    return value_of(&out, "main;foo;bar");
}

static void parts_are_stored_as_one_and_under_their_span(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    corr *c = corr_new(NULL);
    pipeline p = {.corr = c, .store = f->s, .store_local = 1};
    index_span(c, f->a, t, 0x51);
    void *st = pipeline_stream_begin(&p, NULL, f->a);
    assert_non_null(st);
    sp_err err = {0};
    for (int k = 0; k < PARTS; k++)
        assert_int_equal(pipeline_stream_part(st, part_of(f->a, t, k), &err), 0);
    assert_int_equal(pipeline_stream_end(st, 0, &err), 0);
    store_stacks app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&app, "main;foo;bar"), PARTS * PER_PART);
    assert_int_equal(span_value(f, t, 0x51), PARTS * PER_PART);
    store_stats ss;
    store_stats_get(f->s, &ss);
    assert_int_equal(ss.batches_committed, 1);
    corr_free(c);
}

/* The fourth part names a location its tables do not have: the store refuses it on the stage
 * thread. The worker learns it at its next part or at end, and either way the Export fails with
 * the store's message, nothing of it is stored and nothing of it waits in the correlator. */
static void a_part_refused_on_the_stage_fails_the_export_and_keeps_nothing(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    corr *c = corr_new(NULL);
    pipeline p = {.corr = c, .store = f->s, .store_local = 1};
    void *st = pipeline_stream_begin(&p, NULL, f->a);
    assert_non_null(st);
    sp_err err = {0};
    int rc = 0;
    for (int k = 0; k < PARTS && !rc; k++) {
        sp_batch *b = part_of(f->a, t, k);
        if (k == 3)
            b->profiles[0]->samples[0].location_ids[0] = NLOC + 3;
        rc = pipeline_stream_part(st, b, &err);
    }
    int end = pipeline_stream_end(st, rc != 0, &err);
    if (!rc)
        rc = end;
    assert_int_equal(rc, SP_EINVAL);
    assert_non_null(strstr(err.msg, "location_id 11 out of range (8 locations)"));
    store_stacks app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(app.nstacks, 0);
    corr_stats cs;
    corr_get_stats(c, 0, &cs);
    assert_int_equal(cs.obs_waiting, 0);
    corr_free(c);
}

/* A stream without parts answers at once and stores nothing. */
static void a_stream_without_parts_ends_at_once(void **state)
{
    fx *f = *state;
    corr *c = corr_new(NULL);
    pipeline p = {.corr = c, .store = f->s, .store_local = 1};
    sp_err err = {0};
    void *st = pipeline_stream_begin(&p, NULL, f->a);
    assert_non_null(st);
    assert_int_equal(pipeline_stream_end(st, 0, &err), 0);
    st = pipeline_stream_begin(&p, NULL, f->a);
    assert_non_null(st);
    assert_int_equal(pipeline_stream_end(st, 1, &err), 0);
    store_stats ss;
    store_stats_get(f->s, &ss);
    assert_int_equal(ss.batches_committed, 0);
    corr_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(parts_are_stored_as_one_and_under_their_span, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_part_refused_on_the_stage_fails_the_export_and_keeps_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_stream_without_parts_ends_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
