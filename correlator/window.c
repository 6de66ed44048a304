/* The window's state: interning, the span registry and waiting links, slots by (process,
 * thread), and the lookups that decide which spans cover a time (internal.h). */
#include "internal.h"

/* ---- interning ---- */

void cw_itab_free(itab *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        free(t->keys[i]);
    free(t->keys);
    free(t->lens);
    free(t->slots);
    free(t->old);
    memset(t, 0, sizeof *t);
}

size_t cw_itab_bytes(const itab *t)
{
    return (size_t)t->cap * (sizeof *t->keys + sizeof *t->lens) +
           ((size_t)t->nslots + t->old_nslots) * sizeof *t->slots + t->key_bytes;
}

/* Files id under hash in a probe table of ns slots (a power of two) with room for it. */
static void itab_file(uint64_t *sl, uint32_t ns, uint32_t hash, uint32_t id)
{
    uint32_t h = hash & (ns - 1);
    while (sl[h])
        h = (h + 1) & (ns - 1);
    sl[h] = (uint64_t)hash << 32 | (id + 1);
}

/* Growth moves the old probe table into the doubled one a few slots per new key, under the
 * correlator's lock like every call here: re-filing half a million names at once held that lock
 * 7-21 ms (a temporary trace of the half-load run), stalling every ingest worker's correlation.
 *   T1. While t->old is set, every id is filed in t->slots or in t->old, never both: a new key
 *       goes to t->slots only after both missed, and the move files into t->slots exactly the
 *       old slots below t->moved. A lookup that misses t->slots finishes in t->old, whose probe
 *       chains the move never breaks (it only reads old).
 *   T2. The move ends before the next growth: at ITAB_MOVE_PER_ADD slots per new key, old (half
 *       the new table) is moved within an eighth of the new keys (a quarter of the new table)
 *       that bring the next growth; a growth or a renumbering that still finds old moves the
 *       rest first. */
#define ITAB_MOVE_PER_ADD 16

static void itab_move(itab *t, uint32_t k)
{
    for (; k && t->moved < t->old_nslots; k--, t->moved++) {
        uint64_t v = t->old[t->moved];
        if (v)
            itab_file(t->slots, t->nslots, (uint32_t)(v >> 32), (uint32_t)v - 1);
    }
    if (t->moved == t->old_nslots) {
        free(t->old);
        t->old = NULL;
        t->old_nslots = t->moved = 0;
    }
}

/* The probe tables stay on small pages: a doubled table's first touches fault one small page
 * each, spread over the keys that follow; on huge pages the first few dozen keys after a growth
 * each zeroed 2 MiB under the lock (8-19 ms in one part, measured). */
static int itab_grow(itab *t)
{
    if (t->old)
        itab_move(t, UINT32_MAX); /* T2 */
    uint32_t ns = t->nslots ? t->nslots * 2 : 1024;
    uint64_t *sl = calloc(ns, sizeof *sl);
    if (!sl)
        return -1;
    t->old = t->slots;
    t->old_nslots = t->nslots;
    t->moved = 0;
    t->slots = sl;
    t->nslots = ns;
    if (!t->old_nslots)
        itab_move(t, 0); /* nothing to move: drops the empty old table */
    return 0;
}

/* The id filed under hash for key in a probe table of ns slots, or UINT32_MAX with *at the empty
 * slot that ended the probe. */
static uint32_t itab_probe(const itab *t, const uint64_t *sl, uint32_t ns, const void *key,
                           uint32_t len, uint32_t hash, uint32_t *at)
{
    uint32_t h = hash & (ns - 1);
    while (sl[h]) {
        uint32_t i = (uint32_t)sl[h] - 1;
        if ((uint32_t)(sl[h] >> 32) == hash && t->lens[i] == len &&
            memcmp(t->keys[i], key, len) == 0)
            return i;
        h = (h + 1) & (ns - 1);
    }
    *at = h;
    return UINT32_MAX;
}

/* Id of key; create: add it when new. UINT32_MAX when absent or out of memory.
 * A slot holds the key's 32-bit hash beside its id, so a probe reads the key only when the
 * hashes agree and growing never hashes a key again: with hundreds of thousands of frame names
 * each probe of a key was a cache miss (issue 19). */
