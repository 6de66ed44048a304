/* Expiry, the memory budget and its eviction order, and compaction of the intern tables
 * (internal.h; the invariants are in correlator.c). */
#include "internal.h"

/* ---- expiry, budget, compaction ---- */

static int span_expired(const span_ent *e, int64_t cut)
{
    return e->expire <= cut;
}

/* Recomputes c->bytes from what is held (cheap next to a sweep). */
void cw_recount(corr *c)
{
    size_t b = 0, unclaimed = 0; /* the fixed tables are not what the budget is about */
    for (size_t i = 0; i < NBUCKETS; i++) {
        for (slot *s = c->buckets[i]; s; s = s->hnext) {
            b += sizeof *s + (size_t)s->capspans * sizeof *s->spans +
                 (size_t)s->capobs * sizeof *s->obs;
            if (SLOT_UNCLAIMED(c, s))
                unclaimed += (size_t)s->nobs * sizeof *s->obs;
        }
        for (proc *p = c->pbuckets[i]; p; p = p->hnext)
            b += sizeof *p + (p->service ? strlen(p->service) + 1 : 0);
    }
    b += cw_itab_bytes(&c->names) + cw_itab_bytes(&c->stacks) + cw_itab_bytes(&c->series) +
         cw_itab_bytes(&c->tenants) + cw_itab_bytes(&c->idents);
    b += (size_t)c->capsrec * sizeof *c->srec;
    for (uint32_t i = 0; i < c->series.n && i < c->capsrec; i++)
        b += (c->srec[i].nkv ? c->srec[i].nkv : 1) * sizeof(sp_kv);
    b += (size_t)c->capreg * sizeof *c->reg + (size_t)c->reg_h.nheads * sizeof(uint32_t);
    b += (size_t)c->capwait * sizeof *c->wait + (size_t)c->wait_h.nheads * sizeof(uint32_t);
    c->bytes = b;
    c->unclaimed_bytes = unclaimed;
}

/* What one pass of drop_before removes: entries expiring at or before each cut. */
typedef struct cuts {
    int64_t attached;   /* observations already attached (waiting only for more spans) */
    int64_t unattached; /* observations without a span yet, and waiting links */
    int64_t spans;      /* spans (and, past one more window, their registry entries) */
    int evicting;       /* 1: before their time, to stay within budget (counted);
                         * EVICT_UNCLAIMED: only observations of processes without spans (I13),
                         * nothing else */
} cuts;

#define EVICT_UNCLAIMED 2

static void obs_gone(corr *c, const obs_ent *o, int evicting)
{
    c->st.obs_waiting--;
    if (!o->flags) {
        c->st.obs_unattached--;
        c->st.unmatched += !o->interval; /* a CPU outcome (off-CPU has counters of its own) */
        if (evicting == EVICT_UNCLAIMED)
            c->st.unclaimed_evicted++;
        else if (evicting)
            c->st.evicted++;
    } else if (evicting) {
        c->st.released++;
    }
}

/* Gives back the unused tail of an array (the budget counts capacity, so eviction must return it
 * to make room). Sweeps leave an eighth spare, so the next appends do not realloc at once. */
static void shrink(void **arr, uint32_t n, uint32_t *cap, size_t elem)
{
    uint32_t ncap = n + n / 8 + 8;
    if (*cap <= ncap + 8)
        return;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (p) {
        *arr = p;
        *cap = ncap;
    }
}

/* drop_obs for a slot in expiry order (appended in arrival order, the clock never set back:
 * I10's arrival_from 0, not arrival_unordered) cut at one time for both classes: what goes is a
 * prefix, found by bisection and moved out with one memmove. Copying the survivors one by one
 * was most of a pass over the share of I13 (400,000 records, 8-9 ms under the lock at full
 * load). max_interval is left as it was: a bound on what is held, which a subset keeps.
 * Returns 0 when the slot is not in that order (the caller walks it). */
