/* The hold, leaving (see hold.h): each due group becomes one profile per (tenant, series) with
 * the group's records as samples, stamped within its bucket's first millisecond, then is freed. */
#include "hold_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- leaving ---- */

typedef struct builder {
    sp_arena *a;
    const char **strs;
    uint32_t ns, caps;
} builder;

static uint32_t b_str(builder *b, const char *s, size_t n)
{
    if (b->ns == b->caps) {
        uint32_t nc = b->caps * 2;
        const char **x = sp_arena_alloc(b->a, nc * sizeof *x);
        if (!x)
            return 0;
        memcpy(x, b->strs, b->ns * sizeof *x);
        b->strs = x;
        b->caps = nc;
    }
    char *c = sp_arena_strndup(b->a, s, n);
    if (!c)
        return 0;
    b->strs[b->ns] = c;
    return b->ns++;
}

static int cmp_rec_entry(const void *x, const void *y, void *ud)
{
    const rec *r = ud;
    const rec *a = &r[*(const uint32_t *)x], *b = &r[*(const uint32_t *)y];
    if (a->entry != b->entry)
        return a->entry < b->entry ? -1 : 1;
    return *(const uint32_t *)x < *(const uint32_t *)y ? -1 : 1;
}

/* The profile of entry e from records idx[0..n). */
static int build_entry(uint32_t slot, group *g, uint32_t e, const uint32_t *idx, uint32_t n,
                       sp_arena *a, sp_profile *p)
{
    memset(p, 0, sizeof *p);
    builder b = {a, NULL, 1, 64};
    b.strs = sp_arena_alloc(a, 64 * sizeof *b.strs);
    uint32_t *nmap = sp_arena_calloc(a, g->names.n + 1, sizeof *nmap); /* name → location */
    sp_sample *smp = sp_arena_calloc(a, n ? n : 1, sizeof *smp);
    if (!b.strs || !nmap || !smp)
        return SP_ENOMEM;
    b.strs[0] = "";
    /* the type and series from the shape key */
    uint32_t klen;
    const char *k = (const char *)hold_bt_key(&g->shapes, g->e[e].shape, &klen);
    const char *end = k + klen;
    char *tid = sp_arena_strndup(a, k, strlen(k));
    if (!tid)
        return SP_ENOMEM;
    p->type_id = tid;
    const char *parts[5] = {"", "", "", "", ""};
    char *tp = sp_arena_strndup(a, tid, strlen(tid));
    for (int i = 0; i < 5 && tp; i++) {
        parts[i] = tp;
        char *c = strchr(tp, ':');
        if (c)
            *c++ = 0;
        tp = c;
    }
    p->name = parts[0];
    p->sample_type = b_str(&b, parts[1], strlen(parts[1]));
    p->sample_unit = b_str(&b, parts[2], strlen(parts[2]));
    p->period_type = b_str(&b, parts[3], strlen(parts[3]));
    p->period_unit = b_str(&b, parts[4], strlen(parts[4]));
    p->period = g->e[e].period;
    uint32_t nkv = 0;
    for (const char *q = k + strlen(k) + 1; q < end; q += strlen(q) + 1)
        nkv++;
    nkv /= 2;
    p->series = sp_arena_calloc(a, nkv ? nkv : 1, sizeof *p->series);
    if (!p->series)
        return SP_ENOMEM;
    const char *q = k + strlen(k) + 1;
    for (uint32_t i = 0; i < nkv; i++) {
        p->series[i].name = sp_arena_strndup(a, q, strlen(q));
        q += strlen(q) + 1;
        p->series[i].value = sp_arena_strndup(a, q, strlen(q));
        q += strlen(q) + 1;
    }
    p->nseries = nkv;
    /* functions and locations: one per name */
    uint32_t nloc = 1;
    sp_function *fn = sp_arena_calloc(a, g->names.n + 1, sizeof *fn);
    sp_location *loc = sp_arena_calloc(a, g->names.n + 1, sizeof *loc);
    sp_line *ln = sp_arena_calloc(a, g->names.n + 1, sizeof *ln);
    if (!fn || !loc || !ln)
        return SP_ENOMEM;
    uint32_t ns = 0;
    for (uint32_t i = 0; i < n; i++) {
        const rec *r = &g->r[idx[i]];
        if (r->value == 0)
            continue;
        sp_sample *s = &smp[ns];
        uint32_t slen;
        const uint32_t *ids =
            (const uint32_t *)(const void *)hold_bt_key(&g->stacks, r->stack, &slen);
        slen /= 4;
        s->location_ids = sp_arena_alloc(a, (slen ? slen : 1) * sizeof *s->location_ids);
        if (!s->location_ids)
            return SP_ENOMEM;
        for (uint32_t f = 0; f < slen; f++) {
            uint32_t nid = ids[f];
            if (!nmap[nid]) {
                uint32_t nl;
                const char *name = (const char *)hold_bt_key(&g->names, nid, &nl);
                uint32_t si = b_str(&b, name, nl);
                if (!si)
                    return SP_ENOMEM;
                fn[nloc].name = fn[nloc].system_name = si;
                ln[nloc].function_id = nloc;
                loc[nloc].lines = &ln[nloc];
                loc[nloc].nlines = 1;
                nmap[nid] = nloc++;
            }
            s->location_ids[f] = nmap[nid];
        }
        s->nlocations = slen;
        s->value = r->value;
        if (r->span != NO_SPAN) {
            s->spans = &g->refs[r->span];
            s->nspans = 1;
        }
        if (r->lset) {
            uint32_t ll;
            const char *lk = (const char *)hold_bt_key(&g->lsets, r->lset, &ll);
            const char *le = lk + ll;
            uint32_t nl = 0;
            for (const char *x = lk; x < le; x += strlen(x) + 1)
                nl++;
            nl /= 4;
            s->labels = sp_arena_calloc(a, nl ? nl : 1, sizeof *s->labels);
            if (!s->labels)
                return SP_ENOMEM;
            const char *x = lk;
            for (uint32_t li = 0; li < nl; li++) {
                sp_label *l = &s->labels[li];
                l->key = b_str(&b, x, strlen(x));
                x += strlen(x) + 1;
                l->str = *x ? b_str(&b, x, strlen(x)) : 0;
                x += strlen(x) + 1;
                l->num = strtoll(x, NULL, 10);
                x += strlen(x) + 1;
                l->num_unit = *x ? b_str(&b, x, strlen(x)) : 0;
                x += strlen(x) + 1;
            }
            s->nlabels = nl;
        }
        ns++;
    }
    p->functions = fn;
    p->nfunctions = nloc;
    p->locations = loc;
    p->nlocations = nloc;
    p->mappings = sp_arena_calloc(a, 1, sizeof *p->mappings);
    p->nmappings = 1;
    p->samples = smp;
    p->nsamples = ns;
    p->strings = b.strs;
    p->nstrings = b.ns;
    p->time_nanos =
        g->id.bucket_s * 1000000000LL +
        (g->id.gen ? hold_late_offset(slot, g->id.bucket_s, g->id.gen) : hold_bucket_offset(slot));
    p->duration_nanos = HOLD_BUCKET_NS;
    return p->mappings ? 0 : SP_ENOMEM;
}

