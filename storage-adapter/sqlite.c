/* The SQLite backend: opening (data directory, lock, schema), the reader pool, the background
 * retention thread and closing. The write path is in sqlite_write.c, queries in sqlite_read.c,
 * the schema in sqlite_schema.c.
 */
#include "sqlite_store.h"
#include "../common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void sqs_close(store *st);
static void sqs_stats(store *st, store_stats *out);

static const store_ops sqlite_ops = {
    .kind = "sqlite",
    .close = sqs_close,
    .write = sqs_write,
    .stream_begin = sqs_stream_begin,
    .stream_part = sqs_stream_part,
    .stream_end = sqs_stream_end,
    .profile_types = sqs_profile_types,
    .label_names = sqs_label_names,
    .label_values = sqs_label_values,
    .series = sqs_series,
    .select_stacks = sqs_select_stacks,
    .select_series = sqs_select_series,
    .span_stacks = sqs_span_stacks,
    .span_totals = sqs_span_totals,
    .trace_spans = sqs_trace_spans,
    .span_get = sqs_span_get,
    .span_services = sqs_span_services,
    .service_traces = sqs_service_traces,
    .find_spans = sqs_find_spans,
    .profile_stats = sqs_profile_stats,
    .query_impact = sqs_query_impact,
    .retention_run = sqs_retention_run,
    .stats = sqs_stats,
};

static void resolve_defaults(store_options *o)
{
    if (o->retention_ns == 0)
        o->retention_ns = 168 * SQS_HOUR_NS;
    if (o->retention_interval_ns == 0)
        o->retention_interval_ns = 60 * 1000000000LL;
    if (!o->retention_chunk_rows)
        o->retention_chunk_rows = 2000;
    if (!o->commit_max_batches)
        o->commit_max_batches = 256;
    if (o->commit_linger_ns < 0)
        o->commit_linger_ns = 0;
    if (!o->max_pending)
        o->max_pending = 4096;
    if (!o->busy_timeout_ms)
        o->busy_timeout_ms = 5000;
    if (!o->readers)
        o->readers = 4;
    if (!o->cache_bytes)
        o->cache_bytes = 32u << 20;
    if (!o->index_rows)
        o->index_rows = 4u << 20;
    if (!o->page_cache_bytes)
        o->page_cache_bytes = 32u << 20;
    if (!o->name_cache_bytes)
        o->name_cache_bytes = 32u << 20;
    if (o->durability != STORE_DURABILITY_FULL)
        o->durability = STORE_DURABILITY_NORMAL;
}

/* mkdir -p, reporting the first component that fails. */
static int make_dirs(const char *dir, sp_err *err)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n >= sizeof path)
        return sp_fail(err, SP_EINVAL, "data directory path too long (%zu bytes)", n);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char c = path[i];
        path[i] = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            path[i] = c;
            return sp_fail(err, SP_EUNAVAIL, "cannot create data directory %s: %s%s", dir,
                           strerror(e), e == ENOSPC ? " (disk full)" : "");
        }
        path[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return sp_fail(err, SP_EUNAVAIL, "data directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return sp_fail(err, SP_EUNAVAIL, "data directory %s is not a directory", dir);
    return 0;
}

/* One spanprof per data directory: a second one would interleave its writes and retention with
 * ours. flock() is released by the kernel when the process dies, so a crash leaves no stale lock.
 */
static int take_dir_lock(sqs_store *s, sp_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", s->dir, SQS_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        if (e == EACCES || e == EROFS || e == EPERM)
            return sp_fail(err, SP_EUNAVAIL,
                           "data directory %s is not writable (%s); spanprof keeps %s, its -wal "
                           "and -shm files there: fix the permissions or choose another "
                           "--data-dir",
                           s->dir, strerror(e), SQS_DB_FILE);
        if (e == ENOSPC || e == EDQUOT)
            return sp_fail(err, SP_EUNAVAIL, "data directory %s: disk full (%s)", s->dir,
                           strerror(e));
        return sp_fail(err, SP_EUNAVAIL, "cannot create %s: %s", path, strerror(e));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t r = pread(fd, pid, sizeof pid - 1, 0);
        if (r > 0) {
            pid[r] = 0;
            pid[strcspn(pid, "\n")] = 0;
        }
        close(fd);
        if (e == EWOULDBLOCK)
            return sp_fail(err, SP_EUNAVAIL,
                           "data directory %s is in use by another spanprof (pid %s); stop it or "
                           "choose another --data-dir",
                           s->dir, *pid ? pid : "unknown");
        return sp_fail(err, SP_EUNAVAIL, "cannot lock %s: %s", path, strerror(e));
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return sp_fail(err, SP_EUNAVAIL, "data directory %s: cannot write %s: %s%s", s->dir,
                       SQS_LOCK_FILE, strerror(e),
                       e == ENOSPC || e == EDQUOT ? " (disk full)" : "");
    }
    s->lock_fd = fd;
    /* The lock file may be writable in a directory that is not: SQLite must create -wal and
     * -shm next to the database, so say so now rather than with SQLite's generic message. */
    if (access(s->dir, W_OK | X_OK) != 0 && (errno == EACCES || errno == EROFS)) {
        int e = errno;
        close(fd);
        s->lock_fd = -1;
        return sp_fail(err, SP_EUNAVAIL,
                       "data directory %s is not writable (%s); spanprof keeps %s, its -wal "
                       "and -shm files there: fix the permissions or choose another --data-dir",
                       s->dir, strerror(e), SQS_DB_FILE);
    }
    return 0;
}

