/* Profiles: explicit links (rule 1), inference by thread and process (rules 2 and 3), splitting
 * samples by the spans their observations fall in, and keeping observations for later spans. */
#include "internal.h"

/* ---- explicit links ---- */

int cw_same_process(const corr *c, int64_t pid_a, uint64_t svc_a, uint32_t id_a, int64_t pid_b,
                    uint64_t svc_b, uint32_t id_b)
{
    if (pid_a || pid_b) {
        if (pid_a != pid_b)
            return 0;
    } else if (svc_a != svc_b) {
        return 0;
    }
    return cw_ident_compat(c, id_a, id_b);
}

sp_span_ref cw_reg_ref(const reg_ent *e)
{
    sp_span_ref r;
    memcpy(r.trace_id, e->trace_id, 16);
    memcpy(r.span_id, e->span_id, 8);
    return r;
}

/* Walks up from e through received ancestors of the process (pid, svc, ident), appending the
 * eligible ones to out. Returns the new count; *gap (and 1 in *has_gap) = the first parent id
 * not received yet, the point where later arrivals continue the walk. */
uint32_t cw_walk_up(corr *c, uint32_t tenant, const reg_ent *e, int64_t pid, uint64_t svc,
                    uint32_t ident, sp_span_ref *out, uint32_t n, uint8_t gap[8], int *has_gap)
{
    static const uint8_t zero[8];
    *has_gap = 0;
    for (int hop = 0; hop < MAX_WALK && e; hop++) {
        if (memcmp(e->parent, zero, 8) == 0)
            return n;
        const reg_ent *p = cw_reg_find_live(c, tenant, e->parent);
        if (!p) {
            memcpy(gap, e->parent, 8);
            *has_gap = 1;
            return n;
        }
        if (!cw_same_process(c, p->pid, p->service, p->ident, pid, svc, ident))
            return n;
        if (p->eligible && n < MAX_MATCH) {
            int dup = 0;
            for (uint32_t i = 0; i < n && !dup; i++)
                dup = memcmp(out[i].span_id, p->span_id, 8) == 0;
            if (!dup)
                out[n++] = cw_reg_ref(p);
        }
        e = p;
    }
    return n;
}

/* ---- profiles ---- */

/* Attaching a profile is two phases, so a request that cannot be taken leaves the window as it
 * was: phase 1 (plan_profile) decides every observation's spans and builds the profile's new
 * samples in the request's arena, reading the window only; phase 2 (keep_profile) counts the
 * outcomes and keeps the observations for spans still to come. Phase 2 cannot fail: what it
 * cannot keep is counted (not_kept), the observation itself is stored either way. */

void cw_scratch_free(split_scratch *x)
{
    free(x->part);
    free(x->grp);
    free(x->g);
    free(x->refs);
    free(x->tab);
    free(x->out);
    memset(x, 0, sizeof *x);
}

/* Grows *arr to hold `need` elements (heap). */
static int reserve(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > UINT32_MAX / 2)
            return -1;
        ncap *= 2;
    }
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static sp_sample *out_push(split_scratch *x)
{
    if (x->nout == UINT32_MAX || reserve((void **)&x->out, &x->capout, x->nout + 1, sizeof *x->out))
        return NULL;
    return &x->out[x->nout++];
}

/* The output of a sample that stays one sample, its spans not set yet. Until a sample of the
 * profile is split (x->spans_only), the outputs are the samples themselves in order, and only
 * their spans change: the sample itself is the output (phase 2 reads the samples' times and
 * values, never their spans; a plan that fails has the caller clear every sample's spans). A copy
 * of each sample was 6 MB for a request of 40,000 (issue 19); an output entry per sample for its
 * spans alone, 128 bytes apart, was a cache line written and read back per sample. The first
 * split copies the samples so far in (outputs_become_copies). s is p->samples[i], arena memory
 * the plan may write. */
static sp_sample *out_same(split_scratch *x, const sp_sample *s)
{
    sp_sample *d;
    if (x->spans_only) {
        if (x->nout == UINT32_MAX)
            return NULL;
        x->nout++;
        d = (sp_sample *)s;
    } else {
        if (!(d = out_push(x)))
            return NULL;
        *d = *s;
    }
    d->spans = NULL;
    d->nspans = 0;
    return d;
}

