/* store_stream_*: one request's batch in parts, written while the rest is converted (S1-S5 in
 * storage-adapter/sqlite_write.c). What a user sees: the flame graph after the commit holds every
 * part, built from tables that grew from part to part; a stream given up stores nothing and
 * takes no other caller's batch with it; a bad part is refused by name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/store.h"
#include "store_fixture.h"

#include <pthread.h>
#include <unistd.h>

static const store_matcher APP = {"service_name", "app", STORE_MATCH_EQ};

/* p with its tables cut to the first nloc locations and nfn functions: what a converter's
 * tables look like before they grew. */
static void cut_tables(sp_profile *p, uint32_t nloc, uint32_t nfn)
{
    p->nlocations = nloc;
    p->nfunctions = nfn;
}

static store_stream *begin(fx *f)
{
    store_stream *st = NULL;
    sp_err err = {0};
    int rc = store_stream_begin(f->s, f->a, &st, &err);
    if (rc)
        fail_msg("stream begin: %s", err.msg);
    return st;
}

static void part_ok(store_stream *st, const sp_batch *b)
{
    sp_err err = {0};
    int rc = store_stream_part(st, b, &err);
    if (rc)
        fail_msg("stream part: %s (%s)", err.msg, sp_code_name(rc));
}

static sp_batch *batch_of(sp_arena *a, sp_profile *p)
{
    sp_batch *b = sp_arena_calloc(a, 1, sizeof *b);
    *b = batch1(a, "t1", p);
    return b;
}

/* The start of a 10 s bucket twenty seconds ago. */
static int64_t recent_bucket(void)
{
    return (wall_ns() / (10 * SEC) - 2) * 10 * SEC;
}

/* A stream with one part: main;foo;bar = 1 for service "app". */
static store_stream *begun_with_a_part(fx *f, int64_t t)
{
    store_stream *st = begin(f);
    sp_profile *p = mkprofile(f->a, CPU, "app", t);
    add_sample(f->a, p, STK_MFB, 1, t + SEC);
    part_ok(st, batch_of(f->a, p));
    return st;
}

/* Parts whose tables grow: the second part's stacks use locations the first part's tables did
 * not have. Before the stream, a batch whose locations 4..7 are other frames fills the writer's
 * memos there: a later part that reused them instead of resolving its new entries would name
 * baz and qux after that batch's frames. */
static void parts_with_growing_tables_make_one_flame_graph(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();

    sp_profile *other = mkprofile(f->a, CPU, "other", t);
    for (uint32_t i = L_BAZ; i < NLOC; i++) { /* other frames at the same indices */
        other->locations[i].address = 0x77000 + i;
        other->locations[i].nlines = 0;
        other->locations[i].lines = NULL;
    }
    add_sample(f->a, other, (const uint32_t[]){L_MAIN, L_BAZ, 0}, 100, t + SEC);
    add_sample(f->a, other, (const uint32_t[]){L_MAIN, L_QUX, 0}, 100, t + SEC);
    write_ok(f->s, batch_of(f->a, other));

    store_stream *st = begin(f);
    sp_profile *p1 = mkprofile(f->a, CPU, "app", t);
    cut_tables(p1, L_BAR + 1, 4); /* main, foo, bar */
    add_sample(f->a, p1, STK_MFB, 1, t + SEC);
    part_ok(st, batch_of(f->a, p1));
    sp_profile *p2 = mkprofile(f->a, CPU, "app", t); /* the same tables, grown to all 7 */
    add_sample(f->a, p2, STK_MFB, 2, t + 2 * SEC);
    add_sample(f->a, p2, STK_MB, 4, t + 2 * SEC);
    add_sample(f->a, p2, STK_MQ, 5, t + 3 * SEC);
    part_ok(st, batch_of(f->a, p2));
    sp_profile *p3 = mkprofile(f->a, CPU, "app", t);
    add_sample(f->a, p3, STK_MQ, 7, t + 4 * SEC);
    part_ok(st, batch_of(f->a, p3));
    sp_err err = {0};
    assert_int_equal(store_stream_end(st, 0, &err), 0);

    store_stacks got = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&got, "main;foo;bar"), 3);
    assert_int_equal(value_of(&got, "main;baz"), 4);
    assert_int_equal(value_of(&got, "main;qux"), 12);
    int64_t total = 0;
    for (size_t i = 0; i < got.nstacks; i++)
        total += got.stacks[i].value;
    assert_int_equal(total, 19);
}

typedef struct plain_arg {
    store *s;
    int64_t t;
    int rc;
} plain_arg;

static void *write_plain(void *arg)
{
    plain_arg *pa = arg;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "plain", pa->t);
    add_sample(a, p, STK_MB, 9, pa->t + SEC);
    sp_batch b = batch1(a, "t1", p);
    sp_err err = {0};
    pa->rc = store_write(pa->s, &b, &err);
    sp_arena_free(a);
    return NULL;
}