size_t hold_total_bytes(hold *h)
{
    size_t n = (size_t)h->capsp * sizeof *h->sp + hold_bt_bytes(&h->tenants);
    for (uint32_t i = 0; i < h->ng; i++)
        n += h->g[i]->bytes = hold_group_bytes(h->g[i]);
    return n;
}

struct hold_detached {
    group *g;
    int early;
    uint32_t slot;
    char **tenants; /* per entry: copied, so emitting needs nothing of the hold */
};

/* The next group to leave at now_ns (see hold.h), out of h's list; NULL when none. */
hold_detached *hold_detach(hold *h, int64_t now_ns, int all)
{
    h->now = now_ns > h->now ? now_ns : h->now;
    size_t bytes = hold_total_bytes(h);
    group *pick = NULL;
    uint32_t at = 0;
    for (uint32_t i = 0; i < h->ng; i++) {
        group *g = h->g[i];
        if (g->pins)
            continue;
        if (!pick || g->release_at < pick->release_at) {
            pick = g;
            at = i;
        }
    }
    if (!pick)
        return NULL;
    int due = pick->release_at <= now_ns && all != 2;
    int early = !due && (all || bytes > h->o.max_bytes);
    if (!due && !early)
        return NULL;
    hold_detached *d = calloc(1, sizeof *d);
    char **t = calloc(pick->ne ? pick->ne : 1, sizeof *t);
    int ok = d && t;
    for (uint32_t e = 0; ok && e < pick->ne; e++) {
        uint32_t tl;
        const uint8_t *tk = hold_bt_key(&h->tenants, pick->e[e].tenant, &tl);
        ok = (t[e] = strndup((const char *)tk, tl)) != NULL;
    }
    if (!ok) {
        for (uint32_t e = 0; t && e < pick->ne; e++)
            free(t[e]);
        free(t);
        free(d);
        return NULL;
    }
    *d = (hold_detached){pick, early, h->o.instance_slot, t};
    h->g[at] = h->g[--h->ng];
    /* noted at once: arrivals meanwhile must not make a second group of this id (H1) */
    hold_note_left(h, pick->id);
    return d;
}