/* The first split of a profile whose samples orig[0..x->nout) were their own outputs (their
 * spans set in place): copied in, spans and all. out has room for them (cw_plan_profile
 * reserved one per sample). */
static void outputs_become_copies(split_scratch *x, const sp_sample *orig)
{
    if (!x->spans_only)
        return;
    for (uint32_t j = 0; j < x->nout; j++)
        x->out[j] = orig[j];
    x->spans_only = 0;
}

static int64_t obs_value(const sp_sample *s, uint32_t k)
{
    if (s->values)
        return s->values[k];
    if (s->nobs <= 1) /* the eBPF profiler's usual Sample: no division */
        return s->value;
    int64_t share = s->value / (int64_t)s->nobs; /* equal shares, remainder to the first */
    return k == 0 ? s->value - share * (int64_t)(s->nobs - 1) : share;
}

/* The spans of one observation by rules 2 and 3; *how = F_THREAD, F_PROC, F_AMBIG or 0. */
static uint32_t infer(const corr *c, const slot *thr, const slot *nothr, int64_t ts, uint32_t ident,
                      sp_span_ref *out, uint8_t *how)
{
    *how = 0;
    uint32_t n = thr ? cw_spans_at(c, thr, ts, ident, out, MAX_MATCH, NULL) : 0;
    if (n) {
        *how = F_THREAD;
        return n;
    }
    /* rule 3 on arrival only without a settle time; otherwise cw_settle decides it (I8) */
    if (c->opt.threadless != CORR_THREADLESS_UNIQUE || !nothr || c->opt.settle_ns >= 0)
        return 0;
    int amb;
    n = cw_chain_at(c, nothr, ts, ident, out, &amb, NULL);
    *how = amb ? F_AMBIG : n ? F_PROC : 0;
    return n;
}

void cw_count_outcome(corr *c, uint8_t how, uint64_t nobs)
{
    if (how & F_THREAD)
        c->st.by_thread += nobs;
    if (how & F_PROC)
        c->st.by_process_span += nobs;
    if (how & F_AMBIG)
        c->st.ambiguous += nobs;
}

/* The group of an observation whose spans are m[0..n) (found or added). UINT32_MAX when out of
 * memory. Samples of a few observations search the groups in order; longer ones hash, so a
 * sample of a million observations in a million different spans stays linear. */
static uint32_t group_of(split_scratch *x, const sp_span_ref *m, uint32_t n, uint8_t how,
                         uint32_t nobs)
{
    uint64_t h = hash64(m, n * sizeof *m, FNV ^ how);
    int hashed = nobs > 16;
    uint32_t at = 0;
    if (hashed) {
        at = (uint32_t)h & (x->captab - 1);
        for (; x->tab[at]; at = (at + 1) & (x->captab - 1)) {
            const group *g = &x->g[x->tab[at] - 1];
            if (g->hash == h && g->nref == n && g->how == how &&
                memcmp(&x->refs[g->ref_at], m, n * sizeof *m) == 0)
                return x->tab[at] - 1;
        }
    } else {
        for (uint32_t i = x->ng; i-- > 0;) {
            const group *g = &x->g[i];
            if (g->hash == h && g->nref == n && g->how == how &&
                memcmp(&x->refs[g->ref_at], m, n * sizeof *m) == 0)
                return i;
        }
    }
    if (reserve((void **)&x->g, &x->capg, x->ng + 1, sizeof *x->g) || x->nref > UINT32_MAX - n ||
        reserve((void **)&x->refs, &x->capref, x->nref + n + 1, sizeof *x->refs))
        return UINT32_MAX;
    memcpy(&x->refs[x->nref], m, n * sizeof *m);
    x->g[x->ng] = (group){h, x->nref, n, 0, 0, how};
    x->nref += n;
    if (hashed)
        x->tab[at] = x->ng + 1;
    return x->ng++;
}

/* Splits s into one output sample per group, each with its observations' timestamps and values
 * (in received order), so every attachment carries exactly what was observed inside the span. */
