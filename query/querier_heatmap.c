/* querier.v1.QuerierService/SelectHeatmap, with Pyroscope's layout (pkg/model/heatmap,
 * RangeHeatmap): points placed on a grid of time slots (the slot of a point is the one whose
 * right edge is the first grid line at or after it, the grid anchored at start; slots cover
 * (t - step, t]) and 20 value buckets spread evenly between the smallest and the largest value of
 * the answer; per slot the count of points in each bucket and, with exemplars asked for, the
 * point of largest value of each non-empty bucket.
 *
 * The points:
 *   HEATMAP_QUERY_TYPE_INDIVIDUAL -- one per series and 10 s bucket of the store (Pyroscope's
 *     points are single ingested profiles; the SDKs upload one per 15 s): its total. Exemplars
 *     name it with a profile id "<series hash>-<bucket ms>" and the labels not grouped by.
 *   HEATMAP_QUERY_TYPE_SPAN -- one per span of at least the minimum duration starting in the
 *     range, of the service (and span name) the selector names, at its start: the value of its
 *     samples (what SelectMergeSpanProfile answers for it alone), spans without samples left out.
 *     Nested spans are points of their own. Exemplars carry the span and trace ids; group_by may
 *     name service_name and span_name. */
#include "querier_internal.h"
#include "spanset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000LL
#define YBUCKETS  20

typedef struct hpoint {
    uint32_t series;
    int64_t ts, value; /* ts: ms, then the slot's right edge */
    int y;
    Types__V1__Exemplar *ex; /* built when exemplars are asked for */
} hpoint;

typedef struct hset {
    store_labels *groups; /* one per output series */
    size_t ngroups;
    hpoint *p;
    size_t n, cap;
} hset;

static int add_point(hset *h, sp_arena *a, const store_labels *group, int64_t ts, int64_t value,
                     Types__V1__Exemplar *ex)
{
    size_t g = 0; /* groups are few: a linear search keeps it simple */
    for (; g < h->ngroups; g++) {
        size_t k = 0;
        if (h->groups[g].n != group->n)
            continue;
        for (; k < group->n; k++)
            if (strcmp(h->groups[g].labels[k].name, group->labels[k].name) ||
                strcmp(h->groups[g].labels[k].value, group->labels[k].value))
                break;
        if (k == group->n)
            break;
    }
    if (g == h->ngroups) {
        store_labels *ng = sp_arena_alloc(a, (h->ngroups + 1) * sizeof *ng);
        if (!ng)
            return SP_ETOOBIG;
        if (h->ngroups)
            memcpy(ng, h->groups, h->ngroups * sizeof *ng);
        ng[h->ngroups++] = *group;
        h->groups = ng;
    }
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        hpoint *np = sp_arena_alloc(a, nc * sizeof *np);
        if (!np)
            return SP_ETOOBIG;
        if (h->n)
            memcpy(np, h->p, h->n * sizeof *np);
        h->p = np;
        h->cap = nc;
    }
    h->p[h->n++] = (hpoint){(uint32_t)g, ts, value, 0, ex};
    return 0;
}

static int in_group_by(const char *name, char **group_by, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(group_by[i], name) == 0)
            return 1;
    return 0;
}

/* Splits labels into the group's (group_by names) and the rest (an exemplar's own). */
static int split_labels(const store_labels *l, char **group_by, size_t ngb, sp_arena *a,
                        store_labels *group, store_labels *rest)
{
    group->labels = sp_arena_alloc(a, (l->n + 1) * sizeof *group->labels);
    rest->labels = sp_arena_alloc(a, (l->n + 1) * sizeof *rest->labels);
    if (!group->labels || !rest->labels)
        return SP_ETOOBIG;
    group->n = rest->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (in_group_by(l->labels[i].name, group_by, ngb))
            group->labels[group->n++] = l->labels[i];
        else
            rest->labels[rest->n++] = l->labels[i];
    }
    return 0;
}

static Types__V1__Exemplar *exemplar(sp_arena *a, int64_t ts_ms, int64_t value,
                                     const store_labels *labels)
{
    Types__V1__Exemplar *e = NEW(a, Types__V1__Exemplar, TYPES__V1__EXEMPLAR__INIT);
    if (!e)
        return NULL;
    e->timestamp = ts_ms;
    e->value = value;
    if (labels && labels->n) {
        if (!(e->labels = qr_label_pairs(a, labels)))
            return NULL;
        e->n_labels = labels->n;
    }
    return e;
}

