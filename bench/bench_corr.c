/* bench_corr: correlation throughput with a full span window.
 *
 * Fills the correlator with `spans` live spans (default 100 000): processes × threads, each
 * thread a sequence of requests (a root span with two nested children, 20–200 ms), a tenth of
 * the processes recording no thread.id (threadless chains). Then feeds CPU profiles the way the
 * eBPF profiler does (1–3 timestamps per sample, stacks of 20–60 frames from a 4 000-function
 * dictionary shared by the request, 10% with explicit links) and
 * times corr_attach on them in three orders:
 *   spans-first   samples arrive after their spans (inference against the full window)
 *   samples-first samples arrive first and wait; the spans' arrival claims them (late path)
 *   links         samples carrying explicit links, ancestors walked through the registry
 * Prints observations matched per CPU second (thread CPU time, so a busy machine does not skew
 * it) and memory held. Nothing touches disk.
 *
 *   bench_corr [spans] [samples-per-batch] [batches]
 */
#include "common/arena.h"
#include "correlator/correlator.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS 1000000LL

/* CPU time of this thread: other processes on a shared machine do not distort it. */
#define now_s bench_thread_cpu_s

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n)
{
    return (uint32_t)(bench_xorshift64(&rng) % n);
}

typedef struct world {
    sp_span *spans;
    size_t nspans;
    int nprocs, nthreads;
    int64_t t0, t1; /* the time the spans cover */
} world;

static void put_id(uint8_t *dst, size_t n, uint64_t v)
{
    memset(dst, 0, n);
    for (int i = 0; i < 8; i++)
        dst[n - 1 - i] = (uint8_t)(v >> (8 * i));
}

static world make_world(size_t want)
{
    world w = {0};
    w.nthreads = 16;
    w.nprocs = (int)(want / 3 / 16 / 40) + 1; /* 40 requests per thread */
    w.spans = calloc(want + 64, sizeof *w.spans);
    w.t0 = 1700000000000LL * MS;
    uint64_t id = 1;
    int64_t tmax = w.t0;
    for (int p = 0; p < w.nprocs && w.nspans + 3 <= want; p++) {
        int threadless = p % 10 == 9;
        for (int t = 0; t < w.nthreads && w.nspans + 3 <= want; t++) {
            int64_t at = w.t0 + rnd(50) * MS;
            for (int r = 0; r < 40 && w.nspans + 3 <= want; r++) {
                int64_t dur = (20 + rnd(180)) * MS;
                uint64_t trace = id;
                for (int k = 0; k < 3; k++) {
                    sp_span *s = &w.spans[w.nspans++];
                    put_id(s->trace_id, 16, trace);
                    put_id(s->span_id, 8, id++);
                    if (k)
                        put_id(s->parent_span_id, 8, id - 2);
                    s->service = "bench";
                    s->name = "op";
                    int64_t start = at + k * dur / 5, end = at + dur - k * dur / 5;
                    s->start_ns = (uint64_t)start;
                    s->end_ns = (uint64_t)end;
                    s->pid = 1000 + p;
                    s->tid = threadless ? 0 : 10000 + p * 100 + t;
                }
                at += dur + rnd(20) * MS;
            }
            if (at > tmax)
                tmax = at;
        }
    }
    w.t1 = tmax;
    return w;
}

/* The request's dictionary, as the eBPF profiler's: 4 000 functions (one location each, one
 * line), 2 000 distinct stacks of 20–60 frames walked down a call tree, shared by every sample
 * of the request (the converter hands out one location list per stack). */
#define NFUNC  4000
#define NSTACK 2000

typedef struct dict {
    const char **strings;
    sp_function *functions;
    sp_location *locations;
    sp_line *lines;
    uint32_t *stacks[NSTACK];
    uint32_t depth[NSTACK];
} dict;

static dict make_dict(void)
{
    dict d;
    d.strings = calloc(NFUNC + 8, sizeof *d.strings);
    d.functions = calloc(NFUNC + 1, sizeof *d.functions);
    d.locations = calloc(NFUNC + 1, sizeof *d.locations);
    d.lines = calloc(NFUNC + 1, sizeof *d.lines);
    d.strings[0] = "";
    d.strings[1] = "cpu";
    d.strings[2] = "nanoseconds";
    for (uint32_t i = 1; i <= NFUNC; i++) {
        char name[64];
        snprintf(name, sizeof name, "github.com/acme/shop/internal/pkg%u.(*Handler).Step%u", i % 97,
                 i);
        d.strings[2 + i] = strdup(name);
        d.functions[i].name = 2 + i;
        d.lines[i].function_id = i;
        d.locations[i].lines = &d.lines[i];
        d.locations[i].nlines = 1;
    }
    for (uint32_t k = 0; k < NSTACK; k++) {
        uint32_t depth = 20 + rnd(41);
        d.stacks[k] = calloc(depth, sizeof **d.stacks);
        uint32_t f = 1 + rnd(50);
        for (uint32_t j = depth; j-- > 0;) { /* root last: leaf first in pprof */
            d.stacks[k][j] = f;
            f = 1 + (f * 31 + rnd(8)) % NFUNC;
        }
        d.depth[k] = depth;
    }
    return d;
}