static int emit_groups(split_scratch *x, sp_arena *a, const sp_sample *s, size_t *attached)
{
    uint64_t *ts = sp_arena_alloc(a, (size_t)s->nobs * sizeof *ts);
    int64_t *vals = sp_arena_alloc(a, (size_t)s->nobs * sizeof *vals);
    if (!ts || !vals)
        return -1;
    uint32_t at = 0;
    for (uint32_t g = 0; g < x->ng; g++) {
        x->g[g].fill = at;
        at += x->g[g].count;
    }
    for (uint32_t k = 0; k < s->nobs; k++) {
        group *g = &x->g[x->grp[k]];
        ts[g->fill] = s->timestamps[k];
        vals[g->fill++] = obs_value(s, k);
    }
    at = 0;
    for (uint32_t g = 0; g < x->ng; g++) {
        const group *gr = &x->g[g];
        sp_sample *d = out_push(x);
        if (!d)
            return -1;
        *d = *s;
        d->timestamps = &ts[at];
        d->values = &vals[at];
        d->nobs = gr->count;
        int64_t sum = 0;
        for (uint32_t k = 0; k < gr->count; k++)
            sum = sp_sat_add(sum, vals[at + k]);
        d->value = sum;
        d->spans = NULL;
        d->nspans = 0;
        if (gr->nref) {
            d->spans = sp_arena_memdup(a, &x->refs[gr->ref_at], gr->nref * sizeof *d->spans);
            if (!d->spans)
                return -1;
            d->nspans = gr->nref;
            *attached += (size_t)gr->nref * gr->count;
        }
        at += gr->count;
    }
    return 0;
}

/* Rules 2 and 3 for one sample with timestamps and a process: its observations grouped by the
 * spans they fall in; one output sample when they agree, one per group otherwise. */
/* Off-CPU (I9): the spans of thread slot thr that the interval of observation k overlaps; the
 * ones covering all of it in m (returned count), the ones covering part of it as partials. */
static int interval_spans(const corr *c, split_scratch *x, const slot *thr, const sp_sample *s,
                          uint32_t i, uint32_t k, uint32_t ident, sp_span_ref *m, uint32_t *nfull,
                          uint8_t *how)
{
    sp_span_ref all[MAX_MATCH];
    int64_t ov[MAX_MATCH], ends[MAX_MATCH];
    int64_t to = (int64_t)s->timestamps[k], d = obs_value(s, k);
    if (d < 0 || d > to)
        d = 0;
    uint32_t n = thr ? cw_spans_over(c, thr, to - d, to, ident, all, ov, ends, MAX_MATCH) : 0;
    *nfull = 0;
    *how = n ? F_THREAD : 0;
    for (uint32_t j = 0; j < n; j++) {
        if (ov[j] == d || d == 0) {
            m[(*nfull)++] = all[j];
            continue;
        }
        if (reserve((void **)&x->part, &x->cappart, x->npart + 1, sizeof *x->part))
            return -1;
        x->part[x->npart++] = (partial){i, (uint64_t)(ends[j] - 1), ov[j], all[j]};
    }
    return 0;
}

/* The slots of the last sample's process and thread, found or not: a profile's samples come a
 * thread at a time, and nothing creates or frees a slot while a profile is planned (planning
 * only reads; slots are created in cw_keep_profile and freed by the budget and the sweeps, all
 * outside), so two lookups per sample become two per thread. */
typedef struct slot_memo {
    int valid;
    int64_t pid, tid;
    const slot *thr, *nothr;
} slot_memo;

static void find_slots(const corr *c, uint32_t tenant, const sp_sample *s, slot_memo *m)
{
    if (m->valid && m->pid == s->pid && m->tid == s->tid)
        return;
    corr *mc = (corr *)c; /* find_slot without create does not change anything */
    m->thr = s->tid ? cw_find_slot(mc, tenant, s->pid, s->tid, 0) : NULL;
    if (!m->valid || m->pid != s->pid)
        m->nothr = cw_find_slot(mc, tenant, s->pid, 0, 0);
    m->pid = s->pid;
    m->tid = s->tid;
    m->valid = 1;
}

