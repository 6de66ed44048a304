/* The hold (see hold.h for what it is for and its invariants H1–H3).
 *
 * Layout: a few groups (one per 10 s bucket in flight, plus late ones), each owning its interned
 * frame names, stacks (name id arrays), sample label sets, span references and records. A record
 * is (entry = tenant + series, stack, label set, span) → value; a second key kind in the same map,
 * (entry, stack) → the first record of that stack, chains the records an amendment searches.
 * Groups free everything when they leave, so interned names never pile up. A span table (by tenant
 * and id, rebuilt when half of it expired) keeps the extents and parents that decide which of two
 * spans is outer.
 *
 * Trade-off: observations are folded per bucket (no timestamps kept): memory follows distinct
 * stacks per bucket, not sample rate. An amendment then moves its value from any portion of the
 * same stack whose span lies inside the claiming one; two inner spans of one stack in one bucket
 * are interchangeable for it (both become the claiming span).
 */
#include "hold_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

const uint8_t *hold_bt_key(const bt *t, uint32_t id, uint32_t *len)
{
    *len = (uint32_t)(t->off[id] & 0xffffff);
    return t->blob + (t->off[id] >> 24);
}

static int hold_bt_grow_slots(bt *t)
{
    uint32_t ns = t->nslots ? t->nslots * 2 : 64;
    uint32_t *s = calloc(ns, sizeof *s);
    if (!s)
        return -1;
    for (uint32_t id = 0; id < t->n; id++) {
        uint32_t len;
        const uint8_t *k = hold_bt_key(t, id, &len);
        uint32_t i = (uint32_t)hash_bytes(k, len, 0) & (ns - 1);
        while (s[i])
            i = (i + 1) & (ns - 1);
        s[i] = id + 1;
    }
    free(t->slots);
    t->slots = s;
    t->nslots = ns;
    return 0;
}

/* Id of key, added when add; UINT32_MAX when absent or out of memory. */
uint32_t hold_bt_get(bt *t, const void *key, size_t len, int add)
{
    if (len >= 0xffffff)
        return UINT32_MAX;
    if (t->nslots) {
        uint32_t i = (uint32_t)hash_bytes(key, len, 0) & (t->nslots - 1);
        for (; t->slots[i]; i = (i + 1) & (t->nslots - 1)) {
            uint32_t kl;
            const uint8_t *k = hold_bt_key(t, t->slots[i] - 1, &kl);
            if (kl == len && memcmp(k, key, len) == 0)
                return t->slots[i] - 1;
        }
    }
    if (!add)
        return UINT32_MAX;
    if ((t->n + 1) * 2 > t->nslots && hold_bt_grow_slots(t))
        return UINT32_MAX;
    if (t->n == t->cap) {
        uint32_t nc = t->cap ? t->cap * 2 : 64;
        uint64_t *o = realloc(t->off, nc * sizeof *o);
        if (!o)
            return UINT32_MAX;
        t->off = o;
        t->cap = nc;
    }
    if (t->nblob + len > t->capblob) {
        size_t nc = t->capblob ? t->capblob * 2 : 4096;
        while (nc < t->nblob + len)
            nc *= 2;
        uint8_t *b = realloc(t->blob, nc);
        if (!b)
            return UINT32_MAX;
        t->blob = b;
        t->capblob = nc;
    }
    if (len)
        memcpy(t->blob + t->nblob, key, len);
    uint32_t id = t->n++;
    t->off[id] = (uint64_t)t->nblob << 24 | len;
    t->nblob += len;
    uint32_t i = (uint32_t)hash_bytes(key, len, 0) & (t->nslots - 1);
    while (t->slots[i])
        i = (i + 1) & (t->nslots - 1);
    t->slots[i] = id + 1;
    return id;
}

size_t hold_bt_bytes(const bt *t)
{
    return t->capblob + (size_t)t->cap * 8 + (size_t)t->nslots * 4;
}

void hold_bt_free(bt *t)
{
    free(t->blob);
    free(t->off);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

size_t hold_group_bytes(const group *g)
{
    return sizeof *g + hold_bt_bytes(&g->names) + hold_bt_bytes(&g->stacks) +
           hold_bt_bytes(&g->lsets) + hold_bt_bytes(&g->shapes) + hold_bt_bytes(&g->ekeys) +
           hold_bt_bytes(&g->refkeys) + (size_t)g->cape * sizeof *g->e +
           (size_t)g->caprefs * sizeof *g->refs + (size_t)g->capr * sizeof *g->r +
           ((size_t)g->byrec.n + g->bystack.n) * sizeof(uint32_t);
}

void hold_group_free(group *g)
{
    hold_bt_free(&g->names);
    hold_bt_free(&g->stacks);
    hold_bt_free(&g->lsets);
    hold_bt_free(&g->shapes);
    hold_bt_free(&g->ekeys);
    hold_bt_free(&g->refkeys);
    free(g->e);
    free(g->refs);
    free(g->r);
    free(g->byrec.slot);
    free(g->bystack.slot);
    free(g);
}

static uint32_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL) * 0xc2b2ae3d27d4eb4fULL;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    return (uint32_t)(h ^ (h >> 29));
}

