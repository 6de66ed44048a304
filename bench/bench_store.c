/* bench_store: an eBPF-profiler-like load written through the store interface (SQLite backend).
 *
 * Simulates one host: N CPUs sampled at H Hz (an idle CPU yields no sample), many processes
 * (several running the same binary) with many threads, per-sample timestamps, deep native stacks
 * (20-60 frames) drawn from a call graph with realistic reuse: each process has a pool of call
 * paths picked with a Zipf law, a few hot leaf addresses per function, and kernel paths on top of
 * a third of the samples. Native frames are unsymbolized, so (as the OTLP converter does) every
 * native address gets its own synthetic function name; kernel frames carry symbols. Threads run
 * spans (20 ms - 2 s, half of them nested in a parent) and samples inside a span are attached to
 * it (and its parent). Every 5 simulated seconds the host sends one request: one profile per
 * process sharing one dictionary, plus the spans that started in that window.
 *
 * All requests are generated first, then written by several threads through store_write() as
 * fast as the store accepts them. Prints stored samples per second, bytes on disk per sample
 * (database + WAL after a checkpoint), and the time of span-stack queries.
 *
 *   bench_store [--cpus 8] [--hz 20] [--minutes 60] [--procs 40] [--writers 4]
 *               [--queries 2000] [--durability normal|full] [--dir DIR] [--keep] [--seed N]
 */
#include "../storage-adapter/store.h"
#include "bench_util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SEC       1000000000LL
#define WINDOW_NS (5 * SEC)
#define CPU_TYPE  "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define SITES     8 /* call sites per function (non-leaf frames) */
#define LEAF_PCS  6 /* hot leaf addresses per function */
#define SLOTS     (SITES + LEAF_PCS)
#define MAX_DEPTH 64

/* ---- knobs ----------------------------------------------------------------------------------- */

static int cpus = 8, hz = 20, minutes = 60, nprocs = 40, writers = 4, nqueries = 2000;
static int durability = STORE_DURABILITY_NORMAL, keep = 0;
static uint64_t seed = 42;
static const char *dir_arg = NULL;

/* ---- rng ------------------------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return bench_xorshift64star(&rng_state);
}

static double rndf(void)
{
    return bench_unit(&rng_state);
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL);
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    return h;
}

/* Zipf(s) over n items as a CDF; sample by binary search. */
typedef struct zipf {
    double *cdf;
    int n;
} zipf;

static void zipf_init(zipf *z, int n, double s)
{
    z->n = n;
    z->cdf = malloc((size_t)n * sizeof *z->cdf);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += 1.0 / pow(i + 1, s);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += 1.0 / pow(i + 1, s) / sum;
        z->cdf[i] = acc;
    }
}