/* Whether infer() can find spans for any observation of a thread whose slots are thr and nothr
 * (0: it finds none for all, without looking at their times). */
static int spans_could_match(const corr *c, const slot *thr, const slot *nothr)
{
    if (thr && thr->nspans)
        return 1; /* rule 2 */
    return c->opt.threadless == CORR_THREADLESS_UNIQUE && nothr && nothr->nspans &&
           c->opt.settle_ns < 0; /* rule 3 on arrival */
}

static int plan_inferred(const corr *c, split_scratch *x, sp_arena *a, const sp_sample *s,
                         uint32_t i, int interval, uint32_t tenant, slot_memo *sm, sample_plan *pl,
                         int *reshaped, size_t *attached)
{
    find_slots(c, tenant, s, sm);
    const slot *thr = sm->thr, *nothr = sm->nothr;
    if (!interval && !spans_could_match(c, thr, nothr)) {
        /* what the loop below finds for every observation: one group, no spans (most samples
         * of an eBPF request are of processes without spans) */
        if (!out_same(x, s))
            return -1;
        pl->how = 0;
        return 0;
    }
    x->ng = 0;
    x->nref = 0;
    if (reserve((void **)&x->grp, &x->capgrp, s->nobs, sizeof *x->grp))
        return -1;
    if (s->nobs > 16) {
        uint32_t want = 32;
        while (want < s->nobs * 2u && want < (1u << 30))
            want *= 2;
        if (reserve((void **)&x->tab, &x->captab, want, sizeof *x->tab))
            return -1;
        x->captab = want; /* a power of two at least twice the groups there can be */
        memset(x->tab, 0, (size_t)want * sizeof *x->tab);
    }
    for (uint32_t k = 0; k < s->nobs; k++) {
        sp_span_ref m[MAX_MATCH];
        uint8_t how;
        uint32_t n;
        if (!interval)
            n = infer(c, thr, nothr, (int64_t)s->timestamps[k], pl->ident, m, &how);
        else if (interval_spans(c, x, thr, s, i, k, pl->ident, m, &n, &how))
            return -1;
        uint32_t g = group_of(x, m, n, how, s->nobs);
        if (g == UINT32_MAX)
            return -1;
        x->grp[k] = g;
        x->g[g].count++;
    }
    if (x->ng == 1) {
        const group *g = &x->g[0];
        sp_sample *d = out_same(x, s);
        if (!d)
            return -1;
        if (g->nref) {
            d->spans = sp_arena_memdup(a, x->refs, g->nref * sizeof *d->spans);
            if (!d->spans)
                return -1;
            d->nspans = g->nref;
            *attached += (size_t)g->nref * s->nobs;
        }
        pl->how = g->how;
        return 0;
    }
    *reshaped = 1;
    outputs_become_copies(x, s - i); /* one output per sample so far: s is orig[i] */
    pl->hows = sp_arena_alloc(a, s->nobs);
    if (!pl->hows)
        return -1;
    for (uint32_t k = 0; k < s->nobs; k++)
        pl->hows[k] = x->g[x->grp[k]].how;
    return emit_groups(x, a, s, attached);
}

/* Rule 1: the link and its received ancestors now; the gap is where phase 2 makes the
 * observations wait for the rest. */
static int plan_linked(corr *c, sp_arena *a, uint32_t tenant, const sp_sample *s, sp_sample *d,
                       sample_plan *pl, size_t *attached)
{
    sp_span_ref chain[MAX_MATCH];
    uint32_t n = 0;
    chain[n++] = s->link;
    int has_gap = 0;
    const reg_ent *e = cw_reg_find_live(c, tenant, s->link.span_id);
    if (e) {
        pl->ref_known = 1;
        pl->ref_pid = e->pid;
        pl->ref_svc = e->service;
        pl->ref_ident = e->ident;
        n = cw_walk_up(c, tenant, e, e->pid, e->service, e->ident, chain, n, pl->gap, &has_gap);
    } else {
        memcpy(pl->gap, s->link.span_id, 8);
        has_gap = 1;
    }
    pl->linked = 1;
    pl->has_gap = (uint8_t)has_gap;
    d->spans = sp_arena_memdup(a, chain, n * sizeof *chain);
    if (!d->spans)
        return -1;
    d->nspans = n;
    *attached += (size_t)n * (s->timestamps && s->nobs ? s->nobs : 1);
    return 0;
}

