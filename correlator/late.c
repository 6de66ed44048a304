/* Spans: indexing them, and attaching the observations that arrived before them (late
 * attachments, emitted as attach_only profiles into the spans' own batch). */
#include "internal.h"

/* ---- spans: index them, and claim observations that arrived before them ---- */

typedef struct late {
    uint32_t series;
    uint32_t stack;
    int64_t value;
    uint64_t ts;
    sp_span_ref ref;
} late;

typedef struct late_list {
    late *v; /* heap: freed when the spans are indexed (emit_late copies what it keeps) */
    size_t n, cap;
    uint64_t lost; /* attachments that found no room */
} late_list;

static void late_push(late_list *l, uint32_t series, uint32_t stack, int64_t value, int64_t ts,
                      const sp_span_ref *ref)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        late *x = realloc(l->v, ncap * sizeof *x);
        if (!x) {
            l->lost++;
            return;
        }
        l->v = x;
        l->cap = ncap;
    }
    l->v[l->n++] = (late){series, stack, value, (uint64_t)ts, *ref};
}

/* Arena room one series' late profile takes (an upper bound): the request's budget was sized
 * from a span export and knows nothing of the observations those spans claim. */
static size_t late_room(const corr *c, const late *v, size_t n)
{
    size_t room = ((size_t)c->names.n + 1) * sizeof(uint32_t) + 4096;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *frames = (const uint32_t *)(const void *)c->stacks.keys[v[i].stack];
        uint32_t nf = c->stacks.lens[v[i].stack] / 4;
        room += sizeof(sp_sample) + sizeof(sp_span_ref) + 64 +
                (size_t)(nf + 1) * (sizeof(uint32_t) + sizeof(char *) + sizeof(sp_function) +
                                    sizeof(sp_location) + sizeof(sp_line) + 32);
        for (uint32_t k = 0; k < nf; k++)
            room += c->names.lens[frames[k]] + 16;
    }
    return room;
}

/* Builds one attach_only profile per series from the late matches. Returns how many matches
 * could not be emitted (out of memory), 0 normally. */
