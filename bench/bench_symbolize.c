/* bench_symbolize: naming native frames at query time (symbolizer/ behind the store's
 * store_symbolizer seam and its `symbol` cache table): a cold and a warm query over a flame graph
 * of 10,000 distinct native frames.
 *
 * At run time, in a fresh temp dir: a C program of F functions (each calling the next three, so
 * there are call sites, with a helper inlined into every one of them) is written and compiled
 * with `cc -g -O1`; its debug info is split with objcopy --only-keep-debug into a symbols dir in
 * the `.build-id/xx/rest.debug` layout. A addresses are taken inside each function, spread over
 * its bytes (nm -S gives its start and size; F x A = 2,500 x 4 = 10,000). Batches of
 * eBPF-profiler-like profiles are written through store_write(): native locations without lines, a
 * mapping with the build id, S stacks of D frames that between them use every address. Then, timed:
 *   baseline  the query on a store without a symbolizer (frames stay "native 0x... libsym.so");
 *   no file   the same with a symbolizer that has no debug file for the build id (what the seam
 *             costs when nothing can be named: the eBPF profiler's libc without debuginfod);
 *   cold      the first store_select_stacks() with the symbolizer: every address is a lookup
 *             in the debug file (libdw);
 *   named     (only with a --budget-ms below the ELF work) the next queries, until every
 *             frame is named;
 *   warm      the same query once the store's writer kept every name (SELECT count(*) FROM
 *             symbol polled on a separate connection until it reaches the address count);
 *   reopened  the store closed and opened again with a fresh symbolizer: names come from the
 *             symbol table alone (checked: elf_lookups stays 0).
 *
 *   bench_symbolize [--functions 2500] [--per-function 4] [--depth 8] [--warm 5] [--runs 1]
 *                   [--budget-ms 600000] [--dir DIR] [--keep]
 */
#include "../storage-adapter/store.h"
#include "../symbolizer/symbolizer.h"
#include "bench_util.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEC      1000000000LL
#define CPU_TYPE "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define BUILD_ID "b0b0c0c0d0d0e0e0f0f000112233445566778899"
#define BATCHES  5

static int nfuncs = 2500, per_func = 4, depth = 8, warm_runs = 5, runs = 1, keep = 0;
static int64_t budget_ms = 600000;
static const char *dir_arg = NULL;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_symbolize: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        die("`%s` failed", cmd);
}

/* ---- the program and its addresses ----------------------------------------------------------- */

static void write_program(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s", path);
    fprintf(f, "#define NOINL __attribute__((noinline))\n"
               "static volatile unsigned sink_v;\n"
               "NOINL unsigned sink(unsigned x) { sink_v += x; return sink_v; }\n"
               "static inline __attribute__((always_inline)) unsigned stir(unsigned x, "
               "unsigned k)\n{\n    if (x %% 7 == k %% 7)\n        x += sink(x);\n"
               "    return x * 2654435761u + k;\n}\n");
    for (int i = 0; i < nfuncs; i++)
        fprintf(f, "NOINL unsigned f%d(unsigned x);\n", i);
    for (int i = 0; i < nfuncs; i++) {
        fprintf(f, "NOINL unsigned f%d(unsigned x)\n{\n    unsigned r = stir(x, %du);\n", i, i);
        for (int k = 1; k <= 3; k++)
            if (i + k < nfuncs)
                fprintf(f, "    if (x & %d)\n        r %s f%d(x %s %d);\n", 1 << (k - 1),
                        k == 2 ? "^=" : "+=", i + k, k == 1 ? ">>" : "+", k);
        fprintf(f, "    return r;\n}\n");
    }
    fprintf(f, "int main(int argc, char **argv)\n{\n    (void)argv;\n"
               "    return (int)f0((unsigned)argc);\n}\n");
    if (fclose(f) != 0)
        die("cannot write %s", path);
}

/* per_func distinct addresses inside each f<i> (nm -S: start and size), spread over its bytes. */
static uint64_t *pick_addresses(const char *exe, size_t *n)
{
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "nm -S --defined-only %s", exe);
    FILE *p = popen(cmd, "r");
    if (!p)
        die("cannot run nm");
    uint64_t *out = calloc((size_t)nfuncs * (size_t)per_func, sizeof *out);
    size_t k = 0;
    while (out && fgets(line, sizeof line, p)) {
        unsigned long long a, s;
        char type, name[256];
        int idx;
        if (sscanf(line, "%llx %llx %c %255s", &a, &s, &type, name) != 4 || (type != 'T') ||
            sscanf(name, "f%d", &idx) != 1 || s < (unsigned long long)per_func)
            continue;
        for (int j = 0; j < per_func; j++)
            out[k++] = a + s * (unsigned long long)j / (unsigned long long)per_func;
    }
    pclose(p);
    if (!out || k != (size_t)nfuncs * (size_t)per_func)
        die("nm found %zu addresses in f0..f%d, wanted %d", k, nfuncs - 1, nfuncs * per_func);
    *n = k;
    return out;
}

