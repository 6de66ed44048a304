/* bench_query: query latency with a large store — a span's flame graph (SelectMergeSpanProfile)
 * among >= 1 million spans and >= 50 million attached observations, and a one-hour flame graph
 * of one service (SelectMergeStacktraces over a time range).
 *
 * The store is filled through the store interface (store_write(), as the ingest workers call it,
 * not over HTTP) so that the fill takes minutes: W threads each build batches of B spans and
 * their samples and write them. Every span runs on one service and gets `obs` observations
 * (per-sample timestamps) spread over a few stacks drawn with a Zipf law from its service's pool
 * of call paths (native, unsymbolized-like frames of one big binary, shared library frames and
 * a kernel path on a third of them), so the dictionary is large and stacks repeat as in a real
 * fleet. Spans are 20 ms - 2 s long, ten to a trace; batches advance in time, so the spans of the
 * fill cover `hours` hours ending now.
 *
 * Then it times span-profile queries for random spans (with no time range and with Grafana's
 * range, span time +- 30 s), checking each answer's total against what was written,
 * one-hour flame graphs of random services, and span sets through the query layer
 * (query/spanset.h): a trace's flame graph (trace_id_selector) and every span of a name
 * (span_name, per service and across services), each checked against the written totals. Prints
 * p50/p99/max, bytes on disk per stored observation, and the fill rate.
 *
 *   bench_query [--spans 1000000] [--obs 50] [--services 20] [--hours 2] [--batch 5000]
 *               [--writers 2] [--queries 2000] [--ranges 20] [--dir DIR] [--keep] [--seed N]
 *               [--reuse DIR]   (query an existing fill made with --keep and the same knobs)
 *
 * Disk: about 1.2 GB for the defaults (check `df -h /tmp`; --dir puts it elsewhere).
 */
#include "../query/stacks.h"
#include "../storage-adapter/store.h"
#include "bench_util.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC        1000000000LL
#define PERIOD_NS  10000000LL /* 100 Hz */
#define CPU_TYPE   "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define NLOCS      30000 /* locations of the shared dictionary */
#define NFUNCS     12000
#define PATHS      4000 /* call paths per service */
#define MAX_DEPTH  48
#define MAX_STACKS 8 /* distinct stacks per span */

static long nspans = 1000000, obs_per_span = 50, nservices = 20, hours = 2, batch_spans = 5000;
static int writers = 2, nqueries = 2000, nranges = 20, keep = 0;
static uint64_t seed = 42;
static const char *dir_arg = NULL, *reuse_dir = NULL;

/* ---- rng (per thread) ------------------------------------------------------------------------ */

/* ---- the shared dictionary ------------------------------------------------------------------- */

static const char **strs;
static uint32_t *str_lens;
static uint32_t nstrs;
static sp_function *funcs;
static sp_location *locs;
static sp_mapping *maps;
static sp_line *lines;

/* Per service: PATHS call paths (location lists, leaf first) and their Zipf CDF. */
typedef struct service {
    char name[32];
    uint32_t *paths[PATHS];
    uint32_t npath[PATHS];
    sp_kv series[2];
} service;
static service *svcs;
static double zipf_cdf[PATHS];

static uint32_t add_str(const char *s)
{
    strs[nstrs] = strdup(s);
    str_lens[nstrs] = (uint32_t)strlen(s);
    return nstrs++;
}