static uint64_t emit_late(corr *c, sp_batch *b, late *v, size_t n)
{
    sp_arena *a = b->arena;
    for (size_t start = 0; start < n;) {
        uint32_t series = v[start].series;
        size_t end = start;
        while (end < n && v[end].series == series)
            end++;
        sp_arena_raise_budget(a, late_room(c, &v[start], end - start));
#define FAIL() return (uint64_t)(n - start)
        const series_rec *r = &c->srec[series];
        /* Local tables: string i+1 = name id used, function i = string i, location i = fn i. */
        uint32_t *map = sp_arena_calloc(a, c->names.n + 1, sizeof *map);
        sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
        sp_sample *smp = sp_arena_calloc(a, end - start, sizeof *smp);
        uint32_t cap = 8;
        for (size_t i = start; i < end; i++)
            cap += c->stacks.lens[v[i].stack] / 4;
        const char **strs = sp_arena_alloc(a, (cap + 8) * sizeof *strs);
        uint64_t *times = sp_arena_alloc(a, (end - start) * sizeof *times);
        if (!map || !p || !smp || !strs || !times)
            FAIL();
        uint32_t ns = 1;
        strs[0] = "";
        for (size_t i = start; i < end; i++) {
            const uint32_t *frames = (const uint32_t *)(const void *)c->stacks.keys[v[i].stack];
            uint32_t nf = c->stacks.lens[v[i].stack] / 4;
            sp_sample *s = &smp[i - start];
            s->location_ids = sp_arena_alloc(a, (nf + 1) * sizeof *s->location_ids);
            if (!s->location_ids)
                FAIL();
            for (uint32_t k = 0; k < nf; k++) {
                if (!map[frames[k]]) {
                    map[frames[k]] = ns;
                    strs[ns++] =
                        sp_arena_strndup(a, c->names.keys[frames[k]], c->names.lens[frames[k]]);
                }
                s->location_ids[k] = map[frames[k]];
            }
            s->nlocations = nf;
            s->value = v[i].value;
            /* the observation's own time: the store files span rows by it */
            times[i - start] = v[i].ts;
            s->timestamps = &times[i - start];
            s->nobs = 1;
            s->spans = sp_arena_memdup(a, &v[i].ref, sizeof v[i].ref);
            s->nspans = s->spans ? 1 : 0;
        }
        sp_function *fn = sp_arena_calloc(a, ns, sizeof *fn);
        sp_location *loc = sp_arena_calloc(a, ns, sizeof *loc);
        sp_line *ln = sp_arena_calloc(a, ns, sizeof *ln);
        /* Type strings come from the type id "name:type:unit:ptype:punit". */
        char *tid = sp_arena_strndup(a, r->type_id, strlen(r->type_id));
        if (!fn || !loc || !ln || !tid)
            FAIL();
        const char *parts[5] = {"", "", "", "", ""};
        char *save = tid;
        for (int k = 0; k < 5 && save; k++) {
            parts[k] = save;
            char *colon = strchr(save, ':');
            if (colon)
                *colon++ = 0;
            save = colon;
        }
        uint32_t base = ns;
        for (int k = 0; k < 5; k++)
            strs[ns + k] = parts[k];
        for (uint32_t i = 1; i < base; i++) {
            fn[i].name = fn[i].system_name = i;
            ln[i].function_id = i;
            loc[i].lines = &ln[i];
            loc[i].nlines = 1;
        }
        p->type_id = sp_arena_strndup(a, r->type_id, strlen(r->type_id));
        p->name = parts[0];
        p->sample_type = base + 1;
        p->sample_unit = base + 2;
        p->period_type = base + 3;
        p->period_unit = base + 4;
        p->strings = strs;
        p->nstrings = ns + 5;
        p->functions = fn;
        p->nfunctions = base;
        p->locations = loc;
        p->nlocations = base;
        p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
        p->nmappings = 1;
        p->samples = smp;
        p->nsamples = (uint32_t)(end - start);
        /* the series strings live in the correlator, which may compact them: copy */
        sp_kv *kv = sp_arena_calloc(a, r->nkv ? r->nkv : 1, sizeof *kv);
        if (!kv)
            FAIL();
        for (uint32_t i = 0; i < r->nkv; i++) {
            kv[i].name = sp_arena_strndup(a, r->kv[i].name, strlen(r->kv[i].name));
            kv[i].value = sp_arena_strndup(a, r->kv[i].value, strlen(r->kv[i].value));
            if (!kv[i].name || !kv[i].value)
                FAIL();
        }
        p->series = kv;
        p->nseries = r->nkv;
        p->attach_only = 1;
        p->time_nanos = (int64_t)v[start].ts;
        if (sp_batch_add_profile(b, p))
            FAIL();
        start = end;
    }
    return 0;
#undef FAIL
}

static int cmp_late(const void *x, const void *y)
{
    const late *a = x, *b = y;
    return a->series < b->series ? -1 : a->series > b->series;
}

static void mark(corr *c, obs_ent *o, uint8_t how)
{
    if (!o->flags)
        c->st.obs_unattached--;
    if (o->interval)
        c->st.offcpu_attached += !o->flags;
    else if (!(o->flags & how))
        cw_count_outcome(c, how, 1);
    o->flags |= how;
}

/* Rules 2 and 3 for a span that arrived after observations it contains. */
/* Rule 3's guard against another thread's samples (I8): a chain of spans without thread.id is
 * taken to be thread tid's only when no other thread of the process ran during its outermost
 * span (no observation of another thread that a span of its own thread does not explain).
 * Otherwise nobody can tell which thread ran the chain: ambiguous. */
static int chain_is_threads(proc *pr, int64_t tid, const span_ent *outer)
{
    for (slot *s = pr->slots; s; s = s->pnext) {
        if (!s->tid || s->tid == tid)
            continue;
        for (uint32_t k = cw_obs_lower(s, outer->start); k < s->nobs && s->obs[k].ts < outer->end;
             k++)
            if (!(s->obs[k].flags & F_THREAD) && !s->obs[k].interval) /* off-CPU: not running */
                return 0;
    }
    return 1;
}