static void free_dict(dict *d)
{
    for (uint32_t i = 1; i <= NFUNC; i++)
        free((char *)d->strings[2 + i]);
    for (uint32_t k = 0; k < NSTACK; k++)
        free(d->stacks[k]);
    free(d->strings);
    free(d->functions);
    free(d->locations);
    free(d->lines);
}

/* One eBPF-like CPU profile of n samples at random threads and times of the world; off-CPU
 * (offcpu set): each observation an interval of 1-50 ms ending at its timestamp. */
static int offcpu_mode;
static int new_frames_mode; /* 2 % of each profile's samples on a leaf never seen before */

static sp_profile *make_profile(sp_arena *a, const world *w, const dict *d, uint32_t n, int links)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    p->name = "process_cpu";
    p->strings = d->strings;
    p->nstrings = NFUNC + 3;
    p->sample_type = p->period_type = 1;
    p->sample_unit = p->period_unit = 2;
    p->nfunctions = p->nlocations = NFUNC + 1;
    p->functions = d->functions;
    p->locations = d->locations;
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    static sp_kv series[] = {{"__name__", "process_cpu"}, {"service_name", "bench"}};
    p->series = series;
    p->nseries = 2;
    if (offcpu_mode) {
        p->type_id = "off_cpu:off_cpu:nanoseconds::";
        p->name = "off_cpu";
    }
    uint32_t nnew = new_frames_mode ? n / 50 + 1 : 0; /* 2 % of the samples: a never-seen leaf */
    if (nnew) {
        const char **strs = sp_arena_alloc(a, (NFUNC + 3 + nnew) * sizeof *strs);
        sp_function *fns = sp_arena_calloc(a, NFUNC + 1 + nnew, sizeof *fns);
        sp_location *locs = sp_arena_calloc(a, NFUNC + 1 + nnew, sizeof *locs);
        sp_line *lines = sp_arena_calloc(a, nnew, sizeof *lines);
        memcpy(strs, d->strings, (NFUNC + 3) * sizeof *strs);
        memcpy(fns, d->functions, (NFUNC + 1) * sizeof *fns);
        memcpy(locs, d->locations, (NFUNC + 1) * sizeof *locs);
        for (uint32_t j = 0; j < nnew; j++) {
            static uint64_t fresh;
            char *name = sp_arena_alloc(a, 48);
            snprintf(name, 48, "jit.compiled.fn%llu", (unsigned long long)++fresh);
            strs[NFUNC + 3 + j] = name;
            fns[NFUNC + 1 + j].name = NFUNC + 3 + j;
            lines[j].function_id = NFUNC + 1 + j;
            locs[NFUNC + 1 + j].lines = &lines[j];
            locs[NFUNC + 1 + j].nlines = 1;
        }
        p->strings = strs;
        p->nstrings = NFUNC + 3 + nnew;
        p->functions = fns;
        p->locations = locs;
        p->nfunctions = p->nlocations = NFUNC + 1 + nnew;
    }
    p->samples = sp_arena_calloc(a, n, sizeof *p->samples);
    p->nsamples = n;
    for (uint32_t i = 0; i < n; i++) {
        sp_sample *s = &p->samples[i];
        const sp_span *ref = &w->spans[rnd((uint32_t)w->nspans)];
        uint32_t k = rnd(NSTACK) * rnd(NSTACK) / NSTACK; /* a few hot stacks */
        s->location_ids = d->stacks[k];
        s->nlocations = d->depth[k];
        if (i < nnew) { /* the same stack under a leaf never seen before */
            uint32_t *st = sp_arena_alloc(a, (d->depth[k] + 1) * sizeof *st);
            st[0] = NFUNC + 1 + i;
            memcpy(st + 1, d->stacks[k], d->depth[k] * sizeof *st);
            s->location_ids = st;
            s->nlocations = d->depth[k] + 1;
        }
        s->nobs = 1 + rnd(3);
        s->timestamps = sp_arena_alloc(a, s->nobs * sizeof *s->timestamps);
        for (uint32_t j = 0; j < s->nobs; j++)
            s->timestamps[j] =
                ref->start_ns + rnd((uint32_t)((ref->end_ns - ref->start_ns) / MS)) * (uint64_t)MS;
        s->value = (int64_t)s->nobs * 50 * MS;
        if (offcpu_mode) {
            s->values = sp_arena_alloc(a, s->nobs * sizeof *s->values);
            s->value = 0;
            for (uint32_t j = 0; j < s->nobs; j++)
                s->value += s->values[j] = (1 + rnd(50)) * MS;
        }
        s->pid = ref->pid;
        s->tid = ref->tid ? ref->tid : 10000 + (ref->pid - 1000) * 100 + rnd(16);
        if (links && rnd(10) == 0) {
            s->has_link = 1;
            memcpy(s->link.span_id, ref->span_id, 8);
            memcpy(s->link.trace_id, ref->trace_id, 16);
        }
    }
    return p;
}