static uint64_t labels_hash(const store_labels *l)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < l->n; i++) {
        for (const char *s = l->labels[i].name; *s; s++)
            h = (h ^ (uint8_t)*s) * 1099511628211ULL;
        h = (h ^ '=') * 1099511628211ULL;
        for (const char *s = l->labels[i].value; *s; s++)
            h = (h ^ (uint8_t)*s) * 1099511628211ULL;
        h = (h ^ ',') * 1099511628211ULL;
    }
    return h;
}

/* Every (series, bucket) total, as the average aggregation reads them (querier.c). */
static int individual_points(const query_ctx *c, const store_query *q, char **group_by, size_t ngb,
                             int with_ex, sp_arena *a, hset *h, sp_err *err)
{
    store_strings names;
    int rc = store_label_names(c->store, q, a, &names, err);
    if (rc)
        return rc;
    const char **keep = sp_arena_alloc(a, (names.n + 1) * sizeof *keep);
    if (!keep)
        return qr_nomem(err);
    size_t nkeep = 0;
    for (size_t i = 0; i < names.n; i++)
        if (strncmp(names.v[i], "__", 2) != 0)
            keep[nkeep++] = names.v[i];
    store_timeseries_set set;
    if ((rc = store_select_series(c->store, q, 1000000, keep, nkeep, a, &set, err)))
        return rc;
    for (size_t i = 0; i < set.n; i++) {
        store_labels group, rest;
        if (split_labels(&set.series[i].labels, group_by, ngb, a, &group, &rest))
            return qr_nomem(err);
        uint64_t hash = labels_hash(&set.series[i].labels);
        for (size_t k = 0; k < set.series[i].npoints; k++) {
            const store_point *p = &set.series[i].points[k];
            Types__V1__Exemplar *e = NULL;
            if (with_ex) {
                char id[48];
                snprintf(id, sizeof id, "%016llx-%lld", (unsigned long long)hash,
                         (long long)(p->t_ns / NS_PER_MS));
                if (!(e = exemplar(a, p->t_ns / NS_PER_MS, p->value, &rest)) ||
                    !(e->profile_id = sp_arena_strndup(a, id, strlen(id))))
                    return qr_nomem(err);
            }
            if (add_point(h, a, &group, p->t_ns / NS_PER_MS, p->value, e))
                return qr_nomem(err);
        }
    }
    return 0;
}

static char *hex_of(sp_arena *a, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = sp_arena_alloc(a, 2 * n + 1);
    for (size_t i = 0; s && i < n; i++) {
        s[2 * i] = digits[b[i] >> 4];
        s[2 * i + 1] = digits[b[i] & 15];
    }
    if (s)
        s[2 * n] = 0;
    return s;
}