static int drop_prefix(corr *c, slot *s, const cuts *cut)
{
    if (cut->attached != cut->unattached || s->arrival_from || s->arrival_unordered)
        return 0;
    uint32_t lo = 0, hi = s->nobs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->obs[mid].expire <= cut->attached)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = 0; i < lo; i++)
        obs_gone(c, &s->obs[i], cut->evicting);
    memmove(s->obs, s->obs + lo, (size_t)(s->nobs - lo) * sizeof *s->obs);
    s->nobs -= lo;
    s->settle_from = s->settle_from > lo ? s->settle_from - lo : 0;
    s->obs_min_expire = s->nobs ? s->obs[0].expire : INT64_MAX;
    if (!s->nobs)
        s->max_interval = 0;
    return 1;
}

/* Drops a slot's observations that expire at or before the cuts, keeping the order and the
 * marks of I10. A slot whose oldest observation expires later is not walked at all: a periodic
 * sweep reads only the slots that hold something to drop. */
static void drop_obs(corr *c, slot *s, const cuts *cut)
{
    int64_t hi = cut->attached > cut->unattached ? cut->attached : cut->unattached;
    if (!s->nobs || s->obs_min_expire > hi || drop_prefix(c, s, cut))
        return;
    obs_keep x = OBS_KEEP_INIT;
    for (uint32_t i = 0; i < s->nobs; i++) {
        const obs_ent *o = &s->obs[i];
        if (o->expire <= (o->flags ? cut->attached : cut->unattached))
            obs_gone(c, o, cut->evicting);
        else
            obs_keep_add(&x, s, i);
    }
    obs_keep_done(&x, s);
}

/* Drops the slots' and processes' entries in buckets [from, to) that expire at or before the
 * cuts; frees empty slots and processes. */
static void drop_slots(corr *c, const cuts *k_, size_t from, size_t to)
{
    const cuts cut = *k_;
    for (size_t b = from; b < to; b++) {
        slot **pp = &c->buckets[b];
        while (*pp) {
            slot *s = *pp;
            if (cut.evicting == EVICT_UNCLAIMED && !SLOT_UNCLAIMED(c, s)) {
                pp = &s->hnext;
                continue;
            }
            uint32_t k2 = 0;
            int64_t maxdur = 0;
            for (uint32_t i = 0; i < s->nspans; i++) {
                if (span_expired(&s->spans[i], cut.spans))
                    continue;
                if (s->spans[i].end - s->spans[i].start > maxdur)
                    maxdur = s->spans[i].end - s->spans[i].start;
                s->spans[k2++] = s->spans[i];
            }
            c->st.spans_indexed -= s->nspans - k2;
            if (cut.evicting)
                c->st.spans_evicted += s->nspans - k2;
            s->nspans = k2;
            s->maxdur = maxdur;
            drop_obs(c, s, &cut);
            if (!s->nspans && !s->nobs) {
                *pp = s->hnext;
                /* unlink from its process */
                slot **q = &s->proc->slots;
                while (*q != s)
                    q = &(*q)->pnext;
                *q = s->pnext;
                free(s->spans);
                free(s->obs);
                free(s);
                continue;
            }
            if (cut.evicting != EVICT_UNCLAIMED) {
                shrink((void **)&s->spans, s->nspans, &s->capspans, sizeof *s->spans);
                shrink((void **)&s->obs, s->nobs, &s->capobs, sizeof *s->obs);
            } else if (s->capobs > 4 * s->nobs + 64) {
                /* I13 keeps the room of a slot that is filling again (at most 4 times what a
                 * pass leaves it), but not that of one mostly emptied (a process that stopped) */
                shrink((void **)&s->obs, s->nobs, &s->capobs, sizeof *s->obs);
            }
            pp = &s->hnext;
        }
    }
    int64_t span_cut = cut.spans;
    for (size_t b = from; b < to; b++) {
        proc **pp = &c->pbuckets[b];
        while (*pp) {
            proc *p = *pp;
            if (!p->slots && p->profiled_until <= span_cut && p->service_until <= span_cut &&
                p->spans_until <= span_cut) {
                *pp = p->hnext;
                free(p->service);
                free(p);
                continue;
            }
            pp = &p->hnext;
        }
    }
}

