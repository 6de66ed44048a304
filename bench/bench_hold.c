/* bench_hold: the Pyroscope pusher's hold (delivery/hold.c, delivery/pusher.c) at eBPF-like load
 * on a virtual clock, so a minute of 1 M samples/s runs as fast as the CPU allows.
 *
 * Load: every virtual second, rate/batch Exports of `batch` samples (one series each, 20
 * services), each sample from a pool of distinct stacks (depth 12–30) with 2 observations up to
 * 5 s old (the eBPF profiler's export interval); 30 % of the samples arrive attached to a span,
 * and 2 s later a late span claims 10 % of each Export's observations (attach_only, as the
 * correlator emits them). The pusher journals each Export, holds its samples and pushes one
 * profile per series and 10 s bucket after --delay; the outbox delivers to an in-memory sink.
 *
 * Prints: CPU per sample of stage + commit (journal + hold) and of the releases (merge + pprof +
 * gzip), the delay between a sample's arrival and its push (mean over observations, max per
 * group), the journal's peak bytes on disk, the hold's peak memory, and the bytes pushed per
 * second and per sample.
 *
 *   build/bench/bench_hold [rate=1000000] [seconds=90] [batch=5000] [delay_s=30] [hold_mib=256]
 *                          [journal_mib=256: --outbox-max-bytes, which bounds the journal too]
 */
#include "bench_util.h"

#include "../common/arena.h"
#include "../common/profile.h"
#include "../delivery/pusher.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S        1000000000LL
#define NAMES    5000
#define STACKS   20000
#define SERVICES 20

static int64_t vclock;
static int64_t clk(void)
{
    return vclock;
}

static atomic_uint_fast64_t pushed_bytes, pushed_batches;

static int sink(void *ud, const char *tenant, const uint8_t *body, size_t len, int64_t *ra,
                sp_err *err)
{
    (void)ud, (void)tenant, (void)body, (void)ra, (void)err;
    atomic_fetch_add(&pushed_bytes, len);
    atomic_fetch_add(&pushed_batches, 1);
    return 0;
}

/* The shared dictionary every Export's profile points into. */
static const char *strs[NAMES + 1];
static sp_function fns[NAMES + 1];
static sp_location locs[NAMES + 1];
static sp_line lines[NAMES + 1];
static sp_mapping map0;
static uint32_t *stack_ids[STACKS], stack_len[STACKS];
static const char *services[SERVICES];

static void dictionary(uint64_t *rng)
{
    strs[0] = "";
    for (int i = 1; i <= NAMES; i++) {
        char b[32];
        snprintf(b, sizeof b, "fn_%d", i);
        strs[i] = strdup(b);
        fns[i].name = fns[i].system_name = (uint32_t)i;
        lines[i].function_id = (uint32_t)i;
        locs[i].lines = &lines[i];
        locs[i].nlines = 1;
    }
    for (int i = 0; i < STACKS; i++) {
        stack_len[i] = 12 + (uint32_t)(bench_xorshift64(rng) % 19);
        stack_ids[i] = malloc(stack_len[i] * sizeof *stack_ids[i]);
        for (uint32_t k = 0; k < stack_len[i]; k++)
            stack_ids[i][k] = 1 + (uint32_t)(bench_xorshift64(rng) % NAMES);
    }
    for (int i = 0; i < SERVICES; i++) {
        char b[32];
        snprintf(b, sizeof b, "svc-%d", i);
        services[i] = strdup(b);
    }
}

static sp_profile *profile(sp_arena *a, int svc, uint32_t n, int attach_only)
{
    sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
    p->type_id = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    p->name = "process_cpu";
    p->period = 10000000;
    p->strings = strs;
    p->nstrings = NAMES + 1;
    p->functions = fns;
    p->nfunctions = NAMES + 1;
    p->locations = locs;
    p->nlocations = NAMES + 1;
    p->mappings = &map0;
    p->nmappings = 1;
    p->samples = sp_arena_calloc(a, n, sizeof *p->samples);
    p->nsamples = n;
    sp_kv kv[1] = {{"service_name", services[svc]}};
    sp_profile_set_series(p, a, "process_cpu", kv, 1);
    p->attach_only = (uint8_t)attach_only;
    return p;
}

