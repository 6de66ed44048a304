/* Span sets by trace or by name, each sample once (see spanset.h for S1 and S2). */
#include "spanset.h"
#include "../common/hex.h"

#include <stdlib.h>
#include <string.h>

#define MAX_HOPS 256 /* the correlator's own bound on a parent walk */

static int nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "too many spans for the query budget; narrow the query");
}

/* Takes matcher i off sel (a copy of the list without it, in the arena). */
static int drop_matcher(store_selector *sel, size_t i, sp_arena *a)
{
    store_matcher *rest = sp_arena_alloc(a, (sel->nmatchers + 1) * sizeof *rest);
    if (!rest)
        return -1;
    size_t n = 0;
    for (size_t k = 0; k < sel->nmatchers; k++)
        if (k != i)
            rest[n++] = sel->matchers[k];
    sel->matchers = rest;
    sel->nmatchers = n;
    return 0;
}

/* The first matcher on `name` with operator op (-1 = any), taken off sel; NULL when absent or
 * out of memory (*oom). */
static const store_matcher *take_matcher(store_selector *sel, const char *name, int op, sp_arena *a,
                                         int *oom)
{
    for (size_t i = 0; i < sel->nmatchers; i++) {
        if (strcmp(sel->matchers[i].name, name) != 0 || (op >= 0 && sel->matchers[i].op != op))
            continue;
        store_matcher *m = sp_arena_memdup(a, &sel->matchers[i], sizeof *m);
        if (!m || drop_matcher(sel, i, a)) {
            *oom = 1;
            return NULL;
        }
        return m;
    }
    return NULL;
}

static int same_process(const sp_span *x, const sp_span *y)
{
    if (x->pid || y->pid)
        return x->pid == y->pid;
    return strcmp(x->service ? x->service : "", y->service ? y->service : "") == 0;
}

/* An id index of a trace's spans: (id, index) pairs sorted by id (qsort_r is not C11). */
typedef struct id_ent {
    uint8_t id[8];
    size_t index;
} id_ent;

static int id_ent_cmp(const void *a, const void *b)
{
    return memcmp(((const id_ent *)a)->id, ((const id_ent *)b)->id, 8);
}

static id_ent *index_ids(const sp_span *v, size_t n, sp_arena *a)
{
    id_ent *e = sp_arena_alloc(a, (n + 1) * sizeof *e);
    if (!e)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        memcpy(e[i].id, v[i].span_id, 8);
        e[i].index = i;
    }
    qsort(e, n, sizeof *e, id_ent_cmp);
    return e;
}

static long find_id(const id_ent *e, size_t n, const uint8_t id[8])
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(e[mid].id, id, 8);
        if (!c)
            return (long)e[mid].index;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Whether ancestor a holds every sample of its descendant m (S1): the same thread (or neither
 * has one) and a's time covers m's -- samples the correlator attached by thread and time to m are
 * then attached to a as well, and samples linked to m were walked up to a. */
static int covers(const sp_span *a, const sp_span *m)
{
    return a->tid == m->tid && a->start_ns <= m->start_ns && a->end_ns >= m->end_ns;
}

/* S1 over one trace's spans t[0..n): keep[i] = member[i] and no member ancestor reachable
 * through spans of member i's process covers it. */
static int reduce_trace(const sp_span *t, size_t n, const uint8_t *member, uint8_t *keep,
                        sp_arena *a)
{
    static const uint8_t zero[8];
    id_ent *ids = index_ids(t, n, a);
    if (!ids)
        return SP_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        keep[i] = member[i];
        if (!member[i])
            continue;
        const sp_span *cur = &t[i];
        for (int hop = 0; hop < MAX_HOPS; hop++) {
            if (memcmp(cur->parent_span_id, zero, 8) == 0)
                break;
            long p = find_id(ids, n, cur->parent_span_id);
            if (p < 0 || !same_process(&t[p], &t[i]))
                break;
            if (member[p] && covers(&t[p], &t[i])) {
                keep[i] = 0;
                break;
            }
            cur = &t[p];
        }
    }
    return 0;
}