/* Drops the registry entries and waiting links that expire at or before the cuts. */
static void drop_ids(corr *c, const cuts *k_)
{
    const cuts cut = *k_;
    int64_t span_cut = cut.spans;
    int evicting = cut.evicting;
    int64_t obs_cut = cut.unattached;
    /* registry and waiting links: compact the arrays, rebuild the chains */
    /* A registry entry outlives its span by one window: observations the span claimed may wait
     * that long, and a retried export must find the span seen so it claims them only once. */
    uint32_t k = 0, known = 0;
    int64_t keep = evicting ? 0 : c->opt.window_ns;
    for (uint32_t i = 0; i < c->nreg; i++)
        if (c->reg[i].live && c->reg[i].expire > span_cut - keep) {
            known += c->reg[i].expire > span_cut;
            c->reg[k++] = c->reg[i];
        }
    c->st.spans_known = known;
    c->nreg = k;
    shrink((void **)&c->reg, c->nreg, &c->capreg, sizeof *c->reg);
    IDHASH_REBUILD(&c->reg_h, c->reg, c->nreg, span_id, c->bytes);
    k = 0;
    for (uint32_t i = 0; i < c->nwait; i++) {
        if (!c->wait[i].live)
            continue;
        if (c->wait[i].expire <= obs_cut) {
            if (evicting)
                c->st.evicted++;
            continue;
        }
        c->wait[k++] = c->wait[i];
    }
    c->nwait = k;
    shrink((void **)&c->wait, c->nwait, &c->capwait, sizeof *c->wait);
    IDHASH_REBUILD(&c->wait_h, c->wait, c->nwait, gap, c->bytes);
}

/* Everything that expires at or before the cuts. */
static void drop_before(corr *c, const cuts *k)
{
    drop_slots(c, k, 0, NBUCKETS);
    drop_ids(c, k);
}

static size_t intern_bytes(const corr *c)
{
    return cw_itab_bytes(&c->names) + cw_itab_bytes(&c->stacks) + cw_itab_bytes(&c->series);
}

/* A stack's key after its names were renumbered (cw_itab_compact's rekey): its new hash. */
static uint32_t rekey_stack(char *key, uint32_t len, void *ud)
{
    const uint32_t *nmap = ud;
    uint32_t *f = (uint32_t *)(void *)key;
    for (uint32_t k = 0; k < len / 4; k++)
        f[k] = nmap[f[k]];
    return (uint32_t)hash64(key, len, FNV);
}

/* Marks what the waiting observations and links use: their stacks and series, and the stacks'
 * names. */
static void mark_interns(const corr *c, uint64_t *sbit, uint64_t *nbit, uint64_t *rbit)
{
#define MARK(bits, id) ((bits)[(id) / 64] |= 1ULL << ((id) % 64))
    for (size_t b = 0; b < NBUCKETS; b++)
        for (const slot *s = c->buckets[b]; s; s = s->hnext)
            for (uint32_t i = 0; i < s->nobs; i++) {
                MARK(sbit, s->obs[i].stack);
                MARK(rbit, s->obs[i].series);
            }
    for (uint32_t i = 0; i < c->nwait; i++) {
        MARK(sbit, c->wait[i].stack);
        MARK(rbit, c->wait[i].series);
    }
    for (uint32_t id = 0; id < c->stacks.n; id++) {
        if (!(sbit[id / 64] >> (id % 64) & 1))
            continue;
        const uint32_t *f = (const uint32_t *)(const void *)c->stacks.keys[id];
        for (uint32_t k = 0; k < c->stacks.lens[id] / 4; k++)
            MARK(nbit, f[k]);
    }
#undef MARK
}

/* Rebuilds the name, stack and series tables from what live observations still use, so they
 * do not grow for ever while observations come and go: the ids in use are renumbered in their
 * order (cw_itab_compact), and every observation and link rewritten. Everything it allocates is
 * allocated first, so it renumbers all three tables or none. */
