/* What every query/ handler shares: the registration context, and reading merged stacks for a
 * profile type, a label selector and either a time range or a set of span ids.
 *
 * Called by query/querier.c and query/render.c on worker threads.
 */
#ifndef QUERY_STACKS_H
#define QUERY_STACKS_H

#include "params.h"
#include "query.h"

typedef struct query_ctx {
    store *store;
    size_t max_msg; /* request body cap */
    size_t budget;  /* arena budget of one query */
    int64_t max_nodes_default, max_nodes_max;
    int64_t span_min_duration_ns; /* 0 = not told */
    /* Per request (query_ctx_for_request): native frames the answer's stack reads could not
     * name yet, summed; NULL in the shared registration context. */
    uint32_t *unresolved;
} query_ctx;

/* A request's own copy of the shared context (a handler's ud), counting into *unresolved. */
query_ctx query_ctx_for_request(const void *shared, uint32_t *unresolved);
/* X-Spanprof-Unresolved-Frames: how many native frames of the answer are still addresses
 * (their debug file is not there yet, or naming them ran past the query's budget). */
void query_unresolved_header(srv_response *resp, uint32_t unresolved);

typedef struct query_stacks_req {
    const char *tenant;
    const query_type *type;
    const store_selector *sel;
    int64_t start_ns, end_ns; /* [start, end); end 0 = unbounded; unused with by_span */
    int by_span;              /* only samples attached to span_ids (none given: nothing) */
    const uint8_t (*span_ids)[8];
    size_t nspan_ids;
    int detail; /* also each frame's file, line, address, mapping (pprof downloads) */
    /* trace_id_selector: only the samples of these traces' spans, each once (spanset.h) */
    char *const *trace_ids;
    size_t ntrace_ids;
} query_stacks_req;

/* Merged stacks of a request: by span ids (by_span), by traces (trace_ids), by span name (a
 * span_name matcher in sel, see spanset.h) or by series and time range. SP_EINVAL for a bad id,
 * a bad matcher or span_selector together with trace_id_selector; the store's errors. */
int query_stacks_select(const query_ctx *c, const query_stacks_req *r, sp_arena *a,
                        store_stacks *out, sp_err *err);

/* A request's max_nodes: 0 = the default, negative = no truncation, more than the maximum =
 * SP_EINVAL. */
int query_max_nodes(const query_ctx *c, int64_t requested, int64_t *out, sp_err *err);

#endif
