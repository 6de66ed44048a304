/* The build id registry, the local directories, the download threads.
 *
 * Invariants:
 *   S1. An entry's state only moves under `mu`; its path and debug file are only set, used or
 *       closed under the entry's own `use` lock (taken before `mu` when both are needed).
 *       Entries are freed only by sym_close(), so a pointer taken under `mu` stays valid after
 *       it is released.
 *   S2. A caller never waits past its deadline: it waits on `changed` with a timed wait, and the
 *       download it waits for goes on without it.
 *   S3. A download never outlives its limits: the download process's progress callback cancels
 *       it past fetch_timeout_ns, past max_file_bytes, or when the symbolizer closes, and a
 *       process that does not answer in time is killed (fetcher.c, F1).
 *   S4. At most open_files debug files are open (give or take the ones being used right now,
 *       which are closed when the next file opens).
 *   S5. The registry is bounded (SYM_MAX_ENTRIES build ids); past it, unknown build ids answer
 *       SYM_LATER without being remembered.
 *   S6. libdebuginfod is never called in this process, only in the download threads' child
 *       processes (fetcher.h: it closes one descriptor twice per download, which in a threaded
 *       program closes another thread's file).
 */
#include "symbolizer.h"

#include "../common/log.h"
#include "fetcher.h"

#include <elfutils/debuginfod.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SYM_MAX_ENTRIES 100000
#define SYM_BUCKETS     4096

enum { E_UNKNOWN, E_OPENING, E_QUEUED, E_FETCHING, E_READY, E_MISSING };

typedef struct entry {
    struct entry *next;  /* hash chain */
    struct entry *qnext; /* download queue */
    char id[2 * SYM_BUILD_ID_MAX + 1];
    int state;
    int64_t retry_at; /* E_MISSING: monotonic ns */
    char *path;       /* E_READY: the debug file */
    debugfile *df;    /* open, or NULL (closed by the LRU, reopened from path) */
    uint64_t used;    /* LRU tick */
    pthread_mutex_t use;
} entry;

typedef struct fetch_thread {
    struct symbolizer *s;
    pthread_t thread;
    sym_fetcher fetcher; /* S6: this thread's download process */
    uint64_t counted;    /* of fetcher.started, in st.fetchers_started (under mu) */
} fetch_thread;

struct symbolizer {
    sym_options o;
    char *symbols_dir, *upload_dir, *fetcher_program;
    int have_urls;
    pthread_mutex_t mu;
    pthread_cond_t changed; /* a download finished (CLOCK_MONOTONIC) */
    pthread_cond_t work;    /* the download threads wait here */
    entry *buckets[SYM_BUCKETS];
    size_t nentries;
    entry *qhead, *qtail;
    struct fetch_thread *threads;
    uint32_t nthreads;
    int stopping;
    uint64_t tick;
    uint64_t arrivals; /* under mu: debug files downloaded or uploaded since open (sym_arrivals) */
    uint64_t open;
    uint32_t fetching; /* downloads running now */
    sym_stats st;      /* under mu, except elf_lookups (atomic) */
};

int64_t sym_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Lowercase hex of an even length between 2 and 2 * SYM_BUILD_ID_MAX; 0 when it is not one. */
static int normalise_id(const char *in, char *out)
{
    size_t n = 0;
    for (; in[n]; n++) {
        if (n >= 2 * SYM_BUILD_ID_MAX)
            return 0;
        char c = in[n];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        out[n] = c;
    }
    out[n] = 0;
    return n >= 2 && n % 2 == 0;
}

static size_t bucket_of(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *id; id++)
        h = (h ^ (uint8_t)*id) * 1099511628211ULL;
    return (size_t)(h % SYM_BUCKETS);
}