static void claim_observations(corr *c, slot *home, const span_ent *e, late_list *l)
{
    if (home->tid) {
        /* instants inside the span, and off-CPU intervals ending up to max_interval after its
         * start: each gets the part of its interval inside the span (I9) */
        int64_t last = e->end + (home->max_interval > 0 ? home->max_interval : 0);
        for (uint32_t k = cw_obs_lower(home, e->start); k < home->nobs && home->obs[k].ts < last;
             k++) {
            obs_ent *o = &home->obs[k];
            if (!cw_ident_compat(c, o->ident, e->ident))
                continue;
            int64_t value = o->value, ts = o->ts;
            if (!o->interval) {
                if (o->ts >= e->end)
                    continue;
            } else if (o->value > 0 && o->value <= o->ts) {
                int64_t a = o->ts - o->value > e->start ? o->ts - o->value : e->start;
                int64_t b = o->ts < e->end ? o->ts : e->end;
                if (b <= a)
                    continue;
                value = b - a;
                ts = b - 1;
            } else if (o->ts >= e->end) {
                continue;
            }
            mark(c, o, F_THREAD);
            late_push(l, o->series, o->stack, value, ts, &e->ref);
        }
        return;
    }
    if (c->opt.threadless != CORR_THREADLESS_UNIQUE)
        return;
    int settling = c->opt.settle_ns >= 0;
    for (slot *s = home->proc->slots; s; s = s->pnext)
        for (uint32_t k = cw_obs_lower(s, e->start); k < s->nobs && s->obs[k].ts < e->end; k++) {
            obs_ent *o = &s->obs[k];
            if ((o->flags & F_THREAD) || o->interval || !cw_ident_compat(c, o->ident, e->ident))
                continue;
            /* with a settle time, observations not settled yet wait for cw_settle, which judges
             * them with this span and every other one that arrived by then (I8) */
            if (settling && !(o->flags & F_SETTLED))
                continue;
            sp_span_ref m[MAX_MATCH];
            const span_ent *ents[MAX_MATCH];
            int amb;
            uint32_t n = cw_chain_at(c, home, o->ts, o->ident, m, &amb, ents);
            if (!amb && n && settling && !chain_is_threads(home->proc, s->tid, ents[n - 1]))
                amb = 1;
            if (amb) {
                if (!(o->flags & F_PROC))
                    mark(c, o, F_AMBIG);
                continue;
            }
            int in = 0;
            for (uint32_t i = 0; i < n && !in; i++)
                in = memcmp(m[i].span_id, e->ref.span_id, 8) == 0;
            if (!in)
                continue;
            mark(c, o, F_PROC);
            late_push(l, o->series, o->stack, o->value, o->ts, &e->ref);
        }
}

/* Rule 1 for a span that arrived after linked observations that were waiting for it. */
static void claim_waiting(corr *c, sp_arena *a, uint32_t tenant, const reg_ent *x, late_list *l)
{
    if (!c->wait_h.nheads)
        return;
    /* Collect first: re-queueing below may rebuild the chains being walked. */
    uint32_t n = 0, cap = 0, *hits = NULL;
    for (uint32_t i = c->wait_h.heads[cw_id_bucket(&c->wait_h, tenant, x->span_id)]; i;
         i = c->wait[i - 1].next) {
        const wait_ent *w = &c->wait[i - 1];
        if (!w->live || w->tenant != tenant || memcmp(w->gap, x->span_id, 8) != 0)
            continue;
        if (n == cap) {
            uint32_t ncap = cap ? cap * 2 : 16;
            uint32_t *h = sp_arena_alloc(a, ncap * sizeof *h);
            if (!h)
                break;
            if (n)
                memcpy(h, hits, n * sizeof *h);
            hits = h;
            cap = ncap;
        }
        hits[n++] = i - 1;
    }
    for (uint32_t j = 0; j < n; j++) {
        wait_ent w = c->wait[hits[j]];
        c->wait[hits[j]].live = 0;
        /* remembered so corr_abort can put it back (I4); without room it cannot, which only
         * costs a retried span export this one link's late attachment */
        size_t untracked = 0; /* a call's scratch, not the window's memory */
        if (c->nconsumed < c->capconsumed ||
            !grow((void **)&c->consumed, &c->capconsumed, sizeof *c->consumed, &untracked))
            c->consumed[c->nconsumed++] = w;
        sp_span_ref chain[MAX_MATCH];
        uint32_t nc = 0;
        if (!w.ref_known) {
            /* x is the linked span itself, already attached: its process is the reference */
            w.ref_pid = x->pid;
            w.ref_service = x->service;
            w.ref_ident = x->ident;
        } else {
            if (!cw_same_process(c, x->pid, x->service, x->ident, w.ref_pid, w.ref_service,
                                 w.ref_ident))
                continue;
            if (x->eligible)
                chain[nc++] = cw_reg_ref(x);
        }
        uint8_t gap[8];
        int has_gap;
        nc = cw_walk_up(c, tenant, x, w.ref_pid, w.ref_service, w.ref_ident, chain, nc, gap,
                        &has_gap);
        for (uint32_t k = 0; k < nc; k++)
            late_push(l, w.series, w.stack, w.value, w.ts, &chain[k]);
        if (has_gap) {
            wait_ent *q = cw_wait_add(c, tenant, gap);
            if (q) {
                uint32_t keep_next = q->next;
                *q = w;
                memcpy(q->gap, gap, 8);
                q->ref_known = 1;
                q->live = 1;
                q->gen = c->gen;
                q->next = keep_next;
            }
        }
    }
}

