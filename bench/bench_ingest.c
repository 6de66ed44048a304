/* bench_ingest: OTLP/gRPC profiles ingest through the real binary, with a load shaped like the
 * OpenTelemetry eBPF profiler's and a dictionary that keeps growing.
 *
 * Starts spanprof (--bin) on loopback ports in a fresh data directory, builds R distinct
 * ExportProfilesServiceRequests before timing and sends them over C HTTP/2 connections (nghttp2,
 * one Export in flight per connection as an exporter does), each Export answered only after its
 * data is committed. A request is one host's 5 s: P processes x T threads x N CPU samples, one
 * timestamp each, stacks of 20-60 frames (a sample is about 20 bytes on the wire, its share of
 * the request's dictionary about 12 more). --distinct N < --requests sends the N requests in
 * turn (their dictionaries and timestamps repeat: a hot dictionary). Most stacks are drawn
 * with a Zipf law from a pool shared by all requests; a fraction of the samples (--new, default
 * 0.02) get stacks with frames never sent before, so the store's dictionary grows all run long.
 * Requests advance in time (5 s apart), so values spread over buckets as a live host's would.
 * --off-cpu F moves that fraction of each thread's samples to a second profile of its process
 * shaped like the profiler's off-CPU one (off_cpu/nanoseconds, a value per timestamp: how long
 * the thread was off the CPU, log-normal ns); --timestamps K gives each Sample 1..K timestamps
 * (the profiler merges a thread's events on one stack into one Sample). With --new 0 and
 * --requests N (distinct by default) this is the issue-19 disk row's load: a hot dictionary,
 * distinct times.
 *
 * Prints, for the same bytes: the raw protobuf-c decode rate (unpack + free, one core: the
 * ceiling) and the end-to-end rate — samples/s, MB/s, MB/s per server core (server CPU from
 * /proc), Export latency p50/p99/max, the server's peak RSS and the data directory's size, per
 * sample (and per observation when Samples carry several), with each table's share (dbstat)
 * and what sample_chunk's pages hold (blobs, the rest of the rows, free space).
 * --rate S paces the senders to S samples/s in total (latency at a given load).
 * --queries Q also posts one span per (process, thread) of the first request before timing and,
 * from the first request's answer until the last, asks Q span queries per second on one more
 * connection (SelectMergeSpanProfile, Connect JSON over HTTP/1.1: bench_ingest_query.h); prints
 * their latency p50/p99/max and how many came back without samples.
 * --restart then starts the server again on the data directory the run left and prints how long
 * it took to accept connections (the store's start-up: opening SQLite, loading the writer's
 * caches, building its hash indexes) with the rows it found and its RSS then;
 * --restart-with PATH restarts that binary instead (an A/B of start-up on the same data).
 * --timeline FILE writes one line per Export (its place in the run, when it was sent in seconds
 * from the first, its latency in ms): where in a run the slow ones were.
 *
 *   bench_ingest --bin build/spanprof [--requests 400] [--conns 4] [--distinct N] [--procs 50]
 *                [--threads 8] [--samples 100] [--new 0.02] [--zipf 1.2] [--pool 2000]
 *                [--off-cpu 0] [--timestamps 1]
 *                [--rate S] [--workers N] [--queries Q] [--server-arg ARG]... [--keep] [--dry]
 *                [--timeline FILE] [--restart]
 *                [--restart-with PATH]
 */
#include "opentelemetry/proto/collector/profiles/v1development/profiles_service.pb-c.h"
#include "bench_ingest_query.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary dict_t;
typedef Opentelemetry__Proto__Profiles__V1development__Sample sample_t;
typedef Opentelemetry__Proto__Profiles__V1development__Profile profile_t;

#define SEC         1000000000LL
#define POOL_MAX    100000
#define POOL_LOCS   40000 /* locations the shared stacks are made of */
#define EXPORT_PATH "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"

static const char *bin;
static int nrequests = 400, conns = 4, ndistinct = 0, procs = 50, threads = 8, per_thread = 100;
static int keep = 0, workers = 0;
static double new_frac = 0.02, rate = 0, zipf_s = 1.2, query_rate = 0, off_frac = 0;
static int max_ts = 1;
static const char *server_args[16];
static int nserver_args;
static int dry = 0;
static const char *timeline;    /* --timeline FILE */
static int restart;             /* --restart */
static const char *restart_bin; /* --restart-with PATH */
static double *sent_s;          /* when each Export was sent, from t_start */

/* ---- request generation ---------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    return bench_xorshift64(&rng);
}

/* The message trees of the requests are built in a bump allocator, dropped once packed: with
 * hundreds of distinct requests the trees would not fit in memory. */
typedef struct bchunk {
    struct bchunk *next;
    size_t used, cap;
    uint8_t data[];
} bchunk;
static bchunk *bchunks;

static void *bmalloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!bchunks || bchunks->cap - bchunks->used < n) {
        size_t cap = n > (8u << 20) ? n : (8u << 20);
        bchunk *c = malloc(sizeof *c + cap);
        if (!c) {
            fprintf(stderr, "bench_ingest: out of memory\n");
            exit(1);
        }
        c->next = bchunks;
        c->used = 0;
        c->cap = cap;
        bchunks = c;
    }
    void *p = bchunks->data + bchunks->used;
    bchunks->used += n;
    return p;
}

static void *bcalloc(size_t n, size_t size)
{
    return memset(bmalloc(n * size), 0, n * size);
}

static char *bstrdup(const char *s)
{
    return strcpy(bmalloc(strlen(s) + 1), s);
}

static void breset(void)
{
    while (bchunks) {
        bchunk *c = bchunks;
        bchunks = c->next;
        free(c);
    }
}