static int zipf_draw(const zipf *z)
{
    double u = rndf();
    int lo = 0, hi = z->n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- strings (global, interned) ------------------------------------------------------------- */

static char **strs;
static uint32_t *str_lens;
static uint32_t nstrs, cap_strs;
static uint32_t *str_slots;
static size_t str_slot_cap;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static uint32_t intern(const char *s)
{
    if ((nstrs + 1) * 2 > str_slot_cap) {
        size_t nc = str_slot_cap ? str_slot_cap * 2 : 1 << 16;
        uint32_t *ns = calloc(nc, sizeof *ns);
        for (uint32_t i = 1; i < nstrs; i++) {
            size_t k = str_hash(strs[i]) & (nc - 1);
            while (ns[k])
                k = (k + 1) & (nc - 1);
            ns[k] = i;
        }
        free(str_slots);
        str_slots = ns;
        str_slot_cap = nc;
    }
    size_t k = str_hash(s) & (str_slot_cap - 1);
    while (str_slots[k]) {
        if (strcmp(strs[str_slots[k]], s) == 0)
            return str_slots[k];
        k = (k + 1) & (str_slot_cap - 1);
    }
    if (nstrs == cap_strs) {
        cap_strs = cap_strs ? cap_strs * 2 : 1024;
        strs = realloc(strs, cap_strs * sizeof *strs);
        str_lens = realloc(str_lens, cap_strs * sizeof *str_lens);
    }
    if (nstrs == 0) {
        strs[0] = strdup("");
        str_lens[0] = 0;
        nstrs = 1;
    }
    strs[nstrs] = strdup(s);
    str_lens[nstrs] = (uint32_t)strlen(s);
    str_slots[k] = nstrs;
    return nstrs++;
}

/* ---- code: mappings, functions, call graph ----------------------------------------------------
 */

typedef struct mapping_def {
    const char *path, *base;
    int kernel;
    uint32_t fn0, nfn; /* global function range */
    uint64_t text;     /* address of the first function */
} mapping_def;

enum { M_KERNEL, M_LIBC, M_LIBSTDCXX, M_LIBSSL, M_LIBZ, M_LIBPTHREAD, NLIBS };
#define NBINARIES 12
static mapping_def maps[NLIBS + NBINARIES];
static uint32_t nmaps_total;
static uint32_t nfuncs_total;
static uint32_t *fn_map; /* function → mapping index */

static const char *const lib_paths[NLIBS] = {"[kernel.kallsyms]",
                                             "/usr/lib/x86_64-linux-gnu/libc.so.6",
                                             "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                                             "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                                             "/usr/lib/x86_64-linux-gnu/libz.so.1",
                                             "/usr/lib/x86_64-linux-gnu/libpthread.so.0"};
static const uint32_t lib_sizes[NLIBS] = {6000, 2500, 3000, 1500, 200, 120};
static const char *const binaries[NBINARIES] = {
    "api-gateway", "checkout", "payments", "inventory", "search",  "recommend",
    "postgres",    "redis",    "nginx",    "envoy",     "fluentd", "node-exporter"};

static void code_init(void)
{
    uint32_t fn = 0;
    for (int i = 0; i < NLIBS; i++) {
        maps[i].path = lib_paths[i];
        const char *slash = strrchr(lib_paths[i], '/');
        maps[i].base = slash ? slash + 1 : lib_paths[i];
        maps[i].kernel = i == M_KERNEL;
        maps[i].fn0 = fn;
        maps[i].nfn = lib_sizes[i];
        maps[i].text = i == M_KERNEL ? 0xffffffff81000000ULL : 0x20000 + 0x1000 * (uint64_t)i;
        fn += lib_sizes[i];
    }
    for (int b = 0; b < NBINARIES; b++) {
        mapping_def *m = &maps[NLIBS + b];
        char path[128];
        snprintf(path, sizeof path, "/usr/local/bin/%s", binaries[b]);
        m->path = strdup(path);
        m->base = binaries[b];
        m->fn0 = fn;
        m->nfn = 3000 + (uint32_t)(mix(seed, (uint64_t)b) % 12000);
        m->text = 0x401000;
        fn += m->nfn;
    }
    nmaps_total = NLIBS + NBINARIES;
    nfuncs_total = fn;
    fn_map = malloc(fn * sizeof *fn_map);
    for (uint32_t m = 0; m < nmaps_total; m++)
        for (uint32_t k = 0; k < maps[m].nfn; k++)
            fn_map[maps[m].fn0 + k] = m;
}

static uint32_t lib_fn(int lib, uint64_t h)
{
    return maps[lib].fn0 + (uint32_t)(h % maps[lib].nfn);
}

/* The k-th callee of f: code calls mostly within its own object, some into libc/libstdc++. */
static uint32_t callee(uint32_t f, int k)
{
    uint64_t h = mix(f, (uint64_t)k + 1);
    uint32_t m = fn_map[f];
    double u = (double)(h >> 40) / (double)(1ULL << 24);
    if (m >= NLIBS) {
        if (u < 0.80) /* within the binary, towards "deeper" code */
            return maps[m].fn0 + (uint32_t)((f - maps[m].fn0 + 1 + (h >> 8) % 400) % maps[m].nfn);
        if (u < 0.92)
            return lib_fn(M_LIBSTDCXX, h);
        if (u < 0.97)
            return lib_fn(M_LIBC, h);
        return lib_fn(u < 0.985 ? M_LIBSSL : M_LIBZ, h);
    }
    if (u < 0.9)
        return maps[m].fn0 + (uint32_t)((f - maps[m].fn0 + 1 + (h >> 8) % 50) % maps[m].nfn);
    return lib_fn(M_LIBC, h);
}

static int ncallees(uint32_t f)
{
    return 2 + (int)(mix(f, 99) % (SITES - 1));
}

/* A frame = a global location: function and slot (a call site, or a hot leaf address). */
static uint64_t frame_of(uint32_t f, int slot)
{
    return (uint64_t)f * SLOTS + (uint64_t)slot;
}

static uint64_t frame_address(uint64_t frame)
{
    uint32_t f = (uint32_t)(frame / SLOTS);
    int slot = (int)(frame % SLOTS);
    const mapping_def *m = &maps[fn_map[f]];
    return m->text + (uint64_t)(f - m->fn0) * 0x180 + 0x10 + (uint64_t)slot * 0x13;
}

/* ---- processes, threads, spans ------------------------------------------------------------------
 */

typedef struct callpath {
    uint64_t frames[MAX_DEPTH]; /* root first, without the leaf */
    uint8_t n;
    uint32_t leaf_fn;
} callpath;

typedef struct thread_state {
    int64_t tid;
    int64_t span_end;
    uint8_t span[8], parent[8], trace[16];
    int has_parent;
} thread_state;

typedef struct proc {
    int64_t pid;
    int binary;
    char service[64];
    double weight;
    int nthreads;
    thread_state *threads;
    callpath *paths;
    zipf pick;
    int profile_idx; /* in the current request, -1 = none */
} proc;

static proc *procs;
static double *proc_cdf;
static zipf kernel_pick, leaf_pick;
static callpath kernel_paths[200];

static void random_walk(callpath *p, uint32_t start_fn, const uint64_t *prefix, int nprefix,
                        int depth)
{
    p->n = 0;
    for (int i = 0; i < nprefix; i++)
        p->frames[p->n++] = prefix[i];
    uint32_t f = start_fn;
    while (p->n < depth - 1 && p->n < MAX_DEPTH - 1) {
        int k = (int)(rnd() % (uint64_t)ncallees(f));
        p->frames[p->n++] = frame_of(f, k);
        f = callee(f, k);
    }
    p->leaf_fn = f;
}

static void procs_init(void)
{
    code_init();
    procs = calloc((size_t)nprocs, sizeof *procs);
    proc_cdf = malloc((size_t)nprocs * sizeof *proc_cdf);
    double total = 0;
    for (int i = 0; i < nprocs; i++) {
        proc *p = &procs[i];
        p->pid = 1000 + i * 37;
        p->binary = i % NBINARIES;
        /* Workers of one binary share the service; a few busy processes, a long tail. */
        snprintf(p->service, sizeof p->service, "%s", binaries[p->binary]);
        p->weight = 1.0 / pow(i + 1, 0.8);
        total += p->weight;
        p->nthreads = 1 + (int)(mix(seed, (uint64_t)i + 7) % 32);
        p->threads = calloc((size_t)p->nthreads, sizeof *p->threads);
        for (int t = 0; t < p->nthreads; t++)
            p->threads[t].tid = p->pid + t;
        const mapping_def *bin = &maps[NLIBS + p->binary];
        /* Call paths: from main or from a thread start, 16..54 frames before the leaf. */
        int npaths = 600 + (int)(mix(seed, (uint64_t)i + 13) % 900);
        p->paths = calloc((size_t)npaths, sizeof *p->paths);
        uint64_t main_prefix[3] = {frame_of(bin->fn0, 0), frame_of(lib_fn(M_LIBC, 1), 0),
                                   frame_of(bin->fn0 + 1, 0)};
        uint64_t thread_prefix[3] = {frame_of(lib_fn(M_LIBC, 2), 0),
                                     frame_of(lib_fn(M_LIBPTHREAD, 3), 0),
                                     frame_of(bin->fn0 + 2, 0)};
        for (int k = 0; k < npaths; k++) {
            int from_thread = p->nthreads > 1 && rndf() < 0.6;
            uint32_t start = bin->fn0 + 3 + (uint32_t)(rnd() % 40);
            int depth = 17 + (int)(rnd() % 38);
            random_walk(&p->paths[k], start, from_thread ? thread_prefix : main_prefix, 3, depth);
        }
        zipf_init(&p->pick, npaths, 1.1);
    }
    double acc = 0;
    for (int i = 0; i < nprocs; i++) {
        acc += procs[i].weight / total;
        proc_cdf[i] = acc;
    }
    /* Kernel paths (syscalls, page faults, interrupts): 4..13 frames. */
    uint64_t entry[2] = {frame_of(lib_fn(M_KERNEL, 11), 0), frame_of(lib_fn(M_KERNEL, 12), 0)};
    for (int k = 0; k < 200; k++)
        random_walk(&kernel_paths[k], lib_fn(M_KERNEL, rnd()), entry, 2, 4 + (int)(rnd() % 10));
    zipf_init(&kernel_pick, 200, 1.2);
    zipf_init(&leaf_pick, LEAF_PCS, 1.5);
}

static int pick_proc(void)
{
    double u = rndf();
    for (int i = 0; i < nprocs; i++)
        if (u <= proc_cdf[i])
            return i;
    return nprocs - 1;
}

static const char *const span_names[] = {
    "GET /api/v1/items", "POST /checkout", "db.query",    "cache.get",   "render",  "grpc.Call",
    "kafka.produce",     "auth.verify",    "json.encode", "http.client", "compute", "batch.flush"};

/* ---- requests
 * ------------------------------------------------------------------------------------ */

/* Per request: one dictionary (local ids) shared by the profiles, as the converter makes it. */
typedef struct request {
    sp_batch batch;
    sp_arena *arena;
    uint64_t nsamples; /* observations */
} request;

typedef struct builder {
    sp_arena *a;
    uint32_t *frame_local; /* global frame → local location id (stamped) */
    uint32_t *frame_stamp;
    size_t frame_cap;
    uint32_t stamp;
    sp_location *locs;
    sp_function *funcs;
    uint32_t nlocs, cap_locs;
    /* samples per process: (stack, spans) → sample */
    struct pending {
        uint32_t *locs;
        uint32_t n;
        uint64_t ts[64];
        uint32_t nts;
        sp_span_ref spans[2];
        uint32_t nspans;
        uint64_t key;
    } * pend;
    size_t npend, cap_pend;
    int *pend_proc;
    sp_span *spans;
    size_t nspans, cap_spans;
} builder;

static uint32_t local_loc(builder *b, uint64_t frame)
{
    if (frame >= b->frame_cap) {
        size_t nc = b->frame_cap ? b->frame_cap : 1 << 20;
        while (nc <= frame)
            nc *= 2;
        b->frame_local = realloc(b->frame_local, nc * sizeof *b->frame_local);
        b->frame_stamp = realloc(b->frame_stamp, nc * sizeof *b->frame_stamp);
        memset(b->frame_stamp + b->frame_cap, 0, (nc - b->frame_cap) * sizeof *b->frame_stamp);
        b->frame_cap = nc;
    }
    if (b->frame_stamp[frame] == b->stamp)
        return b->frame_local[frame];
    if (b->nlocs == b->cap_locs) {
        b->cap_locs = b->cap_locs ? b->cap_locs * 2 : 4096;
        b->locs = realloc(b->locs, b->cap_locs * sizeof *b->locs);
        b->funcs = realloc(b->funcs, b->cap_locs * sizeof *b->funcs);
    }
    uint32_t id = b->nlocs++;
    uint32_t f = (uint32_t)(frame / SLOTS);
    uint32_t m = fn_map[f];
    uint64_t addr = frame_address(frame);
    sp_location *l = &b->locs[id];
    memset(l, 0, sizeof *l);
    l->mapping_id = m + 1;
    l->address = addr;
    l->frame_type = intern(maps[m].kernel ? "kernel" : "native");
    sp_function *fn = &b->funcs[id];
    memset(fn, 0, sizeof *fn);
    char name[160];
    if (maps[m].kernel) {
        snprintf(name, sizeof name, "ksys_fn_%u", f - maps[m].fn0);
    } else {
        /* Unsymbolized native frame: the converter's synthetic name. */
        sp_frame_name(name, sizeof name, "native", addr, maps[m].base);
    }
    fn->name = fn->system_name = intern(name);
    l->nlines = 1;
    b->frame_stamp[frame] = b->stamp;
    b->frame_local[frame] = id;
    return id;
}

static void add_obs(builder *b, int pi, const uint32_t *locs, uint32_t n, uint64_t ts,
                    const sp_span_ref *spans, uint32_t nspans)
{
    uint64_t key = mix((uint64_t)pi, n);
    for (uint32_t i = 0; i < n; i++)
        key = mix(key, locs[i]);
    for (uint32_t i = 0; i < nspans; i++)
        key = mix(key, (uint64_t)spans[i].span_id[7] << 8 | spans[i].span_id[6]);
    for (size_t i = 0; i < b->npend; i++) {
        struct pending *p = &b->pend[i];
        if (p->key == key && b->pend_proc[i] == pi && p->n == n && p->nspans == nspans &&
            p->nts < 64 && memcmp(p->locs, locs, n * sizeof *locs) == 0 &&
            memcmp(p->spans, spans, nspans * sizeof *spans) == 0) {
            p->ts[p->nts++] = ts;
            return;
        }
    }
    if (b->npend == b->cap_pend) {
        b->cap_pend = b->cap_pend ? b->cap_pend * 2 : 1024;
        b->pend = realloc(b->pend, b->cap_pend * sizeof *b->pend);
        b->pend_proc = realloc(b->pend_proc, b->cap_pend * sizeof *b->pend_proc);
    }
    struct pending *p = &b->pend[b->npend];
    b->pend_proc[b->npend++] = pi;
    p->locs = sp_arena_memdup(b->a, locs, n * sizeof *locs);
    p->n = n;
    p->ts[0] = ts;
    p->nts = 1;
    memcpy(p->spans, spans, nspans * sizeof *spans);
    p->nspans = nspans;
    p->key = key;
}

static uint64_t spans_attached, samples_total;

static void new_span(builder *b, proc *p, thread_state *t, int64_t now)
{
    int nested = t->span_end > now ? 0 : rndf() < 0.5;
    double dur_ms = exp(log(20.0) + rndf() * (log(2000.0) - log(20.0)));
    if (nested) {
        /* A parent around this one, twice as long. */
        for (int i = 0; i < 8; i++)
            t->parent[i] = (uint8_t)rnd();
        for (int i = 0; i < 16; i++)
            t->trace[i] = (uint8_t)rnd();
        t->has_parent = 1;
    } else {
        t->has_parent = 0;
        for (int i = 0; i < 16; i++)
            t->trace[i] = (uint8_t)rnd();
    }
    for (int i = 0; i < 8; i++)
        t->span[i] = (uint8_t)rnd();
    t->span_end = now + (int64_t)(dur_ms * 1e6);
    int nrec = t->has_parent ? 2 : 1;
    for (int r = 0; r < nrec; r++) {
        if (b->nspans == b->cap_spans) {
            b->cap_spans = b->cap_spans ? b->cap_spans * 2 : 256;
            b->spans = realloc(b->spans, b->cap_spans * sizeof *b->spans);
        }
        sp_span *s = &b->spans[b->nspans++];
        memset(s, 0, sizeof *s);
        memcpy(s->trace_id, t->trace, 16);
        memcpy(s->span_id, r == 0 ? t->span : t->parent, 8);
        if (r == 0 && t->has_parent)
            memcpy(s->parent_span_id, t->parent, 8);
        s->service = p->service;
        s->name = span_names[rnd() % (sizeof span_names / sizeof span_names[0])];
        s->start_ns = (uint64_t)(now - (r ? (int64_t)(dur_ms * 2e5) : 0));
        s->end_ns = (uint64_t)t->span_end + (r ? (uint64_t)(dur_ms * 5e5) : 0);
        s->pid = p->pid;
        s->tid = t->tid;
    }
}

static void sample_at(builder *b, int64_t ts)
{
    int pi = pick_proc();
    proc *p = &procs[pi];
    thread_state *t = &p->threads[rnd() % (uint64_t)p->nthreads];
    const callpath *pa = &p->paths[zipf_draw(&p->pick)];
    uint32_t locs[MAX_DEPTH + 16];
    uint32_t n = 0;
    /* Leaf first: kernel part (a third of samples), leaf address, then the path up to the root. */
    if (rndf() < 0.33) {
        const callpath *k = &kernel_paths[zipf_draw(&kernel_pick)];
        locs[n++] = local_loc(b, frame_of(k->leaf_fn, SITES + zipf_draw(&leaf_pick)));
        for (int i = k->n - 1; i >= 0; i--)
            locs[n++] = local_loc(b, k->frames[i]);
        /* The syscall wrapper in libc it came from. */
        locs[n++] = local_loc(b, frame_of(lib_fn(M_LIBC, 500 + (uint64_t)(k - kernel_paths)), 1));
    } else {
        locs[n++] = local_loc(b, frame_of(pa->leaf_fn, SITES + zipf_draw(&leaf_pick)));
    }
    for (int i = pa->n - 1; i >= 0 && n < MAX_DEPTH + 15; i--)
        locs[n++] = local_loc(b, pa->frames[i]);
    /* Spans: a thread is inside a span with some probability; samples in it attach to it. */
    if (t->span_end <= ts && rndf() < 0.35)
        new_span(b, p, t, ts);
    sp_span_ref refs[2];
    uint32_t nrefs = 0;
    if (t->span_end > ts) {
        memcpy(refs[nrefs].trace_id, t->trace, 16);
        memcpy(refs[nrefs++].span_id, t->span, 8);
        if (t->has_parent) {
            memcpy(refs[nrefs].trace_id, t->trace, 16);
            memcpy(refs[nrefs++].span_id, t->parent, 8);
        }
        spans_attached++;
    }
    samples_total++;
    add_obs(b, pi, locs, n, (uint64_t)ts, refs, nrefs);
}

static void finish_request(builder *b, request *r, int64_t window_start)
{
    sp_arena *a = b->a;
    uint32_t nl = b->nlocs + 1;
    sp_location *locs = sp_arena_calloc(a, nl, sizeof *locs);
    sp_function *funcs = sp_arena_calloc(a, nl, sizeof *funcs);
    for (uint32_t i = 0; i < b->nlocs; i++) {
        locs[i + 1] = b->locs[i];
        funcs[i + 1] = b->funcs[i];
        locs[i + 1].lines = sp_arena_calloc(a, 1, sizeof(sp_line));
        locs[i + 1].lines[0].function_id = i + 1;
    }
    sp_mapping *mappings = sp_arena_calloc(a, nmaps_total + 1, sizeof *mappings);
    for (uint32_t m = 0; m < nmaps_total; m++)
        mappings[m + 1].filename = intern(maps[m].path);
    /* One profile per process that had samples. */
    int *count = calloc((size_t)nprocs, sizeof *count);
    for (size_t i = 0; i < b->npend; i++)
        count[b->pend_proc[i]]++;
    int nprof = 0;
    for (int i = 0; i < nprocs; i++)
        nprof += count[i] > 0;
    r->batch.profiles = sp_arena_calloc(a, (size_t)nprof, sizeof *r->batch.profiles);
    int k = 0;
    for (int i = 0; i < nprocs; i++) {
        if (!count[i]) {
            procs[i].profile_idx = -1;
            continue;
        }
        proc *pr = &procs[i];
        sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
        p->type_id = CPU_TYPE;
        p->name = "process_cpu";
        p->period = SEC / hz;
        p->time_nanos = window_start;
        p->duration_nanos = WINDOW_NS;
        p->locations = locs;
        p->nlocations = nl;
        p->functions = funcs;
        p->nfunctions = nl;
        p->mappings = mappings;
        p->nmappings = nmaps_total + 1;
        p->samples = sp_arena_calloc(a, (size_t)count[i], sizeof *p->samples);
        p->nseries = 4;
        p->series = sp_arena_calloc(a, 4, sizeof *p->series);
        char pid[24];
        snprintf(pid, sizeof pid, "%" PRId64, pr->pid);
        p->series[0] = (sp_kv){"__name__", "process_cpu"};
        p->series[1] = (sp_kv){"host_name", "bench-host-1"};
        p->series[2] = (sp_kv){"process_pid", sp_arena_strndup(a, pid, strlen(pid))};
        p->series[3] = (sp_kv){"service_name", pr->service};
        pr->profile_idx = k;
        r->batch.profiles[k++] = p;
    }
    r->batch.nprofiles = (size_t)nprof;
    for (size_t i = 0; i < b->npend; i++) {
        struct pending *pe = &b->pend[i];
        proc *pr = &procs[b->pend_proc[i]];
        sp_profile *p = r->batch.profiles[pr->profile_idx];
        sp_sample *s = &p->samples[p->nsamples++];
        s->location_ids = sp_arena_alloc(a, pe->n * sizeof *s->location_ids);
        for (uint32_t j = 0; j < pe->n; j++)
            s->location_ids[j] = pe->locs[j] + 1;
        s->nlocations = pe->n;
        s->nobs = pe->nts;
        s->timestamps = sp_arena_memdup(a, pe->ts, pe->nts * sizeof *s->timestamps);
        s->values = sp_arena_alloc(a, pe->nts * sizeof *s->values);
        for (uint32_t j = 0; j < pe->nts; j++)
            s->values[j] = SEC / hz;
        s->value = (int64_t)pe->nts * (SEC / hz);
        s->pid = pr->pid;
        if (pe->nspans) {
            s->spans = sp_arena_memdup(a, pe->spans, pe->nspans * sizeof *s->spans);
            s->nspans = pe->nspans;
        }
        r->nsamples += pe->nts;
    }
    free(count);
    r->batch.spans = b->nspans ? sp_arena_memdup(a, b->spans, b->nspans * sizeof *b->spans) : NULL;
    r->batch.nspans = b->nspans;
    r->batch.tenant = "bench";
    r->batch.arena = a;
    r->arena = a;
}

/* ---- writing ----------------------------------------------------------------------------------
 */

static request *reqs;
static size_t nreqs;
static size_t next_req;
static pthread_mutex_t next_mu = PTHREAD_MUTEX_INITIALIZER;
static store *the_store;
static int write_failures;

static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&next_mu);
        size_t i = next_req++;
        pthread_mutex_unlock(&next_mu);
        if (i >= nreqs)
            return NULL;
        sp_err err = {0};
        int rc = store_write(the_store, &reqs[i].batch, &err);
        if (rc) {
            fprintf(stderr, "write %zu: %s\n", i, err.msg);
            __atomic_add_fetch(&write_failures, 1, __ATOMIC_RELAXED);
        }
    }
}