static uint32_t hash_rec(const rec *r)
{
    return mix((uint64_t)r->entry << 32 | r->stack, (uint64_t)r->lset << 32 | r->span);
}

static uint32_t hash_stack(uint32_t e, uint32_t stack)
{
    return mix((uint64_t)e << 32 | stack, 0);
}

/* The slot of (e, stack, lset, span) in byrec (its record, or the empty slot to fill). */
static uint32_t *byrec_slot(group *g, uint32_t e, uint32_t stack, uint32_t lset, uint32_t span)
{
    if (!g->byrec.n)
        return NULL;
    rec key = {e, stack, lset, span, 0, 0};
    uint32_t j = hash_rec(&key) & (g->byrec.n - 1);
    for (; g->byrec.slot[j]; j = (j + 1) & (g->byrec.n - 1)) {
        const rec *r = &g->r[g->byrec.slot[j] - 1];
        if (r->entry == e && r->stack == stack && r->lset == lset && r->span == span)
            break;
    }
    return &g->byrec.slot[j];
}

static uint32_t *bystack_slot(group *g, uint32_t e, uint32_t stack)
{
    if (!g->bystack.n)
        return NULL;
    uint32_t j = hash_stack(e, stack) & (g->bystack.n - 1);
    for (; g->bystack.slot[j]; j = (j + 1) & (g->bystack.n - 1)) {
        const rec *r = &g->r[g->bystack.slot[j] - 1];
        if (r->entry == e && r->stack == stack)
            break;
    }
    return &g->bystack.slot[j];
}

/* Doubles a table (load kept under a half), rehashing from the records. */
static int imap_grow(group *g, imap *m, int by_stack)
{
    uint32_t nn = m->n ? m->n * 2 : 256;
    uint32_t *ns = calloc(nn, sizeof *ns);
    if (!ns)
        return -1;
    for (uint32_t i = 0; i < m->n; i++) {
        uint32_t v = m->slot[i];
        if (!v)
            continue;
        const rec *r = &g->r[v - 1];
        uint32_t j = (by_stack ? hash_stack(r->entry, r->stack) : hash_rec(r)) & (nn - 1);
        while (ns[j])
            j = (j + 1) & (nn - 1);
        ns[j] = v;
    }
    free(m->slot);
    m->slot = ns;
    m->n = nn;
    return 0;
}

/* The first record of (e, stack): the head of its chain, UINT32_MAX when none. */
static uint32_t stack_head(group *g, uint32_t e, uint32_t stack)
{
    uint32_t *s = bystack_slot(g, e, stack);
    return s && *s ? *s - 1 : UINT32_MAX;
}

/* The record (entry, stack, lset, span), created with value 0 when new. */
static rec *rec_get(group *g, uint32_t e, uint32_t stack, uint32_t lset, uint32_t span)
{
    uint32_t *s = byrec_slot(g, e, stack, lset, span);
    if (s && *s)
        return &g->r[*s - 1];
    if (g->nr == g->capr) {
        uint32_t nc = g->capr ? g->capr * 2 : 256;
        rec *r = realloc(g->r, nc * sizeof *r);
        if (!r)
            return NULL;
        g->r = r;
        g->capr = nc;
    }
    if (((g->byrec.used + 1) * 2 > g->byrec.n && imap_grow(g, &g->byrec, 0)) ||
        ((g->bystack.used + 1) * 2 > g->bystack.n && imap_grow(g, &g->bystack, 1)))
        return NULL;
    uint32_t idx = g->nr++;
    g->r[idx] = (rec){e, stack, lset, span, UINT32_MAX, 0};
    *byrec_slot(g, e, stack, lset, span) = idx + 1;
    g->byrec.used++;
    uint32_t *h = bystack_slot(g, e, stack);
    if (*h)
        g->r[idx].next = *h - 1;
    else
        g->bystack.used++;
    *h = idx + 1;
    g->e[e].nrecords++;
    return &g->r[idx];
}

/* ---- spans ---- */

static span_info *span_find(hold *h, uint32_t tenant, const uint8_t id[8], int add);

