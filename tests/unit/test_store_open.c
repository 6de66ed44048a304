/* Opening the SQLite store: schema migrations from every earlier version, restarts, and the
 * clear errors of a newer schema, a foreign file, a read-only directory, a second server, a
 * locked database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "storage-adapter/maps.h"
#include "storage-adapter/store.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_fixture.h"

/* SQLite's process-wide memory counters are off (SQLITE_CONFIG_MEMSTATUS, set by the first
 * store_open): every allocation of every connection took one mutex for them, and span queries
 * waited on it behind the writer. With the counters on, an open, written store shows bytes in
 * use here; off, SQLite keeps none. */
static void sqlite_keeps_no_process_wide_memory_counters(void **state)
{
    fx *f = *state;
    sp_span sp = {.service = "api", .name = "counted", .start_ns = (uint64_t)f->t0};
    sp.trace_id[0] = 0xcd;
    span_id(0x601, sp.span_id);
    sp_batch b = {.tenant = "t1", .spans = &sp, .nspans = 1};
    write_ok(f->s, &b);
    sqlite3_int64 cur = -1, high = -1;
    assert_int_equal(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &cur, &high, 0), SQLITE_OK);
    assert_int_equal(cur, 0);
    assert_int_equal(sqlite3_memory_used(), 0);
}

/* What turns a file of the current schema back into version 7 (prepended to what turns it into
 * older ones): functions found through the index function_by_hash, no function_key. */
#define BEFORE_V8                                                                                  \
    "DROP TABLE function_key; DELETE FROM meta WHERE key='function_keyed';"                        \
    "CREATE INDEX function_by_hash ON function(hash);"

/* A version 7 file (functions indexed by hash) migrates to 8 in place: every function gets its
 * key row under the watermark, the index is gone, and a function written again after the
 * migration is found through the key table (no second row), its samples adding up. */
static void migrates_from_version_7_functions_keyed(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    store_close(f->s);
    f->s = NULL;
    int64_t functions = sql_int(f->dir, "SELECT count(*) FROM function");
    assert_true(functions >= 3);
    set_pragma(f->dir, BEFORE_V8 "PRAGMA user_version=7");
    assert_int_equal(
        sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='function_key'"), 0);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 8);
    assert_int_equal(
        sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='function_by_hash'"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function_key"), functions);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='function_keyed'"),
                     sql_int(f->dir, "SELECT max(id) FROM function"));
    p->time_nanos = f->t0 + 20 * SEC;
    p->samples[0].timestamps[0] = (uint64_t)(f->t0 + 21 * SEC);
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM function"), functions);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 60);
    store_close(f->s);
    f->s = NULL;
    assert_keys_whole(f->dir);
    open_store(f);
}

/* A version 5 file (span rows without extras) migrates to 6 in place: its spans read back with
 * no extras, and spans written afterwards keep theirs. */
static void migrates_from_version_5_spans_without_extras(void **state)
{
    fx *f = *state;
    sp_span sp = {.service = "api", .name = "old", .start_ns = (uint64_t)f->t0};
    sp.trace_id[0] = 0xcc;
    span_id(0x501, sp.span_id);
    sp_batch b = {.tenant = "t1", .spans = &sp, .nspans = 1};
    write_ok(f->s, &b);
    store_close(f->s);
    f->s = NULL;
    set_pragma(f->dir, BEFORE_V8 "DROP TABLE span_extra; DROP TABLE span_resource; ALTER TABLE "
                                 "span DROP extra; PRAGMA user_version=5");
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 8);
    static const uint8_t extras[] = {0x12, 0x00};
    sp_span nw = sp;
    nw.name = "new";
    span_id(0x502, nw.span_id);
    nw.extras = extras;
    nw.extras_len = sizeof extras;
    b.spans = &nw;
    write_ok(f->s, &b);
    uint8_t trace[16] = {0xcc};
    store_spans out;
    sp_err err = {0};
    assert_int_equal(store_trace_spans(f->s, "t1", trace, f->a, &out, &err), 0);
    assert_int_equal(out.n, 2);
    assert_string_equal(out.spans[0].name, "old");
    assert_null(out.spans[0].extras);
    assert_string_equal(out.spans[1].name, "new");
    assert_int_equal(out.spans[1].extras_len, sizeof extras);
}

/* A version 6 file (sample_chunk WITHOUT ROWID, keyed by (series, bucket, seq)) migrates to 7
 * in place: its chunks move to the rowid table unchanged, read back and add up with what is
 * written afterwards (seq continues), and the index answers the (series, bucket) lookups. */