/* The process of sp learns the service its spans carry (the latest span's), for the profiles of
 * that process that name none (the eBPF profiler's). */
static void learn_service(corr *c, uint32_t tenant, const sp_span *sp, uint32_t ident)
{
    if (!sp->pid || !sp->service || !*sp->service ||
        strncmp(sp->service, "unknown_service", 15) == 0)
        return;
    proc *p = cw_find_proc(c, tenant, sp->pid, 1);
    if (!p)
        return;
    p->service_until = c->now + c->opt.window_ns;
    p->service_ident = ident;
    if (p->service && strcmp(p->service, sp->service) == 0)
        return;
    char *s = strdup(sp->service);
    if (!s)
        return;
    if (p->service)
        c->bytes -= strlen(p->service) + 1;
    free(p->service);
    p->service = s;
    c->bytes += strlen(s) + 1;
}

/* The process of a span is one that sends spans (I13): for a window from now its observations
 * wait in the whole budget, and those it holds leave the share of processes without spans. */
static void mark_claimed(corr *c, uint32_t tenant, int64_t pid)
{
    proc *p = cw_find_proc(c, tenant, pid, 1);
    if (!p)
        return; /* out of memory: its observations stay in the share */
    if (p->spans_until <= c->now)
        for (const slot *s = p->slots; s; s = s->pnext) {
            size_t b = (size_t)s->nobs * sizeof *s->obs;
            c->unclaimed_bytes -= b < c->unclaimed_bytes ? b : c->unclaimed_bytes;
        }
    p->spans_until = c->now + c->opt.window_ns;
}

/* Indexes b's spans and emits what they claim. Never fails: what cannot be indexed or emitted is
 * added to *failed (the spans themselves are stored either way). */
