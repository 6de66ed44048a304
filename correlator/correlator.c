#include "correlator.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS       16384
#define MAX_MATCH      32  /* spans one observation can belong to (nesting depth) */
#define MAX_WALK       256 /* parent hops, so a cycle in bad input ends */
#define SWEEP_EVERY_NS 1000000000LL
#define PROF_IDENTS    8 /* identities (hosts, pods, containers) remembered per profiled pid */

/* Outcome bits of a retained observation: each is counted once, when first set. */
enum { F_THREAD = 1, F_PROC = 2, F_AMBIG = 4 };

/* ---- the state ---- */

typedef struct span_ent {
    int64_t start, end, expire;
    sp_span_ref ref;
    uint32_t ident; /* ident id + 1; 0 = none given */
    uint32_t gen;   /* the corr_attach_spans call that indexed it */
} span_ent;

typedef struct obs_ent {
    int64_t ts, value, expire;
    uint32_t stack, series, ident; /* ids into the intern tables (ident: id + 1, 0 = none) */
    uint8_t flags;
} obs_ent;

struct proc;

/* One thread (tid 0: no thread) of one process: its spans, sorted by start, and the
 * observations taken on it. */
typedef struct slot {
    uint32_t tenant;
    int64_t pid, tid;
    span_ent *spans;
    uint32_t nspans, capspans;
    int64_t maxdur; /* longest span here, bounds the backward scan of a lookup */
    obs_ent *obs;
    uint32_t nobs, capobs;
    uint8_t obs_sorted;
    struct proc *proc;
    struct slot *hnext, *pnext;
} slot;

typedef struct proc {
    uint32_t tenant;
    int64_t pid;
    slot *slots;
    int64_t profiled_until;           /* CPU profiles seen from it: until when that counts */
    uint32_t prof_ident[PROF_IDENTS]; /* the identities those profiles had (ident id + 1); more
                                       * are counted in idents_over and not remembered */
    uint32_t nprof_ident;
    struct proc *hnext;
} proc;

/* Every received span, of any length, by id: the parent walk of explicit links. */
typedef struct reg_ent {
    uint8_t span_id[8], parent[8], trace_id[16];
    uint32_t tenant, ident;
    int64_t pid;
    uint64_t service; /* hash of service.name: the process key when there is no pid */
    int64_t expire;
    uint8_t eligible, live;
    uint32_t next; /* index + 1 of the next entry in the bucket */
} reg_ent;

/* A linked observation waiting for the ancestor `gap` of its span to arrive. */
typedef struct wait_ent {
    uint8_t gap[8];
    uint32_t tenant;
    uint8_t ref_known, live;
    int64_t ref_pid;
    uint64_t ref_service;
    uint32_t ref_ident;
    int64_t ts, value, expire;
    uint32_t stack, series;
    uint32_t next;
} wait_ent;

/* Interned keys: frame names, stacks (name ids, leaf first), series, tenants, identities. */
typedef struct itab {
    char **keys;
    uint32_t *lens;
    uint32_t n, cap;
    uint32_t *slots, nslots; /* id + 1 */
} itab;

typedef struct series_rec {
    const char *type_id;
    sp_kv *kv;
    uint32_t nkv;
} series_rec;

/* A hash of entries keyed by (tenant, 8-byte id), entries in one array, chained by index. */
typedef struct idhash {
    uint32_t *heads, nheads;
} idhash;

struct corr {
    corr_options opt;
    pthread_mutex_t lock;
    slot *buckets[NBUCKETS];
    proc *pbuckets[NBUCKETS];
    itab names, stacks, series, tenants, idents;
    series_rec *srec;
    uint32_t capsrec;
    reg_ent *reg;
    uint32_t nreg, capreg;
    idhash reg_h;
    wait_ent *wait;
    uint32_t nwait, capwait;
    idhash wait_h;
    size_t bytes;
    int64_t last_sweep, now;
    uint32_t gen;
    corr_stats st;
};

/* Eight bytes at a time: stacks (up to 2 KiB of frame ids) and names are hashed on every
 * retained sample, and a byte-wise hash showed up at the top of the ingest profile. */
static uint64_t hash64(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
        b += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, b, n);
    h = (h ^ w ^ (uint64_t)n << 56) * 0xbf58476d1ce4e5b9ull;
    return h ^ h >> 31;
}

#define FNV 1469598103934665603ull

