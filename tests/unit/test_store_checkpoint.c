/* The SQLite store's checkpointer (sqlite_checkpoint.c, K1-K4): WAL checkpoints run on a
 * connection and a thread of their own, never inside the writer's commits while it keeps up.
 * Oracles outside the code under test where there is one: the database and WAL files' sizes on
 * disk, and what a reopened store reads back; who checkpointed is told by the store's counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

static off_t file_size(const char *dir, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* One batch: 40 samples on stacks that differ per batch, in a bucket of their own, so each
 * commit adds dictionary rows and a chunk (a few WAL pages). */
static void write_distinct(fx *f, int round, int64_t *total)
{
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0 + (int64_t)round * 10 * SEC);
    for (int i = 0; i < 40; i++) {
        uint32_t stk[] = {L_MAIN, (uint32_t)(1 + (round + i) % (NLOC - 1)),
                          (uint32_t)(1 + (round * 7 + i) % (NLOC - 1)), 0};
        add_sample(a, p, stk, 1 + i, f->t0 + (int64_t)round * 10 * SEC + i);
        *total += 1 + i;
    }
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
}

static void commits_leave_the_checkpoints_to_the_checkpointer(void **state)
{
    fx *f = *state;
    off_t db0 = file_size(f->dir, "spanprof.db");
    int64_t total = 0;
    store_stats st = {0};
    /* The WAL passes 1000 pages; the checkpointer copies them while the writes go on. */
    for (int round = 0; round < 4000 && !st.checkpoints; round++) {
        write_distinct(f, round, &total);
        if (round % 25 == 24) {
            for (int i = 0; i < 20 && !st.checkpoints; i++) {
                store_stats_get(f->s, &st);
                struct timespec ms = {0, 1000000};
                nanosleep(&ms, NULL);
            }
        }
    }
    assert_true(st.checkpoints >= 1);
    assert_int_equal(st.checkpoints_inline, 0); /* K1: it kept up */
    assert_int_equal(st.checkpoints_failed, 0);
    assert_true(file_size(f->dir, "spanprof.db-wal") >= 1000 * 4096);
    /* The database file holds the checkpointed pages (each page's last version: the WAL holds
     * many versions of the same pages, so it grows by less than the WAL). */
    assert_true(file_size(f->dir, "spanprof.db") > db0);
    /* Whatever the checkpointer copied, the store reads back every value, before and after a
     * restart (the closing checkpoint empties the WAL: K4). */
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, total);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(file_size(f->dir, "spanprof.db-wal") > 0 ? 1 : 0, 0);
    open_store(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(commits_leave_the_checkpoints_to_the_checkpointer, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