size_t cw_index_spans(corr *c, sp_batch *b, uint32_t tenant, uint64_t *failed)
{
    late_list l = {0};
    /* Phase 1: remember every new span, so phase 2 judges each observation against all the
     * spans of this export at once. */
    uint32_t gen = c->gen;
    /* registry indices + 1, not pointers: reg_add may move the registry */
    if (!b->nspans)
        return 0;
    uint32_t *fresh = calloc(b->nspans + 1, sizeof *fresh);
    slot **homes = calloc(b->nspans + 1, sizeof *homes);
    if (!fresh || !homes) {
        free(fresh);
        free(homes);
        c->st.spans_not_indexed += b->nspans;
        return 0;
    }
    for (size_t i = 0; i < b->nspans; i++) {
        const sp_span *sp = &b->spans[i];
        int64_t start = (int64_t)sp->start_ns, end = (int64_t)sp->end_ns;
        if (cw_reg_find(c, tenant, sp->span_id))
            continue; /* a retry: what it brings was attached the first time */
        /* times past INT64_MAX (valid OTLP) would overflow the arithmetic below: never eligible */
        int eligible = start >= 0 && end >= start && end - start >= c->opt.min_span_ns;
        uint32_t ident = cw_ident_id(c, &sp->ident);
        learn_service(c, tenant, sp, ident);
        const reg_ent *re = cw_reg_add(c, tenant, sp, ident, eligible);
        fresh[i] = re ? (uint32_t)(re - c->reg) + 1 : 0;
        if (!re)
            c->st.spans_not_indexed++;
        if (!sp->pid)
            continue;
        mark_claimed(c, tenant, sp->pid);
        if (!eligible) {
            c->st.spans_short++;
            continue;
        }
        slot *sl = cw_find_slot(c, tenant, sp->pid, sp->tid, 1);
        if (!sl || (sl->nspans == sl->capspans &&
                    grow((void **)&sl->spans, &sl->capspans, sizeof *sl->spans, &c->bytes))) {
            c->st.spans_not_indexed++;
            continue;
        }
        span_ent e = {start, end, c->now + c->opt.window_ns, {{0}, {0}}, ident, gen};
        memcpy(e.ref.trace_id, sp->trace_id, 16);
        memcpy(e.ref.span_id, sp->span_id, 8);
        /* keep sorted by start; spans mostly come in order, so this rarely moves much */
        uint32_t at = sl->nspans;
        while (at > 0 && sl->spans[at - 1].start > start)
            at--;
        memmove(&sl->spans[at + 1], &sl->spans[at], (sl->nspans - at) * sizeof e);
        sl->spans[at] = e;
        sl->nspans++;
        if (end - start > sl->maxdur)
            sl->maxdur = end - start;
        homes[i] = sl;
        c->st.spans_indexed++;
    }
    /* Phase 2: what the new spans claim. */
    for (size_t i = 0; i < b->nspans; i++) {
        if (fresh[i])
            claim_waiting(c, b->arena, tenant, &c->reg[fresh[i] - 1], &l);
        slot *sl = homes[i];
        if (!sl)
            continue;
        /* the slot is sorted by start: find this span among those starting when it does */
        int64_t start = (int64_t)b->spans[i].start_ns;
        uint32_t lo = 0, hi = sl->nspans;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (sl->spans[mid].start < start)
                lo = mid + 1;
            else
                hi = mid;
        }
        const span_ent *e = NULL;
        for (uint32_t k = lo; k < sl->nspans && sl->spans[k].start == start && !e; k++)
            if (sl->spans[k].gen == gen &&
                memcmp(sl->spans[k].ref.span_id, b->spans[i].span_id, 8) == 0)
                e = &sl->spans[k];
        if (e)
            claim_observations(c, sl, e, &l);
    }
    free(fresh);
    free(homes);
    uint64_t lost = l.lost;
    if (l.n) {
        qsort(l.v, l.n, sizeof *l.v, cmp_late);
        uint64_t unsent = emit_late(c, b, l.v, l.n);
        c->st.late += l.n - unsent;
        lost += unsent;
    }
    free(l.v);
    *failed += lost;
    return l.n - (lost > l.n ? l.n : lost);
}

/* Rule 3 after the settle time (I8): every observation that waited settle_ns since it arrived
 * without a span of its own thread is judged against the threadless spans of its process known
 * now: one chain (that no other thread ran during) → attached to all of it; several → ambiguous.
 * What is attached goes into *l with its tenant in *tenants (parallel), for the caller to emit
 * per tenant. Each slot is walked from its settle_from (I10). Returns the number decided. */
static size_t cw_settle(corr *c, int64_t now, late_list *l, uint32_t **tenants, size_t *cap)
{
    size_t decided = 0;
    if (c->opt.threadless != CORR_THREADLESS_UNIQUE || c->opt.settle_ns < 0)
        return 0;
    int64_t due = now - c->opt.settle_ns + c->opt.window_ns; /* expire <= due: settled time */
    for (size_t b = 0; b < NBUCKETS; b++)
        for (slot *s = c->buckets[b]; s; s = s->hnext) {
            if (!s->pending)
                continue;
            s->pending = 0;
            slot *nothr = cw_find_slot(c, s->tenant, s->pid, 0, 0);
            uint32_t open = UINT32_MAX; /* the first observation still waiting (I10) */
            for (uint32_t k = s->settle_from; k < s->nobs; k++) {
                obs_ent *o = &s->obs[k];
                if (!OBS_WAITS_SETTLE(o))
                    continue;
                if (o->expire > due) {
                    s->pending = 1; /* not yet */
                    if (open == UINT32_MAX)
                        open = k;
                    if (k >= s->arrival_from && !s->arrival_unordered)
                        break; /* the rest arrived later still (I10) */
                    continue;
                }
                decided++;
                o->flags |= F_SETTLED;
                sp_span_ref m[MAX_MATCH];
                const span_ent *ents[MAX_MATCH];
                int amb = 0;
                uint32_t n = nothr ? cw_chain_at(c, nothr, o->ts, o->ident, m, &amb, ents) : 0;
                if (!amb && n && !chain_is_threads(s->proc, s->tid, ents[n - 1]))
                    amb = 1;
                if (amb) {
                    mark(c, o, F_AMBIG);
                    continue;
                }
                if (!n)
                    continue;
                mark(c, o, F_PROC);
                for (uint32_t i = 0; i < n; i++) {
                    size_t before = l->n;
                    late_push(l, o->series, o->stack, o->value, o->ts, &m[i]);
                    if (l->n == before)
                        continue;
                    if (l->n > *cap) {
                        size_t ncap = *cap ? *cap * 2 : 64;
                        while (ncap < l->n)
                            ncap *= 2;
                        uint32_t *t = realloc(*tenants, ncap * sizeof *t);
                        if (!t) {
                            l->n--;
                            l->lost++;
                            continue;
                        }
                        *tenants = t;
                        *cap = ncap;
                    }
                    (*tenants)[l->n - 1] = s->tenant;
                }
            }
            /* chain_is_threads sorts other threads' slots only, never s: k stayed valid */
            s->settle_from = open == UINT32_MAX ? s->nobs : open;
        }
    return decided;
}