/* Under mu. NULL when the registry is full (S5) or out of memory. */
static entry *find_or_add(symbolizer *s, const char *id)
{
    size_t b = bucket_of(id);
    for (entry *e = s->buckets[b]; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    if (s->nentries >= SYM_MAX_ENTRIES)
        return NULL;
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    strcpy(e->id, id);
    pthread_mutex_init(&e->use, NULL);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->nentries++;
    s->st.build_ids = s->nentries;
    return e;
}

/* ---- local directories --------------------------------------------------------------------------
 */

/* <dir>/.build-id/<xx>/<rest>[.debug] */
static char *local_path(const char *dir, const char *id, int debug_suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s/.build-id/%.2s/%s%s", dir, id, id + 2, debug_suffix ? ".debug" : "") < 0)
        return NULL;
    return p;
}

/* Tries the local directories; on success the entry's path and open file are set. Called
 * without mu (opening a file takes time), with the entry in E_OPENING so nobody else does. */
static int open_local(symbolizer *s, entry *e)
{
    const char *dirs[2] = {s->symbols_dir, s->upload_dir};
    for (int i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        for (int suffix = 1; suffix >= 0; suffix--) {
            char *path = local_path(dirs[i], e->id, suffix);
            if (!path)
                return 0;
            sp_err err = {0};
            debugfile *df = NULL;
            int rc = debugfile_open(&df, path, e->id, s->o.max_file_bytes, &err);
            if (rc == 0) {
                pthread_mutex_lock(&e->use);
                free(e->path);
                debugfile_close(e->df);
                e->path = path;
                e->df = df;
                pthread_mutex_unlock(&e->use);
                return 1;
            }
            if (rc != SP_ENOTFOUND) {
                static sp_ratelimit rl;
                uint64_t held = 0;
                if (sp_ratelimit_ok(&rl, 10000, &held))
                    sp_warn("symbolizer: %s (skipped; %llu such messages held back)", err.msg,
                            (unsigned long long)held);
            }
            free(path);
        }
    }
    return 0;
}

/* ---- the least recently used open files ---------------------------------------------------------
 */

/* Under mu: closes open files past the limit, least recently used first (S4). */
static void close_lru(symbolizer *s, entry *keep)
{
    while (s->open > s->o.open_files) {
        entry *victim = NULL;
        for (size_t b = 0; b < SYM_BUCKETS; b++)
            for (entry *e = s->buckets[b]; e; e = e->next)
                if (e->df && e != keep && (!victim || e->used < victim->used))
                    victim = e;
        if (!victim || pthread_mutex_trylock(&victim->use) != 0)
            return; /* in use: closed next time */
        debugfile_close(victim->df);
        victim->df = NULL;
        s->open--;
        pthread_mutex_unlock(&victim->use);
    }
}

/* ---- downloads ----------------------------------------------------------------------------------
 */

/* What a failed download's log line says. */
static const char *fetch_reason(int rc)
{
    switch (rc) {
    case -ETIME:
        return "over the time limit";
    case -EFBIG:
        return "over the size limit";
    case -ECANCELED:
        return "closing";
    case -ECHILD:
        return "the download process could not start, or ended";
    default:
        return strerror(-rc);
    }
}

/* Under mu: a download's outcome counted. */
static void count_miss(symbolizer *s, int rc)
{
    if (rc == -ETIME)
        s->st.fetch_timeout++;
    else if (rc == -ENOENT)
        s->st.fetch_not_found++;
    else
        s->st.fetch_failed++;
}

/* One download (S6: in the thread's child process); returns with the entry's path and file set
 * on success. */
static void fetch_one(symbolizer *s, fetch_thread *t, entry *e)
{
    char *path = NULL;
    int rc = sym_fetch(&t->fetcher, e->id, &s->stopping, &path);
    debugfile *df = NULL;
    sp_err err = {0};
    int found = 0;
    if (rc == 0) {
        found = debugfile_open(&df, path, e->id, s->o.max_file_bytes, &err) == 0;
        if (!found)
            sp_warn("symbolizer: the debug file downloaded for %s is not usable: %s", e->id,
                    err.msg);
    } else if (rc != -ENOENT) {
        static sp_ratelimit rl;
        uint64_t held = 0;
        if (sp_ratelimit_ok(&rl, 10000, &held))
            sp_warn("symbolizer: downloading the debug file of %s from debuginfod failed: %s "
                    "(retried in %lld s; %llu such messages held back)",
                    e->id, fetch_reason(rc), (long long)(s->o.retry_ns / 1000000000),
                    (unsigned long long)held);
    }
    pthread_mutex_lock(&e->use);
    if (found) {
        free(e->path);
        debugfile_close(e->df);
        e->path = path;
        path = NULL;
        e->df = df;
    }
    pthread_mutex_lock(&s->mu);
    pthread_mutex_unlock(&e->use);
    if (found) {
        e->used = ++s->tick;
        e->state = E_READY;
        s->open++;
        s->st.fetch_found++;
        s->arrivals++;
        close_lru(s, e);
    } else {
        e->state = E_MISSING;
        e->retry_at = sym_now_ns() + s->o.retry_ns;
        count_miss(s, rc == 0 ? -EINVAL : rc);
    }
    s->st.fetchers_started += t->fetcher.started - t->counted;
    t->counted = t->fetcher.started;
    s->fetching--;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->mu);
    free(path);
}