static void *retention_main(void *arg)
{
    sqs_store *s = arg;
    pthread_mutex_lock(&s->ret_mu);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + s->opt.retention_interval_ns % 1000000000LL;
        until.tv_sec += (time_t)(s->opt.retention_interval_ns / 1000000000LL + ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        while (!s->ret_stop && pthread_cond_timedwait(&s->ret_cv, &s->ret_mu, &until) == 0)
            ;
        if (s->ret_stop)
            break;
        pthread_mutex_unlock(&s->ret_mu);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        sp_err err = {0};
        store_stats before;
        sqs_stats(&s->base, &before);
        int rc =
            sqs_retention_run(&s->base, (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec, &err);
        store_stats after;
        sqs_stats(&s->base, &after);
        if (rc)
            sp_warn("msg=\"retention run failed\" code=%s error=\"%s\"", sp_code_name(rc), err.msg);
        else if (after.rows_deleted > before.rows_deleted)
            sp_info("msg=\"retention\" rows_deleted=%" PRIu64,
                    after.rows_deleted - before.rows_deleted);
        pthread_mutex_lock(&s->ret_mu);
    }
    pthread_mutex_unlock(&s->ret_mu);
    return NULL;
}

static void free_store(sqs_store *s)
{
    while (s->idle) {
        sqs_reader *r = s->idle;
        s->idle = r->next;
        sqs_reader_close(r);
    }
    sqs_writer_free(s);
    sqs_sym_gen_free(&s->sym_new);
    sqs_sym_gen_free(&s->sym_flushing);
    while (s->sym_retired) {
        struct sqs_sym_gen *g = s->sym_retired;
        s->sym_retired = g->older;
        sqs_sym_gen_free(g);
        free(g);
    }
    free(s->readers);
    store_ncache_free(s->names);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->ret_mu);
    pthread_cond_destroy(&s->ret_cv);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    pthread_mutex_destroy(&s->ckpt_mu);
    pthread_cond_destroy(&s->ckpt_cv);
    free(s->dir);
    free(s->db_path);
    free(s);
}

/* SQLite counts every allocation of every connection under one process-wide mutex unless told
 * not to (SQLITE_CONFIG_MEMSTATUS, on by default). The store's writer and checkpointer allocate
 * all the time, so a span query's thread queued on that mutex: under full load, 15 % of the
 * query threads' switches off the CPU were waits for it (sqlite3Malloc, sqlite3_free), and with
 * both cores busy each wait also waited for a core (bench/RESULTS.md, "Span queries: where the
 * slowest waited"). spanprof reads none of those counters (sqlite3_memory_used,
 * sqlite3_status). The setting must come before SQLite initialises: a process that opened a
 * database before its first store keeps the default, with the same results, only slower. */