static int span_table_rebuild(hold *h, uint32_t ncap)
{
    span_info *old = h->sp;
    uint32_t oc = h->capsp;
    h->sp = calloc(ncap, sizeof *h->sp);
    if (!h->sp) {
        h->sp = old;
        return -1;
    }
    h->capsp = ncap;
    h->nsp = 0;
    for (uint32_t i = 0; i < oc; i++) {
        if (!old[i].tenant || old[i].seen < h->now - h->o.span_ttl_ns)
            continue;
        span_info *s = span_find(h, old[i].tenant - 1, old[i].id, 1);
        if (s)
            *s = old[i];
    }
    free(old);
    return 0;
}

static span_info *span_find(hold *h, uint32_t tenant, const uint8_t id[8], int add)
{
    if (add && (h->nsp + 1) * 2 > h->capsp) {
        /* drop the expired first; grow only when that did not free a quarter */
        uint32_t ncap = h->capsp ? h->capsp : 1024;
        if (span_table_rebuild(h, ncap))
            return NULL;
        if ((h->nsp + 1) * 4 > h->capsp * 1 && span_table_rebuild(h, h->capsp * 2))
            return NULL;
    }
    if (!h->capsp)
        return NULL;
    uint8_t key[12];
    memcpy(key, &tenant, 4);
    memcpy(key + 4, id, 8);
    uint32_t j = (uint32_t)hash_bytes(key, 12, 3) & (h->capsp - 1);
    for (; h->sp[j].tenant; j = (j + 1) & (h->capsp - 1))
        if (h->sp[j].tenant == tenant + 1 && memcmp(h->sp[j].id, id, 8) == 0)
            return &h->sp[j];
    if (!add)
        return NULL;
    memset(&h->sp[j], 0, sizeof h->sp[j]);
    h->sp[j].tenant = tenant + 1;
    memcpy(h->sp[j].id, id, 8);
    h->sp[j].seen = h->now;
    h->nsp++;
    return &h->sp[j];
}

/* 1 when anc is an ancestor of x by parent ids, 0 when x's chain reaches its root without it,
 * -1 when the chain runs into a span not known here. */
static int is_ancestor(hold *h, uint32_t tenant, const span_info *anc, const span_info *x)
{
    static const uint8_t zero[8];
    const span_info *cur = x;
    for (int depth = 0; depth < 64; depth++) {
        if (memcmp(cur->parent, zero, 8) == 0)
            return 0;
        if (memcmp(cur->parent, anc->id, 8) == 0)
            return 1;
        const span_info *up = span_find(h, tenant, cur->parent, 0);
        if (!up || !up->known)
            return -1;
        cur = up;
    }
    return -1;
}

/* 1 when span s is outer to span l (l NULL: no span): s is an ancestor of l; when l's chain is
 * not all known here (children arrive before their parents), when s is of l's trace and contains
 * it in time (equal times: l names s as its parent). An unknown l loses to a known s. Ancestry
 * first: an async child may outlive its parent; never across traces: a concurrent request's span
 * covering the same time on the same thread is not outer. */
static int outer(hold *h, uint32_t tenant, const sp_span_ref *s, const sp_span_ref *l)
{
    if (!l)
        return 1;
    if (memcmp(s->span_id, l->span_id, 8) == 0)
        return 0;
    const span_info *si = span_find(h, tenant, s->span_id, 0);
    const span_info *li = span_find(h, tenant, l->span_id, 0);
    if (!si || !si->known)
        return 0;
    if (!li || !li->known)
        return 1;
    int anc = is_ancestor(h, tenant, si, li);
    if (anc >= 0)
        return anc;
    if (memcmp(si->trace, li->trace, 16) != 0 || si->start > li->start || si->end < li->end)
        return 0;
    if (si->start == li->start && si->end == li->end)
        return memcmp(li->parent, s->span_id, 8) == 0;
    return 1;
}