/* Appends the kept spans to the growing set. */
static int add_kept(query_spanset *out, size_t *cap, const sp_span *t, size_t n,
                    const uint8_t *keep, sp_arena *a)
{
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        if (out->n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            sp_span *nv = sp_arena_alloc(a, nc * sizeof *nv);
            if (!nv)
                return SP_ETOOBIG;
            if (out->n)
                memcpy(nv, out->spans, out->n * sizeof *nv);
            out->spans = nv;
            *cap = nc;
        }
        out->spans[out->n++] = t[i];
    }
    return 0;
}

static int start_cmp(const void *a, const void *b)
{
    const sp_span *x = a, *y = b;
    if (x->start_ns != y->start_ns)
        return x->start_ns < y->start_ns ? -1 : 1;
    return memcmp(x->span_id, y->span_id, 8);
}

/* Sorts the kept spans, fills ids and the time bounds. */
static int finish(query_spanset *out, sp_arena *a, sp_err *err)
{
    if (out->n > 1)
        qsort(out->spans, out->n, sizeof *out->spans, start_cmp);
    out->ids = sp_arena_alloc(a, (out->n + 1) * sizeof *out->ids);
    if (!out->ids)
        return nomem(err);
    out->start_ns = out->end_ns = 0;
    for (size_t i = 0; i < out->n; i++) {
        memcpy(out->ids[i], out->spans[i].span_id, 8);
        int64_t s = (int64_t)out->spans[i].start_ns, e = (int64_t)out->spans[i].end_ns;
        if (!i || s < out->start_ns)
            out->start_ns = s;
        if (e > out->end_ns)
            out->end_ns = e;
    }
    return 0;
}

static int eligible(const query_ctx *c, const sp_span *s, const char *service)
{
    if (service && strcmp(s->service ? s->service : "", service) != 0)
        return 0;
    return (int64_t)(s->end_ns - s->start_ns) >= c->span_min_duration_ns;
}

int query_spanset_by_traces(const query_ctx *c, const char *tenant, store_selector *sel,
                            char *const *trace_ids, size_t ntrace_ids, sp_arena *a,
                            query_spanset *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    int oom = 0;
    const store_matcher *svc = take_matcher(sel, "service_name", STORE_MATCH_EQ, a, &oom);
    const char *service = svc ? svc->value : NULL;
    if (oom)
        return nomem(err);
    size_t cap = 0;
    for (size_t i = 0; i < ntrace_ids; i++) {
        const char *h = trace_ids[i] ? trace_ids[i] : "";
        uint8_t tid[16];
        if (sp_hex_decode(h, tid, 16) != 0)
            return sp_fail(err, SP_EINVAL,
                           "trace_id_selector[%zu] \"%.64s\" is not a trace id: want 32 hex digits",
                           i, h);
        store_spans t;
        int rc = store_trace_spans(c->store, tenant, tid, a, &t, err);
        if (rc)
            return rc;
        uint8_t *member = sp_arena_calloc(a, t.n + 1, 2);
        if (!member)
            return nomem(err);
        for (size_t k = 0; k < t.n; k++)
            member[k] = (uint8_t)eligible(c, &t.spans[k], service);
        for (size_t k = 0; k < t.n; k++)
            out->matched += member[k];
        if (reduce_trace(t.spans, t.n, member, member + t.n + 1, a) ||
            add_kept(out, &cap, t.spans, t.n, member + t.n + 1, a))
            return nomem(err);
    }
    return finish(out, a, err);
}

static int trace_cmp(const void *a, const void *b)
{
    const sp_span *x = a, *y = b;
    int r = memcmp(x->trace_id, y->trace_id, 16);
    return r ? r : memcmp(x->span_id, y->span_id, 8);
}

/* S1 for the members of one trace found by name, m[0..n) (n >= 2): the trace's other spans are
 * read for the walk. */
