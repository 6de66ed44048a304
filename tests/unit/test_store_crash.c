/* kill -9 at any moment loses nothing acknowledged and never leaves half a batch.
 *
 * A child process writes batches from several threads and reports every acknowledged batch on a
 * pipe; the parent kills it with SIGKILL at a random moment, reopens the store and counts. Each
 * batch adds exactly BATCH_VALUE to the total, so the total must be a whole number of batches,
 * at least the acknowledged ones and at most those plus the ones in flight.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/store.h"
#include "store_fixture.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAMPLES     16
#define BATCH_VALUE (SAMPLES * 3)
#define WRITERS     4

static const char *const strs[] = {"", "f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"};

typedef struct child_ctx {
    store *s;
    int fd;
    int id;
    pthread_mutex_t *mu;
    int64_t t0;
} child_ctx;

static void *child_writer(void *arg)
{
    child_ctx *c = arg;
    for (uint64_t round = 0;; round++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
        p->type_id = CPU;
        p->name = "process_cpu";
        p->time_nanos = c->t0;
        p->strings = (const char **)strs;
        p->nstrings = 9;
        p->nfunctions = 9;
        p->functions = sp_arena_calloc(a, 9, sizeof *p->functions);
        p->nlocations = 9;
        p->locations = sp_arena_calloc(a, 9, sizeof *p->locations);
        for (uint32_t i = 1; i < 9; i++) {
            p->functions[i].name = i;
            p->locations[i].nlines = 1;
            p->locations[i].lines = sp_arena_calloc(a, 1, sizeof(sp_line));
            p->locations[i].lines[0].function_id = i;
        }
        p->nseries = 1;
        p->series = sp_arena_calloc(a, 1, sizeof *p->series);
        p->series[0] = (sp_kv){"service_name", "crash"};
        p->nsamples = SAMPLES;
        p->samples = sp_arena_calloc(a, SAMPLES, sizeof *p->samples);
        for (uint32_t i = 0; i < SAMPLES; i++) {
            sp_sample *s = &p->samples[i];
            s->nlocations = 3;
            s->location_ids = sp_arena_calloc(a, 3, sizeof(uint32_t));
            for (uint32_t k = 0; k < 3; k++)
                s->location_ids[k] = 1 + (uint32_t)((i + k + round) % 8);
            s->value = 3;
            s->nspans = 1;
            s->spans = sp_arena_calloc(a, 1, sizeof *s->spans);
            s->spans[0].span_id[7] = (uint8_t)(1 + c->id);
        }
        sp_batch b = {.tenant = "t", .arena = a, .nprofiles = 1};
        b.profiles = &p;
        sp_err err = {0};
        int rc = store_write(c->s, &b, &err);
        sp_arena_free(a);
        if (rc)
            _exit(10);
        char one = 1;
        pthread_mutex_lock(c->mu);
        if (write(c->fd, &one, 1) != 1)
            _exit(11);
        pthread_mutex_unlock(c->mu);
    }
    return NULL;
}

static void run_child(const char *dir, int fd, int64_t t0)
{
    store_options o = {0};
    o.data_dir = dir;
    o.retention_interval_ns = -1;
    store *s;
    sp_err err = {0};
    if (store_open_sqlite(&s, &o, &err) != 0) {
        fprintf(stderr, "child open: %s\n", err.msg);
        _exit(12);
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    child_ctx ctx[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        ctx[i] = (child_ctx){.s = s, .fd = fd, .id = i, .mu = &mu, .t0 = t0};
        pthread_create(&th[i], NULL, child_writer, &ctx[i]);
    }
    for (;;)
        pause();
}

static int64_t total_of(const char *dir, int64_t *span_total)
{
    store_options o = {0};
    o.data_dir = dir;
    o.retention_interval_ns = -1;
    store *s;
    sp_err err = {0};
    if (store_open_sqlite(&s, &o, &err) != 0)
        fail_msg("reopen after kill: %s", err.msg);
    sp_arena *a = sp_arena_new(0);
    store_query q = {.tenant = "t", .type_id = CPU};
    store_stacks st;
    assert_int_equal(store_select_stacks(s, &q, a, &st, &err), 0);
    int64_t total = st.total;
    uint8_t ids[WRITERS][8];
    memset(ids, 0, sizeof ids);
    for (int i = 0; i < WRITERS; i++)
        ids[i][7] = (uint8_t)(1 + i);
    assert_int_equal(store_span_stacks(s, &q, ids, WRITERS, a, &st, &err), 0);
    *span_total = st.total;
    sp_arena_free(a);
    store_close(s);
    return total;
}

static void kill_9_loses_nothing_acknowledged(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_store_crash_XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t t0 = (int64_t)now.tv_sec * 1000000000LL;
    srand((unsigned)now.tv_nsec);
    int64_t acked = 0;
    for (int round = 0; round < 6; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            run_child(dir, fds[1], t0);
        }
        close(fds[1]);
        /* Let it run 30..230 ms, counting acknowledgements as they come. */
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int64_t budget_ms = 30 + rand() % 200;
        char buf[4096];
        for (;;) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            int64_t el = (t.tv_sec - start.tv_sec) * 1000 + (t.tv_nsec - start.tv_nsec) / 1000000;
            if (el >= budget_ms)
                break;
            struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
            if (poll(&pfd, 1, (int)(budget_ms - el)) > 0) {
                ssize_t r = read(fds[0], buf, sizeof buf);
                if (r <= 0)
                    break;
                acked += r;
            }
        }
        kill(pid, SIGKILL);
        ssize_t r;
        while ((r = read(fds[0], buf, sizeof buf)) > 0)
            acked += r;
        close(fds[0]);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        int64_t span_total;
        int64_t total = total_of(dir, &span_total);
        /* Whole batches only; every acknowledged one; at most the in-flight ones more. */
        assert_int_equal(total % BATCH_VALUE, 0);
        assert_true(total >= acked * BATCH_VALUE);
        assert_true(total <= (acked + WRITERS) * BATCH_VALUE);
        assert_int_equal(span_total, total);
        /* What was committed but not acknowledged counts from now on. */
        acked = total / BATCH_VALUE;
    }
    assert_true(acked > 0);
    print_message("%lld batches committed across 6 kills\n", (long long)acked);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- unkeyed dictionary rows across kill -9 ------------------------------------------------ */