static void table_report(const char *dir, uint64_t samples)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return;
    const char *counts[] = {"stack",      "location", "function", "sample_chunk",
                            "span_chunk", "span",     "series"};
    printf("rows:");
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", counts[i]);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            printf(" %s=%lld", counts[i], (long long)sqlite3_column_int64(st, 0));
        sqlite3_finalize(st);
    }
    printf("\n");
    sqlite3_close(db);
    bench_dbstat_report(dir, "sample", samples, 0.05, 1);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_store [--cpus N] [--hz N] [--minutes N] [--procs N] "
                    "[--writers N] [--queries N] [--durability normal|full] [--dir DIR] "
                    "[--keep] [--seed N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0) {
            keep = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--cpus") == 0)
            cpus = atoi(v);
        else if (strcmp(a, "--hz") == 0)
            hz = atoi(v);
        else if (strcmp(a, "--minutes") == 0)
            minutes = atoi(v);
        else if (strcmp(a, "--procs") == 0)
            nprocs = atoi(v);
        else if (strcmp(a, "--writers") == 0)
            writers = atoi(v);
        else if (strcmp(a, "--queries") == 0)
            nqueries = atoi(v);
        else if (strcmp(a, "--seed") == 0)
            seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--dir") == 0)
            dir_arg = v;
        else if (strcmp(a, "--durability") == 0)
            durability = strcmp(v, "full") == 0 ? STORE_DURABILITY_FULL : STORE_DURABILITY_NORMAL;
        else
            usage();
    }
    if (cpus < 1 || hz < 1 || minutes < 1 || nprocs < 1 || writers < 1)
        usage();
    rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;
    intern("");

    /* ---- generate ---- */
    double g0 = bench_mono_s();
    procs_init();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t end = (int64_t)wall.tv_sec * SEC;
    int64_t start = end - (int64_t)minutes * 60 * SEC;
    nreqs = (size_t)((end - start) / WINDOW_NS);
    reqs = calloc(nreqs, sizeof *reqs);
    builder b;
    memset(&b, 0, sizeof b);
    int64_t tick = SEC / hz;
    for (size_t w = 0; w < nreqs; w++) {
        int64_t ws = start + (int64_t)w * WINDOW_NS;
        b.a = sp_arena_new(0);
        b.stamp++;
        b.nlocs = 0;
        b.npend = 0;
        b.nspans = 0;
        for (int64_t t = ws; t < ws + WINDOW_NS; t += tick)
            for (int c = 0; c < cpus; c++)
                if (rndf() < 0.7) /* 30 % idle */
                    sample_at(&b, t + (int64_t)(rnd() % 1000000));
        finish_request(&b, &reqs[w], ws);
    }
    /* Profiles point at the global string table, final now that generation is over. */
    for (size_t w = 0; w < nreqs; w++)
        for (size_t k = 0; k < reqs[w].batch.nprofiles; k++) {
            sp_profile *p = reqs[w].batch.profiles[k];
            p->strings = (const char **)strs;
            p->string_lens = str_lens;
            p->nstrings = nstrs;
        }
    double gen_s = bench_mono_s() - g0;

    /* ---- write ---- */
    char dir[512];
    if (dir_arg) {
        snprintf(dir, sizeof dir, "%s", dir_arg);
    } else {
        snprintf(dir, sizeof dir, "/tmp/bench_store_XXXXXX");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            return 1;
        }
    }
    store_options o = {0};
    o.data_dir = dir;
    o.durability = durability;
    o.retention_interval_ns = -1;
    sp_err err = {0};
    if (store_open_sqlite(&the_store, &o, &err) != 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double w0 = bench_mono_s();
    pthread_t *th = calloc((size_t)writers, sizeof *th);
    for (int i = 0; i < writers; i++)
        pthread_create(&th[i], NULL, writer_main, NULL);
    for (int i = 0; i < writers; i++)
        pthread_join(th[i], NULL);
    double write_s = bench_mono_s() - w0;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                   (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                   (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                   (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    store_stats stats;
    store_stats_get(the_store, &stats);
    store_close(the_store); /* checkpoints (TRUNCATE): the WAL is folded into the database */
    int64_t db_bytes = bench_file_size(dir, "spanprof.db");
    int64_t wal_bytes = bench_file_size(dir, "spanprof.db-wal");

    uint64_t nspans_total = 0;
    for (size_t w = 0; w < nreqs; w++)
        nspans_total += reqs[w].batch.nspans;

    /* ---- query ---- */
    if (store_open_sqlite(&the_store, &o, &err) != 0) {
        fprintf(stderr, "reopen: %s\n", err.msg);
        return 1;
    }
    /* Span ids that got samples, picked at random. */
    uint8_t(*ids)[8] = calloc((size_t)nqueries, 8);
    int64_t *id_ts = calloc((size_t)nqueries, sizeof *id_ts);
    int nids = 0;
    for (int tries = 0; nids < nqueries && tries < nqueries * 50; tries++) {
        request *r = &reqs[rnd() % nreqs];
        if (!r->batch.nprofiles)
            continue;
        sp_profile *p = r->batch.profiles[rnd() % r->batch.nprofiles];
        if (!p->nsamples)
            continue;
        sp_sample *s = &p->samples[rnd() % p->nsamples];
        if (!s->nspans)
            continue;
        id_ts[nids] = (int64_t)s->timestamps[0];
        memcpy(ids[nids++], s->spans[0].span_id, 8);
    }
    double *lat = calloc((size_t)(nids ? nids : 1), sizeof *lat);
    uint64_t frames_seen = 0, stacks_seen = 0;
    sp_arena *qa = sp_arena_new(0);
    store_query q = {.tenant = "bench", .type_id = CPU_TYPE};
    double q0 = bench_mono_s();
    for (int i = 0; i < nids; i++) {
        sp_arena_reset(qa);
        store_stacks st;
        double t0 = bench_mono_s();
        if (store_span_stacks(the_store, &q, (const uint8_t(*)[8])ids[i], 1, qa, &st, &err)) {
            fprintf(stderr, "span query: %s\n", err.msg);
            return 1;
        }
        lat[i] = bench_mono_s() - t0;
        stacks_seen += st.nstacks;
        for (size_t k = 0; k < st.nstacks; k++)
            frames_seen += st.stacks[k].nframes;
    }
    double query_s = bench_mono_s() - q0;
    qsort(lat, (size_t)nids, sizeof *lat, bench_cmp_double);
    /* The same spans as Grafana asks for them: with the span's time +- 30 s. */
    double *lat_r = calloc((size_t)(nids ? nids : 1), sizeof *lat_r);
    double qr0 = bench_mono_s();
    for (int i = 0; i < nids; i++) {
        sp_arena_reset(qa);
        store_stacks st;
        store_query qr = {.tenant = "bench",
                          .type_id = CPU_TYPE,
                          .start_ns = id_ts[i] - 30 * SEC,
                          .end_ns = id_ts[i] + 30 * SEC};
        double t0 = bench_mono_s();
        if (store_span_stacks(the_store, &qr, (const uint8_t(*)[8])ids[i], 1, qa, &st, &err)) {
            fprintf(stderr, "span query: %s\n", err.msg);
            return 1;
        }
        lat_r[i] = bench_mono_s() - t0;
    }
    double query_r_s = bench_mono_s() - qr0;
    qsort(lat_r, (size_t)nids, sizeof *lat_r, bench_cmp_double);
    /* For scale: one service's merged flame graph over the whole range. */
    store_matcher m = {"service_name", procs[0].service, STORE_MATCH_EQ};
    store_query qs = {.tenant = "bench", .type_id = CPU_TYPE, .matchers = &m, .nmatchers = 1};
    sp_arena_reset(qa);
    store_stacks all;
    double s0 = bench_mono_s();
    store_select_stacks(the_store, &qs, qa, &all, &err);
    double select_s = bench_mono_s() - s0;
    store_close(the_store);
    sp_arena_free(qa);

    /* ---- report ---- */
    uint64_t samples = 0;
    for (size_t w = 0; w < nreqs; w++)
        samples += reqs[w].nsamples;
    int threads_total = 0;
    for (int i = 0; i < nprocs; i++)
        threads_total += procs[i].nthreads;
    printf("load: 1 host, %d CPUs at %d Hz (30%% idle), %d min simulated, %d processes "
           "(%d binaries), %d threads, %zu requests of 5 s\n",
           cpus, hz, minutes, nprocs, NBINARIES < nprocs ? NBINARIES : nprocs, threads_total,
           nreqs);
    printf("samples: %" PRIu64 " (%.1f%% attached to spans), spans: %" PRIu64
           ", generation %.2f s (not timed below)\n",
           samples, 100.0 * (double)spans_attached / (double)samples_total, nspans_total, gen_s);
    printf("ingest: %d writer threads, durability %s: %.2f s, %.0f samples/s (%.0f hosts' worth "
           "of this load), %" PRIu64 " transactions for %" PRIu64 " batches, failures %d\n",
           writers, durability == STORE_DURABILITY_FULL ? "full" : "normal", write_s,
           (double)samples / write_s, (double)samples / write_s / ((double)cpus * hz * 0.7),
           stats.transactions, stats.batches_committed, write_failures);
    printf(
        "ingest CPU: %.2f s user+sys = %.1f us per stored sample (%.0f samples per CPU-second)\n",
        cpu_s, cpu_s * 1e6 / (double)samples, (double)samples / cpu_s);
    printf("disk: db %" PRId64 " B + wal %" PRId64 " B after checkpoint = %.1f bytes per stored "
           "sample\n",
           db_bytes, wal_bytes, (double)(db_bytes + wal_bytes) / (double)samples);
    table_report(dir, samples);
    printf("spans per sample %.2f: the span index costs (span + span_by_trace) / that per span\n",
           (double)nspans_total / (double)samples);
    if (nids)
        printf("span-stack query (1 span id, %d queries): mean %.3f ms, p50 %.3f ms, p99 %.3f ms, "
               "max %.3f ms; %.1f stacks and %.0f frames per answer\n",
               nids, query_s / nids * 1e3, lat[nids / 2] * 1e3, lat[(int)(nids * 0.99)] * 1e3,
               lat[nids - 1] * 1e3, (double)stacks_seen / nids, (double)frames_seen / nids);
    if (nids)
        printf("span-stack query with Grafana's range (span time +- 30 s): mean %.3f ms, p50 %.3f "
               "ms, p99 %.3f ms, max %.3f ms\n",
               query_r_s / nids * 1e3, lat_r[nids / 2] * 1e3, lat_r[(int)(nids * 0.99)] * 1e3,
               lat_r[nids - 1] * 1e3);
    printf("select_stacks service_name=\"%s\" over %d min: %.1f ms, %zu stacks, total %" PRId64
           "\n",
           procs[0].service, minutes, select_s * 1e3, all.nstacks, all.total);
    if (!keep && !dir_arg)
        bench_rm_tree(dir);
    else
        printf("data kept in %s\n", dir);
    for (size_t w = 0; w < nreqs; w++)
        sp_arena_free(reqs[w].arena);
    free(reqs);
    free(th);
    free(ids);
    free(id_ts);
    free(lat);
    free(lat_r);
    free(b.frame_local);
    free(b.frame_stamp);
    free(b.locs);
    free(b.funcs);
    free(b.pend);
    free(b.pend_proc);
    free(b.spans);
    return write_failures ? 1 : 0;
}