hold_group_id hold_detached_id(const hold_detached *d)
{
    return d->g->id;
}

/* Emits every entry of d's group; 0, or the first emit error. No lock needed. */
int hold_detached_emit(const hold_detached *d, hold_emit_fn emit, void *ud)
{
    group *g = d->g;
    uint32_t *idx = malloc((g->nr ? g->nr : 1) * sizeof *idx);
    sp_arena *a = sp_arena_new(0);
    if (!idx || !a) {
        free(idx);
        sp_arena_free(a);
        return SP_ENOMEM;
    }
    for (uint32_t i = 0; i < g->nr; i++)
        idx[i] = i;
    qsort_r(idx, g->nr, sizeof *idx, cmp_rec_entry, g->r);
    int rc = 0;
    for (uint32_t s = 0; s < g->nr && !rc;) {
        uint32_t e = g->r[idx[s]].entry, t = s;
        while (t < g->nr && g->r[idx[t]].entry == e)
            t++;
        sp_profile p;
        sp_arena_reset(a);
        rc = build_entry(d->slot, g, e, idx + s, t - s, a, &p);
        if (!rc && p.nsamples)
            rc = emit(ud, d->tenants[e], g->id, &p);
        s = t;
    }
    sp_arena_free(a);
    free(idx);
    return rc;
}

static void detached_free(hold_detached *d)
{
    for (uint32_t e = 0; e < d->g->ne; e++)
        free(d->tenants[e]);
    free(d->tenants);
    free(d);
}

void hold_detached_done(hold *h, hold_detached *d, int64_t now_ns)
{
    group *g = d->g;
    int64_t age = now_ns - g->first_arrival;
    h->st.delay_obs_ms_sum += (double)g->nobs * ((double)now_ns / 1e6) - g->arrival_ms_sum;
    h->st.delay_obs_count += g->nobs;
    h->st.last_delay_ms = age / 1000000;
    if (h->st.last_delay_ms > h->st.max_delay_ms)
        h->st.max_delay_ms = h->st.last_delay_ms;
    h->st.early_total += d->early;
    detached_free(d); /* reads g->ne: before the group goes */
    hold_group_free(g);
}

void hold_detached_return(hold *h, hold_detached *d)
{
    if (h->ng == h->capg) {
        uint32_t nc = h->capg ? h->capg * 2 : 16;
        group **x = realloc(h->g, nc * sizeof *x);
        if (!x) { /* cannot happen in practice (the list just shrank): leave it, counted */
            group *g = d->g;
            h->st.early_total += d->early;
            detached_free(d);
            hold_group_free(g);
            return;
        }
        h->g = x;
        h->capg = nc;
    }
    h->g[h->ng++] = d->g;
    detached_free(d);
}

int hold_release(hold *h, int64_t now_ns, int all, hold_emit_fn emit,
                 void (*done)(void *ud, hold_group_id g), void *ud)
{
    int released = 0;
    for (;;) {
        hold_detached *d = hold_detach(h, now_ns, all);
        if (!d)
            break;
        if (all == 2) /* the oldest one only: the caller's own budget */
            all = 0;
        if (hold_detached_emit(d, emit, ud)) {
            hold_detached_return(h, d);
            break;
        }
        hold_group_id id = hold_detached_id(d);
        hold_detached_done(h, d, now_ns);
        if (done)
            done(ud, id);
        released++;
    }
    return released;
}