/* ---- the store's seam: the symbolizer's frames as the store's (as app/symbols.c does) -------- */

static int seam_wait(void *ctx, int64_t deadline_ns, uint64_t since)
{
    return sym_wait(ctx, deadline_ns, since);
}

static uint64_t seam_arrivals(void *ctx)
{
    return sym_arrivals(ctx);
}

static int seam_lookup(void *ctx, const char *build_id, uint64_t address, int64_t deadline_ns,
                       sp_arena *a, store_sym_frame **frames, size_t *n)
{
    sym_frame *f = NULL;
    size_t nf = 0;
    int rc = sym_lookup(ctx, build_id, address, deadline_ns, a, &f, &nf);
    *frames = NULL;
    *n = 0;
    if (rc < 0)
        return rc;
    if (rc != SYM_FOUND)
        return rc == SYM_NONE ? STORE_SYM_NONE : STORE_SYM_LATER;
    store_sym_frame *out = sp_arena_calloc(a, nf, sizeof *out);
    if (!out)
        return SP_ENOMEM;
    for (size_t i = 0; i < nf; i++)
        out[i] = (store_sym_frame){f[i].function, f[i].file, f[i].line, f[i].start_line};
    *frames = out;
    *n = nf;
    return STORE_SYM_FOUND;
}

static store *open_store(const char *dir, const store_symbolizer *seam)
{
    store_options o = {0};
    o.data_dir = dir;
    o.retention_interval_ns = -1;
    o.symbolizer = seam;
    store *s = NULL;
    sp_err err = {0};
    if (store_open_sqlite(&s, &o, &err))
        die("store_open_sqlite: %s", err.msg);
    return s;
}

static symbolizer *open_symbolizer(const char *symbols_dir)
{
    sym_options o = {0};
    o.symbols_dir = symbols_dir;
    o.debuginfod_urls = ""; /* local files only */
    symbolizer *s = NULL;
    sp_err err = {0};
    if (sym_open(&s, &o, &err))
        die("sym_open: %s", err.msg);
    return s;
}

/* ---- the load: eBPF-profiler-like batches ---------------------------------------------------- */

static const char *const strings[] = {"", "native", "/usr/lib/bench/libsym.so", BUILD_ID};
enum { S_NATIVE = 1, S_FILE = 2, S_BUILD_ID = 3 };

/* Stack j: per_func addresses of its own (j, j + S, j + 2S, ... for S stacks: in different
 * functions) leaf first, then random ones, depth frames in all; every address is used. */
static void write_load(store *s, const uint64_t *addrs, size_t naddrs, int64_t t0)
{
    size_t own = (size_t)per_func, nstacks = (naddrs + own - 1) / own;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (int b = 0; b < BATCHES; b++) {
        sp_arena *a = sp_arena_new(0);
        sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
        p->type_id = CPU_TYPE;
        p->name = "process_cpu";
        p->period = 50000000;
        p->time_nanos = t0 + b * 10 * SEC;
        p->duration_nanos = 10 * SEC;
        p->strings = (const char **)strings;
        p->nstrings = sizeof strings / sizeof strings[0];
        p->nfunctions = 1;
        p->functions = sp_arena_calloc(a, 1, sizeof *p->functions);
        p->nmappings = 2;
        p->mappings = sp_arena_calloc(a, 2, sizeof *p->mappings);
        p->mappings[1] = (sp_mapping){.memory_start = 0x7f0000000000,
                                      .memory_limit = 0x7f0000100000,
                                      .filename = S_FILE,
                                      .build_id = S_BUILD_ID};
        p->nlocations = (uint32_t)naddrs + 1;
        p->locations = sp_arena_calloc(a, p->nlocations, sizeof *p->locations);
        for (size_t i = 0; i < naddrs; i++)
            p->locations[i + 1] =
                (sp_location){.mapping_id = 1, .address = addrs[i], .frame_type = S_NATIVE};
        size_t lo = nstacks * (size_t)b / BATCHES, hi = nstacks * (size_t)(b + 1) / BATCHES;
        p->samples = sp_arena_calloc(a, hi - lo, sizeof *p->samples);
        for (size_t j = lo; j < hi; j++) {
            sp_sample *sm = &p->samples[p->nsamples++];
            sm->location_ids = sp_arena_calloc(a, (size_t)depth, sizeof *sm->location_ids);
            for (int d = 0; d < depth; d++) {
                size_t k = j + (size_t)d * nstacks;
                if ((size_t)d >= own || k >= naddrs)
                    k = bench_xorshift64star(&rng) % naddrs;
                sm->location_ids[sm->nlocations++] = (uint32_t)k + 1;
            }
            sm->value = (int64_t)(1 + j % 7) * p->period;
        }
        sp_kv labels[] = {{"service_name", "bench-symbolize"}};
        sp_batch batch = {.tenant = NULL, .arena = a};
        sp_err err = {0};
        if (sp_profile_set_series(p, a, "process_cpu", labels, 1) ||
            sp_batch_add_profile(&batch, p) || store_write(s, &batch, &err))
            die("store_write: %s", err.msg);
        sp_arena_free(a);
    }
}