uint32_t cw_itab_get(itab *t, const void *key, uint32_t len, int create)
{
    return cw_itab_get_hashed(t, key, len, (uint32_t)hash64(key, len, FNV), create);
}

uint32_t cw_itab_get_hashed(itab *t, const void *key, uint32_t len, uint32_t hash, int create)
{
    if (create && (t->n + 1) * 2 > t->nslots && itab_grow(t))
        return UINT32_MAX;
    if (!t->nslots)
        return UINT32_MAX;
    uint32_t h = 0, unused = 0;
    uint32_t id = itab_probe(t, t->slots, t->nslots, key, len, hash, &h);
    if (id == UINT32_MAX && t->old) /* T1 */
        id = itab_probe(t, t->old, t->old_nslots, key, len, hash, &unused);
    if (id != UINT32_MAX || !create)
        return id;
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
    t->key_bytes += (size_t)len + 1;
    t->slots[h] = (uint64_t)hash << 32 | ++t->n;
    if (t->old)
        itab_move(t, ITAB_MOVE_PER_ADD);
    return t->n - 1;
}

/* Renumbering (budget.c's rebuild of names, stacks and series). The live keys keep their
 * memory and move down the arrays; a name or series keeps its hash, which the old probe table
 * holds, so it is filed again without reading its key; a stack's key is rewritten (its names were
 * renumbered) and hashed again. The rebuild this replaced interned every live key into new
 * tables: a malloc, a copy and a hash for each, and a free for each old one -- 240 ms under the
 * correlator's lock at full load with never-seen frames (issue 19). */
int cw_itab_plan(const itab *t, const uint64_t *live, itab_plan *pl)
{
    memset(pl, 0, sizeof *pl);
    pl->map = malloc(((size_t)t->n + 1) * sizeof *pl->map);
    if (!pl->map)
        return -1;
    for (uint32_t i = 0; i < t->n; i++)
        pl->map[i] = live[i / 64] >> (i % 64) & 1 ? pl->n++ : UINT32_MAX;
    pl->nslots = 1024; /* as the table of n would have grown to */
    while ((pl->n + 1) * 2 > pl->nslots)
        pl->nslots *= 2;
    pl->slots = calloc(pl->nslots, sizeof *pl->slots);
    return pl->slots ? 0 : -1;
}

void cw_itab_compact(itab *t, itab_plan *pl, uint32_t (*rekey)(char *key, uint32_t len, void *ud),
                     void *ud)
{
    if (t->old)
        itab_move(t, UINT32_MAX); /* T2: every hash in t->slots */
    if (!rekey)                   /* names, series: the old table has the hashes */
        for (uint32_t i = 0; i < t->nslots; i++) {
            uint32_t id = (uint32_t)t->slots[i] - 1;
            if (t->slots[i] && pl->map[id] != UINT32_MAX)
                itab_file(pl->slots, pl->nslots, (uint32_t)(t->slots[i] >> 32), pl->map[id]);
        }
    for (uint32_t i = 0; i < t->n; i++) {
        uint32_t to = pl->map[i];
        if (to == UINT32_MAX) {
            t->key_bytes -= (size_t)t->lens[i] + 1;
            free(t->keys[i]);
            continue;
        }
        t->keys[to] = t->keys[i]; /* to <= i: the ids keep their order */
        t->lens[to] = t->lens[i];
        if (rekey)
            itab_file(pl->slots, pl->nslots, rekey(t->keys[to], t->lens[to], ud), to);
    }
    free(t->slots);
    t->slots = pl->slots;
    t->nslots = pl->nslots;
    pl->slots = NULL;
    t->n = pl->n;
    uint32_t ncap = 256; /* the arrays as a table of n would have them (the budget counts cap) */
    while (ncap < t->n)
        ncap *= 2;
    if (ncap < t->cap) { /* shrinking: an array that fails to shrink is still long enough */
        char **k = realloc(t->keys, ncap * sizeof *k);
        if (k)
            t->keys = k;
        uint32_t *l = realloc(t->lens, ncap * sizeof *l);
        if (l)
            t->lens = l;
        t->cap = ncap;
    }
}

