/* Merged stacks for the query handlers (see stacks.h). */
#include "stacks.h"

#include <string.h>

int query_stacks_select(const query_ctx *c, const query_stacks_req *r, sp_arena *a,
                        store_stacks *out, sp_err *err)
{
    memset(out, 0, sizeof *out);
    store_query q = {
        .tenant = r->tenant,
        .type_id = r->type ? r->type->id : NULL,
        .matchers = r->sel ? r->sel->matchers : NULL,
        .nmatchers = r->sel ? r->sel->nmatchers : 0,
        .start_ns = r->start_ns,
        .end_ns = r->end_ns,
    };
    if (r->by_span) {
        if (!r->nspan_ids)
            return 0;
        return store_span_stacks(c->store, &q, r->span_ids, r->nspan_ids, a, out, err);
    }
    return store_select_stacks(c->store, &q, a, out, err);
}

int query_max_nodes(const query_ctx *c, int64_t requested, int64_t *out, sp_err *err)
{
    if (requested == 0)
        *out = c->max_nodes_default;
    else if (requested > c->max_nodes_max)
        return sp_fail(err, SP_EINVAL, "max_nodes %lld is greater than the allowed %lld",
                       (long long)requested, (long long)c->max_nodes_max);
    else
        *out = requested < 0 ? -1 : requested;
    return 0;
}
