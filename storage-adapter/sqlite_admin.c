/* Maintenance of a SQLite store from outside the server (spanprof admin): check, vacuum and
 * online backup. These open <data_dir>/spanprof.db with connections of their own, never through
 * a running store. Invariants this file checks (store_check), all kept by the writer:
 *   1. application_id is SQS_APPLICATION_ID and user_version is 1..SQS_SCHEMA_VERSION.
 *   2. meta.bucket_ns is SQS_BUCKET_NS (bucket numbers mean nothing with another width).
 *   3. Every series names an existing tenant; every value chunk (sample_chunk, version 1's
 *      sample) names an existing series.
 *   4. Every span names an existing tenant, and its service and name are existing strings.
 *   5. Every hour that span_chunk or span has rows for is in span_hour (span reads seek only
 *      the hours listed there: a missing hour hides that hour's span profiles).
 *   6. Every stack_key, location_key and function_key row points at an existing stack,
 *      location or function.
 *   7. Every span with extras (span.extra set) has its span_extra row in its hour.
 *   8. Every span_extra row naming a resource names an existing span_resource last seen in its
 *      hour or later (retention would otherwise delete the resource first; sqlite_extras.c X3).
 * Check and backup take no lock (WAL lets them read beside a running writer); vacuum rewrites
 * the file and so takes the data directory's lock: it refuses while a spanprof runs there.
 */
#include "sqlite_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Opens <dir>/spanprof.db read-write but never creates it: a missing file is an error, not a
 * new empty store. */
static int open_existing(const char *dir, sqlite3 **out, char *path, size_t pathsz, sp_err *err)
{
    *out = NULL;
    if (!dir || !*dir)
        return sp_fail(err, SP_EINVAL, "no data directory given");
    snprintf(path, pathsz, "%s/%s", dir, SQS_DB_FILE);
    struct stat st;
    if (stat(path, &st) != 0)
        return sp_fail(err, SP_ENOTFOUND, "%s: %s (is --data-dir the server's?)", path,
                       strerror(errno));
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = sqs_fail(err, db, rc, "opening %s", path);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    *out = db;
    return 0;
}

