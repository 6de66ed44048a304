#include "correlator.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS       16384
#define MAX_MATCH      16 /* spans one observation can belong to (nesting depth) */
#define SWEEP_EVERY_NS 1000000000LL

/* ---- the windows ---- */

typedef struct span_ent {
    int64_t start, end, expire;
    sp_span_ref ref;
} span_ent;

typedef struct obs_ent {
    int64_t ts, value, expire;
    uint32_t stack, series; /* ids into the intern tables below */
    uint8_t link[8];        /* the sender's span id, zero when none: never attached twice */
} obs_ent;

/* Everything known about one thread of one process of one tenant. */
typedef struct slot {
    uint64_t tenant;
    int64_t pid, tid;
    span_ent *spans;
    uint32_t nspans, capspans;
    obs_ent *obs;
    uint32_t nobs, capobs;
    struct slot *next;
} slot;

/* Interned frame names, stacks (name ids, leaf first) and series, for retained observations. */
typedef struct itab {
    char **keys; /* for names: the string; for stacks/series: an opaque byte key */
    uint32_t *lens;
    uint32_t n, cap;
    uint32_t *slots, nslots; /* id + 1 */
} itab;

/* A series as retained observations need it: type id and labels, pointing into the interned
 * key (which holds them NUL-separated). */
typedef struct series_rec {
    const char *type_id;
    sp_kv *kv;
    uint32_t nkv;
} series_rec;

struct corr {
    corr_options opt;
    pthread_mutex_t lock;
    slot *buckets[NBUCKETS];
    itab names, stacks, series;
    series_rec *srec;
    uint32_t capsrec;
    size_t bytes;
    int64_t last_sweep;
    corr_stats st;
};

