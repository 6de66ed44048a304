/* JFR → sp_profile, the output side: what crosses chunks is interned by value (function names,
 * locations, stacks, sample keys), and at the end every sample type becomes one sp_profile over
 * shared tables. jfr.c reads the chunks and calls in here for each sample event.
 *
 * Invariants (tests/unit/test_otlp_jfr.c, tests/fuzz/fuzz_jfr.c):
 *  B1. Id 0 of functions, locations and stacks is unused (profile.h); ids are dense from 1, and
 *      every id handed out is below its table's count (J4 in jfr.c).
 *  B2. A function is one name, a location one (function, line, frame kind), a stack one list of
 *      locations, a sample one (kind, stack, thread, context id, span, trace): equal keys from
 *      different chunks land on the same id, so a recording of many chunks adds up.
 *  B3. Observation values are never negative and samples sum them with saturation, so a sum is
 *      min(true sum, INT64_MAX) in any order and a sample's value equals the saturated sum of its
 *      per-observation values, scaled or not; each observation keeps its timestamp, its value
 *      only where a sample's values differ.
 */
#include "jfr_impl.h"

#include <inttypes.h>
#include <stdio.h>

/* One output profile: a value column of a kind. The table order is the result's order. */
static const struct ptype {
    uint8_t kind, col;
    const char *name, *type, *unit, *ptype, *punit;
} ptypes[] = {
    {K_CPU, 0, "process_cpu", "cpu", "nanoseconds", "cpu", "nanoseconds"},
    {K_WALL, 0, "wall", "wall", "nanoseconds", "wall", "nanoseconds"},
    {K_TLAB_NEW, 0, "memory", "alloc_in_new_tlab_objects", "count", "space", "bytes"},
    {K_TLAB_NEW, 1, "memory", "alloc_in_new_tlab_bytes", "bytes", "space", "bytes"},
    {K_TLAB_OUT, 0, "memory", "alloc_outside_tlab_objects", "count", "space", "bytes"},
    {K_TLAB_OUT, 1, "memory", "alloc_outside_tlab_bytes", "bytes", "space", "bytes"},
    {K_ALLOC_SAMPLE, 0, "memory", "alloc_sample_objects", "count", "space", "bytes"},
    {K_ALLOC_SAMPLE, 1, "memory", "alloc_sample_bytes", "bytes", "space", "bytes"},
    {K_LIVE, 0, "memory", "live", "count", "objects", "count"},
    {K_LOCK, 0, "mutex", "contentions", "count", "mutex", "count"},
    {K_LOCK, 1, "mutex", "delay", "nanoseconds", "mutex", "count"},
    {K_PARK, 0, "block", "contentions", "count", "block", "count"},
    {K_PARK, 1, "block", "delay", "nanoseconds", "block", "count"},
    {K_MALLOC, 0, "memory", "malloc_objects", "count", "", ""},
    {K_MALLOC, 1, "memory", "malloc_bytes", "bytes", "", ""},
};
#define NPTYPES (sizeof ptypes / sizeof ptypes[0])

int jfr_too_big(jfr_ctx *c)
{
    return sp_fail(c->err, SP_ETOOBIG, "recording too large for the memory budget");
}

void *jfr_grow(sp_arena *a, void *p, uint32_t n, uint32_t *cap, size_t sz)
{
    if (n + 1 < *cap)
        return p;
    uint32_t c = *cap ? *cap * 2 : 64;
    if (c <= *cap)
        return NULL;
    void *x = sp_arena_alloc(a, (size_t)c * sz);
    if (x && n)
        memcpy(x, p, (size_t)n * sz);
    if (x)
        *cap = c;
    return x;
}

/* ---------- names, functions, locations, stacks ---------- */

static int intern(jfr_build *b, jfr_str s, uint32_t *idx)
{
    *idx = 0;
    if (!s.n)
        return 0;
    if (!jfr_utf8_valid(s)) {
        char *tmp = sp_arena_alloc(b->c.work, s.n);
        if (!tmp)
            return jfr_too_big(&b->c);
        s = (jfr_str){tmp, (uint32_t)jfr_utf8_clean(s, tmp)};
    }
    *idx = sp_strtab_intern(&b->st, s.s, s.n);
    return *idx ? 0 : jfr_too_big(&b->c);
}

static jfr_str symbol(const jfr_ctx *c, uint64_t key)
{
    const jfr_val *v = jfr_pool_get(&c->pools.symbols, key);
    return v ? jfr_text(c, v) : (jfr_str){"", 0};
}