/* ---- groups ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t release_at_of(const hold *h, hold_group_id id)
{
    return id.gen ? id.gen * 1000000000LL
                  : id.bucket_s * 1000000000LL + HOLD_BUCKET_NS + h->o.delay_ns;
}

static group *group_find(hold *h, hold_group_id id, int add)
{
    for (uint32_t i = 0; i < h->ng; i++)
        if (h->g[i]->id.bucket_s == id.bucket_s && h->g[i]->id.gen == id.gen)
            return h->g[i];
    if (!add)
        return NULL;
    if (h->ng == h->capg) {
        uint32_t nc = h->capg ? h->capg * 2 : 16;
        group **g = realloc(h->g, nc * sizeof *g);
        if (!g)
            return NULL;
        h->g = g;
        h->capg = nc;
    }
    group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->id = id;
    g->release_at = release_at_of(h, id);
    g->first_arrival = h->now;
    h->g[h->ng++] = g;
    if (id.gen)
        h->st.late_groups_total++;
    return g;
}

static int has_left(const hold *h, hold_group_id id, int64_t now_ns)
{
    for (uint32_t i = 0; i < h->nleft; i++)
        if (h->left[i].id.bucket_s == id.bucket_s && h->left[i].id.gen == id.gen &&
            h->left[i].until_ns > now_ns)
            return 1;
    return 0;
}

hold_group_id hold_group_of(const hold *h, int64_t ts_ns, int64_t now_ns)
{
    hold_group_id id = {floor_div(ts_ns, HOLD_BUCKET_NS) * 10, 0};
    if (now_ns >= release_at_of(h, id) || has_left(h, id, now_ns)) {
        /* late: leaves at the whole second after now + delay (or a later one when a group of
         * that second already left early) */
        id.gen = floor_div(now_ns + h->o.delay_ns, 1000000000LL) + 1;
        while (has_left(h, id, now_ns))
            id.gen++;
    }
    return id;
}

void hold_note_left(hold *h, hold_group_id id)
{
    /* an arrival computes this id until the group's own release time has passed (gen 0), or
     * until now + delay reaches its second (late groups): keep it that long, and a bucket more */
    int64_t until = release_at_of(h, id) + HOLD_BUCKET_NS;
    h->left[h->leftpos] = (left_id){id, until};
    h->leftpos = (h->leftpos + 1) % HOLD_LEFT_MAX;
    if (h->nleft < HOLD_LEFT_MAX)
        h->nleft++;
}

/* The first millisecond of a bucket, in ns: 997 instance slots of 1000 ns; in a slot, 1 is the
 * bucket's own group, 2–499 late groups, 500–999 recovered journal files. Never 0: Pyroscope's
 * ranges are closed [start, end] in ms, so a profile stamped exactly on a bucket start would
 * count in two adjacent ranges; 1 ns later it counts only in the range that starts there, as in
 * spanprof's half-open ranges. */
int64_t hold_late_offset(uint32_t slot, int64_t bucket_s, int64_t gen)
{
    int64_t d = gen - bucket_s;
    return (int64_t)(slot % 997) * 1000 + 2 + (d < 0 ? -d : d) % 498;
}

int64_t hold_recovered_offset(uint32_t slot, uint64_t seq)
{
    return (int64_t)(slot % 997) * 1000 + 500 + (int64_t)(seq % 500);
}

int64_t hold_bucket_offset(uint32_t slot)
{
    return (int64_t)(slot % 997) * 1000 + 1;
}

/* The timestamp of an observation (the store's rule: none or negative = the profile's time, or
 * now when that is unset). */
int64_t hold_obs_ts(const sp_profile *p, const sp_sample *s, uint32_t k, int64_t now)
{
    int64_t t = s->nobs && s->timestamps ? (int64_t)s->timestamps[k] : 0;
    if (t > 0)
        return t;
    return p->time_nanos > 0 ? p->time_nanos : now;
}

/* Observation k's value (the store's rule: equal shares, the rest on the first). */
int64_t hold_obs_value(const sp_sample *s, uint32_t k)
{
    if (!s->nobs)
        return s->value;
    if (s->values)
        return s->values[k];
    int64_t share = s->value / (int64_t)s->nobs;
    return share + (k == 0 ? s->value - share * (int64_t)s->nobs : 0);
}

int hold_plan(hold *h, const sp_batch *b, int64_t now_ns, hold_group_id *out, int max)
{
    int n = 0;
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        if (p->attach_only)
            continue;
        for (uint32_t j = 0; j < p->nsamples; j++) {
            const sp_sample *s = &p->samples[j];
            uint32_t nobs = s->nobs ? s->nobs : 1;
            for (uint32_t k = 0; k < nobs; k++) {
                hold_group_id id = hold_group_of(h, hold_obs_ts(p, s, k, now_ns), now_ns);
                int seen = 0;
                for (int x = 0; x < n && !seen; x++)
                    seen = out[x].bucket_s == id.bucket_s && out[x].gen == id.gen;
                if (seen)
                    continue;
                if (n == max)
                    return -1;
                out[n++] = id;
            }
        }
    }
    h->now = now_ns > h->now ? now_ns : h->now;
    for (int x = 0; x < n; x++) {
        group *g = group_find(h, out[x], 1);
        if (!g) {
            hold_unpin(h, out, x);
            return -1;
        }
        g->pins++;
    }
    return n;
}

void hold_unpin(hold *h, const hold_group_id *ids, int n)
{
    for (int x = 0; x < n; x++) {
        group *g = group_find(h, ids[x], 0);
        if (g && g->pins > 0)
            g->pins--;
    }
}