/* ---- the queries ----------------------------------------------------------------------------- */

typedef struct answer {
    double ms, cpu_ms; /* wall; CPU of the calling thread */
    size_t stacks;
    uint32_t names, unresolved, unnamed; /* unnamed: names still "native 0x..." */
} answer;

static answer query(store *s, int64_t t0)
{
    store_query q = {.type_id = CPU_TYPE, .start_ns = t0 - 3600 * SEC};
    sp_arena *a = sp_arena_new(0);
    store_stacks out;
    sp_err err = {0};
    double t = bench_mono_s(), c = bench_thread_cpu_s();
    if (store_select_stacks(s, &q, a, &out, &err))
        die("store_select_stacks: %s", err.msg);
    answer r = {(bench_mono_s() - t) * 1e3,
                (bench_thread_cpu_s() - c) * 1e3,
                out.nstacks,
                out.nnames,
                out.unresolved,
                0};
    for (uint32_t i = 0; i < out.nnames; i++)
        if (strncmp(out.names[i], "native 0x", 9) == 0)
            r.unnamed++;
    sp_arena_free(a);
    return r;
}

static int64_t symbol_rows(const char *dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/spanprof.db", dir);
    sqlite3 *db = NULL;
    int64_t n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 1000);
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM symbol", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void print_answer(const char *what, answer r, uint64_t elf_lookups)
{
    printf("%-9s %9.1f ms  (%.1f ms CPU) %zu stacks, %u frame names (%u unnamed), %u unresolved, "
           "%" PRIu64 " ELF lookups\n",
           what, r.ms, r.cpu_ms, r.stacks, r.names, r.unnamed, r.unresolved, elf_lookups);
}