/* "<class>.<method>" for a method key (jfr-parser pprof.go addStacktrace); 0 when the method or
 * its class is not in the pools. */
static int function_of(jfr_build *b, uint64_t key, uint32_t *fid)
{
    jfr_ctx *c = &b->c;
    uint32_t v = jfr_map_get(&b->func_cache, key);
    if (v) {
        *fid = v == JFR_MISSING ? 0 : v;
        return 0;
    }
    const jfr_method *m = jfr_pool_get(&c->pools.methods, key);
    const uint64_t *cls = m ? jfr_pool_get(&c->pools.classes, m->cls) : NULL;
    *fid = 0;
    if (cls) {
        jfr_str cn = symbol(c, *cls), mn = symbol(c, m->name);
        size_t need = (size_t)cn.n + mn.n + 1;
        if (need > b->capname) {
            b->capname = need * 2;
            if (!(b->name = sp_arena_alloc(c->work, b->capname)))
                return jfr_too_big(c);
        }
        size_t n = jfr_name_merge(cn, b->name);
        b->name[n++] = '.';
        n += jfr_name_merge(mn, b->name + n);
        uint32_t s;
        int rc = intern(b, (jfr_str){b->name, (uint32_t)n}, &s);
        if (rc)
            return rc;
        *fid = jfr_map_get(&b->func_by_name, s);
        if (!*fid) {
            uint32_t *x = jfr_grow(c->work, b->fname, b->nfuncs, &b->capfuncs, sizeof *x);
            if (!x)
                return jfr_too_big(c);
            b->fname = x;
            *fid = b->nfuncs++;
            b->fname[*fid] = s;
            if (jfr_map_put(&b->func_by_name, c->work, s, *fid))
                return jfr_too_big(c);
        }
    }
    return jfr_map_put(&b->func_cache, c->chunk, key, *fid ? *fid : JFR_MISSING) ? jfr_too_big(c)
                                                                                 : 0;
}

/* sp_location.frame_type of a jdk.types.FrameType: the JDK's Interpreted, JIT compiled, Inlined
 * and async-profiler's C1 compiled are "jvm"; Native and C++ "native"; Kernel "kernel". */
static int frame_type_of(jfr_build *b, uint64_t key, uint32_t *ft)
{
    static const char *const names[3] = {"jvm", "native", "kernel"};
    const jfr_val *v = jfr_pool_get(&b->c.pools.frame_types, key);
    jfr_str d = v ? jfr_text(&b->c, v) : (jfr_str){"", 0};
    int k = -1;
    if (jfr_str_is(d, "Interpreted") || jfr_str_is(d, "JIT compiled") || jfr_str_is(d, "Inlined") ||
        jfr_str_is(d, "C1 compiled"))
        k = 0;
    else if (jfr_str_is(d, "Native") || jfr_str_is(d, "C++"))
        k = 1;
    else if (jfr_str_is(d, "Kernel"))
        k = 2;
    *ft = 0;
    if (k < 0)
        return 0;
    if (!b->ft[k]) {
        int rc = intern(b, (jfr_str){names[k], (uint32_t)strlen(names[k])}, &b->ft[k]);
        if (rc)
            return rc;
    }
    *ft = b->ft[k];
    return 0;
}

static int location_of(jfr_build *b, uint32_t fid, int32_t line, uint32_t ft, uint32_t *loc)
{
    uint64_t h = jfr_mix(jfr_mix(jfr_mix(b->seed, fid), (uint32_t)line), ft);
    uint32_t slot = UINT32_MAX, id;
    while ((id = jfr_set_next(&b->loc_set, h, &slot)))
        if (b->locs[id].func == fid && b->locs[id].line == line && b->locs[id].ft == ft) {
            *loc = id;
            return 0;
        }
    jfr_loc *x = jfr_grow(b->c.work, b->locs, b->nlocs, &b->caplocs, sizeof *x);
    if (!x)
        return jfr_too_big(&b->c);
    b->locs = x;
    *loc = b->nlocs++;
    b->locs[*loc] = (jfr_loc){fid, line, ft};
    return jfr_set_add(&b->loc_set, b->c.work, h, *loc) ? jfr_too_big(&b->c) : 0;
}