static void compact_interns(corr *c)
{
    uint64_t *sbit = calloc(((size_t)c->stacks.n + 64) / 64, 8);
    uint64_t *nbit = calloc(((size_t)c->names.n + 64) / 64, 8);
    uint64_t *rbit = calloc(((size_t)c->series.n + 64) / 64, 8);
    itab_plan ps = {0}, pn = {0}, pr = {0};
    int ok = sbit && nbit && rbit;
    if (ok)
        mark_interns(c, sbit, nbit, rbit);
    ok = ok && !cw_itab_plan(&c->stacks, sbit, &ps);
    ok = ok && !cw_itab_plan(&c->names, nbit, &pn);
    ok = ok && !cw_itab_plan(&c->series, rbit, &pr);
    if (ok) {
        for (size_t b = 0; b < NBUCKETS; b++)
            for (slot *s = c->buckets[b]; s; s = s->hnext)
                for (uint32_t i = 0; i < s->nobs; i++) {
                    s->obs[i].stack = ps.map[s->obs[i].stack];
                    s->obs[i].series = pr.map[s->obs[i].series];
                }
        for (uint32_t i = 0; i < c->nwait; i++) {
            c->wait[i].stack = ps.map[c->wait[i].stack];
            c->wait[i].series = pr.map[c->wait[i].series];
        }
        /* a series' record points into its key, which keeps its memory: it moves with it */
        for (uint32_t id = 0; id < c->series.n && id < c->capsrec; id++) {
            uint32_t to = pr.map[id];
            if (to == UINT32_MAX) {
                free(c->srec[id].kv);
                memset(&c->srec[id], 0, sizeof c->srec[id]);
            } else {
                c->srec[to] = c->srec[id]; /* to <= id */
            }
        }
        for (uint32_t id = pr.n; id < c->series.n && id < c->capsrec; id++)
            memset(&c->srec[id], 0, sizeof c->srec[id]); /* moved down or freed above */
        cw_itab_compact(&c->names, &pn, NULL, NULL);
        cw_itab_compact(&c->stacks, &ps, rekey_stack, pn.map);
        cw_itab_compact(&c->series, &pr, NULL, NULL);
        c->interns_compacted = intern_bytes(c);
        c->interns_gen++;
    }
    cw_itab_plan_free(&ps);
    cw_itab_plan_free(&pn);
    cw_itab_plan_free(&pr);
    free(sbit);
    free(nbit);
    free(rbit);
}

/* Rebuilds the identity table from what still refers to it: every span or sample with a new
 * host.id, pod or container adds an entry, and without this they would outlive the window (and
 * keep `bytes` over the budget for good). */
static void compact_idents(corr *c)
{
    itab nt = {0};
    uint32_t *map = calloc(c->idents.n + 1, sizeof *map); /* old id + 1 → new id + 1 */
    int ok = map != NULL;
#define VISIT(ref)                                                                                 \
    do {                                                                                           \
        if (pass) {                                                                                \
            if (ref)                                                                               \
                (ref) = map[(ref)];                                                                \
        } else if (ok && (ref) && !map[(ref)]) {                                                   \
            uint32_t id_ = cw_itab_get(&nt, c->idents.keys[(ref)-1], c->idents.lens[(ref)-1], 1);  \
            ok = id_ != UINT32_MAX;                                                                \
            map[(ref)] = id_ + 1;                                                                  \
        }                                                                                          \
    } while (0)
    /* pass 0 builds the new table (nothing changes if it fails), pass 1 rewrites the references */
    for (int pass = 0; pass < 2 && ok; pass++) {
        for (size_t b = 0; b < NBUCKETS; b++) {
            for (slot *s = c->buckets[b]; s; s = s->hnext) {
                for (uint32_t i = 0; i < s->nspans; i++)
                    VISIT(s->spans[i].ident);
                for (uint32_t i = 0; i < s->nobs; i++)
                    VISIT(s->obs[i].ident);
            }
            for (proc *p = c->pbuckets[b]; p; p = p->hnext)
                for (uint32_t i = 0; i < p->nprof_ident; i++)
                    VISIT(p->prof_ident[i]);
        }
        for (uint32_t i = 0; i < c->nreg; i++)
            VISIT(c->reg[i].ident);
        for (uint32_t i = 0; i < c->nwait; i++)
            VISIT(c->wait[i].ref_ident);
    }
#undef VISIT
    if (ok) {
        cw_itab_free(&c->idents);
        c->idents = nt;
    } else {
        cw_itab_free(&nt);
    }
    free(map);
}