static int64_t dir_bytes(const char dir[4200])
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int64_t n = 0;
    struct dirent *de;
    char path[4600];
    while ((de = readdir(d))) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (de->d_name[0] != '.' && stat(path, &st) == 0)
            n += st.st_size;
    }
    closedir(d);
    return n;
}

typedef struct claim {
    int64_t due;
    sp_arena *a;
    sp_batch b;
} claim;

int main(int argc, char **argv)
{
    int64_t rate = argc > 1 ? atoll(argv[1]) : 1000000;
    int seconds = argc > 2 ? atoi(argv[2]) : 90;
    uint32_t batch = argc > 3 ? (uint32_t)atoi(argv[3]) : 5000;
    /* delay_s < 0: no hold (--pyroscope-push-on-arrival), the A of an A/B */
    int64_t delay = (argc > 4 ? atoll(argv[4]) : 30) * S;
    size_t hold_mib = argc > 5 ? (size_t)atoll(argv[5]) : 256;
    uint64_t journal_mib = argc > 6 ? (uint64_t)atoll(argv[6]) : 256;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    dictionary(&rng);
    char dir[] = "/tmp/bench_hold.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    vclock = (int64_t)1800000000 * S + 3 * S;
    pusher_options o = {.data_dir = dir,
                        .http = {.url = "http://127.0.0.1:9"},
                        .delay_ns = delay,
                        .hold_max_bytes = hold_mib << 20,
                        .max_bytes = journal_mib << 20,
                        .deliver = sink,
                        .clock_ns = clk};
    pusher *p;
    sp_err err = {0};
    if (pusher_open(&p, &o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char jdir[4200];
    snprintf(jdir, sizeof jdir, "%s/outbox/pyroscope-hold", dir);
    int64_t per_second = rate / batch;
    claim *claims = calloc((size_t)per_second * 4 + 4, sizeof *claims);
    size_t nclaims = 0;
    double cpu_ingest = 0, cpu_tick = 0;
    int64_t journal_peak = 0;
    uint64_t hold_peak = 0, samples = 0, obs = 0;
    uint64_t bytes_mark = 0;
    /* steady state from here on: the first buckets have left (delay + a bucket + the 5 s the
     * load's timestamps lag) */
    int64_t mark_second = delay / S + 16 < seconds - 10 ? delay / S + 16 : seconds / 3;
    for (int sec = 0; sec < seconds; sec++) {
        for (int64_t k = 0; k < per_second; k++) {
            vclock += S / per_second;
            sp_arena *a = sp_arena_new(0);
            int svc = (int)(bench_xorshift64(&rng) % SERVICES);
            sp_profile *pr = profile(a, svc, batch, 0);
            sp_batch b = {.tenant = "anonymous", .arena = a, .profiles = &pr, .nprofiles = 1};
            /* its claims, 2 s later: 10 % of its observations */
            claim *c = &claims[nclaims++];
            c->due = vclock + 2 * S;
            c->a = sp_arena_new(0);
            uint32_t nc = batch / 10;
            sp_profile *cp = profile(c->a, svc, nc, 1);
            sp_span_ref *late = sp_arena_calloc(c->a, 1, sizeof *late);
            memcpy(late->span_id, &vclock, 8);
            sp_span *cs = sp_arena_calloc(c->a, 1, sizeof *cs);
            memcpy(cs->span_id, &vclock, 8);
            cs->start_ns = (uint64_t)(vclock - 6 * S);
            cs->end_ns = (uint64_t)vclock;
            for (uint32_t i = 0; i < batch; i++) {
                sp_sample *s = &pr->samples[i];
                uint32_t st = (uint32_t)(bench_xorshift64(&rng) % STACKS);
                s->location_ids = stack_ids[st];
                s->nlocations = stack_len[st];
                s->value = 2 * 10000000;
                s->nobs = 2;
                s->timestamps = sp_arena_alloc(a, 2 * sizeof *s->timestamps);
                for (int t = 0; t < 2; t++)
                    s->timestamps[t] =
                        (uint64_t)(vclock - (int64_t)(bench_xorshift64(&rng) % (uint64_t)(5 * S)));
                if (bench_xorshift64(&rng) % 10 < 3) {
                    s->spans = late; /* a span known at arrival (extent unknown here) */
                    s->nspans = 1;
                }
                if (i < nc) {
                    sp_sample *x = &cp->samples[i];
                    *x = *s;
                    x->timestamps = sp_arena_memdup(c->a, s->timestamps, sizeof *s->timestamps);
                    x->nobs = 1;
                    x->value = 10000000;
                    x->spans = late;
                    x->nspans = 1;
                }
            }
            c->b = (sp_batch){.tenant = "anonymous",
                              .arena = c->a,
                              .profiles = sp_arena_memdup(c->a, &cp, sizeof cp),
                              .nprofiles = 1,
                              .spans = cs,
                              .nspans = 1};
            double c0 = bench_thread_cpu_s();
            pusher_ticket t;
            if (pusher_stage(p, &b, &t, &err) || pusher_commit(p, &b, &t, &err)) {
                fprintf(stderr, "push: %s\n", err.msg);
                return 1;
            }
            size_t w = 0;
            for (size_t i = 0; i < nclaims; i++) {
                if (claims[i].due > vclock) {
                    claims[w++] = claims[i];
                    continue;
                }
                if (pusher_stage(p, &claims[i].b, &t, &err) ||
                    pusher_commit(p, &claims[i].b, &t, &err))
                    return 1;
                sp_arena_free(claims[i].a);
            }
            nclaims = w;
            cpu_ingest += bench_thread_cpu_s() - c0;
            samples += batch;
            obs += 2 * batch;
            sp_arena_free(a);
        }
        double c0 = bench_thread_cpu_s();
        pusher_tick(p, vclock);
        cpu_tick += bench_thread_cpu_s() - c0;
        hold_stats hs;
        pusher_hold_stats(p, &hs);
        if (getenv("BENCH_HOLD_DEBUG"))
            fprintf(stderr, "t=%lld groups=%llu last_delay=%lld bytes=%llu early=%llu\n",
                    (long long)(vclock / S % 100), (unsigned long long)hs.groups,
                    (long long)hs.last_delay_ms, (unsigned long long)hs.bytes,
                    (unsigned long long)hs.early_total);
        if (hs.bytes > hold_peak)
            hold_peak = hs.bytes;
        int64_t jb = dir_bytes(jdir);
        if (jb > journal_peak)
            journal_peak = jb;
        if (sec == mark_second)
            bytes_mark = atomic_load(&pushed_bytes);
    }
    hold_stats hs;
    pusher_hold_stats(p, &hs);
    usleep(200000); /* the sink has what the last releases queued */
    uint64_t steady_bytes = atomic_load(&pushed_bytes) - bytes_mark;
    int steady_s = seconds - 1 - mark_second;
    printf("bench_hold: rate %lld samples/s (virtual), %d s, %u samples per Export, delay %lld s, "
           "hold budget %zu MiB, journal cap %llu MiB\n",
           (long long)rate, seconds, batch, (long long)(delay / S), hold_mib,
           (unsigned long long)journal_mib);
    printf("  CPU stage+commit (journal + hold): %.3f us/sample\n",
           cpu_ingest * 1e6 / (double)samples);
    printf("  CPU releases (merge, pprof, gzip): %.3f us/sample\n",
           cpu_tick * 1e6 / (double)samples);
    printf("  delay arrival -> push: mean %.1f s over %llu observations, max %.1f s (group age)\n",
           hs.delay_obs_count ? hs.delay_obs_ms_sum / (double)hs.delay_obs_count / 1000 : 0,
           (unsigned long long)hs.delay_obs_count, (double)hs.max_delay_ms / 1000);
    printf("  journal on disk (outbox/pyroscope-hold): peak %.1f MiB\n",
           (double)journal_peak / 1048576);
    printf("  hold memory: peak %.1f MiB; moved to an outer span: %llu portions; early: %llu; "
           "late groups: %llu\n",
           (double)hold_peak / 1048576, (unsigned long long)hs.moved_total,
           (unsigned long long)hs.early_total, (unsigned long long)hs.late_groups_total);
    printf("  pushed: %.2f MB/s of Push requests in steady state (%.3f B per sample), %llu "
           "batches\n",
           (double)steady_bytes / steady_s / 1e6, (double)steady_bytes / steady_s / (double)rate,
           (unsigned long long)atomic_load(&pushed_batches));
    pusher_close(p);
    bench_rm_tree(dir);
    (void)obs;
    return 0;
}