static int stack_intern(jfr_build *b, const uint32_t *ids, uint32_t n, uint32_t *sid)
{
    uint64_t h = jfr_mix(b->seed, n);
    for (uint32_t i = 0; i < n; i++)
        h = jfr_mix(h, ids[i]);
    uint32_t slot = UINT32_MAX, id;
    while ((id = jfr_set_next(&b->stack_set, h, &slot)))
        if (b->stacks[id].n == n && memcmp(b->stacks[id].ids, ids, (size_t)n * sizeof *ids) == 0) {
            *sid = id;
            return 0;
        }
    jfr_stackrec *x = jfr_grow(b->c.work, b->stacks, b->nstacks, &b->capstacks, sizeof *x);
    uint32_t *copy = sp_arena_alloc(b->c.out, (size_t)(n ? n : 1) * sizeof *ids);
    if (!x || !copy)
        return jfr_too_big(&b->c);
    memcpy(copy, ids, (size_t)n * sizeof *ids);
    b->stacks = x;
    *sid = b->nstacks++;
    b->stacks[*sid] = (jfr_stackrec){copy, n};
    return jfr_set_add(&b->stack_set, b->c.work, h, *sid) ? jfr_too_big(&b->c) : 0;
}

/* The stack id of a stack trace key, 0 when the pools do not have it (J2). */
int jfr_stack_of(jfr_build *b, uint64_t key, uint32_t *sid)
{
    jfr_ctx *c = &b->c;
    uint32_t v = jfr_map_get(&b->stack_cache, key);
    if (v) {
        *sid = v == JFR_MISSING ? 0 : v;
        return 0;
    }
    const jfr_stack *st = jfr_pool_get(&c->pools.stacks, key);
    *sid = 0;
    if (st) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < st->n; i++) {
            const jfr_frame *f = &c->pools.frames[st->first + i];
            uint32_t fid, ft;
            int rc = function_of(b, f->method, &fid);
            if (!rc && !fid) {
                c->res->dropped_frames++;
                continue;
            }
            if (rc || (rc = frame_type_of(b, f->type, &ft)) ||
                (rc = location_of(b, fid, f->line < 0 ? 0 : f->line, ft, &b->ids[n])))
                return rc;
            n++;
        }
        int rc = stack_intern(b, b->ids, n, sid);
        if (rc)
            return rc;
    }
    return jfr_map_put(&b->stack_cache, c->chunk, key, *sid ? *sid : JFR_MISSING) ? jfr_too_big(c)
                                                                                  : 0;
}

int jfr_thread_of(jfr_build *b, uint64_t key, int64_t *tid, uint32_t *name)
{
    jfr_ctx *c = &b->c;
    uint32_t v = jfr_map_get(&b->thread_cache, key);
    if (!v) {
        const jfr_thread *th = jfr_pool_get(&c->pools.threads, key);
        jfr_str jn = th ? jfr_text(c, &th->java_name) : (jfr_str){"", 0};
        uint32_t s;
        int rc = intern(b, jn.n || !th ? jn : jfr_text(c, &th->os_name), &s);
        if (rc)
            return rc;
        void *x = jfr_grow(c->chunk, b->threads, b->nthreads, &b->capthreads, sizeof *b->threads);
        if (!x)
            return jfr_too_big(c);
        b->threads = x;
        b->threads[b->nthreads].tid = th ? th->os_tid : 0;
        b->threads[b->nthreads].name = s;
        v = ++b->nthreads;
        if (jfr_map_put(&b->thread_cache, c->chunk, key, v))
            return jfr_too_big(c);
    }
    *tid = b->threads[v - 1].tid;
    *name = b->threads[v - 1].name;
    return 0;
}

/* ---------- samples ---------- */

static uint64_t agg_hash(uint64_t seed, const jfr_agg *k)
{
    uint64_t h = jfr_mix(jfr_mix(seed, k->kind), k->stack);
    h = jfr_mix(h, (uint64_t)k->tid);
    h = jfr_mix(h, k->tname);
    h = jfr_mix(h, k->ctx);
    h = jfr_mix(h, k->span);
    h = jfr_mix(h, k->span_name);
    h = jfr_mix(h, k->trace_hi);
    return jfr_mix(h, k->trace_lo);
}

static int agg_same(const jfr_agg *a, const jfr_agg *k)
{
    return a->kind == k->kind && a->stack == k->stack && a->tid == k->tid && a->tname == k->tname &&
           a->ctx == k->ctx && a->span == k->span && a->span_name == k->span_name &&
           a->trace_hi == k->trace_hi && a->trace_lo == k->trace_lo;
}