/* Rebuilds the tenant table from the tenants something still refers to, when most of it is
 * gone: a client naming a new X-Scope-OrgID per request must not grow it for ever. Tenant ids
 * are part of every hash key, so everything is re-filed under its new id. */
static void compact_tenants(corr *c)
{
    itab nt = {0};
    uint32_t *map = calloc(c->tenants.n + 1, sizeof *map); /* old id → new id + 1 */
    int ok = map != NULL;
#define USE(t)                                                                                     \
    do {                                                                                           \
        if (ok && (t) < c->tenants.n && !map[(t)]) {                                               \
            uint32_t id_ = cw_itab_get(&nt, c->tenants.keys[(t)], c->tenants.lens[(t)], 1);        \
            ok = id_ != UINT32_MAX;                                                                \
            map[(t)] = id_ + 1;                                                                    \
        }                                                                                          \
    } while (0)
    for (size_t b = 0; b < NBUCKETS && ok; b++) {
        for (slot *sl = c->buckets[b]; sl; sl = sl->hnext)
            USE(sl->tenant);
        for (proc *p = c->pbuckets[b]; p; p = p->hnext)
            USE(p->tenant);
    }
    for (uint32_t i = 0; i < c->nreg && ok; i++)
        USE(c->reg[i].tenant);
    for (uint32_t i = 0; i < c->nwait && ok; i++)
        USE(c->wait[i].tenant);
#undef USE
    if (!ok || nt.n * 2 > c->tenants.n) { /* failed, or not worth it */
        cw_itab_free(&nt);
        free(map);
        return;
    }
    /* re-file slots and processes under their new ids */
    slot *slots = NULL;
    proc *procs = NULL;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (slot *sl = c->buckets[b], *n; sl; sl = n) {
            n = sl->hnext;
            sl->hnext = slots;
            slots = sl;
        }
        for (proc *p = c->pbuckets[b], *n; p; p = n) {
            n = p->hnext;
            p->hnext = procs;
            procs = p;
        }
        c->buckets[b] = NULL;
        c->pbuckets[b] = NULL;
    }
    for (slot *sl = slots, *n; sl; sl = n) {
        n = sl->hnext;
        sl->tenant = map[sl->tenant] - 1;
        uint32_t h = cw_slot_bucket(sl->tenant, sl->pid, sl->tid);
        sl->hnext = c->buckets[h];
        c->buckets[h] = sl;
    }
    for (proc *p = procs, *n; p; p = n) {
        n = p->hnext;
        p->tenant = map[p->tenant] - 1;
        uint32_t h = cw_proc_bucket(p->tenant, p->pid);
        p->hnext = c->pbuckets[h];
        c->pbuckets[h] = p;
    }
    for (uint32_t i = 0; i < c->nreg; i++)
        c->reg[i].tenant = map[c->reg[i].tenant] - 1;
    for (uint32_t i = 0; i < c->nwait; i++)
        c->wait[i].tenant = map[c->wait[i].tenant] - 1;
    IDHASH_REBUILD(&c->reg_h, c->reg, c->nreg, span_id, c->bytes);
    IDHASH_REBUILD(&c->wait_h, c->wait, c->nwait, gap, c->bytes);
    cw_itab_free(&c->tenants);
    c->tenants = nt;
    free(map);
}