static uint64_t hash64(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t tenant_hash(const char *t)
{
    t = t && *t ? t : "anonymous";
    return hash64(t, strlen(t), 1469598103934665603ull);
}

static slot *find_slot(corr *c, uint64_t tenant, int64_t pid, int64_t tid, int create)
{
    uint64_t h = hash64(&pid, sizeof pid, tenant);
    h = hash64(&tid, sizeof tid, h) % NBUCKETS;
    for (slot *s = c->buckets[h]; s; s = s->next)
        if (s->tenant == tenant && s->pid == pid && s->tid == tid)
            return s;
    if (!create)
        return NULL;
    slot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->tenant = tenant;
    s->pid = pid;
    s->tid = tid;
    s->next = c->buckets[h];
    c->buckets[h] = s;
    c->bytes += sizeof *s;
    return s;
}

static int grow(void **arr, uint32_t *cap, size_t elem, size_t *bytes)
{
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *bytes += (ncap - *cap) * elem;
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

/* Id of key (added when new); UINT32_MAX when memory runs out. */
static uint32_t itab_get(corr *c, itab *t, const void *key, uint32_t len)
{
    if ((t->n + 1) * 2 > t->nslots) {
        uint32_t ns = t->nslots ? t->nslots * 2 : 1024;
        uint32_t *sl = calloc(ns, sizeof *sl);
        if (!sl)
            return UINT32_MAX;
        for (uint32_t i = 0; i < t->n; i++) {
            uint32_t h =
                (uint32_t)hash64(t->keys[i], t->lens[i], 1469598103934665603ull) & (ns - 1);
            while (sl[h])
                h = (h + 1) & (ns - 1);
            sl[h] = i + 1;
        }
        c->bytes += (ns - t->nslots) * sizeof *sl;
        free(t->slots);
        t->slots = sl;
        t->nslots = ns;
    }
    uint32_t h = (uint32_t)hash64(key, len, 1469598103934665603ull) & (t->nslots - 1);
    while (t->slots[h]) {
        uint32_t i = t->slots[h] - 1;
        if (t->lens[i] == len && memcmp(t->keys[i], key, len) == 0)
            return i;
        h = (h + 1) & (t->nslots - 1);
    }
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
        c->bytes += (ncap - t->cap) * (sizeof *k + sizeof *l);
        t->cap = ncap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return UINT32_MAX;
    memcpy(copy, key, len);
    copy[len] = 0;
    c->bytes += len + 1;
    t->keys[t->n] = copy;
    t->lens[t->n] = len;
    t->slots[h] = ++t->n;
    return t->n - 1;
}

static void free_series(corr *c)
{
    for (uint32_t i = 0; i < c->series.n && i < c->capsrec; i++)
        free(c->srec[i].kv);
    free(c->srec);
    c->srec = NULL;
    c->capsrec = 0;
    itab_free(&c->series);
}

static void clear_retained(corr *c)
{
    for (size_t b = 0; b < NBUCKETS; b++)
        for (slot *s = c->buckets[b]; s; s = s->next) {
            c->st.evicted += s->nobs;
            c->st.observations_retained -= s->nobs;
            free(s->obs);
            s->obs = NULL;
            s->nobs = s->capobs = 0;
        }
    itab_free(&c->names);
    itab_free(&c->stacks);
    free_series(c);
    /* Recount from what is left: spans and slots. */
    c->bytes = 0;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (slot *s = c->buckets[b]; s; s = s->next)
            c->bytes += sizeof *s + s->capspans * sizeof *s->spans;
}

/* Drops expired spans and observations; frees empty slots. */
static void sweep(corr *c, int64_t now)
{
    for (size_t b = 0; b < NBUCKETS; b++) {
        slot **pp = &c->buckets[b];
        while (*pp) {
            slot *s = *pp;
            uint32_t k = 0;
            for (uint32_t i = 0; i < s->nspans; i++)
                if (s->spans[i].expire > now)
                    s->spans[k++] = s->spans[i];
            c->st.spans_indexed -= s->nspans - k;
            s->nspans = k;
            k = 0;
            for (uint32_t i = 0; i < s->nobs; i++)
                if (s->obs[i].expire > now)
                    s->obs[k++] = s->obs[i];
            c->st.observations_retained -= s->nobs - k;
            s->nobs = k;
            if (!s->nspans && !s->nobs) {
                *pp = s->next;
                c->bytes -= sizeof *s + s->capspans * sizeof *s->spans + s->capobs * sizeof *s->obs;
                free(s->spans);
                free(s->obs);
                free(s);
                continue;
            }
            pp = &s->next;
        }
    }
    /* Intern tables only shrink when nothing refers to them any more. */
    int any_obs = 0;
    for (size_t b = 0; b < NBUCKETS && !any_obs; b++)
        for (slot *s = c->buckets[b]; s && !any_obs; s = s->next)
            any_obs = s->nobs > 0;
    if (!any_obs && c->names.n)
        clear_retained(c);
    c->last_sweep = now;
}

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
        c->opt.window_ns = 300 * 1000000000LL;
    if (!c->opt.max_bytes)
        c->opt.max_bytes = (size_t)128 << 20;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void corr_free(corr *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        slot *s = c->buckets[b];
        while (s) {
            slot *n = s->next;
            free(s->spans);
            free(s->obs);
            free(s);
            s = n;
        }
    }
    itab_free(&c->names);
    itab_free(&c->stacks);
    free_series(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void corr_get_stats(corr *c, corr_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->lock);
}

/* ---- profiles: explicit links, inference, retention ---- */

static int same_ref(const sp_span_ref *a, const sp_span_ref *b)
{
    return memcmp(a->span_id, b->span_id, 8) == 0;
}

static int64_t obs_value(const sp_sample *s, uint32_t k)
{
    if (s->values)
        return s->values[k];
    int64_t share = s->value / (int64_t)s->nobs; /* equal shares, remainder to the first */
    return k == 0 ? s->value - share * (int64_t)(s->nobs - 1) : share;
}

/* Spans of slot containing ts, plus the explicit link, deduplicated, into out. */
static uint32_t match(const slot *sl, int64_t ts, const sp_sample *s, sp_span_ref *out)
{
    uint32_t n = 0;
    if (s->has_link)
        out[n++] = s->link;
    if (sl)
        for (uint32_t i = 0; i < sl->nspans && n < MAX_MATCH; i++) {
            const span_ent *e = &sl->spans[i];
            if (ts < e->start || ts >= e->end)
                continue;
            int dup = 0;
            for (uint32_t j = 0; j < n && !dup; j++)
                dup = same_ref(&out[j], &e->ref);
            if (!dup)
                out[n++] = e->ref;
        }
    return n;
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
    uint32_t id = itab_get(c, &c->series, key, (uint32_t)len);
    free(key);
    if (id == UINT32_MAX || id < before)
        return id;
    /* New series: keep its parts for building attach_only profiles later. */
    if (id >= c->capsrec) {
        uint32_t ncap = c->capsrec ? c->capsrec * 2 : 64;
        series_rec *r = realloc(c->srec, ncap * sizeof *r);
        if (!r)
            return UINT32_MAX;
        c->bytes += (ncap - c->capsrec) * sizeof *r;
        memset(r + c->capsrec, 0, (ncap - c->capsrec) * sizeof *r);
        c->srec = r;
        c->capsrec = ncap;
    }
    /* The interned key holds every string, NUL-separated, in a stable allocation. */
    const char *k = c->series.keys[id];
    series_rec *r = &c->srec[id];
    memset(r, 0, sizeof *r);
    r->type_id = k;
    k += strlen(k) + 1;
    r->nkv = p->nseries;
    r->kv = calloc(p->nseries ? p->nseries : 1, sizeof *r->kv);
    if (!r->kv)
        return UINT32_MAX;
    c->bytes += p->nseries * sizeof *r->kv;
    for (uint32_t i = 0; i < p->nseries; i++) {
        r->kv[i].name = k;
        k += strlen(k) + 1;
        r->kv[i].value = k;
        k += strlen(k) + 1;
    }
    return id;
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
        uint32_t id = itab_get(c, &c->names, name, (uint32_t)strlen(name));
        if (id != UINT32_MAX)
            out[n++] = id;
    }
    if (n == 0 && max > 0) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)l->address);
        uint32_t id = itab_get(c, &c->names, buf, (uint32_t)len);
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
            /* cached single-frame location */
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
    return itab_get(c, &c->stacks, frames, n * (uint32_t)sizeof *frames);
}