#define NEW(T) bcalloc(1, sizeof(T))

/* The shared stack pool: location ids into a global address space (address = 0x400000 + 64 id). */
static int POOL = 2000; /* shared (hot) stacks */
static uint32_t *pool[POOL_MAX];
static uint32_t pool_n[POOL_MAX];
static double pool_cdf[POOL_MAX];
static uint32_t next_fresh = POOL_LOCS; /* global location ids never used before */

static void pool_init(void)
{
    double sum = 0, acc = 0;
    for (int i = 0; i < POOL; i++)
        sum += 1.0 / pow(i + 1, zipf_s);
    for (int i = 0; i < POOL; i++) {
        acc += 1.0 / pow(i + 1, zipf_s) / sum;
        pool_cdf[i] = acc;
        /* A call tree: a stack shares the root half of an earlier one (leaf first, so the
         * root part is the tail) and adds its own frames on top. */
        uint32_t n = 20 + (uint32_t)(rnd() % 41), keep_n = 0;
        pool[i] = malloc(n * sizeof *pool[i]);
        if (i > 16) {
            int parent = (int)(rnd() % (uint64_t)i);
            keep_n = pool_n[parent] / 2 + (uint32_t)(rnd() % 8);
            if (keep_n > pool_n[parent])
                keep_n = pool_n[parent];
            if (keep_n > n - 2)
                keep_n = n - 2;
            memcpy(pool[i] + n - keep_n, pool[parent] + pool_n[parent] - keep_n,
                   keep_n * sizeof *pool[i]);
        }
        for (uint32_t k = 0; k < n - keep_n; k++)
            pool[i][k] = 1 + (uint32_t)(rnd() % (POOL_LOCS - 1));
        pool_n[i] = n;
    }
}