/* ---- taking a batch ---- */

/* The frame names of location loc, innermost line first (the correlator's rule: a line's
 * function name, or for a location without one the name sp_frame_name() makes). */
/* A location's names by the correlator's rule (sp_location_names): late claims match only when
 * both name stacks alike. A made-up name takes the next of the caller's buffers. */
static uint32_t frame_names(const sp_profile *p, uint32_t loc, const char **out, uint32_t max,
                            char (*buf)[SP_FRAME_NAME_MAX], uint32_t *nbuf)
{
    if (*nbuf >= 512)
        return 0; /* cannot happen: a stack of 512 names ends before (stackbuf) */
    uint32_t n = sp_location_names(p, loc, out, NULL, max, buf[*nbuf]);
    if (n == 1 && out[0] == buf[*nbuf])
        ++*nbuf;
    return n;
}

typedef struct stackbuf {
    const char *names[512];
    uint32_t n;
    char tmp[512][SP_FRAME_NAME_MAX];
    uint32_t ntmp;
} stackbuf;

static void sample_names(const sp_profile *p, const sp_sample *s, stackbuf *sb)
{
    sb->n = sb->ntmp = 0;
    for (uint32_t i = 0; i < s->nlocations && sb->n < 512; i++)
        sb->n +=
            frame_names(p, s->location_ids[i], sb->names + sb->n, 512 - sb->n, sb->tmp, &sb->ntmp);
}

static uint32_t intern_stack(group *g, const stackbuf *sb)
{
    uint32_t ids[512];
    for (uint32_t i = 0; i < sb->n; i++) {
        ids[i] = hold_bt_get(&g->names, sb->names[i], strlen(sb->names[i]), 1);
        if (ids[i] == UINT32_MAX)
            return UINT32_MAX;
    }
    return hold_bt_get(&g->stacks, ids, sb->n * sizeof *ids, 1);
}

/* A sample's labels as one key: key\0str\0num\0unit\0 per label (strings of p). */
static uint32_t intern_lset(group *g, const sp_profile *p, const sp_sample *s)
{
    if (!s->nlabels)
        return 0; /* id 0 is always the empty set (interned first) */
    char buf[4096];
    size_t o = 0;
    for (uint32_t i = 0; i < s->nlabels; i++) {
        const sp_label *l = &s->labels[i];
        int w =
            snprintf(buf + o, sizeof buf - o, "%s%c%s%c%lld%c%s%c",
                     l->key < p->nstrings ? p->strings[l->key] : "", 0,
                     l->str && l->str < p->nstrings ? p->strings[l->str] : "", 0, (long long)l->num,
                     0, l->num_unit && l->num_unit < p->nstrings ? p->strings[l->num_unit] : "", 0);
        if (w < 0 || (size_t)w >= sizeof buf - o)
            break;
        o += (size_t)w;
    }
    return hold_bt_get(&g->lsets, buf, o, 1);
}

static uint32_t intern_ref(group *g, const sp_span_ref *r)
{
    uint32_t before = g->refkeys.n;
    uint32_t id = hold_bt_get(&g->refkeys, r, sizeof *r, 1);
    if (id == UINT32_MAX || id < before)
        return id;
    if (g->nrefs == g->caprefs) {
        uint32_t nc = g->caprefs ? g->caprefs * 2 : 64;
        sp_span_ref *x = realloc(g->refs, nc * sizeof *x);
        if (!x)
            return UINT32_MAX; /* the key stays interned without a ref: never looked up again */
        g->refs = x;
        g->caprefs = nc;
    }
    g->refs[g->nrefs++] = *r;
    return id;
}

/* The entry of (tenant, p's type and series) in g. */
static uint32_t intern_entry(group *g, uint32_t tenant, const sp_profile *p)
{
    char buf[8192];
    size_t o = 0;
    int w = snprintf(buf, sizeof buf, "%s", p->type_id ? p->type_id : "");
    o = w > 0 ? (size_t)w + 1 : 1;
    for (uint32_t i = 0; i < p->nseries && o < sizeof buf; i++) {
        w = snprintf(buf + o, sizeof buf - o, "%s%c%s", p->series[i].name, 0, p->series[i].value);
        if (w < 0 || (size_t)w >= sizeof buf - o)
            return UINT32_MAX;
        o += (size_t)w + 1;
    }
    uint32_t shape = hold_bt_get(&g->shapes, buf, o, 1);
    if (shape == UINT32_MAX)
        return UINT32_MAX;
    uint32_t key[2] = {tenant, shape};
    uint32_t before = g->ekeys.n;
    uint32_t e = hold_bt_get(&g->ekeys, key, sizeof key, 1);
    if (e != UINT32_MAX && e < before && !g->e[e].period)
        g->e[e].period = p->period;
    if (e == UINT32_MAX || e < before)
        return e;
    if (g->ne == g->cape) {
        uint32_t nc = g->cape ? g->cape * 2 : 16;
        entry *x = realloc(g->e, nc * sizeof *x);
        if (!x)
            return UINT32_MAX;
        g->e = x;
        g->cape = nc;
    }
    g->e[g->ne++] = (entry){tenant, shape, 0, p->period};
    return e;
}