static void *fetch_main(void *arg)
{
    fetch_thread *t = arg;
    symbolizer *s = t->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->qhead && !s->stopping)
            pthread_cond_wait(&s->work, &s->mu);
        if (s->stopping)
            break;
        entry *e = s->qhead;
        s->qhead = e->qnext;
        if (!s->qhead)
            s->qtail = NULL;
        e->state = E_FETCHING;
        s->fetching++;
        pthread_mutex_unlock(&s->mu);
        fetch_one(s, t, e);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    sym_fetcher_stop(&t->fetcher);
    return NULL;
}

/* ---- lookups ------------------------------------------------------------------------------------
 */

/* Under mu: what happens to an entry nobody looked for yet, or whose retry time came: the local
 * directories first (without mu), then a download. Returns with mu held. */
static void discover(symbolizer *s, entry *e)
{
    e->state = E_OPENING;
    pthread_mutex_unlock(&s->mu);
    int local = open_local(s, e);
    pthread_mutex_lock(&s->mu);
    if (local) {
        e->state = E_READY;
        e->used = ++s->tick;
        s->open++;
        s->st.local_found++;
        close_lru(s, e);
    } else if (s->have_urls && s->nthreads) {
        e->state = E_QUEUED;
        e->qnext = NULL;
        if (s->qtail)
            s->qtail->qnext = e;
        else
            s->qhead = e;
        s->qtail = e;
        pthread_cond_signal(&s->work);
    } else {
        e->state = E_MISSING;
        e->retry_at = sym_now_ns() + s->o.retry_ns;
    }
    pthread_cond_broadcast(&s->changed);
}

/* Under mu: waits for the entry to be ready or missing, at most until the deadline (S2).
 * Returns 1 when ready. */
static int wait_ready(symbolizer *s, entry *e, int64_t deadline)
{
    for (;;) {
        int64_t now = sym_now_ns();
        if (e->state == E_READY)
            return 1;
        if (e->state == E_UNKNOWN || (e->state == E_MISSING && now >= e->retry_at)) {
            discover(s, e);
            continue;
        }
        if (e->state == E_MISSING || now >= deadline)
            return 0;
        struct timespec until = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
        pthread_cond_timedwait(&s->changed, &s->mu, &until);
    }
}

int sym_lookup(symbolizer *s, const char *build_id, uint64_t address, int64_t deadline_ns,
               sp_arena *a, sym_frame **frames, size_t *n)
{
    *frames = NULL;
    *n = 0;
    char id[2 * SYM_BUILD_ID_MAX + 1];
    if (!build_id || !normalise_id(build_id, id))
        return SYM_NONE;
    pthread_mutex_lock(&s->mu);
    entry *e = find_or_add(s, id);
    if (!e || !wait_ready(s, e, deadline_ns)) {
        pthread_mutex_unlock(&s->mu);
        return SYM_LATER;
    }
    e->used = ++s->tick;
    pthread_mutex_unlock(&s->mu);

    pthread_mutex_lock(&e->use);
    int opened = 0;
    if (!e->path) { /* looked for again meanwhile */
        pthread_mutex_unlock(&e->use);
        return SYM_LATER;
    }
    if (!e->df) {
        sp_err err = {0};
        if (debugfile_open(&e->df, e->path, e->id, s->o.max_file_bytes, &err) != 0) {
            sp_warn("symbolizer: %s (the debug file of %s went away; looked for again)", err.msg,
                    e->id);
            pthread_mutex_lock(&s->mu);
            free(e->path);
            e->path = NULL;
            e->state = E_UNKNOWN;
            pthread_mutex_unlock(&s->mu);
            pthread_mutex_unlock(&e->use);
            return SYM_LATER;
        }
        opened = 1;
    }
    int rc = debugfile_lookup(e->df, address, a, frames, n);
    __atomic_add_fetch(&s->st.elf_lookups, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&e->use);
    if (opened) {
        pthread_mutex_lock(&s->mu);
        s->open++;
        close_lru(s, e);
        pthread_mutex_unlock(&s->mu);
    }
    if (rc)
        return rc;
    return *n ? SYM_FOUND : SYM_NONE;
}