static int pool_draw(void)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0;
    int lo = 0, hi = POOL - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (pool_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef struct request {
    uint8_t *frame; /* gRPC frame: 5-byte header + message */
    size_t len;
    size_t samples; /* Sample messages */
    size_t obs;     /* their timestamps (observations) */
} request;

typedef Opentelemetry__Proto__Profiles__V1development__ScopeProfiles ScopeProfiles_t;

/* The first entries of every request's string table. */
enum { S_SAMPLES = 1, S_COUNT, S_CPU, S_NS, S_TID, S_FT, S_APP, S_BUILD_ID, S_OFF_CPU };

/* An off-CPU duration in ns: what the profiler's finish_task_switch probe reports (the time
 * since the thread's sched_switch), log-normal around 1 ms with a spread of e^2 (7.4x) per
 * standard deviation, so most waits are 20 us - 50 ms and some last seconds; 1 us - 10 s. */
static int64_t off_cpu_ns(void)
{
    double u1 = ((double)(rnd() >> 11) + 1) / 9007199254740993.0;
    double u2 = (double)(rnd() >> 11) / 9007199254740992.0;
    double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
    double ns = exp(log(1e6) + 2 * z);
    return ns < 1e3 ? 1000 : ns > 1e10 ? 10000000000LL : (int64_t)ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One profile of process p in request k: n samples per thread, CPU (samples/count, period
 * 20 Hz, timestamps only) or off-CPU (off_cpu/nanoseconds, no period, one value per timestamp:
 * what the eBPF profiler sends for each kind). A Sample holds 1..--timestamps timestamps (the
 * profiler merges the events of one stack and thread in a report interval); with 1, CPU samples
 * keep the 50 ms grid. Stacks come from stk_of_sample[*si...]. */
static profile_t *build_profile(int k, int64_t t0, int p, int n, int off_cpu,
                                const int *stk_of_sample, int *si, request *out)
{
    profile_t *pr = NEW(*pr);
    opentelemetry__proto__profiles__v1development__profile__init(pr);
    pr->sample_type = NEW(*pr->sample_type);
    opentelemetry__proto__profiles__v1development__value_type__init(pr->sample_type);
    pr->sample_type->type_strindex = off_cpu ? S_OFF_CPU : S_SAMPLES;
    pr->sample_type->unit_strindex = off_cpu ? S_NS : S_COUNT;
    if (!off_cpu) {
        pr->period_type = NEW(*pr->period_type);
        opentelemetry__proto__profiles__v1development__value_type__init(pr->period_type);
        pr->period_type->type_strindex = S_CPU;
        pr->period_type->unit_strindex = S_NS;
        pr->period = 50000000; /* 20 Hz */
    }
    pr->time_unix_nano = (uint64_t)t0;
    pr->duration_nano = 5 * SEC;
    pr->n_samples = (size_t)threads * (size_t)n;
    pr->samples = bcalloc(pr->n_samples, sizeof(void *));
    for (size_t i = 0; i < pr->n_samples; i++, (*si)++) {
        sample_t *s = NEW(*s);
        opentelemetry__proto__profiles__v1development__sample__init(s);
        pr->samples[i] = s;
        int t = (int)(i / (size_t)n);
        s->stack_index = 1 + stk_of_sample[*si];
        s->n_attribute_indices = 1;
        s->attribute_indices = bmalloc(sizeof(int32_t));
        s->attribute_indices[0] = 3 + p * threads + t;
        size_t nts = max_ts > 1 ? 1 + (size_t)(rnd() % (uint64_t)max_ts) : 1;
        s->n_timestamps_unix_nano = nts;
        s->timestamps_unix_nano = bmalloc(nts * sizeof(uint64_t));
        if (nts == 1 && !off_cpu) {
            s->timestamps_unix_nano[0] =
                (uint64_t)(t0 + (int64_t)(i % (size_t)n) * 50000000 + t * 1000 + k);
        } else {
            for (size_t j = 0; j < nts; j++)
                s->timestamps_unix_nano[j] = (uint64_t)t0 + rnd() % (uint64_t)(5 * SEC);
            qsort(s->timestamps_unix_nano, nts, sizeof(uint64_t), cmp_u64);
        }
        if (off_cpu) {
            s->n_values = nts;
            s->values = bmalloc(nts * sizeof(int64_t));
            for (size_t j = 0; j < nts; j++)
                s->values[j] = off_cpu_ns();
        }
        out->obs += nts;
    }
    return pr;
}

/* Request k: the request's own dictionary holds exactly the locations its stacks use, as the
 * eBPF profiler's does. */
static void build(request *out, int k, int64_t t0)
{
    out->obs = 0;
    int nsamples_total = procs * threads * per_thread;
    /* Stacks of this request, as global location id lists. */
    uint32_t **stk = bmalloc((size_t)nsamples_total * sizeof *stk);
    uint32_t *stk_n = bmalloc((size_t)nsamples_total * sizeof *stk_n);
    int *stk_of_sample = malloc((size_t)nsamples_total * sizeof *stk_of_sample);
    int nstk = 0;
    int *pool_slot = calloc(POOL, sizeof *pool_slot); /* pool index → request stack index + 1 */
    for (int i = 0; i < nsamples_total; i++) {
        if ((double)(rnd() >> 11) / 9007199254740992.0 < new_frac) {
            /* A stack with fresh frames on top of a known path: new code, new addresses. */
            int base = pool_draw();
            uint32_t n = pool_n[base];
            uint32_t *s = bmalloc(n * sizeof *s);
            memcpy(s, pool[base], n * sizeof *s);
            uint32_t fresh = 1 + (uint32_t)(rnd() % 4);
            for (uint32_t f = 0; f < fresh && f < n; f++)
                s[f] = next_fresh++;
            stk[nstk] = s;
            stk_n[nstk] = n;
            stk_of_sample[i] = nstk++;
        } else {
            int p = pool_draw();
            if (!pool_slot[p]) {
                stk[nstk] = pool[p];
                stk_n[nstk] = pool_n[p];
                pool_slot[p] = ++nstk;
            }
            stk_of_sample[i] = pool_slot[p] - 1;
        }
    }
    /* Local location table: global id → local index. */
    size_t cap = 1024, nl = 1;
    uint32_t *glob = malloc(cap * sizeof *glob);
    /* open addressing map global → local */
    size_t mcap = 1;
    while (mcap < (size_t)nsamples_total * 4 + 65536)
        mcap <<= 1;
    uint32_t *mk = calloc(mcap, sizeof *mk), *mv = calloc(mcap, sizeof *mv);
    dict_t *d = NEW(*d);
    opentelemetry__proto__profiles__v1development__profiles_dictionary__init(d);
    d->n_stack_table = (size_t)nstk + 1;
    d->stack_table = bcalloc(d->n_stack_table, sizeof(void *));
    for (size_t i = 0; i < d->n_stack_table; i++) {
        d->stack_table[i] = NEW(*d->stack_table[i]);
        opentelemetry__proto__profiles__v1development__stack__init(d->stack_table[i]);
    }
    for (int i = 0; i < nstk; i++) {
        Opentelemetry__Proto__Profiles__V1development__Stack *s = d->stack_table[i + 1];
        s->n_location_indices = stk_n[i];
        s->location_indices = bmalloc(stk_n[i] * sizeof(int32_t));
        for (uint32_t j = 0; j < stk_n[i]; j++) {
            uint32_t g = stk[i][j];
            size_t h = (g * 0x9e3779b1u) & (mcap - 1);
            while (mk[h] && mk[h] != g)
                h = (h + 1) & (mcap - 1);
            if (!mk[h]) {
                mk[h] = g;
                if (nl == cap)
                    glob = realloc(glob, (cap *= 2) * sizeof *glob);
                glob[nl] = g;
                mv[h] = (uint32_t)nl++;
            }
            s->location_indices[j] = (int32_t)mv[h];
        }
    }
    /* Strings: fixed ones, then one function name per symbolized location. */
    const char *fixed[] = {"",
                           "samples",
                           "count",
                           "cpu",
                           "nanoseconds",
                           "thread.id",
                           "profile.frame.type",
                           "/usr/bin/app",
                           "process.executable.build_id.gnu",
                           "off_cpu"};
    size_t nfixed = sizeof fixed / sizeof fixed[0];
    d->string_table = bcalloc(nfixed + nl, sizeof(char *));
    for (size_t i = 0; i < nfixed; i++)
        d->string_table[i] = (char *)fixed[i];
    d->n_string_table = nfixed;
    d->n_mapping_table = 2;
    d->mapping_table = bcalloc(2, sizeof(void *));
    for (int i = 0; i < 2; i++) {
        d->mapping_table[i] = NEW(*d->mapping_table[i]);
        opentelemetry__proto__profiles__v1development__mapping__init(d->mapping_table[i]);
    }
    d->mapping_table[1]->filename_strindex = S_APP;
    d->mapping_table[1]->memory_start = 0x400000;
    d->mapping_table[1]->memory_limit = 1ull << 40;
    d->n_attribute_table = 3 + (size_t)procs * threads;
    d->attribute_table = bcalloc(d->n_attribute_table, sizeof(void *));
    for (size_t i = 0; i < d->n_attribute_table; i++) {
        d->attribute_table[i] = NEW(*d->attribute_table[i]);
        opentelemetry__proto__profiles__v1development__key_value_and_unit__init(
            d->attribute_table[i]);
    }
    d->attribute_table[1]->key_strindex = S_FT;
    d->attribute_table[1]->value = bench_any_str(bmalloc, "native");
    d->attribute_table[2]->key_strindex = S_FT;
    d->attribute_table[2]->value = bench_any_str(bmalloc, "kernel");
    for (int t = 0; t < procs * threads; t++) {
        d->attribute_table[3 + t]->key_strindex = S_TID;
        d->attribute_table[3 + t]->value = bench_any_int(bmalloc, 100000 + t);
    }
    d->function_table = bcalloc(nl, sizeof(void *));
    d->function_table[0] = NEW(*d->function_table[0]);
    opentelemetry__proto__profiles__v1development__function__init(d->function_table[0]);
    d->n_function_table = 1;
    d->n_location_table = nl;
    d->location_table = bcalloc(nl, sizeof(void *));
    for (size_t i = 0; i < nl; i++) {
        Opentelemetry__Proto__Profiles__V1development__Location *l = NEW(*l);
        opentelemetry__proto__profiles__v1development__location__init(l);
        d->location_table[i] = l;
        if (!i)
            continue;
        uint32_t g = glob[i];
        l->mapping_index = 1;
        l->address = 0x400000 + (uint64_t)g * 64;
        l->n_attribute_indices = 1;
        l->attribute_indices = bmalloc(sizeof(int32_t));
        l->attribute_indices[0] = g % 10 == 0 ? 2 : 1;
        if (g % 10 == 0) { /* kernel frames come symbolized */
            char name[48];
            snprintf(name, sizeof name, "kfunc_%u", g);
            d->string_table[d->n_string_table] = bstrdup(name);
            Opentelemetry__Proto__Profiles__V1development__Function *f = NEW(*f);
            opentelemetry__proto__profiles__v1development__function__init(f);
            f->name_strindex = (int32_t)d->n_string_table++;
            d->function_table[d->n_function_table] = f;
            l->n_lines = 1;
            l->lines = bmalloc(sizeof(void *));
            l->lines[0] = NEW(*l->lines[0]);
            opentelemetry__proto__profiles__v1development__line__init(l->lines[0]);
            l->lines[0]->function_index = (int32_t)d->n_function_table++;
        }
    }
    Opentelemetry__Proto__Collector__Profiles__V1development__ExportProfilesServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_REQUEST__INIT;
    req.dictionary = d;
    req.n_resource_profiles = (size_t)procs;
    req.resource_profiles = bcalloc((size_t)procs, sizeof(void *));
    int si = 0;
    for (int p = 0; p < procs; p++) {
        Opentelemetry__Proto__Profiles__V1development__ResourceProfiles *rp = NEW(*rp);
        opentelemetry__proto__profiles__v1development__resource_profiles__init(rp);
        req.resource_profiles[p] = rp;
        rp->resource = NEW(*rp->resource);
        opentelemetry__proto__resource__v1__resource__init(rp->resource);
        rp->resource->n_attributes = 2;
        rp->resource->attributes = bcalloc(2, sizeof(void *));
        for (int j = 0; j < 2; j++) {
            rp->resource->attributes[j] = NEW(*rp->resource->attributes[j]);
            opentelemetry__proto__common__v1__key_value__init(rp->resource->attributes[j]);
        }
        rp->resource->attributes[0]->key = "process.pid";
        rp->resource->attributes[0]->value = bench_any_int(bmalloc, 1000 + p);
        rp->resource->attributes[1]->key = "process.executable.name";
        rp->resource->attributes[1]->value = bench_any_str(bmalloc, p % 4 ? "app" : "db");
        rp->n_scope_profiles = 1;
        rp->scope_profiles = bcalloc(1, sizeof(void *));
        rp->scope_profiles[0] = NEW(*rp->scope_profiles[0]);
        opentelemetry__proto__profiles__v1development__scope_profiles__init(rp->scope_profiles[0]);
        int noff = (int)(per_thread * off_frac + 0.5); /* each thread's off-CPU samples */
        int ncpu = per_thread - noff;
        ScopeProfiles_t *sp = rp->scope_profiles[0];
        sp->profiles = bcalloc(2, sizeof(void *));
        if (ncpu > 0)
            sp->profiles[sp->n_profiles++] =
                build_profile(k, t0, p, ncpu, 0, stk_of_sample, &si, out);
        if (noff > 0)
            sp->profiles[sp->n_profiles++] =
                build_profile(k, t0, p, noff, 1, stk_of_sample, &si, out);
    }
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    out->frame = malloc(len + 5);
    out->frame[0] = 0;
    out->frame[1] = (uint8_t)(len >> 24);
    out->frame[2] = (uint8_t)(len >> 16);
    out->frame[3] = (uint8_t)(len >> 8);
    out->frame[4] = (uint8_t)len;
    protobuf_c_message_pack(&req.base, out->frame + 5);
    out->len = len + 5;
    out->samples = (size_t)nsamples_total;
    breset();
    free(mk);
    free(mv);
    free(glob);
    free(pool_slot);
    free(stk_of_sample);
}

/* ---- HTTP/2 client --------------------------------------------------------------------------- */

typedef struct conn {
    int fd;
    nghttp2_session *s;
    const request *req;
    size_t off;
    int done, grpc_status, http_status;
} conn;

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s, (void)sid, (void)src;
    conn *c = ud;
    size_t n = c->req->len - c->off;
    if (n > len)
        n = len;
    memcpy(buf, c->req->frame + c->off, n);
    c->off += n;
    if (c->off == c->req->len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)s, (void)f, (void)flags;
    conn *c = ud;
    char v[16];
    size_t n = valuelen < 15 ? valuelen : 15;
    memcpy(v, value, n);
    v[n] = 0;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        c->grpc_status = atoi(v);
    else if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        c->http_status = atoi(v);
    return 0;
}

static int on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)s, (void)sid, (void)code;
    ((conn *)ud)->done = 1;
    return 0;
}