static void migrates_from_version_6_chunks_to_a_rowid_table(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_close(f->s);
    f->s = NULL;
    set_pragma(f->dir, BEFORE_V8
               "CREATE TABLE old(series INTEGER NOT NULL, bucket INTEGER NOT NULL,"
               "  seq INTEGER NOT NULL, total INTEGER NOT NULL, data BLOB NOT NULL,"
               "  PRIMARY KEY(series, bucket, seq)) WITHOUT ROWID;"
               "INSERT INTO old SELECT series, bucket, seq, total, data FROM sample_chunk;"
               "DROP TABLE sample_chunk; ALTER TABLE old RENAME TO sample_chunk;"
               "PRAGMA user_version=6");
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE "
                                     "name='sample_chunk_by_series'"),
                     0);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 8);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE "
                                     "name='sample_chunk_by_series'"),
                     1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk WHERE id > 0"), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 30);
    assert_int_equal(value_of(&st, "main;foo;bar"), 30);
    a = sp_arena_new(0);
    p = mkprofile(a, CPU, "api", f->t0);
    add_sample(a, p, STK_MFB, 12, f->t0 + 1 * SEC);
    b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 42);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 2);
    assert_int_equal(sql_int(f->dir, "SELECT max(seq) FROM sample_chunk"), 2);
    sp_err err = {0};
    assert_int_equal(store_retention_run(f->s, wall_ns() + 400 * HOUR, &err), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 0);
}

/* ---- span extras: resource once, span part appended (sqlite_extras.c X1-X5) ----------------- */

static void restart_reads_the_same_numbers(void **state)
{
    fx *f = *state;
    write_services(f);
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC), 0x1111);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_stacks before = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    store_close(f->s);
    f->s = NULL;
    open_store(f);
    store_stacks after = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(before.total, 630);
    assert_int_equal(after.total, before.total);
    assert_int_equal(after.nstacks, before.nstacks);
    assert_int_equal(value_of(&after, "main;foo;bar"), value_of(&before, "main;foo;bar"));
    uint8_t id[8];
    span_id(0x1111, id);
    store_query q = {.tenant = "t1", .type_id = CPU};
    store_stacks st;
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 30);
    /* Writes after a restart find the existing dictionary rows. */
    write_services(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 1230);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 3);
}

static void migrates_from_version_0(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    rm_rf(f->dir);
    mkdir(f->dir, 0700);
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=0", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 8);
    assert_int_equal(sql_int(f->dir, "PRAGMA application_id"), 0x53505246);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='bucket_ns'"),
                     10000000000LL);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='span_stack'"),
                     1);
    assert_int_equal(
        sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='sample_chunk'"), 1);
    /* Opening again does not migrate twice. */
    store_close(f->s);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 8);
}

/* A version 1 file (values as one row per stack in sample and span_stack, hash indexes on stack
 * and location) is migrated to version 3 in place: its rows stay readable beside what is written
 * afterwards, its dictionary rows are found again through the key tables, and all ages out. */