static int grow(void **arr, uint32_t *cap, size_t elem, size_t *bytes)
{
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return -1;
    *bytes += (size_t)(ncap - *cap) * elem;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* ---- interning ---- */

static void itab_free(itab *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        free(t->keys[i]);
    free(t->keys);
    free(t->lens);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static size_t itab_bytes(const itab *t)
{
    size_t b = (size_t)t->cap * (sizeof *t->keys + sizeof *t->lens) + t->nslots * sizeof *t->slots;
    for (uint32_t i = 0; i < t->n; i++)
        b += t->lens[i] + 1;
    return b;
}

/* Id of key; create: add it when new. UINT32_MAX when absent or out of memory. */
static uint32_t itab_get(itab *t, const void *key, uint32_t len, int create)
{
    if (create && (t->n + 1) * 2 > t->nslots) {
        uint32_t ns = t->nslots ? t->nslots * 2 : 1024;
        uint32_t *sl = calloc(ns, sizeof *sl);
        if (!sl)
            return UINT32_MAX;
        for (uint32_t i = 0; i < t->n; i++) {
            uint32_t h = (uint32_t)hash64(t->keys[i], t->lens[i], FNV) & (ns - 1);
            while (sl[h])
                h = (h + 1) & (ns - 1);
            sl[h] = i + 1;
        }
        free(t->slots);
        t->slots = sl;
        t->nslots = ns;
    }
    if (!t->nslots)
        return UINT32_MAX;
    uint32_t h = (uint32_t)hash64(key, len, FNV) & (t->nslots - 1);
    while (t->slots[h]) {
        uint32_t i = t->slots[h] - 1;
        if (t->lens[i] == len && memcmp(t->keys[i], key, len) == 0)
            return i;
        h = (h + 1) & (t->nslots - 1);
    }
    if (!create)
        return UINT32_MAX;
    if (t->n == t->cap) {
        uint32_t ncap = t->cap ? t->cap * 2 : 256;
        char **k = realloc(t->keys, ncap * sizeof *k);
        if (!k)
            return UINT32_MAX;
        t->keys = k;
        uint32_t *l = realloc(t->lens, ncap * sizeof *l);
        if (!l)
            return UINT32_MAX;
        t->lens = l;
        t->cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return UINT32_MAX;
    if (len)
        memcpy(copy, key, len);
    copy[len] = 0;
    t->keys[t->n] = copy;
    t->lens[t->n] = len;
    t->slots[h] = ++t->n;
    return t->n - 1;
}

static uint32_t tenant_id(corr *c, const char *t, int create)
{
    t = t && *t ? t : "anonymous";
    return itab_get(&c->tenants, t, (uint32_t)strlen(t), create);
}

/* ident id + 1 of a process identity; 0 when none is given. */
static uint32_t ident_id(corr *c, const sp_proc_ident *id)
{
    if (!id)
        return 0;
    int any = 0;
    for (int k = 0; k < SP_IDENT_KEYS; k++)
        any |= id->key[k] != 0;
    if (!any)
        return 0;
    uint32_t i = itab_get(&c->idents, id->key, sizeof id->key, 1);
    return i == UINT32_MAX ? 0 : i + 1;
}

/* Same process as far as the identity keys go: every key both sides give is equal. */
static int ident_compat(const corr *c, uint32_t a, uint32_t b)
{
    if (!a || !b || a == b)
        return 1;
    const uint64_t *x = (const uint64_t *)(const void *)c->idents.keys[a - 1];
    const uint64_t *y = (const uint64_t *)(const void *)c->idents.keys[b - 1];
    for (int k = 0; k < SP_IDENT_KEYS; k++)
        if (x[k] && y[k] && x[k] != y[k])
            return 0;
    return 1;
}

/* ---- id hashes (span registry, waiting links) ---- */

static uint32_t id_bucket(const idhash *h, uint32_t tenant, const uint8_t id[8])
{
    return (uint32_t)hash64(id, 8, FNV ^ tenant) & (h->nheads - 1);
}

/* Rebuilds the chains of `live` entries after a grow or a compaction. next_of/id_of/... are the
 * entry layout: both users keep `next`, the id and the tenant at fixed places, so a macro keeps
 * them honest. */
#define IDHASH_REBUILD(h, arr, n, idfield, bytes)                                                  \
    do {                                                                                           \
        uint32_t want_ = 1024;                                                                     \
        while (want_ < (n)*2)                                                                      \
            want_ *= 2;                                                                            \
        if (want_ != (h)->nheads) {                                                                \
            uint32_t *nh_ = calloc(want_, sizeof *nh_);                                            \
            if (nh_) {                                                                             \
                (bytes) += (size_t)want_ * sizeof *nh_;                                            \
                (bytes) -= (size_t)(h)->nheads * sizeof *nh_;                                      \
                free((h)->heads);                                                                  \
                (h)->heads = nh_;                                                                  \
                (h)->nheads = want_;                                                               \
            }                                                                                      \
        }                                                                                          \
        if ((h)->heads) {                                                                          \
            memset((h)->heads, 0, (size_t)(h)->nheads * sizeof *(h)->heads);                       \
            for (uint32_t i_ = 0; i_ < (n); i_++) {                                                \
                uint32_t b_ = id_bucket((h), (arr)[i_].tenant, (arr)[i_].idfield);                 \
                (arr)[i_].next = (h)->heads[b_];                                                   \
                (h)->heads[b_] = i_ + 1;                                                           \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static reg_ent *reg_find(corr *c, uint32_t tenant, const uint8_t id[8])
{
    if (!c->reg_h.nheads)
        return NULL;
    for (uint32_t i = c->reg_h.heads[id_bucket(&c->reg_h, tenant, id)]; i; i = c->reg[i - 1].next) {
        reg_ent *e = &c->reg[i - 1];
        if (e->live && e->tenant == tenant && memcmp(e->span_id, id, 8) == 0)
            return e;
    }
    return NULL;
}

/* A registry entry still in the window (the ancestor walk); reg_find also sees the ones only
 * kept to recognise retries. */
static reg_ent *reg_find_live(corr *c, uint32_t tenant, const uint8_t id[8])
{
    reg_ent *e = reg_find(c, tenant, id);
    return e && e->expire > c->now ? e : NULL;
}

static reg_ent *reg_add(corr *c, uint32_t tenant, const sp_span *sp, uint32_t ident, int eligible)
{
    if (c->nreg == c->capreg) {
        if (grow((void **)&c->reg, &c->capreg, sizeof *c->reg, &c->bytes))
            return NULL;
    }
    if (c->nreg + 1 > c->reg_h.nheads / 2)
        IDHASH_REBUILD(&c->reg_h, c->reg, c->nreg, span_id, c->bytes);
    if (!c->reg_h.nheads)
        return NULL;
    reg_ent *e = &c->reg[c->nreg];
    memset(e, 0, sizeof *e);
    memcpy(e->span_id, sp->span_id, 8);
    memcpy(e->parent, sp->parent_span_id, 8);
    memcpy(e->trace_id, sp->trace_id, 16);
    e->tenant = tenant;
    e->ident = ident;
    e->pid = sp->pid;
    e->service = sp->service ? hash64(sp->service, strlen(sp->service), FNV) : 0;
    e->expire = c->now + c->opt.window_ns;
    e->eligible = (uint8_t)eligible;
    e->live = 1;
    uint32_t b = id_bucket(&c->reg_h, tenant, e->span_id);
    e->next = c->reg_h.heads[b];
    c->reg_h.heads[b] = ++c->nreg;
    c->st.spans_known++;
    return e;
}

static wait_ent *wait_add(corr *c, uint32_t tenant, const uint8_t gap[8])
{
    if (c->nwait == c->capwait && grow((void **)&c->wait, &c->capwait, sizeof *c->wait, &c->bytes))
        return NULL;
    if (c->nwait + 1 > c->wait_h.nheads / 2)
        IDHASH_REBUILD(&c->wait_h, c->wait, c->nwait, gap, c->bytes);
    if (!c->wait_h.nheads)
        return NULL;
    wait_ent *w = &c->wait[c->nwait];
    memset(w, 0, sizeof *w);
    memcpy(w->gap, gap, 8);
    w->tenant = tenant;
    w->live = 1;
    uint32_t b = id_bucket(&c->wait_h, tenant, gap);
    w->next = c->wait_h.heads[b];
    c->wait_h.heads[b] = ++c->nwait;
    return w;
}

/* ---- slots and processes ---- */

static uint32_t proc_bucket(uint32_t tenant, int64_t pid)
{
    return (uint32_t)(hash64(&pid, sizeof pid, FNV ^ tenant) % NBUCKETS);
}

static uint32_t slot_bucket(uint32_t tenant, int64_t pid, int64_t tid)
{
    uint64_t h = hash64(&pid, sizeof pid, FNV ^ tenant);
    return (uint32_t)(hash64(&tid, sizeof tid, h) % NBUCKETS);
}

static proc *find_proc(corr *c, uint32_t tenant, int64_t pid, int create)
{
    uint32_t h = proc_bucket(tenant, pid);
    for (proc *p = c->pbuckets[h]; p; p = p->hnext)
        if (p->tenant == tenant && p->pid == pid)
            return p;
    if (!create)
        return NULL;
    proc *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->tenant = tenant;
    p->pid = pid;
    p->hnext = c->pbuckets[h];
    c->pbuckets[h] = p;
    c->bytes += sizeof *p;
    return p;
}

static slot *find_slot(corr *c, uint32_t tenant, int64_t pid, int64_t tid, int create)
{
    uint32_t h = slot_bucket(tenant, pid, tid);
    for (slot *s = c->buckets[h]; s; s = s->hnext)
        if (s->tenant == tenant && s->pid == pid && s->tid == tid)
            return s;
    if (!create)
        return NULL;
    proc *p = find_proc(c, tenant, pid, 1);
    slot *s = p ? calloc(1, sizeof *s) : NULL;
    if (!s)
        return NULL;
    s->tenant = tenant;
    s->pid = pid;
    s->tid = tid;
    s->obs_sorted = 1;
    s->proc = p;
    s->hnext = c->buckets[h];
    c->buckets[h] = s;
    s->pnext = p->slots;
    p->slots = s;
    c->bytes += sizeof *s;
    return s;
}

static int cmp_obs_ts(const void *x, const void *y)
{
    const obs_ent *a = x, *b = y;
    return a->ts < b->ts ? -1 : a->ts > b->ts;
}

/* Index of the first observation with ts >= t (sorting the slot's observations if needed). */
static uint32_t obs_lower(slot *s, int64_t t)
{
    if (!s->obs_sorted) {
        qsort(s->obs, s->nobs, sizeof *s->obs, cmp_obs_ts);
        s->obs_sorted = 1;
    }
    uint32_t lo = 0, hi = s->nobs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->obs[mid].ts < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Spans of s containing ts with a compatible identity, innermost (latest start) first. */
static uint32_t spans_at(const corr *c, const slot *s, int64_t ts, uint32_t ident, sp_span_ref *out,
                         uint32_t max, const span_ent **ents)
{
    uint32_t n = 0;
    if (!s || !s->nspans || ts < 0) /* indexed spans start at >= 0; ts - maxdur must not wrap */
        return 0;
    /* spans are sorted by start: find the last one starting at or before ts, walk back */
    uint32_t lo = 0, hi = s->nspans;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->spans[mid].start <= ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i-- > 0 && n < max;) {
        const span_ent *e = &s->spans[i];
        if (e->start < ts - s->maxdur)
            break;
        if (ts >= e->end || !ident_compat(c, e->ident, ident))
            continue;
        if (ents)
            ents[n] = e;
        out[n++] = e->ref;
    }
    return n;
}

/* Rule 3: the threadless spans covering ts, when they form exactly one chain (one trace, each
 * containing the next). Returns the count (innermost first in out), 0 for none; *ambiguous set
 * when they cover ts but do not form one chain. */
static uint32_t chain_at(const corr *c, const slot *s, int64_t ts, uint32_t ident, sp_span_ref *out,
                         int *ambiguous, const span_ent **ents_out)
{
    const span_ent *ents[MAX_MATCH];
    *ambiguous = 0;
    uint32_t n = spans_at(c, s, ts, ident, out, MAX_MATCH, ents);
    /* ents is innermost (latest start) first; equal starts: check containment both ways */
    for (uint32_t i = 1; i < n; i++) {
        const span_ent *inner = ents[i - 1], *outer = ents[i];
        int nested = (outer->start <= inner->start && inner->end <= outer->end) ||
                     (inner->start <= outer->start && outer->end <= inner->end);
        if (!nested || memcmp(inner->ref.trace_id, outer->ref.trace_id, 16) != 0) {
            *ambiguous = 1;
            return 0;
        }
    }
    if (n == MAX_MATCH) {
        /* a chain deeper than we track would be cut arbitrarily: call it ambiguous */
        *ambiguous = 1;
        return 0;
    }
    if (ents_out)
        for (uint32_t i = 0; i < n; i++)
            ents_out[i] = ents[i];
    return n;
}

/* ---- retained observations: series, stacks ---- */

static void free_series(corr *c)
{
    for (uint32_t i = 0; i < c->series.n && i < c->capsrec; i++)
        free(c->srec[i].kv);
    free(c->srec);
    c->srec = NULL;
    c->capsrec = 0;
    itab_free(&c->series);
}

/* (Re)builds the record of series id from its interned key. */
static int series_record(corr *c, uint32_t id)
{
    if (id >= c->capsrec) {
        uint32_t ncap = c->capsrec ? c->capsrec : 64;
        while (ncap <= id)
            ncap *= 2;
        series_rec *r = realloc(c->srec, ncap * sizeof *r);
        if (!r)
            return -1;
        memset(r + c->capsrec, 0, (ncap - c->capsrec) * sizeof *r);
        c->srec = r;
        c->capsrec = ncap;
    }
    const char *k = c->series.keys[id], *end = k + c->series.lens[id];
    series_rec *r = &c->srec[id];
    free(r->kv);
    memset(r, 0, sizeof *r);
    r->type_id = k;
    k += strlen(k) + 1;
    uint32_t nkv = 0;
    for (const char *q = k; q < end; q += strlen(q) + 1)
        nkv++;
    nkv /= 2;
    r->kv = calloc(nkv ? nkv : 1, sizeof *r->kv);
    if (!r->kv)
        return -1;
    for (uint32_t i = 0; i < nkv; i++) {
        r->kv[i].name = k;
        k += strlen(k) + 1;
        r->kv[i].value = k;
        k += strlen(k) + 1;
    }
    r->nkv = nkv;
    return 0;
}

static uint32_t series_id(corr *c, const sp_profile *p)
{
    /* Key: type id, then name=value pairs, NUL-separated. */
    size_t len = strlen(p->type_id) + 1;
    for (uint32_t i = 0; i < p->nseries; i++)
        len += strlen(p->series[i].name) + strlen(p->series[i].value) + 2;
    char *key = malloc(len);
    if (!key)
        return UINT32_MAX;
    size_t o = 0;
    o += (size_t)(stpcpy(key + o, p->type_id) - (key + o)) + 1;
    for (uint32_t i = 0; i < p->nseries; i++) {
        o += (size_t)(stpcpy(key + o, p->series[i].name) - (key + o)) + 1;
        o += (size_t)(stpcpy(key + o, p->series[i].value) - (key + o)) + 1;
    }
    uint32_t before = c->series.n;
    uint32_t id = itab_get(&c->series, key, (uint32_t)len, 1);
    free(key);
    if (id == UINT32_MAX || id < before)
        return id;
    return series_record(c, id) ? UINT32_MAX : id;
}

/* Name ids of the frames of location id `loc` (innermost line first) appended to out. */
static uint32_t frame_names(corr *c, const sp_profile *p, uint32_t loc, uint32_t *out, uint32_t max)
{
    uint32_t n = 0;
    if (loc == 0 || loc >= p->nlocations)
        return 0;
    const sp_location *l = &p->locations[loc];
    for (uint32_t k = 0; k < l->nlines && n < max; k++) {
        uint32_t f = l->lines[k].function_id;
        const char *name = f && f < p->nfunctions ? p->strings[p->functions[f].name] : "";
        if (!*name)
            continue;
        uint32_t id = itab_get(&c->names, name, (uint32_t)strlen(name), 1);
        if (id != UINT32_MAX)
            out[n++] = id;
    }
    if (n == 0 && max > 0) {
        char buf[160];
        const sp_mapping *m =
            l->mapping_id && l->mapping_id < p->nmappings ? &p->mappings[l->mapping_id] : NULL;
        sp_frame_name(buf, sizeof buf, l->frame_type ? p->strings[l->frame_type] : NULL, l->address,
                      m && m->filename ? p->strings[m->filename] : NULL);
        uint32_t id = itab_get(&c->names, buf, (uint32_t)strlen(buf), 1);
        if (id != UINT32_MAX)
            out[n++] = id;
    }
    return n;
}

static uint32_t stack_id(corr *c, const sp_profile *p, const sp_sample *s, uint32_t *cache)
{
    uint32_t frames[512], n = 0;
    for (uint32_t i = 0; i < s->nlocations && n < 512; i++) {
        uint32_t loc = s->location_ids[i];
        if (cache && loc < p->nlocations && cache[loc * 2 + 1]) {
            frames[n++] = cache[loc * 2];
            continue;
        }
        uint32_t got = frame_names(c, p, loc, frames + n, 512 - n);
        if (cache && loc < p->nlocations && got == 1) {
            cache[loc * 2] = frames[n];
            cache[loc * 2 + 1] = 1;
        }
        n += got;
    }
    return itab_get(&c->stacks, frames, n * (uint32_t)sizeof *frames, 1);
}

/* ---- expiry, budget, compaction ---- */

static int span_expired(const span_ent *e, int64_t cut)
{
    return e->expire <= cut;
}

/* Recomputes c->bytes from what is held (cheap next to a sweep). */
static void recount(corr *c)
{
    size_t b = 0; /* the fixed tables are not what the budget is about */
    for (size_t i = 0; i < NBUCKETS; i++) {
        for (slot *s = c->buckets[i]; s; s = s->hnext)
            b += sizeof *s + (size_t)s->capspans * sizeof *s->spans +
                 (size_t)s->capobs * sizeof *s->obs;
        for (proc *p = c->pbuckets[i]; p; p = p->hnext)
            b += sizeof *p;
    }
    b += itab_bytes(&c->names) + itab_bytes(&c->stacks) + itab_bytes(&c->series) +
         itab_bytes(&c->tenants) + itab_bytes(&c->idents);
    b += (size_t)c->capsrec * sizeof *c->srec;
    for (uint32_t i = 0; i < c->series.n && i < c->capsrec; i++)
        b += (c->srec[i].nkv ? c->srec[i].nkv : 1) * sizeof(sp_kv);
    b += (size_t)c->capreg * sizeof *c->reg + (size_t)c->reg_h.nheads * sizeof(uint32_t);
    b += (size_t)c->capwait * sizeof *c->wait + (size_t)c->wait_h.nheads * sizeof(uint32_t);
    c->bytes = b;
}

/* What one pass of drop_before removes: entries expiring at or before each cut. */
typedef struct cuts {
    int64_t attached;   /* observations already attached (waiting only for more spans) */
    int64_t unattached; /* observations without a span yet, and waiting links */
    int64_t spans;      /* spans (and, past one more window, their registry entries) */
    int evicting;       /* 1: before their time, to stay within budget (counted) */
} cuts;

static void obs_gone(corr *c, const obs_ent *o, int evicting)
{
    c->st.obs_waiting--;
    if (!o->flags) {
        c->st.obs_unattached--;
        c->st.unmatched++;
        if (evicting)
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

/* Drops what expires at or before the cuts; frees empty slots and processes. */
static void drop_before(corr *c, const cuts *k_)
{
    const cuts cut = *k_;
    for (size_t b = 0; b < NBUCKETS; b++) {
        slot **pp = &c->buckets[b];
        while (*pp) {
            slot *s = *pp;
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
            k2 = 0;
            for (uint32_t i = 0; i < s->nobs; i++) {
                const obs_ent *o = &s->obs[i];
                if (o->expire <= (o->flags ? cut.attached : cut.unattached))
                    obs_gone(c, o, cut.evicting);
                else
                    s->obs[k2++] = *o;
            }
            s->nobs = k2;
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
            shrink((void **)&s->spans, s->nspans, &s->capspans, sizeof *s->spans);
            shrink((void **)&s->obs, s->nobs, &s->capobs, sizeof *s->obs);
            pp = &s->hnext;
        }
    }
    int64_t span_cut = cut.spans;
    int evicting = cut.evicting;
    int64_t obs_cut = cut.unattached;
    for (size_t b = 0; b < NBUCKETS; b++) {
        proc **pp = &c->pbuckets[b];
        while (*pp) {
            proc *p = *pp;
            if (!p->slots && p->profiled_until <= span_cut) {
                *pp = p->hnext;
                free(p);
                continue;
            }
            pp = &p->hnext;
        }
    }
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

/* Rebuilds the name, stack and series tables from what live observations still use, so they
 * do not grow for ever while observations come and go. */
static void compact_interns(corr *c)
{
    itab names = {0}, stacks = {0}, series = {0};
    uint32_t *smap = calloc(c->stacks.n + 1, sizeof *smap); /* old stack id → new id + 1 */
    uint32_t *nmap = calloc(c->names.n + 1, sizeof *nmap);
    uint32_t *rmap = calloc(c->series.n + 1, sizeof *rmap);
    uint32_t *frames = NULL;
    int ok = smap && nmap && rmap;
    /* every (stack, series) reference: slot observations, then waiting links */
    for (size_t b = 0; b < NBUCKETS && ok; b++)
        for (slot *s = c->buckets[b]; s && ok; s = s->hnext)
            for (uint32_t i = 0; i < s->nobs && ok; i++) {
                uint32_t *stk = &s->obs[i].stack, *ser = &s->obs[i].series;
                if (!smap[*stk]) {
                    uint32_t nf = c->stacks.lens[*stk] / 4;
                    const uint32_t *old = (const uint32_t *)(const void *)c->stacks.keys[*stk];
                    uint32_t *nf_arr = realloc(frames, (nf + 1) * sizeof *frames);
                    if (!nf_arr) {
                        ok = 0;
                        break;
                    }
                    frames = nf_arr;
                    for (uint32_t f = 0; f < nf && ok; f++) {
                        if (!nmap[old[f]]) {
                            uint32_t id =
                                itab_get(&names, c->names.keys[old[f]], c->names.lens[old[f]], 1);
                            ok = id != UINT32_MAX;
                            nmap[old[f]] = id + 1;
                        }
                        frames[f] = nmap[old[f]] - 1;
                    }
                    uint32_t id = ok ? itab_get(&stacks, frames, nf * 4, 1) : UINT32_MAX;
                    ok = ok && id != UINT32_MAX;
                    smap[*stk] = id + 1;
                }
                if (!rmap[*ser]) {
                    uint32_t id = itab_get(&series, c->series.keys[*ser], c->series.lens[*ser], 1);
                    ok = ok && id != UINT32_MAX;
                    rmap[*ser] = id + 1;
                }
            }
    for (uint32_t i = 0; i < c->nwait && ok; i++) {
        wait_ent *w = &c->wait[i];
        if (!smap[w->stack]) {
            uint32_t nf = c->stacks.lens[w->stack] / 4;
            const uint32_t *old = (const uint32_t *)(const void *)c->stacks.keys[w->stack];
            uint32_t *nf_arr = realloc(frames, (nf + 1) * sizeof *frames);
            if (!nf_arr) {
                ok = 0;
                break;
            }
            frames = nf_arr;
            for (uint32_t f = 0; f < nf && ok; f++) {
                if (!nmap[old[f]]) {
                    uint32_t id = itab_get(&names, c->names.keys[old[f]], c->names.lens[old[f]], 1);
                    ok = id != UINT32_MAX;
                    nmap[old[f]] = id + 1;
                }
                frames[f] = nmap[old[f]] - 1;
            }
            uint32_t id = ok ? itab_get(&stacks, frames, nf * 4, 1) : UINT32_MAX;
            ok = ok && id != UINT32_MAX;
            smap[w->stack] = id + 1;
        }
        if (!rmap[w->series]) {
            uint32_t id =
                itab_get(&series, c->series.keys[w->series], c->series.lens[w->series], 1);
            ok = ok && id != UINT32_MAX;
            rmap[w->series] = id + 1;
        }
    }
    if (ok) {
        for (size_t b = 0; b < NBUCKETS; b++)
            for (slot *s = c->buckets[b]; s; s = s->hnext)
                for (uint32_t i = 0; i < s->nobs; i++) {
                    s->obs[i].stack = smap[s->obs[i].stack] - 1;
                    s->obs[i].series = rmap[s->obs[i].series] - 1;
                }
        for (uint32_t i = 0; i < c->nwait; i++) {
            c->wait[i].stack = smap[c->wait[i].stack] - 1;
            c->wait[i].series = rmap[c->wait[i].series] - 1;
        }
        free_series(c);
        itab_free(&c->names);
        itab_free(&c->stacks);
        c->names = names;
        c->stacks = stacks;
        c->series = series;
        for (uint32_t i = 0; i < c->series.n; i++)
            if (series_record(c, i))
                break;
    } else {
        itab_free(&names);
        itab_free(&stacks);
        itab_free(&series);
    }
    free(smap);
    free(nmap);
    free(rmap);
    free(frames);
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
            uint32_t id_ = itab_get(&nt, c->idents.keys[(ref)-1], c->idents.lens[(ref)-1], 1);     \
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
        itab_free(&c->idents);
        c->idents = nt;
    } else {
        itab_free(&nt);
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
            uint32_t id_ = itab_get(&nt, c->tenants.keys[(t)], c->tenants.lens[(t)], 1);           \
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
        itab_free(&nt);
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
        uint32_t h = slot_bucket(sl->tenant, sl->pid, sl->tid);
        sl->hnext = c->buckets[h];
        c->buckets[h] = sl;
    }
    for (proc *p = procs, *n; p; p = n) {
        n = p->hnext;
        p->tenant = map[p->tenant] - 1;
        uint32_t h = proc_bucket(p->tenant, p->pid);
        p->hnext = c->pbuckets[h];
        c->pbuckets[h] = p;
    }
    for (uint32_t i = 0; i < c->nreg; i++)
        c->reg[i].tenant = map[c->reg[i].tenant] - 1;
    for (uint32_t i = 0; i < c->nwait; i++)
        c->wait[i].tenant = map[c->wait[i].tenant] - 1;
    IDHASH_REBUILD(&c->reg_h, c->reg, c->nreg, span_id, c->bytes);
    IDHASH_REBUILD(&c->wait_h, c->wait, c->nwait, gap, c->bytes);
    itab_free(&c->tenants);
    c->tenants = nt;
    free(map);
}

static void sweep(corr *c, int64_t now)
{
    cuts k = {now, now, now, 0};
    drop_before(c, &k);
    /* tables only shrink by rebuilding; do it when they hold much more than is used */
    uint64_t live = c->st.obs_waiting + c->nwait;
    if (c->stacks.n > 4 * live + 65536 || c->names.n > 64 * live + 262144)
        compact_interns(c);
    if (c->idents.n > 4 * (c->st.obs_waiting + c->nwait + c->nreg) + 4096)
        compact_idents(c);
    if (c->tenants.n > 1024)
        compact_tenants(c);
    recount(c);
    c->last_sweep = now;
}

/* The expiry time below which the oldest `share` of the waiting observations (attached ones, or
 * unattached ones and waiting links) lie: a histogram of expiry times in one pass, so the big
 * passes (drop, compact, recount) run once, not in a loop that would hold the lock for seconds. */
static int64_t oldest_share_cut(corr *c, int attached, double share)
{
    enum { NB = 64 };
    uint64_t hist[NB] = {0}, total = 0;
    int64_t w = c->opt.window_ns > 0 ? c->opt.window_ns : 1;
#define HIST(expire)                                                                               \
    do {                                                                                           \
        int64_t age_ = (expire)-c->now; /* 0 = oldest .. w = newest */                             \
        hist[age_ <= 0 ? 0 : age_ >= w ? NB - 1 : (int)(age_ * NB / w)]++;                         \
        total++;                                                                                   \
    } while (0)
    for (size_t b = 0; b < NBUCKETS; b++)
        for (slot *s = c->buckets[b]; s; s = s->hnext)
            for (uint32_t i = 0; i < s->nobs; i++)
                if (!s->obs[i].flags == !attached)
                    HIST(s->obs[i].expire);
    if (!attached)
        for (uint32_t i = 0; i < c->nwait; i++)
            HIST(c->wait[i].expire);
#undef HIST
    if (!total)
        return INT64_MIN;
    uint64_t want = (uint64_t)(share * (double)total) + 1, got = 0;
    int k = 0;
    while (k < NB && got < want)
        got += hist[k++];
    return c->now + (int64_t)k * w / NB;
}

/* Over budget: make room in this order, each step only when the one before was not enough, and
 * aiming at 3/4 of the budget to leave room:
 *   1. observations already attached, oldest first (counted in `released`: stored and attached,
 *      they only stop waiting for ancestors still to come);
 *   2. observations and links still waiting for their span, oldest first (`evicted`);
 *   3. spans, oldest half of the window, then all (`spans_evicted`).
 * Spans go last: a sample whose span is in the window is attached whatever else waits. */
static void enforce_budget(corr *c)
{
    if (c->bytes <= c->opt.max_bytes)
        return;
    int64_t w = c->opt.window_ns > 0 ? c->opt.window_ns : 1;
    for (int attached = 1; attached >= 0 && c->bytes > c->opt.max_bytes; attached--) {
        double share = 1.0 - 0.75 * (double)c->opt.max_bytes / (double)c->bytes;
        int64_t cut = oldest_share_cut(c, attached, share);
        if (cut == INT64_MIN)
            continue;
        cuts k = {attached ? cut : c->now, attached ? INT64_MIN : cut, c->now, 1};
        drop_before(c, &k);
        compact_interns(c);
        recount(c);
    }
    if (c->bytes > c->opt.max_bytes) {
        cuts k = {c->now + w + 1, c->now + w + 1, c->now + w / 2, 1};
        drop_before(c, &k);
        recount(c);
        if (c->bytes > c->opt.max_bytes) {
            k.spans = c->now + w + 1;
            drop_before(c, &k);
            recount(c);
        }
    }
}

/* ---- life cycle ---- */

corr *corr_new(const corr_options *o)
{
    corr *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (o)
        c->opt = *o;
    if (!c->opt.min_span_ns)
        c->opt.min_span_ns = 20 * 1000000LL;
    if (!c->opt.window_ns)
        c->opt.window_ns = 120 * 1000000000LL;
    if (!c->opt.max_bytes)
        c->opt.max_bytes = (size_t)512 << 20;
    pthread_mutex_init(&c->lock, NULL);
    recount(c);
    return c;
}

void corr_free(corr *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        for (slot *s = c->buckets[b], *n; s; s = n) {
            n = s->hnext;
            free(s->spans);
            free(s->obs);
            free(s);
        }
        for (proc *p = c->pbuckets[b], *n; p; p = n) {
            n = p->hnext;
            free(p);
        }
    }
    itab_free(&c->names);
    itab_free(&c->stacks);
    itab_free(&c->tenants);
    itab_free(&c->idents);
    free_series(c);
    free(c->reg);
    free(c->reg_h.heads);
    free(c->wait);
    free(c->wait_h.heads);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void corr_get_stats(corr *c, int64_t now_ns, corr_stats *out)
{
    pthread_mutex_lock(&c->lock);
    if (now_ns) {
        c->now = now_ns;
        sweep(c, now_ns);
    }
    *out = c->st;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}

int corr_is_cpu_type(const char *type_id)
{
    if (!type_id)
        return 0;
    /* name:sample_type:sample_unit:period_type:period_unit */
    const char *colon = strchr(type_id, ':');
    size_t nlen = colon ? (size_t)(colon - type_id) : strlen(type_id);
    if ((nlen == 11 && memcmp(type_id, "process_cpu", 11) == 0) ||
        (nlen == 4 && memcmp(type_id, "wall", 4) == 0))
        return 1;
    if (!colon)
        return 0;
    const char *st = colon + 1, *end = strchr(st, ':');
    size_t slen = end ? (size_t)(end - st) : strlen(st);
    return (slen == 3 && memcmp(st, "cpu", 3) == 0) || (slen == 4 && memcmp(st, "wall", 4) == 0);
}

int corr_span_profilable(corr *c, const char *tenant, const sp_span *sp)
{
    if ((int64_t)(sp->end_ns - sp->start_ns) < c->opt.min_span_ns || !sp->pid)
        return 0;
    int yes = 0;
    pthread_mutex_lock(&c->lock);
    uint32_t t = tenant_id(c, tenant, 0);
    proc *p = t == UINT32_MAX ? NULL : find_proc(c, t, sp->pid, 0);
    if (p && p->profiled_until > c->now) {
        uint32_t id = ident_id(c, &sp->ident);
        for (uint32_t i = 0; i < p->nprof_ident && !yes; i++)
            yes = ident_compat(c, p->prof_ident[i], id);
    }
    pthread_mutex_unlock(&c->lock);
    return yes;
}

/* ---- explicit links ---- */

static int same_process(const corr *c, int64_t pid_a, uint64_t svc_a, uint32_t id_a, int64_t pid_b,
                        uint64_t svc_b, uint32_t id_b)
{
    if (pid_a || pid_b) {
        if (pid_a != pid_b)
            return 0;
    } else if (svc_a != svc_b) {
        return 0;
    }
    return ident_compat(c, id_a, id_b);
}

static sp_span_ref reg_ref(const reg_ent *e)
{
    sp_span_ref r;
    memcpy(r.trace_id, e->trace_id, 16);
    memcpy(r.span_id, e->span_id, 8);
    return r;
}

/* Walks up from e through received ancestors of the process (pid, svc, ident), appending the
 * eligible ones to out. Returns the new count; *gap (and 1 in *has_gap) = the first parent id
 * not received yet, the point where later arrivals continue the walk. */
static uint32_t walk_up(corr *c, uint32_t tenant, const reg_ent *e, int64_t pid, uint64_t svc,
                        uint32_t ident, sp_span_ref *out, uint32_t n, uint8_t gap[8], int *has_gap)
{
    static const uint8_t zero[8];
    *has_gap = 0;
    for (int hop = 0; hop < MAX_WALK && e; hop++) {
        if (memcmp(e->parent, zero, 8) == 0)
            return n;
        const reg_ent *p = reg_find_live(c, tenant, e->parent);
        if (!p) {
            memcpy(gap, e->parent, 8);
            *has_gap = 1;
            return n;
        }
        if (!same_process(c, p->pid, p->service, p->ident, pid, svc, ident))
            return n;
        if (p->eligible && n < MAX_MATCH) {
            int dup = 0;
            for (uint32_t i = 0; i < n && !dup; i++)
                dup = memcmp(out[i].span_id, p->span_id, 8) == 0;
            if (!dup)
                out[n++] = reg_ref(p);
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

/* Phase 1's verdict on one received sample, for phase 2. */
typedef struct sample_plan {
    uint8_t how;   /* every observation's outcome when they agree (hows NULL) */
    uint8_t *hows; /* per observation otherwise */
    uint8_t linked, has_gap, ref_known;
    uint8_t gap[8]; /* rule 1: the first ancestor not received yet */
    int64_t ref_pid;
    uint64_t ref_svc;
    uint32_t ref_ident, ident;
} sample_plan;

typedef struct prof_plan {
    sp_profile *p;
    const sp_sample *orig; /* the samples as received: phase 2 keeps these */
    uint32_t norig;
    sample_plan *plans; /* one per received sample */
} prof_plan;

/* Scratch of phase 1, on the heap and reused across samples: the distinct span sets of one
 * sample's observations (groups), and the profile's output samples before their final copy. */
typedef struct group {
    uint64_t hash;
    uint32_t ref_at, nref; /* in split_scratch.refs */
    uint32_t count, fill;
    uint8_t how;
} group;

typedef struct split_scratch {
    uint32_t *grp; /* per observation: its group */
    uint32_t capgrp;
    group *g;
    uint32_t ng, capg;
    sp_span_ref *refs;
    uint32_t nref, capref;
    uint32_t *tab, captab; /* open addressing on group hashes: group + 1 */
    sp_sample *out;
    uint32_t nout, capout;
} split_scratch;

static void scratch_free(split_scratch *x)
{
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

static int64_t obs_value(const sp_sample *s, uint32_t k)
{
    if (s->values)
        return s->values[k];
    int64_t share = s->value / (int64_t)s->nobs; /* equal shares, remainder to the first */
    return k == 0 ? s->value - share * (int64_t)(s->nobs - 1) : share;
}

/* The spans of one observation by rules 2 and 3; *how = F_THREAD, F_PROC, F_AMBIG or 0. */
static uint32_t infer(const corr *c, const slot *thr, const slot *nothr, int64_t ts, uint32_t ident,
                      sp_span_ref *out, uint8_t *how)
{
    *how = 0;
    uint32_t n = thr ? spans_at(c, thr, ts, ident, out, MAX_MATCH, NULL) : 0;
    if (n) {
        *how = F_THREAD;
        return n;
    }
    if (c->opt.threadless != CORR_THREADLESS_UNIQUE || !nothr)
        return 0;
    int amb;
    n = chain_at(c, nothr, ts, ident, out, &amb, NULL);
    *how = amb ? F_AMBIG : n ? F_PROC : 0;
    return n;
}

static void count_outcome(corr *c, uint8_t how, uint64_t nobs)
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
static int plan_inferred(const corr *c, split_scratch *x, sp_arena *a, const sp_sample *s,
                         uint32_t tenant, sample_plan *pl, int *reshaped, size_t *attached)
{
    corr *mc = (corr *)c; /* find_slot without create does not change anything */
    const slot *thr = s->tid ? find_slot(mc, tenant, s->pid, s->tid, 0) : NULL;
    const slot *nothr = find_slot(mc, tenant, s->pid, 0, 0);
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
        uint32_t n = infer(c, thr, nothr, (int64_t)s->timestamps[k], pl->ident, m, &how);
        uint32_t g = group_of(x, m, n, how, s->nobs);
        if (g == UINT32_MAX)
            return -1;
        x->grp[k] = g;
        x->g[g].count++;
    }
    if (x->ng == 1) {
        const group *g = &x->g[0];
        sp_sample *d = out_push(x);
        if (!d)
            return -1;
        *d = *s;
        d->spans = NULL;
        d->nspans = 0;
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
    pl->hows = sp_arena_alloc(a, s->nobs);
    if (!pl->hows)
        return -1;
    for (uint32_t k = 0; k < s->nobs; k++)
        pl->hows[k] = x->g[x->grp[k]].how;
    return emit_groups(x, a, s, attached);
}

/* Rule 1: the link and its received ancestors now; the gap is where phase 2 makes the
 * observations wait for the rest. */
static int plan_linked(corr *c, sp_arena *a, uint32_t tenant, sp_sample *d, sample_plan *pl,
                       size_t *attached)
{
    sp_span_ref chain[MAX_MATCH];
    uint32_t n = 0;
    chain[n++] = d->link;
    int has_gap = 0;
    const reg_ent *e = reg_find_live(c, tenant, d->link.span_id);
    if (e) {
        pl->ref_known = 1;
        pl->ref_pid = e->pid;
        pl->ref_svc = e->service;
        pl->ref_ident = e->ident;
        n = walk_up(c, tenant, e, e->pid, e->service, e->ident, chain, n, pl->gap, &has_gap);
    } else {
        memcpy(pl->gap, d->link.span_id, 8);
        has_gap = 1;
    }
    pl->linked = 1;
    pl->has_gap = (uint8_t)has_gap;
    d->spans = sp_arena_memdup(a, chain, n * sizeof *chain);
    if (!d->spans)
        return -1;
    d->nspans = n;
    *attached += (size_t)n * (d->timestamps && d->nobs ? d->nobs : 1);
    return 0;
}

/* Phase 1 for one CPU profile. Returns 0, or -1 when the arena or the heap is exhausted (the
 * window is untouched; the caller refuses the request). */
static int plan_profile(corr *c, split_scratch *x, prof_plan *pp, sp_profile *p, sp_arena *a,
                        uint32_t tenant, size_t *attached)
{
    pp->p = p;
    pp->orig = p->samples;
    pp->norig = p->nsamples;
    pp->plans = sp_arena_calloc(a, p->nsamples + 1, sizeof *pp->plans);
    if (!pp->plans)
        return -1;
    x->nout = 0;
    int reshaped = 0;
    const sp_proc_ident *last = NULL;
    uint32_t last_id = 0;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        const sp_sample *s = &p->samples[i];
        sample_plan *pl = &pp->plans[i];
        if (s->ident != last || !last_id) {
            last = s->ident;
            last_id = ident_id(c, s->ident);
        }
        pl->ident = last_id;
        if (s->has_link || !s->timestamps || !s->nobs || !s->pid) {
            sp_sample *d = out_push(x);
            if (!d)
                return -1;
            *d = *s;
            d->spans = NULL;
            d->nspans = 0;
            if (s->has_link && plan_linked(c, a, tenant, d, pl, attached))
                return -1;
            continue;
        }
        if (plan_inferred(c, x, a, s, tenant, pl, &reshaped, attached))
            return -1;
    }
    if (reshaped) {
        sp_sample *v = sp_arena_memdup(a, x->out, (size_t)x->nout * sizeof *v);
        if (!v)
            return -1;
        p->samples = v;
        p->nsamples = x->nout;
    } else {
        /* one output per sample, in order: only the spans change (orig is the same array,
         * phase 2 reads its times and values, never its spans) */
        for (uint32_t i = 0; i < p->nsamples; i++) {
            p->samples[i].spans = x->out[i].spans;
            p->samples[i].nspans = x->out[i].nspans;
        }
    }
    return 0;
}

/* What one request's profiles share: the converter gives every profile of a request the same
 * location table and every sample of a stack the same location list, so frame names are resolved
 * once per location and stacks interned once per list, not once per sample. */
typedef struct batch_memo {
    const sp_location *locs; /* the table loc_cache belongs to */
    uint32_t *loc_cache;     /* per location: name id, and 1 when cached */
    uint32_t nloc;
    const uint32_t **keys; /* stack memo: location list → stack id */
    uint32_t *vals, cap, n;
} batch_memo;

static void memo_free(batch_memo *m)
{
    free(m->loc_cache);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

typedef struct prof_ctx {
    corr *c;
    sp_profile *p;
    uint32_t tenant;
    uint32_t series;
    batch_memo *m;
} prof_ctx;

static uint32_t ctx_series(prof_ctx *x)
{
    if (x->series == UINT32_MAX)
        x->series = series_id(x->c, x->p);
    return x->series;
}

static uint32_t ctx_stack(prof_ctx *x, const sp_sample *s)
{
    batch_memo *m = x->m;
    if (m->locs != x->p->locations || !m->loc_cache) {
        free(m->loc_cache);
        m->locs = x->p->locations;
        m->nloc = x->p->nlocations;
        m->loc_cache = calloc((size_t)m->nloc * 2 + 2, sizeof *m->loc_cache);
        m->n = 0; /* stack ids depend on the table too */
        if (m->keys)
            memset(m->keys, 0, m->cap * sizeof *m->keys);
    }
    if (!s->location_ids || !m->loc_cache)
        return stack_id(x->c, x->p, s, m->loc_cache);
    if ((m->n + 1) * 2 > m->cap) {
        uint32_t ncap = m->cap ? m->cap * 2 : 1024;
        const uint32_t **k = calloc(ncap, sizeof *k);
        uint32_t *v = calloc(ncap, sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return stack_id(x->c, x->p, s, m->loc_cache);
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
    uint32_t id = stack_id(x->c, x->p, s, m->loc_cache);
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
    c->st.by_link += nobs;
    if (!pl->has_gap)
        return 0;
    uint32_t sid = c->bytes < c->opt.max_bytes ? ctx_series(x) : UINT32_MAX;
    uint32_t stk = sid != UINT32_MAX ? ctx_stack(x, s) : UINT32_MAX;
    for (uint64_t k = 0; k < nobs; k++) {
        wait_ent *w = stk != UINT32_MAX ? wait_add(c, x->tenant, pl->gap) : NULL;
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
    if (pl->hows)
        for (uint32_t k = 0; k < s->nobs; k++)
            count_outcome(c, pl->hows[k], 1);
    else
        count_outcome(c, pl->how, s->nobs);
    uint32_t sid = UINT32_MAX, stk = UINT32_MAX;
    slot *w = NULL;
    if (c->bytes < c->opt.max_bytes) {
        sid = ctx_series(x);
        stk = sid != UINT32_MAX ? ctx_stack(x, s) : UINT32_MAX;
        w = stk != UINT32_MAX ? find_slot(c, x->tenant, s->pid, s->tid, 1) : NULL;
    }
    uint64_t lost = 0;
    for (uint32_t k = 0; k < s->nobs; k++) {
        uint8_t how = pl->hows ? pl->hows[k] : pl->how;
        if (!w || (w->nobs == w->capobs &&
                   grow((void **)&w->obs, &w->capobs, sizeof *w->obs, &c->bytes))) {
            /* not kept: without a verdict now it never gets one; with one, it only gives up
             * the ancestors still to come (released, like the budget's first step) */
            if (!how) {
                c->st.unmatched++;
                lost++;
            } else {
                c->st.released++;
            }
            continue;
        }
        obs_ent *o = &w->obs[w->nobs++];
        *o = (obs_ent){(int64_t)s->timestamps[k],
                       obs_value(s, k),
                       c->now + c->opt.window_ns,
                       stk,
                       sid,
                       pl->ident,
                       how};
        if (w->nobs > 1 && w->obs[w->nobs - 2].ts > o->ts)
            w->obs_sorted = 0;
        c->st.obs_waiting++;
        if (!o->flags)
            c->st.obs_unattached++;
    }
    return lost;
}

/* Phase 2 for one profile: the process is marked as profiled, outcomes counted, observations
 * kept for later spans. Cannot fail. */
static void keep_profile(corr *c, const prof_plan *pp, uint32_t tenant, batch_memo *memo)
{
    prof_ctx x = {c, pp->p, tenant, UINT32_MAX, memo};
    for (uint32_t i = 0; i < pp->norig; i++) {
        const sp_sample *s = &pp->orig[i];
        const sample_plan *pl = &pp->plans[i];
        if (s->pid) {
            proc *pr = find_proc(c, tenant, s->pid, 1);
            if (pr) {
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
    if (!(o->flags & how))
        count_outcome(c, how, 1);
    o->flags |= how;
}

/* Rules 2 and 3 for a span that arrived after observations it contains. */
static void claim_observations(corr *c, slot *home, const span_ent *e, late_list *l)
{
    if (home->tid) {
        for (uint32_t k = obs_lower(home, e->start); k < home->nobs && home->obs[k].ts < e->end;
             k++) {
            obs_ent *o = &home->obs[k];
            if (!ident_compat(c, o->ident, e->ident))
                continue;
            mark(c, o, F_THREAD);
            late_push(l, o->series, o->stack, o->value, o->ts, &e->ref);
        }
        return;
    }
    if (c->opt.threadless != CORR_THREADLESS_UNIQUE)
        return;
    for (slot *s = home->proc->slots; s; s = s->pnext)
        for (uint32_t k = obs_lower(s, e->start); k < s->nobs && s->obs[k].ts < e->end; k++) {
            obs_ent *o = &s->obs[k];
            if ((o->flags & F_THREAD) || !ident_compat(c, o->ident, e->ident))
                continue;
            sp_span_ref m[MAX_MATCH];
            int amb;
            uint32_t n = chain_at(c, home, o->ts, o->ident, m, &amb, NULL);
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
    for (uint32_t i = c->wait_h.heads[id_bucket(&c->wait_h, tenant, x->span_id)]; i;
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
        sp_span_ref chain[MAX_MATCH];
        uint32_t nc = 0;
        if (!w.ref_known) {
            /* x is the linked span itself, already attached: its process is the reference */
            w.ref_pid = x->pid;
            w.ref_service = x->service;
            w.ref_ident = x->ident;
        } else {
            if (!same_process(c, x->pid, x->service, x->ident, w.ref_pid, w.ref_service,
                              w.ref_ident))
                continue;
            if (x->eligible)
                chain[nc++] = reg_ref(x);
        }
        uint8_t gap[8];
        int has_gap;
        nc = walk_up(c, tenant, x, w.ref_pid, w.ref_service, w.ref_ident, chain, nc, gap, &has_gap);
        for (uint32_t k = 0; k < nc; k++)
            late_push(l, w.series, w.stack, w.value, w.ts, &chain[k]);
        if (has_gap) {
            wait_ent *q = wait_add(c, tenant, gap);
            if (q) {
                uint32_t keep_next = q->next;
                *q = w;
                memcpy(q->gap, gap, 8);
                q->ref_known = 1;
                q->live = 1;
                q->next = keep_next;
            }
        }
    }
}

/* Indexes b's spans and emits what they claim. Never fails: what cannot be indexed or emitted is
 * added to *failed (the spans themselves are stored either way). */
static size_t index_spans(corr *c, sp_batch *b, uint32_t tenant, uint64_t *failed)
{
    late_list l = {0};
    /* Phase 1: remember every new span, so phase 2 judges each observation against all the
     * spans of this export at once. */
    uint32_t gen = ++c->gen;
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
        if (reg_find(c, tenant, sp->span_id))
            continue; /* a retry: what it brings was attached the first time */
        /* times past INT64_MAX (valid OTLP) would overflow the arithmetic below: never eligible */
        int eligible = start >= 0 && end >= start && end - start >= c->opt.min_span_ns;
        uint32_t ident = ident_id(c, &sp->ident);
        const reg_ent *re = reg_add(c, tenant, sp, ident, eligible);
        fresh[i] = re ? (uint32_t)(re - c->reg) + 1 : 0;
        if (!re)
            c->st.spans_not_indexed++;
        if (!sp->pid)
            continue;
        if (!eligible) {
            c->st.spans_short++;
            continue;
        }
        slot *sl = find_slot(c, tenant, sp->pid, sp->tid, 1);
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

/* Room phase 1 may need in the request's arena beyond what decoding took: per observation a
 * split sample, its time and value and its verdict, and eight nested spans; per sample its plan.
 * Deeper nesting in every observation can still run out: then that profile is stored unattached
 * and counted (attach_failed). */
static size_t plan_room(const sp_batch *b)
{
    size_t obs = 0, samples = 0;
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        if (p->attach_only || !corr_is_cpu_type(p->type_id))
            continue;
        samples += p->nsamples;
        for (uint32_t k = 0; k < p->nsamples; k++)
            obs += p->samples[k].timestamps && p->samples[k].nobs ? p->samples[k].nobs : 1;
    }
    size_t per_obs = 2 * sizeof(sp_sample) + 2 * sizeof(int64_t) + 1 + 8 * sizeof(sp_span_ref);
    return obs * per_obs + samples * (sizeof(sample_plan) + 16) + ((size_t)1 << 20);
}

int corr_attach(corr *c, sp_batch *b, int64_t now_ns, size_t *attached_out, sp_err *err)
{
    size_t attached = 0;
    uint64_t failed = 0;
    pthread_mutex_lock(&c->lock);
    c->now = now_ns;
    /* Expiry is coarse on purpose: every sixteenth of the window (at least a second), so the
     * full pass over what waits is rare; the budget bounds memory meanwhile. */
    int64_t every = c->opt.window_ns / 16 > SWEEP_EVERY_NS ? c->opt.window_ns / 16 : SWEEP_EVERY_NS;
    if (now_ns - c->last_sweep > every)
        sweep(c, now_ns);
    enforce_budget(c);
    /* after the sweep: it may renumber tenants */
    uint32_t tenant = tenant_id(c, b->tenant, 1);
    if (tenant == UINT32_MAX) {
        pthread_mutex_unlock(&c->lock);
        for (size_t i = 0; i < b->nprofiles; i++)
            for (uint32_t k = 0; k < b->profiles[i]->nsamples; k++)
                b->profiles[i]->samples[k].nspans = 0;
        if (attached_out)
            *attached_out = 0;
        return sp_fail(err, SP_ENOMEM, "correlator: out of memory naming tenant \"%s\"",
                       b->tenant ? b->tenant : "anonymous");
    }
    /* Spans first, so a request carrying both finds its own spans. */
    attached += index_spans(c, b, tenant, &failed);
    size_t nprof = b->nprofiles;
    batch_memo memo = {0};
    split_scratch x = {0};
    sp_arena_raise_budget(b->arena, plan_room(b));
    const char *failed_type = NULL;
    for (size_t i = 0; i < nprof; i++) {
        sp_profile *p = b->profiles[i];
        if (p->attach_only)
            continue;
        if (!corr_is_cpu_type(p->type_id)) {
            for (uint32_t k = 0; k < p->nsamples; k++) {
                p->samples[k].spans = NULL;
                p->samples[k].nspans = 0;
            }
            continue;
        }
        prof_plan pp;
        size_t got = 0;
        if (plan_profile(c, &x, &pp, p, b->arena, tenant, &got)) {
            /* stored as received, unattached: the samples are what the client was promised */
            p->samples = (sp_sample *)pp.orig;
            p->nsamples = pp.norig;
            for (uint32_t k = 0; k < p->nsamples; k++) {
                p->samples[k].spans = NULL;
                p->samples[k].nspans = 0;
                failed += p->samples[k].timestamps && p->samples[k].nobs ? p->samples[k].nobs : 1;
            }
            failed_type = p->type_id;
            continue;
        }
        attached += got;
        keep_profile(c, &pp, tenant, &memo);
    }
    scratch_free(&x);
    memo_free(&memo);
    c->st.attach_failed += failed;
    pthread_mutex_unlock(&c->lock);
    if (attached_out)
        *attached_out = attached;
    if (failed)
        return sp_fail(err, SP_ENOMEM,
                       "correlator: out of memory attaching %llu observations%s%s (stored "
                       "without their spans)",
                       (unsigned long long)failed, failed_type ? " of " : "",
                       failed_type ? failed_type : "");
    return 0;
}