static jfr_obs *obs_push(jfr_build *b)
{
    if (!b->nblocks || b->inlast == JFR_OBS_BLOCK) {
        jfr_obs **x = jfr_grow(b->c.work, b->blocks, b->nblocks, &b->capblocks, sizeof *x);
        jfr_obs *blk = sp_arena_alloc(b->c.work, JFR_OBS_BLOCK * sizeof *blk);
        if (!x || !blk)
            return NULL;
        b->blocks = x;
        b->blocks[b->nblocks++] = blk;
        b->inlast = 0;
    }
    return &b->blocks[b->nblocks - 1][b->inlast++];
}

/* Adds one observation (values v0, v1) of kind to the sample keyed like k. */
int jfr_observe(jfr_build *b, jfr_agg *k, uint32_t kind, uint64_t ts, int64_t v0, int64_t v1)
{
    /* Counts, sizes and durations are never negative; a recording that says so is read as 0.
     * With no negative values the saturating sums do not depend on their order (B3). */
    v0 = v0 < 0 ? 0 : v0;
    v1 = v1 < 0 ? 0 : v1;
    k->kind = kind;
    uint64_t h = agg_hash(b->seed, k);
    uint32_t slot = UINT32_MAX, id;
    while ((id = jfr_set_next(&b->agg_set, h, &slot)))
        if (agg_same(&b->aggs[id - 1], k))
            break;
    if (!id) {
        jfr_agg *x = jfr_grow(b->c.work, b->aggs, b->naggs, &b->capaggs, sizeof *x);
        if (!x)
            return jfr_too_big(&b->c);
        b->aggs = x;
        b->aggs[b->naggs] = *k;
        b->aggs[b->naggs].first[0] = v0;
        b->aggs[b->naggs].first[1] = v1;
        id = ++b->naggs;
        if (jfr_set_add(&b->agg_set, b->c.work, h, id))
            return jfr_too_big(&b->c);
    }
    jfr_agg *a = &b->aggs[id - 1];
    if (a->nobs == UINT32_MAX)
        return sp_fail(b->c.err, SP_ETOOBIG, "more than %u observations of one sample", UINT32_MAX);
    a->nobs++;
    a->sum[0] = sp_sat_add(a->sum[0], v0);
    a->sum[1] = sp_sat_add(a->sum[1], v1);
    a->differ[0] |= v0 != a->first[0];
    a->differ[1] |= v1 != a->first[1];
    jfr_obs *o = obs_push(b);
    if (!o)
        return jfr_too_big(&b->c);
    *o = (jfr_obs){id - 1, ts, {v0, v1}};
    return 0;
}

/* ---------- the profiles ---------- */

static void intervals(jfr_build *b, int64_t *cpu, int64_t *wall)
{
    const otlp_jfr_options *o = &b->c.o;
    /* async-profiler's "interval" is in ns only for time-based engines; a perf event counts */
    int64_t ap = b->cpu_event || !b->c.res->event ? b->set_interval : 0;
    *cpu = o->cpu_interval_ns > 0 ? o->cpu_interval_ns
           : ap > 0               ? ap
           : b->jdk_period > 0    ? b->jdk_period
                                  : 10000000; /* Pyroscope's default sampleRate, 100 Hz */
    *wall = o->wall_interval_ns > 0  ? o->wall_interval_ns
            : o->cpu_interval_ns > 0 ? o->cpu_interval_ns
            : b->set_wall > 0        ? b->set_wall
                                     : *cpu;
}

static void be_bytes(uint64_t v, uint8_t *out)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

/* Shared tables: functions, one-line locations, the one mapping (J4). */
static int tables(jfr_build *b, sp_profile *tmpl)
{
    sp_arena *a = b->c.out;
    sp_function *f = sp_arena_calloc(a, b->nfuncs, sizeof *f);
    sp_location *l = sp_arena_calloc(a, b->nlocs, sizeof *l);
    sp_line *ln = sp_arena_calloc(a, b->nlocs, sizeof *ln);
    sp_mapping *m = sp_arena_calloc(a, 2, sizeof *m);
    if (!f || !l || !ln || !m)
        return jfr_too_big(&b->c);
    for (uint32_t i = 1; i < b->nfuncs; i++)
        f[i].name = f[i].system_name = b->fname[i];
    for (uint32_t i = 1; i < b->nlocs; i++) {
        ln[i] = (sp_line){b->locs[i].func, b->locs[i].line, 0};
        l[i] = (sp_location){
            .mapping_id = 1, .lines = &ln[i], .nlines = 1, .frame_type = b->locs[i].ft};
    }
    m[1].has_functions = m[1].has_line_numbers = 1; /* as jfr-parser's one mapping */
    tmpl->functions = f;
    tmpl->nfunctions = b->nfuncs;
    tmpl->locations = l;
    tmpl->nlocations = b->nlocs;
    tmpl->mappings = m;
    tmpl->nmappings = 2;
    return 0;
}