/* One point per span with samples: its value at its start. */
static int span_points(const query_ctx *c, const srv_request *req, const char *type_id,
                       store_selector *sel, int64_t start_ns, int64_t end_ns, char **group_by,
                       size_t ngb, int with_ex, sp_arena *a, hset *h, sp_err *err)
{
    store_span_filter f = {.min_duration_ns = c->span_min_duration_ns, .limit = QUERY_SPANSET_MAX};
    store_selector rest = {NULL, sp_arena_alloc(a, (sel->nmatchers + 1) * sizeof(store_matcher)),
                           0};
    if (!rest.matchers)
        return qr_nomem(err);
    for (size_t i = 0; i < sel->nmatchers; i++) { /* the span's own labels select spans */
        const store_matcher *m = &sel->matchers[i];
        if (m->op == STORE_MATCH_EQ && strcmp(m->name, "service_name") == 0 && !f.service)
            f.service = m->value;
        else if (strcmp(m->name, "span_name") == 0 && m->op == STORE_MATCH_EQ && !f.name)
            f.name = m->value;
        else if (strcmp(m->name, "span_name") == 0)
            return sp_fail(err, SP_EINVAL, "label_selector: span_name can only be matched with =");
        else
            rest.matchers[rest.nmatchers++] = *m;
    }
    store_query fq = {.tenant = req->tenant, .start_ns = start_ns, .end_ns = end_ns};
    store_spans sp;
    int rc = store_find_spans(c->store, &fq, &f, a, &sp, err);
    if (!rc && sp.truncated) /* never a partial heatmap */
        return sp_fail(err, SP_ETOOBIG,
                       "more than %d spans start in the range; narrow the time range or the "
                       "selector",
                       QUERY_SPANSET_MAX);
    if (rc || !sp.n)
        return rc;
    uint8_t(*ids)[8] = sp_arena_alloc(a, sp.n * sizeof *ids);
    store_span_total *tot = sp_arena_calloc(a, sp.n, sizeof *tot);
    if (!ids || !tot)
        return qr_nomem(err);
    int64_t last_end = 0;
    for (size_t i = 0; i < sp.n; i++) {
        memcpy(ids[i], sp.spans[i].span_id, 8);
        if ((int64_t)sp.spans[i].end_ns > last_end)
            last_end = (int64_t)sp.spans[i].end_ns;
    }
    store_query tq = {.tenant = req->tenant,
                      .type_id = type_id,
                      .matchers = rest.matchers,
                      .nmatchers = rest.nmatchers,
                      .start_ns = (int64_t)sp.spans[0].start_ns,
                      .end_ns = last_end + 1};
    if ((rc = store_span_totals(c->store, &tq, (const uint8_t(*)[8])ids, sp.n, tot, err)))
        return rc;
    for (size_t i = 0; i < sp.n; i++) {
        if (tot[i].value <= 0)
            continue;
        sp_kv kv[2] = {{"service_name", sp.spans[i].service}, {"span_name", sp.spans[i].name}};
        store_labels all = {kv, 2}, group, own;
        if (split_labels(&all, group_by, ngb, a, &group, &own))
            return qr_nomem(err);
        int64_t ts = (int64_t)sp.spans[i].start_ns / NS_PER_MS;
        Types__V1__Exemplar *e = NULL;
        if (with_ex && (!(e = exemplar(a, ts, tot[i].value, &own)) ||
                        !(e->span_id = hex_of(a, sp.spans[i].span_id, 8)) ||
                        !(e->trace_id = hex_of(a, sp.spans[i].trace_id, 16))))
            return qr_nomem(err);
        if (add_point(h, a, &group, ts, tot[i].value, e))
            return qr_nomem(err);
    }
    return 0;
}

/* ---- Pyroscope's grid ---- */

static int64_t round_up(int64_t t, int64_t start, int64_t step)
{
    int64_t mod = start % step;
    t -= mod;
    if (t % step != 0)
        t = (t / step + 1) * step;
    return t + mod;
}

static int64_t slot_of(int64_t t, int64_t start, int64_t end, int64_t step)
{
    t = round_up(t, start, step);
    end = round_up(end, start, step);
    return t < start ? start : t > end ? end : t;
}

static int y_of(int64_t v, const int64_t *ymin, const int64_t *ymax)
{
    for (int i = 0; i < YBUCKETS; i++)
        if (v >= ymin[i] && v < ymax[i])
            return i;
    return v >= ymin[YBUCKETS - 1] ? YBUCKETS - 1 : -1;
}

static int point_cmp(const void *pa, const void *pb)
{
    const hpoint *x = pa, *y = pb;
    if (x->series != y->series)
        return x->series < y->series ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->y != y->y)
        return x->y < y->y ? -1 : 1;
    return x->value > y->value ? -1 : x->value < y->value; /* the best first */
}

/* One output series from its sorted points [p, p + n). */
static Types__V1__HeatmapSeries *series_of(const store_labels *group, const hpoint *p, size_t n,
                                           const double *ymin, int with_ex, sp_arena *a)
{
    Types__V1__HeatmapSeries *s = NEW(a, Types__V1__HeatmapSeries, TYPES__V1__HEATMAP_SERIES__INIT);
    if (!s || !(s->labels = qr_label_pairs(a, group)) ||
        !(s->slots = sp_arena_alloc(a, (n + 1) * sizeof *s->slots)))
        return NULL;
    s->n_labels = group->n;
    for (size_t i = 0; i < n;) {
        Types__V1__HeatmapSlot *slot =
            NEW(a, Types__V1__HeatmapSlot, TYPES__V1__HEATMAP_SLOT__INIT);
        if (!slot || !(slot->y_min = sp_arena_memdup(a, ymin, YBUCKETS * sizeof *ymin)) ||
            !(slot->counts = sp_arena_calloc(a, YBUCKETS, sizeof *slot->counts)) ||
            (with_ex && !(slot->exemplars = sp_arena_alloc(a, YBUCKETS * sizeof(void *)))))
            return NULL;
        slot->timestamp = p[i].ts;
        slot->n_y_min = slot->n_counts = YBUCKETS;
        size_t k = i;
        for (; k < n && p[k].ts == p[i].ts; k++) {
            if (slot->counts[p[k].y]++ == 0 && with_ex && p[k].ex)
                slot->exemplars[slot->n_exemplars++] = p[k].ex;
        }
        s->slots[s->n_slots++] = slot;
        i = k;
    }
    return s;
}