uint64_t sym_arrivals(symbolizer *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->arrivals;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int sym_wait(symbolizer *s, int64_t deadline_ns, uint64_t since)
{
    pthread_mutex_lock(&s->mu);
    while ((s->qhead || s->fetching) && sym_now_ns() < deadline_ns) {
        struct timespec until = {(time_t)(deadline_ns / 1000000000),
                                 (long)(deadline_ns % 1000000000)};
        pthread_cond_timedwait(&s->changed, &s->mu, &until);
    }
    /* Counted from the caller's `since`, not from this call: a download that ended between the
     * caller's lookups and this wait arrived for it too (counting from the wait's start once
     * returned a half-named answer when a small file came back before the wait began). */
    int arrived = s->arrivals > since;
    pthread_mutex_unlock(&s->mu);
    return arrived;
}

/* ---- uploads ------------------------------------------------------------------------------------
 */

static int mkdirs(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return -1;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int sym_add_file(symbolizer *s, const char *build_id, const void *data, size_t len, sp_err *err)
{
    char id[2 * SYM_BUILD_ID_MAX + 1];
    if (!build_id || !normalise_id(build_id, id))
        return sp_fail(err, SP_EINVAL,
                       "the build id must be hex digits of an even length up to %d, not \"%.80s\"",
                       2 * SYM_BUILD_ID_MAX, build_id ? build_id : "");
    if (!s->upload_dir)
        return sp_fail(err, SP_EUNAVAIL, "this server keeps no uploaded debug files");
    if (len > s->o.max_file_bytes)
        return sp_fail(err, SP_ETOOBIG, "the debug file is %zu bytes, over the limit of %llu", len,
                       (unsigned long long)s->o.max_file_bytes);
    debugfile *df = NULL;
    int rc = debugfile_open_memory(&df, data, len, id, err);
    if (rc)
        return rc == SP_ENOMEM ? rc : SP_EINVAL;
    debugfile_close(df);
    char *final = local_path(s->upload_dir, id, 1), *tmp = NULL, *dir = NULL;
    if (!final || asprintf(&tmp, "%s.upload.XXXXXX", final) < 0 ||
        asprintf(&dir, "%s/.build-id/%.2s", s->upload_dir, id) < 0) {
        free(final), free(tmp), free(dir);
        return sp_fail(err, SP_ENOMEM, "out of memory keeping a debug file");
    }
    int fd = mkdirs(dir) == 0 ? mkstemp(tmp) : -1;
    int ok = fd >= 0 && write_all(fd, data, len) == 0 && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    ok = ok && rename(tmp, final) == 0;
    if (!ok) {
        rc = sp_fail(err, SP_EUNAVAIL, "cannot keep the debug file at %s: %s", final,
                     strerror(errno));
        unlink(tmp);
    }
    free(final), free(tmp), free(dir);
    if (rc)
        return rc;
    /* Whatever was known about this build id is looked for again. */
    pthread_mutex_lock(&s->mu);
    entry *e = find_or_add(s, id);
    if (e && e->state == E_MISSING)
        e->state = E_UNKNOWN;
    s->arrivals++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- opening and closing ------------------------------------------------------------------------
 */

/* One of libdebuginfod's cache settings files (a number of seconds); kept as it is unless
 * `replace`. */
static void write_setting(const char *dir, const char *name, long long value, int replace)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return;
    if (replace || access(path, F_OK) != 0) {
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%lld", value);
            fclose(f);
        }
    }
    free(path);
}

/* libdebuginfod is configured by environment variables it reads on each download. */
static int configure_debuginfod(symbolizer *s, sp_err *err)
{
    if (s->o.debuginfod_urls) {
        if (*s->o.debuginfod_urls)
            setenv(DEBUGINFOD_URLS_ENV_VAR, s->o.debuginfod_urls, 1);
        else
            unsetenv(DEBUGINFOD_URLS_ENV_VAR);
    }
    const char *urls = getenv(DEBUGINFOD_URLS_ENV_VAR);
    s->have_urls = urls && *urls;
    if (!s->have_urls)
        return 0;
    char num[32];
    snprintf(num, sizeof num, "%lld",
             (long long)((s->o.fetch_timeout_ns + 999999999) / 1000000000));
    setenv(DEBUGINFOD_TIMEOUT_ENV_VAR, num, 1);
    /* The whole-download time and size limits are the progress callback's (S3), not
     * DEBUGINFOD_MAXTIME/MAXSIZE: with those set, libdebuginfod 0.188 reports them with
     * dprintf() to its verbose fd even when that is -1, and glibc leaks the buffer. */
    unsetenv(DEBUGINFOD_MAXTIME_ENV_VAR);
    unsetenv(DEBUGINFOD_MAXSIZE_ENV_VAR);
    if (!s->o.cache_dir)
        return 0;
    if (mkdirs(s->o.cache_dir) != 0)
        return sp_fail(err, SP_EINVAL, "cannot create the debuginfod cache directory %s: %s",
                       s->o.cache_dir, strerror(errno));
    setenv(DEBUGINFOD_CACHE_PATH_ENV_VAR, s->o.cache_dir, 1);
    /* libdebuginfod remembers a 404 for cache_miss_s seconds: make that our retry time. Its
     * other two settings get their defaults written here when missing (libdebuginfod writes
     * them with dprintf() otherwise). */
    long long secs = s->o.retry_ns / 1000000000;
    write_setting(s->o.cache_dir, "cache_miss_s", secs > 0 ? secs : 0, 1);
    write_setting(s->o.cache_dir, "cache_clean_interval_s", 86400, 0);
    write_setting(s->o.cache_dir, "max_unused_age_s", 604800, 0);
    return 0;
}

int sym_open(symbolizer **out, const sym_options *o, sp_err *err)
{
    *out = NULL;
    symbolizer *s = calloc(1, sizeof *s);
    if (!s)
        return sp_fail(err, SP_ENOMEM, "out of memory opening the symbolizer");
    s->o = *o;
    if (!s->o.fetch_timeout_ns)
        s->o.fetch_timeout_ns = 30LL * 1000000000;
    if (!s->o.max_file_bytes)
        s->o.max_file_bytes = 2ULL << 30;
    if (!s->o.fetchers)
        s->o.fetchers = 2;
    if (!s->o.retry_ns)
        s->o.retry_ns = 300LL * 1000000000;
    if (!s->o.open_files)
        s->o.open_files = 64;
    s->symbols_dir = o->symbols_dir && *o->symbols_dir ? strdup(o->symbols_dir) : NULL;
    s->upload_dir = o->upload_dir && *o->upload_dir ? strdup(o->upload_dir) : NULL;
    s->fetcher_program = o->fetcher_program ? strdup(o->fetcher_program) : NULL;
    s->o.symbols_dir = s->o.upload_dir = s->o.fetcher_program = NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->changed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->work, NULL);
    struct stat st;
    if (s->symbols_dir && (stat(s->symbols_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        int rc = sp_fail(err, SP_EINVAL, "--symbols-dir %s is not a directory", s->symbols_dir);
        sym_close(s);
        return rc;
    }
    if (s->upload_dir && mkdirs(s->upload_dir) != 0) {
        int rc = sp_fail(err, SP_EINVAL, "cannot create the debug file directory %s: %s",
                         s->upload_dir, strerror(errno));
        sym_close(s);
        return rc;
    }
    int rc = configure_debuginfod(s, err);
    if (rc) {
        sym_close(s);
        return rc;
    }
    s->o.debuginfod_urls = s->o.cache_dir = NULL; /* not kept: the caller owns them */
    if (s->have_urls && !s->fetcher_program) {
        sym_close(s);
        return sp_fail(err, SP_EINVAL,
                       "debuginfod downloads need a program to run them in (fetcher_program)");
    }
    if (s->have_urls) {
        s->threads = calloc(s->o.fetchers, sizeof *s->threads);
        for (uint32_t i = 0; s->threads && i < s->o.fetchers; i++) {
            fetch_thread *t = &s->threads[i];
            t->s = s;
            sym_fetcher_init(&t->fetcher, s->fetcher_program, s->o.fetch_timeout_ns,
                             s->o.max_file_bytes);
            if (pthread_create(&t->thread, NULL, fetch_main, t) != 0)
                break;
            s->nthreads++;
        }
        if (!s->nthreads) {
            sym_close(s);
            return sp_fail(err, SP_ENOMEM, "cannot start the debuginfod download threads");
        }
    }
    *out = s;
    return 0;
}

void sym_close(symbolizer *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i].thread, NULL);
    free(s->threads);
    for (size_t b = 0; b < SYM_BUCKETS; b++) {
        entry *e = s->buckets[b];
        while (e) {
            entry *next = e->next;
            debugfile_close(e->df);
            free(e->path);
            pthread_mutex_destroy(&e->use);
            free(e);
            e = next;
        }
    }
    pthread_cond_destroy(&s->changed);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free(s->symbols_dir);
    free(s->upload_dir);
    free(s->fetcher_program);
    free(s);
}

void sym_stats_get(symbolizer *s, sym_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->files_open = s->open;
    out->build_ids = s->nentries;
    pthread_mutex_unlock(&s->mu);
    out->elf_lookups = __atomic_load_n(&s->st.elf_lookups, __ATOMIC_RELAXED);
}