static void take_spans(hold *h, uint32_t tenant, const sp_batch *b)
{
    for (size_t i = 0; i < b->nspans; i++) {
        const sp_span *sp = &b->spans[i];
        span_info *si = span_find(h, tenant, sp->span_id, 1);
        if (!si)
            continue;
        memcpy(si->parent, sp->parent_span_id, 8);
        memcpy(si->trace, sp->trace_id, 16);
        si->start = sp->start_ns;
        si->end = sp->end_ns;
        si->known = 1;
        si->seen = h->now;
    }
}

static void mark_incomplete(hold *h, uint32_t tenant, const sp_span_ref *s);

/* Two spans the correlator gave one observation to, neither inside the other (concurrent
 * requests on one thread, a sample linked to one span while it ran inside another): the pushed
 * sample names a (the label), so b's profile in Pyroscope is not whole (H3). Spans whose extent
 * is unknown here are not judged. */
static void check_unrelated(hold *h, uint32_t tenant, const sp_span_ref *a, const sp_span_ref *b)
{
    const span_info *ai = span_find(h, tenant, a->span_id, 0);
    const span_info *bi = span_find(h, tenant, b->span_id, 0);
    if (!ai || !bi || !ai->known || !bi->known || memcmp(a->span_id, b->span_id, 8) == 0)
        return;
    if (!outer(h, tenant, a, b) && !outer(h, tenant, b, a))
        mark_incomplete(h, tenant, b); /* a (the label) has the sample; b does not */
}

/* The outermost of a sample's spans (NULL: none); spans of other chains are incomplete. */
static const sp_span_ref *outermost(hold *h, uint32_t tenant, const sp_sample *s)
{
    const sp_span_ref *best = NULL;
    for (uint32_t i = 0; i < s->nspans; i++)
        if (!best || outer(h, tenant, &s->spans[i], best))
            best = &s->spans[i];
    for (uint32_t i = 0; i < s->nspans && s->nspans > 1; i++)
        check_unrelated(h, tenant, best, &s->spans[i]);
    return best;
}

/* Per (profile, group) while a profile is taken: its entry and the name id of each location
 * with one name (most of them), so a sample's stack costs one lookup, not one per frame. */
typedef struct pg_cache {
    group *g;
    uint32_t entry;
    uint32_t *loc_name; /* UINT32_MAX = not cached */
} pg_cache;

static pg_cache *cache_for(pg_cache *c, int *nc, group *g, uint32_t tenant, const sp_profile *p)
{
    for (int i = 0; i < *nc; i++)
        if (c[i].g == g)
            return &c[i];
    if (*nc == PUSH_GROUPS_MAX)
        return NULL;
    pg_cache *x = &c[(*nc)++];
    x->g = g;
    if (!g->lsets.n)
        hold_bt_get(&g->lsets, "", 0, 1);
    x->entry = intern_entry(g, tenant, p);
    x->loc_name = malloc((p->nlocations ? p->nlocations : 1) * sizeof *x->loc_name);
    if (x->loc_name)
        memset(x->loc_name, 0xff, (p->nlocations ? p->nlocations : 1) * sizeof *x->loc_name);
    if (x->entry == UINT32_MAX || !x->loc_name) {
        free(x->loc_name);
        --*nc;
        return NULL;
    }
    return x;
}

/* The sample's stack in g (name ids through the location cache). */
static uint32_t stack_in(pg_cache *c, const sp_profile *p, const sp_sample *s, stackbuf *sb)
{
    uint32_t ids[512], n = 0;
    for (uint32_t i = 0; i < s->nlocations && n < 512; i++) {
        uint32_t loc = s->location_ids[i];
        if (loc < p->nlocations && c->loc_name[loc] != UINT32_MAX) {
            ids[n++] = c->loc_name[loc];
            continue;
        }
        sb->ntmp = 0;
        uint32_t got = frame_names(p, loc, sb->names, 512 - n, sb->tmp, &sb->ntmp);
        for (uint32_t k = 0; k < got; k++) {
            uint32_t id = hold_bt_get(&c->g->names, sb->names[k], strlen(sb->names[k]), 1);
            if (id == UINT32_MAX)
                return UINT32_MAX;
            ids[n++] = id;
        }
        if (got == 1 && loc < p->nlocations)
            c->loc_name[loc] = ids[n - 1];
    }
    return hold_bt_get(&c->g->stacks, ids, n * sizeof *ids, 1);
}