static pthread_once_t sqlite_configured = PTHREAD_ONCE_INIT;

static void configure_sqlite(void)
{
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK)
        sp_debug("msg=\"SQLite was initialised before the store: its memory counters stay on\"");
}

int store_open_sqlite(store **out, const store_options *o, sp_err *err)
{
    pthread_once(&sqlite_configured, configure_sqlite);
    if (!out)
        return sp_fail(err, SP_EINTERNAL, "store_open_sqlite: no output pointer");
    *out = NULL;
    if (!o || !o->data_dir || !*o->data_dir)
        return sp_fail(err, SP_EINVAL, "no data directory given for the SQLite store");
    if (!sqlite3_threadsafe())
        return sp_fail(err, SP_EINTERNAL, "the SQLite library was built without thread support");
    sqs_store *s = calloc(1, sizeof *s);
    if (!s)
        return sp_fail(err, SP_ENOMEM, "out of memory opening the store");
    s->base.ops = &sqlite_ops;
    s->lock_fd = -1;
    s->opt = *o;
    resolve_defaults(&s->opt);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_mutex_init(&s->ret_mu, NULL);
    pthread_cond_init(&s->ret_cv, NULL);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    pthread_mutex_init(&s->ckpt_mu, NULL);
    pthread_cond_init(&s->ckpt_cv, NULL);
    s->dir = strdup(o->data_dir);
    size_t n = strlen(o->data_dir) + sizeof SQS_DB_FILE + 2;
    s->db_path = malloc(n);
    if (!s->dir || !s->db_path) {
        free_store(s);
        return sp_fail(err, SP_ENOMEM, "out of memory opening the store");
    }
    snprintf(s->db_path, n, "%s/%s", o->data_dir, SQS_DB_FILE);
    s->opt.data_dir = s->dir;
    if (!(s->names = store_ncache_new(s->opt.name_cache_bytes))) {
        free_store(s);
        return sp_fail(err, SP_ENOMEM, "out of memory opening the store (location-name cache)");
    }

    int rc;
    if ((rc = make_dirs(s->dir, err)) || (rc = take_dir_lock(s, err)) ||
        (rc = sqs_open_writer(s, err)) || (rc = sqs_writer_init(s, err))) {
        free_store(s);
        return rc;
    }
    sqs_checkpointer_start(s); /* before the writer runs: it installs the writer's WAL hook */
    if (pthread_create(&s->writer_thread, NULL, sqs_writer_main, s) != 0) {
        sqs_checkpointer_stop(s);
        free_store(s);
        return sp_fail(err, SP_EINTERNAL, "cannot start the store's writer thread");
    }
    s->writer_started = 1;
    pthread_setname_np(s->writer_thread, "store-writer"); /* top, perf, bench_ingest */
    if (s->opt.retention_interval_ns > 0 && s->opt.retention_ns > 0) {
        if (pthread_create(&s->retention_thread, NULL, retention_main, s) != 0) {
            sqs_close(&s->base);
            return sp_fail(err, SP_EINTERNAL, "cannot start the store's retention thread");
        }
        s->retention_started = 1;
    }
    sp_info("msg=\"store open\" kind=sqlite path=\"%s\" schema=%d durability=%s "
            "retention_h=%" PRId64,
            s->db_path, SQS_SCHEMA_VERSION,
            s->opt.durability == STORE_DURABILITY_FULL ? "full" : "normal",
            (int64_t)(s->opt.retention_ns > 0 ? s->opt.retention_ns / SQS_HOUR_NS : -1));
    *out = &s->base;
    return 0;
}