void cw_itab_plan_free(itab_plan *pl)
{
    free(pl->map);
    free(pl->slots);
    memset(pl, 0, sizeof *pl);
}

uint32_t cw_tenant_id(corr *c, const char *t, int create)
{
    t = t && *t ? t : "anonymous";
    return cw_itab_get(&c->tenants, t, (uint32_t)strlen(t), create);
}

/* ident id + 1 of a process identity; 0 when none is given. */
uint32_t cw_ident_id(corr *c, const sp_proc_ident *id)
{
    if (!id)
        return 0;
    int any = 0;
    for (int k = 0; k < SP_IDENT_KEYS; k++)
        any |= id->key[k] != 0;
    if (!any)
        return 0;
    uint32_t i = cw_itab_get(&c->idents, id->key, sizeof id->key, 1);
    return i == UINT32_MAX ? 0 : i + 1;
}

/* Same process as far as the identity keys go: every key both sides give is equal. */
int cw_ident_compat(const corr *c, uint32_t a, uint32_t b)
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

uint32_t cw_id_bucket(const idhash *h, uint32_t tenant, const uint8_t id[8])
{
    return (uint32_t)hash64(id, 8, FNV ^ tenant) & (h->nheads - 1);
}

reg_ent *cw_reg_find(corr *c, uint32_t tenant, const uint8_t id[8])
{
    if (!c->reg_h.nheads)
        return NULL;
    for (uint32_t i = c->reg_h.heads[cw_id_bucket(&c->reg_h, tenant, id)]; i;
         i = c->reg[i - 1].next) {
        reg_ent *e = &c->reg[i - 1];
        if (e->live && e->tenant == tenant && memcmp(e->span_id, id, 8) == 0)
            return e;
    }
    return NULL;
}

/* A registry entry still in the window (the ancestor walk); reg_find also sees the ones only
 * kept to recognise retries. */
reg_ent *cw_reg_find_live(corr *c, uint32_t tenant, const uint8_t id[8])
{
    reg_ent *e = cw_reg_find(c, tenant, id);
    return e && e->expire > c->now ? e : NULL;
}

reg_ent *cw_reg_add(corr *c, uint32_t tenant, const sp_span *sp, uint32_t ident, int eligible)
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
    e->tag = c->tag;
    uint32_t b = cw_id_bucket(&c->reg_h, tenant, e->span_id);
    e->next = c->reg_h.heads[b];
    c->reg_h.heads[b] = ++c->nreg;
    c->st.spans_known++;
    return e;
}

wait_ent *cw_wait_add(corr *c, uint32_t tenant, const uint8_t gap[8])
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
    w->gen = c->gen;
    uint32_t b = cw_id_bucket(&c->wait_h, tenant, gap);
    w->next = c->wait_h.heads[b];
    c->wait_h.heads[b] = ++c->nwait;
    return w;
}

/* ---- slots and processes ---- */

uint32_t cw_proc_bucket(uint32_t tenant, int64_t pid)
{
    return (uint32_t)(hash64(&pid, sizeof pid, FNV ^ tenant) % NBUCKETS);
}

uint32_t cw_slot_bucket(uint32_t tenant, int64_t pid, int64_t tid)
{
    uint64_t h = hash64(&pid, sizeof pid, FNV ^ tenant);
    return (uint32_t)(hash64(&tid, sizeof tid, h) % NBUCKETS);
}