/* Phase 1 for one CPU profile. Returns 0, or -1 when the arena or the heap is exhausted (the
 * window is untouched; the caller refuses the request). */
/* Off-CPU (I9): the parts of intervals that spans cover only partly, as one attach_only
 * profile with p's tables (the store adds them to the spans, not to p's totals). */
static int emit_partials(split_scratch *x, const prof_plan *pp, sp_arena *a, sp_batch *b,
                         size_t *attached)
{
    if (!x->npart)
        return 0;
    sp_profile *q = sp_arena_memdup(a, pp->p, sizeof *q);
    sp_sample *v = sp_arena_calloc(a, x->npart, sizeof *v);
    uint64_t *ts = sp_arena_alloc(a, x->npart * sizeof *ts);
    if (!q || !v || !ts)
        return -1;
    for (uint32_t j = 0; j < x->npart; j++) {
        const partial *pt = &x->part[j];
        v[j] = pp->orig[pt->sample];
        ts[j] = pt->ts;
        v[j].timestamps = &ts[j];
        v[j].values = NULL;
        v[j].nobs = 1;
        v[j].value = pt->value;
        v[j].has_link = 0;
        v[j].spans = sp_arena_memdup(a, &pt->ref, sizeof pt->ref);
        if (!v[j].spans)
            return -1;
        v[j].nspans = 1;
    }
    q->samples = v;
    q->nsamples = x->npart;
    q->attach_only = 1;
    q->facts_known = 0; /* new times (the parts' own): p's bounds say nothing of them */
    *attached += x->npart;
    return sp_batch_add_profile(b, q) ? -1 : 0;
}

int cw_plan_profile(corr *c, split_scratch *x, prof_plan *pp, sp_profile *p, sp_arena *a,
                    uint32_t tenant, sp_batch *b, size_t *attached)
{
    int interval = corr_is_offcpu_type(p->type_id);
    x->npart = 0;
    pp->p = p;
    pp->orig = p->samples;
    pp->norig = p->nsamples;
    /* each plan zeroed as the loop below reaches it, not the block at once (a second pass) */
    pp->plans = sp_arena_alloc(a, ((size_t)p->nsamples + 1) * sizeof *pp->plans);
    if (!pp->plans)
        return -1;
    x->nout = 0;
    x->spans_only = 1;
    /* one output per sample unless some split: room for those at once, not by doublings */
    if (reserve((void **)&x->out, &x->capout, p->nsamples, sizeof *x->out))
        return -1;
    int reshaped = 0;
    const sp_proc_ident *last = NULL;
    uint32_t last_id = 0;
    slot_memo sm = {0};
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        sample_plan *pl = &pp->plans[i];
        *pl = (sample_plan){0};
        if (s->ident != last || !last_id) {
            last = s->ident;
            last_id = cw_ident_id(c, s->ident);
        }
        pl->ident = last_id;
        if (s->has_link || !s->timestamps || !s->nobs || !s->pid) {
            sp_sample *d = out_same(x, s);
            if (!d)
                return -1;
            if (s->has_link && plan_linked(c, a, tenant, s, d, pl, attached))
                return -1;
            continue;
        }
        if (plan_inferred(c, x, a, s, i, interval, tenant, &sm, pl, &reshaped, attached))
            return -1;
    }
    pp->interval = (uint8_t)interval;
    if (reshaped) {
        sp_sample *v = sp_arena_memdup(a, x->out, (size_t)x->nout * sizeof *v);
        if (!v)
            return -1;
        p->samples = v;
        p->nsamples = x->nout;
    }
    /* else one output per sample, in order: the samples themselves, their spans set in place
     * (out_same) */
    return emit_partials(x, pp, a, b, attached);
}

void cw_memo_free(batch_memo *m)
{
    free(m->loc_cache);
    free(m->keys);
    free(m->vals);
    free(m->by_stack);
    memset(m, 0, sizeof *m);
}

