/* The store names native frames through the store_symbolizer seam, and keeps what it was told in
 * its symbol table: on real SQLite files, with a scripted symbolizer that counts its calls (the
 * oracle: what the script returns is what the answer must show). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/store.h"
#include "symbols_fixture.h"

#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Strings of the profile below. */
static const char *const strs[] = {"",       "native", "kernel", "/usr/bin/p",  BID,
                                   "main",   "sched",  "sent",   "/src/sent.c", "process_cpu",
                                   "/lib/x", "cpython"};
enum {
    S_NATIVE = 1,
    S_KERNEL,
    S_FILE,
    S_BID,
    S_MAIN,
    S_SCHED,
    S_SENT,
    S_SENTFILE,
    S_NAME,
    S_NOBID,
    S_PY
};

/* Locations: 1 main (named by the sender, native), 2 native 0x1000, 3 native 0x2000, 4 native
 * 0x3000 (the debug file names nothing), 5 native 0x4000 (not known yet), 6 kernel 0x1000
 * without a name, 7 native 0x1000 of a mapping without build id, 8 cpython 0x1000 unnamed. */
static sp_profile *profile(sp_arena *a, int64_t t)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = CPU;
    p->name = "process_cpu";
    p->time_nanos = t;
    p->duration_nanos = 10 * SEC;
    p->strings = (const char **)strs;
    p->nstrings = sizeof strs / sizeof strs[0];
    p->nfunctions = 2;
    p->functions = sp_arena_calloc(a, 2, sizeof *p->functions);
    p->functions[1].name = S_SENT;
    p->functions[1].filename = S_SENTFILE;
    p->nmappings = 3;
    p->mappings = sp_arena_calloc(a, 3, sizeof *p->mappings);
    p->mappings[1] = (sp_mapping){.filename = S_FILE, .build_id = S_BID};
    p->mappings[2] = (sp_mapping){.filename = S_NOBID};
    p->nlocations = 9;
    p->locations = sp_arena_calloc(a, 9, sizeof *p->locations);
    static const uint64_t addr[9] = {0,      0x500,  0x1000, 0x2000, 0x3000,
                                     0x4000, 0x1000, 0x1000, 0x1000};
    for (uint32_t i = 1; i < 9; i++) {
        p->locations[i].address = addr[i];
        p->locations[i].mapping_id = i == 7 ? 2 : 1;
        p->locations[i].frame_type = i == 6 ? S_KERNEL : i == 8 ? S_PY : S_NATIVE;
    }
    p->locations[1].nlines = 1;
    p->locations[1].lines = sp_arena_calloc(a, 1, sizeof(sp_line));
    p->locations[1].lines[0] = (sp_line){.function_id = 1, .line = 77};
    /* stacks, leaf first: [2,1] [3,2,1] [4,1] [5,1] [6,1] [7,1] [8,1] */
    static const uint32_t stacks[7][3] = {{2, 1, 0}, {3, 2, 1}, {4, 1, 0}, {5, 1, 0},
                                          {6, 1, 0}, {7, 1, 0}, {8, 1, 0}};
    p->samples = sp_arena_calloc(a, 7, sizeof *p->samples);
    for (int i = 0; i < 7; i++) {
        sp_sample *s = &p->samples[p->nsamples++];
        s->location_ids = sp_arena_memdup(a, stacks[i], sizeof stacks[i]);
        s->nlocations = stacks[i][2] ? 3 : 2;
        s->value = 10 * (i + 1);
    }
    p->series = sp_arena_calloc(a, 2, sizeof *p->series);
    p->series[0] = (sp_kv){"__name__", "process_cpu"};
    p->series[1] = (sp_kv){"service_name", "svc"};
    p->nseries = 2;
    return p;
}

static void write_profile(fx *f)
{
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = profile(a, f->t0);
    sp_profile *ps[1] = {p};
    sp_batch b = {.tenant = "t", .arena = a, .profiles = ps, .nprofiles = 1};
    sp_err err = {0};
    if (store_write(f->s, &b, &err))
        fail_msg("write: %s", err.msg);
    sp_arena_free(a);
}