typedef struct out_samples {
    sp_sample *v;
    uint32_t n, cap;
} out_samples;

static sp_sample *push_sample(sp_arena *a, out_samples *o)
{
    if (o->n == o->cap) {
        uint32_t ncap = o->cap ? o->cap * 2 : 64;
        sp_sample *v = sp_arena_alloc(a, ncap * sizeof *v);
        if (!v)
            return NULL;
        if (o->n)
            memcpy(v, o->v, o->n * sizeof *v);
        o->v = v;
        o->cap = ncap;
    }
    return &o->v[o->n++];
}

static size_t attach_profile(corr *c, sp_profile *p, sp_arena *a, uint64_t tenant, int64_t now)
{
    size_t attached = 0;
    out_samples out = {0};
    int split = 0;
    uint32_t sid = UINT32_MAX;
    uint32_t *cache = NULL;
    for (uint32_t i = 0; i < p->nsamples; i++) {
        sp_sample *s = &p->samples[i];
        slot *sl = s->pid && s->tid ? find_slot(c, tenant, s->pid, s->tid, 0) : NULL;
        if (!s->timestamps || !s->nobs) {
            /* No time: only the sender's link can place it. */
            if (s->has_link && !s->nspans) {
                s->spans = &s->link;
                s->nspans = 1;
                attached++;
                c->st.attached_explicit++;
            }
            sp_sample *d = push_sample(a, &out);
            if (d)
                *d = *s;
            continue;
        }
        /* Per observation: its span set. Most samples are one observation or one set. */
        sp_span_ref first[MAX_MATCH];
        uint32_t nfirst = match(sl, (int64_t)s->timestamps[0], s, first);
        int uniform = 1;
        for (uint32_t k = 1; k < s->nobs && uniform; k++) {
            sp_span_ref m[MAX_MATCH];
            uint32_t n = match(sl, (int64_t)s->timestamps[k], s, m);
            uniform = n == nfirst && memcmp(m, first, n * sizeof *m) == 0;
        }
        if (uniform) {
            sp_sample *d = push_sample(a, &out);
            if (!d)
                return attached;
            *d = *s;
            if (nfirst) {
                d->spans = sp_arena_memdup(a, first, nfirst * sizeof *first);
                d->nspans = d->spans ? nfirst : 0;
                attached += s->nobs;
                if (s->has_link)
                    c->st.attached_explicit += s->nobs;
                if (nfirst > (uint32_t)s->has_link)
                    c->st.attached_inferred += s->nobs;
            }
        } else {
            /* Split: one sample per observation, each with its own spans. */
            split = 1;
            for (uint32_t k = 0; k < s->nobs; k++) {
                sp_span_ref m[MAX_MATCH];
                uint32_t n = match(sl, (int64_t)s->timestamps[k], s, m);
                sp_sample *d = push_sample(a, &out);
                if (!d)
                    return attached;
                *d = *s;
                d->timestamps = &s->timestamps[k];
                d->value = obs_value(s, k);
                d->values = NULL;
                d->nobs = 1;
                d->spans = n ? sp_arena_memdup(a, m, n * sizeof *m) : NULL;
                d->nspans = d->spans ? n : 0;
                if (n) {
                    attached++;
                    c->st.attached_inferred++;
                }
            }
        }
        /* Keep the observations for spans that have not arrived yet. */
        if (s->pid && s->tid && c->bytes < c->opt.max_bytes) {
            if (sid == UINT32_MAX)
                sid = series_id(c, p);
            if (!cache)
                cache = calloc((size_t)p->nlocations * 2 + 2, sizeof *cache);
            uint32_t stk = stack_id(c, p, s, cache);
            slot *w = find_slot(c, tenant, s->pid, s->tid, 1);
            if (sid == UINT32_MAX || stk == UINT32_MAX || !w)
                continue;
            for (uint32_t k = 0; k < s->nobs; k++) {
                if (w->nobs == w->capobs &&
                    grow((void **)&w->obs, &w->capobs, sizeof *w->obs, &c->bytes))
                    break;
                obs_ent *o = &w->obs[w->nobs++];
                *o = (obs_ent){(int64_t)s->timestamps[k],
                               obs_value(s, k),
                               now + c->opt.window_ns,
                               stk,
                               sid,
                               {0}};
                if (s->has_link)
                    memcpy(o->link, s->link.span_id, 8);
                c->st.observations_retained++;
            }
        }
    }
    free(cache);
    if (split || out.n != p->nsamples) {
        p->samples = out.v;
        p->nsamples = out.n;
    } else if (out.v) {
        /* Same shape: copy the attachments back (the profile keeps its own array). */
        for (uint32_t i = 0; i < p->nsamples; i++) {
            p->samples[i].spans = out.v[i].spans;
            p->samples[i].nspans = out.v[i].nspans;
        }
    }
    return attached;
}