static int take_observations(hold *h, uint32_t tenant, const sp_profile *p, int64_t plan_ns,
                             const hold_group_id *ids, int n, stackbuf *sb, uint64_t *lost)
{
    pg_cache cache[PUSH_GROUPS_MAX];
    int nc = 0;
    for (uint32_t j = 0; j < p->nsamples; j++) {
        const sp_sample *s = &p->samples[j];
        uint32_t nobs = s->nobs ? s->nobs : 1;
        const sp_span_ref *label = outermost(h, tenant, s);
        group *last = NULL;
        pg_cache *c = NULL;
        uint32_t stack = 0, lset = 0, span = NO_SPAN;
        for (uint32_t k = 0; k < nobs; k++) {
            int64_t v = hold_obs_value(s, k);
            if (!v)
                continue;
            hold_group_id id = hold_group_of(h, hold_obs_ts(p, s, k, plan_ns), plan_ns);
            group *g = NULL;
            for (int x = 0; x < n && !g; x++)
                if (ids[x].bucket_s == id.bucket_s && ids[x].gen == id.gen)
                    g = group_find(h, id, 0);
            if (!g) {
                ++*lost;
                continue;
            }
            if (g != last) {
                last = g;
                c = cache_for(cache, &nc, g, tenant, p);
                stack = c ? stack_in(c, p, s, sb) : UINT32_MAX;
                lset = intern_lset(g, p, s);
                span = label ? intern_ref(g, label) : NO_SPAN;
                if (!c || stack == UINT32_MAX || lset == UINT32_MAX ||
                    (label && span == UINT32_MAX)) {
                    last = NULL;
                    ++*lost;
                    continue;
                }
            }
            rec *r = rec_get(g, c->entry, stack, lset, span);
            if (!r) {
                ++*lost;
                continue;
            }
            r->value = sp_sat_add(r->value, v);
            h->st.held_total++;
            g->arrival_ms_sum += (double)plan_ns / 1e6;
            g->nobs++;
        }
    }
    for (int i = 0; i < nc; i++)
        free(cache[i].loc_name);
    return 0;
}

static void mark_incomplete(hold *h, uint32_t tenant, const sp_span_ref *s)
{
    span_info *si = span_find(h, tenant, s->span_id, 1);
    if (si && !si->incomplete) {
        si->incomplete = 1;
        si->seen = h->now;
        h->st.incomplete_total++;
    }
}

/* What a claim found among the portions of its stack. */
typedef struct claim_scan {
    int own, outer, unrelated;
} claim_scan;

/* Moves up to *want of the portions of (e, stack) in g to the claim: pass 0 takes portions
 * labelled with a span inside the claim (the same observation, attached to a child first), pass
 * 1 portions without a span. Inner first: a parent's claim must not take another observation's
 * unlabelled value while its own sits under its child. */
static void claim_pass(hold *h, uint32_t tenant, group *g, uint32_t e, uint32_t stack,
                       const sp_span_ref *claim, int pass, int64_t *want, claim_scan *sc)
{
    uint32_t span = UINT32_MAX;
    for (uint32_t ri = stack_head(g, e, stack); ri != UINT32_MAX && *want > 0; ri = g->r[ri].next) {
        rec *r = &g->r[ri];
        if (r->value <= 0)
            continue;
        const sp_span_ref *cur = r->span == NO_SPAN ? NULL : &g->refs[r->span];
        if ((pass == 0) != (cur != NULL))
            continue;
        if (cur && memcmp(cur->span_id, claim->span_id, 8) == 0) {
            sc->own = 1; /* labelled with the claim already (attached on arrival too) */
            continue;
        }
        if (cur && !outer(h, tenant, claim, cur)) {
            /* under an outer span (the claim is nested: fine), or under another chain's */
            if (outer(h, tenant, cur, claim))
                sc->outer = 1;
            else
                sc->unrelated = 1;
            continue;
        }
        if (span == UINT32_MAX && (span = intern_ref(g, claim)) == UINT32_MAX)
            return;
        int64_t take = r->value < *want ? r->value : *want;
        uint32_t lset = r->lset;
        r->value -= take;
        rec *to = rec_get(g, e, stack, lset, span); /* may move g->r */
        if (!to) {
            g->r[ri].value += take;
            return;
        }
        to->value += take;
        *want -= take;
        h->st.moved_total++;
    }
}