typedef struct prof_ctx {
    corr *c;
    sp_profile *p;
    uint32_t tenant;
    uint32_t series;
    batch_memo *m;
    int interval; /* off-CPU (I9) */
    /* The last sample's slot (slots are allocated one by one and only the budget and the sweeps
     * free them, never while a profile is kept): one lookup per thread, not per sample. */
    slot *last_slot;
    int64_t last_pid, last_tid;
} prof_ctx;

static uint32_t ctx_series(prof_ctx *x)
{
    if (x->series == UINT32_MAX)
        x->series = cw_series_id(x->c, x->p);
    return x->series;
}

/* The sample's entry in the memo by stack print index, made empty for a new table's prints;
 * NULL when its stack is not printed, or without memory (the memo by list address serves). */
static uint32_t *memo_by_stack(batch_memo *m, const sp_profile *p, const sp_sample *s)
{
    if (!p->stack_prints || !s->stack || s->stack >= p->nstack_prints)
        return NULL;
    if (m->by_stack_of != p->stack_prints || m->nby_stack < p->nstack_prints) {
        if (m->nby_stack < p->nstack_prints) {
            uint32_t *v = realloc(m->by_stack, (size_t)p->nstack_prints * sizeof *v);
            if (!v)
                return NULL;
            m->by_stack = v;
            m->nby_stack = p->nstack_prints;
        }
        memset(m->by_stack, 0, (size_t)m->nby_stack * sizeof *m->by_stack);
        m->by_stack_of = p->stack_prints;
    }
    return &m->by_stack[s->stack];
}

/* The id of the sample's stack through the stacks-by-print cache. Only a stack it does not know
 * has its locations named (their misses overlapped, each location once a request): naming the
 * request's whole location table up front cost 3.5 M instructions a request, and most of its
 * stacks are known (bench/RESULTS.md, twenty-third session). */
static uint32_t stack_printed(prof_ctx *x, const sp_sample *s)
{
    batch_memo *m = x->m;
    uint32_t id = cw_stack_by_print(x->c, x->p, s);
    if (id != UINT32_MAX)
        return id;
    cw_names_prefill(x->c, x->p, m->loc_cache, s->location_ids, s->nlocations);
    return cw_stack_id_printed(x->c, x->p, s, m->loc_cache);
}

static uint32_t ctx_stack(prof_ctx *x, const sp_sample *s)
{
    batch_memo *m = x->m;
    if (m->locs != x->p->locations || m->nloc != x->p->nlocations || !m->loc_cache) {
        free(m->loc_cache);
        m->locs = x->p->locations;
        m->nloc = x->p->nlocations;
        m->loc_cache = calloc((size_t)m->nloc * 2 + 2, sizeof *m->loc_cache);
        m->n = 0; /* stack ids depend on the table too */
        if (m->keys)
            memset(m->keys, 0, m->cap * sizeof *m->keys);
        m->by_stack_of = NULL;
    }
    if (!s->location_ids || !m->loc_cache)
        return cw_stack_id(x->c, x->p, s, m->loc_cache);
    uint32_t *by = memo_by_stack(m, x->p, s);
    if (by) {
        if (!*by) {
            uint32_t id = stack_printed(x, s);
            if (id == UINT32_MAX)
                return id;
            *by = id + 1;
        }
        return *by - 1;
    }
    if ((m->n + 1) * 2 > m->cap) {
        uint32_t ncap = m->cap ? m->cap * 2 : 1024;
        const uint32_t **k = calloc(ncap, sizeof *k);
        uint32_t *v = calloc(ncap, sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return cw_stack_id(x->c, x->p, s, m->loc_cache);
        }
        for (uint32_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                uintptr_t h = ((uintptr_t)m->keys[i] >> 3) * 0x9e3779b97f4a7c15ull;
                uint32_t j = (uint32_t)(h >> 32) & (ncap - 1);
                while (k[j])
                    j = (j + 1) & (ncap - 1);
                k[j] = m->keys[i];
                v[j] = m->vals[i];
            }
        free(m->keys);
        free(m->vals);
        m->keys = k;
        m->vals = v;
        m->cap = ncap;
    }
    uintptr_t h = ((uintptr_t)s->location_ids >> 3) * 0x9e3779b97f4a7c15ull;
    uint32_t j = (uint32_t)(h >> 32) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == s->location_ids)
            return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    uint32_t id = stack_printed(x, s);
    if (id != UINT32_MAX) {
        m->keys[j] = s->location_ids;
        m->vals[j] = id;
        m->n++;
    }
    return id;
}