static int pump(conn *c)
{
    for (;;) {
        const uint8_t *out;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(c->s, &out)) > 0) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = send(c->fd, out + off, (size_t)(n - off), MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return -1;
                off += w;
            }
        }
        if (n < 0)
            return -1;
        if (c->done)
            return 0;
        uint8_t buf[65536];
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (nghttp2_session_mem_recv(c->s, buf, (size_t)r) < 0)
            return -1;
    }
}

static int port;
static request *reqs;
static int next_req;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double *lat_ms;
static int failures;
static double t_start;
static int answered, senders_done; /* the query side's start and stop (atomics) */

static void *sender(void *arg)
{
    (void)arg;
    conn c = {0};
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c.fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_client_new(&c.s, cb, &c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
    nghttp2_submit_settings(c.s, NGHTTP2_FLAG_NONE, iv, 1);
    char authority[32];
    snprintf(authority, sizeof authority, "127.0.0.1:%d", port);
#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }
    for (;;) {
        pthread_mutex_lock(&mu);
        int i = next_req++;
        pthread_mutex_unlock(&mu);
        if (i >= nrequests)
            break;
        const request *r = &reqs[i % ndistinct];
        if (rate > 0) { /* paced: request i is due when the total has sent i requests' samples */
            double due = t_start + (double)i * (double)r->samples / rate;
            double wait = due - bench_mono_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        nghttp2_nv nva[] = {HDR(":method", "POST"),
                            HDR(":scheme", "http"),
                            HDR(":authority", authority),
                            HDR(":path", EXPORT_PATH),
                            HDR("content-type", "application/grpc"),
                            HDR("te", "trailers")};
        c.req = r;
        c.off = 0;
        c.done = 0;
        c.grpc_status = -1;
        c.http_status = 0;
        nghttp2_data_provider dp = {.read_callback = read_body};
        double t0 = bench_mono_s();
        sent_s[i] = t0 - t_start;
        if (nghttp2_submit_request(c.s, NULL, nva, sizeof nva / sizeof nva[0], &dp, NULL) < 0 ||
            pump(&c) != 0) {
            fprintf(stderr, "request %d: connection failed\n", i);
            exit(1);
        }
        lat_ms[i] = (bench_mono_s() - t0) * 1e3;
        if (c.grpc_status != 0 || c.http_status != 200)
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        if (i == 0) /* the request the spans cover: span queries start once it is stored */
            __atomic_store_n(&answered, 1, __ATOMIC_RELEASE);
    }
    nghttp2_session_del(c.s);
    close(c.fd);
    return NULL;
}

typedef struct query_job {
    const bq_config *c;
    bq_result *r;
} query_job;

static void *query_main(void *arg)
{
    query_job *j = arg;
    bq_run(j->c, &answered, &senders_done, j->r);
    return NULL;
}

/* ---- the server ------------------------------------------------------------------------------ */

/* A /proc stat file (a process's or one of its threads'): CPU seconds (user + system) and
 * minor page faults (each a page the kernel zeroed or mapped for the server: memory given back
 * and taken again shows here, noise-free). 0 when unreadable. */
static double stat_file_cpu_s(const char *path, unsigned long *minflt)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* after the name, which may hold anything */
    unsigned long ut = 0, st = 0, mf = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %lu %*u %*u %*u %lu %lu", &mf, &ut, &st);
    if (minflt)
        *minflt = mf;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double proc_stat(pid_t pid, unsigned long *minflt)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return stat_file_cpu_s(path, minflt);
}

/* Bytes the process has caused to be written to storage (/proc/PID/io write_bytes: the WAL's
 * frames and the checkpoints' pages; 0 when unreadable). */
static unsigned long long proc_write_bytes(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %llu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* One thread's figure, read from its /proc/PID/task/TID directory (0 when unreadable). */
typedef double (*task_figure)(const char *taskdir);

static double task_cpu_s(const char *taskdir)
{
    char tpath[400];
    snprintf(tpath, sizeof tpath, "%s/stat", taskdir);
    return stat_file_cpu_s(tpath, NULL);
}

/* Seconds spent runnable but waiting for a core (schedstat, second field, ns): what a query
 * pays for a busy machine. */
static double task_wait_s(const char *taskdir)
{
    char tpath[400];
    snprintf(tpath, sizeof tpath, "%s/schedstat", taskdir);
    FILE *f = fopen(tpath, "r");
    unsigned long long run = 0, wait = 0;
    int ok = f && fscanf(f, "%llu %llu", &run, &wait) == 2;
    if (f)
        fclose(f);
    return ok ? (double)wait / 1e9 : 0;
}

/* The sum of a figure over pid's threads whose name starts with prefix (the server names its
 * pools' threads ingest-N and query-N); read before the process exits. */
static double threads_sum(pid_t pid, const char *prefix, task_figure figure)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    double sum = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char taskdir[320], tpath[400], comm[64] = "";
        snprintf(taskdir, sizeof taskdir, "%s/%s", path, e->d_name);
        snprintf(tpath, sizeof tpath, "%s/comm", taskdir);
        FILE *f = fopen(tpath, "r");
        if (!f)
            continue;
        size_t n = fread(comm, 1, sizeof comm - 1, f);
        fclose(f);
        comm[n] = 0;
        if (strncmp(comm, prefix, strlen(prefix)) == 0)
            sum += figure(taskdir);
    }
    if (d)
        closedir(d);
    return sum;
}