/* What a sweep does once the slots are swept: the registry, the waiting links, the tables. */
static void sweep_rest(corr *c, const cuts *k)
{
    drop_ids(c, k);
    /* tables only shrink by rebuilding; do it when they hold much more than is used */
    uint64_t live = c->st.obs_waiting + c->nwait;
    if (c->stacks.n > 4 * live + 65536 || c->names.n > 64 * live + 262144)
        compact_interns(c);
    if (c->idents.n > 4 * (c->st.obs_waiting + c->nwait + c->nreg) + 4096)
        compact_idents(c);
    if (c->tenants.n > 1024)
        compact_tenants(c);
}

void cw_sweep(corr *c, int64_t now)
{
    cuts k = {now, now, now, 0};
    drop_slots(c, &k, 0, NBUCKETS);
    sweep_rest(c, &k);
    cw_recount(c);
    c->sweep_next = 0;
    c->last_sweep = now;
}

/* I11: a periodic sweep walks one slice of the slot buckets per call (the lock every ingest
 * worker waits for is held for that slice, not for everything that waits), and the registry,
 * the waiting links and the tables when the last slice is done. The caller sweeps everything
 * instead when the current round started too long ago (calls came too rarely). */
void cw_sweep_slice(corr *c, int64_t now)
{
    cuts k = {now, now, now, 0};
    size_t per = NBUCKETS / SWEEP_SLICES;
    if (!c->sweep_next)
        c->sweep_cycle = now;
    drop_slots(c, &k, c->sweep_next * per, (c->sweep_next + 1) * per);
    if (++c->sweep_next == SWEEP_SLICES) {
        c->sweep_next = 0;
        sweep_rest(c, &k);
    }
    cw_recount(c);
    c->last_sweep = now;
}

/* The expiry time below which the oldest `share` of the waiting observations (attached ones, or
 * unattached ones and waiting links) lie: a histogram of expiry times in one pass, so the big
 * passes (drop, sweep, recount) run once, not in a loop that would hold the lock for seconds.
 * The histogram spans what is held -- from the earliest expiry a slot or link may have (I11's
 * lower bounds, read per slot, not per observation) to now + window -- not the whole window:
 * under a long window a full budget holds a few seconds of it, and 64 buckets over 10 minutes
 * put all of them in one bucket, so a pass dropped everything instead of the oldest share.
 *
 * A share is a quantile, and a quantile does not need every observation: past HIST_SAMPLES
 * waiting ones the walk reads every stride-th (each standing for stride), so it touches a
 * fraction of the memory it did (reading all of them was 20-28 ms of each pass under the lock
 * at full load, issue 19). When the class asked for is rare among what waits, too few of it fall
 * on the stride, and the walk is done again reading all. */
#define HIST_SAMPLES (1u << 16)

enum { CLS_UNATTACHED = 0, CLS_ATTACHED = 1, CLS_UNCLAIMED = 2 }; /* what a walk reads */