/* An attach_only sample: its span claims value v of this stack at ts (H2, H3). */
static void take_amendment(hold *h, uint32_t tenant, const sp_profile *p, const sp_sample *s,
                           stackbuf *sb)
{
    if (!s->nspans)
        return;
    const sp_span_ref *claim = &s->spans[0];
    sample_names(p, s, sb);
    uint32_t nobs = s->nobs ? s->nobs : 1;
    for (uint32_t k = 0; k < nobs; k++) {
        int64_t want = hold_obs_value(s, k);
        if (want <= 0)
            continue;
        int64_t bucket = floor_div(hold_obs_ts(p, s, k, h->now), HOLD_BUCKET_NS) * 10;
        int held_somewhere = 0;
        claim_scan sc = {0, 0, 0};
        /* pass 1 (unlabelled portions) only when no portion sits under a span outer to the
         * claim: a nested claim (a child span arriving after its parent labelled the sample)
         * would otherwise take another observation's unlabelled value; its outer span answers
         * for the observation anyway, and a nested span is never marked */
        for (int pass = 0; pass < 2 && !(pass == 1 && sc.outer); pass++)
            for (uint32_t gi = 0; gi < h->ng && want > 0; gi++) {
                group *g = h->g[gi];
                if (g->id.bucket_s != bucket)
                    continue;
                held_somewhere |= g->id.gen == 0;
                uint32_t e = intern_entry(g, tenant, p);
                uint32_t stack = intern_stack(g, sb);
                if (e != UINT32_MAX && stack != UINT32_MAX)
                    claim_pass(h, tenant, g, e, stack, claim, pass, &want, &sc);
            }
        /* H3: what the claim could not take is pushed without it: the bucket already left, or
         * the observation went out under another chain's span. Not judged when the claim is
         * nested (its outer span answers) or already holds such a portion. */
        if (want > 0 && !sc.own && !sc.outer && (sc.unrelated || !held_somewhere))
            mark_incomplete(h, tenant, claim);
    }
}

int hold_add(hold *h, const sp_batch *b, int64_t plan_ns, const hold_group_id *ids, int n,
             sp_err *err)
{
    const char *tn = b->tenant && *b->tenant ? b->tenant : "anonymous";
    uint32_t tenant = hold_bt_get(&h->tenants, tn, strlen(tn), 1);
    uint64_t lost = 0;
    stackbuf *sb = malloc(sizeof *sb);
    if (tenant == UINT32_MAX || !sb) {
        free(sb);
        hold_unpin(h, ids, n);
        return sp_fail(err, SP_ENOMEM, "hold: out of memory");
    }
    take_spans(h, tenant, b);
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        if (!p->attach_only)
            take_observations(h, tenant, p, plan_ns, ids, n, sb, &lost);
    }
    for (size_t i = 0; i < b->nprofiles; i++) {
        const sp_profile *p = b->profiles[i];
        if (p->attach_only)
            for (uint32_t j = 0; j < p->nsamples; j++)
                take_amendment(h, tenant, p, &p->samples[j], sb);
    }
    free(sb);
    hold_unpin(h, ids, n);
    if (lost)
        return sp_fail(err, SP_ENOMEM, "hold: %llu observations not held (out of memory)",
                       (unsigned long long)lost);
    return 0;
}

int hold_span_incomplete(hold *h, const char *tenant, const uint8_t span_id[8])
{
    const char *tn = tenant && *tenant ? tenant : "anonymous";
    uint32_t t = hold_bt_get(&h->tenants, tn, strlen(tn), 0);
    if (t == UINT32_MAX)
        return 0;
    const span_info *si = span_find(h, t, span_id, 0);
    return si && si->incomplete;
}

void hold_get_stats(hold *h, hold_stats *out)
{
    h->st.groups = h->ng;
    h->st.entries = h->st.records = 0;
    for (uint32_t i = 0; i < h->ng; i++) {
        h->st.entries += h->g[i]->ne;
        h->st.records += h->g[i]->nr;
    }
    h->st.bytes = hold_total_bytes(h);
    *out = h->st;
}

hold *hold_new(const hold_options *o)
{
    hold *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (o)
        h->o = *o;
    if (h->o.delay_ns < 0)
        h->o.delay_ns = 0;
    if (!h->o.max_bytes)
        h->o.max_bytes = 256u << 20;
    if (h->o.span_ttl_ns <= 0)
        h->o.span_ttl_ns = 2 * h->o.delay_ns + 2 * HOLD_BUCKET_NS;
    return h;
}

void hold_free(hold *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->ng; i++)
        hold_group_free(h->g[i]);
    free(h->g);
    free(h->sp);
    hold_bt_free(&h->tenants);
    free(h);
}