static void feed_spans(corr *c, const world *w, int64_t now)
{
    for (size_t i = 0; i < w->nspans; i += 512) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = {.tenant = "bench", .arena = a, .spans = w->spans + i};
        b.nspans = w->nspans - i < 512 ? w->nspans - i : 512;
        corr_attach(c, &b, now, NULL, NULL);
        sp_arena_free(a);
    }
}

/* Feeds `batches` profiles of n samples; returns observations fed. */
static double worst_call; /* the longest single corr_attach, CPU seconds */

static uint64_t feed_profiles(corr *c, const world *w, const dict *d, uint32_t n, int batches,
                              int links, int64_t now, double *secs)
{
    uint64_t obs = 0;
    *secs = 0;
    worst_call = 0;
    for (int i = 0; i < batches; i++) {
        sp_arena *a = sp_arena_new(0);
        sp_batch b = {.tenant = "bench", .arena = a};
        sp_profile *p = make_profile(a, w, d, n, links);
        for (uint32_t k = 0; k < p->nsamples; k++)
            obs += p->samples[k].nobs;
        sp_batch_add_profile(&b, p);
        double t = now_s();
        corr_attach(c, &b, now, NULL, NULL);
        double dt = now_s() - t;
        *secs += dt;
        if (dt > worst_call)
            worst_call = dt;
        sp_arena_free(a);
    }
    return obs;
}

static void report(const char *what, uint64_t obs, double secs, corr *c, int64_t now)
{
    corr_stats st;
    corr_get_stats(c, 0, &st);
    (void)now;
    printf("%-14s %9.0f observations/cpu-s  (%llu in %.3f s)  attached: link %llu thread %llu "
           "process-span %llu ambiguous %llu off-cpu %llu late %llu; spans in window %llu; %.1f "
           "MiB held\n",
           what, obs / secs, (unsigned long long)obs, secs, (unsigned long long)st.by_link,
           (unsigned long long)st.by_thread, (unsigned long long)st.by_process_span,
           (unsigned long long)st.ambiguous, (unsigned long long)st.offcpu_attached,
           (unsigned long long)st.late, (unsigned long long)st.spans_indexed, st.bytes / 1048576.0);
}

static int drop_batch(void *ud, sp_batch *b)
{
    (void)b;
    (*(uint64_t *)ud)++;
    return 0;
}

/* A live server's three minutes without spans (bench_ingest's load): `per` samples every
 * 100 ms, and once a second what the maintenance thread does (corr_expire, then corr_settle: rule
 * 3 for the observations whose settle time passed). Each of those calls holds the lock every
 * ingest worker waits for; printed: their mean and longest CPU time over the last half minute,
 * when the 2 min window is full and its oldest observations expire as new ones arrive. */
static void live_ticks(const world *w, const dict *d, uint32_t per, int64_t now)
{
    corr *c = corr_new(NULL); /* the server's defaults: 2 min window, 10 s settle */
    double settle_sum = 0, settle_max = 0, expire_sum = 0, expire_max = 0, attach_max = 0;
    int ticks = 0;
    for (int sec = 0; sec < 180; sec++) {
        for (int j = 0; j < 10; j++) {
            sp_arena *a = sp_arena_new(0);
            sp_batch b = {.tenant = "bench", .arena = a};
            sp_batch_add_profile(&b, make_profile(a, w, d, per, 0));
            double t = now_s();
            corr_attach(c, &b, now + (sec * 1000 + j * 100) * MS, NULL, NULL);
            t = now_s() - t;
            if (sec >= 150 && t > attach_max)
                attach_max = t;
            sp_arena_free(a);
        }
        int64_t tick = now + (sec + 1) * 1000 * MS;
        uint64_t emitted = 0;
        double t0 = now_s();
        corr_expire(c, tick);
        double t1 = now_s();
        corr_settle(c, tick, drop_batch, &emitted);
        double t2 = now_s();
        if (sec < 150)
            continue;
        ticks++;
        expire_sum += t1 - t0;
        settle_sum += t2 - t1;
        if (t1 - t0 > expire_max)
            expire_max = t1 - t0;
        if (t2 - t1 > settle_max)
            settle_max = t2 - t1;
    }
    corr_stats st;
    corr_get_stats(c, 0, &st);
    printf("%-14s settle pass %.2f ms mean, %.2f ms longest; expiry pass %.2f ms mean, %.2f ms "
           "longest (a second each); longest corr_attach %.2f ms (expiry that fell due in it "
           "included; %u samples); 150..180 s, %llu observations waiting, %.1f MiB held\n",
           "live ticks", settle_sum * 1e3 / ticks, settle_max * 1e3, expire_sum * 1e3 / ticks,
           expire_max * 1e3, attach_max * 1e3, per, (unsigned long long)st.obs_waiting,
           st.bytes / 1048576.0);
    corr_free(c);
}