static int build_answer(hset *h, int64_t start, int64_t end, int64_t step, int with_ex,
                        int64_t limit, sp_arena *a, Querier__V1__SelectHeatmapResponse *resp,
                        sp_err *err)
{
    if (!h->n)
        return 0;
    int64_t lo = INT64_MAX, hi = 0;
    for (size_t i = 0; i < h->n; i++) {
        lo = h->p[i].value < lo ? h->p[i].value : lo;
        hi = h->p[i].value > hi ? h->p[i].value : hi;
    }
    if (lo == hi)
        hi = lo + 1;
    int64_t ymin[YBUCKETS], ymax[YBUCKETS];
    double ymin_d[YBUCKETS], size = (double)(hi - lo) / YBUCKETS;
    for (int i = 0; i < YBUCKETS; i++) {
        ymin[i] = lo + (int64_t)((double)i * size);
        ymax[i] = lo + (int64_t)((double)(i + 1) * size);
        ymin_d[i] = (double)ymin[i];
    }
    ymax[YBUCKETS - 1] = hi;
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        hpoint p = h->p[i];
        p.ts = slot_of(p.ts, start, end, step);
        if ((p.y = y_of(p.value, ymin, ymax)) >= 0)
            h->p[n++] = p;
    }
    qsort(h->p, n, sizeof *h->p, point_cmp);
    /* limit: the series with the largest totals, Pyroscope's TopSeries */
    int64_t *total = sp_arena_calloc(a, h->ngroups + 1, sizeof *total);
    if (!total || !(resp->series = sp_arena_alloc(a, (h->ngroups + 1) * sizeof *resp->series)))
        return qr_nomem(err);
    for (size_t i = 0; i < n; i++)
        total[h->p[i].series] = sp_sat_add(total[h->p[i].series], h->p[i].value);
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && h->p[k].series == h->p[i].series)
            k++;
        size_t better = 0;
        for (size_t g = 0; g < h->ngroups; g++)
            better += total[g] > total[h->p[i].series] ||
                      (total[g] == total[h->p[i].series] && g < h->p[i].series);
        if (limit <= 0 || better < (uint64_t)limit) {
            Types__V1__HeatmapSeries *s =
                series_of(&h->groups[h->p[i].series], h->p + i, k - i, ymin_d, with_ex, a);
            if (!s)
                return qr_nomem(err);
            resp->series[resp->n_series++] = s;
        }
        i = k;
    }
    return 0;
}