static double threads_cpu_s(pid_t pid, const char *prefix)
{
    return threads_sum(pid, prefix, task_cpu_s);
}

static long proc_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static int can_connect(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static uint64_t dir_bytes;
static int add_size(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)p, (void)ftw;
    if (flag == FTW_F)
        dir_bytes += (uint64_t)sb->st_size;
    return 0;
}

/* Where sample_chunk's pages go: the coded blobs, the rest of the rows (key, total, record and
 * cell headers) and the pages' free space, per sample sent. */
static void chunk_report(const char *data, size_t sent)
{
    char path[700];
    snprintf(path, sizeof path, "%s/spanprof.db", data);
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM sample_chunk), (SELECT "
                           "sum(length(data)) FROM sample_chunk), sum(pgsize), sum(payload), "
                           "sum(unused) FROM dbstat WHERE name = 'sample_chunk'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        double n = (double)sent, rows = (double)sqlite3_column_int64(st, 0);
        double blob = (double)sqlite3_column_int64(st, 1), pg = (double)sqlite3_column_int64(st, 2);
        double pay = (double)sqlite3_column_int64(st, 3),
               unused = (double)sqlite3_column_int64(st, 4);
        printf("sample_chunk per sample: %.3f B in pages = blobs %.3f + rest of the rows %.3f + "
               "free space %.3f + page headers %.3f; %.0f rows, %.0f B of blob each, %.1f "
               "samples per row\n",
               pg / n, blob / n, (pay - blob) / n, unused / n, (pg - pay - unused) / n, rows,
               rows ? blob / rows : 0, rows ? n / rows : 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Starts the server again on the run's data directory: seconds until it accepts connections
 * (polled every millisecond), and its RSS then. */
static void restart_report(char **argv_srv, const char *data)
{
    const char *b = restart_bin ? restart_bin : bin;
    argv_srv[0] = (char *)b;
    double t0 = bench_mono_s();
    pid_t pid = fork();
    if (pid == 0) {
        execv(b, argv_srv);
        perror("exec");
        _exit(127);
    }
    int up = 0;
    for (int i = 0; i < 120000 && !(up = can_connect(port)); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(1000);
    }
    double secs = bench_mono_s() - t0;
    long rss = proc_hwm_kb(pid);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (!up) {
        printf("restart: the server did not come up again\n");
        return;
    }
    char db[700];
    snprintf(db, sizeof db, "%s/spanprof.db", data);
    sqlite3 *h = NULL;
    long long rows[3] = {0, 0, 0};
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        const char *tables[3] = {"stack", "location", "function"};
        for (int k = 0; k < 3; k++) {
            char sql[64];
            sqlite3_stmt *st;
            snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tables[k]);
            if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
                if (sqlite3_step(st) == SQLITE_ROW)
                    rows[k] = sqlite3_column_int64(st, 0);
                sqlite3_finalize(st);
            }
        }
    }
    sqlite3_close(h);
    printf("restart on the run's data (%s): accepting connections after %.3f s, RSS %.0f MiB "
           "(%lld stacks, %lld locations, %lld functions)\n",
           b, secs, (double)rss / 1024, rows[0], rows[1], rows[2]);
}

