/* The writer's shortcut by the sender's stack fingerprints (sp_profile.stack_keys): a stack
 * resolved in full is found again by its fingerprint within the same hour, and never across a
 * rolled-back transaction or rows retention deleted. The fingerprints here are made up, and two
 * different stacks are given the same one on purpose: what the answers show is which path the
 * writer took (the shortcut trusts the fingerprint; a full resolution looks at the frames). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store_fixture.h"

/* A profile at t with one sample of `stack` (root first) and value v, carrying fingerprint k. */
static sp_profile *keyed_profile(sp_arena *a, int64_t t, const uint32_t *stack, int64_t v,
                                 sp_key128 k)
{
    sp_profile *p = mkprofile(a, CPU, "api", t);
    sp_sample *s = add_sample(a, p, stack, v, t + SEC);
    sp_key128 *keys = sp_arena_calloc(a, 2, sizeof *keys);
    keys[1] = k;
    p->stack_keys = keys;
    p->nstack_keys = 2;
    s->stack_key = 1;
    return p;
}

static void write_keyed(fx *f, int64_t t, const uint32_t *stack, int64_t v, sp_key128 k)
{
    sp_arena *a = sp_arena_new(0);
    sp_batch b = batch1(a, "t1", keyed_profile(a, t, stack, v, k));
    write_ok(f->s, &b);
    sp_arena_free(a);
}

static void fingerprint_stands_for_its_stack_within_the_hour(void **state)
{
    fx *f = *state;
    const sp_key128 k = {0x1234, 0x5679};
    write_keyed(f, f->t0, STK_MFB, 3, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    /* The same fingerprint on another stack in the same hour: the shortcut is taken. */
    write_keyed(f, f->t0, STK_MB, 5, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;foo;bar"), 8);
    assert_int_equal(value_of(&st, "main;baz"), 0);
    /* Data of a later hour marks its rows with that hour: resolved in full, by its frames. */
    write_keyed(f, f->t0 + 4 * HOUR, STK_MB, 7, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 2);
    st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;baz"), 7);
    /* A profile without fingerprints is resolved by its frames as always. */
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MQ, 11, f->t0 + SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(value_of(&st, "main;qux"), 11);
}

static void fingerprint_is_forgotten_when_its_transaction_rolls_back(void **state)
{
    fx *f = *state;
    const sp_key128 k = {0xabc, 0xdef};
    sql_exec(f->dir, "CREATE TABLE inject(x); INSERT INTO inject VALUES(1);"
                     "CREATE TRIGGER inject_chunk BEFORE INSERT ON sample_chunk WHEN EXISTS("
                     "SELECT 1 FROM inject) BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
    sp_arena *a = sp_arena_new(0);
    sp_batch b = batch1(a, "t1", keyed_profile(a, f->t0, STK_MF, 3, k));
    sp_err err = {0};
    assert_int_not_equal(store_write(f->s, &b, &err), 0);
    assert_non_null(strstr(err.msg, "injected failure"));
    sp_arena_free(a);
    sql_exec(f->dir, "DELETE FROM inject");
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 0);
    /* The stack row the fingerprint named was rolled back: this one is resolved by its frames. */
    write_keyed(f, f->t0, STK_MQ, 5, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 5);
    assert_int_equal(value_of(&st, "main;qux"), 5);
}

static void fingerprint_is_forgotten_when_retention_deletes_dictionary_rows(void **state)
{
    fx *f = *state;
    const sp_key128 k = {0x777, 0x999};
    int64_t old = f->t0 - 30 * 24 * HOUR; /* beyond the default retention (168 h) */
    write_keyed(f, old, STK_MFB, 3, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    /* Make the dictionary rows as old as their data, as if unused for a month. */
    sql_exec(f->dir, "UPDATE stack SET seen = seen - 720; UPDATE location SET seen = seen - 720;"
                     "UPDATE function SET seen = seen - 720;");
    sp_err err = {0};
    assert_int_equal(store_retention_run(f->s, wall_ns(), &err), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 0);
    /* The fingerprint's row is gone: a stack carrying it is resolved by its frames. */
    write_keyed(f, f->t0, STK_MB, 5, k);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 5);
    assert_int_equal(value_of(&st, "main;baz"), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fingerprint_stands_for_its_stack_within_the_hour, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(fingerprint_is_forgotten_when_its_transaction_rolls_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            fingerprint_is_forgotten_when_retention_deletes_dictionary_rows, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