proc *cw_find_proc(corr *c, uint32_t tenant, int64_t pid, int create)
{
    uint32_t h = cw_proc_bucket(tenant, pid);
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

slot *cw_find_slot(corr *c, uint32_t tenant, int64_t pid, int64_t tid, int create)
{
    uint32_t h = cw_slot_bucket(tenant, pid, tid);
    for (slot *s = c->buckets[h]; s; s = s->hnext)
        if (s->tenant == tenant && s->pid == pid && s->tid == tid)
            return s;
    if (!create)
        return NULL;
    proc *p = cw_find_proc(c, tenant, pid, 1);
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
uint32_t cw_obs_lower(slot *s, int64_t t)
{
    if (!s->obs_sorted) {
        qsort(s->obs, s->nobs, sizeof *s->obs, cmp_obs_ts);
        s->obs_sorted = 1;
        /* I10: the order changed; one pass finds the new cursor (the sort costs more) */
        uint32_t k = 0;
        while (k < s->nobs && !OBS_WAITS_SETTLE(&s->obs[k]))
            k++;
        s->settle_from = k;
        s->arrival_from = s->nobs; /* what comes next is appended in arrival order */
        s->arrival_unordered = 0;
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
uint32_t cw_spans_at(const corr *c, const slot *s, int64_t ts, uint32_t ident, sp_span_ref *out,
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
        if (ts >= e->end || !cw_ident_compat(c, e->ident, ident))
            continue;
        if (ents)
            ents[n] = e;
        out[n++] = e->ref;
    }
    return n;
}

/* Spans of s overlapping the off-CPU interval [from, to] (I9), innermost first, with the
 * nanoseconds of the interval each covers in overlap[] (to - from when it covers all of it) and
 * where that part ends in ends[]. An empty interval (from == to) is the instant: the spans
 * containing it, overlap 0 = all. */
uint32_t cw_spans_over(const corr *c, const slot *s, int64_t from, int64_t to, uint32_t ident,
                       sp_span_ref *out, int64_t *overlap, int64_t *ends, uint32_t max)
{
    if (from >= to) {
        uint32_t n = cw_spans_at(c, s, to, ident, out, max, NULL);
        for (uint32_t i = 0; i < n; i++) {
            overlap[i] = 0;
            ends[i] = to;
        }
        return n;
    }
    uint32_t n = 0;
    if (!s || !s->nspans || from < 0)
        return 0;
    uint32_t lo = 0, hi = s->nspans; /* the last span starting before `to` */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->spans[mid].start < to)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint32_t i = lo; i-- > 0 && n < max;) {
        const span_ent *e = &s->spans[i];
        if (e->start < from - s->maxdur)
            break;
        if (e->end <= from || !cw_ident_compat(c, e->ident, ident))
            continue;
        int64_t a = e->start > from ? e->start : from, b = e->end < to ? e->end : to;
        overlap[n] = b - a;
        ends[n] = b;
        out[n++] = e->ref;
    }
    return n;
}

/* Rule 3: the threadless spans covering ts, when they form exactly one chain (one trace, each
 * containing the next). Returns the count (innermost first in out), 0 for none; *ambiguous set
 * when they cover ts but do not form one chain. */
uint32_t cw_chain_at(const corr *c, const slot *s, int64_t ts, uint32_t ident, sp_span_ref *out,
                     int *ambiguous, const span_ent **ents_out)
{
    const span_ent *ents[MAX_MATCH];
    *ambiguous = 0;
    uint32_t n = cw_spans_at(c, s, ts, ident, out, MAX_MATCH, ents);
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

void cw_free_series(corr *c)
{
    for (uint32_t i = 0; i < c->series.n && i < c->capsrec; i++)
        free(c->srec[i].kv);
    free(c->srec);
    c->srec = NULL;
    c->capsrec = 0;
    cw_itab_free(&c->series);
}

/* (Re)builds the record of series id from its interned key. */
int cw_series_record(corr *c, uint32_t id)
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

uint32_t cw_series_id(corr *c, const sp_profile *p)
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
    uint32_t id = cw_itab_get(&c->series, key, (uint32_t)len, 1);
    free(key);
    if (id == UINT32_MAX || (id < c->capsrec && c->srec[id].kv))
        return id; /* known, and its record made (not yet for a new id, or after a failure) */
    return cw_series_record(c, id) ? UINT32_MAX : id;
}

/* Name ids of the frames of location id `loc` (innermost line first) appended to out. */
/* A location's names: the one rule of common/profile.h. */
static uint32_t loc_names(const sp_profile *p, uint32_t loc, const char **name, uint32_t *len,
                          uint32_t max, char buf[CW_NAME_BUF])
{
    return sp_location_names(p, loc, name, len, max, buf);
}

static uint32_t frame_names(corr *c, const sp_profile *p, uint32_t loc, uint32_t *out, uint32_t max)
{
    const char *name[512];
    uint32_t len[512], got = 0;
    char buf[CW_NAME_BUF];
    uint32_t n = loc_names(p, loc, name, len, max < 512 ? max : 512, buf);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = cw_itab_get(&c->names, name[i], len[i], 1);
        if (id != UINT32_MAX)
            out[got++] = id;
    }
    return got;
}