/* One cycle in a fresh store under root: fill, baseline, cold, warm, reopened. */
static void cycle(const char *root, const char *symbols, const uint64_t *addrs, size_t naddrs)
{
    char data[1024];
    snprintf(data, sizeof data, "%s/data", root);
    bench_rm_tree(data);
    int64_t t0 = (int64_t)time(NULL) * SEC - 600 * SEC;
    store *s = open_store(data, NULL);
    double t = bench_mono_s();
    write_load(s, addrs, naddrs, t0);
    printf("fill      %9.1f ms  %d batches\n", (bench_mono_s() - t) * 1e3, BATCHES);
    double *ms = calloc((size_t)warm_runs, sizeof *ms);
    answer w = {0};
    for (int i = 0; i < warm_runs; i++) {
        w = query(s, t0);
        ms[i] = w.ms;
    }
    print_answer("baseline", w, 0);
    bench_print_latency("baseline query", ms, warm_runs);
    store_close(s);

    /* The seam's cost when no debug file is to be had (the eBPF profiler's libc, say): every
     * native frame is looked for in the symbol table and asked of the symbolizer, which answers
     * "later" from its registry. */
    char none[1100];
    snprintf(none, sizeof none, "%s/no-symbols", root);
    mkdir(none, 0755);
    symbolizer *nosym = open_symbolizer(none);
    store_symbolizer noseam = {seam_lookup, nosym, budget_ms * 1000000, seam_wait, seam_arrivals};
    s = open_store(data, &noseam);
    for (int i = 0; i < warm_runs; i++) {
        w = query(s, t0);
        ms[i] = w.ms;
    }
    print_answer("no file", w, 0);
    bench_print_latency("no-file query", ms, warm_runs);
    store_close(s);
    sym_close(nosym);

    symbolizer *sym = open_symbolizer(symbols);
    store_symbolizer seam = {seam_lookup, sym, budget_ms * 1000000, seam_wait, seam_arrivals};
    s = open_store(data, &seam);
    sym_stats st;
    answer cold = query(s, t0);
    sym_stats_get(sym, &st);
    print_answer("cold", cold, st.elf_lookups);
    /* With a budget smaller than the ELF work, later queries name the rest. */
    answer more = cold;
    int nq = 1;
    double more_ms = cold.ms;
    while (more.unresolved && nq < 1000) {
        more = query(s, t0);
        more_ms += more.ms;
        nq++;
    }
    if (nq > 1)
        printf("named     %9.1f ms  in %d queries of a %" PRId64 " ms budget\n", more_ms, nq,
               budget_ms);
    sym_stats_get(sym, &st);
    uint64_t after_cold = st.elf_lookups;
    double t1 = bench_mono_s();
    int64_t rows = 0;
    while ((rows = symbol_rows(data)) < (int64_t)naddrs && bench_mono_s() - t1 < 120)
        usleep(10000);
    printf("kept      %9.1f ms  until %" PRId64 " symbol rows were committed\n",
           (bench_mono_s() - t1) * 1e3, rows);
    for (int i = 0; i < warm_runs; i++) {
        w = query(s, t0);
        ms[i] = w.ms;
    }
    sym_stats_get(sym, &st);
    print_answer("warm", w, st.elf_lookups - after_cold);
    bench_print_latency("warm query", ms, warm_runs);
    store_close(s);
    sym_close(sym);

    sym = open_symbolizer(symbols);
    seam.ctx = sym;
    s = open_store(data, &seam);
    for (int i = 0; i < warm_runs; i++) {
        w = query(s, t0);
        ms[i] = w.ms;
    }
    sym_stats_get(sym, &st);
    print_answer("reopened", w, st.elf_lookups);
    bench_print_latency("reopened query", ms, warm_runs);
    if (st.elf_lookups != 0 || w.unresolved != 0)
        die("after reopening, %" PRIu64 " ELF lookups and %u unresolved (expected 0)",
            st.elf_lookups, w.unresolved);
    free(ms);
    store_close(s);
    sym_close(sym);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_symbolize [--functions N] [--per-function N] [--depth N] "
                    "[--warm N] [--runs N] [--budget-ms N] [--dir DIR] [--keep]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--keep") == 0) {
            keep = 1;
            continue;
        }
        if (!v)
            usage();
        if (strcmp(a, "--functions") == 0)
            nfuncs = atoi(v);
        else if (strcmp(a, "--per-function") == 0)
            per_func = atoi(v);
        else if (strcmp(a, "--depth") == 0)
            depth = atoi(v);
        else if (strcmp(a, "--warm") == 0)
            warm_runs = atoi(v);
        else if (strcmp(a, "--runs") == 0)
            runs = atoi(v);
        else if (strcmp(a, "--budget-ms") == 0)
            budget_ms = atoll(v);
        else if (strcmp(a, "--dir") == 0)
            dir_arg = v;
        else
            usage();
        i++;
    }
    if (nfuncs < 1 || per_func < 1 || depth < per_func || warm_runs < 1 || runs < 1)
        usage();
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    char root[512];
    if (dir_arg) {
        snprintf(root, sizeof root, "%s", dir_arg);
        mkdir(root, 0755);
    } else {
        snprintf(root, sizeof root, "/tmp/bench_symbolize_XXXXXX");
        if (!mkdtemp(root))
            die("mkdtemp failed");
    }
    char src[600], exe[600], symbols[600];
    snprintf(src, sizeof src, "%s/prog.c", root);
    snprintf(exe, sizeof exe, "%s/prog", root);
    snprintf(symbols, sizeof symbols, "%s/symbols", root);
    write_program(src);
    double t = bench_mono_s();
    sh("cc -g -O1 -Wl,--build-id=0x%s -o %s %s", BUILD_ID, exe, src);
    double compile_s = bench_mono_s() - t;
    sh("mkdir -p %s/.build-id/%.2s && objcopy --only-keep-debug %s %s/.build-id/%.2s/%s.debug",
       symbols, BUILD_ID, exe, symbols, BUILD_ID, &BUILD_ID[2]);
    size_t naddrs = 0;
    uint64_t *addrs = pick_addresses(exe, &naddrs);
    char dbg[700];
    snprintf(dbg, sizeof dbg, "%s/.build-id/%.2s/%s.debug", symbols, BUILD_ID, &BUILD_ID[2]);
    struct stat sb;
    stat(dbg, &sb);
    printf("bench_symbolize: %d functions compiled in %.1f s (cc -g -O1), debug file %lld KiB; "
           "%zu addresses (%d per function), %zu stacks of %d frames in %d batches; dir %s\n",
           nfuncs, compile_s, (long long)sb.st_size / 1024, naddrs, per_func,
           (naddrs + (size_t)per_func - 1) / (size_t)per_func, depth, BATCHES, root);
    for (int r = 0; r < runs; r++) {
        if (runs > 1)
            printf("-- run %d\n", r + 1);
        cycle(root, symbols, addrs, naddrs);
    }
    free(addrs);
    if (!keep)
        bench_rm_tree(root);
    return 0;
}
