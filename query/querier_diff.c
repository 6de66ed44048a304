/* querier.v1.QuerierService/Diff: two SelectMergeStacktraces requests compared as one diff flame
 * graph (diff.h), with Pyroscope's semantics: an absent side is an empty request, max_nodes is
 * the larger of the two sides' (0 = the default), and each side may select by span ids
 * (span_selector), by traces (trace_id_selector) or by span name (a span_name matcher) -- so
 * "this span against its peers" is left = {span_selector: [id]}, right = {label_selector:
 * '{service_name="S", span_name="N"}'}. */
#include "querier_internal.h"
#include "diff.h"

#include <string.h>

static int side_stacks(const query_ctx *c, const srv_request *req,
                       const Querier__V1__SelectMergeStacktracesRequest *r, const char *side,
                       int64_t max_nodes, sp_arena *a, store_stacks *out, sp_err *err)
{
    static const Querier__V1__SelectMergeStacktracesRequest empty =
        QUERIER__V1__SELECT_MERGE_STACKTRACES_REQUEST__INIT;
    if (!r)
        r = &empty;
    int rc = 0;
    if (r->stack_trace_selector)
        rc = sp_fail(err, SP_EUNIMPL, "stack_trace_selector is not supported by spanprof");
    else if (r->n_profile_id_selector)
        rc = sp_fail(err, SP_EUNIMPL, "profile_id_selector is not supported by spanprof");
    qr_merge_req m = {.type_id = r->profile_typeid,
                      .label_selector = r->label_selector,
                      .start = r->start,
                      .end = r->end,
                      .max_nodes = max_nodes,
                      .span_ids = r->span_selector,
                      .nspan_ids = r->n_span_selector,
                      .by_span = r->n_span_selector > 0,
                      .trace_ids = r->trace_id_selector,
                      .ntrace_ids = r->n_trace_id_selector};
    query_type type;
    int64_t unused;
    if (!rc)
        rc = qr_merge_stacks(c, req, &m, a, &type, &unused, out, err);
    if (rc)
        sp_err_prefix(err, "%s: ", side);
    return rc;
}

static Querier__V1__FlameGraphDiff *diff_message(const query_flamegraph_diff *d, sp_arena *a)
{
    Querier__V1__FlameGraphDiff *m =
        NEW(a, Querier__V1__FlameGraphDiff, QUERIER__V1__FLAME_GRAPH_DIFF__INIT);
    if (!m || !(m->levels = sp_arena_alloc(a, (d->nlevels + 1) * sizeof *m->levels)))
        return NULL;
    m->names = (char **)d->names;
    m->n_names = d->nnames;
    for (uint32_t i = 0; i < d->nlevels; i++) {
        Querier__V1__Level *l = NEW(a, Querier__V1__Level, QUERIER__V1__LEVEL__INIT);
        if (!l)
            return NULL;
        l->values = d->levels[i];
        l->n_values = d->nvalues[i];
        m->levels[m->n_levels++] = l;
    }
    m->total = d->total;
    m->max_self = d->max_self;
    m->leftticks = d->left_ticks;
    m->rightticks = d->right_ticks;
    return m;
}

int qr_diff(const query_ctx *c, const srv_request *req, const ProtobufCMessage *in, sp_arena *a,
            ProtobufCMessage **out, sp_err *err)
{
    const Querier__V1__DiffRequest *r = (const void *)in;
    int64_t want = 0, max_nodes;
    if (r->left && r->left->max_nodes > want)
        want = r->left->max_nodes;
    if (r->right && r->right->max_nodes > want)
        want = r->right->max_nodes;
    int rc = query_max_nodes(c, want, &max_nodes, err);
    store_stacks l, rt;
    if (!rc)
        rc = side_stacks(c, req, r->left, "left", max_nodes, a, &l, err);
    if (!rc)
        rc = side_stacks(c, req, r->right, "right", max_nodes, a, &rt, err);
    query_flamegraph_diff d;
    if (!rc)
        rc = query_flamegraph_diff_build(&l, &rt, max_nodes, a, &d, err);
    if (rc)
        return rc;
    Querier__V1__DiffResponse *resp =
        NEW(a, Querier__V1__DiffResponse, QUERIER__V1__DIFF_RESPONSE__INIT);
    if (!resp || !(resp->flamegraph = diff_message(&d, a)))
        return qr_nomem(err);
    *out = &resp->base;
    return 0;
}