int qr_select_heatmap(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                      sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__SelectHeatmapRequest *r = (const void *)in;
    int span = r->query_type == QUERIER__V1__HEATMAP_QUERY_TYPE__HEATMAP_QUERY_TYPE_SPAN;
    int ex = r->exemplar_type;
    if (!(r->step >= 0.001) || !isfinite(r->step) || r->step > 1e9)
        return sp_fail(err, SP_EINVAL, "step must be >= 1ms (in seconds, >= 0.001), got %g",
                       r->step);
    if (r->limit < 0)
        return sp_fail(err, SP_EINVAL, "limit must be non-negative, got %lld", (long long)r->limit);
    if (r->start >= r->end)
        return sp_fail(err, SP_EINVAL,
                       "start time must be before end time, got start=%lld end=%lld",
                       (long long)r->start, (long long)r->end);
    if (!span && r->query_type != QUERIER__V1__HEATMAP_QUERY_TYPE__HEATMAP_QUERY_TYPE_INDIVIDUAL)
        return sp_fail(err, SP_EINVAL,
                       "query_type must be HEATMAP_QUERY_TYPE_INDIVIDUAL or "
                       "HEATMAP_QUERY_TYPE_SPAN");
    if (ex == TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_INDIVIDUAL && span)
        return sp_fail(err, SP_EINVAL,
                       "individual exemplars only available for individual query type");
    if (ex == TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_SPAN && !span)
        return sp_fail(err, SP_EINVAL, "span exemplars only available for span query type");
    if (ex < 0 || ex > TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_SPAN)
        return sp_fail(err, SP_EINVAL, "unknown exemplar type %d", ex);
    int with_ex = ex == TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_INDIVIDUAL ||
                  ex == TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_SPAN;
    query_type type;
    store_selector sel;
    int rc = query_type_parse(r->profile_typeid, "profile_typeID", 1, a, &type, err);
    if (!rc)
        rc = query_selector_parse(r->label_selector, "label_selector", a, &sel, err);
    if (rc)
        return rc;
    int64_t step = (int64_t)(r->step * 1000.0);
    /* Pyroscope reads from one step before start, so the first slot (ending at start) fills. */
    int64_t from_ns = query_start_ns(r->start - step > 0 ? r->start - step : 1);
    hset h = {0};
    if (span) {
        rc = span_points(c, req, type.id, &sel, from_ns, query_end_ns(r->end), r->group_by,
                         r->n_group_by, with_ex, a, &h, err);
    } else {
        store_query q = {.tenant = req->tenant,
                         .type_id = type.id,
                         .matchers = sel.matchers,
                         .nmatchers = sel.nmatchers,
                         .start_ns = from_ns,
                         .end_ns = query_end_ns(r->end)};
        rc = individual_points(c, &q, r->group_by, r->n_group_by, with_ex, a, &h, err);
    }
    if (rc) {
        if (rc == SP_EINVAL && !strstr(err->msg, "label_selector"))
            sp_err_prefix(err, "label_selector: ");
        return rc;
    }
    Querier__V1__SelectHeatmapResponse *resp =
        NEW(a, Querier__V1__SelectHeatmapResponse, QUERIER__V1__SELECT_HEATMAP_RESPONSE__INIT);
    if (!resp)
        return qr_nomem(err);
    if ((rc = build_answer(&h, r->start, r->end, step, with_ex, r->limit, a, resp, err)))
        return rc;
    *out = &resp->base;
    return 0;
}

/* ---- SelectSeries exemplars ---- */

static int same_labels(const store_labels *g, Types__V1__LabelPair *const *l, size_t n)
{
    if (g->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(g->labels[i].name, l[i]->name) || strcmp(g->labels[i].value, l[i]->value))
            return 0;
    return 1;
}

int qr_series_exemplars(const query_ctx *c, const srv_request *req, const char *type_id,
                        const store_selector *sel, int64_t start_ns, int64_t end_ns,
                        int64_t step_ns, char **group_by, size_t ngb, int exemplar_type,
                        sp_arena *a, Types__V1__Series **series, size_t nseries, sp_err *err)
{
    int span = exemplar_type == TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_SPAN;
    if (!span && exemplar_type != TYPES__V1__EXEMPLAR_TYPE__EXEMPLAR_TYPE_INDIVIDUAL)
        return 0;
    hset h = {0};
    store_selector s = *sel;
    int rc;
    if (span) {
        rc = span_points(c, req, type_id, &s, start_ns, end_ns, group_by, ngb, 1, a, &h, err);
    } else {
        store_query q = {.tenant = req->tenant,
                         .type_id = type_id,
                         .matchers = sel->matchers,
                         .nmatchers = sel->nmatchers,
                         .start_ns = start_ns,
                         .end_ns = end_ns};
        rc = individual_points(c, &q, group_by, ngb, 1, a, &h, err);
    }
    if (rc)
        return rc;
    for (size_t i = 0; i < h.n; i++) {
        const hpoint *p = &h.p[i];
        int64_t t = p->ts * NS_PER_MS; /* the step the store put it in */
        if (start_ns > 0)
            t = t < start_ns ? -1 : start_ns + (t - start_ns) / step_ns * step_ns;
        else
            t = t / step_ns * step_ns;
        for (size_t k = 0; t >= 0 && k < nseries; k++) {
            if (!same_labels(&h.groups[p->series], series[k]->labels, series[k]->n_labels))
                continue;
            for (size_t j = 0; j < series[k]->n_points; j++) {
                Types__V1__Point *pt = series[k]->points[j];
                if (pt->timestamp != t / NS_PER_MS)
                    continue;
                if (!pt->n_exemplars && !(pt->exemplars = sp_arena_alloc(a, sizeof *pt->exemplars)))
                    return qr_nomem(err);
                /* one exemplar per point, the largest (Pyroscope's default) */
                if (!pt->n_exemplars || pt->exemplars[0]->value < p->value) {
                    pt->exemplars[0] = p->ex;
                    pt->n_exemplars = 1;
                }
                break;
            }
            break;
        }
    }
    return 0;
}
