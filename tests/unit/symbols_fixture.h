/* Fixture of the unit tests that name native frames through the store's symbolizer seam
 * (test_store_symbols.c, test_store_name_cache.c): a SQLite store on a temp dir whose
 * store_symbolizer is a script that counts its calls. The script is the oracle: what it answers
 * is what an answer must show.
 *
 * The script: 0x1000 names two frames (an inlined callee first), 0x2000 one, 0x3000 nothing
 * (STORE_SYM_NONE, final), anything else is not known yet (STORE_SYM_LATER). `later` answers
 * LATER to everything; `arrive_after` = N plays a debug file arriving during a query: the first
 * N calls answer LATER, and the file has arrived (counted in `arrivals`, which the seam's wait
 * and arrivals read) when the Nth returns. Include after cmocka.h. */
#ifndef SPANPROF_TEST_SYMBOLS_FIXTURE_H
#define SPANPROF_TEST_SYMBOLS_FIXTURE_H

#include "storage-adapter/store.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SEC 1000000000LL
#define CPU "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define BID "b0c3b6756a70e544f9e2574fc7248eac55fdcafa"

typedef struct script {
    pthread_mutex_t mu;
    int calls;
    int later;
    int arrive_after;
    uint64_t arrivals;
    int waits;
    char last_build_id[128];
    uint64_t addrs[64]; /* the first 64 addresses asked for, in order */
} script;

static inline int scripted(void *ctx, const char *build_id, uint64_t address, int64_t deadline_ns,
                           sp_arena *a, store_sym_frame **frames, size_t *n)
{
    script *s = ctx;
    (void)deadline_ns;
    pthread_mutex_lock(&s->mu);
    if (s->calls < 64)
        s->addrs[s->calls] = address;
    s->calls++;
    snprintf(s->last_build_id, sizeof s->last_build_id, "%s", build_id);
    int later = s->later || s->calls <= s->arrive_after;
    if (s->calls == s->arrive_after)
        s->arrivals++;
    pthread_mutex_unlock(&s->mu);
    *frames = NULL;
    *n = 0;
    if (later || address > 0x3000 || address % 0x1000)
        return STORE_SYM_LATER;
    if (address == 0x3000)
        return STORE_SYM_NONE;
    store_sym_frame *f = sp_arena_calloc(a, 2, sizeof *f);
    if (address == 0x1000) {
        f[0] = (store_sym_frame){"twice", "/src/p.cc", 3, 3};
        f[1] = (store_sym_frame){"work(double)", "/src/p.cc", 4, 4};
        *n = 2;
    } else {
        f[0] = (store_sym_frame){"shapes::Circle::area() const", "/src/p.cc", 2, 2};
        *n = 1;
    }
    *frames = f;
    return STORE_SYM_FOUND;
}

/* The seam's wait as store.h states it: nothing downloads here, so it returns at once, > 0 when
 * a file arrived after `since`. */
static inline int scripted_wait(void *ctx, int64_t deadline_ns, uint64_t since)
{
    script *s = ctx;
    (void)deadline_ns;
    pthread_mutex_lock(&s->mu);
    s->waits++;
    int arrived = s->arrivals > since;
    pthread_mutex_unlock(&s->mu);
    return arrived;
}

static inline uint64_t scripted_arrivals(void *ctx)
{
    script *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->arrivals;
    pthread_mutex_unlock(&s->mu);
    return n;
}

typedef struct fx {
    char dir[64];
    store *s;
    script sc;
    store_symbolizer seam;
    sp_arena *a;   /* answers */
    int64_t t0;    /* "now" less ten minutes, on a bucket boundary */
    size_t budget; /* store_options.name_cache_bytes; 0 = the default */
} fx;

static inline int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static inline void open_store(fx *f)
{
    store_options o = {0};
    o.data_dir = f->dir;
    o.retention_interval_ns = -1; /* retention runs by hand */
    o.symbolizer = &f->seam;
    o.name_cache_bytes = f->budget;
    sp_err err = {0};
    if (store_open_sqlite(&f->s, &o, &err))
        fail_msg("open: %s", err.msg);
}

static inline void reopen(fx *f)
{
    store_close(f->s);
    open_store(f);
}

static inline int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_symbols_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    pthread_mutex_init(&f->sc.mu, NULL);
    f->seam = (store_symbolizer){scripted, &f->sc, 0, scripted_wait, scripted_arrivals};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    f->t0 = ((int64_t)ts.tv_sec - 600) / 10 * 10 * SEC;
    f->a = sp_arena_new(0);
    open_store(f);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fx *f = *state;
    store_close(f->s);
    sp_arena_free(f->a);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&f->sc.mu);
    free(f);
    return 0;
}

#endif