int main(int argc, char **argv)
{
    size_t nspans = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    uint32_t per = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 10000;
    int batches = argc > 3 ? atoi(argv[3]) : 100;
    world w = make_world(nspans);
    dict d = make_dict();
    int64_t now = w.t1;
    printf("bench_corr: %zu spans (%d processes x %d threads), %d batches of %u samples\n",
           w.nspans, w.nprocs, w.nthreads, batches, per);

    corr_options o = {.window_ns = 3600000 * MS, .max_bytes = (size_t)1 << 30};
    corr *c = corr_new(&o);
    double t = now_s();
    feed_spans(c, &w, now);
    double span_secs = now_s() - t;
    printf("%-14s %9.0f spans/s\n", "index spans", w.nspans / span_secs);
    live_ticks(&w, &d, per / 4, now);
    double secs;
    uint64_t obs = feed_profiles(c, &w, &d, per, batches, 0, now, &secs);
    report("spans-first", obs, secs, c, now);
    /* rule 3 after its settle time: the threadless processes' observations waited; decided now */
    uint64_t emitted = 0;
    t = now_s();
    corr_settle(c, now + 11000 * MS, drop_batch, &emitted);
    double settle = now_s() - t;
    corr_stats st;
    corr_get_stats(c, 0, &st);
    printf("%-14s %9.3f s for the waiting threadless observations: process-span %llu ambiguous "
           "%llu (%llu batches)\n",
           "settle", settle, (unsigned long long)st.by_process_span,
           (unsigned long long)st.ambiguous, (unsigned long long)emitted);
    corr_free(c);

    c = corr_new(&o);
    feed_spans(c, &w, now);
    offcpu_mode = 1;
    obs = feed_profiles(c, &w, &d, per, batches, 0, now, &secs);
    offcpu_mode = 0;
    report("off-CPU", obs, secs, c, now);
    corr_free(c);

    c = corr_new(&o);
    obs = feed_profiles(c, &w, &d, per, batches, 0, now, &secs);
    t = now_s();
    feed_spans(c, &w, now);
    double claim = now_s() - t;
    report("samples-first", obs, secs + claim, c, now);
    printf("%-14s (of which %.3f s retaining samples, %.3f s claiming them as spans arrive)\n", "",
           secs, claim);
    corr_free(c);

    c = corr_new(&o);
    feed_spans(c, &w, now);
    obs = feed_profiles(c, &w, &d, per, batches, 1, now, &secs);
    report("links (10%)", obs, secs, c, now);
    corr_free(c);

    /* a 128 MiB budget (the default is 512 MiB): the window outgrows it and eviction runs
     * inside the calls */
    corr_options small = {.window_ns = 3600000 * MS, .max_bytes = (size_t)128 << 20};
    c = corr_new(&small);
    feed_spans(c, &w, now);
    obs = feed_profiles(c, &w, &d, per, batches * 2, 0, now, &secs);
    report("128 MiB budget", obs, secs, c, now);
    printf("%-14s (longest single call %.1f ms of CPU, evicting included)\n", "", worst_call * 1e3);
    corr_free(c);

    /* the same budget, no spans at all (every sample waits) and 2 % of the samples on frames
     * never seen before, as bench_ingest's load: the budget acts all run long and the intern
     * tables keep growing with what it drops */
    c = corr_new(&small);
    new_frames_mode = 1;
    obs = feed_profiles(c, &w, &d, per, batches * 4, 0, now, &secs);
    new_frames_mode = 0;
    report("no spans, new", obs, secs, c, now);
    printf("%-14s (longest single call %.1f ms of CPU, evicting included)\n", "", worst_call * 1e3);
    corr_free(c);
    free(w.spans);
    free_dict(&d);
    return 0;
}