static void dict_init(void)
{
    uint64_t r = seed * 0x9e3779b97f4a7c15ULL + 7;
    strs = calloc(NFUNCS + 64, sizeof *strs);
    str_lens = calloc(NFUNCS + 64, sizeof *str_lens);
    add_str("");
    uint32_t native = add_str("native"), kernel = add_str("kernel");
    const char *files[] = {"/usr/bin/server", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                           "/usr/lib/x86_64-linux-gnu/libssl.so.3", "[kernel.kallsyms]"};
    maps = calloc(5, sizeof *maps);
    for (int i = 0; i < 4; i++)
        maps[i + 1].filename = add_str(files[i]);
    funcs = calloc(NFUNCS, sizeof *funcs);
    for (uint32_t f = 1; f < NFUNCS; f++) {
        char name[64];
        if (f % 10 == 0)
            snprintf(name, sizeof name, "kfunc_%u", f);
        else
            snprintf(name, sizeof name, "server::mod%u::fn%u", f % 97, f);
        funcs[f].name = add_str(name);
    }
    locs = calloc(NLOCS, sizeof *locs);
    lines = calloc(NLOCS, sizeof *lines);
    for (uint32_t l = 1; l < NLOCS; l++) {
        sp_location *L = &locs[l];
        int kind = l % 10 == 0 ? 3 : (l % 7 == 0 ? 1 + (int)(l % 2) : 0); /* kernel, libs, bin */
        L->mapping_id = (uint32_t)kind + 1;
        L->address = 0x400000 + (uint64_t)l * 48 + (bench_xorshift64star(&r) % 16);
        L->frame_type = kind == 3 ? kernel : native;
        /* Two thirds of the frames are symbolized (a line with a function), one third not. */
        if (l % 3) {
            lines[l].function_id = 1 + (uint32_t)(bench_xorshift64star(&r) % (NFUNCS - 1));
            lines[l].line = (int64_t)(bench_xorshift64star(&r) % 4000);
            L->lines = &lines[l];
            L->nlines = 1;
        }
    }
    double sum = 0;
    for (int i = 0; i < PATHS; i++)
        sum += 1.0 / pow(i + 1, 1.1);
    double acc = 0;
    for (int i = 0; i < PATHS; i++) {
        acc += 1.0 / pow(i + 1, 1.1) / sum;
        zipf_cdf[i] = acc;
    }
    svcs = calloc((size_t)nservices, sizeof *svcs);
    for (long s = 0; s < nservices; s++) {
        service *sv = &svcs[s];
        snprintf(sv->name, sizeof sv->name, "svc-%02ld", s);
        sv->series[0].name = "__name__";
        sv->series[0].value = "process_cpu";
        sv->series[1].name = "service_name";
        sv->series[1].value = sv->name;
        /* Paths share prefixes: each extends a random earlier one (a call tree). */
        for (int i = 0; i < PATHS; i++) {
            uint32_t buf[MAX_DEPTH];
            uint32_t n = 0;
            if (i > 8) {
                int parent = (int)(bench_xorshift64star(&r) % (uint64_t)i);
                uint32_t keep_n = sv->npath[parent] / 2 + (uint32_t)(bench_xorshift64star(&r) % 8);
                if (keep_n > sv->npath[parent])
                    keep_n = sv->npath[parent];
                /* paths are leaf first: the root part is the tail */
                for (uint32_t k = 0; k < keep_n; k++)
                    buf[k] = sv->paths[parent][sv->npath[parent] - keep_n + k];
                n = keep_n;
            }
            uint32_t depth = 16 + (uint32_t)(bench_xorshift64star(&r) % 32);
            uint32_t total = depth > n ? depth : n + 2;
            if (total > MAX_DEPTH)
                total = MAX_DEPTH;
            uint32_t *p = malloc(total * sizeof *p);
            uint32_t add = total - n;
            for (uint32_t k = 0; k < add; k++)
                p[k] =
                    1 + (uint32_t)((bench_xorshift64star(&r) + (uint64_t)s * 7919) % (NLOCS - 1));
            for (uint32_t k = 0; k < n; k++)
                p[add + k] = buf[k];
            sv->paths[i] = p;
            sv->npath[i] = total;
        }
    }
}