typedef struct end_arg {
    store_stream *st;
    int rc;
} end_arg;

static void *end_in_thread(void *arg)
{
    end_arg *ea = arg;
    sp_err err = {0};
    ea->rc = store_stream_end(ea->st, 0, &err);
    return NULL;
}

/* A stream that is given up after its first part was written: the writer, waiting for its next
 * part, takes a plain batch into the same transaction (S3); the stream's end with failed set
 * rolls it back and writes the plain batch again without it (S4). */
static void given_up_stream_stores_nothing_and_keeps_the_others(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    store_stream *st = begun_with_a_part(f, t);
    usleep(50 * 1000); /* the writer has the stream; the outcome is the same if not */
    plain_arg pa = {f->s, t, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, write_plain, &pa), 0);
    usleep(50 * 1000);
    sp_err err = {0};
    assert_int_equal(store_stream_end(st, 1, &err), 0);
    pthread_join(th, NULL);
    assert_int_equal(pa.rc, 0);

    store_stacks app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(app.nstacks, 0);
    store_matcher plain = {"service_name", "plain", STORE_MATCH_EQ};
    store_stacks got = select_stacks(f, "t1", CPU, &plain, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&got, "main;baz"), 9);
    /* the writer goes on: a later stream commits */
    st = begin(f);
    sp_profile *p2 = mkprofile(f->a, CPU, "app", t);
    add_sample(f->a, p2, STK_MQ, 2, t + SEC);
    part_ok(st, batch_of(f->a, p2));
    assert_int_equal(store_stream_end(st, 0, &err), 0);
    app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&app, "main;qux"), 2);
    assert_int_equal(value_of(&app, "main;foo;bar"), 0);
}

/* A stream begun while the writer is busy (another stream's transaction is open, S6) is joined
 * and written whole at its end, with the same answers; both streams commit. */
static void stream_begun_while_the_writer_is_busy_is_written_whole(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    store_stream *a = begun_with_a_part(f, t); /* queued, or in the writer's open transaction */
    store_stream *b = begin(f);
    sp_profile *q1 = mkprofile(f->a, CPU, "other", t);
    cut_tables(q1, L_BAR + 1, 4);
    add_sample(f->a, q1, STK_MFB, 2, t + SEC);
    part_ok(b, batch_of(f->a, q1));
    sp_profile *q2 = mkprofile(f->a, CPU, "other", t);
    add_sample(f->a, q2, STK_MQ, 3, t + SEC);
    part_ok(b, batch_of(f->a, q2));
    end_arg eb = {b, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, end_in_thread, &eb), 0);
    usleep(50 * 1000);
    sp_err err = {0};
    assert_int_equal(store_stream_end(a, 0, &err), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(eb.rc, 0);
    store_matcher other = {"service_name", "other", STORE_MATCH_EQ};
    store_stacks got = select_stacks(f, "t1", CPU, &other, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&got, "main;foo;bar"), 2);
    assert_int_equal(value_of(&got, "main;qux"), 3);
    store_stacks app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&app, "main;foo;bar"), 1);
}

/* A stream begun while the writer is busy (S6) has each part validated as it comes, as a
 * stream written part by part does: a bad part is refused by name at once (not only when the
 * joined batch is written at the end), the stream then ends failed and stores nothing, and the
 * stream the writer was busy with commits. */
static void bad_part_of_a_stream_begun_while_busy_is_refused_at_once(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    store_stream *a = begun_with_a_part(f, t);
    store_stream *b = begin(f);
    sp_profile *q1 = mkprofile(f->a, CPU, "other", t);
    add_sample(f->a, q1, STK_MFB, 2, t + SEC);
    part_ok(b, batch_of(f->a, q1));
    sp_profile *q2 = mkprofile(f->a, CPU, "other", t);
    sp_sample *s = add_sample(f->a, q2, STK_MB, 1, t + SEC);
    s->location_ids[0] = NLOC + 3;
    sp_err err = {0};
    assert_int_equal(store_stream_part(b, batch_of(f->a, q2), &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "location_id 11 out of range (8 locations)"));
    assert_int_equal(store_stream_end(b, 1, &err), 0);
    assert_int_equal(store_stream_end(a, 0, &err), 0);
    store_matcher other = {"service_name", "other", STORE_MATCH_EQ};
    store_stacks got = select_stacks(f, "t1", CPU, &other, 1, t - HOUR, t + HOUR);
    assert_int_equal(got.nstacks, 0);
    store_stacks app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(value_of(&app, "main;foo;bar"), 1);
}

/* Hands p to st as a part, which must be refused naming `why`; the stream then ends failed and
 * nothing of it is stored for service "app" around t. */
