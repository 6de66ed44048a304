/* Span sets: the spans a query names without naming their ids -- every span of a trace
 * (trace_id_selector), or every span of a name (a span_name matcher) -- reduced so that each
 * sample counts once.
 *
 * Why a reduction is needed: the correlator attaches a sample to every span covering it on its
 * thread (rules 2 and 3), and a sample linked to a span also to that span's eligible ancestors in
 * the same process (correlator/attach.c, cw_walk_up), so the per-span values the store keeps
 * overlap along a chain. Summing them over a set counts a sample once per member it is attached
 * to. Keeping only the members no other member covers fixes that:
 *
 *   S1. A member is dropped when one of its ancestors, reached through spans of the member's
 *       process, is a member too, runs on the same thread (or both have none) and covers the
 *       member's time: that ancestor holds every sample of the member (those attached by thread
 *       and time fall in its time on its thread; linked ones were walked up to it).
 *   S2. Members of different processes never share a sample. Members kept side by side in one
 *       process share a sample when both cover it on one thread -- spans of different requests
 *       overlapping on a shared I/O thread -- or when it was linked to a child on another thread
 *       and walked up to a member parent: such an observation counts once per member (the store
 *       keeps values per span, not per observation, so the overlap cannot be told apart; the
 *       test test_span_name_overlapping_peers_on_one_thread records it as a known limit).
 *
 * "Same process" is the correlator's rule without the resource identity the span index does not
 * keep: the same process.pid when either span has one, else the same service. Spans shorter than
 * the correlator's minimum duration hold no samples and are never members.
 *
 * Called by query/stacks.c, query/querier_spans.c and query/api_v1.c on worker threads; memory
 * from the caller's arena.
 */
#ifndef QUERY_SPANSET_H
#define QUERY_SPANSET_H

#include "stacks.h"

typedef struct query_spanset {
    sp_span *spans;    /* the outermost members (S1), ascending start */
    uint8_t (*ids)[8]; /* their ids, parallel */
    size_t n;
    size_t matched;           /* members before the reduction */
    int64_t start_ns, end_ns; /* the earliest start and the latest end of the kept members */
} query_spanset;

/* The most spans one query reads by name. */
#define QUERY_SPANSET_MAX 2000000

/* If sel has a span_name matcher: the spans of that name starting in [start_ns, end_ns) (end 0 =
 * no bound), of the service a service_name="x" matcher names (that matcher is then taken off sel
 * too: it is the span's service, not the series'), reduced (S1). *named = 0 and nothing changes
 * when there is no span_name matcher. SP_EINVAL when span_name is matched other than with `=`;
 * SP_ETOOBIG when more than QUERY_SPANSET_MAX spans match (never a partial answer); the store's
 * errors otherwise. */
int query_spanset_by_name(const query_ctx *c, const char *tenant, store_selector *sel,
                          int64_t start_ns, int64_t end_ns, sp_arena *a, query_spanset *out,
                          int *named, sp_err *err);

/* Every span of the traces (32 hex digits each), of the service a service_name="x" matcher of
 * sel names (taken off sel), reduced (S1). SP_EINVAL names a bad trace id. */
int query_spanset_by_traces(const query_ctx *c, const char *tenant, store_selector *sel,
                            char *const *trace_ids, size_t ntrace_ids, sp_arena *a,
                            query_spanset *out, sp_err *err);

/* The store query that reads a set's samples: tenant, type and sel's remaining matchers, and the
 * hours from the set's first start to its last end. */
store_query query_spanset_query(const query_spanset *set, const char *tenant, const char *type_id,
                                const store_selector *sel);

#endif