static int64_t share_cut_walk(corr *c, int cls, double share, uint64_t stride)
{
    enum { NB = 1024 };
    uint64_t hist[NB] = {0}, total = 0, seen = 0;
    int64_t w = c->opt.window_ns > 0 ? c->opt.window_ns : 1;
    int64_t hi = c->now + w, lo = hi;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (slot *s = c->buckets[b]; s; s = s->hnext)
            if (s->nobs && s->obs_min_expire < lo && (cls != CLS_UNCLAIMED || SLOT_UNCLAIMED(c, s)))
                lo = s->obs_min_expire;
    if (cls == CLS_UNATTACHED)
        for (uint32_t i = 0; i < c->nwait; i++)
            if (c->wait[i].expire < lo)
                lo = c->wait[i].expire;
    if (lo < c->now)
        lo = c->now; /* what is due already counts as the oldest bucket */
    int64_t range = hi - lo + 1;
#define HIST(expire, weight)                                                                       \
    do {                                                                                           \
        int64_t off_ = (expire)-lo; /* 0 = oldest .. range = newest */                             \
        hist[off_ <= 0       ? 0                                                                   \
             : off_ >= range ? NB - 1                                                              \
                             : (int)((double)off_ * NB / (double)range)] += (weight);              \
        total += (weight);                                                                         \
    } while (0)
    uint64_t skip = 0; /* where the stride falls in the next slot */
    for (size_t b = 0; b < NBUCKETS; b++)
        for (slot *s = c->buckets[b]; s; s = s->hnext) {
            if (cls == CLS_UNCLAIMED && !SLOT_UNCLAIMED(c, s))
                continue;
            uint64_t i = skip;
            for (; i < s->nobs; i += stride)
                if (cls == CLS_UNCLAIMED || !s->obs[i].flags == !cls) {
                    HIST(s->obs[i].expire, stride);
                    seen++;
                }
            skip = i - s->nobs;
        }
    if (cls == CLS_UNATTACHED)
        for (uint32_t i = 0; i < c->nwait; i++)
            HIST(c->wait[i].expire, 1);
#undef HIST
    if (stride > 1 && seen < HIST_SAMPLES / 64)
        return share_cut_walk(c, cls, share, 1); /* too few of the class fell on the stride */
    if (!total)
        return INT64_MIN;
    uint64_t want = (uint64_t)(share * (double)total) + 1, got = 0;
    int k = 0;
    while (k < NB && got < want)
        got += hist[k++];
    return k >= NB ? hi : lo + (int64_t)((double)range * k / NB);
}

/* The stride that reads about HIST_SAMPLES of what waits. */
static uint64_t walk_stride(const corr *c)
{
    return c->st.obs_waiting > HIST_SAMPLES ? c->st.obs_waiting / HIST_SAMPLES : 1;
}

static int64_t oldest_share_cut(corr *c, int attached, double share)
{
    uint64_t waiting = c->st.obs_waiting, unattached = c->st.obs_unattached;
    uint64_t of_class = attached ? waiting - unattached : unattached + c->nwait;
    if (!of_class && unattached <= waiting)
        return INT64_MIN; /* none of the class waits: no walk at all */
    return share_cut_walk(c, attached ? CLS_ATTACHED : CLS_UNATTACHED, share, walk_stride(c));
}

/* Whether the budget should rebuild the intern tables after dropping observations. A rebuild
 * walks every waiting observation under the lock, and at full load without spans the budget
 * acts every few seconds: rebuilding each time cost about 7 % of the ingest workers' CPU (issue
 * 19). Entries of dropped observations only matter once they are a real share of the budget,
 * so the tables are rebuilt when they have doubled since the last rebuild and hold more than
 * `floor` (an eighth of the budget for the budget's passes, the share or INTERNS_FLOOR for the
 * share's) -- or (the caller) when dropping alone left `bytes` over it. */
static int interns_worth_compacting(const corr *c, size_t floor)
{
    size_t now = intern_bytes(c);
    return now > 2 * c->interns_compacted && now > floor;
}

/* I13: the observations of processes that have sent no span in the window wait in a share of
 * the budget. The eBPF profiler samples every process of a host, and most never send a span;
 * without a share of their own they filled the budget at full load (the peak RSS row of issue
 * 19: 512 MiB of them, in a load that sends no spans). A sixteenth still holds minutes of one
 * busy host, so a process's first spans (an SDK exports them when they end, in 5 s batches)
 * find its samples; from its first span on, a process waits in the whole budget.
 *
 * Over the share, the oldest of them go, down to half of it (`unclaimed_evicted`). The share
 * counts the records held, not the arrays' capacity, and a pass leaves the arrays their room:
 * at full load a pass comes every fraction of a second, and giving the room back each time (a
 * realloc, then malloc_trim) cost 2.5-6 ms of trim per pass and doubled the page faults, only
 * for the arrays to grow again (issue 19). So the arrays of these processes keep their room
 * while they fill again; only a slot left mostly empty (a process that stopped) gives its room
 * back, and memory is trimmed when that freed a good part of the share. The names and stacks of
 * what went stay in the tables until they are rebuilt here, once over the share and doubled since
 * the last rebuild (with new frames all run long they grew to three times the share in 20 s at
 * full load) -- and over INTERNS_FLOOR: one Export's names alone double the tables of a small
 * share, and with an 8 MiB budget a rebuild after every pass (257 in 5 s, 659 ms under the
 * lock) cost 28 % of the throughput. */