/* 4 MiB: the locations of many requests (eBPF: tens of thousands each, most of them known) */
#define CW_LNAMES_MAX (1u << 18)

/* The lnames table, made or emptied as needed (see struct corr): NULL without memory. */
static struct name_by_print *lnames_ready(corr *c)
{
    if (c->lnames && (c->lnames_gen != c->interns_gen || c->lnames_used * 4 >= c->nlnames * 3)) {
        memset(c->lnames, 0, c->nlnames * sizeof *c->lnames);
        c->lnames_used = 0;
        c->lnames_gen = c->interns_gen;
    }
    if (!c->lnames) {
        size_t fit = c->opt.max_bytes / 256 / sizeof *c->lnames;
        uint32_t n = 64;
        while (n < CW_LNAMES_MAX && (size_t)n * 2 <= fit)
            n *= 2;
        if (!(c->lnames = calloc(n, sizeof *c->lnames)))
            return NULL;
        c->nlnames = n;
        c->lnames_used = 0;
        c->lnames_gen = c->interns_gen;
    }
    return c->lnames;
}

/* The slot of print pr in lnames: its entry, or the empty slot it would take. */
static struct name_by_print *lnames_slot(const corr *c, const sp_print *pr)
{
    uint32_t mask = c->nlnames - 1, i = (uint32_t)pr->a & mask;
    for (;; i = (i + 1) & mask) {
        struct name_by_print *e = &c->lnames[i];
        if (!e->id1 || (e->a == pr->a && e->b == (uint32_t)pr->b))
            return e;
    }
}

/* Fills cache (cw_stack_id's, per location: name id, 1) for every location of p's table that
 * has one name, before its stacks are interned. The names table holds hundreds of thousands of
 * names and each lookup is a few dependent cache misses (slot, key pointer, key bytes); looked up
 * one location at a time they were 9 % of the server's CPU at full ingest (issue 19). Here a
 * batch of locations goes through each step before the next (hash and prefetch the slots, then
 * prefetch the candidate keys, then look up), so the misses of a batch overlap. A location whose
 * print a request brought before skips all that: its print finds its name id in c->lnames (an
 * eBPF request's tens of thousands of locations are mostly known; naming them was 4.5 % of the
 * server's instructions, bench/RESULTS.md). */