typedef struct tenant_late {
    uint32_t tenant;
    late v;
} tenant_late;

static int cmp_tenant_late(const void *x, const void *y)
{
    const tenant_late *a = x, *b = y;
    if (a->tenant != b->tenant)
        return a->tenant < b->tenant ? -1 : 1;
    return a->v.series < b->v.series ? -1 : a->v.series > b->v.series;
}

int corr_settle(corr *c, int64_t now_ns, int (*emit)(void *ud, sp_batch *b), void *ud)
{
    late_list l = {0};
    uint32_t *tenants = NULL;
    size_t cap = 0, nb = 0;
    sp_batch *batches = NULL;
    uint64_t lost = 0;
    pthread_mutex_lock(&c->lock);
    cw_clock(c, now_ns);
    cw_settle(c, c->now, &l, &tenants, &cap);
    lost += l.lost;
    tenant_late *tl = l.n ? malloc(l.n * sizeof *tl) : NULL;
    if (l.n && (!tl || !(batches = calloc(l.n, sizeof *batches)))) {
        lost += l.n;
        l.n = 0;
    }
    for (size_t i = 0; i < l.n; i++)
        tl[i] = (tenant_late){tenants[i], l.v[i]};
    if (l.n)
        qsort(tl, l.n, sizeof *tl, cmp_tenant_late);
    late *one = l.n ? malloc(l.n * sizeof *one) : NULL;
    for (size_t i = 0; i < l.n && one;) {
        size_t j = i, n = 0;
        while (j < l.n && tl[j].tenant == tl[i].tenant)
            one[n++] = tl[j++].v;
        sp_arena *a = sp_arena_new(0);
        const char *name = tl[i].tenant < c->tenants.n ? c->tenants.keys[tl[i].tenant] : NULL;
        sp_batch *b = &batches[nb];
        *b = (sp_batch){.arena = a,
                        .tenant = a && name ? sp_arena_strndup(a, name, strlen(name)) : NULL};
        if (!a || !b->tenant) {
            sp_arena_free(a);
            lost += n;
        } else {
            uint64_t unsent = emit_late(c, b, one, n);
            lost += unsent;
            c->st.late += n - unsent;
            nb++;
        }
        i = j;
    }
    if (l.n && !one)
        lost += l.n;
    c->st.attach_failed += lost;
    cw_publish(c);
    cw_unlock(c);
    /* stored outside the lock: the store waits for its commit */
    uint64_t failed = 0;
    for (size_t i = 0; i < nb; i++) {
        uint64_t n = 0;
        for (size_t k = 0; k < batches[i].nprofiles; k++)
            n += batches[i].profiles[k]->nsamples;
        if (batches[i].nprofiles && emit(ud, &batches[i]))
            failed += n;
        sp_arena_free(batches[i].arena);
    }
    if (failed) {
        pthread_mutex_lock(&c->lock);
        c->st.attach_failed += failed;
        cw_publish(c);
        cw_unlock(c);
    }
    free(one);
    free(tl);
    free(batches);
    free(tenants);
    free(l.v);
    return failed || lost ? SP_ENOMEM : 0;
}