static void part_refused_and_nothing_stored(fx *f, store_stream *st, sp_profile *p, int64_t t,
                                            const char *why)
{
    sp_err err = {0};
    assert_int_equal(store_stream_part(st, batch_of(f->a, p), &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, why));
    assert_int_equal(store_stream_end(st, 1, &err), 0);
    store_stacks app = select_stacks(f, "t1", CPU, &APP, 1, t - HOUR, t + HOUR);
    assert_int_equal(app.nstacks, 0);
}

/* A part that names a location its tables do not have is refused by name; the stream then ends
 * failed and nothing of it is stored, its good first part included. */
static void bad_part_is_refused_and_the_stream_stores_nothing(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    store_stream *st = begun_with_a_part(f, t);
    sp_profile *p2 = mkprofile(f->a, CPU, "app", t);
    sp_sample *s = add_sample(f->a, p2, STK_MB, 1, t + SEC);
    s->location_ids[0] = NLOC + 3;
    part_refused_and_nothing_stored(f, st, p2, t, "location_id 11 out of range (8 locations)");
}

/* A profile of one sample whose location list is s's very list (as a converter hands every part
 * the lists it made for the first), its location table cut to nloc entries. */
static sp_profile *sharing_the_list_of(fx *f, const sp_sample *s, int64_t t, uint32_t nloc)
{
    static const uint32_t with_inl[] = {L_MAIN, L_INL, 0};
    sp_profile *p = mkprofile(f->a, CPU, "app", t);
    add_sample(f->a, p, with_inl, 1, t + SEC);
    p->samples[0].location_ids = s->location_ids;
    p->samples[0].nlocations = s->nlocations;
    if (nloc < p->nlocations)
        cut_tables(p, nloc, p->nfunctions);
    return p;
}

/* A stream checks each location list once (its memo lives across the parts, S5), but only
 * while the parts' tables extend those it was checked against: a part whose table is shorter
 * (against the contract) has the same list walked again and refused by name. */
static void list_checked_in_a_part_is_walked_again_against_a_shorter_table(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    store_stream *st = begin(f);
    static const uint32_t with_inl[] = {L_MAIN, L_INL, 0};
    sp_profile *p1 = mkprofile(f->a, CPU, "app", t);
    sp_sample *s1 = add_sample(f->a, p1, with_inl, 1, t + SEC);
    part_ok(st, batch_of(f->a, p1));
    part_ok(st, batch_of(f->a, sharing_the_list_of(f, s1, t, NLOC))); /* same tables: taken */
    part_refused_and_nothing_stored(f, st, sharing_the_list_of(f, s1, t, L_INL), t,
                                    "location_id 7 out of range (7 locations)");
}

/* A part refused after some of its lists were checked against its own (longer) tables leaves
 * nothing of them in the stream's memo: a later part with tables shorter than the refused one's,
 * but not than the last part taken, walks the same list again and is refused by name. */
static void lists_of_a_refused_part_are_walked_again(void **state)
{
    fx *f = *state;
    int64_t t = recent_bucket();
    store_stream *st = begin(f);
    static const uint32_t with_inl[] = {L_MAIN, L_INL, 0};
    sp_profile *p1 = mkprofile(f->a, CPU, "app", t);
    sp_sample *s1 = add_sample(f->a, p1, with_inl, 1, t + SEC); /* checked, then: */
    sp_sample *bad = add_sample(f->a, p1, STK_MB, 1, t + SEC);
    bad->labels = sp_arena_calloc(f->a, 1, sizeof *bad->labels);
    bad->labels[0].key = 999; /* no such string */
    bad->nlabels = 1;
    sp_err err = {0};
    assert_int_equal(store_stream_part(st, batch_of(f->a, p1), &err), SP_EINVAL);
    part_refused_and_nothing_stored(f, st, sharing_the_list_of(f, s1, t, L_INL), t,
                                    "location_id 7 out of range (7 locations)");
}

/* A stream without parts stores nothing and answers 0; so does one given up before its first
 * part (nothing was queued). */
static void empty_streams_answer_at_once(void **state)
{
    fx *f = *state;
    sp_err err = {0};
    assert_int_equal(store_stream_end(begin(f), 0, &err), 0);
    assert_int_equal(store_stream_end(begin(f), 1, &err), 0);
    store_stats stats;
    store_stats_get(f->s, &stats);
    assert_int_equal(stats.batches_committed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(parts_with_growing_tables_make_one_flame_graph, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(given_up_stream_stores_nothing_and_keeps_the_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stream_begun_while_the_writer_is_busy_is_written_whole,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bad_part_of_a_stream_begun_while_busy_is_refused_at_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bad_part_is_refused_and_the_stream_stores_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            list_checked_in_a_part_is_walked_again_against_a_shorter_table, setup, teardown),
        cmocka_unit_test_setup_teardown(lists_of_a_refused_part_are_walked_again, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_streams_answer_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