static int64_t scalar(sqlite3 *db, const char *sql, int *rc)
{
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    *rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (*rc == SQLITE_OK) {
        *rc = sqlite3_step(st);
        if (*rc == SQLITE_ROW) {
            v = sqlite3_column_int64(st, 0);
            *rc = SQLITE_OK;
        } else if (*rc == SQLITE_DONE) {
            *rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return v;
}

/* PRAGMA integrity_check: each row that is not "ok" is a problem. */
static int integrity(sqlite3 *db, store_check_fn report, void *ud, uint64_t *problems)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check(100)", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *m = (const char *)sqlite3_column_text(st, 0);
        rc = SQLITE_OK;
        if (m && strcmp(m, "ok") != 0) {
            char line[600];
            snprintf(line, sizeof line, "integrity_check: %.500s", m);
            report(ud, line);
            ++*problems;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static const struct invariant {
    const char *what; /* "N rows: <what>" */
    const char *sql;  /* counts the rows breaking it */
} invariants[] = {
    {"series whose tenant does not exist (invariant 3)",
     "SELECT count(*) FROM series WHERE tenant NOT IN (SELECT id FROM tenant)"},
    {"sample_chunk rows whose series does not exist (invariant 3)",
     "SELECT count(*) FROM sample_chunk WHERE series NOT IN (SELECT id FROM series)"},
    {"sample rows whose series does not exist (invariant 3)",
     "SELECT count(*) FROM sample WHERE series NOT IN (SELECT id FROM series)"},
    {"spans whose tenant does not exist (invariant 4)",
     "SELECT count(*) FROM span WHERE tenant NOT IN (SELECT id FROM tenant)"},
    {"spans whose service or name string does not exist (invariant 4)",
     "SELECT count(*) FROM span WHERE service NOT IN (SELECT id FROM string) OR name NOT IN "
     "(SELECT id FROM string)"},
    {"hours of span_chunk or span missing from span_hour (invariant 5)",
     "SELECT count(*) FROM (SELECT DISTINCT hour FROM span_chunk UNION SELECT DISTINCT hour FROM "
     "span) WHERE hour NOT IN (SELECT hour FROM span_hour)"},
    {"stack_key rows without their stack (invariant 6)",
     "SELECT count(*) FROM stack_key WHERE id NOT IN (SELECT id FROM stack)"},
    {"location_key rows without their location (invariant 6)",
     "SELECT count(*) FROM location_key WHERE id NOT IN (SELECT id FROM location)"},
    {"function_key rows without their function (invariant 6)",
     "SELECT count(*) FROM function_key WHERE id NOT IN (SELECT id FROM function)"},
    {"spans whose extras row does not exist (invariant 7)",
     "SELECT count(*) FROM span WHERE extra IS NOT NULL AND NOT EXISTS (SELECT 1 FROM span_extra "
     "e WHERE e.hour=span.hour AND e.seq=span.extra)"},
    {"span_extra rows whose resource does not exist or was last seen before them (invariant 8)",
     "SELECT count(*) FROM span_extra e WHERE e.resource<>0 AND NOT EXISTS (SELECT 1 FROM "
     "span_resource r WHERE r.id=e.resource AND r.seen>=e.hour)"},
};

/* Invariants 1 and 2: what the file is. 0 when the rest can be checked. */
static int check_header(sqlite3 *db, const char *path, store_check_fn report, void *ud,
                        uint64_t *problems, sp_err *err)
{
    int rc;
    char line[600];
    int64_t app = scalar(db, "PRAGMA application_id", &rc);
    int64_t ver = rc == SQLITE_OK ? scalar(db, "PRAGMA user_version", &rc) : 0;
    if (rc != SQLITE_OK) {
        /* Unreadable header: damage, not a usage error. */
        snprintf(line, sizeof line, "%.300s: cannot read the header: %s", path, sqlite3_errstr(rc));
        report(ud, line);
        ++*problems;
        return SP_EUNAVAIL;
    }
    if (app != SQS_APPLICATION_ID || ver < 1 || ver > SQS_SCHEMA_VERSION) {
        snprintf(line, sizeof line,
                 "%.300s: application_id 0x%llx and schema %lld: not a spanprof database of schema "
                 "1..%d (invariant 1)",
                 path, (long long)app, (long long)ver, SQS_SCHEMA_VERSION);
        report(ud, line);
        ++*problems;
        return SP_EUNAVAIL;
    }
    int64_t bucket = scalar(db, "SELECT value FROM meta WHERE key = 'bucket_ns'", &rc);
    if (rc == SQLITE_OK && bucket != SQS_BUCKET_NS) {
        snprintf(line, sizeof line, "meta bucket_ns is %lld, not %lld (invariant 2)",
                 (long long)bucket, (long long)SQS_BUCKET_NS);
        report(ud, line);
        ++*problems;
    }
    (void)err;
    return 0;
}

int store_check(const char *data_dir, store_check_fn report, void *ud, uint64_t *problems,
                sp_err *err)
{
    char path[4200];
    sqlite3 *db;
    *problems = 0;
    int rc = open_existing(data_dir, &db, path, sizeof path, err);
    if (rc)
        return rc;
    if (check_header(db, path, report, ud, problems, err) == 0) {
        int src = integrity(db, report, ud, problems);
        if (src != SQLITE_OK) {
            char line[600];
            snprintf(line, sizeof line, "integrity_check could not run: %s", sqlite3_errmsg(db));
            report(ud, line);
            ++*problems;
        }
        /* Referential checks read whole tables: only on a file the b-trees of which are sound. */
        for (size_t i = 0; i < sizeof invariants / sizeof invariants[0] && !*problems; i++) {
            int64_t n = scalar(db, invariants[i].sql, &src);
            char line[600];
            if (src != SQLITE_OK)
                snprintf(line, sizeof line, "%s: cannot count: %s", invariants[i].what,
                         sqlite3_errmsg(db));
            else
                snprintf(line, sizeof line, "%lld %s", (long long)n, invariants[i].what);
            if (src != SQLITE_OK || n) {
                report(ud, line);
                ++*problems;
            }
        }
    }
    sqlite3_close(db);
    return 0;
}

/* The data directory's lock (sqlite.c takes the same one), held while vacuum rewrites. */
static int lock_dir(const char *dir, int *fd_out, sp_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, SQS_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return sp_fail(err, SP_EUNAVAIL, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return sp_fail(err, SP_EUNAVAIL,
                       "data directory %s is in use by a running spanprof: stop it before "
                       "vacuum (check and backup work while it runs)",
                       dir);
    }
    *fd_out = fd;
    return 0;
}

int store_vacuum(const char *data_dir, uint64_t *before, uint64_t *after, sp_err *err)
{
    char path[4200];
    int fd = -1;
    sqlite3 *db = NULL;
    int rc = lock_dir(data_dir ? data_dir : "", &fd, err);
    if (!rc)
        rc = open_existing(data_dir, &db, path, sizeof path, err);
    struct stat st;
    *before = *after = 0;
    if (!rc && stat(path, &st) == 0)
        *before = (uint64_t)st.st_size;
    if (!rc) {
        int src = sqlite3_exec(db,
                               "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; "
                               "PRAGMA wal_checkpoint(TRUNCATE);",
                               NULL, NULL, NULL);
        if (src != SQLITE_OK)
            rc = sqs_fail(err, db, src, "vacuum of %s", path);
    }
    sqlite3_close(db);
    if (!rc && stat(path, &st) == 0)
        *after = (uint64_t)st.st_size;
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Copies the source in one step: one read transaction, so the copy is one committed state
 * however the writer goes on (WAL: the writer is never blocked by it). */
static int copy_db(sqlite3 *src, sqlite3 *dst, const char *out, sp_err *err)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b)
        return sqs_fail(err, dst, sqlite3_errcode(dst), "starting the backup to %s", out);
    int rc;
    for (int tries = 0;; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || tries >= 100)
            break;
        sqlite3_sleep(50); /* a checkpoint holding the lock for a moment */
    }
    sqlite3_backup_finish(b);
    return rc == SQLITE_DONE ? 0 : sqs_fail(err, dst, rc, "copying to %s", out);
}

int store_backup(const char *data_dir, const char *out, store_backup_info *info, sp_err *err)
{
    char path[4200], tmp[4200];
    if (!out || !*out)
        return sp_fail(err, SP_EINVAL, "no backup file given (--out FILE)");
    struct stat st;
    if (stat(out, &st) == 0)
        return sp_fail(err, SP_EINVAL, "%s exists: the backup does not overwrite a file", out);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    sqlite3 *src = NULL, *dst = NULL;
    int rc = open_existing(data_dir, &src, path, sizeof path, err);
    if (!rc) {
        int orc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
        if (orc != SQLITE_OK)
            rc = sqs_fail(err, dst, orc, "creating %s", tmp);
    }
    if (!rc)
        rc = copy_db(src, dst, out, err);
    if (!rc && info) {
        int prc;
        info->pages = (uint64_t)scalar(dst, "PRAGMA page_count", &prc);
    }
    /* The copy is a file of its own: no -wal beside it, readable by any sqlite3. */
    if (!rc && sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK)
        rc = sqs_fail(err, dst, sqlite3_errcode(dst), "finishing %s", tmp);
    sqlite3_close(src);
    if (dst && sqlite3_close(dst) != SQLITE_OK && !rc)
        rc = sp_fail(err, SP_EUNAVAIL, "closing %s failed", tmp);
    if (!rc && rename(tmp, out) != 0)
        rc = sp_fail(err, SP_EUNAVAIL, "renaming %s to %s: %s", tmp, out, strerror(errno));
    if (rc)
        unlink(tmp);
    if (!rc && info && stat(out, &st) == 0)
        info->bytes = (uint64_t)st.st_size;
    return rc;
}

/* ---- import bookkeeping ---------------------------------------------------------------------- */

static int mark_key(const char *id, char *key, size_t n, sp_err *err)
{
    if (!id || !*id || strlen(id) > 100)
        return sp_fail(err, SP_EINVAL, "export id must be 1..100 bytes");
    snprintf(key, n, "import:%s", id);
    return 0;
}

int store_import_mark_begin(const char *data_dir, const char *id, const char *set, char *state,
                            size_t statesz, sp_err *err)
{
    char path[4200], key[128];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    state[0] = 0;
    int rc = mark_key(id, key, sizeof key, err);
    if (!rc)
        rc = open_existing(data_dir, &db, path, sizeof path, err);
    int src = rc ? SQLITE_OK : sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src == SQLITE_OK && !rc)
        src = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key=?1", -1, &st, NULL);
    if (src == SQLITE_OK && !rc) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            snprintf(state, statesz, "%s", (const char *)sqlite3_column_text(st, 0));
        src = src == SQLITE_ROW || src == SQLITE_DONE ? SQLITE_OK : src;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (src == SQLITE_OK && !rc && !state[0]) {
        src = sqlite3_prepare_v2(db, "INSERT INTO meta(key, value) VALUES(?1, ?2)", -1, &st, NULL);
        if (src == SQLITE_OK) {
            sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, set, -1, SQLITE_STATIC);
            src = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
        }
        sqlite3_finalize(st);
    }
    if (src == SQLITE_OK && !rc)
        src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK && !rc) {
        rc = sqs_fail(err, db, src, "recording the import in %s", path);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_close(db);
    return rc;
}

int store_import_mark_set(const char *data_dir, const char *id, const char *state, sp_err *err)
{
    char path[4200], key[128];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = mark_key(id, key, sizeof key, err);
    if (!rc)
        rc = open_existing(data_dir, &db, path, sizeof path, err);
    int src = rc ? SQLITE_OK
                 : sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
                                      -1, &st, NULL);
    if (!rc && src == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
        src = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    if (!rc && src != SQLITE_OK)
        rc = sqs_fail(err, db, src, "recording the import in %s", path);
    sqlite3_close(db);
    return rc;
}