static void migrates_from_version_1(void **state)
{
    fx *f = *state;
    sp_arena *a = sp_arena_new(0);
    sp_profile *p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 30, f->t0 + 1 * SEC), 0x1111);
    sp_batch b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    store_close(f->s);
    f->s = NULL;
    /* Turn the file into what version 1 wrote: the same values as v1 rows, no chunk tables. */
    set_pragma(f->dir, BEFORE_V8
               "INSERT INTO sample(series, bucket, stack, value) SELECT series, bucket, "
               "(SELECT id FROM stack), total FROM sample_chunk;"
               "INSERT INTO span_stack(hour, span_id, series, stack, value) SELECT hour, span_id, "
               "(SELECT series FROM sample_chunk), (SELECT id FROM stack), 30 FROM span_chunk;"
               "DROP TABLE sample_chunk; DROP TABLE span_chunk;"
               "DELETE FROM meta WHERE key='chunk_format';"
               "DROP TABLE symbol; DROP INDEX span_by_name; ALTER TABLE span DROP extra;"
               "DROP TABLE span_extra; DROP TABLE span_resource;"
               "DROP TABLE stack_key; DROP TABLE location_key; ALTER TABLE series DROP period;"
               "DELETE FROM meta WHERE key IN ('stack_keyed', 'location_keyed');"
               "CREATE INDEX stack_by_hash ON stack(hash);"
               "CREATE INDEX location_by_hash ON location(hash); PRAGMA user_version=1");
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample"), 1);
    open_store(f);
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 8);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack_key"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location_key"), 3);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='stack_keyed'"),
                     sql_int(f->dir, "SELECT max(id) FROM stack"));
    assert_int_equal(
        sql_int(f->dir, "SELECT count(*) FROM sqlite_master WHERE name='stack_by_hash'"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT value FROM meta WHERE key='chunk_format'"), 1);
    store_stacks st = select_stacks(f, "t1", CPU, NULL, 0, 0, 0);
    assert_int_equal(st.total, 30);
    assert_int_equal(value_of(&st, "main;foo;bar"), 30);
    uint8_t id[8];
    span_id(0x1111, id);
    store_query q = {.tenant = "t1", .type_id = CPU};
    sp_err err = {0};
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 30);
    /* New writes go to chunks and add up with the version 1 rows. */
    a = sp_arena_new(0);
    p = mkprofile(a, CPU, "api", f->t0);
    attach(a, add_sample(a, p, STK_MFB, 12, f->t0 + 1 * SEC), 0x1111);
    b = batch1(a, "t1", p);
    write_ok(f->s, &b);
    sp_arena_free(a);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 42);
    assert_int_equal(store_span_stacks(f->s, &q, (const uint8_t(*)[8])id, 1, f->a, &st, &err), 0);
    assert_int_equal(st.total, 42);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample_chunk"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM stack"), 1);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM location"), 3);
    /* Retention ages both out. */
    assert_int_equal(store_retention_run(f->s, wall_ns() + 400 * HOUR, &err), 0);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM sample"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_stack"), 0);
    assert_int_equal(sql_int(f->dir, "SELECT count(*) FROM span_chunk"), 0);
}

static void refuses_newer_schema_version(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    set_pragma(f->dir, "PRAGMA user_version=9");
    store_options o = opts(f->dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_null(s);
    assert_non_null(
        strstr(err.msg, "database schema version 9 is newer than this spanprof (8); upgrade"));
    /* Nothing was changed. */
    assert_int_equal(sql_int(f->dir, "PRAGMA user_version"), 9);
    set_pragma(f->dir, "PRAGMA user_version=8");
    open_store(f);
}

static void refuses_a_foreign_file(void **state)
{
    fx *f = *state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/test_store_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    FILE *fp = fopen(path, "w");
    fputs("this is not a database, it is a text file that is long enough to have a header.....",
          fp);
    fclose(fp);
    store_options o = opts(dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "not a SQLite database"));

    remove(path);
    set_pragma(dir, "CREATE TABLE users(id INTEGER)");
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "another program"));
    rm_rf(dir);
    (void)f;
}

static void read_only_data_dir_is_a_clear_error(void **state)
{
    fx *f = *state;
    store_close(f->s); /* no other threads while forking */
    f->s = NULL;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/ro", f->dir);
    assert_int_equal(mkdir(dir, 0555), 0);
    chmod(f->dir, 0755);
    /* root ignores permissions: check as an unprivileged user in a child process. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        store_options o = opts(dir);
        sp_err err = {0};
        store *s = NULL;
        int rc = store_open_sqlite(&s, &o, &err);
        if (rc != SP_EUNAVAIL)
            _exit(1);
        if (!strstr(err.msg, "is not writable") || !strstr(err.msg, dir))
            _exit(2);
        /* A writable lock file (left by an earlier run) in a read-only directory. */
        if (strstr(err.msg, "spanprof.db") == NULL)
            _exit(4);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* The lock file exists and is writable, the directory is not. */
    char lock[160];
    snprintf(lock, sizeof lock, "%s/spanprof.lock", dir);
    chmod(dir, 0755);
    FILE *lf = fopen(lock, "w");
    assert_non_null(lf);
    fclose(lf);
    chmod(lock, 0666);
    chmod(dir, 0555);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        store_options o = opts(dir);
        sp_err err = {0};
        store *s = NULL;
        int rc = store_open_sqlite(&s, &o, &err);
        if (!(rc == SP_EUNAVAIL && strstr(err.msg, "is not writable")))
            fprintf(stderr, "read-only open: rc=%d msg=%s\n", rc, err.msg);
        _exit(rc == SP_EUNAVAIL && strstr(err.msg, "is not writable") ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    chmod(dir, 0755);

    /* A data dir that is a file. */
    char file[128];
    snprintf(file, sizeof file, "%s/file", f->dir);
    FILE *fp = fopen(file, "w");
    fclose(fp);
    store_options o = opts(file);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "not a directory"));
}