static void sqs_close(store *st)
{
    sqs_store *s = (sqs_store *)st;
    __atomic_store_n(&s->closing, 1, __ATOMIC_RELEASE);
    if (s->retention_started) {
        pthread_mutex_lock(&s->ret_mu);
        s->ret_stop = 1;
        pthread_cond_signal(&s->ret_cv);
        pthread_mutex_unlock(&s->ret_mu);
        pthread_join(s->retention_thread, NULL);
    }
    if (s->writer_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer_thread, NULL);
    }
    sqs_checkpointer_stop(s); /* K4 (sqlite_checkpoint.c) */
    /* Readers first: a checkpoint cannot pass a reader's snapshot. */
    while (s->idle) {
        sqs_reader *r = s->idle;
        s->idle = r->next;
        sqs_reader_close(r);
    }
    if (s->w.db) {
        int rc = sqlite3_wal_checkpoint_v2(s->w.db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (rc != SQLITE_OK)
            sp_warn("msg=\"store checkpoint at close failed\" error=\"%s\"",
                    sqlite3_errmsg(s->w.db));
    }
    free_store(s);
}

static void sqs_stats(store *st, store_stats *out)
{
    sqs_store *s = (sqs_store *)st;
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->pending = s->npending;
    out->housekeeping = s->house_due || s->housekeeping;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->ckpt_mu);
    out->checkpoints = s->ckpt_runs;
    out->checkpoints_inline = s->ckpt_inline;
    out->checkpoints_failed = s->ckpt_failed;
    pthread_mutex_unlock(&s->ckpt_mu);
    store_ncache_stats nc;
    store_ncache_get_stats(s->names, &nc);
    out->name_cache_bytes = nc.bytes;
    out->name_cache_entries = nc.entries;
    out->name_cache_hits = nc.hits;
    out->name_cache_misses = nc.misses;
    out->name_cache_evicted = nc.evicted;
}

/* ---- reader pool --------------------------------------------------------------------------- */

int sqs_reader_acquire(sqs_store *s, sqs_reader **out, sp_err *err)
{
    *out = NULL;
    pthread_mutex_lock(&s->pool_mu);
    while (!s->idle && s->nreaders >= s->opt.readers)
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    if (s->idle) {
        sqs_reader *r = s->idle;
        s->idle = r->next;
        pthread_mutex_unlock(&s->pool_mu);
        r->next = NULL;
        *out = r;
        return 0;
    }
    s->nreaders++;
    pthread_mutex_unlock(&s->pool_mu);
    sqs_reader *r = calloc(1, sizeof *r);
    int rc = r ? sqs_open_reader(s, &r->db, err)
               : sp_fail(err, SP_ENOMEM, "out of memory opening a read connection");
    if (!rc) { /* the writer scans every open reader for Y4 */
        pthread_mutex_lock(&s->pool_mu);
        sqs_reader **v = realloc(s->readers, (s->nreaders_open + 1) * sizeof *v);
        if (v) {
            s->readers = v;
            s->readers[s->nreaders_open++] = r;
        } else {
            rc = sp_fail(err, SP_ENOMEM, "out of memory opening a read connection");
        }
        pthread_mutex_unlock(&s->pool_mu);
        if (rc)
            sqs_reader_close(r);
        r = rc ? NULL : r;
    }
    if (rc) {
        free(r);
        pthread_mutex_lock(&s->pool_mu);
        s->nreaders--;
        pthread_cond_signal(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        return rc;
    }
    *out = r;
    return 0;
}

void sqs_reader_release(sqs_store *s, sqs_reader *r)
{
    if (!r)
        return;
    /* A connection left inside a transaction (an error path) is closed, not reused. */
    if (!sqlite3_get_autocommit(r->db)) {
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
        if (!sqlite3_get_autocommit(r->db)) {
            pthread_mutex_lock(&s->pool_mu);
            for (size_t i = 0; i < s->nreaders_open; i++)
                if (s->readers[i] == r)
                    s->readers[i] = s->readers[--s->nreaders_open];
            pthread_mutex_unlock(&s->pool_mu);
            sqs_reader_close(r);
            pthread_mutex_lock(&s->pool_mu);
            s->nreaders--;
            pthread_cond_signal(&s->pool_cv);
            pthread_mutex_unlock(&s->pool_mu);
            return;
        }
    }
    pthread_mutex_lock(&s->pool_mu);
    r->next = s->idle;
    s->idle = r;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}