/* The answer as "leaf;...;root value" lines sorted, into buf. */
static store_stacks query(fx *f, int detail, char *buf, size_t n)
{
    store_query q = {.tenant = "t",
                     .type_id = CPU,
                     .start_ns = f->t0 - 60 * SEC,
                     .end_ns = f->t0 + 60 * SEC,
                     .detail = detail};
    store_stacks out;
    sp_err err = {0};
    if (store_select_stacks(f->s, &q, f->a, &out, &err))
        fail_msg("query: %s", err.msg);
    char lines[16][256];
    size_t nl = 0;
    for (size_t i = 0; i < out.nstacks && nl < 16; i++) {
        size_t o = 0;
        for (uint32_t k = 0; k < out.stacks[i].nframes; k++)
            o += (size_t)snprintf(lines[nl] + o, sizeof lines[nl] - o, "%s%s", k ? ";" : "",
                                  out.names[out.stacks[i].frames[k]]);
        snprintf(lines[nl] + o, sizeof lines[nl] - o, " %lld", (long long)out.stacks[i].value);
        nl++;
    }
    qsort(lines, nl, sizeof lines[0], (int (*)(const void *, const void *))strcmp);
    size_t o = 0;
    buf[0] = 0;
    for (size_t i = 0; i < nl; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s\n", lines[i]);
    return out;
}

static const char *const NAMED = "cpython 0x1000 p;sent 70\n"
                                 "kernel 0x1000 p;sent 50\n"
                                 "native 0x1000 x;sent 60\n"
                                 "native 0x3000 p;sent 30\n"
                                 "native 0x4000 p;sent 40\n"
                                 "shapes::Circle::area() const;twice;work(double);sent 20\n"
                                 "twice;work(double);sent 10\n";

static int count_rows(const char *dir, const char *sql)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void wait_rows(const char *dir, int want)
{
    for (int i = 0; i < 500; i++) {
        if (count_rows(dir, "SELECT count(*) FROM symbol") >= want)
            return;
        usleep(10000);
    }
    fail_msg("the writer never kept %d symbol rows", want);
}

/* Only unnamed native frames of a mapping with a build id are asked for, each address once, and
 * what the symbolizer said is what the flame graph shows (inlined frames innermost first). */
static void names_native_frames_only(void **state)
{
    fx *f = *state;
    write_profile(f);
    char got[2048];
    store_stacks s = query(f, 0, got, sizeof got);
    assert_string_equal(got, NAMED);
    assert_int_equal(f->sc.calls, 4); /* 0x1000, 0x2000, 0x3000, 0x4000 of the mapping with an id */
    assert_string_equal(f->sc.last_build_id, BID);
    assert_int_equal(s.unresolved, 1); /* 0x4000: later; 0x3000 is final */
}

/* Final answers are kept: the next query asks only for what was not known, also after a
 * restart; the pprof detail carries the file and line of each named frame. */
static void answers_are_kept(void **state)
{
    fx *f = *state;
    write_profile(f);
    char got[2048];
    query(f, 0, got, sizeof got);
    assert_int_equal(f->sc.calls, 4);
    store_stacks s = query(f, 1, got, sizeof got); /* pending or kept: no new lookup but 0x4000 */
    assert_string_equal(got, NAMED);
    assert_int_equal(f->sc.calls, 5);
    int found = 0;
    for (size_t i = 0; i < s.nstacks; i++)
        for (uint32_t k = 0; k < s.stacks[i].nframes; k++)
            if (strcmp(s.names[s.stacks[i].frames[k]], "twice") == 0) {
                const store_frame *d = &s.stacks[i].detail[k];
                assert_string_equal(d->file, "/src/p.cc");
                assert_int_equal(d->line, 3);
                assert_int_equal(d->start_line, 3);
                assert_string_equal(d->build_id, BID);
                assert_int_equal(d->address, 0x1000);
                /* its caller, inlined into: same location, next frame */
                assert_string_equal(s.names[s.stacks[i].frames[k + 1]], "work(double)");
                assert_int_equal(s.stacks[i].detail[k + 1].loc, d->loc);
                assert_int_equal(s.stacks[i].detail[k + 1].line, 4);
                found++;
            }
    assert_int_equal(found, 2);
    wait_rows(f->dir, 3);
    assert_int_equal(count_rows(f->dir, "SELECT count(*) FROM symbol"), 3);
    store_close(f->s);
    f->sc.later = 1; /* the symbolizer knows nothing any more: the table alone names them */
    open_store(f);
    f->sc.calls = 0;
    query(f, 0, got, sizeof got);
    assert_string_equal(got, NAMED);
    assert_int_equal(f->sc.calls, 1); /* only 0x4000 */
}

/* Not known yet is never kept: once the symbolizer knows, the next query names the frame. */
static void later_is_asked_again(void **state)
{
    fx *f = *state;
    write_profile(f);
    f->sc.later = 1;
    char got[2048];
    store_stacks s = query(f, 0, got, sizeof got);
    assert_int_equal(s.unresolved, 4);
    assert_non_null(strstr(got, "native 0x1000 p;sent 10\n"));
    f->sc.later = 0;
    s = query(f, 0, got, sizeof got);
    assert_string_equal(got, NAMED);
    assert_int_equal(s.unresolved, 1);
    assert_int_equal(f->sc.calls, 8);
}

/* A debug file that arrives while the answer is being named, before the query waits (a small
 * file on a fast debuginfod), still names the whole answer: the frames looked up before it came
 * are named again. (The wait once counted only what arrived during itself, and such an answer
 * came back half named: some frames of a binary named, others not.) */
static void file_arriving_before_the_wait_names_every_frame(void **state)
{
    fx *f = *state;
    write_profile(f);
    f->sc.arrive_after = 3; /* heaviest first: 0x4000, 0x3000, 0x2000 before the file came */
    char got[2048];
    store_stacks s = query(f, 0, got, sizeof got);
    assert_string_equal(got, NAMED);
    assert_int_equal(s.unresolved, 1); /* 0x4000, which no file names */
    assert_int_equal(f->sc.waits, 1);
    /* a second query finds nothing new arriving: it waits once and names the same */
    s = query(f, 0, got, sizeof got);
    assert_string_equal(got, NAMED);
    assert_int_equal(f->sc.waits, 2);
}

/* A damaged symbol row is treated as absent (asked again), never trusted. */
static void damaged_rows_are_ignored(void **state)
{
    fx *f = *state;
    write_profile(f);
    char got[2048];
    query(f, 0, got, sizeof got);
    wait_rows(f->dir, 3);
    store_close(f->s);
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE symbol SET frames=x'05ff' WHERE address=4096", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    open_store(f);
    f->sc.calls = 0;
    query(f, 0, got, sizeof got);
    assert_string_equal(got, NAMED);
    assert_int_equal(f->sc.calls, 2); /* 0x1000 (damaged) and 0x4000 (later) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(names_native_frames_only, setup, teardown),
        cmocka_unit_test_setup_teardown(answers_are_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(later_is_asked_again, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_rows_are_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(file_arriving_before_the_wait_names_every_frame, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