static void second_spanprof_on_the_same_dir_is_refused(void **state)
{
    fx *f = *state;
    store_options o = opts(f->dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "in use by another spanprof"));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(err.msg, pid));
}

static void locked_database_is_a_clear_error(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/spanprof.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    store_options o = opts(f->dir);
    sp_err err = {0};
    store *s = NULL;
    assert_int_equal(store_open_sqlite(&s, &o, &err), SP_EUNAVAIL);
    assert_non_null(strstr(err.msg, "locked by another process"));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    open_store(f);
}

static void durability_full_and_url_open(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    char url[128];
    snprintf(url, sizeof url, "sqlite://%s", f->dir);
    store_options o = {0};
    o.durability = STORE_DURABILITY_FULL;
    o.retention_interval_ns = -1;
    sp_err err = {0};
    assert_int_equal(store_open(&f->s, url, &o, &err), 0);
    write_services(f);
    assert_int_equal(select_stacks(f, "t1", CPU, NULL, 0, 0, 0).total, 600);
    store *s = NULL;
    /* (pyroscope+http:// URLs open the Pyroscope backend, tested with it.) */
    assert_int_equal(store_open(&s, "bogus://", &o, &err), SP_EINVAL);
    store_options none = {0};
    assert_int_equal(store_open(&s, NULL, &none, &err), SP_EINVAL);
    assert_non_null(strstr(err.msg, "no data directory"));
}

/* Version 2 and version 1 files with a dictionary larger than the cache loads at start-up:
 * migrated to 3, every row is keyed, and writing the same content again adds no row. */
static void migrates_a_large_dictionary_from_versions_2_and_1(void **state)
{
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    for (int from = 2; from >= 1; from--) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/v%d", f->dir, from);
        store *s;
        open_with(dir, 0, 0, &s);
        for (int r = 0; r < 6; r++)
            write_round_ok(s, f->t0, r);
        store_close(s);
        /* What version 2 had: hash indexes, no key tables, no period. */
        sql_exec(dir, BEFORE_V8
                 "DROP TABLE symbol; DROP INDEX span_by_name; ALTER TABLE span DROP extra; DROP "
                 "TABLE span_extra; DROP TABLE span_resource; DROP TABLE stack_key; DROP "
                 "TABLE location_key; "
                 "ALTER TABLE series DROP "
                 "period; DELETE FROM meta WHERE key IN ('stack_keyed', 'location_keyed');"
                 "CREATE INDEX stack_by_hash ON stack(hash);"
                 "CREATE INDEX location_by_hash ON location(hash); PRAGMA user_version=2");
        int64_t before = 6 * ROUND_STACKS;
        if (from == 1) {
            /* and no chunk tables (the values written as chunks are dropped with them) */
            sql_exec(dir, "DROP TABLE sample_chunk; DROP TABLE span_chunk; DELETE FROM meta WHERE "
                          "key='chunk_format'; PRAGMA user_version=1");
            before = 0;
        }
        open_with(dir, 1, 0, &s);
        assert_int_equal(sql_int(dir, "PRAGMA user_version"), 8);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack_key"), 6 * ROUND_STACKS);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location_key"), 6 * ROUND_LOCS + 1);
        assert_int_equal(sql_int(dir, "SELECT value FROM meta WHERE key='stack_keyed'"),
                         sql_int(dir, "SELECT max(id) FROM stack"));
        assert_int_equal(sql_int(dir, "SELECT value FROM meta WHERE key='location_keyed'"),
                         sql_int(dir, "SELECT max(id) FROM location"));
        assert_int_equal(total_k(s, f->a), before);
        for (int r = 0; r < 7; r++)
            write_round_ok(s, f->t0, r);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM stack"), 7 * ROUND_STACKS);
        assert_int_equal(sql_int(dir, "SELECT count(*) FROM location"), 7 * ROUND_LOCS + 1);
        assert_int_equal(total_k(s, f->a), before + 7 * ROUND_STACKS);
        assert_keys_whole(dir);
        store_close(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sqlite_keeps_no_process_wide_memory_counters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_7_functions_keyed, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_5_spans_without_extras, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_6_chunks_to_a_rowid_table, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(restart_reads_the_same_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_from_version_0, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_newer_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_foreign_file, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_data_dir_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(second_spanprof_on_the_same_dir_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(locked_database_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(durability_full_and_url_open, setup, teardown),
        cmocka_unit_test_setup_teardown(migrates_a_large_dictionary_from_versions_2_and_1, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