#define INTERNS_FLOOR ((size_t)4 << 20)

static void evict_unclaimed(corr *c)
{
    size_t cap = c->opt.max_bytes / UNCLAIMED_SHARE;
    if (c->unclaimed_bytes <= cap)
        return;
    cw_recount(c); /* only added to since the last one: the exact figure first */
    if (c->unclaimed_bytes <= cap)
        return;
    double share = 1.0 - 0.5 * (double)cap / (double)c->unclaimed_bytes;
    int64_t cut = share_cut_walk(c, CLS_UNCLAIMED, share, walk_stride(c));
    if (cut == INT64_MIN)
        return;
    cuts k = {cut, cut, INT64_MIN, EVICT_UNCLAIMED};
    size_t before = c->bytes;
    drop_slots(c, &k, 0, NBUCKETS);
    cw_recount(c);
    if (interns_worth_compacting(c, cap > INTERNS_FLOOR ? cap : INTERNS_FLOOR)) {
        compact_interns(c);
        cw_recount(c);
    }
    if (c->bytes + cap / 2 < before) { /* I12, when a good part of the share went back */
        if (!c->trim_due)
            c->st.memory_trims++;
        c->trim_due = 1;
    }
}

/* Over budget: make room in this order, each step only when the one before was not enough, and
 * aiming at 3/4 of the budget to leave room:
 *   1. observations already attached, oldest first (counted in `released`: stored and attached,
 *      they only stop waiting for ancestors still to come);
 *   2. observations and links still waiting for their span, oldest first (`evicted`);
 *   3. spans, oldest half of the window, then all (`spans_evicted`).
 * Spans go last: a sample whose span is in the window is attached whatever else waits. */
void cw_enforce_budget(corr *c)
{
    evict_unclaimed(c);
    if (c->bytes <= c->opt.max_bytes)
        return;
    if (!c->trim_due) /* I12: one trim per call, at its unlock */
        c->st.memory_trims++;
    c->trim_due = 1;
    int64_t w = c->opt.window_ns > 0 ? c->opt.window_ns : 1;
    /* The share assumes bytes go with observations; when the tables of names and stacks they
     * leave behind are most of it (never-seen frames), one pass is not enough: the waiting ones
     * get up to three, each sized on what is left, before the last resort below. */
    for (int attached = 1; attached >= 0 && c->bytes > c->opt.max_bytes; attached--) {
        for (int pass = 0; pass < (attached ? 1 : 3) && c->bytes > c->opt.max_bytes; pass++) {
            double share = 1.0 - 0.75 * (double)c->opt.max_bytes / (double)c->bytes;
            int64_t cut = oldest_share_cut(c, attached, share);
            if (cut == INT64_MIN)
                break;
            cuts k = {attached ? cut : c->now, attached ? INT64_MIN : cut, c->now, 1};
            drop_before(c, &k);
            cw_recount(c);
            if (c->bytes > c->opt.max_bytes || interns_worth_compacting(c, c->opt.max_bytes / 8)) {
                compact_interns(c);
                cw_recount(c);
            }
        }
    }
    if (c->bytes > c->opt.max_bytes) {
        cuts k = {c->now + w + 1, c->now + w + 1, c->now + w / 2, 1};
        drop_before(c, &k);
        cw_recount(c);
        if (c->bytes > c->opt.max_bytes) {
            k.spans = c->now + w + 1;
            drop_before(c, &k);
            cw_recount(c);
        }
        /* what was dropped leaves its names and stacks behind: without this the budget stayed
         * exceeded, and nothing new was kept until some later pass rebuilt the tables */
        if (c->bytes > c->opt.max_bytes || interns_worth_compacting(c, c->opt.max_bytes / 8)) {
            compact_interns(c);
            cw_recount(c);
        }
    }
}