static int reduce_group(const query_ctx *c, const char *tenant, const sp_span *m, size_t n,
                        query_spanset *out, size_t *cap, sp_arena *a, sp_err *err)
{
    store_spans t;
    int rc = store_trace_spans(c->store, tenant, m[0].trace_id, a, &t, err);
    if (rc)
        return rc;
    uint8_t *member = sp_arena_calloc(a, t.n + 1, 2);
    if (!member)
        return nomem(err);
    for (size_t k = 0; k < t.n; k++) {
        size_t lo = 0, hi = n; /* m is sorted by span id within the trace */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int r = memcmp(m[mid].span_id, t.spans[k].span_id, 8);
            if (!r) {
                member[k] = 1;
                break;
            }
            if (r < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    if (reduce_trace(t.spans, t.n, member, member + t.n + 1, a) ||
        add_kept(out, cap, t.spans, t.n, member + t.n + 1, a))
        return nomem(err);
    return 0;
}

/* Whether any member of one trace's group could hold another (S1 needs the same process, thread
 * and a covering time, whatever lies between them): when none can, the trace is not read. */
static int may_nest(const sp_span *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j && same_process(&m[i], &m[j]) && covers(&m[i], &m[j]))
                return 1;
    return 0;
}

int query_spanset_by_name(const query_ctx *c, const char *tenant, store_selector *sel,
                          int64_t start_ns, int64_t end_ns, sp_arena *a, query_spanset *out,
                          int *named, sp_err *err)
{
    memset(out, 0, sizeof *out);
    *named = 0;
    int has = 0;
    for (size_t i = 0; i < sel->nmatchers && !has; i++)
        has = strcmp(sel->matchers[i].name, "span_name") == 0;
    if (!has)
        return 0;
    *named = 1;
    int oom = 0;
    const store_matcher *m = take_matcher(sel, "span_name", -1, a, &oom);
    const store_matcher *svc = take_matcher(sel, "service_name", STORE_MATCH_EQ, a, &oom);
    if (oom || !m)
        return nomem(err);
    if (m->op != STORE_MATCH_EQ)
        return sp_fail(err, SP_EINVAL,
                       "span_name can only be matched with = (a span's exact name), not with "
                       "!=, =~ or !~");
    store_span_filter f = {.service = svc ? svc->value : NULL,
                           .name = m->value,
                           .min_duration_ns = c->span_min_duration_ns,
                           .limit = QUERY_SPANSET_MAX};
    store_query q = {.tenant = tenant, .start_ns = start_ns, .end_ns = end_ns};
    store_spans found;
    int rc = store_find_spans(c->store, &q, &f, a, &found, err);
    if (rc)
        return rc;
    if (found.truncated) /* a partial set would be a wrong answer: refuse it instead */
        return sp_fail(err, SP_ETOOBIG,
                       "more than %d spans named \"%.100s\" start in the range; narrow the time "
                       "range or add service_name",
                       QUERY_SPANSET_MAX, m->value);
    out->matched = found.n;
    /* Spans of one trace together; a trace with one member needs no walk (S2). */
    if (found.n > 1)
        qsort(found.spans, found.n, sizeof *found.spans, trace_cmp);
    size_t cap = 0;
    uint8_t one = 1;
    for (size_t i = 0; i < found.n && !rc;) {
        size_t k = i + 1;
        while (k < found.n && memcmp(found.spans[k].trace_id, found.spans[i].trace_id, 16) == 0)
            k++;
        if (k - i == 1 || !may_nest(&found.spans[i], k - i)) {
            for (size_t x = i; x < k && !rc; x++)
                if (add_kept(out, &cap, &found.spans[x], 1, &one, a))
                    rc = nomem(err);
        } else {
            rc = reduce_group(c, tenant, &found.spans[i], k - i, out, &cap, a, err);
        }
        i = k;
    }
    return rc ? rc : finish(out, a, err);
}

store_query query_spanset_query(const query_spanset *set, const char *tenant, const char *type_id,
                                const store_selector *sel)
{
    return (store_query){.tenant = tenant,
                         .type_id = type_id,
                         .matchers = sel ? sel->matchers : NULL,
                         .nmatchers = sel ? sel->nmatchers : 0,
                         .start_ns = set->start_ns > 0 ? set->start_ns : 0,
                         .end_ns = set->end_ns > 0 ? set->end_ns + 1 : 0};
}