/* ---- spans: index them, and claim observations that arrived before them ---- */

typedef struct late {
    uint32_t series;
    uint32_t stack;
    int64_t value;
    uint64_t ts;
    sp_span_ref ref;
} late;

/* Builds one attach_only profile per series from the late matches. */
static void emit_late(corr *c, sp_batch *b, late *v, size_t n)
{
    sp_arena *a = b->arena;
    for (size_t start = 0; start < n;) {
        uint32_t series = v[start].series;
        size_t end = start;
        while (end < n && v[end].series == series)
            end++;
        const series_rec *r = &c->srec[series];
        /* Local tables: string i+1 = name id used, function i = string i, location i = fn i. */
        uint32_t *map = sp_arena_calloc(a, c->names.n + 1, sizeof *map);
        sp_profile *p = sp_arena_calloc(a, 1, sizeof *p);
        sp_sample *smp = sp_arena_calloc(a, end - start, sizeof *smp);
        uint32_t cap = 8;
        for (size_t i = start; i < end; i++)
            cap += c->stacks.lens[v[i].stack] / 4;
        const char **strs = sp_arena_alloc(a, (cap + 8) * sizeof *strs);
        if (!map || !p || !smp || !strs)
            return;
        uint32_t ns = 1;
        strs[0] = "";
        for (size_t i = start; i < end; i++) {
            const uint32_t *frames = (const uint32_t *)c->stacks.keys[v[i].stack];
            uint32_t nf = c->stacks.lens[v[i].stack] / 4;
            sp_sample *s = &smp[i - start];
            s->location_ids = sp_arena_alloc(a, (nf + 1) * sizeof *s->location_ids);
            if (!s->location_ids)
                return;
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
            s->timestamps = &v[i].ts;
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
            return;
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
        p->type_id = r->type_id;
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
        p->series = sp_arena_memdup(a, r->kv, r->nkv * sizeof *r->kv);
        p->nseries = p->series ? r->nkv : 0;
        p->attach_only = 1;
        p->time_nanos = (int64_t)v[start].ts;
        if (sp_batch_add_profile(b, p))
            return;
        start = end;
    }
}

static int cmp_late(const void *x, const void *y)
{
    const late *a = x, *b = y;
    return a->series < b->series ? -1 : a->series > b->series;
}

static size_t index_spans(corr *c, sp_batch *b, uint64_t tenant, int64_t now)
{
    late *lv = NULL;
    size_t nl = 0, capl = 0, attached = 0;
    for (size_t i = 0; i < b->nspans; i++) {
        const sp_span *sp = &b->spans[i];
        int64_t start = (int64_t)sp->start_ns, end = (int64_t)sp->end_ns;
        if (!sp->pid || !sp->tid || end - start < c->opt.min_span_ns)
            continue;
        slot *sl = find_slot(c, tenant, sp->pid, sp->tid, 1);
        if (!sl)
            continue;
        int known = 0;
        for (uint32_t k = 0; k < sl->nspans && !known; k++)
            known = memcmp(sl->spans[k].ref.span_id, sp->span_id, 8) == 0;
        if (known)
            continue; /* a retry: its observations were attached the first time */
        if (sl->nspans == sl->capspans &&
            grow((void **)&sl->spans, &sl->capspans, sizeof *sl->spans, &c->bytes))
            continue;
        span_ent *e = &sl->spans[sl->nspans++];
        c->st.spans_indexed++;
        e->start = start;
        e->end = end;
        e->expire = (end > now ? end : now) + c->opt.window_ns;
        memcpy(e->ref.trace_id, sp->trace_id, 16);
        memcpy(e->ref.span_id, sp->span_id, 8);
        for (uint32_t k = 0; k < sl->nobs; k++) {
            const obs_ent *o = &sl->obs[k];
            if (o->ts < start || o->ts >= end || memcmp(o->link, sp->span_id, 8) == 0)
                continue;
            if (nl == capl) {
                size_t ncap = capl ? capl * 2 : 64;
                late *x = sp_arena_alloc(b->arena, ncap * sizeof *x);
                if (!x)
                    break;
                if (nl)
                    memcpy(x, lv, nl * sizeof *x);
                lv = x;
                capl = ncap;
            }
            lv[nl++] = (late){o->series, o->stack, o->value, (uint64_t)o->ts, e->ref};
        }
    }
    if (nl) {
        qsort(lv, nl, sizeof *lv, cmp_late);
        emit_late(c, b, lv, nl);
        attached = nl;
        c->st.attached_late += nl;
    }
    return attached;
}

size_t corr_attach_spans(corr *c, sp_batch *b, int64_t now_ns)
{
    uint64_t tenant = tenant_hash(b->tenant);
    size_t attached = 0;
    pthread_mutex_lock(&c->lock);
    if (now_ns - c->last_sweep > SWEEP_EVERY_NS)
        sweep(c, now_ns);
    if (c->bytes > c->opt.max_bytes)
        clear_retained(c); /* over budget: the observations go first, spans stay */
    /* Spans first, so a request carrying both finds its own spans. */
    attached += index_spans(c, b, tenant, now_ns);
    size_t nprof = b->nprofiles;
    for (size_t i = 0; i < nprof; i++)
        if (!b->profiles[i]->attach_only)
            attached += attach_profile(c, b->profiles[i], b->arena, tenant, now_ns);
    pthread_mutex_unlock(&c->lock);
    return attached;
}

int corr_span_profilable(corr *c, const char *tenant, const sp_span *sp)
{
    (void)tenant;
    return (int64_t)(sp->end_ns - sp->start_ns) >= c->opt.min_span_ns;
}
