/* querier.v1.QuerierService handlers (see querier.h). Field numbers and semantics follow
 * Pyroscope's api/querier/v1/querier.proto and api/types/v1/types.proto. */
#include "querier_internal.h"
#include "connect.h"
#include "spanset.h"
#include "flamegraph.h"
#include "pprof_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qr_nomem(sp_err *err)
{
    return sp_fail(err, SP_ETOOBIG, "answer too large for the query budget; narrow the query");
}

#define nomem qr_nomem

/* ---- shared pieces --------------------------------------------------------------------------- */

/* A list of selectors (LabelNames/LabelValues/Series `matchers`): a series matches when it
 * matches any of them; none = every series. */
typedef struct selectors {
    store_selector *v;
    size_t n;
} selectors;

static int parse_selectors(char **text, size_t n, sp_arena *a, selectors *out, sp_err *err)
{
    out->n = n ? n : 1;
    out->v = sp_arena_calloc(a, out->n, sizeof *out->v);
    if (!out->v)
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "matchers[%zu]", i);
        int rc = query_selector_parse(text[i], what, a, &out->v[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* The store compiles regexes: say which selector a bad one came from. */
static void matcher_error(int rc, size_t nmatchers, size_t i, sp_err *err)
{
    if (rc == SP_EINVAL && nmatchers)
        sp_err_prefix(err, "matchers[%zu]: ", i);
}

static store_query selector_query(const srv_request *req, const store_selector *s, int64_t start,
                                  int64_t end)
{
    return (store_query){.tenant = req->tenant,
                         .type_id = s->type_id,
                         .matchers = s->matchers,
                         .nmatchers = s->nmatchers,
                         .start_ns = query_start_ns(start),
                         .end_ns = query_end_ns(end)};
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends set to the growing union (acc, nacc); finish with union_done(). */
static int union_add(sp_arena *a, char ***acc, size_t *nacc, const store_strings *set)
{
    if (!set->n)
        return 0;
    char **v = sp_arena_alloc(a, (*nacc + set->n) * sizeof *v);
    if (!v)
        return SP_ETOOBIG;
    if (*nacc)
        memcpy(v, *acc, *nacc * sizeof *v);
    memcpy(v + *nacc, set->v, set->n * sizeof *v);
    *acc = v;
    *nacc += set->n;
    return 0;
}

static void union_done(char **v, size_t *n)
{
    if (*n < 2)
        return;
    qsort(v, *n, sizeof *v, str_cmp);
    size_t k = 1;
    for (size_t i = 1; i < *n; i++)
        if (strcmp(v[i], v[k - 1]) != 0)
            v[k++] = v[i];
    *n = k;
}

/* The selectors Pyroscope's query methods take but spanprof cannot honour yet. */
static int unsupported(const Types__V1__StackTraceSelector *sts, size_t nprofile_ids, sp_err *err)
{
    if (sts)
        return sp_fail(err, SP_EUNIMPL, "stack_trace_selector is not supported by spanprof");
    if (nprofile_ids)
        return sp_fail(err, SP_EUNIMPL,
                       "profile_id_selector is not supported by spanprof (it keeps no profile "
                       "ids); select by span_selector or trace_id_selector");
    return 0;
}

Types__V1__LabelPair **qr_label_pairs(sp_arena *a, const store_labels *l)
{
    Types__V1__LabelPair **v = sp_arena_alloc(a, (l->n + 1) * sizeof *v);
    for (size_t i = 0; v && i < l->n; i++) {
        v[i] = NEW(a, Types__V1__LabelPair, TYPES__V1__LABEL_PAIR__INIT);
        if (!v[i])
            return NULL;
        v[i]->name = (char *)l->labels[i].name;
        v[i]->value = (char *)l->labels[i].value;
    }
    return v;
}

/* ---- ProfileTypes, LabelNames, LabelValues, Series ------------------------------------------- */

static int m_profile_types(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                           sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__ProfileTypesRequest *r = (const void *)in;
    store_query q = {.tenant = req->tenant,
                     .start_ns = query_start_ns(r->start),
                     .end_ns = query_end_ns(r->end)};
    store_strings ids;
    int rc = store_profile_types(c->store, &q, a, &ids, err);
    if (rc)
        return rc;
    Querier__V1__ProfileTypesResponse *resp =
        NEW(a, Querier__V1__ProfileTypesResponse, QUERIER__V1__PROFILE_TYPES_RESPONSE__INIT);
    if (!resp || !(resp->profile_types = sp_arena_alloc(a, (ids.n + 1) * sizeof(void *))))
        return nomem(err);
    for (size_t i = 0; i < ids.n; i++) {
        query_type t;
        if ((rc = query_type_parse(ids.v[i], "profile type", 0, a, &t, err)))
            return rc;
        Types__V1__ProfileType *pt = NEW(a, Types__V1__ProfileType, TYPES__V1__PROFILE_TYPE__INIT);
        if (!pt)
            return nomem(err);
        pt->id = (char *)ids.v[i];
        pt->name = (char *)t.name;
        pt->sample_type = (char *)t.sample_type;
        pt->sample_unit = (char *)t.sample_unit;
        pt->period_type = (char *)t.period_type;
        pt->period_unit = (char *)t.period_unit;
        resp->profile_types[resp->n_profile_types++] = pt;
    }
    *out = &resp->base;
    return 0;
}

static int m_label_names(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                         sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Types__V1__LabelNamesRequest *r = (const void *)in;
    selectors sels;
    int rc = parse_selectors(r->matchers, r->n_matchers, a, &sels, err);
    Types__V1__LabelNamesResponse *resp =
        NEW(a, Types__V1__LabelNamesResponse, TYPES__V1__LABEL_NAMES_RESPONSE__INIT);
    if (!rc && !resp)
        rc = nomem(err);
    for (size_t i = 0; i < sels.n && !rc; i++) {
        store_query q = selector_query(req, &sels.v[i], r->start, r->end);
        store_strings s;
        if (!(rc = store_label_names(c->store, &q, a, &s, err)) &&
            union_add(a, &resp->names, &resp->n_names, &s))
            rc = nomem(err);
        matcher_error(rc, r->n_matchers, i, err);
    }
    if (rc)
        return rc;
    union_done(resp->names, &resp->n_names);
    *out = &resp->base;
    return 0;
}

static int m_label_values(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                          sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Types__V1__LabelValuesRequest *r = (const void *)in;
    if (!r->name || !*r->name)
        return sp_fail(err, SP_EINVAL, "name is required: the label whose values to list");
    selectors sels;
    int rc = parse_selectors(r->matchers, r->n_matchers, a, &sels, err);
    Types__V1__LabelValuesResponse *resp =
        NEW(a, Types__V1__LabelValuesResponse, TYPES__V1__LABEL_VALUES_RESPONSE__INIT);
    if (!rc && !resp)
        rc = nomem(err);
    for (size_t i = 0; i < sels.n && !rc; i++) {
        store_query q = selector_query(req, &sels.v[i], r->start, r->end);
        store_strings s;
        if (!(rc = store_label_values(c->store, &q, r->name, a, &s, err)) &&
            union_add(a, &resp->names, &resp->n_names, &s))
            rc = nomem(err);
        matcher_error(rc, r->n_matchers, i, err);
    }
    if (rc)
        return rc;
    union_done(resp->names, &resp->n_names);
    *out = &resp->base;
    return 0;
}

static int labels_cmp(const void *pa, const void *pb)
{
    const store_labels *x = pa, *y = pb;
    for (size_t i = 0; i < x->n && i < y->n; i++) {
        int c = strcmp(x->labels[i].name, y->labels[i].name);
        if (!c)
            c = strcmp(x->labels[i].value, y->labels[i].value);
        if (c)
            return c;
    }
    return x->n < y->n ? -1 : x->n > y->n;
}

static int m_series(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                    sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__SeriesRequest *r = (const void *)in;
    selectors sels;
    int rc = parse_selectors(r->matchers, r->n_matchers, a, &sels, err);
    store_labels *all = NULL;
    size_t n = 0;
    for (size_t i = 0; i < sels.n && !rc; i++) {
        store_query q = selector_query(req, &sels.v[i], r->start, r->end);
        store_labelsets s;
        rc = store_series(c->store, &q, (const char *const *)r->label_names, r->n_label_names, a,
                          &s, err);
        matcher_error(rc, r->n_matchers, i, err);
        if (rc || !s.n)
            continue;
        store_labels *v = sp_arena_alloc(a, (n + s.n) * sizeof *v);
        if (!v)
            return nomem(err);
        if (n)
            memcpy(v, all, n * sizeof *v);
        memcpy(v + n, s.sets, s.n * sizeof *v);
        all = v;
        n += s.n;
    }
    if (rc)
        return rc;
    if (n > 1) {
        qsort(all, n, sizeof *all, labels_cmp);
        size_t k = 1;
        for (size_t i = 1; i < n; i++)
            if (labels_cmp(&all[i], &all[k - 1]) != 0)
                all[k++] = all[i];
        n = k;
    }
    Querier__V1__SeriesResponse *resp =
        NEW(a, Querier__V1__SeriesResponse, QUERIER__V1__SERIES_RESPONSE__INIT);
    if (!resp || !(resp->labels_set = sp_arena_alloc(a, (n + 1) * sizeof(void *))))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        Types__V1__Labels *l = NEW(a, Types__V1__Labels, TYPES__V1__LABELS__INIT);
        if (!l || !(l->labels = qr_label_pairs(a, &all[i])))
            return nomem(err);
        l->n_labels = all[i].n;
        resp->labels_set[resp->n_labels_set++] = l;
    }
    *out = &resp->base;
    return 0;
}

/* ---- flame graphs ---------------------------------------------------------------------------- */

int qr_merge_stacks(const query_ctx *c, const srv_request *req, const qr_merge_req *m, sp_arena *a,
                    query_type *type, int64_t *max_nodes, store_stacks *out, sp_err *err)
{
    store_selector sel;
    query_stacks_req sr = {.tenant = req->tenant,
                           .type = type,
                           .sel = &sel,
                           .start_ns = query_start_ns(m->start),
                           .end_ns = query_end_ns(m->end),
                           .by_span = m->by_span,
                           .detail = m->detail,
                           .trace_ids = m->trace_ids,
                           .ntrace_ids = m->ntrace_ids};
    int rc = query_type_parse(m->type_id, "profile_typeID", 1, a, type, err);
    if (!rc)
        rc = query_selector_parse(m->label_selector, "label_selector", a, &sel, err);
    if (!rc)
        rc = query_max_nodes(c, m->max_nodes, max_nodes, err);
    if (!rc && m->by_span) {
        uint8_t(*ids)[8];
        rc = query_span_ids_parse(m->span_ids, m->nspan_ids, "span_selector", a, &ids, err);
        sr.span_ids = (const uint8_t(*)[8])ids;
        sr.nspan_ids = m->nspan_ids;
    }
    if (!rc && (rc = query_stacks_select(c, &sr, a, out, err)) == SP_EINVAL &&
        !strstr(err->msg, "selector"))
        sp_err_prefix(err, "label_selector: "); /* regexes are compiled by the store */
    return rc;
}

static Querier__V1__FlameGraph *flamegraph_message(const query_flamegraph *fg, sp_arena *a)
{
    Querier__V1__FlameGraph *m = NEW(a, Querier__V1__FlameGraph, QUERIER__V1__FLAME_GRAPH__INIT);
    if (!m || !(m->levels = sp_arena_alloc(a, (fg->nlevels + 1) * sizeof *m->levels)))
        return NULL;
    m->names = (char **)fg->names;
    m->n_names = fg->nnames;
    for (uint32_t d = 0; d < fg->nlevels; d++) {
        Querier__V1__Level *l = NEW(a, Querier__V1__Level, QUERIER__V1__LEVEL__INIT);
        if (!l)
            return NULL;
        l->values = fg->levels[d];
        l->n_values = fg->nvalues[d];
        m->levels[m->n_levels++] = l;
    }
    m->total = fg->total;
    m->max_self = fg->max_self;
    return m;
}

/* The flame graph or the tree bytes of stacks, by format. */
static int render_stacks(const store_stacks *s, int format, int64_t max_nodes, sp_arena *a,
                         Querier__V1__FlameGraph **fg_out, ProtobufCBinaryData *tree_out,
                         sp_err *err)
{
    query_tree t;
    int rc = query_tree_build(s, a, &t, err);
    if (rc)
        return rc;
    if (format == QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_TREE) {
        sp_buf b;
        sp_buf_init(&b, 0);
        rc = query_tree_marshal(&t, max_nodes, a, &b, err);
        if (!rc && b.len && !(tree_out->data = sp_arena_memdup(a, b.data, b.len)))
            rc = nomem(err);
        tree_out->len = rc ? 0 : b.len;
        sp_buf_free(&b);
        return rc;
    }
    query_flamegraph fg;
    if ((rc = query_flamegraph_build(&t, max_nodes, a, &fg, err)))
        return rc;
    if (!(*fg_out = flamegraph_message(&fg, a)))
        return nomem(err);
    return 0;
}

/* The merged stacks (truncated to max_nodes) as a google.v1.Profile. */
static int profile_message(const store_stacks *s, const query_type *type, int64_t max_nodes,
                           int64_t start_ms, int64_t end_ms, sp_arena *a, Google__V1__Profile **out,
                           sp_err *err)
{
    query_tree t;
    store_stacks cut;
    int rc = query_tree_build(s, a, &t, err);
    if (rc)
        return rc;
    if (query_tree_min_value(&t, max_nodes, a) == 0) {
        cut = *s; /* nothing to trim: every frame as received */
    } else {
        rc = query_tree_stacks(&t, max_nodes, a, &cut, err);
        if (rc)
            return rc;
    }
    cut.period = s->period;
    int64_t t0 = query_start_ns(start_ms), t1 = query_end_ns(end_ms);
    sp_buf b;
    sp_buf_init(&b, 0);
    rc = query_pprof_encode(&cut, type, t0, t1 > t0 ? t1 - t0 : 0, a, &b, err);
    if (!rc) {
        ProtobufCAllocator alloc;
        sp_arena_protobuf_allocator(a, &alloc);
        *out = google__v1__profile__unpack(&alloc, b.len, b.data ? b.data : (uint8_t *)"");
        if (!*out)
            rc = nomem(err);
    }
    sp_buf_free(&b);
    return rc;
}

static int m_select_merge_stacktraces(const query_ctx *c, const srv_request *req,
                                      const ProtobufCMessage *in, sp_arena *a,
                                      ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__SelectMergeStacktracesRequest *r = (const void *)in;
    int rc = unsupported(r->stack_trace_selector, r->n_profile_id_selector, err);
    if (rc)
        return rc;
    if (r->format == QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_DOT)
        return sp_fail(err, SP_EUNIMPL, "format PROFILE_FORMAT_DOT is not supported by spanprof");
    qr_merge_req m = {r->profile_typeid,
                      r->label_selector,
                      r->start,
                      r->end,
                      r->max_nodes,
                      r->span_selector,
                      r->n_span_selector,
                      r->n_span_selector > 0,
                      r->format == QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_PPROF,
                      r->trace_id_selector,
                      r->n_trace_id_selector};
    query_type type;
    int64_t max_nodes;
    store_stacks s;
    if ((rc = qr_merge_stacks(c, req, &m, a, &type, &max_nodes, &s, err)))
        return rc;
    Querier__V1__SelectMergeStacktracesResponse *resp =
        NEW(a, Querier__V1__SelectMergeStacktracesResponse,
            QUERIER__V1__SELECT_MERGE_STACKTRACES_RESPONSE__INIT);
    if (!resp)
        return nomem(err);
    if (r->format == QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_PPROF) {
        resp->pprof = NEW(a, Querier__V1__PprofProfile, QUERIER__V1__PPROF_PROFILE__INIT);
        if (!resp->pprof)
            return nomem(err);
        rc = profile_message(&s, &type, max_nodes, r->start, r->end, a, &resp->pprof->profile, err);
    } else {
        rc = render_stacks(&s, r->format, max_nodes, a, &resp->flamegraph, &resp->tree, err);
    }
    if (rc)
        return rc;
    *out = &resp->base;
    return 0;
}

static int m_select_merge_span_profile(const query_ctx *c, const srv_request *req,
                                       const ProtobufCMessage *in, sp_arena *a,
                                       ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__SelectMergeSpanProfileRequest *r = (const void *)in;
    /* Pyroscope answers every format but TREE with a flame graph here. */
    int format = r->format == QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_TREE
                     ? QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_TREE
                     : QUERIER__V1__PROFILE_FORMAT__PROFILE_FORMAT_FLAMEGRAPH;
    qr_merge_req m = {.type_id = r->profile_typeid,
                      .label_selector = r->label_selector,
                      .start = r->start,
                      .end = r->end,
                      .max_nodes = r->max_nodes,
                      .span_ids = r->span_selector,
                      .nspan_ids = r->n_span_selector,
                      .by_span = 1};
    query_type type;
    int64_t max_nodes;
    store_stacks s;
    int rc = qr_merge_stacks(c, req, &m, a, &type, &max_nodes, &s, err);
    if (rc)
        return rc;
    Querier__V1__SelectMergeSpanProfileResponse *resp =
        NEW(a, Querier__V1__SelectMergeSpanProfileResponse,
            QUERIER__V1__SELECT_MERGE_SPAN_PROFILE_RESPONSE__INIT);
    if (!resp)
        return nomem(err);
    if ((rc = render_stacks(&s, format, max_nodes, a, &resp->flamegraph, &resp->tree, err)))
        return rc;
    *out = &resp->base;
    return 0;
}

static int m_select_merge_profile(const query_ctx *c, const srv_request *req,
                                  const ProtobufCMessage *in, sp_arena *a, ProtobufCMessage **out,
                                  sp_err *err)
{
    const Querier__V1__SelectMergeProfileRequest *r = (const void *)in;
    int rc = unsupported(r->stack_trace_selector, r->n_profile_id_selector, err);
    if (rc)
        return rc;
    qr_merge_req m = {
        r->profile_typeid,    r->label_selector,     r->start, r->end, r->max_nodes, NULL, 0, 0, 1,
        r->trace_id_selector, r->n_trace_id_selector};
    query_type type;
    int64_t max_nodes;
    store_stacks s;
    Google__V1__Profile *p;
    if ((rc = qr_merge_stacks(c, req, &m, a, &type, &max_nodes, &s, err)) ||
        (rc = profile_message(&s, &type, max_nodes, r->start, r->end, a, &p, err)))
        return rc;
    *out = &p->base;
    return 0;
}

/* ---- SelectSeries ---------------------------------------------------------------------------- */

/* One answer series whatever the aggregation: points ascending, values as Pyroscope sends them. */
typedef struct out_series {
    store_labels labels;
    int64_t *t_ns;
    double *v;
    size_t n;
} out_series;

/* Group labels of a series: the group_by names among its labels (name order kept). */
static store_labels group_labels(const store_labels *l, char **group_by, size_t ngroup_by,
                                 sp_arena *a)
{
    store_labels g = {sp_arena_alloc(a, (l->n + 1) * sizeof *g.labels), 0};
    for (size_t i = 0; g.labels && i < l->n; i++)
        for (size_t k = 0; k < ngroup_by; k++)
            if (strcmp(l->labels[i].name, group_by[k]) == 0) {
                g.labels[g.n++] = l->labels[i];
                break;
            }
    return g;
}

typedef struct avg_point {
    size_t group;
    int64_t t_ns;
    int64_t sum, count;
} avg_point;

static int avg_point_cmp(const void *pa, const void *pb)
{
    const avg_point *x = pa, *y = pb;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->t_ns < y->t_ns ? -1 : x->t_ns > y->t_ns;
}

static int out_series_cmp(const void *pa, const void *pb)
{
    return labels_cmp(&((const out_series *)pa)->labels, &((const out_series *)pb)->labels);
}

/* TIME_SERIES_AGGREGATION_TYPE_AVERAGE (Pyroscope's avgTimeSeriesAggregator): per group and
 * step, the mean of the points that fall into it, where a point is one stored series' total over
 * one of the store's time buckets (10 s in SQLite) -- Pyroscope's points are single ingested
 * profiles, so both agree when each series uploads at most once per bucket, as the Go SDK (every
 * 15 s) does. The store is asked for every stored label of every series at a 1 ms step, which
 * leaves each (series, bucket) total on its own; they are then grouped and stepped here exactly
 * as the store steps sums (from start, floor((t - start) / step)). */
static int average_series(const query_ctx *c, const store_query *q, int64_t step_ns,
                          char **group_by, size_t ngroup_by, sp_arena *a, out_series **out,
                          size_t *nout, sp_err *err)
{
    store_strings names;
    int rc = store_label_names(c->store, q, a, &names, err);
    if (rc)
        return rc;
    const char **keep = sp_arena_alloc(a, (names.n + 1) * sizeof *keep);
    if (!keep)
        return nomem(err);
    size_t nkeep = 0;
    for (size_t i = 0; i < names.n; i++) /* virtual labels: constant within a type */
        if (strncmp(names.v[i], "__", 2) != 0)
            keep[nkeep++] = names.v[i];
    store_timeseries_set set;
    if ((rc = store_select_series(c->store, q, 1000000, keep, nkeep, a, &set, err)))
        return rc;
    size_t npoints = 0;
    for (size_t i = 0; i < set.n; i++)
        npoints += set.series[i].npoints;
    avg_point *pts = sp_arena_alloc(a, (npoints + 1) * sizeof *pts);
    store_labels *groups = sp_arena_alloc(a, (set.n + 1) * sizeof *groups);
    if (!pts || !groups)
        return nomem(err);
    size_t ngroups = 0, np = 0;
    int64_t anchor = q->start_ns;
    for (size_t i = 0; i < set.n; i++) {
        store_labels g = group_labels(&set.series[i].labels, group_by, ngroup_by, a);
        if (!g.labels)
            return nomem(err);
        size_t gi = 0;
        while (gi < ngroups && labels_cmp(&groups[gi], &g) != 0)
            gi++;
        if (gi == ngroups)
            groups[ngroups++] = g;
        for (size_t k = 0; k < set.series[i].npoints; k++) {
            int64_t t = set.series[i].points[k].t_ns;
            if (anchor > 0 && t > anchor)
                t = anchor + (t - anchor) / step_ns * step_ns;
            else if (anchor <= 0)
                t = t / step_ns * step_ns;
            pts[np++] = (avg_point){gi, t, set.series[i].points[k].value, 1};
        }
    }
    qsort(pts, np, sizeof *pts, avg_point_cmp);
    out_series *v = sp_arena_calloc(a, ngroups + 1, sizeof *v);
    if (!v)
        return nomem(err);
    for (size_t g = 0; g < ngroups; g++) {
        v[g].labels = groups[g];
        v[g].t_ns = sp_arena_alloc(a, (np + 1) * sizeof *v[g].t_ns);
        v[g].v = sp_arena_alloc(a, (np + 1) * sizeof *v[g].v);
        if (!v[g].t_ns || !v[g].v)
            return nomem(err);
    }
    for (size_t i = 0; i < np;) {
        size_t k = i;
        int64_t sum = 0, count = 0;
        for (; k < np && pts[k].group == pts[i].group && pts[k].t_ns == pts[i].t_ns; k++) {
            sum = sp_sat_add(sum, pts[k].sum);
            count++;
        }
        out_series *s = &v[pts[i].group];
        s->t_ns[s->n] = pts[i].t_ns;
        s->v[s->n++] = (double)sum / (double)count;
        i = k;
    }
    qsort(v, ngroups, sizeof *v, out_series_cmp);
    *out = v;
    *nout = ngroups;
    return 0;
}

static int sum_series(const query_ctx *c, const store_query *q, int64_t step_ns, char **group_by,
                      size_t ngroup_by, sp_arena *a, out_series **out, size_t *nout, sp_err *err)
{
    store_timeseries_set set;
    int rc = store_select_series(c->store, q, step_ns, (const char *const *)group_by, ngroup_by, a,
                                 &set, err);
    if (rc)
        return rc;
    out_series *v = sp_arena_calloc(a, set.n + 1, sizeof *v);
    if (!v)
        return nomem(err);
    for (size_t i = 0; i < set.n; i++) {
        const store_timeseries *ts = &set.series[i];
        v[i].labels = ts->labels;
        v[i].t_ns = sp_arena_alloc(a, (ts->npoints + 1) * sizeof *v[i].t_ns);
        v[i].v = sp_arena_alloc(a, (ts->npoints + 1) * sizeof *v[i].v);
        if (!v[i].t_ns || !v[i].v)
            return nomem(err);
        for (size_t k = 0; k < ts->npoints; k++) {
            v[i].t_ns[k] = ts->points[k].t_ns;
            v[i].v[k] = (double)ts->points[k].value;
        }
        v[i].n = ts->npoints;
    }
    *out = v;
    *nout = set.n;
    return 0;
}

/* SelectSeries over a span_name selector: every span of the name (reduced, spanset.h S1, so a
 * sample counts once) adds its value at the step of its start; series per service_name and
 * span_name when grouped by them (the labels a span has). *handled = 0 without span_name. */
static int span_series(const query_ctx *c, const srv_request *req, const char *type_id,
                       store_selector sel, const store_query *q, int64_t step_ns, char **group_by,
                       size_t ngb, sp_arena *a, out_series **out, size_t *nout, int *handled,
                       sp_err *err)
{
    query_spanset set;
    int rc =
        query_spanset_by_name(c, req->tenant, &sel, q->start_ns, q->end_ns, a, &set, handled, err);
    if (rc || !*handled || !set.n)
        return rc;
    store_span_total *tot = sp_arena_calloc(a, set.n, sizeof *tot);
    avg_point *pts = sp_arena_alloc(a, set.n * sizeof *pts);
    store_labels *groups = sp_arena_alloc(a, (set.n + 1) * sizeof *groups);
    if (!tot || !pts || !groups)
        return nomem(err);
    store_query tq = query_spanset_query(&set, req->tenant, type_id, &sel);
    if ((rc = store_span_totals(c->store, &tq, (const uint8_t(*)[8])set.ids, set.n, tot, err)))
        return rc;
    size_t ngroups = 0, np = 0;
    for (size_t i = 0; i < set.n; i++) {
        if (tot[i].value <= 0)
            continue;
        sp_kv *kv = sp_arena_alloc(a, 2 * sizeof *kv);
        if (!kv)
            return nomem(err);
        kv[0] = (sp_kv){"service_name", set.spans[i].service};
        kv[1] = (sp_kv){"span_name", set.spans[i].name};
        store_labels all = {kv, 2};
        store_labels g = group_labels(&all, group_by, ngb, a);
        if (!g.labels)
            return nomem(err);
        size_t gi = 0;
        while (gi < ngroups && labels_cmp(&groups[gi], &g) != 0)
            gi++;
        if (gi == ngroups)
            groups[ngroups++] = g;
        int64_t t = (int64_t)set.spans[i].start_ns;
        t = q->start_ns > 0 ? q->start_ns + (t - q->start_ns) / step_ns * step_ns
                            : t / step_ns * step_ns;
        pts[np++] = (avg_point){gi, t, tot[i].value, 1};
    }
    qsort(pts, np, sizeof *pts, avg_point_cmp);
    out_series *v = sp_arena_calloc(a, ngroups + 1, sizeof *v);
    if (!v)
        return nomem(err);
    for (size_t g = 0; g < ngroups; g++) {
        v[g].labels = groups[g];
        v[g].t_ns = sp_arena_alloc(a, (np + 1) * sizeof *v[g].t_ns);
        v[g].v = sp_arena_alloc(a, (np + 1) * sizeof *v[g].v);
        if (!v[g].t_ns || !v[g].v)
            return nomem(err);
    }
    for (size_t i = 0; i < np;) {
        size_t k = i;
        int64_t sum = 0;
        for (; k < np && pts[k].group == pts[i].group && pts[k].t_ns == pts[i].t_ns; k++)
            sum = sp_sat_add(sum, pts[k].sum);
        out_series *o = &v[pts[i].group];
        o->t_ns[o->n] = pts[i].t_ns;
        o->v[o->n++] = (double)sum;
        i = k;
    }
    qsort(v, ngroups, sizeof *v, out_series_cmp);
    *out = v;
    *nout = ngroups;
    return 0;
}

typedef struct ranked_d {
    size_t index;
    double total;
} ranked_d;

static int rank_d_cmp(const void *pa, const void *pb)
{
    const ranked_d *x = pa, *y = pb;
    if (x->total != y->total)
        return x->total > y->total ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int index_d_cmp(const void *pa, const void *pb)
{
    const ranked_d *x = pa, *y = pb;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int m_select_series(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in,
                           sp_arena *a, ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__SelectSeriesRequest *r = (const void *)in;
    int rc = unsupported(r->stack_trace_selector, 0, err);
    if (rc)
        return rc;
    int avg = r->aggregation ==
              TYPES__V1__TIME_SERIES_AGGREGATION_TYPE__TIME_SERIES_AGGREGATION_TYPE_AVERAGE;
    if (!avg &&
        r->aggregation != TYPES__V1__TIME_SERIES_AGGREGATION_TYPE__TIME_SERIES_AGGREGATION_TYPE_SUM)
        return sp_fail(err, SP_EINVAL,
                       "aggregation %d is not a TimeSeriesAggregationType: use "
                       "TIME_SERIES_AGGREGATION_TYPE_SUM or TIME_SERIES_AGGREGATION_TYPE_AVERAGE",
                       (int)r->aggregation);
    if (!(r->step > 0) || !isfinite(r->step) || r->step * 1e9 > 9e18)
        return sp_fail(err, SP_EINVAL, "step must be a positive number of seconds, got %g",
                       r->step);
    int64_t step_ns = (int64_t)(r->step * 1e9);
    if (step_ns < 1000000)
        step_ns = 1000000; /* points are ms apart at least */
    query_type type;
    store_selector sel;
    if ((rc = query_type_parse(r->profile_typeid, "profile_typeID", 1, a, &type, err)) ||
        (rc = query_selector_parse(r->label_selector, "label_selector", a, &sel, err)))
        return rc;
    store_query q = {.tenant = req->tenant,
                     .type_id = type.id,
                     .matchers = sel.matchers,
                     .nmatchers = sel.nmatchers,
                     .start_ns = query_start_ns(r->start),
                     .end_ns = query_end_ns(r->end)};
    out_series *set = NULL;
    size_t nset = 0;
    int by_name = 0;
    rc = span_series(c, req, type.id, sel, &q, step_ns, r->group_by, r->n_group_by, a, &set, &nset,
                     &by_name, err);
    if (!rc && !by_name)
        rc = avg ? average_series(c, &q, step_ns, r->group_by, r->n_group_by, a, &set, &nset, err)
                 : sum_series(c, &q, step_ns, r->group_by, r->n_group_by, a, &set, &nset, err);
    if (rc) {
        if (rc == SP_EINVAL)
            sp_err_prefix(err, "label_selector: ");
        return rc;
    }
    /* limit: keep the series with the largest totals, in the store's (label) order. */
    ranked_d *keep = sp_arena_alloc(a, (nset + 1) * sizeof *keep);
    if (!keep)
        return nomem(err);
    size_t n = nset;
    for (size_t i = 0; i < nset; i++) {
        keep[i] = (ranked_d){i, 0};
        for (size_t k = 0; k < set[i].n; k++)
            keep[i].total += set[i].v[k];
    }
    if (r->limit > 0 && (uint64_t)r->limit < n) {
        qsort(keep, n, sizeof *keep, rank_d_cmp);
        n = (size_t)r->limit;
        qsort(keep, n, sizeof *keep, index_d_cmp);
    }
    Querier__V1__SelectSeriesResponse *resp =
        NEW(a, Querier__V1__SelectSeriesResponse, QUERIER__V1__SELECT_SERIES_RESPONSE__INIT);
    if (!resp || !(resp->series = sp_arena_alloc(a, (n + 1) * sizeof(void *))))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        const out_series *ts = &set[keep[i].index];
        if (!ts->n)
            continue;
        Types__V1__Series *s = NEW(a, Types__V1__Series, TYPES__V1__SERIES__INIT);
        if (!s || !(s->labels = qr_label_pairs(a, &ts->labels)) ||
            !(s->points = sp_arena_alloc(a, (ts->n + 1) * sizeof(void *))))
            return nomem(err);
        s->n_labels = ts->labels.n;
        Types__V1__Point *pts = sp_arena_alloc(a, (ts->n + 1) * sizeof *pts);
        if (!pts)
            return nomem(err);
        for (size_t k = 0; k < ts->n; k++) {
            pts[k] = (Types__V1__Point)TYPES__V1__POINT__INIT;
            pts[k].value = ts->v[k];
            pts[k].timestamp = ts->t_ns[k] / 1000000;
            s->points[s->n_points++] = &pts[k];
        }
        resp->series[resp->n_series++] = s;
    }
    if ((rc = qr_series_exemplars(c, req, type.id, &sel, q.start_ns, q.end_ns, step_ns, r->group_by,
                                  r->n_group_by, r->exemplar_type, a, resp->series, resp->n_series,
                                  err)))
        return rc;
    *out = &resp->base;
    return 0;
}

/* ---- routing --------------------------------------------------------------------------------- */

#define SERVICE "/querier.v1.QuerierService/"

static const struct method {
    const char *name, *endpoint;
    const ProtobufCMessageDescriptor *in;
    method_fn fn;
} methods[] = {
    {"ProfileTypes", "query_profile_types", &querier__v1__profile_types_request__descriptor,
     m_profile_types},
    {"LabelNames", "query_label_names", &types__v1__label_names_request__descriptor, m_label_names},
    {"LabelValues", "query_label_values", &types__v1__label_values_request__descriptor,
     m_label_values},
    {"Series", "query_series", &querier__v1__series_request__descriptor, m_series},
    {"SelectMergeStacktraces", "query_select_merge_stacktraces",
     &querier__v1__select_merge_stacktraces_request__descriptor, m_select_merge_stacktraces},
    {"SelectMergeSpanProfile", "query_select_merge_span_profile",
     &querier__v1__select_merge_span_profile_request__descriptor, m_select_merge_span_profile},
    {"SelectMergeProfile", "query_select_merge_profile",
     &querier__v1__select_merge_profile_request__descriptor, m_select_merge_profile},
    {"SelectSeries", "query_select_series", &querier__v1__select_series_request__descriptor,
     m_select_series},
    {"SelectHeatmap", "query_select_heatmap", &querier__v1__select_heatmap_request__descriptor,
     qr_select_heatmap},
    {"Diff", "query_diff", &querier__v1__diff_request__descriptor, qr_diff},
    {"GetProfileStats", "query_profile_stats", &types__v1__get_profile_stats_request__descriptor,
     qr_get_profile_stats},
    {"AnalyzeQuery", "query_analyze_query", &querier__v1__analyze_query_request__descriptor,
     qr_analyze_query},
};

#define NMETHODS (sizeof methods / sizeof methods[0])

static void handle_rpc(srv_request *req, srv_response *resp, void *ud)
{
    uint32_t unresolved;
    query_ctx ctx = query_ctx_for_request(ud, &unresolved);
    const query_ctx *c = &ctx;
    const char *name = req->path + strlen(SERVICE);
    const struct method *m = NULL;
    for (size_t i = 0; i < NMETHODS && !m; i++)
        if (strcmp(methods[i].name, name) == 0)
            m = &methods[i];
    query_rpc rpc;
    sp_err err = {0};
    if (!m) {
        query_rpc_detect(req, &rpc);
        sp_fail(&err, SP_EUNIMPL, "querier.v1.QuerierService/%.100s is not implemented by spanprof",
                name);
        query_rpc_fail(resp, &rpc, &err);
        return;
    }
    sp_arena *a = sp_arena_new(c->budget);
    ProtobufCMessage *in = NULL, *out = NULL;
    int rc;
    if (!a) {
        query_rpc_detect(req, &rpc);
        rc = sp_fail(&err, SP_ENOMEM, "out of memory");
    } else if (!(rc = query_rpc_read(req, m->in, c->max_msg, a, &rpc, &in, &err))) {
        rc = m->fn(c, req, in, a, &out, &err);
    }
    if (rc)
        query_rpc_fail(resp, &rpc, &err);
    else
        query_rpc_reply(resp, &rpc, out);
    query_unresolved_header(resp, unresolved);
    sp_arena_free(a);
}

/* settings.v1.SettingsService/Get, which the Profiles Drilldown app calls before its first flame
 * graph (and shows an error banner when it fails): spanprof keeps no plugin settings, so the
 * answer is an empty GetSettingsResponse and the app uses its defaults. Any request body is
 * accepted (the request message is empty; unknown fields are skipped). Set and every other
 * method answer unimplemented. */
static void handle_settings(srv_request *req, srv_response *resp, void *ud)
{
    const query_ctx *c = ud;
    query_rpc rpc;
    sp_err err = {0};
    sp_arena *a = sp_arena_new(c->budget);
    ProtobufCMessage *in = NULL;
    int rc;
    if (!a) {
        query_rpc_detect(req, &rpc);
        rc = sp_fail(&err, SP_ENOMEM, "out of memory");
    } else if (strcmp(req->path, "/settings.v1.SettingsService/Get") != 0) {
        query_rpc_detect(req, &rpc);
        rc = sp_fail(&err, SP_EUNIMPL,
                     "%.100s is not implemented by spanprof: it keeps no plugin settings (the "
                     "Profiles app uses its defaults)",
                     req->path + 1);
    } else {
        rc = query_rpc_read(req, &types__v1__get_profile_stats_request__descriptor, c->max_msg, a,
                            &rpc, &in, &err);
    }
    if (rc) {
        query_rpc_fail(resp, &rpc, &err);
    } else { /* an empty message: GetProfileStatsRequest has no fields, like the answer here */
        Types__V1__GetProfileStatsRequest empty = TYPES__V1__GET_PROFILE_STATS_REQUEST__INIT;
        query_rpc_reply(resp, &rpc, &empty.base);
    }
    sp_arena_free(a);
}

int query_querier_register(srv_router *r, const query_ctx *c)
{
    int rc = srv_router_add(r, "POST", "/settings.v1.SettingsService/*", SRV_QUERY,
                            "query_settings", handle_settings, (void *)c);
    char path[128];
    for (size_t i = 0; i < NMETHODS && !rc; i++) {
        snprintf(path, sizeof path, SERVICE "%s", methods[i].name);
        rc = srv_router_add(r, "POST", path, SRV_QUERY, methods[i].endpoint, handle_rpc, (void *)c);
    }
    if (!rc) /* every other method of the service: unimplemented, in the caller's protocol */
        rc = srv_router_add(r, "POST", SERVICE "*", SRV_QUERY, "query_unimplemented", handle_rpc,
                            (void *)c);
    return rc;
}