/* Rule 1, phase 2: the observations of a linked sample wait at the gap for the rest of the
 * chain. Returns how many could not be kept (0: they are attached by their link either way). */
static uint64_t keep_linked(prof_ctx *x, const sp_sample *s, const sample_plan *pl)
{
    corr *c = x->c;
    uint64_t nobs = s->timestamps && s->nobs ? s->nobs : 1;
    if (x->interval)
        c->st.offcpu_attached += nobs;
    else
        c->st.by_link += nobs;
    if (!pl->has_gap)
        return 0;
    uint32_t sid = c->bytes < c->opt.max_bytes ? ctx_series(x) : UINT32_MAX;
    uint32_t stk = sid != UINT32_MAX ? ctx_stack(x, s) : UINT32_MAX;
    for (uint64_t k = 0; k < nobs; k++) {
        wait_ent *w = stk != UINT32_MAX ? cw_wait_add(c, x->tenant, pl->gap) : NULL;
        if (!w) {
            /* attached by the link already: only its ancestors still to come are given up */
            c->st.released += nobs - k;
            return 0;
        }
        w->ref_known = pl->ref_known;
        w->ref_pid = pl->ref_pid;
        w->ref_service = pl->ref_svc;
        w->ref_ident = pl->ref_known ? pl->ref_ident : pl->ident;
        w->ts = s->timestamps && s->nobs ? (int64_t)s->timestamps[k] : x->p->time_nanos;
        w->value = s->timestamps && s->nobs ? obs_value(s, (uint32_t)k) : s->value;
        w->expire = c->now + c->opt.window_ns;
        w->stack = stk;
        w->series = sid;
    }
    return 0;
}

/* Rules 2 and 3, phase 2: every observation waits in its thread's slot for spans still to
 * come (a parent exported after its children, a span exported after the profile). Returns how
 * many without any span yet could not be kept (over budget, or out of memory). */
static uint64_t keep_inferred(prof_ctx *x, const sp_sample *s, const sample_plan *pl)
{
    corr *c = x->c;
    if (x->interval) { /* off-CPU has counters of its own (I9) */
        for (uint32_t k = 0; k < s->nobs; k++)
            c->st.offcpu_attached += (pl->hows ? pl->hows[k] : pl->how) != 0;
    } else if (pl->hows) {
        for (uint32_t k = 0; k < s->nobs; k++)
            cw_count_outcome(c, pl->hows[k], 1);
    } else {
        cw_count_outcome(c, pl->how, s->nobs);
    }
    uint32_t sid = UINT32_MAX, stk = UINT32_MAX;
    slot *w = NULL;
    if (c->bytes < c->opt.max_bytes) {
        sid = ctx_series(x);
        stk = sid != UINT32_MAX ? ctx_stack(x, s) : UINT32_MAX;
        if (stk == UINT32_MAX) {
            w = NULL;
        } else if (x->last_slot && x->last_pid == s->pid && x->last_tid == s->tid) {
            w = x->last_slot;
        } else if ((w = cw_find_slot(c, x->tenant, s->pid, s->tid, 1))) {
            x->last_slot = w;
            x->last_pid = s->pid;
            x->last_tid = s->tid;
        }
    }
    uint64_t lost = 0;
    /* I13: what a process without spans adds counts in its share too */
    size_t *share = w && SLOT_UNCLAIMED(c, w) ? &c->unclaimed_bytes : NULL;
    for (uint32_t k = 0; k < s->nobs; k++) {
        uint8_t how = pl->hows ? pl->hows[k] : pl->how;
        if (!w || (w->nobs == w->capobs &&
                   grow((void **)&w->obs, &w->capobs, sizeof *w->obs, &c->bytes))) {
            /* not kept: without a verdict now it never gets one; with one, it only gives up
             * the ancestors still to come (released, like the budget's first step) */
            if (x->interval) {
                /* off-CPU is not counted among the CPU outcomes */
            } else if (!how) {
                c->st.unmatched++;
                lost++;
            } else {
                c->st.released++;
            }
            continue;
        }
        if (share)
            *share += sizeof *w->obs;
        if (!how && !x->interval && c->opt.threadless == CORR_THREADLESS_UNIQUE &&
            c->opt.settle_ns >= 0)
            w->pending = 1; /* rule 3 decides it after the settle time */
        if (x->interval && obs_value(s, k) > w->max_interval)
            w->max_interval = obs_value(s, k);
        if (w->nobs > w->arrival_from && w->obs[w->nobs - 1].expire > c->now + c->opt.window_ns)
            w->arrival_unordered = 1; /* I10 */
        if (!w->nobs || c->now + c->opt.window_ns < w->obs_min_expire)
            w->obs_min_expire = c->now + c->opt.window_ns;
        obs_ent *o = &w->obs[w->nobs++];
        *o = (obs_ent){(int64_t)s->timestamps[k],
                       obs_value(s, k),
                       c->now + c->opt.window_ns,
                       stk,
                       sid,
                       pl->ident,
                       how,
                       x->interval,
                       c->tag};
        if (w->nobs > 1 && w->obs[w->nobs - 2].ts > o->ts)
            w->obs_sorted = 0;
        c->st.obs_waiting++;
        if (!o->flags)
            c->st.obs_unattached++;
    }
    return lost;
}