static int zipf_draw(uint64_t *r)
{
    double u = bench_unit(r);
    int lo = 0, hi = PATHS - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- spans ----------------------------------------------------------------------------------- */

static int64_t t_start, t_end; /* the fill's time range */
static int64_t *span_start;    /* per span index */
static int32_t *span_dur_ms;

static void span_id_of(long idx, uint8_t out[8])
{
    uint64_t v = (uint64_t)(idx + 1) * 0x9e3779b97f4a7c15ULL; /* bijective: ids unique */
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

static int service_of(long idx)
{
    return (int)((uint64_t)(idx / 10) * 0x9e3779b97f4a7c15ULL >> 40) % (int)nservices;
}

/* The fill's span times end at t_end_s (UTC seconds): now for a new fill, the fill's own for
 * --reuse (saved beside it), so the spans queried are those stored. */
static void spans_init(int64_t t_end_s)
{
    t_end = t_end_s * SEC;
    t_start = t_end - hours * 3600 * SEC;
    span_start = malloc((size_t)nspans * sizeof *span_start);
    span_dur_ms = malloc((size_t)nspans * sizeof *span_dur_ms);
    uint64_t r = seed + 99;
    double step = (double)(t_end - t_start - 3 * SEC) / (double)nspans;
    for (long i = 0; i < nspans; i++) {
        span_start[i] =
            t_start + (int64_t)(step * (double)i) + (int64_t)(bench_xorshift64star(&r) % SEC);
        span_dur_ms[i] = 20 + (int32_t)(bench_xorshift64star(&r) % 1980);
    }
}

/* ---- fill ------------------------------------------------------------------------------------ */

static store *the_store;
static long next_batch;
static pthread_mutex_t next_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t obs_written;
static int failures;

static void *fill_main(void *arg)
{
    (void)arg;
    long nbatches = (nspans + batch_spans - 1) / batch_spans;
    for (;;) {
        pthread_mutex_lock(&next_mu);
        long k = next_batch++;
        pthread_mutex_unlock(&next_mu);
        if (k >= nbatches)
            return NULL;
        uint64_t r = seed * 1000003 + (uint64_t)k * 0x9e3779b97f4a7c15ULL + 1;
        sp_arena *a = sp_arena_new(0);
        long s0 = k * batch_spans, s1 = s0 + batch_spans < nspans ? s0 + batch_spans : nspans;
        sp_batch b = {0};
        b.tenant = "bench";
        b.arena = a;
        b.nprofiles = (size_t)nservices;
        b.profiles = sp_arena_calloc(a, b.nprofiles, sizeof *b.profiles);
        uint32_t *count = calloc((size_t)nservices, sizeof *count);
        for (long i = s0; i < s1; i++)
            count[service_of(i)] += MAX_STACKS;
        for (long s = 0; s < nservices; s++) {
            sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
            p->type_id = CPU_TYPE;
            p->name = "process_cpu";
            p->period = PERIOD_NS;
            p->time_nanos = span_start[s0];
            p->duration_nanos = span_start[s1 - 1] - span_start[s0] + 2 * SEC;
            p->strings = strs;
            p->string_lens = str_lens;
            p->nstrings = nstrs;
            p->functions = funcs;
            p->nfunctions = NFUNCS;
            p->locations = locs;
            p->nlocations = NLOCS;
            p->mappings = maps;
            p->nmappings = 5;
            p->series = svcs[s].series;
            p->nseries = 2;
            p->samples = sp_arena_calloc(a, count[s] ? count[s] : 1, sizeof *p->samples);
            b.profiles[s] = p;
        }
        b.nspans = (size_t)(s1 - s0);
        b.spans = sp_arena_calloc(a, b.nspans, sizeof *b.spans);
        for (long i = s0; i < s1; i++) {
            int s = service_of(i);
            sp_profile *p = b.profiles[s];
            sp_span *sp = &b.spans[i - s0];
            span_id_of(i, sp->span_id);
            uint64_t tr = (uint64_t)(i / 10 + 1) * 0xbf58476d1ce4e5b9ULL;
            memcpy(sp->trace_id, &tr, 8);
            memcpy(sp->trace_id + 8, &tr, 8);
            if (i % 10)
                span_id_of(i - i % 10, sp->parent_span_id);
            sp->service = svcs[s].name;
            sp->name = i % 10 ? "db.query" : "GET /api/items";
            sp->start_ns = (uint64_t)span_start[i];
            sp->end_ns = (uint64_t)(span_start[i] + (int64_t)span_dur_ms[i] * 1000000);
            sp->pid = 1000 + s;
            sp->tid = 2000 + (i % 64);
            sp_span_ref *ref = sp_arena_alloc(a, sizeof *ref);
            memcpy(ref->trace_id, sp->trace_id, 16);
            memcpy(ref->span_id, sp->span_id, 8);
            /* obs observations over k stacks, at times inside the span. */
            int nst = 1 + (int)(bench_xorshift64star(&r) % MAX_STACKS);
            long left = obs_per_span;
            for (int j = 0; j < nst && left > 0; j++) {
                long n =
                    j == nst - 1
                        ? left
                        : 1 + (long)(bench_xorshift64star(&r) % (uint64_t)(left - (nst - 1 - j)));
                if (n < 1)
                    n = 1;
                left -= n;
                int path = zipf_draw(&r);
                sp_sample *smp = &p->samples[p->nsamples++];
                smp->location_ids = svcs[s].paths[path];
                smp->nlocations = svcs[s].npath[path];
                smp->nobs = (uint32_t)n;
                smp->value = n * PERIOD_NS;
                smp->timestamps = sp_arena_alloc(a, (size_t)n * sizeof *smp->timestamps);
                for (long o = 0; o < n; o++)
                    smp->timestamps[o] =
                        (uint64_t)(span_start[i] +
                                   (int64_t)(bench_xorshift64star(&r) % (uint64_t)span_dur_ms[i]) *
                                       1000000);
                smp->spans = ref;
                smp->nspans = 1;
                smp->pid = sp->pid;
                smp->tid = sp->tid;
            }
        }
        free(count);
        sp_err err = {0};
        if (store_write(the_store, &b, &err)) {
            fprintf(stderr, "write batch %ld: %s\n", k, err.msg);
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        } else {
            __atomic_add_fetch(&obs_written, (uint64_t)((s1 - s0) * obs_per_span),
                               __ATOMIC_RELAXED);
        }
        sp_arena_free(a);
    }
}

/* ---- span sets (query layer) ------------------------------------------------------------------
 */

static double set_query(const query_ctx *qc, const query_type *type, store_selector *sel,
                        char **trace_ids, size_t ntrace_ids, sp_arena *a, int64_t want, int *bad)
{
    query_stacks_req sr = {.tenant = "bench",
                           .type = type,
                           .sel = sel,
                           .trace_ids = trace_ids,
                           .ntrace_ids = ntrace_ids};
    store_stacks st;
    sp_err err = {0};
    double t0 = bench_mono_s();
    int rc = query_stacks_select(qc, &sr, a, &st, &err);
    double ms = (bench_mono_s() - t0) * 1e3;
    if (rc || st.total != want) {
        fprintf(stderr, "span set: rc %d (%s), total %lld, want %lld\n", rc, err.msg,
                (long long)(rc ? 0 : st.total), (long long)want);
        (*bad)++;
    }
    sp_arena_reset(a);
    return ms;
}

static int span_set_queries(sp_arena *a, uint64_t *r)
{
    query_ctx qc = {.store = the_store,
                    .budget = (size_t)4 << 30,
                    .max_nodes_default = 8192,
                    .max_nodes_max = 1 << 20,
                    .span_min_duration_ns = 20000000};
    query_type type;
    sp_err err = {0};
    sp_arena *ta = sp_arena_new(0);
    if (query_type_parse(CPU_TYPE, "type", 1, ta, &type, &err))
        return 1;
    int bad = 0, n = nqueries / 4 > 0 ? nqueries / 4 : 1;
    double *ms = calloc((size_t)(n > 5 ? n : 5), sizeof *ms);
    store_selector none = {0};
    for (int i = 0; i < n; i++) {
        long first = (long)(bench_xorshift64star(r) % (uint64_t)nspans);
        first -= first % 10;
        uint64_t tr = (uint64_t)(first / 10 + 1) * 0xbf58476d1ce4e5b9ULL;
        uint8_t id[16];
        memcpy(id, &tr, 8);
        memcpy(id + 8, &tr, 8);
        char hex[33], *tids[1] = {hex};
        for (int k = 0; k < 16; k++)
            snprintf(hex + 2 * k, 3, "%02x", id[k]);
        long nsp = first + 10 <= nspans ? 10 : nspans - first;
        ms[i] = set_query(&qc, &type, &none, tids, 1, a, nsp * obs_per_span * PERIOD_NS, &bad);
    }
    bench_print_latency("a trace's flame graph (trace_id_selector, 10 spans)", ms, n);
    static const char *const names[2] = {"GET /api/items", "db.query"};
    for (int all = 0; all < 2; all++)
        for (int nm = 0; nm < 2; nm++) {
            int runs = all && nm ? 1 : 5;
            long count = 0;
            int s = (int)(bench_xorshift64star(r) % (uint64_t)nservices);
            for (long k = 0; k < nspans; k++)
                count += (all || service_of(k) == s) && ((k % 10 == 0) == (nm == 0));
            store_matcher m[2] = {{"span_name", names[nm], STORE_MATCH_EQ},
                                  {"service_name", svcs[s].name, STORE_MATCH_EQ}};
            for (int i = 0; i < runs; i++) {
                store_selector sel = {NULL, m, all ? 1 : 2};
                ms[i] =
                    set_query(&qc, &type, &sel, NULL, 0, a, count * obs_per_span * PERIOD_NS, &bad);
            }
            char what[160];
            snprintf(what, sizeof what, "span_name=\"%s\"%s: %ld spans", names[nm],
                     all ? " (every service)" : ", one service", count);
            bench_print_latency(what, ms, runs);
        }
    printf("span-set answers: %d wrong\n", bad);
    free(ms);
    sp_arena_free(ta);
    return bad;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_query [--spans N] [--obs N] [--services N] [--hours N] "
                    "[--batch N] [--writers N] [--queries N] [--ranges N] [--dir DIR] [--keep] "
                    "[--seed N] [--reuse DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0) {
            keep = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--spans") == 0)
            nspans = atol(v);
        else if (strcmp(a, "--obs") == 0)
            obs_per_span = atol(v);
        else if (strcmp(a, "--services") == 0)
            nservices = atol(v);
        else if (strcmp(a, "--hours") == 0)
            hours = atol(v);
        else if (strcmp(a, "--batch") == 0)
            batch_spans = atol(v);
        else if (strcmp(a, "--writers") == 0)
            writers = atoi(v);
        else if (strcmp(a, "--queries") == 0)
            nqueries = atoi(v);
        else if (strcmp(a, "--ranges") == 0)
            nranges = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--dir") == 0)
            dir_arg = v;
        else if (strcmp(a, "--reuse") == 0)
            reuse_dir = v;
        else
            usage();
    }
    if (nspans < 10 || obs_per_span < MAX_STACKS || nservices < 1 || hours < 1 || batch_spans < 1 ||
        writers < 1 || nqueries < 1 || nranges < 1)
        usage();
    dict_init();

    char dir[512], clock_file[600];
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t t_end_s = (int64_t)wall.tv_sec;
    if (reuse_dir) {
        snprintf(clock_file, sizeof clock_file, "%s/bench_query.t_end", reuse_dir);
        FILE *f = fopen(clock_file, "r");
        long long saved = 0;
        if (!f || fscanf(f, "%lld", &saved) != 1 || saved <= 0) {
            fprintf(stderr, "%s: no fill time (made by an older bench_query?): fill again\n",
                    clock_file);
            return 1;
        }
        fclose(f);
        t_end_s = saved;
    }
    spans_init(t_end_s);
    if (reuse_dir)
        snprintf(dir, sizeof dir, "%s", reuse_dir);
    else if (dir_arg)
        snprintf(dir, sizeof dir, "%s", dir_arg);
    else {
        snprintf(dir, sizeof dir, "/tmp/bench_query_XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
    }
    store_options o = {0};
    o.data_dir = dir;
    o.retention_ns = -1; /* the fill may be older than any retention */
    o.retention_interval_ns = -1;
    sp_err err = {0};
    if (store_open_sqlite(&the_store, &o, &err) != 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    uint64_t total_obs = (uint64_t)nspans * (uint64_t)obs_per_span;
    printf("load: %ld spans (%ld services, 10 per trace, 20 ms - 2 s) over %ld h, %ld observations "
           "each on up to %d stacks: %" PRIu64 " observations attached; dictionary %d locations, "
           "%d call paths per service\n",
           nspans, nservices, hours, obs_per_span, MAX_STACKS, total_obs, NLOCS, PATHS);
    if (!reuse_dir) {
        snprintf(clock_file, sizeof clock_file, "%s/bench_query.t_end", dir);
        FILE *tf = fopen(clock_file, "w");
        if (!tf || fprintf(tf, "%lld\n", (long long)t_end_s) < 0 || fclose(tf) != 0) {
            fprintf(stderr, "%s: cannot save the fill time\n", clock_file);
            return 1;
        }
        double c0 = bench_proc_cpu_s(), w0 = bench_mono_s();
        pthread_t *th = calloc((size_t)writers, sizeof *th);
        for (int i = 0; i < writers; i++)
            pthread_create(&th[i], NULL, fill_main, NULL);
        for (int i = 0; i < writers; i++)
            pthread_join(th[i], NULL);
        free(th);
        double fill_s = bench_mono_s() - w0, fill_cpu = bench_proc_cpu_s() - c0;
        store_stats stats;
        store_stats_get(the_store, &stats);
        printf("fill: %.1f s, %.0f observations/s, %.1f s CPU (batch building included) = "
               "%.3f us per observation; %" PRIu64 " transactions for %" PRIu64
               " batches, failures %d\n",
               fill_s, (double)obs_written / fill_s, fill_cpu, fill_cpu * 1e6 / (double)obs_written,
               stats.transactions, stats.batches_committed, failures);
        store_close(the_store); /* checkpoints: the WAL is folded into the database */
        int64_t db = bench_file_size(dir, "spanprof.db"),
                wal = bench_file_size(dir, "spanprof.db-wal");
        printf("disk: db %" PRId64 " B + wal %" PRId64 " B = %.2f bytes per observation, %.0f "
               "bytes per span\n",
               db, wal, (double)(db + wal) / (double)obs_written,
               (double)(db + wal) / (double)nspans);
        bench_dbstat_report(dir, "observation", obs_written, 0.01, 2);
        if (store_open_sqlite(&the_store, &o, &err) != 0) {
            fprintf(stderr, "reopen: %s\n", err.msg);
            return 1;
        }
    }

    /* ---- span-profile queries ---- */
    sp_arena *a = sp_arena_new(0);
    double *ms = calloc((size_t)(nqueries > nranges ? nqueries : nranges), sizeof *ms);
    uint64_t r = seed + 12345;
    int bad = 0;
    double stacks = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < nqueries; i++) {
            long idx = (long)(bench_xorshift64star(&r) % (uint64_t)nspans);
            uint8_t id[8];
            span_id_of(idx, id);
            store_query q = {.tenant = "bench", .type_id = CPU_TYPE};
            if (pass == 1) {
                q.start_ns = span_start[idx] - 30 * SEC;
                q.end_ns = span_start[idx] + (int64_t)span_dur_ms[idx] * 1000000 + 30 * SEC;
            }
            store_stacks st;
            double t0 = bench_mono_s();
            int rc = store_span_stacks(the_store, &q, (const uint8_t(*)[8])id, 1, a, &st, &err);
            ms[i] = (bench_mono_s() - t0) * 1e3;
            if (rc || st.total != obs_per_span * PERIOD_NS)
                bad++;
            stacks += rc ? 0 : (double)st.nstacks;
            sp_arena_reset(a);
        }
        bench_print_latency(pass ? "span profile, Grafana's range (span +- 30 s)"
                                 : "span profile, no time range",
                            ms, nqueries);
    }
    printf("span answers: %.1f stacks on average; %d of %d answers wrong\n",
           stacks / (2.0 * nqueries), bad, 2 * nqueries);

    /* ---- a trace's figures: the totals of its ten spans (GET /api/v1/traces/{id}) ---- */
    bad = 0;
    for (int i = 0; i < nqueries; i++) {
        long first = (long)(bench_xorshift64star(&r) % (uint64_t)nspans);
        first -= first % 10;
        uint8_t ids[10][8];
        int n = 0;
        for (long k = first; k < first + 10 && k < nspans; k++)
            span_id_of(k, ids[n++]);
        store_query q = {.tenant = "bench", .type_id = CPU_TYPE};
        store_span_total tot[10];
        double t0 = bench_mono_s();
        int rc = store_span_totals(the_store, &q, (const uint8_t(*)[8])ids, (size_t)n, tot, &err);
        ms[i] = (bench_mono_s() - t0) * 1e3;
        for (int k = 0; k < n; k++)
            bad += rc || tot[k].value != obs_per_span * PERIOD_NS;
    }
    bench_print_latency("span totals of a trace (10 spans, one call)", ms, nqueries);
    printf("trace totals: %d of %d span totals wrong\n", bad, 10 * nqueries);

    /* ---- span sets: a trace's flame graph, every span of a name ---- */
    bad += span_set_queries(a, &r);

    /* ---- one-hour flame graph of one service ---- */
    double nst = 0;
    for (int i = 0; i < nranges; i++) {
        int s = (int)(bench_xorshift64star(&r) % (uint64_t)nservices);
        store_matcher m = {.name = "service_name", .value = svcs[s].name, .op = STORE_MATCH_EQ};
        store_query q = {.tenant = "bench", .type_id = CPU_TYPE, .matchers = &m, .nmatchers = 1};
        q.end_ns =
            t_end - (int64_t)(bench_xorshift64star(&r) % (uint64_t)((hours - 1) * 3600 + 1)) * SEC;
        q.start_ns = q.end_ns - 3600 * SEC;
        store_stacks st;
        double t0 = bench_mono_s();
        int rc = store_select_stacks(the_store, &q, a, &st, &err);
        ms[i] = (bench_mono_s() - t0) * 1e3;
        if (rc) {
            fprintf(stderr, "select_stacks: %s\n", err.msg);
            bad++;
        }
        nst += rc ? 0 : (double)st.nstacks;
        sp_arena_reset(a);
    }
    bench_print_latency("one-hour flame graph of one service", ms, nranges);
    printf("range answers: %.0f stacks on average\n", nst / nranges);
    free(ms);
    sp_arena_free(a);
    store_close(the_store);
    if (!keep && !reuse_dir && !dir_arg)
        bench_rm_tree(dir);
    else
        printf("kept: %s\n", dir);
    return bad ? 1 : 0;
}