void cw_names_prefill(corr *c, const sp_profile *p, uint32_t *cache, const uint32_t *ids,
                      uint32_t nids)
{
    enum { B = 32 };
    char bufs[B][CW_NAME_BUF];
    const char *name[B];
    uint32_t len[B], hash[B], loc[B], cand[B];
    itab *t = &c->names;
    const sp_print *prints = p->location_prints;
    struct name_by_print *memo = prints ? lnames_ready(c) : NULL;
    for (uint32_t base = 0; base < nids; base += B) {
        uint32_t nq = 0, nc = 0;
        for (uint32_t k = base; k < nids && k - base < B; k++) {
            uint32_t l = ids[k];
            if (l && l < p->nlocations && !cache[l * 2 + 1]) {
                cand[nc++] = l;
                if (memo)
                    __builtin_prefetch(&memo[(uint32_t)prints[l].a & (c->nlnames - 1)]);
            }
        }
        for (uint32_t i = 0; i < nc; i++) {
            uint32_t l = cand[i];
            const char *nm[2];
            uint32_t ln[2];
            if (memo) {
                const struct name_by_print *e = lnames_slot(c, &prints[l]);
                if (e->id1) { /* equal prints, equal names (common/profile.h) */
                    cache[l * 2] = e->id1 - 1;
                    cache[l * 2 + 1] = 1;
                    continue;
                }
            }
            if (loc_names(p, l, nm, ln, 2, bufs[nq]) != 1)
                continue; /* several names: interned when a stack needs them */
            name[nq] = nm[0];
            len[nq] = ln[0];
            loc[nq] = l;
            hash[nq] = (uint32_t)hash64(nm[0], ln[0], FNV);
            if (t->nslots)
                __builtin_prefetch(&t->slots[hash[nq] & (t->nslots - 1)]);
            nq++;
        }
        for (uint32_t i = 0; i < nq && t->nslots; i++) {
            uint64_t s = t->slots[hash[i] & (t->nslots - 1)];
            if (s && (uint32_t)(s >> 32) == hash[i]) {
                __builtin_prefetch(&t->keys[(uint32_t)s - 1]);
                __builtin_prefetch(&t->lens[(uint32_t)s - 1]);
            }
        }
        for (uint32_t i = 0; i < nq && t->nslots; i++) {
            uint64_t s = t->slots[hash[i] & (t->nslots - 1)];
            if (s && (uint32_t)(s >> 32) == hash[i])
                __builtin_prefetch(t->keys[(uint32_t)s - 1]);
        }
        for (uint32_t i = 0; i < nq; i++) {
            uint32_t id = cw_itab_get_hashed(t, name[i], len[i], hash[i], 1);
            if (id == UINT32_MAX)
                continue;
            cache[loc[i] * 2] = id;
            cache[loc[i] * 2 + 1] = 1;
            if (memo && c->lnames_used * 4 < c->nlnames * 3) {
                struct name_by_print *e = lnames_slot(c, &prints[loc[i]]);
                if (!e->id1) {
                    *e = (struct name_by_print){prints[loc[i]].a, (uint32_t)prints[loc[i]].b,
                                                id + 1};
                    c->lnames_used++;
                }
            }
        }
    }
}

uint32_t cw_stack_id(corr *c, const sp_profile *p, const sp_sample *s, uint32_t *cache)
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
    return cw_itab_get(&c->stacks, frames, n * (uint32_t)sizeof *frames, 1);
}

/* 768 KiB: a request's known stacks (eBPF: a few thousand) and more */
#define CW_PRINTS_MAX 32768

/* The table's slots: a power of two, at most a 256th of the correlator's budget (it is outside
 * the budget's count, as the per-request memos are), 64 to CW_PRINTS_MAX. */
static uint32_t printed_slots(const corr *c)
{
    size_t fit = c->opt.max_bytes / 256 / sizeof(struct stack_by_print);
    uint32_t n = 64;
    while (n < CW_PRINTS_MAX && (size_t)n * 2 <= fit)
        n *= 2;
    return n;
}

uint32_t cw_stack_by_print(corr *c, const sp_profile *p, const sp_sample *s)
{
    if (!p->stack_prints || !s->stack || s->stack >= p->nstack_prints || !c->printed ||
        c->printed_gen != c->interns_gen)
        return UINT32_MAX;
    const sp_print *pr = &p->stack_prints[s->stack];
    const struct stack_by_print *e = &c->printed[pr->a & (c->nprinted - 1)];
    return e->used && e->a == pr->a && e->b == pr->b ? e->id : UINT32_MAX;
}

uint32_t cw_stack_id_printed(corr *c, const sp_profile *p, const sp_sample *s, uint32_t *cache)
{
    if (!p->stack_prints || !s->stack || s->stack >= p->nstack_prints)
        return cw_stack_id(c, p, s, cache);
    if (c->printed && c->printed_gen != c->interns_gen) {
        memset(c->printed, 0, c->nprinted * sizeof *c->printed);
        c->printed_gen = c->interns_gen;
    }
    if (!c->printed) {
        c->nprinted = printed_slots(c);
        c->printed = calloc(c->nprinted, sizeof *c->printed);
        c->printed_gen = c->interns_gen;
        if (!c->printed)
            return cw_stack_id(c, p, s, cache);
    }
    const sp_print *pr = &p->stack_prints[s->stack];
    struct stack_by_print *e = &c->printed[pr->a & (c->nprinted - 1)];
    if (e->used && e->a == pr->a && e->b == pr->b)
        return e->id;
    uint32_t id = cw_stack_id(c, p, s, cache);
    if (id != UINT32_MAX)
        *e = (struct stack_by_print){pr->a, pr->b, id, 1};
    return id;
}