/* The child: rounds first, next, ... one after the other, one byte on fd per committed round. */
static void run_round_child(const char *dir, int fd, int64_t t0, int first)
{
    store_options o = {0};
    o.data_dir = dir;
    o.retention_interval_ns = -1;
    store *s;
    sp_err err = {0};
    if (store_open_sqlite(&s, &o, &err) != 0) {
        fprintf(stderr, "child open: %s\n", err.msg);
        _exit(12);
    }
    for (int r = first;; r++) {
        if (write_round(s, t0, r, &err) != 0) {
            fprintf(stderr, "child write: %s\n", err.msg);
            _exit(10);
        }
        char one = 1;
        if (write(fd, &one, 1) != 1)
            _exit(11);
    }
}

#define UNKEYED_STACKS                                                                             \
    "SELECT count(*) FROM stack WHERE id > (SELECT value FROM meta WHERE key='stack_keyed')"
#define UNKEYED_LOCS                                                                               \
    "SELECT count(*) FROM location WHERE id > (SELECT value FROM meta WHERE key='location_keyed')"

/* A writer killed after committing rows it had not keyed yet (the default cache keys nothing
 * until it is half full: every row is unkeyed). The restarted store must find each of them:
 * first with a cache that loads the whole dictionary at start-up, then with one too small for
 * that (the rows are keyed before the first lookup). Every round written again adds values, never
 * a stack or location row. While the child runs, a second store on the directory is refused. */
static void kill_9_with_unkeyed_rows_finds_them_again(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_store_crash_XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t t0 = (int64_t)now.tv_sec * 1000000000LL;
    srand((unsigned)now.tv_nsec);
    int committed = 0;  /* rounds in the file */
    int64_t expect = 0; /* their total, rewrites included */
    for (int cycle = 0; cycle < 2; cycle++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            run_round_child(dir, fds[1], t0, committed);
        }
        close(fds[1]);
        /* Wait for at least 4 rounds (more than the small cache loads whole), then kill. */
        int acked = 0;
        char buf[256];
        while (acked < 4) {
            struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
            if (poll(&pfd, 1, 30000) <= 0)
                fail_msg("child wrote %d rounds in 30 s", acked);
            ssize_t r = read(fds[0], buf, sizeof buf);
            if (r <= 0)
                fail_msg("child died after %d rounds", acked);
            acked += (int)r;
        }
        /* A little longer, so the kill may land inside a transaction. */
        usleep((useconds_t)(rand() % 50000));
        /* The directory is in use: a second store is refused and changes nothing. */
        store_options o2 = {0};
        o2.data_dir = dir;
        o2.retention_interval_ns = -1;
        store *s2 = NULL;
        sp_err err = {0};
        assert_int_equal(store_open_sqlite(&s2, &o2, &err), SP_EUNAVAIL);
        assert_non_null(strstr(err.msg, "in use by another spanprof"));
        kill(pid, SIGKILL);
        ssize_t r;
        while ((r = read(fds[0], buf, sizeof buf)) > 0)
            acked += (int)r;
        close(fds[0]);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));

        int64_t stacks = sql_int(dir, "SELECT count(*) FROM stack");
        assert_int_equal(stacks % ROUND_STACKS, 0);
        int rounds = (int)(stacks / ROUND_STACKS);
        assert_true(rounds >= committed + acked && rounds <= committed + acked + 1);
        expect += (int64_t)(rounds - committed) * ROUND_STACKS;
        committed = rounds;
        /* The situation under test: rows the file has no key for. */
        assert_true(sql_int(dir, UNKEYED_STACKS) >= (int64_t)acked * ROUND_STACKS);
        assert_true(sql_int(dir, UNKEYED_LOCS) >= (int64_t)acked * ROUND_LOCS);

        store_options o = {0};
        o.data_dir = dir;
        o.retention_interval_ns = -1;
        if (cycle == 1)
            o.cache_bytes = 1; /* 512 stacks, 256 locations: too small to load the file whole */
        store *s;
        if (store_open_sqlite(&s, &o, &err) != 0)
            fail_msg("reopen after kill: %s", err.msg);
        sp_arena *answers = sp_arena_new(0);
        assert_int_equal(total_k(s, answers), expect);
        for (int rr = 0; rr < committed; rr++)
            write_round_ok(s, t0, rr);
        expect += (int64_t)committed * ROUND_STACKS;
        assert_int_equal(total_k(s, answers), expect);
        sp_arena_free(answers);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"),
                         (int64_t)committed * ROUND_STACKS);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"),
                         (int64_t)committed * ROUND_LOCS + 1);
        assert_keys_whole(dir);
        store_close(s);
    }
    print_message("%d rounds committed across 2 kills\n", committed);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill_9_loses_nothing_acknowledged),
        cmocka_unit_test(kill_9_with_unkeyed_rows_finds_them_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