#define KEEP_AHEAD 8 /* samples between a stack's prefetch and its lookup */

/* Prefetches the stacks-by-print slot of sample s when this request has not met its stack yet
 * (its memo entry by print index is empty): the other samples of a stack find it in the memo. */
SP_PREFETCH_HELPER void prefetch_stack(const prof_ctx *x, const sp_sample *s)
{
    const batch_memo *m = x->m;
    const sp_profile *p = x->p;
    if (p->stack_prints && m->by_stack_of == p->stack_prints && s->stack &&
        s->stack < p->nstack_prints && s->stack < m->nby_stack && !m->by_stack[s->stack])
        cw_stack_prefetch(x->c, &p->stack_prints[s->stack]);
}

/* Phase 2 for one profile: the process is marked as profiled, outcomes counted, observations
 * kept for later spans. Cannot fail. */
void cw_keep_profile(corr *c, const prof_plan *pp, uint32_t tenant, batch_memo *memo)
{
    prof_ctx x = {c, pp->p, tenant, UINT32_MAX, memo, pp->interval, NULL, 0, 0};
    proc *last_proc = NULL; /* the last sample's process, as last_slot (a profile is mostly one) */
    int64_t last_pid = 0;
    for (uint32_t i = 0; i < pp->norig; i++) {
        const sp_sample *s = &pp->orig[i];
        if (i + KEEP_AHEAD < pp->norig)
            prefetch_stack(&x, &pp->orig[i + KEEP_AHEAD]);
        const sample_plan *pl = &pp->plans[i];
        if (s->pid) {
            proc *pr =
                last_proc && last_pid == s->pid ? last_proc : cw_find_proc(c, tenant, s->pid, 1);
            if (pr) {
                last_proc = pr;
                last_pid = s->pid;
                pr->profiled_until = c->now + c->opt.window_ns;
                uint32_t k = 0;
                while (k < pr->nprof_ident && pr->prof_ident[k] != pl->ident)
                    k++;
                if (k == pr->nprof_ident) {
                    if (k < PROF_IDENTS)
                        pr->prof_ident[pr->nprof_ident++] = pl->ident;
                    else
                        c->st.idents_over++;
                }
            }
        }
        if (pl->linked) {
            c->st.not_kept += keep_linked(&x, s, pl);
        } else if (!s->timestamps || !s->nobs || !s->pid) {
            /* no time or no process: nothing can place it */
            c->st.unmatched += s->timestamps && s->nobs ? s->nobs : 1;
        } else {
            c->st.not_kept += keep_inferred(&x, s, pl);
        }
    }
}