typedef struct detail {
    uint64_t **ts;
    int64_t **vals[2];
} detail;

/* Every sample's timestamps, and its values where they are not all equal. */
static int observations(jfr_build *b, detail *d, int64_t cpu, int64_t wall)
{
    sp_arena *a = b->c.out, *w = b->c.work;
    uint32_t n = b->naggs;
    d->ts = sp_arena_calloc(w, n + 1, sizeof *d->ts);
    d->vals[0] = sp_arena_calloc(w, n + 1, sizeof *d->vals[0]);
    d->vals[1] = sp_arena_calloc(w, n + 1, sizeof *d->vals[1]);
    uint32_t *fill = sp_arena_calloc(w, n + 1, sizeof *fill);
    if (!d->ts || !d->vals[0] || !d->vals[1] || !fill)
        return jfr_too_big(&b->c);
    for (uint32_t i = 0; i < n; i++) {
        jfr_agg *g = &b->aggs[i];
        if (!(d->ts[i] = sp_arena_alloc(a, (size_t)g->nobs * sizeof **d->ts)))
            return jfr_too_big(&b->c);
        for (int col = 0; col < 2; col++)
            if (g->differ[col] &&
                !(d->vals[col][i] = sp_arena_alloc(a, (size_t)g->nobs * sizeof **d->vals[col])))
                return jfr_too_big(&b->c);
    }
    for (uint32_t k = 0; k < b->nblocks; k++) {
        uint32_t m = k + 1 == b->nblocks ? b->inlast : JFR_OBS_BLOCK;
        for (uint32_t j = 0; j < m; j++) {
            const jfr_obs *o = &b->blocks[k][j];
            uint32_t at = fill[o->agg]++;
            d->ts[o->agg][at] = o->ts;
            for (int col = 0; col < 2; col++)
                if (d->vals[col][o->agg])
                    d->vals[col][o->agg][at] = o->v[col];
        }
    }
    /* CPU and wall observations count samples until here; the interval makes them time. */
    for (uint32_t i = 0; i < n; i++) {
        jfr_agg *g = &b->aggs[i];
        int64_t scale = g->kind == K_CPU ? cpu : g->kind == K_WALL ? wall : 1;
        if (scale == 1)
            continue;
        g->sum[0] = sp_sat_mul(g->sum[0], scale);
        for (uint32_t j = 0; d->vals[0][i] && j < g->nobs; j++)
            d->vals[0][i][j] = sp_sat_mul(d->vals[0][i][j], scale);
    }
    return 0;
}

static int profile(jfr_build *b, const struct ptype *pt, const sp_profile *tmpl, const detail *d,
                   int64_t period)
{
    jfr_ctx *c = &b->c;
    sp_arena *a = c->out;
    uint32_t n = 0;
    for (uint32_t i = 0; i < b->naggs; i++)
        n += b->aggs[i].kind == pt->kind && b->aggs[i].sum[pt->col] != 0;
    if (!n)
        return 0; /* zero rows add nothing to a flame graph */
    sp_profile *p = sp_arena_alloc(a, sizeof *p);
    sp_sample *s = sp_arena_calloc(a, n, sizeof *s);
    uint64_t *ctx = sp_arena_calloc(a, n, sizeof *ctx),
             *names = sp_arena_calloc(a, n, sizeof *names);
    if (!p || !s || !ctx || !names)
        return jfr_too_big(c);
    *p = *tmpl;
    int any_ctx = 0, any_name = 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < b->naggs; i++) {
        const jfr_agg *g = &b->aggs[i];
        if (g->kind != pt->kind || g->sum[pt->col] == 0)
            continue;
        sp_sample *x = &s[k];
        x->location_ids = b->stacks[g->stack].ids;
        x->nlocations = b->stacks[g->stack].n;
        x->value = g->sum[pt->col];
        x->timestamps = d->ts[i];
        x->values = d->vals[pt->col][i];
        x->nobs = g->nobs;
        x->pid = c->res->pid;
        x->tid = g->tid;
        x->thread_name = g->tname;
        if (g->span) { /* the agent's spanId: the OpenTelemetry span id as a big-endian long */
            x->has_link = 1;
            be_bytes(g->span, x->link.span_id);
            be_bytes(g->trace_hi, x->link.trace_id);
            be_bytes(g->trace_lo, x->link.trace_id + 8);
        }
        any_ctx |= (ctx[k] = g->ctx) != 0;
        any_name |= (names[k] = g->span_name) != 0;
        k++;
    }
    char id[256];
    snprintf(id, sizeof id, "%s:%s:%s:%s:%s", pt->name, pt->type, pt->unit, pt->ptype, pt->punit);
    p->type_id = sp_arena_strndup(a, id, strlen(id));
    p->name = pt->name;
    p->sample_type = sp_strtab_intern(&b->st, pt->type, strlen(pt->type));
    p->sample_unit = sp_strtab_intern(&b->st, pt->unit, strlen(pt->unit));
    p->period_type = sp_strtab_intern(&b->st, pt->ptype, strlen(pt->ptype));
    p->period_unit = sp_strtab_intern(&b->st, pt->punit, strlen(pt->punit));
    p->period = pt->kind == K_CPU || pt->kind == K_WALL ? period : 0;
    p->samples = s;
    p->nsamples = n;
    if (!p->type_id || !p->sample_type || !p->sample_unit ||
        sp_profile_set_series(p, a, pt->name, c->o.series, c->o.nseries))
        return jfr_too_big(c);
    otlp_jfr_profile *r = &c->res->profiles[c->res->nprofiles++];
    *r = (otlp_jfr_profile){p, any_ctx ? ctx : NULL, any_name ? names : NULL};
    return 0;
}