static void write_timeline(int n)
{
    FILE *f = timeline ? fopen(timeline, "w") : NULL;
    if (timeline && !f) {
        perror(timeline);
        return;
    }
    for (int i = 0; f && i < n; i++)
        fprintf(f, "%d %.3f %.1f\n", i, sent_s[i], lat_ms[i]);
    if (f)
        fclose(f);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_ingest --bin PATH [--requests N] [--conns N] [--distinct N] "
                    "[--procs N] [--threads N] [--samples N] [--new F] [--zipf S] [--pool N] "
                    "[--off-cpu F] [--timestamps K] "
                    "[--rate S] [--workers N] [--queries Q] [--server-arg ARG]... [--keep] "
                    "[--dry] [--timeline FILE] [--restart] [--restart-with PATH]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0 || strcmp(a, "--dry") == 0 || strcmp(a, "--restart") == 0) {
            *(a[2] == 'k' ? &keep : a[2] == 'd' ? &dry : &restart) = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--bin") == 0)
            bin = v;
        else if (strcmp(a, "--requests") == 0)
            nrequests = atoi(v);
        else if (strcmp(a, "--conns") == 0)
            conns = atoi(v);
        else if (strcmp(a, "--distinct") == 0)
            ndistinct = atoi(v);
        else if (strcmp(a, "--procs") == 0)
            procs = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--samples") == 0)
            per_thread = atoi(v);
        else if (strcmp(a, "--new") == 0)
            new_frac = atof(v);
        else if (strcmp(a, "--off-cpu") == 0)
            off_frac = atof(v);
        else if (strcmp(a, "--timestamps") == 0)
            max_ts = atoi(v);
        else if (strcmp(a, "--timeline") == 0)
            timeline = v;
        else if (strcmp(a, "--restart-with") == 0)
            restart_bin = v, restart = 1;
        else if (strcmp(a, "--rate") == 0)
            rate = atof(v);
        else if (strcmp(a, "--pool") == 0)
            POOL = atoi(v);
        else if (strcmp(a, "--zipf") == 0)
            zipf_s = atof(v);
        else if (strcmp(a, "--workers") == 0)
            workers = atoi(v);
        else if (strcmp(a, "--queries") == 0)
            query_rate = atof(v);
        else if (strcmp(a, "--server-arg") == 0 &&
                 nserver_args < (int)(sizeof server_args / sizeof server_args[0]))
            server_args[nserver_args++] = v;
        else
            usage();
    }
    if (!bin || nrequests < 1 || conns < 1 || ndistinct < 0 || procs < 1 || threads < 1 ||
        per_thread < 1 || off_frac < 0 || off_frac > 1 || max_ts < 1)
        usage();
    if (POOL < 1 || POOL > POOL_MAX)
        usage();
    if (ndistinct == 0 || ndistinct > nrequests)
        ndistinct = nrequests;

    /* ---- requests, and the decode ceiling on the same bytes ---- */
    pool_init();
    reqs = calloc((size_t)ndistinct, sizeof *reqs);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t t_first = (int64_t)wall.tv_sec * SEC - (int64_t)ndistinct * 5 * SEC;
    size_t bytes = 0, samples = 0, obs = 0;
    for (int k = 0; k < ndistinct; k++) {
        build(&reqs[k], k, t_first + (int64_t)k * 5 * SEC);
        bytes += reqs[k].len;
        samples += reqs[k].samples;
        obs += reqs[k].obs;
    }
    printf("requests: %d distinct of %zu samples each (%d processes x %d threads x %d), %.1f "
           "bytes per sample on the wire, stacks Zipf(%.2f) over %d, %.0f%% of the samples on "
           "a stack with new frames; %d Exports on %d connections\n",
           ndistinct, reqs[0].samples, procs, threads, per_thread, (double)bytes / (double)samples,
           zipf_s, POOL, new_frac * 100, nrequests, conns);
    if (off_frac > 0 || max_ts > 1)
        printf("samples: %.0f%% off-CPU (values in ns), %.2f timestamps per sample (1..%d)\n",
               off_frac * 100, (double)obs / (double)samples, max_ts);
    double d0 = bench_mono_s();
    int passes = 0;
    do {
        for (int k = 0; k < ndistinct; k++) {
            ProtobufCMessage *m = protobuf_c_message_unpack(
                &opentelemetry__proto__collector__profiles__v1development__export_profiles_service_request__descriptor,
                NULL, reqs[k].len - 5, reqs[k].frame + 5);
            if (!m) {
                fprintf(stderr, "unpack failed\n");
                return 1;
            }
            protobuf_c_message_free_unpacked(m, NULL);
        }
        passes++;
    } while (bench_mono_s() - d0 < 2.0);
    double dec = (bench_mono_s() - d0) / passes;
    printf("raw protobuf-c unpack+free of the same bytes (one core): %.0f samples/s, %.1f MB/s\n",
           (double)samples / dec, (double)bytes / dec / 1e6);

    if (dry)
        return 0;

    /* ---- the server ---- */
    char dir[] = "/tmp/bench_ingest_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char data[600], grpc[32], http[32], wk[16];
    snprintf(data, sizeof data, "%s/data", dir);
    srand((unsigned)getpid());
    port = 20000 + rand() % 20000;
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", port);
    snprintf(http, sizeof http, "127.0.0.1:%d", port + 1);
    snprintf(wk, sizeof wk, "%d", workers);
    char *argv_srv[32] = {(char *)bin,   "--data-dir", data,          "--grpc-addr", grpc,
                          "--http-addr", http,         "--log-level", "warn"};
    int na = 9;
    if (workers > 0) {
        argv_srv[na++] = "--workers";
        argv_srv[na++] = wk;
    }
    for (int i = 0; i < nserver_args; i++)
        argv_srv[na++] = (char *)server_args[i];
    pid_t pid = fork();
    if (pid == 0) {
        execv(bin, argv_srv);
        perror("exec");
        _exit(127);
    }
    for (int i = 0; i < 600 && !can_connect(port); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "bench_ingest: %s exited at start-up (port %d taken?)\n", bin, port);
            return 1;
        }
        usleep(50000);
    }
    unsigned long flt0 = 0, flt1 = 0;
    double cpu0 = proc_stat(pid, &flt0);
    unsigned long long wb0 = proc_write_bytes(pid);
    lat_ms = calloc((size_t)nrequests, sizeof *lat_ms);
    sent_s = calloc((size_t)nrequests, sizeof *sent_s);
    pthread_t *th = calloc((size_t)conns, sizeof *th);
    bq_config qc = {.http_port = port + 1,
                    .procs = procs,
                    .threads = threads,
                    .t0_ns = t_first,
                    .rate = query_rate};
    bq_result qr = {0};
    query_job qj = {&qc, &qr};
    pthread_t qth;
    if (query_rate > 0) {
        bq_send_spans(&qc);
        pthread_create(&qth, NULL, query_main, &qj);
    }
    t_start = bench_mono_s();
    for (int i = 0; i < conns; i++)
        pthread_create(&th[i], NULL, sender, NULL);
    for (int i = 0; i < conns; i++)
        pthread_join(th[i], NULL);
    double secs = bench_mono_s() - t_start;
    __atomic_store_n(&senders_done, 1, __ATOMIC_RELEASE);
    if (query_rate > 0)
        pthread_join(qth, NULL);
    double cpu = proc_stat(pid, &flt1) - cpu0;
    double cpu_ingest = threads_cpu_s(pid, "ingest-"), cpu_query = threads_cpu_s(pid, "query-");
    /* the stage threads of finished Exports are gone from /proc: the server counts them */
    double stage_us = bq_metric(port + 1, "spanprof_ingest_stage_cpu_microseconds_total");
    if (stage_us > 0)
        cpu_ingest += stage_us / 1e6;
    double drain_us = bq_metric(port + 1, "spanprof_ingest_stage_drain_microseconds_total");
    double commit_us = bq_metric(port + 1, "spanprof_ingest_commit_wait_microseconds_total");
    double cpu_writer = threads_cpu_s(pid, "store-writer");
    double wait_query = threads_sum(pid, "query-", task_wait_s);
    long hwm = proc_hwm_kb(pid);
    unsigned long long written = proc_write_bytes(pid) - wb0;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    nftw(data, add_size, 16, FTW_PHYS);

    size_t sent = 0, sent_bytes = 0, sent_obs = 0;
    for (int i = 0; i < nrequests; i++) {
        sent += reqs[i % ndistinct].samples;
        sent_obs += reqs[i % ndistinct].obs;
        sent_bytes += reqs[i % ndistinct].len;
    }
    /* The slowest Exports by their place in the run: the first ones find every stack new. */
    int slow[3] = {-1, -1, -1};
    for (int i = 0; i < nrequests; i++)
        for (int k = 0; k < 3; k++)
            if (slow[k] < 0 || lat_ms[i] > lat_ms[slow[k]]) {
                for (int j = 2; j > k; j--)
                    slow[j] = slow[j - 1];
                slow[k] = i;
                break;
            }
    char slowest[128] = "";
    for (int k = 0, n = 0; k < 3 && slow[k] >= 0; k++)
        n += snprintf(slowest + n, sizeof slowest - (size_t)n, "%s#%d %.1f ms", k ? ", " : "",
                      slow[k], lat_ms[slow[k]]);
    write_timeline(nrequests);
    qsort(lat_ms, (size_t)nrequests, sizeof *lat_ms, bench_cmp_double);
    printf("answered OK: %d of %d\n", nrequests - failures, nrequests);
    printf("end to end: %.0f samples/s, %.1f MB/s of OTLP in %.1f s%s\n", (double)sent / secs,
           (double)sent_bytes / secs / 1e6, secs, rate > 0 ? " (paced)" : "");
    printf("server CPU: %.1f s = %.3f us per sample, %.2f cores busy, %.1f MB/s per core, "
           "%.0f samples per CPU-second\n",
           cpu, cpu * 1e6 / (double)sent, cpu / secs, (double)sent_bytes / cpu / 1e6,
           (double)sent / cpu);
    if (cpu_ingest > 0)
        printf("server CPU by thread: ingest workers and their stage threads %.1f s (%.3f us per "
               "sample; stage threads %.1f s), store writer %.1f s (%.3f us per sample), the rest "
               "%.1f s\n",
               cpu_ingest, cpu_ingest * 1e6 / (double)sent, stage_us > 0 ? stage_us / 1e6 : 0,
               cpu_writer, cpu_writer * 1e6 / (double)sent,
               cpu - cpu_ingest - cpu_query - cpu_writer);
    if (drain_us > 0 || commit_us > 0)
        printf("on average per Export, after its last part was converted, its worker waited %.2f "
               "ms for its stage thread (correlation), then %.2f ms for its commit\n",
               drain_us / 1e3 / nrequests, commit_us / 1e3 / nrequests);
    printf("server page faults: %lu (%.0f per Export)\n", flt1 - flt0,
           (double)(flt1 - flt0) / nrequests);
    printf("server bytes written: %.1f MB while the run lasted (%.1f B per sample; WAL and "
           "checkpoints)\n",
           (double)written / 1e6, (double)written / (double)sent);
    printf("Export latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", lat_ms[nrequests / 2],
           lat_ms[(int)((nrequests - 1) * 0.99)], lat_ms[nrequests - 1]);
    printf("slowest Exports (#: place in the run): %s\n", slowest);
    if (query_rate > 0) {
        printf("span queries during ingest: %d asked at %.0f/s, %d without samples, %d failed\n",
               qr.n, query_rate, qr.empty, qr.failed);
        /* The first queries of a run open each query thread's read connection, prepare its
         * statements and fill an empty name cache (5-12 ms of CPU, against 1-2 ms after): they
         * alone can be a 300-query run's p99, which a server that has run for a while does
         * not pay. Both are printed; the copy is taken before the sort. */
        enum { QUERY_WARMUP = 10 };
        double *warm =
            qr.n > 10 * QUERY_WARMUP ? malloc((size_t)(qr.n - QUERY_WARMUP) * sizeof *warm) : NULL;
        if (warm)
            memcpy(warm, qr.lat_ms + QUERY_WARMUP, (size_t)(qr.n - QUERY_WARMUP) * sizeof *warm);
        if (qr.n)
            bench_print_latency("span query latency (SelectMergeSpanProfile)", qr.lat_ms, qr.n);
        if (warm)
            bench_print_latency("span query latency after the first 10 queries", warm,
                                qr.n - QUERY_WARMUP);
        free(warm);
        if (qr.n && cpu_query > 0)
            printf("query threads' CPU: %.2f s = %.2f ms per span query\n", cpu_query,
                   cpu_query * 1e3 / qr.n);
        if (qr.n)
            printf("query threads' wait for a core: %.2f s = %.2f ms per span query\n", wait_query,
                   wait_query * 1e3 / qr.n);
    }
    printf("server peak RSS: %.0f MiB; data dir: %.1f MiB = %.2f bytes per sample\n",
           (double)hwm / 1024, (double)dir_bytes / 1048576, (double)dir_bytes / (double)sent);
    if (sent_obs != sent)
        printf("data dir per observation (timestamp): %.2f bytes\n",
               (double)dir_bytes / (double)sent_obs);
    bench_dbstat_report(data, "sample", sent, 0.005, 3);
    chunk_report(data, sent);
    if (restart)
        restart_report(argv_srv, data);
    if (!keep)
        bench_rm_tree(dir);
    else
        printf("kept: %s\n", dir);
    return failures || qr.failed ? 1 : 0;
}