int jfr_build_finish(jfr_build *b)
{
    jfr_ctx *c = &b->c;
    otlp_jfr_result *res = c->res;
    int64_t cpu, wall;
    intervals(b, &cpu, &wall);
    res->cpu_interval_ns = cpu;
    res->wall_interval_ns = wall;
    sp_profile tmpl = {0};
    detail d;
    int rc = tables(b, &tmpl);
    if (rc || (rc = observations(b, &d, cpu, wall)))
        return rc;
    tmpl.time_nanos = c->o.from_ns ? c->o.from_ns : res->start_ns;
    int64_t until = c->o.until_ns ? c->o.until_ns : res->end_ns;
    tmpl.duration_nanos = until > tmpl.time_nanos ? until - tmpl.time_nanos : 0;
    res->profiles = sp_arena_calloc(c->out, NPTYPES, sizeof *res->profiles);
    if (!res->profiles)
        return jfr_too_big(c);
    for (size_t i = 0; i < NPTYPES; i++)
        if ((rc = profile(b, &ptypes[i], &tmpl, &d, ptypes[i].kind == K_CPU ? cpu : wall)))
            return rc;
    /* The string table is final only now: every profile shares it. */
    for (uint32_t i = 0; i < res->nprofiles; i++) {
        res->profiles[i].profile->strings = b->st.s;
        res->profiles[i].profile->string_lens = b->st.len;
        res->profiles[i].profile->nstrings = b->st.n;
    }
    return 0;
}

/* Index 0 of every id space is unused (profile.h): the first real id is 1. */
int jfr_build_start(jfr_build *b)
{
    sp_arena *w = b->c.work;
    b->seed = jfr_seed(b);
    b->fname = jfr_grow(w, NULL, 0, &b->capfuncs, sizeof *b->fname);
    b->locs = jfr_grow(w, NULL, 0, &b->caplocs, sizeof *b->locs);
    b->stacks = jfr_grow(w, NULL, 0, &b->capstacks, sizeof *b->stacks);
    b->ids = sp_arena_alloc(w, (size_t)b->c.o.max_stack_depth * sizeof *b->ids);
    if (!b->fname || !b->locs || !b->stacks || !b->ids || sp_strtab_init(&b->st, b->c.out, NULL, 0))
        return jfr_too_big(&b->c);
    memset(&b->locs[0], 0, sizeof b->locs[0]);
    memset(&b->stacks[0], 0, sizeof b->stacks[0]);
    b->fname[0] = 0;
    b->nfuncs = b->nlocs = b->nstacks = 1;
    return 0;
}

/* The chunk's keys die with it (P4): so do the caches keyed by them. */
void jfr_build_chunk(jfr_build *b)
{
    memset(&b->stack_cache, 0, sizeof b->stack_cache);
    memset(&b->func_cache, 0, sizeof b->func_cache);
    memset(&b->thread_cache, 0, sizeof b->thread_cache);
    memset(&b->ev_kind, 0, sizeof b->ev_kind);
    b->threads = NULL;
    b->nthreads = b->capthreads = 0;
}
